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
//! - A release built in cohorts lists one index per cohort (`D/V/cohort-K/slot.cidx`, its
//!   custom saying `K` of `N`): only the one of this device's cohort is a candidate, the
//!   cohort being [`CohortTag::of_device`] of the identity key and the release's `N`
//!   (cohort 1 for a device without an identity). No server input enters the choice.

use std::collections::BTreeMap;

use limpet_install_api::DeviceStatus;
use limpet_repo::target::{index_target_version, SlotTarget};
use limpet_repo::CohortTag;
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

/// The highest version in `targets` this device may install, if any; `key` is the device
/// identity's public key (PID 1's status), which picks the cohort of a cohort release.
pub fn choose(
    targets: &BTreeMap<String, TargetFile>,
    device: &str,
    cpu: &str,
    status: &DeviceStatus,
    key: Option<&[u8; 32]>,
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
        if let Some(cohort) = slot.cohort {
            // The count was checked when the custom was parsed: this cannot fail.
            if CohortTag::of_device(key, cohort.count()).ok() != Some(cohort) {
                continue;
            }
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
            cohort: None,
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
        choose(&map, "hello", "x86_64", s, None)
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

    /// `entry` of cohort `k` of `n`, under its cohort's name.
    fn cohort_entry(version: &str, k: u32, n: u32) -> (String, TargetFile) {
        let (_, mut file) = entry("hello", version, "x86_64");
        let cohort = CohortTag::new(k, n).unwrap();
        let mut slot = SlotTarget::from_index_custom(
            &index_target_name("hello", version),
            file.custom.as_ref(),
        )
        .unwrap();
        slot.cohort = Some(cohort);
        file.custom = Some(slot.index_custom());
        let name = limpet_repo::target::index_target_name_in("hello", version, Some(cohort));
        (name, file)
    }

    #[test]
    fn a_device_takes_only_its_own_cohorts_index() {
        let mut t: Vec<_> = (1..=4).map(|k| cohort_entry("2.0.0", k, 4)).collect();
        t.push(entry("hello", "1.5.0", "x86_64"));
        let map: BTreeMap<_, _> = t.iter().cloned().collect();
        let s = status("1.0.0", "1.0.0", None);
        for n in 0u8..20 {
            let key = [n; 32];
            let mine = CohortTag::of_device(Some(&key), 4).unwrap();
            let got = choose(&map, "hello", "x86_64", &s, Some(&key))
                .unwrap()
                .unwrap();
            assert_eq!(got.slot.cohort, Some(mine));
            assert_eq!(
                got.index_target,
                format!("hello/2.0.0/cohort-{}/slot.cidx", mine.index())
            );
        }
        // No identity: cohort 1.
        let got = choose(&map, "hello", "x86_64", &s, None).unwrap().unwrap();
        assert_eq!(got.index_target, "hello/2.0.0/cohort-1/slot.cidx");
        // A release missing this device's cohort is not installed by it (it stays on what
        // it runs, or takes a lower release that lists it).
        let key = [3u8; 32];
        let mine = CohortTag::of_device(Some(&key), 4).unwrap().index();
        let partial: BTreeMap<_, _> = t
            .iter()
            .filter(|(name, _)| !name.contains(&format!("cohort-{mine}/")))
            .cloned()
            .collect();
        let got = choose(&partial, "hello", "x86_64", &s, Some(&key)).unwrap();
        assert_eq!(
            got.map(|c| c.index_target).as_deref(),
            Some("hello/1.5.0/slot.cidx")
        );
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
            choose(&map, "hello", "x86_64", &status("x", "1.0.0", None), None),
            Err(AgentError::Status {
                field: "running_version",
                ..
            })
        ));
    }
}
