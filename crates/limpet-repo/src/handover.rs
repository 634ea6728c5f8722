//! The owner handover statement (issue 13 item 4): signed by the update repository's root
//! keys, it says that after a date a device model may take a new trust root chosen by its
//! owner.
//!
//! ```json
//! { "signed": { "_type": "limpet-handover", "spec_version": "1.0",
//!               "device": "thermostat", "after": "2035-01-01T00:00:00Z" },
//!   "signatures": [ { "keyid": "…", "sig": "…" } ] }
//! ```
//!
//! The envelope is TUF's, the `_type` is no TUF role's, so no TUF client can take the
//! statement for metadata (limpet-tuf's `Repository::sign_with_root_keys` refuses to sign a
//! role's `_type`). The root keys sign it because they are the keys that decide who the
//! device trusts, and are kept offline: a vendor can sign it at release time and publish it
//! whenever it likes.
//!
//! Rules kept here ([`verify_handover`]):
//! - The signatures are checked first, by limpet-tuf's one threshold function, against the
//!   root role of the device's trusted root (its keys and threshold): unique keys counted.
//! - Only then is the content read: `_type`, `spec_version`, the model (another model's
//!   statement is refused), the date.
//! - The date must be at or below the device's trusted time, which the caller gives: the
//!   agent gives the earliest time (rule 2 of docs/end-of-life.md: the floor of rule 1 plus
//!   the uptime counted since, raised by Roughtime), never the clock: a device without a
//!   floor refuses. An RTC set forward cannot hand a device over.
//! - An owner's request ([`OwnerRequest`]) carries the statement, the owner's first root
//!   metadata (self-signed, checked as TUF checks a root) and the owner's image key (an
//!   Ed25519 SubjectPublicKeyInfo PEM, as `limpet keygen` writes `image.pub`).

use limpet_tuf::canonical::to_canonical;
use limpet_tuf::keys::{PublicKey, Scheme};
use limpet_tuf::metadata::{Role, Root, Signature};
use limpet_tuf::UnixTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// The statement's `_type`.
pub const HANDOVER_TYPE: &str = "limpet-handover";

/// A verified statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The device model it hands over.
    pub device: String,
    /// From when the device may take its owner's root.
    pub after: UnixTime,
}

/// The `signed` object.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Signed {
    #[serde(rename = "_type")]
    type_: String,
    spec_version: String,
    device: String,
    after: String,
}

/// The envelope.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    signed: Value,
    signatures: Vec<Signature>,
}

/// Why a statement or a request is refused.
#[derive(Debug, Error)]
pub enum HandoverError {
    /// Not a statement envelope.
    #[error("the handover statement is not a signed envelope: {reason}")]
    Envelope {
        /// What serde or the canonical form said.
        reason: String,
    },
    /// The root keys' threshold did not sign it (a wrong key, too few keys).
    #[error("the handover statement is not signed by the threshold of the device's trusted root keys (root version {root_version})")]
    Signature {
        /// The trusted root's version.
        root_version: u64,
        /// What the threshold check said.
        #[source]
        source: limpet_tuf::Error,
    },
    /// Signed, but not a handover statement this device reads.
    #[error("the handover statement's signed part is not one: {reason}")]
    Content {
        /// What is wrong.
        reason: String,
    },
    /// A statement for another model.
    #[error("the handover statement is for device {statement:?}, this device is {device:?}")]
    Device {
        /// The model it names.
        statement: String,
        /// This device's model.
        device: String,
    },
    /// The device's trusted time (its earliest time: the floor plus counted uptime, raised
    /// by Roughtime; never the clock) has not reached the date.
    #[error("the handover statement takes effect after {after}; the device's trusted time is {floor} (the clock does not count)")]
    NotYet {
        /// The date.
        after: UnixTime,
        /// The device's trusted time.
        floor: UnixTime,
    },
    /// The device keeps no time floor, so no date can be known to have passed.
    #[error("the device keeps no time floor: a handover date cannot be known to have passed")]
    NoFloor,
    /// The owner's root metadata does not verify as a root.
    #[error("the owner's root metadata")]
    OwnerRoot {
        /// Why.
        #[source]
        source: limpet_tuf::Error,
    },
    /// The owner's root is the trusted root the statement came from.
    #[error(
        "the owner's root has the same root keys as the vendor's: nothing would be handed over"
    )]
    SameRoot,
    /// The owner's image key is not an Ed25519 public key.
    #[error("the owner's image key: {reason}")]
    ImageKey {
        /// Why.
        reason: String,
    },
}

/// The moment a `YYYY-MM-DD` begins (00:00 UTC). `None` unless a real calendar date.
pub fn day_start(day: &str) -> Option<UnixTime> {
    (day.len() == 10)
        .then(|| UnixTime::parse(&format!("{day}T00:00:00Z")))
        .flatten()
}

/// The `signed` object of a statement for `device` taking effect at `after`.
pub fn statement(device: &str, after: UnixTime) -> Value {
    serde_json::json!({
        "_type": HANDOVER_TYPE,
        "spec_version": "1.0",
        "device": device,
        "after": after.to_string(),
    })
}

