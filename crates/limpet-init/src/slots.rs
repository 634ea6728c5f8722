//! Which slot boots, from the A/B state on the `state` partition, and what happens when
//! the chosen slot cannot be verified or mounted.
//!
//! Outcomes (also in docs/state.md and docs/boot.md), one function each, chosen by
//! [`boot_from_state`]:
//! - **stored state** (`boot_stored`): `begin_boot` is stored *before* mounting (a trial
//!   spends its boot even if it hangs). A trial slot that fails verification or mounting
//!   is rolled back (failure recorded, stored) and the committed slot boots. The
//!   committed slot failing is fatal: the other slot holds an older version (below the
//!   floor) or a failed one, so PID 1 reports and powers off rather than boot it.
//! - **blank state** (`boot_blank`; a factory disk whose state was erased): slot A boots
//!   with no floor, and once it is mounted the factory state is written with its version.
//! - **unreadable state** (`boot_unreadable`; both copies corrupt, I/O errors): slot A,
//!   then slot B, boot with no floor, and the state is left as it is for the update agent
//!   or a technician: PID 1 does not overwrite evidence.
//! - a slot whose version is below the floor is refused like a bad signature.
//!
//! **Booted by Limpet's loader** ([`Handover`], `limpet.slot=` and `limpet.counted=1` on
//! the kernel command line): the loader already ran `begin_boot`, stored it and verified
//! the slot whose kernel and PID 1 are running, so PID 1 does not count the boot again
//! and mounts the app of that same slot, never the other one (`boot_handed_over`). A
//! trial whose app then fails to verify or mount is rolled back and the device reboots:
//! the loader starts the committed slot, kernel and all.

use std::cmp::Ordering;
use std::fs::File;
use std::path::{Path, PathBuf};

use limpet_state::{
    BootKind, FailureReason, Slot, State, StateError, StateStore, TransitionError, Version,
    VersionError,
};

use crate::console;
use crate::partitions::DiskPartitions;
use crate::verified::{self, MountedSlot, VerifyError};

/// Why no slot booted.
#[derive(Debug, thiserror::Error)]
pub enum StateBootError {
    #[error("cannot open the state partition {}", device.display())]
    OpenState {
        device: PathBuf,
        source: std::io::Error,
    },
    #[error("state partition {}", device.display())]
    State { device: PathBuf, source: StateError },
    #[error("committed slot {slot}")]
    Committed { slot: Slot, source: AttemptError },
    #[error("factory boot of slot A")]
    Factory { source: AttemptError },
    /// The loader started a trial whose app does not verify or mount; the rollback is
    /// recorded and the device must reboot into the committed slot.
    #[error("trial slot {slot} was rolled back")]
    TrialAppFailed { slot: Slot },
    /// Two causes, so they are in the message: a chain has room for one.
    #[error(
        "state unreadable and neither slot boots: slot A: {}; slot B: {}",
        console::chain(a),
        console::chain(b)
    )]
    NoSlot {
        a: Box<AttemptError>,
        b: Box<AttemptError>,
    },
}

/// Why one slot was not booted.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("{label} refused")]
    Refused {
        label: &'static str,
        source: VerifyError,
    },
    #[error("{label} refused")]
    BelowFloor {
        label: &'static str,
        source: FloorError,
    },
    #[error("{label} not mounted")]
    NotMounted {
        label: &'static str,
        source: VerifyError,
    },
}

impl AttemptError {
    /// How the A/B state records this failure of a trial slot.
    fn failure_reason(&self) -> FailureReason {
        match self {
            AttemptError::Refused { .. } | AttemptError::BelowFloor { .. } => {
                FailureReason::VerifyFailed
            }
            AttemptError::NotMounted { .. } => FailureReason::MountFailed,
        }
    }
}

/// Why the version check refused a slot.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    #[error("version {version} is below the floor {floor}")]
    Below { version: String, floor: Version },
    #[error("version {version:?} is not valid")]
    Invalid {
        version: String,
        source: VersionError,
    },
}

