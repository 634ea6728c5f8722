//! The device part of the status file (`/run/limpet/status.json`, key `system`): which
//! slot and version run, what the other slot holds, the A/B state, the fate of a trial and
//! the device's time (limpet-lifecycle: the floor, the earliest time, the end of support,
//! whether island mode is due and whether the device is in it), and the device's identity
//! (limpet-identity: class, public key and fingerprint, or why there is none).

use limpet_lifecycle::{IslandCause, IslandMode, IslandReason, Keeper};
use limpet_state::{BlockDevice, Slot, State, TrialPhase};
use serde::Serialize;

/// The `system` object of the status file.
#[derive(Debug, Clone, Serialize)]
pub struct SystemStatus {
    /// The slot running now (`a` or `b`).
    pub slot: String,
    /// The running slot's version, from its verified header.
    pub version: String,
    /// The other slot and the version its header claims, if it has a valid signed header;
    /// absent until PID 1 has checked it, just after the tasks first started.
    pub other: Option<OtherSlot>,
    /// The A/B state as stored, if it could be read.
    pub state: Option<StateView>,
    /// Whether this boot is a trial and what became of it.
    pub trial: TrialStatus,
    /// The last install the update agent asked for at this boot, and its outcome.
    pub last_update: Option<UpdateAttempt>,
    /// Interfaces, DNS, and packets the network policy dropped; absent without network.
    pub network: Option<crate::network::NetworkStatus>,
    /// The time record; absent when the slot carries no lifecycle or the state partition
    /// cannot be opened.
    pub time: Option<TimeStatus>,
    /// The device's identity; absent where there is no data partition (`--sim`).
    pub identity: Option<limpet_identity::IdentityStatus>,
    /// The last Roughtime result of each listed server that has one, in the order their
    /// first results came; empty before the first query ends, and without listed servers.
    pub roughtime: Vec<RoughtimeStatus>,
}

/// What the last Roughtime query came to (docs/end-of-life.md#roughtime).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoughtimeStatus {
    /// The server's name (`[lifecycle] roughtime`).
    pub server: String,
    /// What became of it.
    pub result: RoughtimeResult,
    /// The answer's lower bound (midpoint − radius, seconds since 1970), when it passed
    /// every check.
    pub lower: Option<u64>,
    /// The line PID 1 said on the console about it.
    pub detail: String,
    /// When, in milliseconds of uptime.
    pub at_uptime_ms: u64,
}

/// What became of a Roughtime query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoughtimeResult {
    /// A trusted answer raised the earliest time.
    Raised,
    /// A trusted answer at or below the earliest time: nothing changed.
    Unchanged,
    /// A trusted answer, and no time record to raise.
    NoRecord,
    /// The answer failed a check.
    Refused,
    /// No answer after every try.
    NoAnswer,
    /// The request could not be sent.
    Unsent,
}

/// The device's time as the time record has it (docs/end-of-life.md), counted up to the
/// record's last tick: every save (10 minutes of uptime) and every request of the update
/// agent. Times are seconds since 1970 (UTC); spans are seconds of uptime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeStatus {
    /// The time floor (rule 1): never goes back.
    pub floor: u64,
    /// The earliest time the device can prove (rule 2): the floor plus uptime since.
    pub earliest: u64,
    /// The newest signed time verified from the repository, if any.
    pub newest_signed: Option<u64>,
    /// Uptime without fresh signed metadata (rule 5).
    pub since_fresh_secs: u64,
    /// The slot's `freshness`, if it declares one.
    pub freshness_secs: Option<u64>,
    /// The end of support (rule 6): the first second after the last day; absent when the
    /// slot declares none.
    pub support_until: Option<u64>,
    /// Whether `support_until` comes from a signed extension, beyond the slot's own end.
    pub support_extended: bool,
    /// Whether island mode is due (rule 7), and why; absent when it is not.
    pub island_due: Option<IslandDue>,
    /// Whether the device is in island mode, as the record holds it (rule 8): `connected`,
    /// `left` (with the earliest time it left) or `island` (with its cause and since when).
    pub island: IslandStatus,
    /// Whether the record is saved to the state partition (`false`: kept in memory only).
    pub persisted: bool,
}

/// The recorded island mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum IslandStatus {
    /// Never in island mode.
    Connected,
    /// Left island mode at the earliest time `at`; connected since.
    Left { at: u64 },
    /// In island mode since the earliest time `since`, because `cause`.
    Island { cause: IslandCauseView, since: u64 },
}

/// Why island mode began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IslandCauseView {
    SupportEnded,
    Stale,
}

impl From<IslandMode> for IslandStatus {
    fn from(mode: IslandMode) -> Self {
        match mode {
            IslandMode::Connected => IslandStatus::Connected,
            IslandMode::Left { at } => IslandStatus::Left { at: at.as_secs() },
            IslandMode::Island { cause, since } => IslandStatus::Island {
                cause: match cause {
                    IslandCause::SupportEnded => IslandCauseView::SupportEnded,
                    IslandCause::Stale => IslandCauseView::Stale,
                },
                since: since.as_secs(),
            },
        }
    }
}

