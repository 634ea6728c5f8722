//! Revoking capabilities before they expire: a list of capability hashes signed by the
//! access key, carried to the device by its relay (docs/remote-access.md, "Revocation").
//!
//! ```json
//! {"version": 1, "issued": 1800000000, "revoked": ["<capability hash, 64 hex>", ...],
//!  "signature": "<access key's Ed25519 signature, 128 hex>"}
//! ```
//!
//! Rules this module keeps:
//! - The signature covers [`CONTEXT`], `issued` as a big-endian u64, then each hash (32
//!   bytes), never the JSON text; only the access key pinned in the image makes a list the
//!   device takes.
//! - A list replaces the one held only when its `issued` is later: an older list (a relay
//!   replaying one from before a revocation) changes nothing, and is said so.
//! - A list names at most [`MAX_REVOKED`] hashes (it fits one relay frame); a revoked
//!   capability stays listed until it expires.
//! - The device holds the list in memory; its relay sends the newest before every session
//!   request, so a restarted agent has it again before its first session.

use std::collections::BTreeSet;
use std::sync::RwLock;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What the access key signs before the list's fields.
pub const CONTEXT: &[u8] = b"limpet remote-access revocations v1\0";
/// The list's format version.
pub const VERSION: u32 = 1;
/// Most hashes a list names.
pub const MAX_REVOKED: usize = 512;

/// Why a list was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    #[error("not a revocation list: {0}")]
    Json(String),
    #[error("revocation list version {0} is not supported (this build reads version {VERSION})")]
    Version(u32),
    #[error("field `{field}`: {what}")]
    Field { field: &'static str, what: String },
    #[error("the revocation list names {0} capabilities, more than {MAX_REVOKED}")]
    TooMany(usize),
    #[error("the revocation list is not signed by this device's access key")]
    SignedByAnotherKey,
    #[error(
        "the revocation list issued at {issued} is not newer than the one held (issued at {held})"
    )]
    NotNewer { issued: u64, held: u64 },
}

/// A signed list of revoked capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    /// When the access key's holder made it (Unix seconds): later lists replace earlier.
    pub issued: u64,
    /// The revoked capabilities' hashes ([`crate::capability::SignedCapability::hash`]).
    pub revoked: BTreeSet<[u8; 32]>,
    /// The access key's signature of [`RevocationList::signed_bytes`].
    pub signature: Signature,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    issued: u64,
    revoked: Vec<String>,
    signature: String,
}

fn signed_bytes(issued: u64, revoked: &BTreeSet<[u8; 32]>) -> Vec<u8> {
    let mut out = CONTEXT.to_vec();
    out.extend_from_slice(&issued.to_be_bytes());
    for hash in revoked {
        out.extend_from_slice(hash);
    }
    out
}

impl RevocationList {
    /// The list of `revoked`, issued at `issued`, signed with `access_key`.
    pub fn sign(
        issued: u64,
        revoked: BTreeSet<[u8; 32]>,
        access_key: &SigningKey,
    ) -> Result<RevocationList, RevocationError> {
        if revoked.len() > MAX_REVOKED {
            return Err(RevocationError::TooMany(revoked.len()));
        }
        let signature = access_key.sign(&signed_bytes(issued, &revoked));
        Ok(RevocationList {
            issued,
            revoked,
            signature,
        })
    }

    /// Whether `access_key` signed it.
    pub fn signed_by(&self, access_key: &VerifyingKey) -> bool {
        access_key
            .verify_strict(&signed_bytes(self.issued, &self.revoked), &self.signature)
            .is_ok()
    }

    /// The list's JSON file.
    pub fn to_json(&self) -> String {
        let file = File {
            version: VERSION,
            issued: self.issued,
            revoked: self.revoked.iter().map(hex::encode).collect(),
            signature: hex::encode(self.signature.to_bytes()),
        };
        // Numbers and strings only: serializing cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default() + "\n"
    }

