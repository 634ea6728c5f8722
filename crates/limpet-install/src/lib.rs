//! Installing an update into the inactive slot, as PID 1 does it for the update agent.
//!
//! The sequence (each step a function here, each storing state before acting on it):
//! 1. [`begin`]: the version must be one the state allows to try (above the floor, above
//!    every failed version), no trial may be under the health gate, and the image must fit the
//!    inactive slot. A trial that is staged but was never booted is dropped first
//!    (`cancel_trial`, stored), so the state never points at a slot being overwritten.
//! 2. [`Session::write`]: bytes go into the inactive slot, only inside the announced
//!    length. Until step 3 the state does not mention that slot, so a power cut here
//!    leaves a slot that is never booted.
//! 3. [`Session::finish`]: the whole written slot is read back and verified (signature with
//!    the device's key, every verity block, the attachment), its version and root hash must
//!    be the ones announced and signed by the repository, the slot is flushed, and only then
//!    is it marked as a trial in the state (one stored record: the commit point of the install).
//!
//! The boot that follows spends one of the trial's boots before mounting it, and PID 1's
//! health gate commits it or rolls it back (limpet-state's rules).

#![warn(missing_docs)]

pub mod owner;
mod reader;
pub mod remote;
pub mod server;
mod socket;

use ed25519_dalek::VerifyingKey;
use limpet_image::slot::{self, SlotError};
use limpet_state::{BlockDevice, Slot, State, StateError, StateStore, TransitionError, Version};
use thiserror::Error;

pub use reader::BlockReader;

