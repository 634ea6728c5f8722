//! The A/B state of a disk image, as `limpet inspect` shows it.

use std::fs::File;
use std::path::{Path, PathBuf};

use limpet_image::gpt;
use limpet_state::{Region, State, StateError, StateStore};
use serde::Serialize;

/// Errors reading a disk's state.
#[derive(Debug, thiserror::Error)]
pub enum DiskStateError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: bad GPT")]
    Gpt {
        path: PathBuf,
        source: gpt::GptError,
    },
    #[error("{path}: no state partition")]
    NoPartition { path: PathBuf },
    #[error("{path}: state partition")]
    State { path: PathBuf, source: StateError },
}

/// The stored state, in words.
#[derive(Debug, Clone, Serialize)]
pub struct StateSummary {
    pub committed_slot: String,
    pub committed_version: String,
    pub floor: String,
    pub trial: Option<String>,
    pub last_failure: Option<String>,
    pub highest_failed: Option<String>,
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

/// Reads the state partition of the disk image at `path`.
pub fn read(path: &Path) -> Result<StateSummary, DiskStateError> {
    let read_err = |source| DiskStateError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let parts = gpt::read(&mut file).map_err(|source| DiskStateError::Gpt {
        path: path.to_owned(),
        source,
    })?;
    let part = gpt::find(&parts, "state").ok_or_else(|| DiskStateError::NoPartition {
        path: path.to_owned(),
    })?;
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
