//! The device part of the status file (`/run/limpet/status.json`, key `system`): which
//! slot and version run, what the other slot holds, the A/B state and the fate of a trial.

use limpet_state::{Slot, State, TrialPhase};
use serde::Serialize;

/// The `system` object of the status file.
#[derive(Debug, Clone, Serialize)]
pub struct SystemStatus {
    /// The slot running now (`a` or `b`).
    pub slot: String,
    /// The running slot's version, from its verified header.
    pub version: String,
    /// The other slot and the version its header claims, if it has a valid signed header.
    pub other: Option<OtherSlot>,
    /// The A/B state as stored, if it could be read.
    pub state: Option<StateView>,
    /// Whether this boot is a trial and what became of it.
    pub trial: TrialStatus,
    /// The last install the update agent asked for at this boot, and its outcome.
    pub last_update: Option<UpdateAttempt>,
    /// Interfaces, DNS, and packets the network policy dropped; absent without network.
    pub network: Option<crate::network::NetworkStatus>,
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
