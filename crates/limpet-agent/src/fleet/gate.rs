//! Whether the release the TUF metadata offers may be installed now: its wave, then the
//! fleet server's holds. Pure: the signed waves, the holds kept, the device key and the
//! time in, a decision out.
//!
//! Rules kept here:
//! - The gate only ever delays: it answers [`Gate::Go`] or a reason to wait, and takes the
//!   release to judge from the verified TUF targets, never from the fleet server.
//! - A release without an entry in the signed `x-limpet-waves` is not a staged rollout: it
//!   goes at once, and no hold applies to it (no signed `hold_keys` speak for it).
//! - The device's wave comes from its own public key and the release
//!   (`limpet_fleet_api::waves`); a device without an identity has no key to place it, so it
//!   waits for the last wave.
//! - A hold counts only as `limpet_fleet_api::hold::evaluate` allows (a signed hold key, a
//!   verified signature, this release and scope, no emergency release, at most `max_hold`);
//!   the latest end of those that apply is the one kept, every other hold is listed with
//!   why it was ignored.

use limpet_fleet_api::hold::{evaluate, Decision, Ignored, SignedHold};
use limpet_fleet_api::waves::WavesField;
use limpet_tuf::UnixTime;

/// What the gate decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Install now; the wave the device is in, when the release has waves.
    Go {
        /// The device's wave.
        wave: Option<usize>,
    },
    /// The device's wave has not started.
    Wave {
        /// The device's wave (the last one for a device without an identity).
        wave: usize,
        /// When it starts.
        start: UnixTime,
    },
    /// A valid hold of the fleet server applies.
    Held {
        /// Until when (capped at `max_hold`).
        until: UnixTime,
        /// The hold's reason, as signed.
        reason: String,
    },
}

/// The decision and the holds that did not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The decision.
    pub gate: Gate,
    /// Each hold that did not apply (its index in the holds given) and why.
    pub ignored: Vec<(usize, Ignored)>,
}

