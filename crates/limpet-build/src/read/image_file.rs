//! Finding a slot in what the user points at: an output directory, a `slot.img`, or a
//! `disk.img` (whose `slot-a` partition holds the slot).
//!
//! Rules this module keeps: the kind of a file is decided by its bytes (the squashfs
//! magic at 0, the GPT signature at 512), never by its name; a partition is read only if
//! it lies wholly inside the file; the slot is trimmed to the length its own header gives,
//! so padding after it is never part of what is checked.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use limpet_image::{gpt, slot};

use crate::outputs::{DISK_IMG, SLOT_IMG};

/// Errors finding a slot.
#[derive(Debug, thiserror::Error)]
pub enum ImageFileError {
    /// The file (or the directory's `slot.img`) could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file's path.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// The file starts with neither the squashfs magic of a slot nor a GPT.
    #[error("{path} is neither a slot image (squashfs magic `hsqs` at 0) nor a GPT disk image")]
    Unknown {
        /// The file's path.
        path: PathBuf,
    },
    /// The file looks like a disk image but its partition table is not a valid GPT.
    #[error("{path}: bad GPT")]
    Gpt {
        /// The disk image's path.
        path: PathBuf,
        /// What is wrong with the table.
        source: gpt::GptError,
    },
    /// The disk image has no partition of that name.
    #[error("{path}: no partition named `{name}`")]
    NoPartition {
        /// The disk image's path.
        path: PathBuf,
        /// The partition looked for (`slot-a`).
        name: String,
    },
    /// The partition table places the partition past the end of the file (a truncated
    /// image).
    #[error("{path}: partition `{name}` lies outside the file")]
    PartitionOutside {
        /// The disk image's path.
        path: PathBuf,
        /// The partition's name.
        name: String,
    },
    /// The bytes have no slot header where the slot's layout puts it, so the slot's length
    /// is unknown.
    #[error("{path}: not a valid slot")]
    Slot {
        /// The file's path.
        path: PathBuf,
        /// What is wrong with the slot.
        source: slot::SlotError,
    },
}

/// Where the slot bytes came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotOrigin {
    /// A slot image file (`slot.img`).
    SlotFile,
    /// A partition of a disk image.
    DiskPartition {
        /// The partition's name (`slot-a`).
        name: String,
    },
}

/// The bytes of one slot, trimmed to the slot's own length.
#[derive(Debug)]
pub struct SlotBytes {
    /// The file the slot was read from (`DIR/slot.img` for a directory).
    pub path: PathBuf,
    /// Whether that file is a slot image or a disk image, and which partition.
    pub origin: SlotOrigin,
    /// The slot: squashfs, dm-verity tree, signed header and attachment, without the
    /// padding after it.
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
