//! Which slot boots, from the A/B state on the `state` partition, and what happens when
//! the chosen slot cannot be verified or mounted.
//!
//! Outcomes (also in docs/state.md and docs/boot.md):
//! - **stored state**: `begin_boot` is stored *before* mounting (a try spends its boot
//!   even if it hangs). A try slot that fails verification or mounting is rolled back
//!   (failure recorded, stored) and the committed slot boots. The committed slot failing
//!   is fatal: the other slot holds an older version (below the floor) or a failed one, so
//!   PID 1 reports and powers off rather than boot it.
//! - **blank state** (a factory disk whose state was erased): slot A boots with no floor,
//!   and once it is mounted the factory state is written with its version.
//! - **unreadable state** (both copies corrupt, I/O errors): slot A, then slot B, boot with
//!   no floor, and the state is left as it is for the update agent or a technician: PID 1
//!   does not overwrite evidence.
//! - a slot whose version is below the floor is refused like a bad signature.

use std::cmp::Ordering;
use std::fs::File;
use std::path::Path;

use limpet_state::{BootKind, FailureReason, Slot, State, StateError, StateStore, Version};

use crate::console;
use crate::partitions::DiskPartitions;
use crate::verified::{self, MountedSlot};

/// What the boot found in the state partition.
#[derive(Debug)]
pub enum StateSource {
    Stored(Box<State>),
    Blank,
    Unreadable(String),
}

/// A slot to try, with the floor its version must meet.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub slot: Slot,
    pub floor: Option<Version>,
}

/// Why the version check refused a slot.
pub fn below_floor(version: &str, floor: &Version) -> Option<String> {
    match Version::parse(version) {
        Ok(v) if v.precedence(floor) == Ordering::Less => {
            Some(format!("version {version} is below the floor {floor}"))
        }
        Ok(_) => None,
        Err(e) => Some(format!("version {version:?} is not valid: {e}")),
    }
}

/// The slot that booted.
#[derive(Debug)]
pub struct Booted {
    pub slot: Slot,
    pub mounted: MountedSlot,
    /// The state as stored at this boot, when it could be read.
    pub state: Option<State>,
    /// Set when the slot booted as a try: the health gate decides its fate.
    pub trial: Option<PendingTrial>,
}

/// A try slot that booted: committed or rolled back once the health gate has decided.
#[derive(Debug)]
pub struct PendingTrial {
    store: StateStore<File>,
    state: State,
}

impl PendingTrial {
    /// The state as stored now.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Commits the try: its slot becomes the committed one and the floor rises.
    pub fn commit(&mut self) -> Result<(), String> {
        let next = self
            .state
            .commit()
            .map_err(|e| format!("commit refused: {e}"))?;
        self.store
            .store(&next)
            .map_err(|e| format!("cannot store the commit: {e}"))?;
        self.state = next;
        Ok(())
    }

    /// Rolls the try back, recording why; the next boot boots the committed slot.
    pub fn roll_back(&mut self, reason: FailureReason) -> Result<(), String> {
        let next = self
            .state
            .roll_back(reason)
            .map_err(|e| format!("rollback refused: {e}"))?;
        self.store
            .store(&next)
            .map_err(|e| format!("cannot store the rollback: {e}"))?;
        self.state = next;
        Ok(())
    }
}

