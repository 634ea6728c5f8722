//! The A/B slot state machine: a [`State`] value and its named transitions.
//!
//! Pure: no I/O, no clock. Each transition takes `&self` and returns the next state (or a
//! [`TransitionError`] saying why it is refused), so a caller persists the new value with
//! [`crate::copies::store`] before acting on it.
//!
//! # Rules
//!
//! 1. Exactly one slot is *committed*: it holds a version that booted and passed its
//!    health check (or the factory version). It is never overwritten by an update: updates
//!    go to [`State::other_slot`].
//! 2. The version *floor* (anti-rollback) is the lowest version the device may run. It is
//!    set by [`State::factory`] and rises only on [`State::commit`], to the committed
//!    version. It never decreases, and the committed version is never below it.
//! 3. A *trial* is `{slot, version, boots_left, phase}`. [`State::mark_trial`] sets one only
//!    - on the slot that is not committed,
//!    - for a version strictly above the floor (semver precedence, build metadata ignored),
//!    - for a version strictly above the highest version that ever failed (a failed version
//!      is not retried; a newer one must be published),
//!    - with at least one boot, and only when no trial is set already.
//! 4. [`State::begin_boot`] runs at every boot *before* any slot is mounted; its result is
//!    stored first, then the chosen slot is booted. So a trial that hangs or resets the device
//!    still spends a boot:
//!    - no trial: boot the committed slot;
//!    - a trial with boots left: spend one, boot the trial slot;
//!    - a trial with no boots left: roll back (record [`FailureReason::BootCountExhausted`],
//!      drop the trial) and boot the committed slot.
//!
//!    It cannot fail: every state has a slot to boot.
//! 5. [`State::commit`] is allowed only for a trial that has been booted: the trial slot becomes
//!    committed and the floor rises to its version.
//! 6. [`State::roll_back`] drops the trial and records why; the version joins the failed set
//!    (only the highest failed version is kept, which is enough because rule 3 refuses
//!    every version at or below it). [`State::cancel_trial`] drops a trial that was never
//!    booted without recording a failure (the update agent is about to overwrite the slot).
//! 7. A boot counter counts every [`State::begin_boot`]; a recorded failure carries the
//!    counter's value at the boot it was recorded in.

use core::fmt;

use thiserror::Error;

use crate::version::Version;

/// One of the two slot partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Partition `slot-a`.
    A,
    /// Partition `slot-b`.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The GPT partition name of the slot.
    pub fn partition_name(self) -> &'static str {
        match self {
            Slot::A => "slot-a",
            Slot::B => "slot-b",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// Whether a trial has been booted yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrialPhase {
    /// Marked, never booted: it may be cancelled, not committed.
    Staged,
    /// Chosen by [`State::begin_boot`] at least once: it may be committed or rolled back.
    Booted,
}

/// A version being tried on the non-committed slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Trial {
    /// The slot holding the version on trial (never the committed slot).
    pub slot: Slot,
    /// The version on trial.
    pub version: Version,
    /// Boots still allowed before the trial is rolled back.
    pub boots_left: u8,
    /// Whether it has been booted.
    pub phase: TrialPhase,
}

/// Why a trial failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// Booted as many times as allowed without being committed.
    BootCountExhausted,
    /// The health check did not report in time.
    HealthTimeout,
    /// The health check reported failure.
    Unhealthy,
    /// The slot header signature, version floor or dm-verity check failed.
    VerifyFailed,
    /// The slot could not be mounted.
    MountFailed,
    /// A code this build does not know, kept as read: a newer version may have recorded it
    /// before the device rolled back to this one.
    Unknown(UnknownReason),
}

/// A failure reason code unknown to this build (only decoding makes one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnknownReason(u8);

impl UnknownReason {
    /// The code as stored.
    pub fn code(self) -> u8 {
        self.0
    }
}

