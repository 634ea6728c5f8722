//! Domain names as the stub compares them: lower-case, without the trailing dot, made of
//! LDH labels (underscore also allowed, for service names).

use std::fmt;

/// Longest name in presentation form (RFC 1035 §2.3.4: 255 octets in wire form).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a domain name the stub can allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, or longer than 253 characters.
    #[error("name {name:?} is empty or longer than {MAX_NAME_LEN} characters")]
    Length {
        /// The name given.
        name: String,
    },
    /// A label is empty or longer than 63 characters.
    #[error("name {name:?} has an empty or over-long label")]
    Label {
        /// The name given.
        name: String,
    },
    /// A character other than a letter, digit, `-` or `_`.
    #[error("name {name:?} has a character outside letters, digits, '-' and '_'")]
    Character {
        /// The name given.
        name: String,
    },
}

/// A validated, lower-cased domain name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsName(String);

impl DnsName {
    /// Parses a name in presentation form (`api.example.com`, a trailing dot allowed).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        let err_name = || s.chars().take(MAX_NAME_LEN + 8).collect::<String>();
        if trimmed.is_empty() || trimmed.len() > MAX_NAME_LEN {
            return Err(NameError::Length { name: err_name() });
        }
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                return Err(NameError::Label { name: err_name() });
            }
            if !label.bytes().all(valid_byte) {
                return Err(NameError::Character { name: err_name() });
            }
        }
        Ok(Self(trimmed.to_ascii_lowercase()))
    }

    /// Builds a name from wire-form labels (no compression pointers), or `None` when a
    /// label holds a byte [`DnsName::parse`] would refuse.
    pub(crate) fn from_wire(wire: &[u8]) -> Option<Self> {
        let mut out = String::new();
        let mut rest = wire;
        while let Some((&len, tail)) = rest.split_first() {
            if len == 0 {
                break;
            }
            let label = tail.get(..usize::from(len))?;
            if !label.iter().copied().all(valid_byte) {
                return None;
            }
            if !out.is_empty() {
                out.push('.');
            }
            out.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
            rest = tail.get(usize::from(len)..)?;
        }
        Self::parse(&out).ok()
    }

    /// The wire form: length-prefixed labels and the root label.
    pub(crate) fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() + 2);
        for label in self.0.split('.') {
            out.push(u8::try_from(label.len()).unwrap_or(0));
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    /// The name, lower-case, without the trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for DnsName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn valid_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_lower_cases() {
        let n = DnsName::parse("API.Example.COM.").unwrap();
        assert_eq!(n.as_str(), "api.example.com");
        assert_eq!(n.to_wire(), b"\x03api\x07example\x03com\x00");
        assert_eq!(
            DnsName::from_wire(b"\x03API\x07example\x03com\x00"),
            Some(n)
        );
    }

    #[test]
    fn refuses_bad_names() {
        assert!(matches!(DnsName::parse(""), Err(NameError::Length { .. })));
        assert!(matches!(
            DnsName::parse("a..b"),
            Err(NameError::Label { .. })
        ));
        assert!(matches!(
            DnsName::parse("a b.c"),
            Err(NameError::Character { .. })
        ));
        assert!(matches!(
            DnsName::parse(&"a".repeat(64)),
            Err(NameError::Label { .. })
        ));
        assert!(DnsName::from_wire(b"\x03a.b\x00").is_none());
        assert!(DnsName::from_wire(b"\x05ab").is_none());
    }
}
