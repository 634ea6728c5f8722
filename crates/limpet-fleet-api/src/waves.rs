//! Rollout waves, as the signed TUF targets metadata states them (`x-limpet-waves`), and the
//! wave a device is in.
//!
//! The field sits in the top-level `targets.json`'s `signed` object, like
//! `x-limpet-support-until`, so only the targets keys (the keys that decide what devices
//! install) can write it:
//!
//! ```json
//! "x-limpet-waves": {
//!   "hold_keys": ["<Ed25519 public key of the fleet server, 64 hex digits>"],
//!   "max_hold_secs": 604800,
//!   "releases": {
//!     "thermostat/1.3.0": {
//!       "emergency": false,
//!       "waves": [
//!         {"share_bp": 100,  "start": "2026-12-07T00:00:00Z"},
//!         {"share_bp": 900,  "start": "2026-12-08T00:00:00Z"},
//!         {"share_bp": 9000, "start": "2026-12-10T00:00:00Z"}
//!       ]
//!     }
//!   }
//! }
//! ```
//!
//! - `share_bp`: the wave's share of the fleet in basis points (1/10,000; canonical JSON has
//!   no fractions). The shares of a release add up to exactly 10,000.
//! - `start`: when the wave may install, UTC as TUF writes `expires`; never earlier than the
//!   wave before it.
//! - `hold_keys`: the keys whose holds a device honours ([`crate::hold`]); `max_hold_secs`:
//!   the longest a hold can delay a release (at most [`MAX_HOLD_LIMIT`]).
//! - `emergency`: the release ignores holds (its waves still apply).
//!
//! Rules kept here:
//! - A device's wave is a pure function of its public key and the release name
//!   ([`bucket`], [`Waves::wave_of`]): no server chooses who goes first.
//! - Anything malformed is an error naming the release and the field, never read as
//!   "no waves".

use std::collections::BTreeMap;

use limpet_tuf::UnixTime;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The field of `targets.json`'s `signed` object holding the waves.
pub const WAVES_FIELD: &str = "x-limpet-waves";

/// All shares of a release add up to this: basis points.
pub const WHOLE_FLEET_BP: u32 = 10_000;

/// The longest `max_hold_secs` the metadata may give: 90 days. A longer one is refused, so a
/// signing mistake cannot hand the fleet server the power to freeze devices for years.
pub const MAX_HOLD_LIMIT: u64 = 90 * 86_400;

/// The most waves a release may have.
pub const MAX_WAVES: usize = 64;

const BUCKET_CONTEXT: &[u8] = b"limpet-wave-v1\0";

/// Waves that cannot be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WavesError {
    /// The field is not of the documented form.
    #[error("{WAVES_FIELD}: {problem}")]
    Malformed {
        /// What is wrong.
        problem: String,
    },
    /// A release's entry is wrong.
    #[error("{WAVES_FIELD} of release {release:?}: {problem}")]
    Release {
        /// The release.
        release: String,
        /// What is wrong.
        problem: String,
    },
}

/// One wave as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWave {
    /// The share, basis points.
    pub share_bp: u32,
    /// The start, `YYYY-MM-DDTHH:MM:SSZ`.
    pub start: String,
}

/// A release's entry as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReleaseWaves {
    /// Whether the release ignores holds.
    #[serde(default)]
    pub emergency: bool,
    /// The waves, in order.
    pub waves: Vec<RawWave>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    hold_keys: Vec<String>,
    max_hold_secs: u64,
    releases: BTreeMap<String, RawReleaseWaves>,
}

/// One wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wave {
    /// The share, basis points.
    pub share_bp: u32,
    /// When it may install.
    pub start: UnixTime,
}

/// Whether a release ignores holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HoldPolicy {
    /// Holds apply (the default).
    #[default]
    Honour,
    /// An emergency release: holds do not apply.
    IgnoreHolds,
}

/// The validated waves of one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waves {
    /// The waves, in order, shares adding up to [`WHOLE_FLEET_BP`].
    waves: Vec<Wave>,
    /// Whether holds apply.
    pub holds: HoldPolicy,
}

/// The validated field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavesField {
    /// The keys whose holds devices honour.
    pub hold_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// The longest a hold may delay a release, seconds.
    pub max_hold_secs: u64,
    /// Per release.
    pub releases: BTreeMap<String, Waves>,
}

