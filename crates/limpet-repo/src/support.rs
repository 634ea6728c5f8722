//! The support window in the repository: a signed statement that extends the end of support
//! of a device model without a new image.
//!
//! The statement is a field of the top-level `targets.json`'s `signed` object, so it is
//! signed by the targets keys (the keys that already decide what devices install; the
//! timestamp and snapshot keys, which are online and re-sign daily, cannot extend support):
//!
//! ```json
//! "x-limpet-support-until": { "thermostat": "2034-12-31" }
//! ```
//!
//! One entry per device model: the last day of support, as the manifest's `support_until`
//! writes it. Support ends at 00:00 UTC of the next day ([`support_end`]). TUF keeps
//! unknown fields, so python-tuf and other clients read such a repository unchanged.
//!
//! Rules kept here:
//! - Only top-level targets metadata is read ([`SupportStatement::from_targets`] takes
//!   its `signed` fields): the device has verified it with the targets threshold before.
//! - A malformed statement for the device's model is an error naming the model and the
//!   text ([`SupportError`]), never read as "no extension"; other models' entries are not
//!   looked at.
//! - The device never lets a statement shorten what it accepted (limpet-lifecycle's
//!   `TimeState::extend_support`); the publisher refuses to write one that would
//!   ([`crate::publish::extend_support`]).

use limpet_tuf::UnixTime;
use serde_json::{Map, Value};
use thiserror::Error;

/// The field of `targets.json`'s `signed` object holding the statements.
pub const SUPPORT_FIELD: &str = "x-limpet-support-until";

const DAY_SECS: i64 = 86_400;

/// A statement for one device model: its last day of support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportStatement {
    /// The last day, `YYYY-MM-DD`.
    pub last_day: String,
    /// When support ends: 00:00 UTC of the day after `last_day`.
    pub until: UnixTime,
}

/// A statement that cannot be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SupportError {
    /// The field is not an object of model names to dates.
    #[error("targets metadata field {SUPPORT_FIELD} is not an object of device models to dates")]
    NotAnObject,
    /// The entry for the device's model is not a date.
    #[error("{SUPPORT_FIELD} of device {device:?} is {found}, expected a date YYYY-MM-DD")]
    NotADate {
        /// The device model.
        device: String,
        /// What was found, as JSON.
        found: String,
    },
}

/// When support ends for a last day `YYYY-MM-DD`: 00:00 UTC of the next day. `None` when
/// the text is not exactly a real calendar date.
pub fn support_end(last_day: &str) -> Option<UnixTime> {
    if last_day.len() != 10 {
        return None;
    }
    let midnight = UnixTime::parse(&format!("{last_day}T00:00:00Z"))?;
    Some(UnixTime::from_secs(
        midnight.as_secs().checked_add(DAY_SECS)?,
    ))
}

impl SupportStatement {
    /// The statement for `device` among the fields of verified top-level targets metadata
    /// (`Targets::extra`); `None` when there is none.
    pub fn from_targets(
        extra: &Map<String, Value>,
        device: &str,
    ) -> Result<Option<Self>, SupportError> {
        let Some(field) = extra.get(SUPPORT_FIELD) else {
            return Ok(None);
        };
        let entries = field.as_object().ok_or(SupportError::NotAnObject)?;
        let Some(entry) = entries.get(device) else {
            return Ok(None);
        };
        let not_a_date = || SupportError::NotADate {
            device: device.to_owned(),
            found: entry.to_string(),
        };
        let last_day = entry.as_str().ok_or_else(not_a_date)?;
        let until = support_end(last_day).ok_or_else(not_a_date)?;
        Ok(Some(SupportStatement {
            last_day: last_day.to_owned(),
            until,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn extra(v: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(SUPPORT_FIELD.to_owned(), v);
        m
    }

    #[test]
    fn support_ends_at_midnight_after_the_last_day() {
        assert_eq!(
            support_end("2031-12-31").unwrap(),
            UnixTime::parse("2032-01-01T00:00:00Z").unwrap()
        );
        for bad in [
            "2031-02-30",
            "2031-12-31T00:00:00Z",
            "31-12-2031",
            "2031-1-1",
            "",
        ] {
            assert_eq!(support_end(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_the_models_entry_only() {
        let e = extra(json!({"thermostat": "2034-12-31", "other": 5}));
        assert_eq!(
            SupportStatement::from_targets(&e, "thermostat").unwrap(),
            Some(SupportStatement {
                last_day: "2034-12-31".into(),
                until: UnixTime::parse("2035-01-01T00:00:00Z").unwrap()
            })
        );
        assert_eq!(SupportStatement::from_targets(&e, "lamp").unwrap(), None);
        assert_eq!(
            SupportStatement::from_targets(&Map::new(), "thermostat").unwrap(),
            None
        );
    }

    #[test]
    fn a_malformed_statement_is_an_error() {
        assert_eq!(
            SupportStatement::from_targets(&extra(json!(["2034-12-31"])), "t"),
            Err(SupportError::NotAnObject)
        );
        assert_eq!(
            SupportStatement::from_targets(&extra(json!({"t": "next year"})), "t"),
            Err(SupportError::NotADate {
                device: "t".into(),
                found: "\"next year\"".into()
            })
        );
        assert!(SupportStatement::from_targets(&extra(json!({"t": 2034})), "t").is_err());
    }
}
