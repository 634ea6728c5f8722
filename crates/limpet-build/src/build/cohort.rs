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

pub use limpet_repo::cohort::{CohortError, MAX_COHORTS};
use limpet_repo::CohortTag;

/// One cohort of a release: `index` of `count`, both from 1 (limpet-repo's [`CohortTag`],
/// which the publisher and the device's update agent use too), with what building it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Cohort(CohortTag);

impl Cohort {
    /// Cohort `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Self, CohortError> {
        CohortTag::new(index, count).map(Cohort)
    }

    /// Every cohort of a release of `count`.
    pub fn all(count: u32) -> Result<Vec<Self>, CohortError> {
        Cohort::new(1, count)?;
        (1..=count).map(|k| Cohort::new(k, count)).collect()
    }

    /// The index, from 1.
    pub const fn index(self) -> u32 {
        self.0.index()
    }

    /// How many cohorts the release has.
    pub const fn count(self) -> u32 {
        self.0.count()
    }

    /// The seed of the layout: the index.
    pub const fn seed(self) -> u32 {
        self.0.index()
    }

    /// The kernel command-line word that records the cohort in the signed slot header:
    /// `limpet.cohort=K/N` (`limpet publish` reads it; docs/cohorts.md).
    pub fn cmdline_word(self) -> String {
        format!(
            "{}={}/{}",
            limpet_image::cmdline::COHORT,
            self.index(),
            self.count()
        )
    }

    /// The directory name of its outputs: `cohort-K`.
    pub fn dir_name(self) -> String {
        self.0.dir_name()
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
        self.0.fmt(f)
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
        assert_eq!(MAX_COHORTS, limpet_image::cmdline::MAX_COHORTS);
        assert_eq!(
            serde_json::to_value(c).unwrap(),
            serde_json::json!({"index": 2, "count": 4})
        );
        assert_eq!(
            limpet_image::cmdline::CohortParam::from_cmdline(&c.cmdline_word()),
            limpet_image::cmdline::CohortParam::Of {
                index: c.index(),
                count: c.count()
            }
        );
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
