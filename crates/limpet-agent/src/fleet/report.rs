//! The check-in report, from PID 1's status and what the agent itself last did. Pure.
//!
//! Rules kept here:
//! - PID 1's A/B record decides over the agent's memory: a release the record shows as the
//!   last failure is `rolled-back` (with the record's reason), one that runs committed is
//!   `installed`, one staged or on trial is `downloaded`; an install error is what the
//!   agent saw.
//! - `seq` never goes backwards: at least one above the last one sent, and at least the
//!   trusted time in seconds, so a device whose stored number was lost still reports
//!   above what the server stored.

use limpet_fleet_api::report::{AbRecord, AbState, LastUpdate, Outcome, Report, Slot};
use limpet_install_api::DeviceStatus;
use serde::{Deserialize, Serialize};

/// What the agent last did, kept in its state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// `downloaded` (staged as a trial) or `install-error`.
    pub outcome: Outcome,
    /// The version.
    pub version: String,
    /// Why it failed, for an install error.
    pub reason: Option<String>,
}

/// The last update's outcome for the report.
pub fn last_update(model: &str, attempt: Option<&Attempt>, status: &DeviceStatus) -> LastUpdate {
    let failure = status.record.as_ref().and_then(|r| r.last_failure.as_ref());
    let release = |v: &str| Some(format!("{model}/{v}"));
    let rolled_back = |f: &limpet_install_api::FailureFacts| LastUpdate {
        outcome: Outcome::RolledBack,
        release: release(&f.version),
        reason: Some(f.reason.clone()),
    };
    let Some(a) = attempt else {
        return match failure {
            Some(f) => rolled_back(f),
            None => LastUpdate {
                outcome: Outcome::None,
                release: None,
                reason: None,
            },
        };
    };
    let outcome = match failure {
        Some(f) if f.version == a.version => return rolled_back(f),
        _ if a.outcome == Outcome::InstallError => Outcome::InstallError,
        _ if status.running_version == a.version && !status.on_trial => Outcome::Installed,
        _ => Outcome::Downloaded,
    };
    LastUpdate {
        outcome,
        release: release(&a.version),
        reason: if outcome == Outcome::InstallError {
            a.reason.clone()
        } else {
            None
        },
    }
}

/// The next sequence number after `last`, at trusted time `now_secs`.
pub fn next_seq(last: u64, now_secs: i64) -> u64 {
    last.saturating_add(1)
        .max(u64::try_from(now_secs).unwrap_or(0))
}