/// Boots a slot according to the state, returning the mounted slot and which one it is.
pub fn boot_from_state(
    root: &Path,
    disk: &DiskPartitions,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<Booted, String> {
    let state_node = disk.state.node(root);
    let file = File::options()
        .read(true)
        .write(true)
        .open(&state_node)
        .map_err(|e| format!("cannot open {}: {e}", state_node.display()))?;
    let mut store = StateStore::new(file).map_err(|e| format!("state partition: {e}"))?;
    let source = match store.load() {
        Ok(state) => StateSource::Stored(Box::new(state)),
        Err(StateError::Blank) => StateSource::Blank,
        Err(e) => StateSource::Unreadable(e.to_string()),
    };

    match source {
        StateSource::Stored(state) => {
            let (next, choice) = state.begin_boot();
            let stored = store.store(&next);
            if let Some(failure) = &choice.rolled_back {
                console::line(&format!(
                    "limpet-init: try of {} on slot {} spent its boots: rolled back",
                    failure.version, failure.slot
                ));
            }
            let floor = Some(next.floor().clone());
            let choice_slot = match (choice.kind, &stored) {
                (BootKind::Try { .. }, Err(e)) => {
                    // The spent boot was not recorded: booting the try could loop forever.
                    console::line(&format!(
                        "limpet-init: cannot record the try boot ({e}); booting the committed slot"
                    ));
                    next.committed_slot()
                }
                _ => choice.slot,
            };
            console::line(&format!(
                "limpet-init: state: committed slot {} ({}), floor {}, booting slot {choice_slot}{}",
                next.committed_slot(),
                next.committed_version(),
                next.floor(),
                if choice_slot == choice.slot && matches!(choice.kind, BootKind::Try { .. }) { " (try)" } else { "" }
            ));
            match mount(
                root,
                disk,
                key,
                &Attempt {
                    slot: choice_slot,
                    floor: floor.clone(),
                },
            ) {
                Ok(mounted) => {
                    let is_try = choice_slot != next.committed_slot();
                    Ok(Booted {
                        slot: choice_slot,
                        mounted,
                        state: Some(next.clone()),
                        trial: is_try.then_some(PendingTrial { store, state: next }),
                    })
                }
                Err(reason) if choice_slot != next.committed_slot() => {
                    console::line(&format!(
                        "limpet-init: try slot {choice_slot} failed: {reason}; rolling back"
                    ));
                    let why = if reason.contains("mount") {
                        FailureReason::MountFailed
                    } else {
                        FailureReason::VerifyFailed
                    };
                    match next.roll_back(why) {
                        Ok(rolled) => {
                            if let Err(e) = store.store(&rolled) {
                                console::line(&format!(
                                    "limpet-init: cannot record the rollback: {e}"
                                ));
                            }
                        }
                        Err(e) => console::line(&format!("limpet-init: rollback refused: {e}")),
                    }
                    let committed = next.committed_slot();
                    let state = store.load().ok();
                    mount(
                        root,
                        disk,
                        key,
                        &Attempt {
                            slot: committed,
                            floor,
                        },
                    )
                    .map(|mounted| Booted {
                        slot: committed,
                        mounted,
                        state,
                        trial: None,
                    })
                }
                Err(reason) => Err(format!("committed slot {choice_slot}: {reason}")),
            }
        }
        StateSource::Blank => {
            console::line("limpet-init: state partition is blank: booting slot A (factory)");
            let mounted = mount(
                root,
                disk,
                key,
                &Attempt {
                    slot: Slot::A,
                    floor: None,
                },
            )?;
            let state = match Version::parse(&mounted.header.version) {
                Ok(version) => {
                    let state = State::factory(version);
                    match store.store(&state) {
                        Ok(_) => Some(state),
                        Err(e) => {
                            console::line(&format!(
                                "limpet-init: cannot write the factory state: {e}"
                            ));
                            None
                        }
                    }
                }
                Err(e) => {
                    console::line(&format!("limpet-init: slot A version is not valid: {e}"));
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
        StateSource::Unreadable(reason) => {
            console::line(&format!("limpet-init: state unreadable ({reason}): trying slot A then B, state left untouched"));
            let mut failures = Vec::new();
            for slot in [Slot::A, Slot::B] {
                match mount(root, disk, key, &Attempt { slot, floor: None }) {
                    Ok(mounted) => {
                        return Ok(Booted {
                            slot,
                            mounted,
                            state: None,
                            trial: None,
                        })
                    }
                    Err(e) => failures.push(format!("slot {slot}: {e}")),
                }
            }
            Err(failures.join("; "))
        }
    }
}

/// Verifies and mounts one slot.
fn mount(
    root: &Path,
    disk: &DiskPartitions,
    key: &ed25519_dalek::VerifyingKey,
    attempt: &Attempt,
) -> Result<MountedSlot, String> {
    let part = match attempt.slot {
        Slot::A => &disk.slot_a,
        Slot::B => &disk.slot_b,
    };
    let label = attempt.slot.partition_name();
    let device = part.node(root);
    let header =
        verified::verify_header(&device, key).map_err(|e| format!("{label} refused: {e}"))?;
    if let Some(floor) = &attempt.floor {
        if let Some(reason) = below_floor(&header.version, floor) {
            return Err(format!("{label} refused: {reason}"));
        }
    }
    console::line(&format!(
        "limpet-init: {label} header verified: {} {} ({}), verity root {}",
        header.device,
        header.version,
        header.target,
        crate::dm::hex(&header.root_hash)
    ));
    let dm_name = format!("limpet-{label}");
    let mounted = verified::mount_verified(
        root,
        &device,
        header,
        &dm_name,
        &root.join(crate::SLOT_MOUNT),
    )
    .map_err(|e| format!("{label} not mounted: {e}"))?;
    console::line(&format!(
        "limpet-init: {label} ({} {}) mounted read-only from {} on {}",
        mounted.header.device,
        mounted.header.version,
        mounted.verity_device.display(),
        mounted.mountpoint.display()
    ));
    Ok(mounted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_refuses_older_and_invalid_versions() {
        let floor = Version::parse("1.4.0").unwrap();
        assert!(below_floor("1.3.9", &floor).is_some());
        assert!(below_floor("1.4.0", &floor).is_none());
        assert!(below_floor("1.4.0+rebuild", &floor).is_none());
        assert!(below_floor("2.0.0", &floor).is_none());
        assert!(below_floor("not-a-version", &floor).is_some());
    }
}
