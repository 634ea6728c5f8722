//! Which slot boots: the loader's half of docs/boot.md's "Slot choice", over the
//! [`Disk`] seam, printing one line per step.
//!
//! Outcomes, one function each, chosen by what the state partition holds:
//! - **stored state** (`boot_stored`): `begin_boot`, and its result stored (the other
//!   copy, then flush) *before* the slot is read, so a trial whose kernel hangs still
//!   spends its boots. If storing a *trial's* boot fails, the committed slot boots instead
//!   (a trial booted without its boot recorded could loop forever). A trial slot that
//!   fails verification is rolled back with `VerifyFailed` (stored; a failure to store is
//!   reported, not fatal) and the committed slot boots. The committed slot failing halts
//!   the loader: after `begin_boot` the other slot holds a trial just given up, an older
//!   version (below the floor) or a failed one, never something to fall back to.
//! - a verified kernel the firmware will not start ([`start_failed`]; `LoadImage` refusing
//!   its Secure Boot signature, `StartImage` returning) is a trial that failed
//!   verification, as above; the committed slot's kernel not starting halts.
//! - **blank state** (`boot_blank`; a factory disk whose state was never written): slot A,
//!   no floor; nothing is written (PID 1 writes the factory state once the slot mounts).
//! - **unreadable state** (`boot_unreadable`; both copies corrupt, I/O errors, a partition
//!   too small): slot A, then slot B, no floor; the state is left untouched as evidence.
//!
//! The same rules as PID 1's (`crates/limpet-init/src/slots.rs`), and the same code for
//! the state itself: limpet-state's `no_std` core reads, counts and writes the record.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use limpet_state::copies::{self, StoreError};
use limpet_state::{BootKind, FailureReason, Slot, State, Version};

use crate::cmdline::final_cmdline;
use crate::disk::{Disk, Part, PartError, StateCopies};
use crate::gpt::{self, GptError, Partitions};
use crate::owner::Keys;
use crate::slot::{self, SlotError, VerifiedSlot};