/// Why a trial's transition was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    #[error("commit refused")]
    CommitRefused { source: TransitionError },
    #[error("cannot store the commit")]
    StoreCommit { source: StateError },
    #[error("rollback refused")]
    RollbackRefused { source: TransitionError },
    #[error("cannot store the rollback")]
    StoreRollback { source: StateError },
}

/// A slot to try, with the floor its version must meet.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub slot: Slot,
    pub floor: Option<Version>,
}

/// Checks a slot's version against the floor.
pub fn check_floor(version: &str, floor: &Version) -> Result<(), FloorError> {
    match Version::parse(version) {
        Ok(v) if v.precedence(floor) == Ordering::Less => Err(FloorError::Below {
            version: version.to_owned(),
            floor: floor.clone(),
        }),
        Ok(_) => Ok(()),
        Err(source) => Err(FloorError::Invalid {
            version: version.to_owned(),
            source,
        }),
    }
}

/// The slot that booted.
#[derive(Debug)]
pub struct Booted {
    pub slot: Slot,
    pub mounted: MountedSlot,
    /// The state as stored at this boot, when it could be read.
    pub state: Option<State>,
    /// Set when the slot booted as a trial: the health gate decides its fate.
    pub trial: Option<TrialRecord>,
}

/// A trial slot that booted: committed or rolled back once the health gate has decided.
#[derive(Debug)]
pub struct TrialRecord {
    store: StateStore<File>,
    state: State,
}

impl TrialRecord {
    /// The state as stored now.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Commits the trial: its slot becomes the committed one and the floor rises.
    pub fn commit(&mut self) -> Result<(), TrialError> {
        let next = self
            .state
            .commit()
            .map_err(|source| TrialError::CommitRefused { source })?;
        self.store
            .store(&next)
            .map_err(|source| TrialError::StoreCommit { source })?;
        self.state = next;
        Ok(())
    }

    /// Rolls the trial back, recording why; the next boot boots the committed slot.
    pub fn roll_back(&mut self, reason: FailureReason) -> Result<(), TrialError> {
        let next = self
            .state
            .roll_back(reason)
            .map_err(|source| TrialError::RollbackRefused { source })?;
        self.store
            .store(&next)
            .map_err(|source| TrialError::StoreRollback { source })?;
        self.state = next;
        Ok(())
    }
}

/// The two slots of the boot disk and the key their headers must be signed with.
#[derive(Debug, Clone, Copy)]
struct Slots<'a> {
    root: &'a Path,
    disk: &'a DiskPartitions,
    key: &'a ed25519_dalek::VerifyingKey,
}

/// What Limpet's boot loader tells PID 1 on the kernel command line: which slot's kernel
/// is running, and that the boot was already counted in the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    /// The slot the loader verified and started.
    pub slot: Slot,
}

impl Handover {
    /// Reads `limpet.slot=a|b` and `limpet.counted=1` from a kernel command line. Both
    /// must be there (the last of each word counts, as the kernel's own parameters do);
    /// anything else (a `-kernel` boot, a malformed value) is no hand-over, and PID 1
    /// counts the boot itself.
    pub fn parse(cmdline: &str) -> Option<Handover> {
        let mut slot = None;
        let mut counted = false;
        for word in cmdline.split_ascii_whitespace() {
            match word.split_once('=') {
                Some(("limpet.slot", "a")) => slot = Some(Slot::A),
                Some(("limpet.slot", "b")) => slot = Some(Slot::B),
                Some(("limpet.slot", _)) => slot = None,
                Some(("limpet.counted", v)) => counted = v == "1",
                _ => {}
            }
        }
        slot.filter(|_| counted).map(|slot| Handover { slot })
    }
}

