//! Which published version to install: a pure function of the trusted targets metadata and
//! the device's status.
//!
//! Rules kept here:
//! - Only index targets of this device (`D/V/slot.cidx`) whose signed custom agrees with
//!   their name, names this device, this CPU target and index format 1 are candidates;
//!   any other entry is skipped (it cannot be installed here, and one bad entry must not
//!   stop updates).
//! - A candidate must be above the running version, the anti-rollback floor and the highest
//!   version that ever failed its trial, by semver precedence (build metadata ignored).
//!   PID 1 checks the floor and failures again on `Begin`.
//! - Of the candidates, the highest wins; there is no stepping through versions.

use std::collections::BTreeMap;

use limpet_install_api::DeviceStatus;
use limpet_repo::target::{index_target_version, SlotTarget};
use limpet_state::Version;
use limpet_tuf::metadata::TargetFile;

use crate::error::AgentError;

/// The version to install and where its index is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The index target's name, `D/V/slot.cidx`.
    pub index_target: String,
    /// What the repository signed about the slot.
    pub slot: SlotTarget,
}

/// The versions nothing may go at or below: running, floor, highest failed.
fn bars(status: &DeviceStatus) -> Result<Vec<Version>, AgentError> {
    let parse = |field: &'static str, text: &str| {
        Version::parse(text).map_err(|source| AgentError::Status {
            field,
            text: text.to_owned(),
            source,
        })
    };
    let mut out = vec![
        parse("running_version", &status.running_version)?,
        parse("floor", &status.floor)?,
    ];
    if let Some(failed) = &status.highest_failed {
        out.push(parse("highest_failed", failed)?);
    }
    Ok(out)
}

/// The highest version in `targets` this device may install, if any.
pub fn choose(
    targets: &BTreeMap<String, TargetFile>,
    device: &str,
    cpu: &str,
    status: &DeviceStatus,
) -> Result<Option<Candidate>, AgentError> {
    let bars = bars(status)?;
    let mut best: Option<Candidate> = None;
    for (name, file) in targets {
        if index_target_version(name, device).is_none() {
            continue;
        }
        let Ok(slot) = SlotTarget::from_index_custom(name, file.custom.as_ref()) else {
            continue;
        };
        if slot.device != device || slot.target != cpu {
            continue;
        }
        if !bars.iter().all(|b| slot.version.precedence(b).is_gt()) {
            continue;
        }
        if best
            .as_ref()
            .is_some_and(|b| !slot.version.precedence(&b.slot.version).is_gt())
        {
            continue;
        }
        best = Some(Candidate {
            index_target: name.clone(),
            slot,
        });
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use limpet_repo::target::index_target_name;

    fn entry(device: &str, version: &str, cpu: &str) -> (String, TargetFile) {
        let slot = SlotTarget {
            device: device.into(),
            version: Version::parse(version).unwrap(),
            target: cpu.into(),
            verity_root: [1; 32],
            slot_length: 4096,
            slot_sha256: [2; 32],
        };
        (
            index_target_name(device, version),
            TargetFile {
                length: 80,
                hashes: BTreeMap::from([("sha256".into(), "00".repeat(32))]),
                custom: Some(slot.index_custom()),
                extra: Default::default(),
            },
        )
    }

    fn status(running: &str, floor: &str, failed: Option<&str>) -> DeviceStatus {
        DeviceStatus {
            running_version: running.into(),
            running_length: 4096,
            inactive_capacity: 1 << 20,
            floor: floor.into(),
            highest_failed: failed.map(Into::into),
            trial: None,
            on_trial: false,
            time_floor: None,
            earliest_time: None,
            support_until: None,
            device_key: None,
            remote_sessions: Vec::new(),
            record: None,
            owner_mode: None,
        }
    }

    fn chosen(targets: &[(String, TargetFile)], s: &DeviceStatus) -> Option<String> {
        let map: BTreeMap<_, _> = targets.iter().cloned().collect();
        choose(&map, "hello", "x86_64", s)
            .unwrap()
            .map(|c| c.slot.version.to_string())
    }

    #[test]
    fn the_highest_eligible_version_wins() {
        let t = [
            entry("hello", "1.0.0", "x86_64"),
            entry("hello", "1.10.0", "x86_64"),
            entry("hello", "1.9.0", "x86_64"),
            entry("hello", "3.0.0", "aarch64"),
            entry("other", "4.0.0", "x86_64"),
        ];
        let s = status("1.0.0", "1.0.0", None);
        assert_eq!(chosen(&t, &s).as_deref(), Some("1.10.0"));
        // Failed versions and everything below them are never tried again.
        let s = status("1.0.0", "1.0.0", Some("1.10.0"));
        assert_eq!(chosen(&t, &s), None);
        // The floor bars versions the running one does not.
        let s = status("1.0.0", "1.9.0", None);
        assert_eq!(chosen(&t, &s).as_deref(), Some("1.10.0"));
        let s = status("1.10.0", "1.0.0", None);
        assert_eq!(chosen(&t, &s), None);
    }

    #[test]
    fn build_metadata_is_not_a_newer_version() {
        let t = [entry("hello", "1.0.0+rebuilt", "x86_64")];
        assert_eq!(chosen(&t, &status("1.0.0+orig", "1.0.0", None)), None);
    }

    #[test]
    fn entries_whose_name_and_custom_disagree_are_skipped() {
        let (_, file) = entry("hello", "9.0.0", "x86_64");
        let t = [(index_target_name("hello", "2.0.0"), file)];
        assert_eq!(chosen(&t, &status("1.0.0", "1.0.0", None)), None);
    }

    #[test]
    fn a_bad_status_is_an_error() {
        let map = BTreeMap::new();
        assert!(matches!(
            choose(&map, "hello", "x86_64", &status("x", "1.0.0", None)),
            Err(AgentError::Status {
                field: "running_version",
                ..
            })
        ));
    }
}