/// Why an install step was refused or failed.
#[derive(Debug, Error)]
pub enum InstallError {
    /// The `state` partition could not be read or holds no valid record.
    #[error("cannot read the A/B state")]
    State(#[source] StateError),
    /// The new A/B state could not be written.
    #[error("cannot store the A/B state")]
    Store(#[source] StateError),
    /// The announced version is not a version at all.
    #[error("version {version:?} is not valid")]
    Version {
        /// The text as the agent sent it.
        version: String,
        /// Why it does not parse.
        #[source]
        source: limpet_state::VersionError,
    },
    /// The running boot is itself a trial: its fate is decided before another is staged.
    #[error("a trial of {version} is under the health gate: no update until it is committed or rolled back")]
    OnTrial {
        /// The version under the health gate.
        version: Version,
    },
    /// The A/B state refuses a trial of this version (at or below the floor, or failed before).
    #[error("version {version} may not be tried")]
    Refused {
        /// The version refused.
        version: Version,
        /// The state machine's reason.
        #[source]
        source: Box<TransitionError>,
    },
    /// The announced image is larger than the inactive slot's partition.
    #[error("image of {length} bytes does not fit slot {slot} ({capacity} bytes)")]
    TooLarge {
        /// The slot the image was for.
        slot: Slot,
        /// The image's announced size in bytes.
        length: u64,
        /// The slot partition's size in bytes.
        capacity: u64,
    },
    /// The slot partition's size could not be read.
    #[error("cannot size slot {slot}")]
    Capacity {
        /// The slot being sized.
        slot: Slot,
        /// The device's error.
        #[source]
        source: std::io::Error,
    },
    /// A write reaching outside the length announced by `begin`.
    #[error("write of {len} bytes at offset {offset} is outside the announced {length} bytes")]
    OutOfRange {
        /// Where the write starts.
        offset: u64,
        /// Its bytes.
        len: u64,
        /// The announced image length.
        length: u64,
    },
    /// The slot partition refused a write.
    #[error("cannot write slot {slot} at offset {offset}")]
    Write {
        /// The slot being written.
        slot: Slot,
        /// Where the write started.
        offset: u64,
        /// The device's error.
        #[source]
        source: std::io::Error,
    },
    /// The written bytes could not be made durable.
    #[error("cannot flush slot {slot}")]
    Flush {
        /// The slot being flushed.
        slot: Slot,
        /// The device's error.
        #[source]
        source: std::io::Error,
    },
    /// The written slot fails verification: header signature, verity tree or attachment.
    #[error("the written slot {slot} does not verify")]
    Verify {
        /// The slot written.
        slot: Slot,
        /// What did not verify.
        #[source]
        source: SlotError,
    },
    /// A validly signed slot of another version than announced (an old image replayed).
    #[error("the written slot holds version {found}, the update announced {announced}")]
    WrongVersion {
        /// The version given to `begin`.
        announced: Version,
        /// The version in the slot's signed header, as written there.
        found: String,
    },
    /// A validly signed slot that is not the image the TUF repository's target names.
    #[error("the written slot's verity root hash is not the one the repository signed")]
    WrongRootHash,
}

/// An install in progress: the slot being written and what it must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    slot: Slot,
    version: Version,
    length: u64,
}

/// Step 1: checks that `version` may be installed and tried, and drops a staged trial that
/// was never booted. Returns the session for the inactive slot.
pub fn begin<S: BlockDevice, T: BlockDevice>(
    store: &mut StateStore<S>,
    target: &T,
    version: &str,
    length: u64,
) -> Result<Session, InstallError> {
    let version = Version::parse(version).map_err(|source| InstallError::Version {
        version: version.to_owned(),
        source,
    })?;
    let state = store.load().map_err(InstallError::State)?;
    let slot = state.other_slot();
    if let Some(t) = state.trial() {
        if t.phase == limpet_state::TrialPhase::Booted {
            return Err(InstallError::OnTrial {
                version: t.version.clone(),
            });
        }
    }
    // Would the finished install be accepted? Checked against the state without its
    // staged trial, the one the install replaces.
    let without_trial = match state.trial() {
        Some(_) => state
            .cancel_trial()
            .map_err(|source| InstallError::Refused {
                version: version.clone(),
                source: Box::new(source),
            })?,
        None => state.clone(),
    };
    without_trial
        .mark_trial(slot, version.clone(), 1)
        .map_err(|source| InstallError::Refused {
            version: version.clone(),
            source: Box::new(source),
        })?;
    let capacity = target
        .len()
        .map_err(|source| InstallError::Capacity { slot, source })?;
    if length > capacity {
        return Err(InstallError::TooLarge {
            slot,
            length,
            capacity,
        });
    }
    if state.trial().is_some() {
        store.store(&without_trial).map_err(InstallError::Store)?;
    }
    Ok(Session {
        slot,
        version,
        length,
    })
}

impl Session {
    /// The slot being written.
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// The version being installed.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// Step 2: writes `data` at `offset` of the slot, inside the announced length.
    pub fn write<T: BlockDevice>(
        &self,
        target: &mut T,
        offset: u64,
        data: &[u8],
    ) -> Result<(), InstallError> {
        let len = data.len() as u64;
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > self.length) {
            return Err(InstallError::OutOfRange {
                offset,
                len,
                length: self.length,
            });
        }
        target
            .write_at(offset, data)
            .map_err(|source| InstallError::Write {
                slot: self.slot,
                offset,
                source,
            })
    }

    /// Step 3: verifies the written slot completely, checks it is the announced version
    /// with the signed root hash, flushes it, and marks it as the trial for `boots` boots.
    pub fn finish<S: BlockDevice, T: BlockDevice>(
        self,
        store: &mut StateStore<S>,
        target: &mut T,
        key: &VerifyingKey,
        root_hash: &[u8; 32],
        boots: u8,
    ) -> Result<State, InstallError> {
        target.flush().map_err(|source| InstallError::Flush {
            slot: self.slot,
            source,
        })?;
        let mut reader =
            BlockReader::new(&mut *target).map_err(|source| InstallError::Capacity {
                slot: self.slot,
                source,
            })?;
        let (_, header) =
            slot::verify_at(&mut reader, key).map_err(|source| InstallError::Verify {
                slot: self.slot,
                source,
            })?;
        match Version::parse(&header.version) {
            Ok(v) if v == self.version => {}
            _ => {
                return Err(InstallError::WrongVersion {
                    announced: self.version,
                    found: header.version,
                })
            }
        }
        if &header.root_hash != root_hash {
            return Err(InstallError::WrongRootHash);
        }
        let state = store.load().map_err(InstallError::State)?;
        let next = state
            .mark_trial(self.slot, self.version.clone(), boots)
            .map_err(|source| InstallError::Refused {
                version: self.version,
                source: Box::new(source),
            })?;
        store.store(&next).map_err(InstallError::Store)?;
        Ok(next)
    }
}