/// The report, or `None` when PID 1 gives no A/B record (an older PID 1).
pub fn report(
    device: &str,
    seq: u64,
    time: i64,
    status: &DeviceStatus,
    last_update: LastUpdate,
) -> Option<Report> {
    let record = status.record.as_ref()?;
    let active = match record.active_slot.as_str() {
        "a" => Slot::A,
        "b" => Slot::B,
        _ => return None,
    };
    let state = if status.on_trial {
        AbState::Trying
    } else if last_update.outcome == Outcome::RolledBack {
        AbState::RolledBack
    } else {
        AbState::Committed
    };
    Some(Report {
        device: device.to_owned(),
        seq,
        time,
        running: status.running_version.clone(),
        other: record.other_version.clone(),
        ab: AbRecord { active, state },
        last_update,
        boot_count: record.boot_count,
        remote_sessions: status.remote_sessions.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use limpet_install_api::{FailureFacts, RecordFacts};

    fn status(running: &str, on_trial: bool, failed: Option<&str>) -> DeviceStatus {
        DeviceStatus {
            running_version: running.into(),
            running_length: 1,
            inactive_capacity: 1,
            floor: "1.0.0".into(),
            highest_failed: failed.map(Into::into),
            trial: None,
            on_trial,
            time_floor: None,
            earliest_time: None,
            support_until: None,
            device_key: Some("ab".repeat(32)),
            remote_sessions: Vec::new(),
            record: Some(Box::new(RecordFacts {
                active_slot: "b".into(),
                other_version: Some("1.0.0".into()),
                last_failure: failed.map(|v| FailureFacts {
                    version: v.into(),
                    reason: "the health check reported failure".into(),
                    boot_count: 3,
                }),
                boot_count: 4,
            })),
            owner_mode: None,
        }
    }

    fn staged(v: &str) -> Attempt {
        Attempt {
            outcome: Outcome::Downloaded,
            version: v.into(),
            reason: None,
        }
    }

    #[test]
    fn the_record_decides_the_outcome() {
        let m = "thermostat";
        let none = last_update(m, None, &status("1.0.0", false, None));
        assert_eq!((none.outcome, none.release), (Outcome::None, None));
        let trial = last_update(m, Some(&staged("1.1.0")), &status("1.1.0", true, None));
        assert_eq!(trial.outcome, Outcome::Downloaded);
        let done = last_update(m, Some(&staged("1.1.0")), &status("1.1.0", false, None));
        assert_eq!(done.outcome, Outcome::Installed);
        assert_eq!(done.release.as_deref(), Some("thermostat/1.1.0"));
        let back = last_update(
            m,
            Some(&staged("1.1.0")),
            &status("1.0.0", false, Some("1.1.0")),
        );
        assert_eq!(back.outcome, Outcome::RolledBack);
        assert_eq!(
            back.reason.as_deref(),
            Some("the health check reported failure")
        );
        // A rollback the agent never saw staged (its state lost) is still reported.
        let lost = last_update(m, None, &status("1.0.0", false, Some("1.1.0")));
        assert_eq!(lost.outcome, Outcome::RolledBack);
        let err = Attempt {
            outcome: Outcome::InstallError,
            version: "1.2.0".into(),
            reason: Some("PID 1 refused finish".into()),
        };
        let e = last_update(m, Some(&err), &status("1.0.0", false, Some("1.1.0")));
        assert_eq!(
            (e.outcome, e.reason.as_deref()),
            (Outcome::InstallError, Some("PID 1 refused finish"))
        );
    }

    #[test]
    fn the_report_carries_the_record_and_verifies_once_signed() {
        let s = status("1.0.0", false, Some("1.1.0"));
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let device = hex::encode(key.verifying_key().as_bytes());
        let r = report(
            &device,
            next_seq(7, 3),
            1_800_000_000,
            &s,
            last_update("thermostat", None, &s),
        )
        .unwrap();
        assert_eq!(r.seq, 8);
        assert_eq!(
            r.ab,
            AbRecord {
                active: Slot::B,
                state: AbState::RolledBack
            }
        );
        assert_eq!((r.other.as_deref(), r.boot_count), (Some("1.0.0"), 4));
        let body = serde_json::to_vec(&limpet_fleet_api::report::sign(&r, &key).unwrap()).unwrap();
        assert_eq!(limpet_fleet_api::report::verify(&body).unwrap().report, r);
        assert_eq!(next_seq(5, 1_800_000_000), 1_800_000_000);
        let mut old = s.clone();
        old.record = None;
        assert!(report(&device, 1, 0, &old, last_update("thermostat", None, &old)).is_none());
    }

    /// The remote-access sessions PID 1 answers in `Status` are the report's, as given
    /// (PID 1 signs the report only when they are exactly its record).
    #[test]
    fn the_report_carries_pid1_s_remote_sessions() {
        use limpet_fleet_api::report::{RemoteSession, SessionEvent};
        let mut st = status("1.0.0", false, None);
        st.remote_sessions = vec![RemoteSession {
            event: SessionEvent::Start,
            at: 1_800_000_000,
            operator: "ab".repeat(32),
            capability: "cd".repeat(32),
            service: "echo".into(),
        }];
        let none = last_update("m", None, &st);
        let r = report(&"ef".repeat(32), 1, 0, &st, none).unwrap();
        assert_eq!(r.remote_sessions, st.remote_sessions);
    }
}