impl FailureReason {
    /// The code stored in the record (never 0: 0 means "no failure").
    pub fn code(self) -> u8 {
        match self {
            FailureReason::BootCountExhausted => 1,
            FailureReason::HealthTimeout => 2,
            FailureReason::Unhealthy => 3,
            FailureReason::VerifyFailed => 4,
            FailureReason::MountFailed => 5,
            FailureReason::Unknown(u) => u.0,
        }
    }

    /// The reason for a stored code; `None` for 0.
    pub fn from_code(code: u8) -> Option<FailureReason> {
        Some(match code {
            0 => return None,
            1 => FailureReason::BootCountExhausted,
            2 => FailureReason::HealthTimeout,
            3 => FailureReason::Unhealthy,
            4 => FailureReason::VerifyFailed,
            5 => FailureReason::MountFailed,
            other => FailureReason::Unknown(UnknownReason(other)),
        })
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::BootCountExhausted => f.write_str("boot count exhausted"),
            FailureReason::HealthTimeout => f.write_str("health check timed out"),
            FailureReason::Unhealthy => f.write_str("health check failed"),
            FailureReason::VerifyFailed => f.write_str("verification failed"),
            FailureReason::MountFailed => f.write_str("mount failed"),
            FailureReason::Unknown(u) => write!(f, "unknown reason code {}", u.0),
        }
    }
}

/// The last failed trial.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Failure {
    /// The version that failed.
    pub version: Version,
    /// The slot it was tried on.
    pub slot: Slot,
    /// Why it failed.
    pub reason: FailureReason,
    /// The boot counter at the boot the failure was recorded in.
    pub boot_count: u64,
}

/// What [`State::begin_boot`] chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootChoice {
    /// The slot to boot.
    pub slot: Slot,
    /// Committed or on trial.
    pub kind: BootKind,
    /// The failure recorded by this boot, when the trial ran out of boots and was rolled back.
    pub rolled_back: Option<Failure>,
}

/// Whether the booted slot is committed or on trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootKind {
    /// The committed slot.
    Committed,
    /// The trial slot; `boots_left_after` more boots are allowed after this one.
    Trial {
        /// Boots left once this one is counted.
        boots_left_after: u8,
    },
}

/// Why a transition is refused. The state is unchanged.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TransitionError {
    /// A trial is set already: commit, roll back or cancel it first.
    #[error("a trial of {version} on slot {slot} is set already")]
    TrialPending {
        /// Its slot.
        slot: Slot,
        /// Its version.
        version: Version,
    },
    /// The committed slot cannot be tried (nor overwritten).
    #[error("slot {slot} is the committed slot")]
    CommittedSlot {
        /// The slot asked for.
        slot: Slot,
    },
    /// A trial needs at least one boot.
    #[error("a trial needs at least one boot")]
    ZeroBoots,
    /// The version is at or below the floor (anti-rollback).
    #[error("version {version} is not above the version floor {floor}")]
    NotAboveFloor {
        /// The version asked for.
        version: Version,
        /// The floor.
        floor: Version,
    },
    /// The version is at or below a version that failed.
    #[error("version {version} is not above {failed}, which failed")]
    FailedBefore {
        /// The version asked for.
        version: Version,
        /// The highest version that failed.
        failed: Version,
    },
    /// There is no trial to commit, roll back or cancel.
    #[error("no trial is set")]
    NoTrial,
    /// Only a booted trial can be committed.
    #[error("the trial of {version} on slot {slot} has not been booted")]
    TrialNotBooted {
        /// Its slot.
        slot: Slot,
        /// Its version.
        version: Version,
    },
    /// A booted trial is rolled back (with a reason), not cancelled.
    #[error("the trial of {version} on slot {slot} has been booted")]
    TrialBooted {
        /// Its slot.
        slot: Slot,
        /// Its version.
        version: Version,
    },
}

