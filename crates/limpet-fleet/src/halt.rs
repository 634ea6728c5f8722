//! The automatic halt rule: per wave, a failure share and a minimum number of reports.
//!
//! A rollout's thresholds are checked when it is created ([`Thresholds::new`]). A wave is
//! counted from the devices of that wave that reported on the release since the rollout was
//! created or last resumed ([`Tally`]); each device counts once, by its latest state:
//!
//! - `installed`: a success;
//! - `install-error`, `rolled-back`: a failure of that kind;
//! - `downloaded` with no later report within `report_deadline_secs` (by the server's
//!   clock): a failure of kind "no report"; before the deadline it is pending and not
//!   counted.
//!
//! The rule ([`evaluate`]): a wave halts the rollout when it has at least `min_reports`
//! counted devices AND failures × 10,000 ≥ `max_failure_bp` × counted (the share reaching
//! the threshold halts: "at or above", integers only, no rounding).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The shortest deadline for a report after a download: 1 minute.
pub const MIN_DEADLINE_SECS: u64 = 60;
/// The longest: 30 days.
pub const MAX_DEADLINE_SECS: u64 = 30 * 86_400;

/// Thresholds that are refused at rollout creation.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ThresholdError {
    /// A share outside 1..=10,000 basis points.
    #[error("max_failure_bp {0} is outside 1..=10000 (basis points of a wave's reports)")]
    Share(u32),
    /// No minimum number of reports.
    #[error("min_reports is 0: a single report would decide")]
    MinReports,
    /// A deadline outside the allowed range.
    #[error("report_deadline_secs {0} is outside {MIN_DEADLINE_SECS}..={MAX_DEADLINE_SECS}")]
    Deadline(u64),
}

/// Thresholds as an operator writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholds {
    /// The failure share that halts, basis points.
    pub max_failure_bp: u32,
    /// The fewest counted devices before a wave can halt.
    pub min_reports: u32,
    /// How long after a download a device has to report its outcome.
    pub report_deadline_secs: u64,
}

/// Validated thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds(RawThresholds);

impl Thresholds {
    /// Validates thresholds.
    pub fn new(raw: RawThresholds) -> Result<Self, ThresholdError> {
        if raw.max_failure_bp == 0 || raw.max_failure_bp > 10_000 {
            return Err(ThresholdError::Share(raw.max_failure_bp));
        }
        if raw.min_reports == 0 {
            return Err(ThresholdError::MinReports);
        }
        if !(MIN_DEADLINE_SECS..=MAX_DEADLINE_SECS).contains(&raw.report_deadline_secs) {
            return Err(ThresholdError::Deadline(raw.report_deadline_secs));
        }
        Ok(Thresholds(raw))
    }

    /// The thresholds as written.
    pub fn raw(&self) -> RawThresholds {
        self.0
    }
}

/// A device's latest state for the release, as the tally sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// Downloaded at this server time (seconds), nothing since.
    Downloaded {
        /// When the server received the report.
        at: i64,
    },
    /// Installed and committed.
    Installed,
    /// Installing failed.
    InstallError,
    /// Rolled back by the health gate.
    RolledBack,
}

/// One wave's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Tally {
    /// Installed and committed.
    pub installed: u64,
    /// Failed to install.
    pub install_errors: u64,
    /// Rolled back by the health gate.
    pub rollbacks: u64,
    /// No report within the deadline after a download.
    pub no_reports: u64,
    /// Downloaded, still within the deadline: not counted.
    pub pending: u64,
}

impl Tally {
    /// Adds one device's state at server time `now`.
    pub fn add(&mut self, state: DeviceState, thresholds: &Thresholds, now: i64) {
        match state {
            DeviceState::Installed => self.installed += 1,
            DeviceState::InstallError => self.install_errors += 1,
            DeviceState::RolledBack => self.rollbacks += 1,
            DeviceState::Downloaded { at } => {
                let deadline = i64::try_from(thresholds.0.report_deadline_secs).unwrap_or(i64::MAX);
                if now >= at.saturating_add(deadline) {
                    self.no_reports += 1;
                } else {
                    self.pending += 1;
                }
            }
        }
    }

    /// Failures of every kind.
    pub fn failures(&self) -> u64 {
        self.install_errors + self.rollbacks + self.no_reports
    }

    /// Devices counted: successes and failures, not pending ones.
    pub fn counted(&self) -> u64 {
        self.installed + self.failures()
    }
}

/// What the rule says of a wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Continue,
    /// Halt, for this reason (shown on the dashboard and put in the hold).
    Halt(String),
}

