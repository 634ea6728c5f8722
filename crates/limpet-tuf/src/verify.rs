//! Threshold signature verification: the ONE function every role check goes through.
//!
//! Rules kept here:
//! - Only signatures whose key id is listed for the role AND present in the key map count.
//! - Each distinct public key counts at most once, however many signatures or key ids name
//!   it: a key listed under two key ids, or a signature repeated, is one key. Keys are told
//!   apart by their key material ([`KeyMaterial`]), so one key written two ways (a P-256
//!   point compressed and not, keytype `ecdsa` and its legacy name) is still one key.
//! - Each signature is checked by its key's scheme ([`crate::keys::public`]): a signature in
//!   another scheme's encoding, or by a key object naming a mismatched or unsupported scheme,
//!   does not count; why is logged at debug level.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::keys::{Key, KeyId, KeyMaterial};
use crate::metadata::{RoleKeys, Signature};

/// Verifies that at least `role_keys.threshold` distinct keys of `role_keys`, looked up in
/// `keys`, made a valid signature over `canonical`. `role` names the check in the error.
/// Returns the number of distinct keys that signed.
pub fn verify_threshold(
    role: &str,
    keys: &BTreeMap<KeyId, Key>,
    role_keys: &RoleKeys,
    canonical: &[u8],
    signatures: &[Signature],
) -> Result<u64, Error> {
    // Counted by key material, not by key id: see the module rules.
    let mut counted: BTreeSet<KeyMaterial> = BTreeSet::new();
    for sig in signatures {
        if !role_keys.keyids.contains(&sig.keyid) {
            continue;
        }
        let Some(key) = keys.get(&sig.keyid) else {
            continue;
        };
        let public = match key.public_key() {
            Ok(public) => public,
            Err(e) => {
                tracing::debug!(role, keyid = %sig.keyid, error = %e, "key cannot verify");
                continue;
            }
        };
        let material = public.material();
        if counted.contains(&material) {
            continue;
        }
        let verified = hex::decode(&sig.sig)
            .map_err(|_| crate::keys::SignatureError::Hex)
            .and_then(|bytes| public.verify(canonical, &bytes));
        match verified {
            Ok(()) => {
                counted.insert(material);
            }
            Err(e) => {
                tracing::debug!(role, keyid = %sig.keyid, error = %e, "signature does not count");
            }
        }
    }
    let valid = u64::try_from(counted.len()).unwrap_or(u64::MAX);
    if valid < role_keys.threshold {
        return Err(Error::ThresholdNotMet {
            role: role.to_owned(),
            valid,
            threshold: role_keys.threshold,
        });
    }
    Ok(valid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RoleKey;
    use serde_json::Map;

    fn setup(ids: &[KeyId], threshold: u64) -> RoleKeys {
        RoleKeys {
            keyids: ids.to_vec(),
            threshold,
            extra: Map::new(),
        }
    }

    #[test]
    fn duplicate_signatures_count_once() {
        let k = RoleKey::generate();
        let keys = BTreeMap::from([(k.id().clone(), k.key().clone())]);
        let rk = setup(&[k.id().clone()], 2);
        let sig = Signature {
            keyid: k.id().clone(),
            sig: k.sign_hex(b"msg").unwrap(),
        };
        let err = verify_threshold("targets", &keys, &rk, b"msg", &[sig.clone(), sig]);
        assert!(matches!(
            err,
            Err(Error::ThresholdNotMet {
                valid: 1,
                threshold: 2,
                ..
            })
        ));
    }

    #[test]
    fn one_key_under_two_ids_counts_once() {
        let k = RoleKey::generate();
        let alias = KeyId("alias".into());
        let keys = BTreeMap::from([
            (k.id().clone(), k.key().clone()),
            (alias.clone(), k.key().clone()),
        ]);
        let rk = setup(&[k.id().clone(), alias.clone()], 2);
        let sigs = [
            Signature {
                keyid: k.id().clone(),
                sig: k.sign_hex(b"msg").unwrap(),
            },
            Signature {
                keyid: alias,
                sig: k.sign_hex(b"msg").unwrap(),
            },
        ];
        assert!(matches!(
            verify_threshold("targets", &keys, &rk, b"msg", &sigs),
            Err(Error::ThresholdNotMet { valid: 1, .. })
        ));
    }

    #[test]
    fn two_distinct_keys_meet_threshold_two() {
        let (a, b) = (RoleKey::generate(), RoleKey::generate());
        let keys = BTreeMap::from([
            (a.id().clone(), a.key().clone()),
            (b.id().clone(), b.key().clone()),
        ]);
        let rk = setup(&[a.id().clone(), b.id().clone()], 2);
        let sigs = [
            Signature {
                keyid: a.id().clone(),
                sig: a.sign_hex(b"msg").unwrap(),
            },
            Signature {
                keyid: b.id().clone(),
                sig: b.sign_hex(b"msg").unwrap(),
            },
        ];
        assert_eq!(
            verify_threshold("targets", &keys, &rk, b"msg", &sigs).unwrap(),
            2
        );
        // A valid signature over other bytes does not count.
        assert!(verify_threshold("targets", &keys, &rk, b"other", &sigs).is_err());
    }

    #[test]
    fn unlisted_key_does_not_count() {
        let (a, b) = (RoleKey::generate(), RoleKey::generate());
        let keys = BTreeMap::from([
            (a.id().clone(), a.key().clone()),
            (b.id().clone(), b.key().clone()),
        ]);
        let rk = setup(&[a.id().clone()], 1);
        let sigs = [Signature {
            keyid: b.id().clone(),
            sig: b.sign_hex(b"msg").unwrap(),
        }];
        assert!(matches!(
            verify_threshold("targets", &keys, &rk, b"msg", &sigs),
            Err(Error::ThresholdNotMet { valid: 0, .. })
        ));
    }
}