/// Where the loader's step lines go (the firmware's console; a buffer in the tests).
pub trait Console {
    /// Prints one line (the implementation adds the `limpet-boot: ` prefix).
    fn line(&mut self, args: fmt::Arguments<'_>);
}

/// The slot to start, verified, with the command line its kernel gets.
#[derive(Debug)]
pub struct Booting {
    /// The slot.
    pub slot: Slot,
    /// Its verified header (with the signed command line), kernel and initramfs.
    pub verified: VerifiedSlot,
    /// The whole command line ([`final_cmdline`]).
    pub cmdline: String,
    /// Set when the slot is a trial: what [`start_failed`] rolls back.
    trial: Option<TrialBoot>,
    /// Whether this is the committed slot of a stored A/B state (not a trial, not a slot
    /// tried on a blank or unreadable state): the only slot the vendor's key verifies
    /// while handing over (`owner::retire_vendor` reads it).
    pub committed: bool,
}

/// A trial being booted: its stored state (boot spent) and the partitions.
#[derive(Debug)]
struct TrialBoot {
    state: State,
    parts: Partitions,
}

/// Why nothing boots. The loader prints it and halts: it never starts unverified code.
#[derive(Debug, thiserror::Error)]
pub enum Halt {
    /// The boot disk's partitions cannot be found.
    #[error("boot disk partitions: {source}")]
    Gpt {
        /// Why.
        source: GptError,
    },
    /// The committed slot does not verify.
    #[error("committed slot {slot} refused: {source}")]
    Committed {
        /// The slot.
        slot: Slot,
        /// Why.
        source: SlotError,
    },
    /// Blank state and slot A does not verify.
    #[error("blank state and slot A refused: {source}")]
    Factory {
        /// Why.
        source: SlotError,
    },
    /// The committed slot verified, but its kernel did not start.
    #[error("committed slot {slot} did not start: {reason}")]
    NotStarted {
        /// The slot.
        slot: Slot,
        /// The firmware's answer.
        reason: String,
    },
    /// Unreadable state and neither slot verifies.
    #[error("state unreadable and neither slot verifies: slot A: {a}; slot B: {b}")]
    NoSlot {
        /// Why slot A was refused.
        a: Box<SlotError>,
        /// Why slot B was refused.
        b: Box<SlotError>,
    },
}

macro_rules! say {
    ($con:expr, $($arg:tt)*) => { $con.line(format_args!($($arg)*)) };
}

/// Chooses, counts and verifies the slot to boot (the module doc's rules).
pub fn choose<D: Disk>(disk: &mut D, keys: &Keys, con: &mut impl Console) -> Result<Booting, Halt> {
    let parts = gpt::find_partitions(disk).map_err(|source| Halt::Gpt { source })?;
    say!(
        con,
        "disk: state at {} ({} KiB), slot-a at {} ({} KiB), slot-b at {} ({} KiB)",
        parts.state.start,
        parts.state.len / 1024,
        parts.slot_a.start,
        parts.slot_a.len / 1024,
        parts.slot_b.start,
        parts.slot_b.len / 1024
    );
    let loaded = copies::check_len(parts.state.len).and_then(|()| {
        copies::load_detailed(&mut StateCopies {
            disk: &mut *disk,
            part: parts.state,
        })
    });
    match loaded {
        Ok(loaded) => boot_stored(disk, &parts, keys, &loaded.state, con),
        Err(StoreError::Blank) => boot_blank(disk, &parts, keys, con),
        Err(e) => boot_unreadable(disk, &parts, keys, &e, con),
    }
}

fn part_of(parts: &Partitions, slot: Slot) -> &Part {
    match slot {
        Slot::A => &parts.slot_a,
        Slot::B => &parts.slot_b,
    }
}

/// Reads and verifies `slot`, printing the outcome.
fn attempt<D: Disk>(
    disk: &mut D,
    parts: &Partitions,
    keys: &Keys,
    slot: Slot,
    floor: Option<&Version>,
    con: &mut impl Console,
) -> Result<Booting, SlotError> {
    let part = part_of(parts, slot);
    let verified = slot::load(disk, part, keys, floor)?;
    let h = &verified.header;
    say!(
        con,
        "{} verified: {} {} ({}), signed by the {} key, kernel {} bytes, initramfs {} bytes, sha256 match",
        part.name,
        h.device,
        h.version,
        h.target.as_str(),
        match verified.signer {
            slot::Signer::Vendor => "vendor's",
            slot::Signer::Owner => "OWNER's",
        },
        h.kernel.size,
        h.initramfs.size
    );
    let cmdline = final_cmdline(&h.cmdline, slot, &keys.param());
    Ok(Booting {
        slot,
        verified,
        cmdline,
        trial: None,
        committed: false,
    })
}

fn boot_stored<D: Disk>(
    disk: &mut D,
    parts: &Partitions,
    keys: &Keys,
    state: &State,
    con: &mut impl Console,
) -> Result<Booting, Halt> {
    let (next, choice) = state.begin_boot();
    let stored = store(disk, parts, &next);
    if let Some(failure) = &choice.rolled_back {
        say!(
            con,
            "trial of {} on slot {} spent its boots: rolled back",
            failure.version,
            failure.slot
        );
    }
    let committed = next.committed_slot();
    let slot = match (&choice.kind, &stored) {
        (BootKind::Trial { .. }, Err(e)) => {
            // The spent boot was not recorded: booting the trial could loop forever.
            say!(
                con,
                "cannot record the trial boot ({}); booting the committed slot",
                Chain(e)
            );
            committed
        }
        (_, Err(e)) => {
            say!(
                con,
                "cannot record the boot count ({}); booting on",
                Chain(e)
            );
            committed
        }
        (_, Ok(sequence)) => {
            say!(
                con,
                "boot {} counted (state record {sequence} written)",
                next.boot_count()
            );
            choice.slot
        }
    };
    let is_trial = slot != committed;
    say!(
        con,
        "state: committed slot {committed} ({}), floor {}, booting slot {slot}{}",
        next.committed_version(),
        next.floor(),
        match (&choice.kind, is_trial) {
            (BootKind::Trial { boots_left_after }, true) =>
                alloc::format!(" (trial, {boots_left_after} boot(s) left after this one)"),
            _ => String::new(),
        }
    );
    let floor = next.floor().clone();
    let slot_keys = if is_trial { keys.for_new_slot() } else { *keys };
    match attempt(disk, parts, &slot_keys, slot, Some(&floor), con) {
        Ok(booting) if is_trial => Ok(Booting {
            trial: Some(TrialBoot {
                state: next,
                parts: *parts,
            }),
            ..booting
        }),
        Ok(booting) => Ok(Booting {
            committed: true,
            ..booting
        }),
        Err(failed) if is_trial => {
            say!(con, "trial slot {slot} refused: {failed}; rolling back");
            roll_back_to_committed(disk, parts, keys, &next, con)
        }
        Err(source) => Err(Halt::Committed { slot, source }),
    }
}

/// What to do when the verified kernel of `booting` did not start (the firmware's
/// `LoadImage` refused it, e.g. its Secure Boot signature, or `StartImage` returned): a
/// trial is rolled back (`VerifyFailed`, stored) and the committed slot is verified and
/// returned to start instead; the committed slot failing to start halts.
pub fn start_failed<D: Disk>(
    disk: &mut D,
    keys: &Keys,
    booting: Booting,
    why: &dyn fmt::Display,
    con: &mut impl Console,
) -> Result<Booting, Halt> {
    match booting.trial {
        Some(trial) => {
            say!(
                con,
                "trial slot {} did not start: {why}; rolling back",
                booting.slot
            );
            roll_back_to_committed(disk, &trial.parts, keys, &trial.state, con)
        }
        None => Err(Halt::NotStarted {
            slot: booting.slot,
            reason: alloc::string::ToString::to_string(why),
        }),
    }
}

/// Records the rollback of the trial in `state` (a failure to record it is reported, not
/// fatal: the trial has spent a boot) and verifies the committed slot.
fn roll_back_to_committed<D: Disk>(
    disk: &mut D,
    parts: &Partitions,
    keys: &Keys,
    state: &State,
    con: &mut impl Console,
) -> Result<Booting, Halt> {
    match state.roll_back(FailureReason::VerifyFailed) {
        Ok(rolled) => match store(disk, parts, &rolled) {
            Ok(_) => say!(con, "trial rolled back (verification failed), recorded"),
            Err(e) => say!(con, "cannot record the rollback: {}", Chain(&e)),
        },
        Err(e) => say!(con, "rollback refused: {e}"),
    }
    let committed = state.committed_slot();
    attempt(disk, parts, keys, committed, Some(state.floor()), con)
        .map(|booting| Booting {
            committed: true,
            ..booting
        })
        .map_err(|source| Halt::Committed {
            slot: committed,
            source,
        })
}

fn boot_blank<D: Disk>(
    disk: &mut D,
    parts: &Partitions,
    keys: &Keys,
    con: &mut impl Console,
) -> Result<Booting, Halt> {
    say!(
        con,
        "state: blank; booting slot A with no floor (PID 1 writes the factory state)"
    );
    attempt(disk, parts, &keys.for_new_slot(), Slot::A, None, con)
        .map_err(|source| Halt::Factory { source })
}

fn boot_unreadable<D: Disk>(
    disk: &mut D,
    parts: &Partitions,
    keys: &Keys,
    reason: &StoreError<PartError<D::Error>>,
    con: &mut impl Console,
) -> Result<Booting, Halt> {
    say!(
        con,
        "state unreadable ({}): trying slot A then B, state left untouched",
        Chain(reason)
    );
    let keys = &keys.for_new_slot();
    let a = match attempt(disk, parts, keys, Slot::A, None, con) {
        Ok(booting) => return Ok(booting),
        Err(a) => {
            say!(con, "slot-a refused: {a}");
            a
        }
    };
    attempt(disk, parts, keys, Slot::B, None, con).map_err(|b| Halt::NoSlot {
        a: Box::new(a),
        b: Box::new(b),
    })
}

/// A state error with the medium's error after it (the console has room for one line,
/// and the firmware's errors have no chain of their own).
struct Chain<'a, E>(&'a StoreError<E>);

impl<E: fmt::Display> fmt::Display for Chain<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            StoreError::Read { source, .. }
            | StoreError::Write { source, .. }
            | StoreError::Flush { source, .. }
            | StoreError::Size { source } => write!(f, "{}: {source}", self.0),
            other => write!(f, "{other}"),
        }
    }
}

/// Stores `state` through the two-copy rules.
fn store<D: Disk>(
    disk: &mut D,
    parts: &Partitions,
    state: &State,
) -> Result<u64, StoreError<PartError<D::Error>>> {
    copies::store(
        &mut StateCopies {
            disk,
            part: parts.state,
        },
        state,
    )
}

#[cfg(test)]
mod tests;