    /// Reads a list's JSON file; every error names the field.
    pub fn from_json(text: &[u8]) -> Result<RevocationList, RevocationError> {
        let file: File =
            serde_json::from_slice(text).map_err(|e| RevocationError::Json(e.to_string()))?;
        if file.version != VERSION {
            return Err(RevocationError::Version(file.version));
        }
        if file.revoked.len() > MAX_REVOKED {
            return Err(RevocationError::TooMany(file.revoked.len()));
        }
        let revoked = file
            .revoked
            .iter()
            .map(|h| {
                hex::decode(h)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| RevocationError::Field {
                        field: "revoked",
                        what: format!("{h:?} is not a capability hash of 64 hex digits"),
                    })
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        let signature = hex::decode(&file.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or(RevocationError::Field {
                field: "signature",
                what: "not 128 hex digits".to_owned(),
            })?;
        Ok(RevocationList {
            issued: file.issued,
            revoked,
            signature,
        })
    }
}

/// The list a device holds (none until its relay sends one).
#[derive(Debug, Default)]
pub struct Revocations(RwLock<Option<RevocationList>>);

impl Revocations {
    /// Takes `list` when `access_key` signed it and it is newer than the one held (module
    /// rules); returns how many capabilities it revokes.
    pub fn apply(
        &self,
        list: RevocationList,
        access_key: &VerifyingKey,
    ) -> Result<usize, RevocationError> {
        if !list.signed_by(access_key) {
            return Err(RevocationError::SignedByAnotherKey);
        }
        let mut held = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = held.as_ref() {
            if list.issued <= old.issued {
                return Err(RevocationError::NotNewer {
                    issued: list.issued,
                    held: old.issued,
                });
            }
        }
        let n = list.revoked.len();
        *held = Some(list);
        Ok(n)
    }

    /// The held list's JSON text, if a list is held (what the agent gives PID 1 with a
    /// pinhole request, limpet-install-api's `PinholeAsk`).
    pub fn held_json(&self) -> Option<String> {
        let held = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.as_ref().map(RevocationList::to_json)
    }

    /// The held list's issue time, when `hash` is revoked by it.
    pub fn revoked(&self, hash: &[u8; 32]) -> Option<u64> {
        let held = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.as_ref()
            .filter(|l| l.revoked.contains(hash))
            .map(|l| l.issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    /// A list round-trips through its file and verifies; an edited field breaks it.
    #[test]
    fn a_list_round_trips_and_an_edit_breaks_its_signature() {
        let access = key(1);
        let list = RevocationList::sign(100, [[7u8; 32], [9u8; 32]].into(), &access).unwrap();
        let back = RevocationList::from_json(list.to_json().as_bytes()).unwrap();
        assert_eq!(back, list);
        assert!(back.signed_by(&access.verifying_key()));
        let edited = list.to_json().replace("\"issued\": 100", "\"issued\": 101");
        let edited = RevocationList::from_json(edited.as_bytes()).unwrap();
        assert!(!edited.signed_by(&access.verifying_key()));
    }

    /// Attacks on the device's list: one signed by another key, and an older list replayed
    /// (to undo a revocation) are refused, each exactly; the held list stays.
    #[test]
    fn another_signer_and_an_older_list_are_refused() {
        let access = key(1);
        let held = Revocations::default();
        assert_eq!(held.revoked(&[7; 32]), None);
        let old = RevocationList::sign(100, BTreeSet::new(), &access).unwrap();
        let new = RevocationList::sign(200, [[7u8; 32]].into(), &access).unwrap();
        assert_eq!(held.apply(new.clone(), &access.verifying_key()), Ok(1));
        assert_eq!(held.revoked(&[7; 32]), Some(200));
        assert_eq!(
            held.apply(old, &access.verifying_key()),
            Err(RevocationError::NotNewer {
                issued: 100,
                held: 200
            })
        );
        assert_eq!(
            held.apply(new, &access.verifying_key())
                .unwrap_err()
                .to_string(),
            "the revocation list issued at 200 is not newer than the one held (issued at 200)"
        );
        let forged = RevocationList::sign(300, BTreeSet::new(), &key(2)).unwrap();
        assert_eq!(
            held.apply(forged, &access.verifying_key()),
            Err(RevocationError::SignedByAnotherKey)
        );
        assert_eq!(held.revoked(&[7; 32]), Some(200));
    }

    #[test]
    fn bad_files_name_the_field() {
        let e = RevocationList::from_json(
            br#"{"version":1,"issued":1,"revoked":["ab"],"signature":""}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `revoked`: \"ab\" is not a capability hash of 64 hex digits"
        );
        let e =
            RevocationList::from_json(br#"{"version":2,"issued":1,"revoked":[],"signature":""}"#)
                .unwrap_err();
        assert!(
            e.to_string().starts_with("revocation list version 2"),
            "{e}"
        );
        let too_many: BTreeSet<[u8; 32]> = (0..=MAX_REVOKED)
            .map(|i| {
                let mut h = [0u8; 32];
                h[..8].copy_from_slice(&(i as u64).to_be_bytes());
                h
            })
            .collect();
        assert_eq!(
            RevocationList::sign(1, too_many, &key(1)).unwrap_err(),
            RevocationError::TooMany(MAX_REVOKED + 1)
        );
        // The largest list fits one relay frame (with its tag byte).
        let full: BTreeSet<[u8; 32]> = (0..MAX_REVOKED)
            .map(|i| [u8::try_from(i % 256).unwrap(); 32])
            .enumerate()
            .map(|(i, mut h)| {
                h[0] = u8::try_from(i / 256).unwrap();
                h
            })
            .collect();
        let json = RevocationList::sign(1, full, &key(1)).unwrap().to_json();
        assert!(json.len() < crate::frame::MAX_FRAME, "{}", json.len());
    }
}
