//! [`Version`]: a firmware version as the state stores it.
//!
//! Rules:
//! - The text is semver, 1 to [`MAX_VERSION_LEN`] bytes of `[0-9A-Za-z.+-]`: the same
//!   bound as the slot header's version field, so every version a slot can carry fits the
//!   state.
//! - Versions are compared by semver *precedence* ([`Version::precedence`]): build metadata
//!   is ignored, so `2.0.0+b` is not newer than `2.0.0+a`. `Version` deliberately has no
//!   `Ord`: a derived order would rank build metadata and let a rebuilt old version pass
//!   the anti-rollback floor.

use alloc::borrow::ToOwned;
use alloc::string::{String, ToString};
use core::cmp::Ordering;
use core::fmt;

use thiserror::Error;

/// Longest version text, in bytes (the slot header's version field is as long).
pub const MAX_VERSION_LEN: usize = 64;

/// A semver version whose text is at most [`MAX_VERSION_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(semver::Version);

/// Why a text is not a [`Version`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VersionError {
    /// Empty or longer than [`MAX_VERSION_LEN`] bytes.
    #[error("version text is {len} bytes, expected 1 to {MAX_VERSION_LEN}")]
    Length {
        /// Length of the text in bytes.
        len: usize,
    },
    /// A byte outside `[0-9A-Za-z.+-]`.
    #[error("version text contains a byte outside [0-9A-Za-z.+-]")]
    Charset,
    /// Not semver.
    #[error("version text {text:?} is not semver: {reason}")]
    Semver {
        /// The text given.
        text: String,
        /// What the semver parser said (as text: its error type is not `Clone`).
        reason: String,
    },
}

impl Version {
    /// Parses semver text of 1 to [`MAX_VERSION_LEN`] bytes of `[0-9A-Za-z.+-]`.
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        if text.is_empty() || text.len() > MAX_VERSION_LEN {
            return Err(VersionError::Length { len: text.len() });
        }
        let charset_ok = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'));
        if !charset_ok {
            return Err(VersionError::Charset);
        }
        semver::Version::parse(text)
            .map(Version)
            .map_err(|e| VersionError::Semver {
                text: text.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Wraps a parsed semver version, checking its text length and characters.
    pub fn from_semver(version: semver::Version) -> Result<Self, VersionError> {
        // Round-trip through the text so the bound applies to exactly what is stored.
        Self::parse(&version.to_string())
    }

    /// The semver value.
    pub fn as_semver(&self) -> &semver::Version {
        &self.0
    }

    /// Semver precedence: build metadata is ignored.
    pub fn precedence(&self, other: &Version) -> Ordering {
        self.0.cmp_precedence(&other.0)
    }

    /// True when `self` has a strictly higher precedence than `other`.
    pub fn is_newer_than(&self, other: &Version) -> bool {
        self.precedence(other) == Ordering::Greater
    }

    /// The higher of two versions by precedence; `self` on a tie.
    pub(crate) fn max_by_precedence(self, other: Version) -> Version {
        if other.is_newer_than(&self) {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl core::str::FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use alloc::format;

    use super::*;

    #[test]
    fn bounds_and_charset() {
        assert_eq!(Version::parse(""), Err(VersionError::Length { len: 0 }));
        let long = format!("1.0.0-{}", "a".repeat(MAX_VERSION_LEN));
        assert_eq!(
            Version::parse(&long),
            Err(VersionError::Length { len: long.len() })
        );
        let exact = format!("1.0.0-{}", "a".repeat(MAX_VERSION_LEN - 6));
        assert_eq!(Version::parse(&exact).unwrap().to_string(), exact);
        assert_eq!(Version::parse("1.0.0 "), Err(VersionError::Charset));
        assert!(matches!(
            Version::parse("1.0"),
            Err(VersionError::Semver { .. })
        ));
    }

    #[test]
    fn build_metadata_does_not_make_a_version_newer() {
        let a = Version::parse("2.0.0+a").unwrap();
        let b = Version::parse("2.0.0+b").unwrap();
        assert_eq!(a.precedence(&b), Ordering::Equal);
        assert!(!b.is_newer_than(&a));
        assert!(Version::parse("2.0.1")
            .unwrap()
            .is_newer_than(&Version::parse("2.0.1-rc.1").unwrap()));
    }
}
