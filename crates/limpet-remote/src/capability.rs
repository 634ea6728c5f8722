//! Capabilities: what an access key lets one operator reach, on which device, until when.
//!
//! Rules this module keeps:
//! - A capability is signed over its own fixed binary encoding ([`Capability::signed_bytes`]),
//!   never over JSON text: the file's JSON is parsed into the typed [`Capability`], encoded
//!   again, and only that encoding is verified. Two files that mean the same capability
//!   have the same hash.
//! - The signature is domain separated ([`CAPABILITY_DOMAIN`]): nothing else an access key
//!   signs is a capability.
//! - A capability lives at most [`MAX_LIFETIME_SECS`]; [`Capability::new`] refuses a longer
//!   one, and the device refuses it again ([`crate::decide`]).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The prefix of every capability signature's message.
pub const CAPABILITY_DOMAIN: &[u8] = b"limpet remote-access capability v1\0";

/// The longest a capability may be valid: 8 hours.
pub const MAX_LIFETIME_SECS: u64 = 8 * 3600;

/// The most services one capability names.
pub const MAX_SERVICES: usize = 16;

/// A capability file's format version.
const VERSION: u8 = 1;

/// The byte that ends the encoding of a capability granting the direct path.
const DIRECT: u8 = 1;

/// Why a capability could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("not a capability file: {0}")]
    Json(#[source] serde_json::Error),
    #[error("capability version {0} is not supported (this build reads version {VERSION})")]
    Version(u8),
    #[error("field `{field}`: {what}")]
    Field { field: &'static str, what: String },
    #[error("lifetime of {secs} s is longer than the {MAX_LIFETIME_SECS} s a capability may live")]
    TooLong { secs: u64 },
    #[error("expires ({expires}) is not after not_before ({not_before})")]
    Empty { not_before: u64, expires: u64 },
}

/// A service name as a manifest declares it: 1 to 32 of `a-z`, `0-9`, `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(String);

impl ServiceName {
    /// Parses `text`, refusing anything but 1 to 32 of `a-z`, `0-9`, `-`.
    pub fn parse(text: &str) -> Result<ServiceName, CapabilityError> {
        let ok = (1..=32).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(ServiceName(text.to_owned()))
        } else {
            Err(CapabilityError::Field {
                field: "services",
                what: format!("{text:?} is not a service name (1 to 32 of a-z, 0-9, -)"),
            })
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whom a capability is for: one device, or every device of a cohort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The device with this identity public key.
    Device(VerifyingKey),
    /// Every device whose image names this cohort.
    Cohort(String),
}

/// A capability's content: the signed part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// The operator's Ed25519 key: the session must be signed by it.
    pub operator: VerifyingKey,
    /// The device or cohort.
    pub subject: Subject,
    /// The services it reaches (each must also be declared by the device's manifest).
    pub services: Vec<ServiceName>,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds, exclusive).
    pub expires: u64,
    /// 16 random bytes: two capabilities with the same fields are still two.
    pub nonce: [u8; 16],
    /// Whether the operator may take the direct path (a pinhole PID 1 opens for the
    /// session's peer, docs/remote-access.md); signed like every other field.
    pub direct: bool,
}

impl Capability {
    /// A capability, refused when its lifetime is empty or longer than
    /// [`MAX_LIFETIME_SECS`], or it names no or too many services.
    pub fn new(
        operator: VerifyingKey,
        subject: Subject,
        services: Vec<ServiceName>,
        not_before: u64,
        expires: u64,
        nonce: [u8; 16],
    ) -> Result<Capability, CapabilityError> {
        if expires <= not_before {
            return Err(CapabilityError::Empty {
                not_before,
                expires,
            });
        }
        if expires - not_before > MAX_LIFETIME_SECS {
            return Err(CapabilityError::TooLong {
                secs: expires - not_before,
            });
        }
        check_services(&services)?;
        Ok(Capability {
            operator,
            subject,
            services,
            not_before,
            expires,
            nonce,
            direct: false,
        })
    }

    /// The same capability, granting the direct path too.
    pub fn with_direct(mut self) -> Capability {
        self.direct = true;
        self
    }