/// Boots a slot according to the state, returning the mounted slot and which one it is:
/// one of the cases of the module doc, chosen by what the state partition holds and by
/// whether Limpet's loader already counted the boot (`handover`).
pub fn boot_from_state(
    root: &Path,
    disk: &DiskPartitions,
    key: &ed25519_dalek::VerifyingKey,
    handover: Option<Handover>,
) -> Result<Booted, StateBootError> {
    let slots = Slots { root, disk, key };
    let device = disk.state.node(root);
    let file = File::options()
        .read(true)
        .write(true)
        .open(&device)
        .map_err(|source| StateBootError::OpenState {
            device: device.clone(),
            source,
        })?;
    let mut store =
        StateStore::new(file).map_err(|source| StateBootError::State { device, source })?;
    match (store.load(), handover) {
        (Ok(state), Some(h)) => boot_handed_over(slots, store, &state, h),
        (Ok(state), None) => boot_stored(slots, store, &state),
        (Err(StateError::Blank), _) => boot_blank(slots, store),
        (Err(e), _) => boot_unreadable(slots, &e, handover),
    }
}

/// Booted by the loader: the state already holds this boot. The app of the slot the
/// loader started is mounted; if that slot is the booted trial, the health gate decides
/// it as usual; if its app fails, the trial is rolled back and the device reboots into
/// the committed slot (the running kernel and PID 1 are the trial's).
fn boot_handed_over(
    slots: Slots<'_>,
    mut store: StateStore<File>,
    state: &State,
    handover: Handover,
) -> Result<Booted, StateBootError> {
    let committed = state.committed_slot();
    let slot = handover.slot;
    let is_trial = state
        .trial()
        .is_some_and(|t| t.slot == slot && t.phase == limpet_state::TrialPhase::Booted);
    console!(
        "state: committed slot {committed} ({}), floor {}, loader started slot {slot}{} (boot counted by the loader)",
        state.committed_version(),
        state.floor(),
        if is_trial { " (trial)" } else { "" }
    );
    if slot != committed && !is_trial {
        console!("slot {slot} is neither committed nor the booted trial: its app is mounted, nothing is recorded");
    }
    match slots.mount(&Attempt {
        slot,
        floor: Some(state.floor().clone()),
    }) {
        Ok(mounted) => Ok(Booted {
            slot,
            mounted,
            state: Some(state.clone()),
            trial: is_trial.then(|| TrialRecord {
                store,
                state: state.clone(),
            }),
        }),
        Err(failed) if is_trial => {
            console!(
                "trial slot {slot} failed: {}; rolling back and rebooting into the committed slot",
                console::chain(&failed)
            );
            roll_back_unbooted_trial(&mut store, state, failed.failure_reason());
            Err(StateBootError::TrialAppFailed { slot })
        }
        Err(source) => Err(StateBootError::Committed { slot, source }),
    }
}

/// Stored state: the slot `begin_boot` chooses, recorded before mounting; a trial that
/// fails is rolled back and the committed slot boots; the committed slot failing is fatal.
fn boot_stored(
    slots: Slots<'_>,
    mut store: StateStore<File>,
    state: &State,
) -> Result<Booted, StateBootError> {
    let (next, choice) = state.begin_boot();
    let stored = store.store(&next);
    if let Some(failure) = &choice.rolled_back {
        console!(
            "trial of {} on slot {} spent its boots: rolled back",
            failure.version,
            failure.slot
        );
    }
    let committed = next.committed_slot();
    let slot = match (choice.kind, &stored) {
        (BootKind::Trial { .. }, Err(e)) => {
            // The spent boot was not recorded: booting the trial could loop forever.
            console!("cannot record the trial boot ({e}); booting the committed slot");
            committed
        }
        _ => choice.slot,
    };
    // A trial is never on the committed slot (the state machine refuses it).
    let is_trial = slot != committed;
    console!(
        "state: committed slot {committed} ({}), floor {}, booting slot {slot}{}",
        next.committed_version(),
        next.floor(),
        if is_trial { " (trial)" } else { "" }
    );
    let floor = Some(next.floor().clone());
    match slots.mount(&Attempt {
        slot,
        floor: floor.clone(),
    }) {
        Ok(mounted) => Ok(Booted {
            slot,
            mounted,
            state: Some(next.clone()),
            trial: is_trial.then_some(TrialRecord { store, state: next }),
        }),
        Err(failed) if is_trial => {
            console!(
                "trial slot {slot} failed: {}; rolling back",
                console::chain(&failed)
            );
            roll_back_unbooted_trial(&mut store, &next, failed.failure_reason());
            let state = store.load().ok();
            let mounted = slots
                .mount(&Attempt {
                    slot: committed,
                    floor,
                })
                .map_err(|source| StateBootError::Committed {
                    slot: committed,
                    source,
                })?;
            Ok(Booted {
                slot: committed,
                mounted,
                state,
                trial: None,
            })
        }
        Err(source) => Err(StateBootError::Committed { slot, source }),
    }
}