impl IslandStatus {
    /// The console's line, at every boot: `island mode: ON since @S (cause)`, `island
    /// mode: off (left @T)` or `island mode: off`.
    pub fn line(&self) -> String {
        match self {
            IslandStatus::Connected => "island mode: off".to_owned(),
            IslandStatus::Left { at } => format!("island mode: off (left @{at})"),
            IslandStatus::Island { cause, since } => format!(
                "island mode: ON since @{since} ({}): only the kept tasks and the update agent run, no internet",
                match cause {
                    IslandCauseView::SupportEnded => IslandCause::SupportEnded.as_str(),
                    IslandCauseView::Stale => IslandCause::Stale.as_str(),
                }
            ),
        }
    }
}

/// Why island mode is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum IslandDue {
    /// The earliest time reached the end of support.
    SupportEnded { until: u64, earliest: u64 },
    /// No fresh signed metadata for the slot's `freshness` of uptime.
    Stale {
        since_fresh_secs: u64,
        freshness_secs: u64,
    },
}

impl TimeStatus {
    /// What `keeper` holds now.
    pub fn of<D: BlockDevice>(keeper: &Keeper<D>) -> TimeStatus {
        let state = keeper.state();
        let slot = keeper.slot();
        let support_until = keeper.support_until();
        TimeStatus {
            floor: state.floor().as_secs(),
            earliest: state.earliest().as_secs(),
            newest_signed: state.newest_signed().map(|t| t.as_secs()),
            since_fresh_secs: state.since_fresh().as_secs(),
            freshness_secs: slot.freshness.map(|f| f.as_secs()),
            support_until: support_until.map(|t| t.as_secs()),
            support_extended: support_until > slot.support_until,
            island_due: keeper.island_due().map(|reason| match reason {
                IslandReason::SupportEnded { until, earliest } => IslandDue::SupportEnded {
                    until: until.as_secs(),
                    earliest: earliest.as_secs(),
                },
                IslandReason::Stale {
                    since_fresh,
                    freshness,
                } => IslandDue::Stale {
                    since_fresh_secs: since_fresh.as_secs(),
                    freshness_secs: freshness.as_secs(),
                },
            }),
            island: keeper.island().into(),
            persisted: keeper.persists(),
        }
    }

    /// One line for the console: the floor, the earliest time, the end of support and
    /// whether island mode is due (times as `@seconds`, as `date -d @SECS` takes them).
    pub fn line(&self) -> String {
        let support = match (self.support_until, self.support_extended) {
            (None, _) => "no end of support".to_owned(),
            (Some(until), false) => format!("support until @{until} (the slot's)"),
            (Some(until), true) => format!("support until @{until} (extended by signed metadata)"),
        };
        let island = match &self.island_due {
            None => "island mode not due".to_owned(),
            Some(IslandDue::SupportEnded { until, .. }) => {
                format!("island mode DUE: support ended at @{until}")
            }
            Some(IslandDue::Stale {
                since_fresh_secs,
                freshness_secs,
            }) => format!(
                "island mode DUE: {since_fresh_secs} s of uptime without fresh signed metadata (freshness {freshness_secs} s)"
            ),
        };
        format!(
            "time floor @{}, earliest @{}; {support}; {island}{}",
            self.floor,
            self.earliest,
            if self.persisted {
                ""
            } else {
                " (time record in memory only)"
            }
        )
    }
}

/// One install attempt through the install socket.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateAttempt {
    pub version: Option<String>,
    /// `staged` (verified and marked as a trial), `reboot requested`, or the error.
    pub outcome: String,
    /// Boot time of the outcome, in milliseconds.
    pub at_ms: u64,
}

/// The slot that is not running.
#[derive(Debug, Clone, Serialize)]
pub struct OtherSlot {
    pub slot: String,
    pub version: Option<String>,
    /// Why no version is shown (no valid header).
    pub error: Option<String>,
}

/// A trial slot's fate at this boot.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum TrialStatus {
    /// This boot is of the committed slot.
    None,
    /// A trial under the health gate: committed after `health_ms` of every task up.
    Watching { health_ms: u64, timeout_ms: u64 },
    /// The trial passed its health gate and is now the committed slot.
    Committed,
    /// Committing failed (the state could not be written); the trial stays pending.
    CommitFailed { error: String },
    /// The trial failed its health gate; the device reboots into the committed slot.
    RolledBack { reason: String },
}

