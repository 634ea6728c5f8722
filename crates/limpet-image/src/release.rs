//! The release file: which release an initramfs belongs to, one line the build writes at
//! [`INITRAMFS_PATH`] and PID 1 reads when it starts, so a v2 boots a PID 1 that says "v2".
//!
//! It is a file of its own, not text stamped into PID 1's binary, so that `init` is the
//! same bytes in every release built from the same Limpet source: the initramfs is one
//! zstd stream that a slot's delta carries compressed from its first difference on, and
//! the build writes this file last (docs/image-format.md). It is inside the initramfs, so
//! the slot's signature covers it like every other byte of PID 1.
//!
//! Format: `<device> <version> (<target>)` and a newline, nothing else, for example
//! `hello 0.2.0 (x86_64)\n`:
//! - device: `[a-z][a-z0-9-]{0,31}` (the manifest's device name);
//! - version: 1 to 64 bytes of ASCII letters, digits, `.`, `+` and `-` (the slot
//!   header's version field);
//! - target: `x86_64` or `aarch64` ([`Target`]).
//!
//! [`Release::parse`] refuses anything else with the reason, and never panics.

use alloc::string::String;
use core::fmt;

use crate::header::Target;

/// Where the build puts the release file in the initramfs.
pub const INITRAMFS_PATH: &str = "etc/limpet/release";
/// The longest device name.
pub const DEVICE_MAX: usize = 32;
/// The longest version (the slot header's version field).
pub const VERSION_MAX: usize = 64;
/// The longest file: device, space, version, ` (aarch64)`, newline.
pub const MAX_LEN: usize = DEVICE_MAX + 1 + VERSION_MAX + " (aarch64)\n".len();

/// Why a release cannot be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The file is longer than any release.
    #[error("{len} bytes, more than a release's {MAX_LEN}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Not `<device> <version> (<target>)` and a newline.
    #[error("not `<device> <version> (<target>)` and a newline")]
    Form,
    /// The device name breaks its rule.
    #[error("device name {0:?} is not [a-z][a-z0-9-]{{0,31}}")]
    Device(String),
    /// The version breaks its rule.
    #[error("version {0:?} is not 1 to 64 ASCII letters, digits, '.', '+' or '-'")]
    Version(String),
    /// Not a target Limpet builds for.
    #[error("unknown target {0:?}")]
    Target(String),
}

/// A release: the device model, its version and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    device: String,
    version: String,
    target: Target,
}

impl Release {
    /// A release from its parts, checked against the rules above.
    pub fn new(device: &str, version: &str, target: Target) -> Result<Self, ReleaseError> {
        check_device(device)?;
        check_version(version)?;
        Ok(Release {
            device: device.into(),
            version: version.into(),
            target,
        })
    }

    /// The release a file's bytes name.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReleaseError> {
        if bytes.len() > MAX_LEN {
            return Err(ReleaseError::TooLong { len: bytes.len() });
        }
        let line = bytes.strip_suffix(b"\n").ok_or(ReleaseError::Form)?;
        let line = core::str::from_utf8(line).map_err(|_| ReleaseError::Form)?;
        let (device, rest) = line.split_once(' ').ok_or(ReleaseError::Form)?;
        let (version, target) = rest.split_once(' ').ok_or(ReleaseError::Form)?;
        check_device(device)?;
        check_version(version)?;
        let target = target
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
            .ok_or(ReleaseError::Form)?;
        let target =
            Target::from_name(target).ok_or_else(|| ReleaseError::Target(target.into()))?;
        Release::new(device, version, target)
    }

    /// The file's bytes: [`Release`]'s text and a newline.
    pub fn to_file(&self) -> alloc::vec::Vec<u8> {
        alloc::format!("{self}\n").into_bytes()
    }

    /// The device model name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The target.
    pub fn target(&self) -> Target {
        self.target
    }
}

/// `<device> <version> (<target>)`, as PID 1 prints it.
impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.device, self.version, self.target)
    }
}

fn check_device(device: &str) -> Result<(), ReleaseError> {
    let bytes = device.as_bytes();
    let ok = (1..=DEVICE_MAX).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReleaseError::Device(device.into()))
    }
}

fn check_version(version: &str) -> Result<(), ReleaseError> {
    let ok = (1..=VERSION_MAX).contains(&version.len())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ReleaseError::Version(version.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn a_release_round_trips_through_its_file() {
        let r = Release::new("hello", "0.2.0-rc.1+b7", Target::Aarch64).unwrap();
        assert_eq!(r.to_string(), "hello 0.2.0-rc.1+b7 (aarch64)");
        assert_eq!(r.to_file(), b"hello 0.2.0-rc.1+b7 (aarch64)\n");
        assert_eq!(Release::parse(&r.to_file()), Ok(r));
        let longest = Release::new(
            &"d".repeat(DEVICE_MAX),
            &"9".repeat(VERSION_MAX),
            Target::Aarch64,
        )
        .unwrap();
        assert_eq!(longest.to_file().len(), MAX_LEN);
        assert_eq!(Release::parse(&longest.to_file()), Ok(longest));
        let x86 = Release::parse(b"a 1 (x86_64)\n").unwrap();
        assert_eq!((x86.device(), x86.version()), ("a", "1"));
        assert_eq!(x86.target(), Target::X86_64);
    }

    #[test]
    fn a_bad_file_is_refused_with_its_reason() {
        let cases: &[(&[u8], ReleaseError)] = &[
            (b"", ReleaseError::Form),
            (b"hello 0.2.0 (x86_64)", ReleaseError::Form),
            (b"hello 0.2.0 (x86_64)\n\n", ReleaseError::Form),
            (b"hello 0.2.0 x86_64\n", ReleaseError::Form),
            (b"hello 0.2.0\n", ReleaseError::Form),
            (b"hello  0.2.0 (x86_64)\n", ReleaseError::Version("".into())),
            (b"hello 0.2.0 (x86_64) x\n", ReleaseError::Form),
            (b"hello\xff 0.2.0 (x86_64)\n", ReleaseError::Form),
            (
                b"Hello 0.2.0 (x86_64)\n",
                ReleaseError::Device("Hello".into()),
            ),
            (
                b"1hello 0.2.0 (x86_64)\n",
                ReleaseError::Device("1hello".into()),
            ),
            (
                b"hello 0.2.0\t (x86_64)\n",
                ReleaseError::Version("0.2.0\t".into()),
            ),
            (
                b"hello 0.2.0/ (x86_64)\n",
                ReleaseError::Version("0.2.0/".into()),
            ),
            (
                b"hello 0.2.0 (riscv64)\n",
                ReleaseError::Target("riscv64".into()),
            ),
            (b"hello 0.2.0 ()\n", ReleaseError::Target("".into())),
        ];
        for (bytes, want) in cases {
            assert_eq!(Release::parse(bytes).as_ref(), Err(want), "{bytes:?}");
        }
        let long = alloc::vec![b'a'; MAX_LEN + 1];
        assert_eq!(
            Release::parse(&long),
            Err(ReleaseError::TooLong { len: MAX_LEN + 1 })
        );
        let long_device = "d".repeat(DEVICE_MAX + 1);
        assert_eq!(
            Release::new(&long_device, "1", Target::X86_64),
            Err(ReleaseError::Device(long_device))
        );
        let long_version = "9".repeat(VERSION_MAX + 1);
        assert_eq!(
            Release::new("d", &long_version, Target::X86_64),
            Err(ReleaseError::Version(long_version))
        );
    }
}