/// Records the rollback of a trial that did not even mount; a failure to record it is
/// reported, not fatal (the committed slot still boots, and the trial has spent a boot).
fn roll_back_unbooted_trial(store: &mut StateStore<File>, state: &State, why: FailureReason) {
    match state.roll_back(why) {
        Ok(rolled) => {
            if let Err(e) = store.store(&rolled) {
                console!("cannot record the rollback: {e}");
            }
        }
        Err(e) => console!("rollback refused: {e}"),
    }
}

/// Blank state (a factory disk): slot A boots with no floor, and once it is mounted the
/// factory state is written with its version.
fn boot_blank(slots: Slots<'_>, mut store: StateStore<File>) -> Result<Booted, StateBootError> {
    console!("state partition is blank: booting slot A (factory)");
    let mounted = slots
        .mount(&Attempt {
            slot: Slot::A,
            floor: None,
        })
        .map_err(|source| StateBootError::Factory { source })?;
    let state = match Version::parse(&mounted.header.version) {
        Ok(version) => {
            let state = State::factory(version);
            match store.store(&state) {
                Ok(_) => Some(state),
                Err(e) => {
                    console!("cannot write the factory state: {e}");
                    None
                }
            }
        }
        Err(e) => {
            console!("slot A version is not valid: {e}");
            None
        }
    };
    Ok(Booted {
        slot: Slot::A,
        mounted,
        state,
        trial: None,
    })
}

/// Unreadable state: slot A, then slot B, with no floor; the state is left as it is.
/// Booted by the loader, only the slot whose kernel runs is tried.
fn boot_unreadable(
    slots: Slots<'_>,
    reason: &StateError,
    handover: Option<Handover>,
) -> Result<Booted, StateBootError> {
    console!(
        "state unreadable ({}): trying slot A then B, state left untouched",
        console::chain(reason)
    );
    let boot = |slot| {
        slots
            .mount(&Attempt { slot, floor: None })
            .map(|mounted| Booted {
                slot,
                mounted,
                state: None,
                trial: None,
            })
    };
    if let Some(Handover { slot }) = handover {
        return boot(slot).map_err(|source| StateBootError::Committed { slot, source });
    }
    let a = match boot(Slot::A) {
        Ok(booted) => return Ok(booted),
        Err(a) => a,
    };
    boot(Slot::B).map_err(|b| StateBootError::NoSlot {
        a: Box::new(a),
        b: Box::new(b),
    })
}

