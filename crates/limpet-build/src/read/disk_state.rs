//! The A/B state of a disk image, as `limpet inspect` shows it.
//!
//! Rules this module keeps: the disk image is only read, never written; the state is read
//! through `limpet-state`'s own store, the code the device uses, so what is shown is what
//! the device would see.

use std::fs::File;
use std::path::{Path, PathBuf};

use limpet_image::gpt;
use limpet_state::{Region, State, StateError, StateStore};
use serde::Serialize;

/// Errors reading a disk's state.
#[derive(Debug, thiserror::Error)]
pub enum DiskStateError {
    /// The disk image could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The disk image's path.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// The disk image's partition table is not a valid GPT.
    #[error("{path}: bad GPT")]
    Gpt {
        /// The disk image's path.
        path: PathBuf,
        /// What is wrong with the table.
        source: gpt::GptError,
    },
    /// The disk has no partition of this name.
    #[error("{path}: no {name} partition")]
    NoPartition {
        /// The disk image's path.
        path: PathBuf,
        /// The partition's GPT name.
        name: &'static str,
    },
    /// The `state` partition holds no state record this version can read.
    #[error("{path}: state partition")]
    State {
        /// The disk image's path.
        path: PathBuf,
        /// Why its records cannot be read.
        source: StateError,
    },
}

/// The stored state, in words.
#[derive(Debug, Clone, Serialize)]
pub struct StateSummary {
    /// The partition the device boots when no trial is running (`slot-a` or `slot-b`).
    pub committed_slot: String,
    /// The version of the image in that slot.
    pub committed_version: String,
    /// The version floor: no lower version is booted or tried.
    pub floor: String,
    /// The trial of a new slot, if one is set: its version, slot, boots left and phase.
    pub trial: Option<String>,
    /// The last failed trial, if any: its version, slot, why it failed and at which boot.
    pub last_failure: Option<String>,
    /// The highest version that ever failed its trial; it and every lower version are not
    /// tried again.
    pub highest_failed: Option<String>,
    /// How many boots the device has begun since its state was written at the factory.
    pub boot_count: u64,
}

impl StateSummary {
    fn of(state: &State) -> Self {
        Self {
            committed_slot: state.committed_slot().partition_name().to_owned(),
            committed_version: state.committed_version().to_string(),
            floor: state.floor().to_string(),
            trial: state.trial().map(|t| {
                format!(
                    "{} on {}, {} boot(s) left ({:?})",
                    t.version,
                    t.slot.partition_name(),
                    t.boots_left,
                    t.phase
                )
            }),
            last_failure: state.last_failure().map(|f| {
                format!(
                    "{} on {}: {:?} at boot {}",
                    f.version,
                    f.slot.partition_name(),
                    f.reason,
                    f.boot_count
                )
            }),
            highest_failed: state.highest_failed().map(ToString::to_string),
            boot_count: state.boot_count(),
        }
    }
}

/// The disk image at `path`, opened for reading, and its partition `name`.
pub(crate) fn open_partition(
    path: &Path,
    name: &'static str,
) -> Result<(File, gpt::Partition), DiskStateError> {
    let mut file = File::open(path).map_err(|source| DiskStateError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parts = gpt::read(&mut file).map_err(|source| DiskStateError::Gpt {
        path: path.to_owned(),
        source,
    })?;
    let part = gpt::find(&parts, name)
        .cloned()
        .ok_or_else(|| DiskStateError::NoPartition {
            path: path.to_owned(),
            name,
        })?;
    Ok((file, part))
}

/// Reads the state partition of the disk image at `path`.
pub fn read(path: &Path) -> Result<StateSummary, DiskStateError> {
    let read_err = |source| DiskStateError::Read {
        path: path.to_owned(),
        source,
    };
    let (mut file, part) = open_partition(path, "state")?;
    let region = Region::new(&mut file, part.offset(), part.size()).map_err(read_err)?;
    let state_err = |source| DiskStateError::State {
        path: path.to_owned(),
        source,
    };
    let state = StateStore::new(region)
        .map_err(state_err)?
        .load()
        .map_err(state_err)?;
    Ok(StateSummary::of(&state))
}
