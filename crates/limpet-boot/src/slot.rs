//! Reading and verifying one slot with limpet-image's format core (the same decoder,
//! signature check and layout rules as PID 1 and `limpet verify`), then the kernel and
//! the initramfs, each against the sha256 the signed header names.
//!
//! Order (each step refuses the slot on failure, naming the step):
//! 1. read the squashfs superblock and the header, decode every field, and check the
//!    layout against the partition (`slot::read_header_from`);
//! 2. check the key id and the Ed25519 signature (`verify_strict`) with the loader's key;
//! 3. check the target is this loader's architecture;
//! 4. check the version is not below the floor (semver precedence, limpet-state's rule);
//! 5. check every block of the app (the squashfs) against the signed dm-verity tree
//!    (`slot::check_app_from`), so that a slot whose app was changed starts nothing;
//! 6. read the kernel and the initramfs (their extents were checked against the
//!    partition in step 1) and compare each sha256 (`slot::read_part_from`).
//!
//! The command line is part of the signed header (printable ASCII, checked when it was
//! decoded). Nothing a failed step read is returned: the caller gets a [`VerifiedSlot`]
//! or an error.

use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Ordering;

use ed25519_dalek::VerifyingKey;
use limpet_image::header::{HeaderError, SlotHeader};
use limpet_image::io::{IoError, ReadAt};
use limpet_image::slot::{self as image_slot, BootPart, SlotError as ImageSlotError};
use limpet_state::Version;

use crate::disk::{Disk, Part, PartError};

/// A slot whose every byte the loader hands on was checked.
#[derive(Debug)]
pub struct VerifiedSlot {
    /// The verified header.
    pub header: SlotHeader,
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
    /// The header does not decode, its layout does not fit the partition, or a part's
    /// bytes do not match their signed sha256.
    #[error("{source}")]
    Format {
        /// Why (limpet-image's error, with its chain shown inline).
        source: ImageSlotError,
    },
    /// The header's signature does not verify under the loader's key.
    #[error("header: {source}")]
    Header {
        /// Why.
        source: HeaderError,
    },
    /// The slot is for another architecture.
    #[error("slot is for {found}, this loader boots {expected}")]
    Target {
        /// The header's target.
        found: &'static str,
        /// The loader's.
        expected: &'static str,
    },
    /// The header's version is not a version limpet-state can compare.
    #[error("version {version} is not valid semver")]
    Version {
        /// The header's version text.
        version: String,
    },
    /// The version is below the floor (anti-rollback).
    #[error("version {version} is below the floor {floor}")]
    BelowFloor {
        /// The slot's version.
        version: Version,
        /// The floor.
        floor: Version,
    },
}

/// One partition as limpet-image's [`ReadAt`], keeping the disk's own error: limpet-image
/// sees only that the read failed, and the loader reports the firmware's error.
struct PartReader<'a, D: Disk> {
    disk: &'a mut D,
    part: &'a Part,
    failed: Option<PartError<D::Error>>,
}

impl<D: Disk> ReadAt for PartReader<'_, D> {
    fn size(&mut self) -> Result<u64, IoError> {
        Ok(self.part.len)
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.part.read(self.disk, offset, buf).map_err(|e| {
            self.failed = Some(e);
            IoError::other("block read failed")
        })
    }
}

impl<D: Disk> PartReader<'_, D> {
    /// limpet-image's error as the loader's: a read failure becomes the disk's error.
    fn refuse(&mut self, e: ImageSlotError) -> SlotError<D::Error> {
        match (e, self.failed.take()) {
            (ImageSlotError::Io { part, .. }, Some(source)) => SlotError::Read { part, source },
            (source, _) => SlotError::Format { source },
        }
    }
}

/// Reads and verifies the slot in `part` (steps in the module doc). `floor` is `None` only
/// when the state is blank or unreadable.
pub fn load<D: Disk>(
    disk: &mut D,
    part: &Part,
    key: &VerifyingKey,
    floor: Option<&Version>,
) -> Result<VerifiedSlot, SlotError<D::Error>> {
    let mut dev = PartReader {
        disk,
        part,
        failed: None,
    };
    // 1-2.
    let (layout, unverified) = image_slot::read_header_from(&mut dev).map_err(|e| dev.refuse(e))?;
    let header = unverified
        .verify(key)
        .map_err(|source| SlotError::Header { source })?;
    // 3.
    if header.target.as_str() != crate::TARGET {
        return Err(SlotError::Target {
            found: header.target.as_str(),
            expected: crate::TARGET,
        });
    }
    // 4.
    let version = Version::parse(&header.version).map_err(|_| SlotError::Version {
        version: header.version.clone(),
    })?;
    if let Some(floor) = floor {
        if version.precedence(floor) == Ordering::Less {
            return Err(SlotError::BelowFloor {
                version,
                floor: floor.clone(),
            });
        }
    }
    // 5.
    image_slot::check_app_from(&mut dev, &layout, &header).map_err(|e| dev.refuse(e))?;
    // 6.
    let kernel = image_slot::read_part_from(&mut dev, &header, BootPart::Kernel)
        .map_err(|e| dev.refuse(e))?;
    let initramfs = image_slot::read_part_from(&mut dev, &header, BootPart::Initramfs)
        .map_err(|e| dev.refuse(e))?;
    let cmdline = header.cmdline.clone();
    Ok(VerifiedSlot {
        header,
        kernel,
        initramfs,
        cmdline,
    })
}
