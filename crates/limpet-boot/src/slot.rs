//! Reading and verifying one slot: its header, then the kernel, the initramfs and the
//! command line, each against the sha256 the signed header names.
//!
//! Order (each step refuses the slot on failure, naming the step):
//! 1. read the header block, decode every field ([`crate::header::decode`]);
//! 2. check the key id and the Ed25519 signature (`verify_strict`) with the loader's key;
//! 3. check the target is this loader's architecture;
//! 4. check the version is not below the floor (semver precedence, limpet-state's rule);
//! 5. for the kernel, the initramfs and the command line: check the extent lies inside
//!    the partition *before* allocating, read it, and compare its sha256;
//! 6. the command line must be printable ASCII (it becomes UCS-2 load options).
//!
//! Nothing a failed step read is returned: the caller gets a [`VerifiedSlot`] or an error.

use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Ordering;

use ed25519_dalek::VerifyingKey;
use limpet_state::Version;
use sha2::{Digest, Sha256};

use crate::disk::{Disk, Part, PartError};
use crate::header::{self, BootHeader, Extent, HeaderError, HEADER_SIZE};

/// A slot whose every byte the loader hands on was checked.
#[derive(Debug)]
pub struct VerifiedSlot {
    /// The verified header.
    pub header: BootHeader,
    /// The kernel image.
    pub kernel: Vec<u8>,
    /// The initramfs.
    pub initramfs: Vec<u8>,
    /// The signed command line.
    pub cmdline: String,
}

/// Why a slot is refused.
#[derive(Debug, thiserror::Error)]
pub enum SlotError<E> {
    /// The disk failed, or a part lies outside the partition.
    #[error("reading the {part}: {source}")]
    Read {
        /// What was read.
        part: &'static str,
        /// Why it failed.
        source: PartError<E>,
    },
    /// The header is invalid or its signature does not verify.
    #[error("header: {source}")]
    Header {
        /// Why.
        source: HeaderError,
    },
    /// The slot is for another architecture.
    #[error("slot is for {found}, this loader boots {expected}")]
    Target {
        /// The header's target.
        found: String,
        /// The loader's.
        expected: &'static str,
    },
    /// The version is below the floor (anti-rollback).
    #[error("version {version} is below the floor {floor}")]
    BelowFloor {
        /// The slot's version.
        version: Version,
        /// The floor.
        floor: Version,
    },
    /// Memory for a part cannot be had.
    #[error("cannot allocate {size} bytes for the {part}")]
    Memory {
        /// What.
        part: &'static str,
        /// How much.
        size: u64,
    },
    /// A part's bytes do not match the header's sha256.
    #[error("{part} ({size} bytes at offset {offset}) does not match its signed sha256")]
    Hash {
        /// What.
        part: &'static str,
        /// Its offset in the slot.
        offset: u64,
        /// Its size.
        size: u64,
    },
    /// The command line holds a byte outside printable ASCII.
    #[error("command line byte {index} is not printable ASCII")]
    Cmdline {
        /// Its index.
        index: usize,
    },
}

/// Reads and verifies the slot in `part` (steps in the module doc). `floor` is `None` only
/// when the state is blank or unreadable.
pub fn load<D: Disk>(
    disk: &mut D,
    part: &Part,
    key: &VerifyingKey,
    floor: Option<&Version>,
) -> Result<VerifiedSlot, SlotError<D::Error>> {
    // 1-2.
    let mut block = [0u8; HEADER_SIZE];
    part.read(disk, 0, &mut block)
        .map_err(|source| SlotError::Read {
            part: "header",
            source,
        })?;
    let header = header::decode(&block)
        .and_then(|h| h.verify(key))
        .map_err(|source| SlotError::Header { source })?;
    // 3.
    if header.target != crate::TARGET {
        return Err(SlotError::Target {
            found: header.target,
            expected: crate::TARGET,
        });
    }
    // 4.
    if let Some(floor) = floor {
        if header.version.precedence(floor) == Ordering::Less {
            return Err(SlotError::BelowFloor {
                version: header.version,
                floor: floor.clone(),
            });
        }
    }
    // 5.
    let kernel = read_checked(disk, part, "kernel", &header.kernel)?;
    let initramfs = read_checked(disk, part, "initramfs", &header.initramfs)?;
    let cmdline = read_checked(disk, part, "command line", &header.cmdline)?;
    // 6.
    if let Some(index) = cmdline.iter().position(|&b| !(0x20..=0x7e).contains(&b)) {
        return Err(SlotError::Cmdline { index });
    }
    // Printable ASCII is UTF-8.
    let cmdline = String::from_utf8(cmdline).map_err(|e| SlotError::Cmdline {
        index: e.utf8_error().valid_up_to(),
    })?;
    Ok(VerifiedSlot {
        header,
        kernel,
        initramfs,
        cmdline,
    })
}

/// Reads one extent after checking it lies in the partition, and checks its sha256.
fn read_checked<D: Disk>(
    disk: &mut D,
    part: &Part,
    name: &'static str,
    extent: &Extent,
) -> Result<Vec<u8>, SlotError<D::Error>> {
    part.map::<D::Error>(extent.offset, extent.size)
        .map_err(|source| SlotError::Read { part: name, source })?;
    let memory = SlotError::Memory {
        part: name,
        size: extent.size,
    };
    let len = usize::try_from(extent.size).map_err(|_| SlotError::Memory {
        part: name,
        size: extent.size,
    })?;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).map_err(|_| memory)?;
    bytes.resize(len, 0);
    part.read(disk, extent.offset, &mut bytes)
        .map_err(|source| SlotError::Read { part: name, source })?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    if digest != extent.sha256 {
        return Err(SlotError::Hash {
            part: name,
            offset: extent.offset,
            size: extent.size,
        });
    }
    Ok(bytes)
}