/// A state whose fields break a rule of this module (only decoding can meet one).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum InvariantError {
    /// The committed version is below the floor.
    #[error("committed version is below the version floor")]
    CommittedBelowFloor,
    /// The trial is on the committed slot.
    #[error("trial slot is the committed slot")]
    TrialOnCommittedSlot,
    /// The trial's version is not above the floor.
    #[error("trial version is not above the version floor")]
    TrialNotAboveFloor,
    /// A staged trial has no boots left.
    #[error("staged trial has no boots left")]
    StagedWithoutBoots,
}

/// The device's boot state. Made by [`State::factory`] or read from disk; changed only by
/// the transitions of this module, which keep its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    committed: Slot,
    committed_version: Version,
    floor: Version,
    trial: Option<Trial>,
    last_failure: Option<Failure>,
    highest_failed: Option<Version>,
    boot_count: u64,
}

/// The fields of a [`State`], for decoding; [`Parts::into_state`] checks the rules.
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    pub committed: Slot,
    pub committed_version: Version,
    pub floor: Version,
    pub trial: Option<Trial>,
    pub last_failure: Option<Failure>,
    pub highest_failed: Option<Version>,
    pub boot_count: u64,
}

impl Parts {
    pub(crate) fn into_state(self) -> Result<State, InvariantError> {
        if self.floor.is_newer_than(&self.committed_version) {
            return Err(InvariantError::CommittedBelowFloor);
        }
        if let Some(t) = &self.trial {
            if t.slot == self.committed {
                return Err(InvariantError::TrialOnCommittedSlot);
            }
            if !t.version.is_newer_than(&self.floor) {
                return Err(InvariantError::TrialNotAboveFloor);
            }
            if t.phase == TrialPhase::Staged && t.boots_left == 0 {
                return Err(InvariantError::StagedWithoutBoots);
            }
        }
        Ok(State {
            committed: self.committed,
            committed_version: self.committed_version,
            floor: self.floor,
            trial: self.trial,
            last_failure: self.last_failure,
            highest_failed: self.highest_failed,
            boot_count: self.boot_count,
        })
    }
}

impl State {
    /// The state `limpet build` writes into a new disk image: slot A committed with its
    /// version, which is also the floor; no trial, no failure, no boots.
    pub fn factory(slot_a_version: Version) -> State {
        State {
            committed: Slot::A,
            floor: slot_a_version.clone(),
            committed_version: slot_a_version,
            trial: None,
            last_failure: None,
            highest_failed: None,
            boot_count: 0,
        }
    }

    /// The committed slot.
    pub fn committed_slot(&self) -> Slot {
        self.committed
    }

    /// The committed slot's version.
    pub fn committed_version(&self) -> &Version {
        &self.committed_version
    }

    /// The version floor: no lower version may be booted or tried.
    pub fn floor(&self) -> &Version {
        &self.floor
    }

    /// The trial, if one is set.
    pub fn trial(&self) -> Option<&Trial> {
        self.trial.as_ref()
    }

    /// The last failed trial, if any.
    pub fn last_failure(&self) -> Option<&Failure> {
        self.last_failure.as_ref()
    }

    /// The highest version that ever failed: it and every lower version are not tried.
    pub fn highest_failed(&self) -> Option<&Version> {
        self.highest_failed.as_ref()
    }

    /// How many times [`State::begin_boot`] has run.
    pub fn boot_count(&self) -> u64 {
        self.boot_count
    }

    /// The slot that is not committed: the one an update is written to.
    pub fn other_slot(&self) -> Slot {
        self.committed.other()
    }

    /// Sets a trial of `version` on `slot` for at least one and at most `boots` boots (rule 3).
    pub fn mark_trial(
        &self,
        slot: Slot,
        version: Version,
        boots: u8,
    ) -> Result<State, TransitionError> {
        if let Some(t) = &self.trial {
            return Err(TransitionError::TrialPending {
                slot: t.slot,
                version: t.version.clone(),
            });
        }
        if slot == self.committed {
            return Err(TransitionError::CommittedSlot { slot });
        }
        if boots == 0 {
            return Err(TransitionError::ZeroBoots);
        }
        if !version.is_newer_than(&self.floor) {
            return Err(TransitionError::NotAboveFloor {
                version,
                floor: self.floor.clone(),
            });
        }
        if let Some(failed) = &self.highest_failed {
            if !version.is_newer_than(failed) {
                return Err(TransitionError::FailedBefore {
                    version,
                    failed: failed.clone(),
                });
            }
        }
        let mut next = self.clone();
        next.trial = Some(Trial {
            slot,
            version,
            boots_left: boots,
            phase: TrialPhase::Staged,
        });
        Ok(next)
    }