/// Judges `release` (`model/version`, listed by the verified targets metadata whose
/// `x-limpet-waves` is `field`) for the device with key `device` at trusted time `now`.
pub fn gate(
    field: Option<&WavesField>,
    release: &str,
    device: Option<&[u8; 32]>,
    holds: &[SignedHold],
    now: UnixTime,
) -> Decided {
    let go = |wave| Decided {
        gate: Gate::Go { wave },
        ignored: Vec::new(),
    };
    let Some((field, waves)) = field.and_then(|f| f.releases.get(release).map(|w| (f, w))) else {
        return go(None);
    };
    let last = waves.waves().len().saturating_sub(1);
    let wave = device.map_or(last, |key| waves.wave_of(key, release));
    if let Some(w) = waves.waves().get(wave) {
        if now < w.start {
            return Decided {
                gate: Gate::Wave {
                    wave,
                    start: w.start,
                },
                ignored: Vec::new(),
            };
        }
    }
    let mut held: Option<(UnixTime, String)> = None;
    let mut ignored = Vec::new();
    // A device without a key matches no wave or device scope: a key of zeros stands in.
    let key = device.copied().unwrap_or([0; 32]);
    for (i, hold) in holds.iter().enumerate() {
        match evaluate(hold, field, waves, release, &key, now) {
            Decision::HoldUntil(until) => {
                if held.as_ref().is_none_or(|(u, _)| until > *u) {
                    held = Some((until, hold.hold.reason.clone()));
                }
            }
            Decision::Ignore(why) => ignored.push((i, why)),
        }
    }
    let gate = match held {
        Some((until, reason)) => Gate::Held { until, reason },
        None => Gate::Go { wave: Some(wave) },
    };
    Decided { gate, ignored }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use limpet_fleet_api::hold::{sign_hold, Hold, Scope};
    use limpet_fleet_api::waves::{RawReleaseWaves, RawWave, Waves};
    use std::collections::BTreeMap;

    const R: &str = "thermostat/1.3.0";
    const W0: i64 = 1_800_000_000;
    const W1: i64 = W0 + 3600;

    fn hold_key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    fn field(emergency: bool) -> WavesField {
        let raw = RawReleaseWaves {
            emergency,
            waves: vec![
                RawWave {
                    share_bp: 5000,
                    start: UnixTime::from_secs(W0).to_string(),
                },
                RawWave {
                    share_bp: 5000,
                    start: UnixTime::from_secs(W1).to_string(),
                },
            ],
        };
        WavesField {
            hold_keys: vec![hold_key().verifying_key()],
            max_hold_secs: 86_400,
            releases: BTreeMap::from([(R.to_owned(), Waves::from_raw(R, &raw).unwrap())]),
        }
    }

    /// A device key in wave `wave` of R.
    fn key_in(wave: usize) -> [u8; 32] {
        let f = field(false);
        (0u32..)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..4].copy_from_slice(&i.to_be_bytes());
                k
            })
            .find(|k| f.releases[R].wave_of(k, R) == wave)
            .unwrap()
    }

    fn hold(scope: Scope, issued: i64, secs: i64) -> SignedHold {
        let h = Hold {
            release: R.into(),
            scope,
            issued,
            until: issued + secs,
            reason: "wave 0: 2 of 2 devices rolled back".into(),
        };
        sign_hold(h, &hold_key(), u64::MAX).unwrap()
    }

    fn t(s: i64) -> UnixTime {
        UnixTime::from_secs(s)
    }

    #[test]
    fn a_device_waits_for_its_wave() {
        let f = field(false);
        let (k0, k1) = (key_in(0), key_in(1));
        assert_eq!(
            gate(Some(&f), R, Some(&k0), &[], t(W0 - 1)).gate,
            Gate::Wave {
                wave: 0,
                start: t(W0)
            }
        );
        assert_eq!(
            gate(Some(&f), R, Some(&k0), &[], t(W0)).gate,
            Gate::Go { wave: Some(0) }
        );
        assert_eq!(
            gate(Some(&f), R, Some(&k1), &[], t(W0 + 10)).gate,
            Gate::Wave {
                wave: 1,
                start: t(W1)
            }
        );
        assert_eq!(
            gate(Some(&f), R, Some(&k1), &[], t(W1)).gate,
            Gate::Go { wave: Some(1) }
        );
        // No identity: the last wave.
        assert_eq!(
            gate(Some(&f), R, None, &[], t(W0 + 10)).gate,
            Gate::Wave {
                wave: 1,
                start: t(W1)
            }
        );
        // No waves for the release, or none at all: at once.
        assert_eq!(
            gate(Some(&f), "thermostat/1.4.0", Some(&k1), &[], t(0)).gate,
            Gate::Go { wave: None }
        );
        assert_eq!(
            gate(None, R, Some(&k1), &[], t(0)).gate,
            Gate::Go { wave: None }
        );
    }

    #[test]
    fn a_valid_hold_delays_and_the_longest_counts() {
        let f = field(false);
        let k = key_in(0);
        let holds = [
            hold(Scope::All, W0, 600),
            hold(Scope::Wave { wave: 0 }, W0, 1200),
        ];
        let d = gate(Some(&f), R, Some(&k), &holds, t(W0 + 10));
        assert_eq!(
            d.gate,
            Gate::Held {
                until: t(W0 + 1200),
                reason: "wave 0: 2 of 2 devices rolled back".into()
            }
        );
        assert!(d.ignored.is_empty());
        assert_eq!(
            gate(Some(&f), R, Some(&k), &holds, t(W0 + 1200)).gate,
            Gate::Go { wave: Some(0) }
        );
    }

    #[test]
    fn a_hold_never_shortens_a_wave_and_is_capped_at_max_hold() {
        let f = field(false);
        let k1 = key_in(1);
        // A hold that ends before wave 1 starts changes nothing for wave 1.
        let early = [hold(Scope::All, W0, 60)];
        assert_eq!(
            gate(Some(&f), R, Some(&k1), &early, t(W0 + 30)).gate,
            Gate::Wave {
                wave: 1,
                start: t(W1)
            }
        );
        // A hold of a year lasts max_hold (a day) from its issue.
        let long = [hold(Scope::All, W1, 365 * 86_400)];
        assert_eq!(
            gate(Some(&f), R, Some(&k1), &long, t(W1)).gate,
            Gate::Held {
                until: t(W1 + 86_400),
                reason: "wave 0: 2 of 2 devices rolled back".into()
            }
        );
        assert_eq!(
            gate(Some(&f), R, Some(&k1), &long, t(W1 + 86_400)).gate,
            Gate::Go { wave: Some(1) }
        );
    }

    #[test]
    fn foreign_forged_and_emergency_holds_are_ignored_and_say_why() {
        let k = key_in(0);
        let foreign = sign_hold(
            Hold {
                release: R.into(),
                scope: Scope::All,
                issued: W0,
                until: W0 + 600,
                reason: "x".into(),
            },
            &SigningKey::from_bytes(&[4; 32]),
            u64::MAX,
        )
        .unwrap();
        let mut forged = hold(Scope::All, W0, 600);
        forged.hold.until += 1;
        let other_wave = hold(Scope::Wave { wave: 1 }, W0, 600);
        let holds = [foreign, forged, other_wave];
        let d = gate(Some(&field(false)), R, Some(&k), &holds, t(W0 + 10));
        assert_eq!(d.gate, Gate::Go { wave: Some(0) });
        assert_eq!(
            d.ignored,
            [
                (0, Ignored::UnknownKey),
                (1, Ignored::BadSignature),
                (2, Ignored::OtherScope)
            ]
        );
        let all = [hold(Scope::All, W0, 600)];
        let d = gate(Some(&field(true)), R, Some(&k), &all, t(W0 + 10));
        assert_eq!(d.gate, Gate::Go { wave: Some(0) });
        assert_eq!(d.ignored, [(0, Ignored::EmergencyRelease)]);
    }
}
