//! Reading and verifying one slot with limpet-image's slot reader (header format 2, the
//! whole-image slot): its header, then the kernel and the initramfs, each against the
//! sha256 the signed header names; the command line is in the signed header itself.
//!
//! Order (each step refuses the slot on failure, naming the step):
//! 1. read the squashfs superblock and the header, and check the layout the header states
//!    against the one the superblock and the partition imply (`read_header_from`: every
//!    part inside the partition before anything is allocated);
//! 2. check the key id and the Ed25519 signature (`verify_strict`) with the keys the mode
//!    accepts ([`Keys`]: the vendor's compiled-in key, and the owner's in owner mode);
//! 3. check the target is this loader's architecture;
//! 4. check the version is not below the floor (semver precedence, limpet-state's rule);
//! 5. check every block of the app (the squashfs) against the signed dm-verity tree
//!    (`check_app_from`), so that a slot whose app was changed starts no kernel;
//! 6. read the kernel and the initramfs and compare their sha256 (`read_part_from`).
//!
//! Nothing a failed step read is returned: the caller gets a [`VerifiedSlot`] or an error.

use alloc::vec::Vec;
use core::cmp::Ordering;

use limpet_image::header::{HeaderError, SlotHeader};
use limpet_image::slot::{self as image_slot, BootPart, SlotError as ImageError};
use limpet_state::{Version, VersionError};

use crate::disk::{Disk, Part, PartReader};
use crate::owner::Keys;

/// A slot whose every byte the loader hands on was checked.
#[derive(Debug)]
pub struct VerifiedSlot {
    /// The verified header (it holds the signed command line).
    pub header: SlotHeader,
    /// The kernel image.
    pub kernel: Vec<u8>,
    /// The initramfs.
    pub initramfs: Vec<u8>,
    /// Whose key verified it.
    pub signer: Signer,
}

/// Whose image key verified a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The vendor's (compiled into the loader).
    Vendor,
    /// The owner's (owner mode).
    Owner,
}

/// Why a slot is refused.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// The slot cannot be read, its layout or header is invalid, or a part's hash differs.
    #[error("{source}")]
    Image {
        /// limpet-image's reason.
        source: ImageError,
    },
    /// Signed by another key, or the signature does not verify.
    #[error("{source}")]
    Signature {
        /// Why.
        source: HeaderError,
    },
    /// The mode accepts no key at all (never: vendor and owner mode accept the vendor's).
    #[error("no image key is accepted")]
    NoKey,
    /// The slot is for another architecture.
    #[error("slot is for {found}, this loader boots {expected}")]
    Target {
        /// The header's target.
        found: &'static str,
        /// The loader's.
        expected: &'static str,
    },
    /// The header's version is not a version the state can compare.
    #[error("version {version:?} cannot be compared with the floor")]
    Version {
        /// The header's version text.
        version: alloc::string::String,
        /// Why.
        source: VersionError,
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

impl From<ImageError> for SlotError {
    fn from(source: ImageError) -> Self {
        SlotError::Image { source }
    }
}

/// Reads and verifies the slot in `part` (steps in the module doc). `floor` is `None` only
/// when the state is blank or unreadable.
pub fn load<D: Disk>(
    disk: &mut D,
    part: &Part,
    keys: &Keys,
    floor: Option<&Version>,
) -> Result<VerifiedSlot, SlotError> {
    let mut reader = PartReader { disk, part: *part };
    // 1-2.
    let (layout, unverified) = image_slot::read_header_from(&mut reader)?;
    let (header, signer) = verify(&unverified, keys)?;
    // 3.
    if header.target.as_str() != crate::TARGET {
        return Err(SlotError::Target {
            found: header.target.as_str(),
            expected: crate::TARGET,
        });
    }
    // 4.
    if let Some(floor) = floor {
        let version = Version::parse(&header.version).map_err(|source| SlotError::Version {
            version: header.version.clone(),
            source,
        })?;
        if version.precedence(floor) == Ordering::Less {
            return Err(SlotError::BelowFloor {
                version,
                floor: floor.clone(),
            });
        }
    }
    // 5.
    image_slot::check_app_from(&mut reader, &layout, &header)?;
    // 6.
    let kernel = image_slot::read_part_from(&mut reader, &header, BootPart::Kernel)?;
    let initramfs = image_slot::read_part_from(&mut reader, &header, BootPart::Initramfs)?;
    Ok(VerifiedSlot {
        header,
        kernel,
        initramfs,
        signer,
    })
}

/// Step 2 with every key the mode accepts: the vendor's first, then the owner's. With no
/// key accepting it, the error is the vendor's (or the owner's, in handed-over mode).
fn verify(
    unverified: &limpet_image::header::UnverifiedHeader,
    keys: &Keys,
) -> Result<(SlotHeader, Signer), SlotError> {
    let mut refused = None;
    for (key, signer) in [(keys.vendor, Signer::Vendor), (keys.owner, Signer::Owner)] {
        let Some(key) = key else { continue };
        match unverified.verify(&key) {
            Ok(header) => return Ok((header, signer)),
            Err(source) => {
                refused.get_or_insert(SlotError::Signature { source });
            }
        }
    }
    Err(refused.unwrap_or(SlotError::NoKey))
}