/// The rule for wave `wave` with counts `tally`.
pub fn evaluate(thresholds: &Thresholds, wave: usize, tally: &Tally) -> Verdict {
    let t = thresholds.0;
    let counted = tally.counted();
    if counted < u64::from(t.min_reports) || counted == 0 {
        return Verdict::Continue;
    }
    let failures = tally.failures();
    if u128::from(failures) * 10_000 >= u128::from(t.max_failure_bp) * u128::from(counted) {
        Verdict::Halt(format!(
            "wave {wave}: {failures} of {counted} devices failed ({} rolled back, {} install errors, {} no report within {} s), at or above {} basis points with at least {} reports",
            tally.rollbacks, tally.install_errors, tally.no_reports, t.report_deadline_secs, t.max_failure_bp, t.min_reports
        ))
    } else {
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th(bp: u32, min: u32) -> Thresholds {
        Thresholds::new(RawThresholds {
            max_failure_bp: bp,
            min_reports: min,
            report_deadline_secs: 3600,
        })
        .unwrap()
    }

    fn tally(states: &[DeviceState], now: i64) -> Tally {
        let t = th(2000, 3);
        let mut tally = Tally::default();
        for s in states {
            tally.add(*s, &t, now);
        }
        tally
    }

    #[test]
    fn thresholds_are_validated_at_creation() {
        let ok = RawThresholds {
            max_failure_bp: 2000,
            min_reports: 3,
            report_deadline_secs: 3600,
        };
        assert!(Thresholds::new(ok).is_ok());
        assert_eq!(
            Thresholds::new(RawThresholds {
                max_failure_bp: 0,
                ..ok
            }),
            Err(ThresholdError::Share(0))
        );
        assert_eq!(
            Thresholds::new(RawThresholds {
                max_failure_bp: 10_001,
                ..ok
            }),
            Err(ThresholdError::Share(10_001))
        );
        assert_eq!(
            Thresholds::new(RawThresholds {
                min_reports: 0,
                ..ok
            }),
            Err(ThresholdError::MinReports)
        );
        assert_eq!(
            Thresholds::new(RawThresholds {
                report_deadline_secs: 59,
                ..ok
            }),
            Err(ThresholdError::Deadline(59))
        );
        assert_eq!(
            Thresholds::new(RawThresholds {
                report_deadline_secs: MAX_DEADLINE_SECS + 1,
                ..ok
            }),
            Err(ThresholdError::Deadline(MAX_DEADLINE_SECS + 1))
        );
    }

    #[test]
    fn failures_are_counted_by_kind_and_downloads_time_out() {
        use DeviceState::*;
        let t = tally(
            &[
                Installed,
                InstallError,
                RolledBack,
                Downloaded { at: 1000 },
                Downloaded { at: 4000 },
            ],
            4600,
        );
        assert_eq!(
            t,
            Tally {
                installed: 1,
                install_errors: 1,
                rollbacks: 1,
                no_reports: 1,
                pending: 1
            }
        );
        assert_eq!((t.failures(), t.counted()), (3, 4));
    }

    #[test]
    fn halts_only_with_enough_reports_and_at_the_share() {
        use DeviceState::*;
        let t = th(2000, 3);
        // Two rollbacks of two: below the minimum number of reports.
        assert_eq!(
            evaluate(&t, 0, &tally(&[RolledBack, RolledBack], 0)),
            Verdict::Continue
        );
        // One of five is exactly 20 %: halts (at or above).
        let exact = tally(&[RolledBack, Installed, Installed, Installed, Installed], 0);
        match evaluate(&t, 0, &exact) {
            Verdict::Halt(reason) => assert!(
                reason.starts_with("wave 0: 1 of 5 devices failed (1 rolled back"),
                "{reason}"
            ),
            Verdict::Continue => panic!("20 % of 5 must halt at 2000 bp"),
        }
        // One of six is below 20 %.
        let below = tally(
            &[
                RolledBack, Installed, Installed, Installed, Installed, Installed,
            ],
            0,
        );
        assert_eq!(evaluate(&t, 0, &below), Verdict::Continue);
        // Pending downloads do not count towards the minimum.
        let pending = tally(
            &[RolledBack, Downloaded { at: 0 }, Downloaded { at: 0 }],
            10,
        );
        assert_eq!(evaluate(&t, 1, &pending), Verdict::Continue);
        // ...but once past the deadline they are failures.
        assert!(matches!(
            evaluate(
                &t,
                1,
                &tally(
                    &[RolledBack, Downloaded { at: 0 }, Downloaded { at: 0 }],
                    3600
                )
            ),
            Verdict::Halt(_)
        ));
    }
}