impl Slots<'_> {
    /// Verifies and mounts one slot.
    fn mount(&self, attempt: &Attempt) -> Result<MountedSlot, AttemptError> {
        let part = match attempt.slot {
            Slot::A => &self.disk.slot_a,
            Slot::B => &self.disk.slot_b,
        };
        let label = attempt.slot.partition_name();
        let device = part.node(self.root);
        let header = verified::verify_header(&device, self.key)
            .map_err(|source| AttemptError::Refused { label, source })?;
        if let Some(floor) = &attempt.floor {
            check_floor(&header.version, floor)
                .map_err(|source| AttemptError::BelowFloor { label, source })?;
        }
        console!(
            "{label} header verified: {} {} ({}), verity root {}",
            header.device,
            header.version,
            header.target,
            crate::dm::hex(&header.root_hash)
        );
        let dm_name = format!("limpet-{label}");
        let mounted = verified::mount_verified(
            self.root,
            &device,
            header,
            &dm_name,
            &self.root.join(crate::SLOT_MOUNT),
        )
        .map_err(|source| AttemptError::NotMounted { label, source })?;
        console!(
            "{label} ({} {}) mounted read-only from {} on {}",
            mounted.header.device,
            mounted.header.version,
            mounted.verity_device.display(),
            mounted.mountpoint.display()
        );
        Ok(mounted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loader_hand_over_needs_both_words() {
        let h = |s| Handover::parse(s);
        assert_eq!(
            h("console=ttyS0 panic=-1 quiet limpet.slot=b limpet.counted=1"),
            Some(Handover { slot: Slot::B })
        );
        assert_eq!(
            h("limpet.counted=1 limpet.slot=a"),
            Some(Handover { slot: Slot::A })
        );
        // A -kernel boot, half a hand-over, or a value PID 1 does not know: PID 1 counts.
        assert_eq!(h("console=ttyS0 panic=-1 quiet"), None);
        assert_eq!(h("limpet.slot=a"), None);
        assert_eq!(h("limpet.counted=1"), None);
        assert_eq!(h("limpet.slot=c limpet.counted=1"), None);
        assert_eq!(h("limpet.slot=a limpet.counted=0"), None);
        assert_eq!(h("limpet.slot=a limpet.counted=1 limpet.slot=x"), None);
        assert_eq!(h("limpet.slot=A limpet.counted=1"), None);
    }

    #[test]
    fn floor_refuses_older_and_invalid_versions() {
        let floor = Version::parse("1.4.0").unwrap();
        assert!(matches!(
            check_floor("1.3.9", &floor),
            Err(FloorError::Below { .. })
        ));
        assert!(check_floor("1.4.0", &floor).is_ok());
        assert!(check_floor("1.4.0+rebuild", &floor).is_ok());
        assert!(check_floor("2.0.0", &floor).is_ok());
        assert!(matches!(
            check_floor("not-a-version", &floor),
            Err(FloorError::Invalid { .. })
        ));
    }

    fn unopenable(label: &'static str) -> AttemptError {
        AttemptError::Refused {
            label,
            source: VerifyError::Open {
                device: PathBuf::from("/dev/vda2"),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
        }
    }

    #[test]
    fn a_refused_committed_slot_reads_as_the_boot_tests_expect() {
        let e = StateBootError::Committed {
            slot: Slot::A,
            source: unopenable("slot-a"),
        };
        assert!(
            console::chain(&e)
                .starts_with("committed slot A: slot-a refused: cannot open /dev/vda2: "),
            "{}",
            console::chain(&e)
        );
    }

    #[test]
    fn a_trial_that_does_not_mount_is_recorded_as_a_mount_failure() {
        assert_eq!(
            unopenable("slot-b").failure_reason(),
            FailureReason::VerifyFailed
        );
        let not_mounted = AttemptError::NotMounted {
            label: "slot-b",
            source: VerifyError::Mount {
                device: PathBuf::from("/dev/dm-0"),
                source: std::io::Error::from(std::io::ErrorKind::InvalidData),
            },
        };
        assert_eq!(not_mounted.failure_reason(), FailureReason::MountFailed);
        assert!(console::chain(&not_mounted)
            .starts_with("slot-b not mounted: cannot mount /dev/dm-0: "));
    }
}
