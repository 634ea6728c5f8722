//! Finding a slot in what the user points at: an output directory, a `slot.img`, or a
//! `disk.img` (whose `slot-a` partition holds the slot).

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use limpet_image::{gpt, slot};

use crate::outputs::{DISK_IMG, SLOT_IMG};

/// Errors finding a slot.
#[derive(Debug, thiserror::Error)]
pub enum ImageFileError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is neither a slot image (squashfs magic `hsqs` at 0) nor a GPT disk image")]
    Unknown { path: PathBuf },
    #[error("{path}: bad GPT")]
    Gpt {
        path: PathBuf,
        source: gpt::GptError,
    },
    #[error("{path}: no partition named `{name}`")]
    NoPartition { path: PathBuf, name: String },
    #[error("{path}: partition `{name}` lies outside the file")]
    PartitionOutside { path: PathBuf, name: String },
    #[error("{path}: not a valid slot")]
    Slot {
        path: PathBuf,
        source: slot::SlotError,
    },
}

/// Where the slot bytes came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotOrigin {
    SlotFile,
    DiskPartition { name: String },
}

/// The bytes of one slot, trimmed to the slot's own length.
#[derive(Debug)]
pub struct SlotBytes {
    pub path: PathBuf,
    pub origin: SlotOrigin,
    pub bytes: Vec<u8>,
}

/// Reads the slot that `path` designates: `DIR/slot.img` for a directory, the file
/// itself for a slot image, partition `slot-a` for a disk image.
pub fn load_slot(path: &Path) -> Result<SlotBytes, ImageFileError> {
    let file = if path.is_dir() {
        path.join(SLOT_IMG)
    } else {
        path.to_owned()
    };
    let bytes = fs::read(&file).map_err(|source| ImageFileError::Read {
        path: file.clone(),
        source,
    })?;
    if bytes.starts_with(b"hsqs") {
        return trim(file, SlotOrigin::SlotFile, bytes);
    }
    if bytes.get(512..520) == Some(b"EFI PART") {
        return slot_from_disk(&file, &bytes, "slot-a");
    }
    Err(ImageFileError::Unknown { path: file })
}

/// The slot held by partition `name` of a disk image already in memory.
pub fn slot_from_disk(path: &Path, disk: &[u8], name: &str) -> Result<SlotBytes, ImageFileError> {
    let parts = gpt::read(&mut Cursor::new(disk)).map_err(|source| ImageFileError::Gpt {
        path: path.to_owned(),
        source,
    })?;
    let part =
        parts
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ImageFileError::NoPartition {
                path: path.to_owned(),
                name: name.to_owned(),
            })?;
    let outside = || ImageFileError::PartitionOutside {
        path: path.to_owned(),
        name: name.to_owned(),
    };
    let start = usize::try_from(part.first_lba.checked_mul(512).ok_or_else(outside)?)
        .map_err(|_| outside())?;
    let end = usize::try_from(
        part.last_lba
            .checked_add(1)
            .and_then(|l| l.checked_mul(512))
            .ok_or_else(outside)?,
    )
    .map_err(|_| outside())?;
    let bytes = disk.get(start..end).ok_or_else(outside)?.to_vec();
    trim(
        path.to_owned(),
        SlotOrigin::DiskPartition {
            name: name.to_owned(),
        },
        bytes,
    )
}

/// Cuts a partition's bytes down to the slot it holds.
fn trim(
    path: PathBuf,
    origin: SlotOrigin,
    mut bytes: Vec<u8>,
) -> Result<SlotBytes, ImageFileError> {
    let (layout, _) =
        slot::read_header_at(&mut Cursor::new(&bytes)).map_err(|source| ImageFileError::Slot {
            path: path.clone(),
            source,
        })?;
    let total = usize::try_from(layout.total_size).unwrap_or(usize::MAX);
    if total < bytes.len() {
        bytes.truncate(total);
    }
    Ok(SlotBytes {
        path,
        origin,
        bytes,
    })
}

/// The disk image beside a slot in an output directory, if `path` is such a directory.
pub fn disk_beside(path: &Path) -> Option<PathBuf> {
    let disk = path.join(DISK_IMG);
    (path.is_dir() && disk.is_file()).then_some(disk)
}