    /// The bytes the access key signs (after [`CAPABILITY_DOMAIN`]).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(self.operator.as_bytes());
        match &self.subject {
            Subject::Device(key) => {
                out.push(1);
                out.extend_from_slice(key.as_bytes());
            }
            Subject::Cohort(name) => {
                out.push(2);
                push_short(&mut out, name.as_bytes());
            }
        }
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.expires.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        // At most MAX_SERVICES, checked by `new` and `from_json`.
        out.push(u8::try_from(self.services.len()).unwrap_or(u8::MAX));
        for s in &self.services {
            push_short(&mut out, s.as_str().as_bytes());
        }
        // One trailing byte, only when set: a capability without `direct` has the
        // encoding (and the hash) it had before the field existed.
        if self.direct {
            out.push(DIRECT);
        }
        out
    }

    /// Signs the capability with `access_key`.
    pub fn sign(self, access_key: &SigningKey) -> SignedCapability {
        let signature = access_key.sign(&domain_message(&self.signed_bytes()));
        SignedCapability {
            capability: self,
            signature,
        }
    }
}

/// A capability and the access key's signature (not yet checked: [`crate::decide`] does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCapability {
    /// The content.
    pub capability: Capability,
    /// The access key's signature of [`CAPABILITY_DOMAIN`] ‖ the signed bytes.
    pub signature: Signature,
}

/// The capability file: JSON, every key as 64 hex digits.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapability {
    version: u8,
    operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cohort: Option<String>,
    services: Vec<String>,
    not_before: u64,
    expires: u64,
    nonce: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    direct: bool,
    signature: String,
}

impl SignedCapability {
    /// Whether `access_key` signed this capability.
    pub fn signed_by(&self, access_key: &VerifyingKey) -> bool {
        access_key
            .verify_strict(
                &domain_message(&self.capability.signed_bytes()),
                &self.signature,
            )
            .is_ok()
    }

    /// SHA-256 of the signed bytes and the signature: the name the device records.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.capability.signed_bytes());
        h.update(self.signature.to_bytes());
        h.finalize().into()
    }

    /// The capability file's text.
    pub fn to_json(&self) -> String {
        let c = &self.capability;
        let (device, cohort) = match &c.subject {
            Subject::Device(key) => (Some(hex::encode(key.as_bytes())), None),
            Subject::Cohort(name) => (None, Some(name.clone())),
        };
        let raw = RawCapability {
            version: VERSION,
            operator: hex::encode(c.operator.as_bytes()),
            device,
            cohort,
            services: c.services.iter().map(|s| s.as_str().to_owned()).collect(),
            not_before: c.not_before,
            expires: c.expires,
            nonce: hex::encode(c.nonce),
            direct: c.direct,
            signature: hex::encode(self.signature.to_bytes()),
        };
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_string_pretty(&raw).unwrap_or_default()
    }

    /// Parses a capability file. The lifetime is not checked here (the device decides,
    /// and says so exactly); the form of every field is.
    pub fn from_json(text: &[u8]) -> Result<SignedCapability, CapabilityError> {
        let raw: RawCapability = serde_json::from_slice(text).map_err(CapabilityError::Json)?;
        if raw.version != VERSION {
            return Err(CapabilityError::Version(raw.version));
        }
        let subject = match (raw.device, raw.cohort) {
            (Some(device), None) => Subject::Device(public_key("device", &device)?),
            (None, Some(cohort)) if (1..=64).contains(&cohort.len()) => Subject::Cohort(cohort),
            _ => {
                return Err(CapabilityError::Field {
                    field: "device",
                    what: "exactly one of `device` (a key) or `cohort` (1 to 64 bytes) is needed"
                        .into(),
                })
            }
        };
        let services = raw
            .services
            .iter()
            .map(|s| ServiceName::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        check_services(&services)?;
        let nonce = hex_array::<16>("nonce", &raw.nonce)?;
        let signature = Signature::from_bytes(&hex_array::<64>("signature", &raw.signature)?);
        Ok(SignedCapability {
            capability: Capability {
                operator: public_key("operator", &raw.operator)?,
                subject,
                services,
                not_before: raw.not_before,
                expires: raw.expires,
                nonce,
                direct: raw.direct,
            },
            signature,
        })
    }
}

/// Parses 64 hex digits as an Ed25519 public key.
pub fn public_key(field: &'static str, text: &str) -> Result<VerifyingKey, CapabilityError> {
    let bytes = hex_array::<32>(field, text)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| CapabilityError::Field {
        field,
        what: "not a valid Ed25519 public key".into(),
    })
}

