//! Cohorts: functionally identical builds of one release whose code and data lie in a
//! different order, so that one memory-corruption exploit written against one layout does
//! not fit the whole fleet (issue 14, item 3; docs/cohorts.md).
//!
//! A cohort is `K of N`. Its seed is `K`: the layout is public and reproducible, which is
//! the point, not a weakness. Diversity makes an attacker write N exploits and reach 1/N
//! of the devices with each; it hides nothing, and a rebuild from the seed gives the same
//! bytes. The device binaries (PID 1, the tasks, the update agent) are linked by LLVM's
//! lld with `--shuffle-sections=*=K`: every input section (rustc puts each function and
//! each static in a section of its own) is placed in an order drawn from the seed, inside
//! its output section. The boot loader (a PE image) is not shuffled.
//!
//! Rules this module keeps:
//! - `1 <= K <= N <= MAX_COHORTS`; anything else is refused with the numbers given.
//! - The flags depend on the seed and the target only, so a cohort's build is as
//!   reproducible as any other.

use std::fmt;
use std::path::{Path, PathBuf};

use limpet_manifest::Target;

/// The most cohorts one release may have.
pub const MAX_COHORTS: u32 = 64;

/// One cohort of a release: `index` of `count`, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Cohort {
    index: u32,
    count: u32,
}

/// A cohort that cannot be.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CohortError {
    /// Zero cohorts, or more than [`MAX_COHORTS`].
    #[error("{0} cohorts: a release has 1 to {MAX_COHORTS}")]
    Count(u32),
    /// An index outside `1..=count`.
    #[error("cohort {index} of {count}: cohorts are numbered 1 to {count}")]
    Index {
        /// The index given.
        index: u32,
        /// The number of cohorts.
        count: u32,
    },
}

impl Cohort {
    /// Cohort `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Self, CohortError> {
        if count == 0 || count > MAX_COHORTS {
            return Err(CohortError::Count(count));
        }
        if index == 0 || index > count {
            return Err(CohortError::Index { index, count });
        }
        Ok(Cohort { index, count })
    }

    /// Every cohort of a release of `count`.
    pub fn all(count: u32) -> Result<Vec<Self>, CohortError> {
        Cohort::new(1, count)?;
        (1..=count).map(|k| Cohort::new(k, count)).collect()
    }

    /// The index, from 1.
    pub const fn index(self) -> u32 {
        self.index
    }

    /// How many cohorts the release has.
    pub const fn count(self) -> u32 {
        self.count
    }

    /// The seed of the layout: the index.
    pub const fn seed(self) -> u32 {
        self.index
    }

    /// The directory name of its outputs: `cohort-K`.
    pub fn dir_name(self) -> String {
        format!("cohort-{}", self.index)
    }

    /// The rustc flags that link the device binaries of `target` in this cohort's layout;
    /// `gcc_ld` is the toolchain's `gcc-ld` directory, whose `ld.lld` the C compiler driver
    /// runs as its linker on x86_64 (aarch64 is linked by rust-lld directly).
    pub fn link_flags(self, target: Target, gcc_ld: &Path) -> Vec<String> {
        let shuffle = format!("--shuffle-sections=*={}", self.seed());
        match target {
            Target::X86_64 => vec![
                "-C".into(),
                format!("link-arg=-B{}", gcc_ld.display()),
                "-C".into(),
                "link-arg=-fuse-ld=lld".into(),
                "-C".into(),
                format!("link-arg=-Wl,{shuffle}"),
            ],
            Target::Aarch64 => vec!["-C".into(), format!("link-arg={shuffle}")],
        }
    }
}

impl fmt::Display for Cohort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cohort {} of {}", self.index, self.count)
    }
}

/// The `gcc-ld` directory of the toolchain whose sysroot is `sysroot`, on `host`.
pub fn gcc_ld_dir(sysroot: &Path, host: &str) -> PathBuf {
    sysroot.join("lib/rustlib").join(host).join("bin/gcc-ld")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohorts_are_numbered_from_one_to_their_count() {
        assert_eq!(Cohort::all(3).unwrap().len(), 3);
        assert_eq!(Cohort::all(0), Err(CohortError::Count(0)));
        assert_eq!(Cohort::all(65), Err(CohortError::Count(65)));
        assert_eq!(
            Cohort::new(0, 3),
            Err(CohortError::Index { index: 0, count: 3 })
        );
        assert_eq!(
            Cohort::new(4, 3),
            Err(CohortError::Index { index: 4, count: 3 })
        );
        assert_eq!(Cohort::new(1, 0), Err(CohortError::Count(0)));
        assert_eq!(Cohort::new(1, 65), Err(CohortError::Count(65)));
        assert_eq!(
            Cohort::new(4, 3).unwrap_err().to_string(),
            "cohort 4 of 3: cohorts are numbered 1 to 3"
        );
    }

    #[test]
    fn the_seed_is_the_index_and_reaches_the_linker_of_each_target() {
        let c = Cohort::new(2, 4).unwrap();
        assert_eq!(c.dir_name(), "cohort-2");
        let x86 = c.link_flags(Target::X86_64, Path::new("/tc/gcc-ld"));
        assert_eq!(
            x86,
            [
                "-C",
                "link-arg=-B/tc/gcc-ld",
                "-C",
                "link-arg=-fuse-ld=lld",
                "-C",
                "link-arg=-Wl,--shuffle-sections=*=2"
            ]
        );
        assert_eq!(
            c.link_flags(Target::Aarch64, Path::new("/x")),
            ["-C", "link-arg=--shuffle-sections=*=2"]
        );
    }
}