/// Whether `release` is a release name: `model/version`, each part 1 to 128 characters of
/// letters, digits, `.`, `-`, `_`, `+`, not `.` or `..`.
pub fn valid_release(release: &str) -> bool {
    let mut parts = release.split('/');
    let (Some(model), Some(version), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    [model, version].iter().all(|p| {
        !p.is_empty()
            && p.len() <= 128
            && *p != "."
            && *p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    })
}

/// A device's place in a release's rollout: a number in `0..10_000` from SHA-256 of the
/// device key and the release name.
pub fn bucket(device_key: &[u8; 32], release: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(BUCKET_CONTEXT);
    h.update(device_key);
    h.update(release.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 2^64 mod 10,000 is 1,616: the bias towards low buckets is below 1e-15.
    let bucket = u64::from_be_bytes(first) % u64::from(WHOLE_FLEET_BP);
    u32::try_from(bucket).unwrap_or(0)
}

impl Waves {
    /// Validates one release's entry.
    pub fn from_raw(release: &str, raw: &RawReleaseWaves) -> Result<Self, WavesError> {
        let err = |problem: String| WavesError::Release {
            release: release.to_owned(),
            problem,
        };
        if !valid_release(release) {
            return Err(err("not a release name model/version".into()));
        }
        if raw.waves.is_empty() || raw.waves.len() > MAX_WAVES {
            return Err(err(format!("1 to {MAX_WAVES} waves expected")));
        }
        let mut waves = Vec::with_capacity(raw.waves.len());
        let mut total = 0u32;
        for (i, w) in raw.waves.iter().enumerate() {
            if w.share_bp == 0 {
                return Err(err(format!("wave {i}: share_bp is 0")));
            }
            total = total.saturating_add(w.share_bp);
            let start = UnixTime::parse(&w.start).ok_or_else(|| {
                err(format!(
                    "wave {i}: start {:?} is not YYYY-MM-DDTHH:MM:SSZ",
                    w.start
                ))
            })?;
            if let Some(prev) = waves.last().map(|p: &Wave| p.start) {
                if start < prev {
                    return Err(err(format!("wave {i} starts before wave {}", i - 1)));
                }
            }
            waves.push(Wave {
                share_bp: w.share_bp,
                start,
            });
        }
        if total != WHOLE_FLEET_BP {
            return Err(err(format!(
                "shares add up to {total} basis points, not {WHOLE_FLEET_BP}"
            )));
        }
        Ok(Waves {
            waves,
            holds: if raw.emergency {
                HoldPolicy::IgnoreHolds
            } else {
                HoldPolicy::Honour
            },
        })
    }

    /// The waves, in order.
    pub fn waves(&self) -> &[Wave] {
        &self.waves
    }

    /// The wave (index) of a device for this release.
    pub fn wave_of(&self, device_key: &[u8; 32], release: &str) -> usize {
        let b = bucket(device_key, release);
        let mut upper = 0u32;
        for (i, w) in self.waves.iter().enumerate() {
            upper += w.share_bp;
            if b < upper {
                return i;
            }
        }
        // Unreachable with shares adding up to 10,000; the last wave is the safe answer.
        self.waves.len().saturating_sub(1)
    }

    /// Whether a device may install the release at `now` as far as its wave goes.
    pub fn may_start(&self, device_key: &[u8; 32], release: &str, now: UnixTime) -> bool {
        self.waves
            .get(self.wave_of(device_key, release))
            .is_some_and(|w| now >= w.start)
    }

    /// The entry as written (what the fleet server stores for a rollout).
    pub fn to_raw(&self) -> RawReleaseWaves {
        RawReleaseWaves {
            emergency: self.holds == HoldPolicy::IgnoreHolds,
            waves: self
                .waves
                .iter()
                .map(|w| RawWave {
                    share_bp: w.share_bp,
                    start: w.start.to_string(),
                })
                .collect(),
        }
    }
}

impl WavesField {
    /// The field among the fields of verified top-level targets metadata
    /// (`Targets::extra`); `None` when there is none.
    pub fn from_targets(extra: &Map<String, Value>) -> Result<Option<Self>, WavesError> {
        let Some(value) = extra.get(WAVES_FIELD) else {
            return Ok(None);
        };
        let raw: RawField =
            serde_json::from_value(value.clone()).map_err(|e| WavesError::Malformed {
                problem: e.to_string(),
            })?;
        if raw.max_hold_secs > MAX_HOLD_LIMIT {
            return Err(WavesError::Malformed {
                problem: format!(
                    "max_hold_secs {} is above the limit {MAX_HOLD_LIMIT}",
                    raw.max_hold_secs
                ),
            });
        }
        let mut hold_keys = Vec::new();
        for k in &raw.hold_keys {
            let key = crate::report::parse_device_key(k).ok_or_else(|| WavesError::Malformed {
                problem: format!("hold key {k:?} is not an Ed25519 public key in 64 hex digits"),
            })?;
            hold_keys.push(key);
        }
        let mut releases = BTreeMap::new();
        for (name, entry) in &raw.releases {
            releases.insert(name.clone(), Waves::from_raw(name, entry)?);
        }
        Ok(Some(WavesField {
            hold_keys,
            max_hold_secs: raw.max_hold_secs,
            releases,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> UnixTime {
        UnixTime::parse(s).unwrap()
    }

    fn three_waves() -> Value {
        json!({
            "hold_keys": [hex::encode(ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key().as_bytes())],
            "max_hold_secs": 604800,
            "releases": {"thermostat/1.3.0": {"waves": [
                {"share_bp": 100, "start": "2026-12-07T00:00:00Z"},
                {"share_bp": 900, "start": "2026-12-08T00:00:00Z"},
                {"share_bp": 9000, "start": "2026-12-10T00:00:00Z"}
            ]}}
        })
    }

    fn field(v: Value) -> Result<Option<WavesField>, WavesError> {
        let mut m = Map::new();
        m.insert(WAVES_FIELD.into(), v);
        WavesField::from_targets(&m)
    }

    #[test]
    fn parses_the_documented_form() {
        let f = field(three_waves()).unwrap().unwrap();
        assert_eq!(f.max_hold_secs, 604_800);
        assert_eq!(f.hold_keys.len(), 1);
        let w = &f.releases["thermostat/1.3.0"];
        assert_eq!(w.waves().len(), 3);
        assert_eq!(w.holds, HoldPolicy::Honour);
        assert_eq!(w.waves()[1].start, t("2026-12-08T00:00:00Z"));
        assert_eq!(
            Waves::from_raw("thermostat/1.3.0", &w.to_raw()).unwrap(),
            *w
        );
        assert_eq!(WavesField::from_targets(&Map::new()), Ok(None));
    }

    #[test]
    fn refuses_malformed_waves_naming_the_release() {
        let cases = [
            (json!([]), "1 to 64 waves"),
            (
                json!([{"share_bp": 5000, "start": "2026-12-07T00:00:00Z"}]),
                "add up to 5000",
            ),
            (
                json!([{"share_bp": 0, "start": "2026-12-07T00:00:00Z"}, {"share_bp": 10000, "start": "2026-12-07T00:00:00Z"}]),
                "share_bp is 0",
            ),
            (
                json!([{"share_bp": 5000, "start": "2026-12-08T00:00:00Z"}, {"share_bp": 5000, "start": "2026-12-07T00:00:00Z"}]),
                "starts before",
            ),
            (
                json!([{"share_bp": 10000, "start": "tomorrow"}]),
                "not YYYY",
            ),
        ];
        for (waves, expect) in cases {
            let mut v = three_waves();
            v["releases"]["thermostat/1.3.0"]["waves"] = waves;
            match field(v) {
                Err(WavesError::Release { release, problem }) => {
                    assert_eq!(release, "thermostat/1.3.0");
                    assert!(problem.contains(expect), "{problem}");
                }
                other => panic!("{expect}: {other:?}"),
            }
        }
        let mut v = three_waves();
        v["max_hold_secs"] = json!(MAX_HOLD_LIMIT + 1);
        assert!(matches!(field(v), Err(WavesError::Malformed { .. })));
        let mut v = three_waves();
        v["hold_keys"] = json!(["zz"]);
        assert!(matches!(field(v), Err(WavesError::Malformed { .. })));
        let mut v = three_waves();
        v["surprise"] = json!(1);
        assert!(matches!(field(v), Err(WavesError::Malformed { .. })));
    }

    #[test]
    fn a_devices_wave_follows_its_key_and_the_release_and_shares_hold() {
        let f = field(three_waves()).unwrap().unwrap();
        let w = &f.releases["thermostat/1.3.0"];
        let mut counts = [0usize; 3];
        for i in 0u32..20_000 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            let wave = w.wave_of(&key, "thermostat/1.3.0");
            assert_eq!(wave, w.wave_of(&key, "thermostat/1.3.0"));
            counts[wave] += 1;
        }
        // 1 %, 9 %, 90 % of 20,000 devices, within a wide margin of chance.
        assert!((120..=280).contains(&counts[0]), "{counts:?}");
        assert!((1_600..=2_000).contains(&counts[1]), "{counts:?}");
        assert!((17_700..=18_300).contains(&counts[2]), "{counts:?}");
        // Another release puts devices into other places.
        let moved = (0u32..1000)
            .filter(|i| {
                let mut key = [0u8; 32];
                key[..4].copy_from_slice(&i.to_be_bytes());
                bucket(&key, "thermostat/1.3.0") != bucket(&key, "thermostat/1.4.0")
            })
            .count();
        assert!(moved > 990, "{moved}");
    }

    #[test]
    fn a_device_starts_only_when_its_wave_has() {
        let f = field(three_waves()).unwrap().unwrap();
        let w = &f.releases["thermostat/1.3.0"];
        let key = (0u32..)
            .map(|i| {
                let mut key = [0u8; 32];
                key[..4].copy_from_slice(&i.to_be_bytes());
                key
            })
            .find(|k| w.wave_of(k, "thermostat/1.3.0") == 2)
            .unwrap();
        assert!(!w.may_start(&key, "thermostat/1.3.0", t("2026-12-08T12:00:00Z")));
        assert!(w.may_start(&key, "thermostat/1.3.0", t("2026-12-10T00:00:00Z")));
    }

    #[test]
    fn release_names() {
        assert!(valid_release("thermostat/1.3.0+build.2"));
        for bad in ["thermostat", "a/b/c", "../1.0", "a/", "a/b c", "/1.0"] {
            assert!(!valid_release(bad), "{bad}");
        }
    }
}