fn hex_array<const N: usize>(field: &'static str, text: &str) -> Result<[u8; N], CapabilityError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text.trim(), &mut out).map_err(|_| CapabilityError::Field {
        field,
        what: format!("needs {} hex digits", N * 2),
    })?;
    Ok(out)
}

fn check_services(services: &[ServiceName]) -> Result<(), CapabilityError> {
    if services.is_empty() || services.len() > MAX_SERVICES {
        return Err(CapabilityError::Field {
            field: "services",
            what: format!("names 1 to {MAX_SERVICES} services"),
        });
    }
    Ok(())
}

fn domain_message(signed: &[u8]) -> Vec<u8> {
    [CAPABILITY_DOMAIN, signed].concat()
}

/// Appends a one-byte length and `bytes` (callers keep `bytes` under 256).
fn push_short(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(bytes.get(..255).unwrap_or(bytes));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::key;

    fn cap() -> Capability {
        Capability::new(
            key(1).verifying_key(),
            Subject::Device(key(2).verifying_key()),
            vec![ServiceName::parse("echo").unwrap()],
            1000,
            2000,
            [9; 16],
        )
        .unwrap()
    }

    #[test]
    fn json_round_trip_keeps_signature_and_hash() {
        let signed = cap().sign(&key(3));
        let back = SignedCapability::from_json(signed.to_json().as_bytes()).unwrap();
        assert_eq!(back, signed);
        assert!(back.signed_by(&key(3).verifying_key()));
        assert!(!back.signed_by(&key(4).verifying_key()));
        assert_eq!(back.hash(), signed.hash());
    }

    /// `direct` is signed: added to a capability that does not grant it, the signature
    /// breaks; a capability without it keeps the encoding it had before the field.
    #[test]
    fn direct_is_signed_and_absent_by_default() {
        let plain = cap().sign(&key(3));
        assert!(!plain.to_json().contains("direct"));
        let direct = cap().with_direct().sign(&key(3));
        let back = SignedCapability::from_json(direct.to_json().as_bytes()).unwrap();
        assert!(back.capability.direct && back.signed_by(&key(3).verifying_key()));
        assert_ne!(back.hash(), plain.hash());
        let forged = plain
            .to_json()
            .replace("\"signature\"", "\"direct\": true,\n  \"signature\"");
        let forged = SignedCapability::from_json(forged.as_bytes()).unwrap();
        assert!(forged.capability.direct);
        assert!(!forged.signed_by(&key(3).verifying_key()));
    }

    #[test]
    fn an_edited_field_breaks_the_signature() {
        let signed = cap().sign(&key(3));
        let text = signed
            .to_json()
            .replace("\"expires\": 2000", "\"expires\": 2600");
        let edited = SignedCapability::from_json(text.as_bytes()).unwrap();
        assert_eq!(edited.capability.expires, 2600);
        assert!(!edited.signed_by(&key(3).verifying_key()));
    }

    #[test]
    fn too_long_and_empty_lifetimes_are_refused_at_grant() {
        let long = Capability::new(
            key(1).verifying_key(),
            Subject::Cohort("lab".into()),
            vec![ServiceName::parse("echo").unwrap()],
            0,
            MAX_LIFETIME_SECS + 1,
            [0; 16],
        );
        assert!(
            matches!(long, Err(CapabilityError::TooLong { secs }) if secs == MAX_LIFETIME_SECS + 1)
        );
        let empty = Capability::new(
            key(1).verifying_key(),
            Subject::Cohort("lab".into()),
            vec![ServiceName::parse("echo").unwrap()],
            5,
            5,
            [0; 16],
        );
        assert!(matches!(empty, Err(CapabilityError::Empty { .. })));
    }

    #[test]
    fn bad_files_name_the_field() {
        let text = cap()
            .sign(&key(3))
            .to_json()
            .replace("\"echo\"", "\"Echo!\"");
        let err = SignedCapability::from_json(text.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                CapabilityError::Field {
                    field: "services",
                    ..
                }
            ),
            "{err}"
        );
        let err = SignedCapability::from_json(b"{\"version\": 2}").unwrap_err();
        assert!(matches!(err, CapabilityError::Json(_)), "{err}");
    }
}