    /// Chooses the slot for this boot (rule 4). Store the returned state before mounting
    /// the chosen slot.
    pub fn begin_boot(&self) -> (State, BootChoice) {
        let mut next = self.clone();
        next.boot_count = self.boot_count.saturating_add(1);
        match next.trial.take() {
            None => {
                let choice = BootChoice {
                    slot: next.committed,
                    kind: BootKind::Committed,
                    rolled_back: None,
                };
                (next, choice)
            }
            Some(t) => match t.boots_left.checked_sub(1) {
                Some(boots_left_after) => {
                    let slot = t.slot;
                    next.trial = Some(Trial {
                        boots_left: boots_left_after,
                        phase: TrialPhase::Booted,
                        ..t
                    });
                    let kind = BootKind::Trial { boots_left_after };
                    let choice = BootChoice {
                        slot,
                        kind,
                        rolled_back: None,
                    };
                    (next, choice)
                }
                None => {
                    let failure = next.record_failure(t, FailureReason::BootCountExhausted);
                    let choice = BootChoice {
                        slot: next.committed,
                        kind: BootKind::Committed,
                        rolled_back: Some(failure),
                    };
                    (next, choice)
                }
            },
        }
    }

    /// Commits a booted trial (rule 5): its slot becomes committed and the floor rises to
    /// its version.
    pub fn commit(&self) -> Result<State, TransitionError> {
        let t = self.trial.as_ref().ok_or(TransitionError::NoTrial)?;
        if t.phase != TrialPhase::Booted {
            return Err(TransitionError::TrialNotBooted {
                slot: t.slot,
                version: t.version.clone(),
            });
        }
        let mut next = self.clone();
        next.committed = t.slot;
        next.committed_version = t.version.clone();
        // mark_trial only accepts versions above the floor, so this raises it; `max` keeps
        // rule 2 even if that ever changed.
        next.floor = self.floor.clone().max_by_precedence(t.version.clone());
        next.trial = None;
        Ok(next)
    }

    /// Drops the trial and records why it failed (rule 6).
    pub fn roll_back(&self, reason: FailureReason) -> Result<State, TransitionError> {
        let mut next = self.clone();
        let t = next.trial.take().ok_or(TransitionError::NoTrial)?;
        next.record_failure(t, reason);
        Ok(next)
    }

    /// Drops a trial that was never booted, recording no failure (rule 6).
    pub fn cancel_trial(&self) -> Result<State, TransitionError> {
        let t = self.trial.as_ref().ok_or(TransitionError::NoTrial)?;
        if t.phase == TrialPhase::Booted {
            return Err(TransitionError::TrialBooted {
                slot: t.slot,
                version: t.version.clone(),
            });
        }
        let mut next = self.clone();
        next.trial = None;
        Ok(next)
    }

    fn record_failure(&mut self, t: Trial, reason: FailureReason) -> Failure {
        let failure = Failure {
            version: t.version.clone(),
            slot: t.slot,
            reason,
            boot_count: self.boot_count,
        };
        self.highest_failed = Some(match self.highest_failed.take() {
            Some(v) => v.max_by_precedence(t.version),
            None => t.version,
        });
        self.last_failure = Some(failure.clone());
        failure
    }

