//! Holds: "hold release R for scope S until T", signed by the fleet server's hold key.
//!
//! A hold is the only thing the fleet server can tell a device, and it can only delay: it
//! never names anything to install. Wire form (in the check-in answer and `GET
//! /api/v1/holds`):
//!
//! ```json
//! {"hold": {"release": "thermostat/1.3.0", "scope": {"kind": "all"},
//!           "issued": 1796000000, "until": 1796600000, "reason": "..."},
//!  "key": "<hold key, 64 hex>", "signature": "<128 hex>"}
//! ```
//!
//! `scope` is `{"kind": "all"}`, `{"kind": "wave", "wave": N}` or `{"kind": "device",
//! "device": "<64 hex>"}`. The signature is Ed25519 over [`SIGNING_CONTEXT`] and the
//! canonical JSON of `hold`.
//!
//! Rules kept here:
//! - The server never signs a hold longer than `max_hold` ([`sign_hold`] refuses it).
//! - A device honours a hold only when its key is one of the `hold_keys` of the signed
//!   waves, its signature verifies, it names the device's release and scope, and the
//!   release is not an emergency one ([`evaluate`]). Even then it lasts at most `max_hold`
//!   from its issue time and from the device's own trusted time, whichever ends first.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use limpet_tuf::UnixTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::waves::{HoldPolicy, Waves, WavesField};

/// What the hold key signs before the canonical hold.
pub const SIGNING_CONTEXT: &[u8] = b"limpet-fleet-hold-v1\0";

/// The longest reason a hold carries.
const MAX_REASON: usize = 1024;

/// What a hold covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Scope {
    /// Every device.
    All,
    /// The devices of one wave.
    Wave {
        /// The wave's index.
        wave: usize,
    },
    /// One device.
    Device {
        /// Its key, hex.
        device: String,
    },
}

/// The statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    /// The release held.
    pub release: String,
    /// Who is held.
    pub scope: Scope,
    /// When the hold was signed, seconds since the epoch.
    pub issued: i64,
    /// When it ends, seconds since the epoch.
    pub until: i64,
    /// Why.
    pub reason: String,
}

/// A signed hold, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHold {
    /// The statement.
    pub hold: Hold,
    /// The hold key, hex.
    pub key: String,
    /// The signature, hex.
    pub signature: String,
}

/// A hold that cannot be signed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HoldError {
    /// Longer than `max_hold` allows.
    #[error("hold of {release} for {secs} s is longer than max_hold ({max_hold_secs} s)")]
    TooLong {
        /// The release.
        release: String,
        /// The hold's length.
        secs: i64,
        /// The limit.
        max_hold_secs: u64,
    },
    /// Ends before it starts, names no release, or has an oversized reason.
    #[error("hold of {release:?}: {problem}")]
    Invalid {
        /// The release.
        release: String,
        /// What is wrong.
        problem: String,
    },
}

fn message(hold: &Hold) -> Vec<u8> {
    let mut m = SIGNING_CONTEXT.to_vec();
    // A Hold has only strings and integers: its canonical form always exists.
    let value = serde_json::to_value(hold).unwrap_or(Value::Null);
    m.extend_from_slice(&limpet_tuf::canonical::to_canonical(&value).unwrap_or_default());
    m
}

/// Signs a hold with the server's hold key, refusing one longer than `max_hold_secs`.
pub fn sign_hold(
    hold: Hold,
    key: &SigningKey,
    max_hold_secs: u64,
) -> Result<SignedHold, HoldError> {
    let invalid = |problem: &str| HoldError::Invalid {
        release: hold.release.clone(),
        problem: problem.into(),
    };
    if !crate::waves::valid_release(&hold.release) {
        return Err(invalid("not a release name model/version"));
    }
    if hold.reason.len() > MAX_REASON {
        return Err(invalid("reason longer than 1024 bytes"));
    }
    let secs = hold.until.saturating_sub(hold.issued);
    if secs <= 0 {
        return Err(invalid("ends before it is issued"));
    }
    if u64::try_from(secs).map_or(true, |s| s > max_hold_secs) {
        return Err(HoldError::TooLong {
            release: hold.release,
            secs,
            max_hold_secs,
        });
    }
    let signature = hex::encode(key.sign(&message(&hold)).to_bytes());
    Ok(SignedHold {
        hold,
        key: hex::encode(key.verifying_key().as_bytes()),
        signature,
    })
}

