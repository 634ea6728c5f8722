//! Writing a release's rollout waves (`x-limpet-waves`, see `limpet_fleet_api::waves`) into
//! the signed targets metadata (vendor side: `limpet publish --wave`, `limpet repo waves`).
//!
//! Rules kept here:
//! - The field is written only as a whole that `limpet_fleet_api::waves::WavesField` reads
//!   back: what a device would refuse is refused here first, naming the release and field.
//! - `hold_keys` and `max_hold_secs` belong to the whole field: given, they replace what is
//!   listed; not given, the listed ones stay; a first field must give `max_hold_secs`.
//! - The other releases' entries are kept as they are.

use limpet_fleet_api::waves::{RawReleaseWaves, RawWave, WavesField, WAVES_FIELD};
use serde_json::{Map, Value};

/// One release's waves and the field-wide settings to write with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavesSpec {
    /// The release's entry.
    pub release: RawReleaseWaves,
    /// The fleet servers' hold keys (64 hex digits each); `None` keeps the listed ones.
    pub hold_keys: Option<Vec<String>>,
    /// The longest a hold may delay a release; `None` keeps the listed value.
    pub max_hold_secs: Option<u64>,
}

/// Waves that cannot be written.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WavesSpecError {
    /// A `--wave` argument is not `SHARE_BP@START`.
    #[error(
        "wave {text:?}: expected SHARE_BP@YYYY-MM-DDTHH:MM:SSZ (e.g. 1000@2026-12-07T00:00:00Z)"
    )]
    Syntax {
        /// The text given.
        text: String,
    },
    /// The field as it would be signed does not validate.
    #[error("the waves would not be accepted by devices")]
    Invalid(#[source] limpet_fleet_api::waves::WavesError),
    /// No `max_hold_secs` given and none listed.
    #[error("targets.json lists no {WAVES_FIELD} yet: give the longest hold (max_hold_secs)")]
    NoMaxHold,
    /// The listed field is not an object.
    #[error("the listed {WAVES_FIELD} is not an object")]
    NotAnObject,
}

/// Parses one wave as given on the command line: `SHARE_BP@START`.
pub fn parse_wave(text: &str) -> Result<RawWave, WavesSpecError> {
    let syntax = || WavesSpecError::Syntax {
        text: text.to_owned(),
    };
    let (share, start) = text.split_once('@').ok_or_else(syntax)?;
    let share_bp = share.trim().parse::<u32>().map_err(|_| syntax())?;
    Ok(RawWave {
        share_bp,
        start: start.trim().to_owned(),
    })
}

/// The whole field after setting `release`'s entry, from the `extra` fields of the current
/// targets metadata, validated as devices will read it.
pub fn merged_field(
    extra: &Map<String, Value>,
    release: &str,
    spec: &WavesSpec,
) -> Result<(Value, WavesField), WavesSpecError> {
    let mut field = match extra.get(WAVES_FIELD) {
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(WavesSpecError::NotAnObject),
        None => Map::new(),
    };
    if let Some(keys) = &spec.hold_keys {
        field.insert("hold_keys".into(), keys.clone().into());
    }
    field
        .entry("hold_keys")
        .or_insert_with(|| Value::Array(Vec::new()));
    match spec.max_hold_secs {
        Some(secs) => {
            field.insert("max_hold_secs".into(), secs.into());
        }
        None if field.contains_key("max_hold_secs") => {}
        None => return Err(WavesSpecError::NoMaxHold),
    }
    let releases = field
        .entry("releases")
        .or_insert_with(|| Value::Object(Map::new()));
    let entry = serde_json::to_value(&spec.release).map_err(|_| WavesSpecError::NotAnObject)?;
    match releases {
        Value::Object(map) => {
            map.insert(release.to_owned(), entry);
        }
        _ => return Err(WavesSpecError::NotAnObject),
    }
    let value = Value::Object(field);
    let mut check = Map::new();
    check.insert(WAVES_FIELD.to_owned(), value.clone());
    let parsed = WavesField::from_targets(&check)
        .map_err(WavesSpecError::Invalid)?
        .ok_or(WavesSpecError::NotAnObject)?;
    if !parsed.releases.contains_key(release) {
        return Err(WavesSpecError::NotAnObject);
    }
    Ok((value, parsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use limpet_fleet_api::waves::{HoldPolicy, WavesError};

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn spec(waves: &[&str], max_hold: Option<u64>) -> WavesSpec {
        WavesSpec {
            release: RawReleaseWaves {
                emergency: false,
                waves: waves.iter().map(|w| parse_wave(w).unwrap()).collect(),
            },
            hold_keys: Some(vec![KEY.into()]),
            max_hold_secs: max_hold,
        }
    }

    #[test]
    fn a_release_is_added_beside_the_listed_ones() {
        let first = spec(
            &["2000@2026-12-07T00:00:00Z", "8000@2026-12-08T00:00:00Z"],
            Some(3600),
        );
        let (value, _) = merged_field(&Map::new(), "thermostat/1.3.0", &first).unwrap();
        let mut extra = Map::new();
        extra.insert(WAVES_FIELD.into(), value);
        let mut second = spec(&["10000@2026-12-09T00:00:00Z"], None);
        second.hold_keys = None;
        second.release.emergency = true;
        let (_, field) = merged_field(&extra, "thermostat/1.4.0", &second).unwrap();
        assert_eq!(field.max_hold_secs, 3600);
        assert_eq!(field.hold_keys.len(), 1);
        assert_eq!(field.releases["thermostat/1.3.0"].waves().len(), 2);
        assert_eq!(
            field.releases["thermostat/1.4.0"].holds,
            HoldPolicy::IgnoreHolds
        );
    }

    #[test]
    fn what_devices_would_refuse_is_refused_naming_the_release() {
        assert_eq!(
            parse_wave("half@tomorrow"),
            Err(WavesSpecError::Syntax {
                text: "half@tomorrow".into()
            })
        );
        assert_eq!(
            merged_field(
                &Map::new(),
                "thermostat/1.3.0",
                &spec(&["10000@2026-12-07T00:00:00Z"], None)
            ),
            Err(WavesSpecError::NoMaxHold)
        );
        match merged_field(
            &Map::new(),
            "thermostat/1.3.0",
            &spec(&["5000@2026-12-07T00:00:00Z"], Some(60)),
        ) {
            Err(WavesSpecError::Invalid(WavesError::Release { release, problem })) => {
                assert_eq!(release, "thermostat/1.3.0");
                assert!(problem.contains("add up to 5000"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        let mut bad_key = spec(&["10000@2026-12-07T00:00:00Z"], Some(60));
        bad_key.hold_keys = Some(vec!["zz".into()]);
        assert!(matches!(
            merged_field(&Map::new(), "thermostat/1.3.0", &bad_key),
            Err(WavesSpecError::Invalid(WavesError::Malformed { .. }))
        ));
        assert!(matches!(
            merged_field(
                &Map::new(),
                "thermostat/1.3.0",
                &spec(&["10000@2026-12-07T00:00:00Z"], Some(91 * 86_400))
            ),
            Err(WavesSpecError::Invalid(WavesError::Malformed { .. }))
        ));
    }
}