/// Verifies a statement ([module rules](self)) against the device's trusted `root`, for
/// model `device`, with the device's time `floor`.
pub fn verify_handover(
    bytes: &[u8],
    root: &Root,
    device: &str,
    floor: Option<UnixTime>,
) -> Result<Handover, HandoverError> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| HandoverError::Envelope {
            reason: e.to_string(),
        })?;
    let handover = check_signed(&envelope, root)?;
    if handover.device != device {
        return Err(HandoverError::Device {
            statement: handover.device,
            device: device.to_owned(),
        });
    }
    let floor = floor.ok_or(HandoverError::NoFloor)?;
    if floor < handover.after {
        return Err(HandoverError::NotYet {
            after: handover.after,
            floor,
        });
    }
    Ok(handover)
}

/// Step 1, the signatures against the trusted root's root role; step 2, the content.
fn check_signed(envelope: &Envelope, root: &Root) -> Result<Handover, HandoverError> {
    let canonical = to_canonical(&envelope.signed).map_err(|e| HandoverError::Envelope {
        reason: e.to_string(),
    })?;
    let signature = |source| HandoverError::Signature {
        root_version: root.version,
        source,
    };
    let role_keys = root.role_keys(Role::Root).map_err(signature)?;
    limpet_tuf::verify::verify_threshold(
        HANDOVER_TYPE,
        &root.keys,
        role_keys,
        &canonical,
        &envelope.signatures,
    )
    .map_err(signature)?;
    let signed: Signed =
        serde_json::from_value(envelope.signed.clone()).map_err(|e| HandoverError::Content {
            reason: e.to_string(),
        })?;
    if signed.type_ != HANDOVER_TYPE {
        return Err(HandoverError::Content {
            reason: format!("_type is {:?}, expected {HANDOVER_TYPE:?}", signed.type_),
        });
    }
    if signed.spec_version.split('.').next() != Some("1") {
        return Err(HandoverError::Content {
            reason: format!("unsupported spec_version {:?}", signed.spec_version),
        });
    }
    let after = UnixTime::parse(&signed.after).ok_or_else(|| HandoverError::Content {
        reason: format!("after is {:?}, expected YYYY-MM-DDTHH:MM:SSZ", signed.after),
    })?;
    Ok(Handover {
        device: signed.device,
        after,
    })
}

/// What an owner gives a device whose handover date has passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerRequest {
    /// The vendor's statement, as published.
    pub statement: Value,
    /// The owner's first root metadata (`limpet repo init` writes it as
    /// `metadata/1.root.json`).
    pub root: Value,
    /// The owner's image public key, SubjectPublicKeyInfo PEM (Ed25519).
    pub image_key: String,
}

/// An owner request checked against the device's trusted vendor root, model and floor.
#[derive(Debug, Clone)]
pub struct CheckedRequest {
    /// The vendor's statement, verified.
    pub handover: Handover,
    /// The owner's root, verified as a self-signed root.
    pub owner_root: Root,
    /// The owner's root metadata as given (what the device stores as its new trust anchor).
    pub owner_root_bytes: Vec<u8>,
    /// The owner's image key.
    pub image_key: PublicKey,
}

impl OwnerRequest {
    /// Checks the request: the statement ([`verify_handover`]), the owner's root (verifies
    /// under its own root keys, and is not the vendor's), the image key (Ed25519).
    pub fn check(
        &self,
        vendor_root: &Root,
        device: &str,
        floor: Option<UnixTime>,
    ) -> Result<CheckedRequest, HandoverError> {
        let statement =
            serde_json::to_vec(&self.statement).map_err(|e| HandoverError::Envelope {
                reason: e.to_string(),
            })?;
        let handover = verify_handover(&statement, vendor_root, device, floor)?;
        let owner_root_bytes =
            serde_json::to_vec(&self.root).map_err(|e| HandoverError::Envelope {
                reason: e.to_string(),
            })?;
        let owner_root = limpet_tuf::client::verify_root(&owner_root_bytes)
            .map_err(|source| HandoverError::OwnerRoot { source })?;
        let keys_of = |r: &Root| -> Vec<String> {
            r.role_keys(Role::Root)
                .map(|rk| {
                    rk.keyids
                        .iter()
                        .filter_map(|id| r.keys.get(id))
                        .map(|k| k.keyval.public.clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        let vendor_keys = keys_of(vendor_root);
        if keys_of(&owner_root).iter().any(|k| vendor_keys.contains(k)) {
            return Err(HandoverError::SameRoot);
        }
        let image_key =
            PublicKey::from_spki_pem(&self.image_key).map_err(|e| HandoverError::ImageKey {
                reason: e.to_string(),
            })?;
        if image_key.scheme() != Scheme::Ed25519 {
            return Err(HandoverError::ImageKey {
                reason: format!(
                    "a {:?} key; slots are signed with Ed25519",
                    image_key.scheme()
                ),
            });
        }
        Ok(CheckedRequest {
            handover,
            owner_root,
            owner_root_bytes,
            image_key,
        })
    }
}