/// What a device makes of a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The device does not install the release before this time.
    HoldUntil(UnixTime),
    /// The hold does not apply, and why.
    Ignore(Ignored),
}

/// Why a hold does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Its key is not among the signed `hold_keys`.
    UnknownKey,
    /// Its signature does not verify.
    BadSignature,
    /// It names another release.
    OtherRelease,
    /// Its scope does not include this device.
    OtherScope,
    /// The release is an emergency release.
    EmergencyRelease,
    /// It has ended.
    Expired,
}

/// What a device with key `device` makes of `signed` for `release` at its trusted time `now`,
/// given the verified waves field of the targets metadata.
pub fn evaluate(
    signed: &SignedHold,
    field: &WavesField,
    waves: &Waves,
    release: &str,
    device: &[u8; 32],
    now: UnixTime,
) -> Decision {
    let Some(key) = crate::report::parse_device_key(&signed.key) else {
        return Decision::Ignore(Ignored::UnknownKey);
    };
    if !field.hold_keys.contains(&key) {
        return Decision::Ignore(Ignored::UnknownKey);
    }
    let sig: Option<[u8; 64]> = hex::decode(&signed.signature)
        .ok()
        .and_then(|b| b.try_into().ok());
    let verified = sig.is_some_and(|s| {
        VerifyingKey::verify(&key, &message(&signed.hold), &Signature::from_bytes(&s)).is_ok()
    });
    if !verified {
        return Decision::Ignore(Ignored::BadSignature);
    }
    let hold = &signed.hold;
    if hold.release != release {
        return Decision::Ignore(Ignored::OtherRelease);
    }
    let applies = match &hold.scope {
        Scope::All => true,
        Scope::Wave { wave } => waves.wave_of(device, release) == *wave,
        Scope::Device { device: d } => *d == hex::encode(device),
    };
    if !applies {
        return Decision::Ignore(Ignored::OtherScope);
    }
    if waves.holds == HoldPolicy::IgnoreHolds {
        return Decision::Ignore(Ignored::EmergencyRelease);
    }
    let max = i64::try_from(field.max_hold_secs).unwrap_or(i64::MAX);
    let until = hold
        .until
        .min(hold.issued.saturating_add(max))
        .min(now.as_secs().saturating_add(max));
    if now.as_secs() >= until {
        return Decision::Ignore(Ignored::Expired);
    }
    Decision::HoldUntil(UnixTime::from_secs(until))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waves::{RawReleaseWaves, RawWave};
    use std::collections::BTreeMap;

    const R: &str = "thermostat/1.3.0";
    const DAY: i64 = 86_400;
    const T0: i64 = 1_800_000_000;

    fn server_key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    fn setup(emergency: bool) -> (WavesField, Waves) {
        let raw = RawReleaseWaves {
            emergency,
            waves: vec![
                RawWave {
                    share_bp: 5000,
                    start: "2027-01-15T08:00:00Z".into(),
                },
                RawWave {
                    share_bp: 5000,
                    start: "2027-01-16T08:00:00Z".into(),
                },
            ],
        };
        let waves = Waves::from_raw(R, &raw).unwrap();
        let field = WavesField {
            hold_keys: vec![server_key().verifying_key()],
            max_hold_secs: 7 * 86_400,
            releases: BTreeMap::from([(R.to_owned(), waves.clone())]),
        };
        (field, waves)
    }

    fn hold(scope: Scope, days: i64) -> Hold {
        Hold {
            release: R.into(),
            scope,
            issued: T0,
            until: T0 + days * DAY,
            reason: "wave 0: 3 of 5 devices rolled back".into(),
        }
    }

    fn now(secs: i64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    #[test]
    fn a_valid_hold_delays_its_release() {
        let (field, waves) = setup(false);
        let signed = sign_hold(hold(Scope::All, 2), &server_key(), field.max_hold_secs).unwrap();
        assert_eq!(
            evaluate(&signed, &field, &waves, R, &[1; 32], now(T0 + 10)),
            Decision::HoldUntil(now(T0 + 2 * DAY))
        );
        assert_eq!(
            evaluate(&signed, &field, &waves, R, &[1; 32], now(T0 + 2 * DAY)),
            Decision::Ignore(Ignored::Expired)
        );
        assert_eq!(
            evaluate(
                &signed,
                &field,
                &waves,
                "thermostat/1.4.0",
                &[1; 32],
                now(T0)
            ),
            Decision::Ignore(Ignored::OtherRelease)
        );
    }

    #[test]
    fn the_server_refuses_to_sign_a_hold_beyond_max_hold() {
        let err = sign_hold(hold(Scope::All, 8), &server_key(), 7 * 86_400).unwrap_err();
        assert!(matches!(err, HoldError::TooLong { secs, .. } if secs == 8 * DAY));
        assert!(matches!(
            sign_hold(hold(Scope::All, 0), &server_key(), 7 * 86_400),
            Err(HoldError::Invalid { .. })
        ));
    }

    #[test]
    fn a_device_caps_a_hold_signed_beyond_max_hold() {
        // A compromised hold key signs a hold of a year: the device still waits only max_hold.
        let (field, waves) = setup(false);
        let long = sign_hold(hold(Scope::All, 365), &server_key(), u64::MAX).unwrap();
        assert_eq!(
            evaluate(&long, &field, &waves, R, &[1; 32], now(T0)),
            Decision::HoldUntil(now(T0 + 7 * DAY))
        );
        // Issued "in the future" to stretch it: capped from the device's own time as well.
        let mut future = hold(Scope::All, 365);
        future.issued = T0 + 300 * DAY;
        let future = sign_hold(future, &server_key(), u64::MAX).unwrap();
        assert_eq!(
            evaluate(&future, &field, &waves, R, &[1; 32], now(T0)),
            Decision::HoldUntil(now(T0 + 7 * DAY))
        );
    }

    #[test]
    fn forged_or_foreign_holds_are_ignored() {
        let (field, waves) = setup(false);
        let other = SigningKey::from_bytes(&[4; 32]);
        let foreign = sign_hold(hold(Scope::All, 2), &other, u64::MAX).unwrap();
        assert_eq!(
            evaluate(&foreign, &field, &waves, R, &[1; 32], now(T0)),
            Decision::Ignore(Ignored::UnknownKey)
        );
        let mut forged = sign_hold(hold(Scope::All, 2), &server_key(), u64::MAX).unwrap();
        forged.hold.release = "thermostat/1.2.0".into();
        assert_eq!(
            evaluate(
                &forged,
                &field,
                &waves,
                "thermostat/1.2.0",
                &[1; 32],
                now(T0)
            ),
            Decision::Ignore(Ignored::BadSignature)
        );
    }

    #[test]
    fn scopes_and_emergency_releases() {
        let (field, waves) = setup(false);
        let device = [1u8; 32];
        let wave = waves.wave_of(&device, R);
        let mine = sign_hold(hold(Scope::Wave { wave }, 1), &server_key(), u64::MAX).unwrap();
        let theirs = sign_hold(
            hold(Scope::Wave { wave: 1 - wave }, 1),
            &server_key(),
            u64::MAX,
        )
        .unwrap();
        assert!(matches!(
            evaluate(&mine, &field, &waves, R, &device, now(T0)),
            Decision::HoldUntil(_)
        ));
        assert_eq!(
            evaluate(&theirs, &field, &waves, R, &device, now(T0)),
            Decision::Ignore(Ignored::OtherScope)
        );
        let one = sign_hold(
            hold(
                Scope::Device {
                    device: hex::encode([2u8; 32]),
                },
                1,
            ),
            &server_key(),
            u64::MAX,
        )
        .unwrap();
        assert_eq!(
            evaluate(&one, &field, &waves, R, &device, now(T0)),
            Decision::Ignore(Ignored::OtherScope)
        );
        let (field, waves) = setup(true);
        let all = sign_hold(hold(Scope::All, 1), &server_key(), u64::MAX).unwrap();
        assert_eq!(
            evaluate(&all, &field, &waves, R, &device, now(T0)),
            Decision::Ignore(Ignored::EmergencyRelease)
        );
    }
}