    pub(crate) fn into_parts(self) -> Parts {
        Parts {
            committed: self.committed,
            committed_version: self.committed_version,
            floor: self.floor,
            trial: self.trial,
            last_failure: self.last_failure,
            highest_failed: self.highest_failed,
            boot_count: self.boot_count,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn factory_commits_slot_a_at_its_version() {
        let s = State::factory(v("1.0.0"));
        assert_eq!(s.committed_slot(), Slot::A);
        assert_eq!(s.committed_version(), &v("1.0.0"));
        assert_eq!(s.floor(), &v("1.0.0"));
        assert_eq!(s.other_slot(), Slot::B);
        assert!(s.trial().is_none());
        assert_eq!(s.boot_count(), 0);
    }

    #[test]
    fn mark_trial_refusals() {
        let s = State::factory(v("1.0.0"));
        assert_eq!(
            s.mark_trial(Slot::A, v("2.0.0"), 3),
            Err(TransitionError::CommittedSlot { slot: Slot::A })
        );
        assert_eq!(
            s.mark_trial(Slot::B, v("2.0.0"), 0),
            Err(TransitionError::ZeroBoots)
        );
        assert_eq!(
            s.mark_trial(Slot::B, v("1.0.0+rebuilt"), 3),
            Err(TransitionError::NotAboveFloor {
                version: v("1.0.0+rebuilt"),
                floor: v("1.0.0")
            })
        );
        let t = s.mark_trial(Slot::B, v("2.0.0"), 3).unwrap();
        assert_eq!(
            t.mark_trial(Slot::B, v("3.0.0"), 3),
            Err(TransitionError::TrialPending {
                slot: Slot::B,
                version: v("2.0.0")
            })
        );
    }

    #[test]
    fn commit_needs_a_booted_trial() {
        let s = State::factory(v("1.0.0"));
        assert_eq!(s.commit(), Err(TransitionError::NoTrial));
        let t = s.mark_trial(Slot::B, v("2.0.0"), 1).unwrap();
        assert_eq!(
            t.commit(),
            Err(TransitionError::TrialNotBooted {
                slot: Slot::B,
                version: v("2.0.0")
            })
        );
        let (booted, choice) = t.begin_boot();
        assert_eq!(
            choice.kind,
            BootKind::Trial {
                boots_left_after: 0
            }
        );
        let c = booted.commit().unwrap();
        assert_eq!(c.committed_slot(), Slot::B);
        assert_eq!(c.floor(), &v("2.0.0"));
    }

    #[test]
    fn cancel_only_a_staged_trial() {
        let s = State::factory(v("1.0.0"));
        assert_eq!(s.cancel_trial(), Err(TransitionError::NoTrial));
        let t = s.mark_trial(Slot::B, v("2.0.0"), 2).unwrap();
        let c = t.cancel_trial().unwrap();
        assert_eq!(c, s);
        let (booted, _) = t.begin_boot();
        assert!(matches!(
            booted.cancel_trial(),
            Err(TransitionError::TrialBooted { .. })
        ));
    }

    #[test]
    fn roll_back_records_the_failure() {
        let s = State::factory(v("1.0.0"));
        assert_eq!(
            s.roll_back(FailureReason::HealthTimeout),
            Err(TransitionError::NoTrial)
        );
        let (t, _) = s.mark_trial(Slot::B, v("2.0.0"), 2).unwrap().begin_boot();
        let r = t.roll_back(FailureReason::HealthTimeout).unwrap();
        assert!(r.trial().is_none());
        assert_eq!(
            r.last_failure(),
            Some(&Failure {
                version: v("2.0.0"),
                slot: Slot::B,
                reason: FailureReason::HealthTimeout,
                boot_count: 1
            })
        );
        assert_eq!(r.highest_failed(), Some(&v("2.0.0")));
        // The next boot is of the committed slot.
        let (_, choice) = r.begin_boot();
        assert_eq!(choice.slot, Slot::A);
        assert_eq!(choice.kind, BootKind::Committed);
    }

    #[test]
    fn reason_codes_round_trip() {
        for code in 1..=u8::MAX {
            let r = FailureReason::from_code(code).unwrap();
            assert_eq!(r.code(), code);
        }
        assert_eq!(FailureReason::from_code(0), None);
    }
}