/// The stored A/B state, for people and tools.
#[derive(Debug, Clone, Serialize)]
pub struct StateView {
    pub committed_slot: String,
    pub committed_version: String,
    pub floor: String,
    // Wire name kept: status.json is read by tools on and off the device.
    #[serde(rename = "pending_try")]
    pub trial: Option<TrialView>,
    /// The last update that failed its trial, and why.
    pub last_failure: Option<FailureView>,
    pub highest_failed: Option<String>,
    pub boot_count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialView {
    pub slot: String,
    pub version: String,
    pub boots_left: u8,
    pub booted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureView {
    pub slot: String,
    pub version: String,
    pub reason: String,
    pub boot_count: u64,
}

/// `a` or `b`.
pub fn slot_name(slot: Slot) -> String {
    slot.to_string().to_lowercase()
}

impl From<&State> for StateView {
    fn from(s: &State) -> Self {
        StateView {
            committed_slot: slot_name(s.committed_slot()),
            committed_version: s.committed_version().to_string(),
            floor: s.floor().to_string(),
            trial: s.trial().map(|t| TrialView {
                slot: slot_name(t.slot),
                version: t.version.to_string(),
                boots_left: t.boots_left,
                booted: t.phase == TrialPhase::Booted,
            }),
            last_failure: s.last_failure().map(|f| FailureView {
                slot: slot_name(f.slot),
                version: f.version.to_string(),
                reason: f.reason.to_string(),
                boot_count: f.boot_count,
            }),
            highest_failed: s.highest_failed().map(ToString::to_string),
            boot_count: s.boot_count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use limpet_lifecycle::{SlotLifecycle, Uptime, WallTime};
    use limpet_testkit::power_cut_disk::SimDisk;

    const BUILT: u64 = 1_700_000_000;

    fn keeper(freshness: Option<u64>) -> Keeper<SimDisk> {
        let slot = SlotLifecycle {
            built: WallTime::from_secs(BUILT),
            support_until: Some(WallTime::from_secs(BUILT + 1000)),
            freshness: freshness.map(Uptime::from_secs),
        };
        Keeper::open(SimDisk::new(1 << 20), slot, Uptime::ZERO).0
    }

    /// The identity goes into the status file under `system.identity` with its public
    /// facts only: state, class, public key and fingerprint.
    #[test]
    fn the_status_file_shows_the_identity() {
        let data = tempfile::tempdir().unwrap();
        let opened =
            limpet_identity::store::open(data.path(), limpet_identity::random::kernel_seed)
                .unwrap();
        let view = limpet_identity::IdentityView::of_identity(opened.identity());
        let system = SystemStatus {
            slot: "a".into(),
            version: "0.1.0".into(),
            other: None,
            state: None,
            trial: TrialStatus::None,
            last_update: None,
            network: None,
            time: None,
            identity: Some(limpet_identity::IdentityStatus::Created(view)),
            roughtime: Vec::new(),
        };
        let json = serde_json::to_value(&system).unwrap();
        let id = &json["identity"];
        assert_eq!(id["state"], "created", "{json}");
        assert_eq!(id["class"], "software", "{json}");
        assert_eq!(
            id["fingerprint"],
            opened.identity().fingerprint().to_string(),
            "{json}"
        );
        assert_eq!(
            id.as_object().unwrap().len(),
            4,
            "state, class, public_key, fingerprint and nothing else: {json}"
        );
    }

    /// An extension shows as extended; the end of support reached shows island mode due,
    /// with its reason, in the file and on the console.
    #[test]
    fn the_time_status_says_the_end_of_support_and_island_mode() {
        let mut k = keeper(None);
        let s = TimeStatus::of(&k);
        assert_eq!(
            (s.floor, s.earliest, s.support_extended),
            (BUILT, BUILT, false)
        );
        assert_eq!(
            s.line(),
            "time floor @1700000000, earliest @1700000000; support until @1700001000 (the slot's); island mode not due"
        );
        k.extend_support(WallTime::from_secs(BUILT + 2000), Uptime::from_secs(1))
            .unwrap();
        let s = TimeStatus::of(&k);
        assert_eq!(
            (s.support_until, s.support_extended),
            (Some(BUILT + 2000), true)
        );
        assert!(
            s.line().contains("(extended by signed metadata)"),
            "{}",
            s.line()
        );
        k.tick(Uptime::from_secs(2000)).unwrap();
        let s = TimeStatus::of(&k);
        assert_eq!(
            s.island_due,
            Some(IslandDue::SupportEnded {
                until: BUILT + 2000,
                earliest: BUILT + 2000
            })
        );
        assert!(
            s.line()
                .ends_with("island mode DUE: support ended at @1700002000"),
            "{}",
            s.line()
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["island_due"]["reason"], "support_ended", "{json}");

        let mut k = keeper(Some(500));
        k.tick(Uptime::from_secs(500)).unwrap();
        let s = TimeStatus::of(&k);
        assert!(
            s.line().ends_with(
                "island mode DUE: 500 s of uptime without fresh signed metadata (freshness 500 s)"
            ),
            "{}",
            s.line()
        );
    }
}
