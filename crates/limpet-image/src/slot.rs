//! A slot image: what one A/B slot partition holds.
//!
//! # Format (version 2: the whole-image slot)
//!
//! All integers are little-endian. Offsets are from the start of the slot (the partition).
//!
//! ```text
//! offset                     content
//! 0                          squashfs image, `squashfs_size` bytes (its superblock's bytes_used)
//! squashfs_size              zero padding up to hash_offset
//! hash_offset                dm-verity hash tree, `tree_size` bytes
//!                            (hash_offset = data_blocks * 4096, data_blocks = ceil(squashfs_size / 4096))
//! header_offset              slot header, exactly 4096 bytes (header_offset = hash_offset + tree_size)
//! attachment_offset          attachment, `attachment_size` bytes (attachment_offset = header_offset + 4096)
//! kernel_offset              kernel (EFI-stub image), `kernel_size` bytes
//!                            (kernel_offset = round_up(attachment_offset + attachment_size, 4096))
//! initramfs_offset           initramfs, `initramfs_size` bytes
//!                            (initramfs_offset = round_up(kernel_offset + kernel_size, 4096))
//! ...                        zero padding up to total_size = round_up(initramfs_offset + initramfs_size, 4096)
//! ```
//!
//! Every gap between parts is zero. The kernel and the initramfs each hold at least one
//! byte. One signature covers the app (through the verity root hash), the SBOM, the
//! kernel, the initramfs (PID 1) and the command line: a slot is the whole device but the
//! firmware and the boot loader.
//!
//! Bytes after `total_size` (the rest of a partition larger than its slot) are not part of
//! the slot and are ignored.
//!
//! ## Hash tree
//!
//! dm-verity hash format 1 as `veritysetup format` writes it by default, without a verity
//! superblock: sha256, 4096-byte data and hash blocks, 32-byte salt, data offset 0, data =
//! the first `data_blocks` blocks of the slot (the squashfs and its zero padding). Level
//! layout is in [`crate::verity`]. The slot can be checked independently with
//!
//! ```text
//! veritysetup verify --no-superblock --data-blocks=<data_blocks> --hash-offset=<hash_offset> \
//!     --salt=<salt hex> slot.img slot.img <root_hash hex>
//! ```
//!
//! The salt is `sha256("limpet-verity-salt" || squashfs)` over the `squashfs_size` bytes of
//! the squashfs: deterministic, and different for every image.
//!
//! ## Header (4096 bytes)
//!
//! ```text
//! offset len  field
//! 0      8    magic "LIMPETSH"
//! 8      4    format_version       u32 = 2
//! 12     4    header_size          u32 = 4096
//! 16     64   device               UTF-8, 1..=64 bytes, NUL-padded, no NUL inside
//! 80     16   target               "x86_64" | "aarch64", NUL-padded
//! 96     64   version              semver text [0-9A-Za-z.+-], 1..=64 bytes, NUL-padded
//! 160    8    squashfs_size        u64, = squashfs superblock bytes_used
//! 168    8    data_blocks          u64, = ceil(squashfs_size / 4096)
//! 176    8    hash_offset          u64, = data_blocks * 4096
//! 184    8    tree_size            u64, = dm-verity tree size for data_blocks
//! 192    4    data_block_size      u32 = 4096
//! 196    4    hash_block_size      u32 = 4096
//! 200    4    hash_algorithm       u32, 1 = sha256
//! 204    4    verity_format        u32 = 1 (veritysetup --format)
//! 208    32   salt
//! 240    32   root_hash
//! 272    8    attachment_size      u64
//! 280    32   attachment_sha256    sha256 of the attachment bytes
//! 312    8    kernel_offset        u64, = the derived kernel_offset above
//! 320    8    kernel_size          u64, >= 1
//! 328    32   kernel_sha256
//! 360    8    initramfs_offset     u64, = the derived initramfs_offset above
//! 368    8    initramfs_size       u64, >= 1
//! 376    32   initramfs_sha256
//! 408    1024 cmdline              printable ASCII (0x20..=0x7e), 1..=1024 bytes, NUL-padded
//! 1432   8    key_id               first 8 bytes of sha256(Ed25519 public key)
//! 1440   64   signature            Ed25519 over bytes 0..1440
//! 1504   2592 zero
//! ```
//!
//! The attachment carries the zstd-compressed JSON SBOM; this module treats it as opaque
//! bytes bound to the header by its hash.
//!
//! # Reading rules
//!
//! 1. Read the squashfs superblock (magic `hsqs` at 0, `bytes_used` u64 at 40) and derive
//!    `data_blocks`, `hash_offset`, `tree_size` and `header_offset` from it.
//! 2. Decode the header at `header_offset` (every field checked, padding zero).
//! 3. Check every layout field of the header equals the derived value, and that the
//!    attachment, kernel, initramfs and their padding fit in the file. Every length is
//!    checked against the file size before use, with checked arithmetic.
//! 4. ([`verify`]) check the signature, then the whole verity tree against the data, then
//!    the sha256 of the attachment, the kernel and the initramfs, and the zero gaps.
//!
//! PID 1 does steps 1–3 with [`read_header_at`] (a few KiB read, not the partition),
//! checks the signature, and leaves the tree to dm-verity. The boot loader does steps 1–3
//! with [`read_header_from`], checks the signature, and reads the kernel and the
//! initramfs with [`read_part_from`], which checks their hashes.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::header::{HeaderError, Part, SlotHeader, Target, UnverifiedHeader, HEADER_SIZE};
use crate::io::{IoError, ReadAt};
use crate::verity::{self, HashAlgorithm, VerityError, BLOCK_SIZE_U64};

/// Prefix hashed before the squashfs to make the verity salt.
pub const SALT_DOMAIN: &[u8] = b"limpet-verity-salt";
/// The squashfs magic, at offset 0.
pub const SQUASHFS_MAGIC: [u8; 4] = *b"hsqs";
/// Size of the squashfs superblock.
pub const SQUASHFS_SUPERBLOCK_SIZE: usize = 96;
/// Offset of `bytes_used` in the squashfs superblock.
const BYTES_USED_OFFSET: usize = 40;

/// What the caller says about the slot's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMeta {
    /// Device model name.
    pub device: String,
    /// `x86_64` or `aarch64`.
    pub target: String,
    /// Version text (semver).
    pub version: String,
}

/// What the boot loader starts: the kernel, its initramfs and its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootFiles<'a> {
    /// The kernel image (an EFI-stub PE, signed for Secure Boot by the build).
    pub kernel: &'a [u8],
    /// The initramfs (zstd cpio) with PID 1.
    pub initramfs: &'a [u8],
    /// The kernel command line.
    pub cmdline: &'a str,
}

/// Where each part of a slot lies, in bytes from the slot's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLayout {
    /// The squashfs `bytes_used`.
    pub squashfs_size: u64,
    /// Start of the hash tree; also the padded squashfs size.
    pub hash_offset: u64,
    /// Size of the hash tree.
    pub tree_size: u64,
    /// Start of the header.
    pub header_offset: u64,
    /// Start of the attachment.
    pub attachment_offset: u64,
    /// Size of the attachment.
    pub attachment_size: u64,
    /// Start of the kernel.
    pub kernel_offset: u64,
    /// Size of the kernel.
    pub kernel_size: u64,
    /// Start of the initramfs.
    pub initramfs_offset: u64,
    /// Size of the initramfs.
    pub initramfs_size: u64,
    /// End of the slot, after the initramfs's zero padding.
    pub total_size: u64,
}

impl SlotLayout {
    /// Data blocks covered by the tree.
    pub fn data_blocks(&self) -> u64 {
        self.hash_offset / BLOCK_SIZE_U64
    }

    /// The parts after the header, in slot order, with the gap of zeros after each:
    /// `(name, offset, size, end of its zero padding)`.
    fn tail(&self) -> [(&'static str, u64, u64, u64); 3] {
        [
            (
                "attachment",
                self.attachment_offset,
                self.attachment_size,
                self.kernel_offset,
            ),
            (
                "kernel",
                self.kernel_offset,
                self.kernel_size,
                self.initramfs_offset,
            ),
            (
                "initramfs",
                self.initramfs_offset,
                self.initramfs_size,
                self.total_size,
            ),
        ]
    }
}

/// Why a slot cannot be built, opened or trusted.
#[derive(Debug, Error)]
pub enum SlotError {
    /// The file is shorter than a part it must hold.
    #[error("slot is {len} bytes, too short for the {part} (needs {needed} bytes)")]
    Truncated {
        /// Which part.
        part: &'static str,
        /// Bytes the part needs the file to hold.
        needed: u64,
        /// Actual length.
        len: u64,
    },
    /// No squashfs magic at offset 0.
    #[error("no squashfs magic at offset 0 (found {found})")]
    SquashfsMagic {
        /// The bytes found, hex.
        found: String,
    },
    /// `bytes_used` is smaller than a superblock.
    #[error("squashfs bytes_used {bytes_used} is smaller than its superblock")]
    SquashfsSize {
        /// The value read.
        bytes_used: u64,
    },
    /// A computed offset overflows `u64`.
    #[error("slot layout overflows at the {part}")]
    Overflow {
        /// Which part.
        part: &'static str,
    },
    /// Bytes after the squashfs's `bytes_used` in the input to [`assemble`] are not zero.
    #[error("squashfs input has non-zero bytes after bytes_used, at offset {offset}")]
    SquashfsTrailing {
        /// Offset of the first non-zero byte.
        offset: u64,
    },
    /// The slot metadata is not valid.
    #[error("invalid slot metadata field {field}: {reason}")]
    Meta {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The header could not be decoded, or its signature is wrong.
    #[error("slot header at offset {offset}")]
    Header {
        /// Offset of the header.
        offset: u64,
        /// The cause.
        #[source]
        source: HeaderError,
    },
    /// A header field does not match what the squashfs and the file imply.
    #[error("slot header field {field} is {found}, expected {expected}")]
    LayoutMismatch {
        /// Field name.
        field: &'static str,
        /// Value in the header.
        found: u64,
        /// Value computed from the image.
        expected: u64,
    },
    /// The verity tree does not match.
    #[error("dm-verity check failed (hash tree at offset {hash_offset})")]
    Verity {
        /// Offset of the tree.
        hash_offset: u64,
        /// The block that failed.
        #[source]
        source: VerityError,
    },
    /// A part's hash differs from the header's.
    #[error("{part} at offset {offset} ({size} bytes) does not match its sha256 in the header")]
    PartHash {
        /// `attachment`, `kernel` or `initramfs`.
        part: &'static str,
        /// Its offset.
        offset: u64,
        /// Its size.
        size: u64,
    },
    /// A gap between parts, or the padding at the end, is not zero.
    #[error("slot padding is not zero at offset {offset}")]
    Padding {
        /// Offset of the first non-zero byte.
        offset: u64,
    },
    /// Reading the device failed.
    #[error("cannot read the {part} at offset {offset}")]
    Io {
        /// What was being read.
        part: &'static str,
        /// Where.
        offset: u64,
        /// The cause.
        #[source]
        source: IoError,
    },
}

/// A slot whose layout and header fields were checked, but not its signature or tree.
#[derive(Debug, Clone)]
pub struct OpenedSlot<'a> {
    /// Where each part lies.
    pub layout: SlotLayout,
    /// The decoded header, signature not checked.
    pub header: UnverifiedHeader,
    /// The squashfs padded to `hash_offset` (the verity data).
    pub data: &'a [u8],
    /// The hash tree.
    pub tree: &'a [u8],
    /// The attachment.
    pub attachment: &'a [u8],
    /// The kernel.
    pub kernel: &'a [u8],
    /// The initramfs.
    pub initramfs: &'a [u8],
}

/// A slot whose signature, whole verity tree and part hashes were checked.
#[derive(Debug, Clone)]
pub struct VerifiedSlot<'a> {
    /// Where each part lies.
    pub layout: SlotLayout,
    /// The trusted header.
    pub header: SlotHeader,
    /// The squashfs, `squashfs_size` bytes.
    pub squashfs: &'a [u8],
    /// The attachment.
    pub attachment: &'a [u8],
    /// The kernel.
    pub kernel: &'a [u8],
    /// The initramfs.
    pub initramfs: &'a [u8],
}

fn round_up(n: u64, part: &'static str) -> Result<u64, SlotError> {
    n.checked_next_multiple_of(BLOCK_SIZE_U64)
        .ok_or(SlotError::Overflow { part })
}

fn end_of(offset: u64, size: u64, part: &'static str) -> Result<u64, SlotError> {
    offset.checked_add(size).ok_or(SlotError::Overflow { part })
}

/// Reads `bytes_used` from a squashfs superblock (at least [`SQUASHFS_SUPERBLOCK_SIZE`]
/// bytes).
fn bytes_used(superblock: &[u8]) -> Result<u64, SlotError> {
    let len = superblock.len() as u64;
    let sb = superblock
        .get(..SQUASHFS_SUPERBLOCK_SIZE)
        .ok_or(SlotError::Truncated {
            part: "squashfs superblock",
            needed: SQUASHFS_SUPERBLOCK_SIZE as u64,
            len,
        })?;
    if sb[..4] != SQUASHFS_MAGIC {
        return Err(SlotError::SquashfsMagic {
            found: hex::encode(&sb[..4]),
        });
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&sb[BYTES_USED_OFFSET..BYTES_USED_OFFSET + 8]);
    let used = u64::from_le_bytes(b);
    if used < SQUASHFS_SUPERBLOCK_SIZE as u64 {
        return Err(SlotError::SquashfsSize { bytes_used: used });
    }
    Ok(used)
}

/// The parts up to the header, from the squashfs size alone.
fn layout_until_header(squashfs_size: u64) -> Result<(u64, u64, u64), SlotError> {
    let hash_offset = round_up(squashfs_size, "squashfs padding")?;
    let tree_size = verity::tree_size(hash_offset / BLOCK_SIZE_U64);
    let header_offset = end_of(hash_offset, tree_size, "hash tree")?;
    Ok((hash_offset, tree_size, header_offset))
}

/// The sizes of the parts after the header.
#[derive(Debug, Clone, Copy)]
struct TailSizes {
    attachment: u64,
    kernel: u64,
    initramfs: u64,
}

/// The full layout once every part's size is known.
fn layout(squashfs_size: u64, sizes: TailSizes) -> Result<SlotLayout, SlotError> {
    let (hash_offset, tree_size, header_offset) = layout_until_header(squashfs_size)?;
    let attachment_offset = end_of(header_offset, HEADER_SIZE as u64, "header")?;
    let kernel_offset = round_up(
        end_of(attachment_offset, sizes.attachment, "attachment")?,
        "attachment padding",
    )?;
    let initramfs_offset = round_up(
        end_of(kernel_offset, sizes.kernel, "kernel")?,
        "kernel padding",
    )?;
    let total_size = round_up(
        end_of(initramfs_offset, sizes.initramfs, "initramfs")?,
        "initramfs padding",
    )?;
    Ok(SlotLayout {
        squashfs_size,
        hash_offset,
        tree_size,
        header_offset,
        attachment_offset,
        attachment_size: sizes.attachment,
        kernel_offset,
        kernel_size: sizes.kernel,
        initramfs_offset,
        initramfs_size: sizes.initramfs,
        total_size,
    })
}

/// The verity salt of a squashfs: `sha256(SALT_DOMAIN || squashfs)`.
pub fn salt_for(squashfs: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(SALT_DOMAIN);
    h.update(squashfs);
    h.finalize().into()
}

fn part_of(offset: u64, bytes: &[u8]) -> Part {
    Part {
        offset,
        size: bytes.len() as u64,
        sha256: Sha256::digest(bytes).into(),
    }
}

/// Builds a signed slot from a squashfs image, an attachment and the boot files.
///
/// `squashfs` may carry zero padding after its `bytes_used` (mksquashfs and backhand pad to
/// 4 KiB); the padding is dropped and the slot pads it again.
pub fn assemble(
    squashfs: &[u8],
    meta: &SlotMeta,
    attachment: &[u8],
    boot: &BootFiles<'_>,
    key: &SigningKey,
) -> Result<Vec<u8>, SlotError> {
    let used = bytes_used(squashfs)?;
    let fs_len = squashfs.len() as u64;
    let used_usize = usize::try_from(used)
        .ok()
        .filter(|&u| u <= squashfs.len())
        .ok_or(SlotError::Truncated {
            part: "squashfs",
            needed: used,
            len: fs_len,
        })?;
    let (fs, trailing) = squashfs.split_at(used_usize);
    if let Some(i) = trailing.iter().position(|&b| b != 0) {
        return Err(SlotError::SquashfsTrailing {
            offset: used + i as u64,
        });
    }
    let target = Target::from_name(&meta.target).ok_or_else(|| SlotError::Meta {
        field: "target",
        reason: format!("{:?} is not x86_64 or aarch64", meta.target),
    })?;
    for (field, bytes) in [("kernel", boot.kernel), ("initramfs", boot.initramfs)] {
        if bytes.is_empty() {
            return Err(SlotError::Meta {
                field,
                reason: "empty".into(),
            });
        }
    }

    let layout = layout(
        used,
        TailSizes {
            attachment: attachment.len() as u64,
            kernel: boot.kernel.len() as u64,
            initramfs: boot.initramfs.len() as u64,
        },
    )?;
    let to_usize = |n: u64, part| usize::try_from(n).map_err(|_| SlotError::Overflow { part });
    let total = to_usize(layout.total_size, "total size")?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(fs);
    out.resize(to_usize(layout.hash_offset, "squashfs padding")?, 0);

    let salt = salt_for(fs);
    let (tree, root_hash) = verity::build_tree(&out, salt);
    debug_assert_eq!(tree.len() as u64, layout.tree_size);
    out.extend_from_slice(&tree);

    let header = SlotHeader {
        device: meta.device.clone(),
        target,
        version: meta.version.clone(),
        squashfs_size: used,
        data_blocks: layout.data_blocks(),
        hash_offset: layout.hash_offset,
        tree_size: layout.tree_size,
        data_block_size: 4096,
        hash_block_size: 4096,
        hash_algorithm: HashAlgorithm::Sha256,
        salt,
        root_hash,
        attachment_size: layout.attachment_size,
        attachment_sha256: Sha256::digest(attachment).into(),
        kernel: part_of(layout.kernel_offset, boot.kernel),
        initramfs: part_of(layout.initramfs_offset, boot.initramfs),
        cmdline: boot.cmdline.into(),
        key_id: [0; 8],
    };
    let encoded = header
        .encode_signed(key)
        .map_err(|source| SlotError::Header {
            offset: layout.header_offset,
            source,
        })?;
    out.extend_from_slice(&encoded);
    out.extend_from_slice(attachment);
    out.resize(to_usize(layout.kernel_offset, "attachment padding")?, 0);
    out.extend_from_slice(boot.kernel);
    out.resize(to_usize(layout.initramfs_offset, "kernel padding")?, 0);
    out.extend_from_slice(boot.initramfs);
    out.resize(total, 0);
    Ok(out)
}

/// Step 3 of the reading rules: every layout field of the header against the values
/// derived from the squashfs, and every part against the file (or partition) size.
pub fn check_layout(
    header: &SlotHeader,
    squashfs_size: u64,
    file_len: u64,
) -> Result<SlotLayout, SlotError> {
    let mismatch = |field, found, expected| SlotError::LayoutMismatch {
        field,
        found,
        expected,
    };
    if header.squashfs_size != squashfs_size {
        return Err(mismatch(
            "squashfs_size",
            header.squashfs_size,
            squashfs_size,
        ));
    }
    let (hash_offset, tree_size, _) = layout_until_header(squashfs_size)?;
    let data_blocks = hash_offset / BLOCK_SIZE_U64;
    if header.data_blocks != data_blocks {
        return Err(mismatch("data_blocks", header.data_blocks, data_blocks));
    }
    if header.hash_offset != hash_offset {
        return Err(mismatch("hash_offset", header.hash_offset, hash_offset));
    }
    if header.tree_size != tree_size {
        return Err(mismatch("tree_size", header.tree_size, tree_size));
    }
    // Checked before any arithmetic so that a huge size is reported as such.
    for (part, size) in [
        ("attachment", header.attachment_size),
        ("kernel", header.kernel.size),
        ("initramfs", header.initramfs.size),
    ] {
        if size > file_len {
            return Err(SlotError::Truncated {
                part,
                needed: size,
                len: file_len,
            });
        }
    }
    for (field, size) in [
        ("kernel_size", header.kernel.size),
        ("initramfs_size", header.initramfs.size),
    ] {
        if size == 0 {
            return Err(mismatch(field, 0, 1));
        }
    }
    let layout = layout(
        squashfs_size,
        TailSizes {
            attachment: header.attachment_size,
            kernel: header.kernel.size,
            initramfs: header.initramfs.size,
        },
    )?;
    if header.kernel.offset != layout.kernel_offset {
        return Err(mismatch(
            "kernel_offset",
            header.kernel.offset,
            layout.kernel_offset,
        ));
    }
    if header.initramfs.offset != layout.initramfs_offset {
        return Err(mismatch(
            "initramfs_offset",
            header.initramfs.offset,
            layout.initramfs_offset,
        ));
    }
    if layout.total_size > file_len {
        return Err(SlotError::Truncated {
            part: "initramfs",
            needed: layout.total_size,
            len: file_len,
        });
    }
    Ok(layout)
}

fn slice<'a>(
    bytes: &'a [u8],
    start: u64,
    end: u64,
    part: &'static str,
) -> Result<&'a [u8], SlotError> {
    let len = bytes.len() as u64;
    let truncated = SlotError::Truncated {
        part,
        needed: end,
        len,
    };
    let s = usize::try_from(start).map_err(|_| SlotError::Overflow { part })?;
    let e = usize::try_from(end).map_err(|_| SlotError::Overflow { part })?;
    bytes.get(s..e).ok_or(truncated)
}

/// Finds and decodes the header, and checks the layout and the zero gaps (reading rules
/// 1–3).
pub fn open(bytes: &[u8]) -> Result<OpenedSlot<'_>, SlotError> {
    let file_len = bytes.len() as u64;
    let used = bytes_used(bytes)?;
    if used > file_len {
        return Err(SlotError::Truncated {
            part: "squashfs",
            needed: used,
            len: file_len,
        });
    }
    let (_, _, header_offset) = layout_until_header(used)?;
    let header_end = end_of(header_offset, HEADER_SIZE as u64, "header")?;
    let header_bytes = slice(bytes, header_offset, header_end, "header")?;
    let header = SlotHeader::decode(header_bytes).map_err(|source| SlotError::Header {
        offset: header_offset,
        source,
    })?;
    let layout = check_layout(header.unverified(), used, file_len)?;
    let mut parts: [&[u8]; 3] = [&[]; 3];
    for (i, (part, offset, size, padded_end)) in layout.tail().into_iter().enumerate() {
        // check_layout proved these ranges lie inside the file.
        let end = offset + size;
        parts[i] = slice(bytes, offset, end, part)?;
        let padding = slice(bytes, end, padded_end, part)?;
        if let Some(i) = padding.iter().position(|&b| b != 0) {
            return Err(SlotError::Padding {
                offset: end + i as u64,
            });
        }
    }
    let [attachment, kernel, initramfs] = parts;
    Ok(OpenedSlot {
        layout,
        header,
        data: slice(bytes, 0, layout.hash_offset, "squashfs")?,
        tree: slice(bytes, layout.hash_offset, layout.header_offset, "hash tree")?,
        attachment,
        kernel,
        initramfs,
    })
}

/// The sha256 each part after the header must have, in [`SlotLayout::tail`] order.
fn tail_hashes(header: &SlotHeader) -> [[u8; 32]; 3] {
    [
        header.attachment_sha256,
        header.kernel.sha256,
        header.initramfs.sha256,
    ]
}

/// Opens the slot and checks it completely: signature, then the whole verity tree, then
/// the hashes of the attachment, the kernel and the initramfs.
pub fn verify<'a>(bytes: &'a [u8], key: &VerifyingKey) -> Result<VerifiedSlot<'a>, SlotError> {
    let opened = open(bytes)?;
    let layout = opened.layout;
    let header = opened
        .header
        .verify(key)
        .map_err(|source| SlotError::Header {
            offset: layout.header_offset,
            source,
        })?;
    verity::verify(opened.data, opened.tree, &header.verity_params()).map_err(|source| {
        SlotError::Verity {
            hash_offset: layout.hash_offset,
            source,
        }
    })?;
    let parts = [opened.attachment, opened.kernel, opened.initramfs];
    for (((part, offset, size, _), bytes), expected) in layout
        .tail()
        .into_iter()
        .zip(parts)
        .zip(tail_hashes(&header))
    {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if digest != expected {
            return Err(SlotError::PartHash { part, offset, size });
        }
    }
    Ok(VerifiedSlot {
        layout,
        header,
        squashfs: slice(bytes, 0, layout.squashfs_size, "squashfs")?,
        attachment: opened.attachment,
        kernel: opened.kernel,
        initramfs: opened.initramfs,
    })
}

fn read_exact_at(
    dev: &mut impl ReadAt,
    offset: u64,
    buf: &mut [u8],
    part: &'static str,
) -> Result<(), SlotError> {
    dev.read_exact_at(offset, buf)
        .map_err(|source| SlotError::Io {
            part,
            offset,
            source,
        })
}

/// How much of a slot [`verify_from`] reads and checks at a time.
const VERIFY_CHUNK: usize = 1 << 20;

/// The sha256 of `size` bytes at `offset`, read [`VERIFY_CHUNK`] at a time into `buf`.
fn hash_range(
    dev: &mut impl ReadAt,
    offset: u64,
    size: u64,
    part: &'static str,
    buf: &mut [u8],
) -> Result<[u8; 32], SlotError> {
    let mut h = Sha256::new();
    let mut at = offset;
    let end = end_of(offset, size, part)?;
    while at < end {
        let n = usize::try_from((end - at).min(buf.len() as u64)).unwrap_or(buf.len());
        let piece = buf.get_mut(..n).ok_or(SlotError::Overflow { part })?;
        read_exact_at(dev, at, piece, part)?;
        h.update(&*piece);
        at += n as u64;
    }
    Ok(h.finalize().into())
}

/// Checks a slot on a device completely, as [`verify`] does, holding only its hash tree
/// and one 1 MiB piece of data in memory: signature, every hash block, every data block,
/// then the hashes of the attachment, the kernel and the initramfs. Returns the verified
/// header and the layout.
pub fn verify_from(
    dev: &mut impl ReadAt,
    key: &VerifyingKey,
) -> Result<(SlotLayout, SlotHeader), SlotError> {
    let (layout, unverified) = read_header_from(dev)?;
    let header = unverified.verify(key).map_err(|source| SlotError::Header {
        offset: layout.header_offset,
        source,
    })?;
    let verity_err = |source| SlotError::Verity {
        hash_offset: layout.hash_offset,
        source,
    };
    let tree_len =
        usize::try_from(layout.tree_size).map_err(|_| SlotError::Overflow { part: "hash tree" })?;
    let mut tree = vec![0u8; tree_len];
    read_exact_at(dev, layout.hash_offset, &mut tree, "hash tree")?;
    let checked = verity::CheckedTree::new(&tree, &header.verity_params()).map_err(verity_err)?;
    let mut buf = vec![0u8; VERIFY_CHUNK];
    let mut offset = 0u64;
    while offset < layout.hash_offset {
        let n = usize::try_from((layout.hash_offset - offset).min(VERIFY_CHUNK as u64))
            .unwrap_or(VERIFY_CHUNK);
        let piece = buf
            .get_mut(..n)
            .ok_or(SlotError::Overflow { part: "squashfs" })?;
        read_exact_at(dev, offset, piece, "squashfs")?;
        checked
            .check_data(offset / BLOCK_SIZE_U64, piece)
            .map_err(verity_err)?;
        offset += n as u64;
    }
    for ((part, offset, size, _), expected) in layout.tail().into_iter().zip(tail_hashes(&header)) {
        if hash_range(dev, offset, size, part, &mut buf)? != expected {
            return Err(SlotError::PartHash { part, offset, size });
        }
    }
    Ok((layout, header))
}

/// [`verify_from`] on a `Read + Seek` device (a file, a partition node).
#[cfg(feature = "std")]
pub fn verify_at(
    dev: &mut (impl std::io::Read + std::io::Seek),
    key: &VerifyingKey,
) -> Result<(SlotLayout, SlotHeader), SlotError> {
    verify_from(&mut crate::io::Io(dev), key)
}

/// Which boot file [`read_part_from`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootPart {
    /// The kernel.
    Kernel,
    /// The initramfs.
    Initramfs,
}

/// Reads the kernel or the initramfs of a slot whose header was verified, and checks its
/// sha256 against the header: what the boot loader hands to the firmware is exactly
/// what was signed.
pub fn read_part_from(
    dev: &mut impl ReadAt,
    header: &SlotHeader,
    which: BootPart,
) -> Result<Vec<u8>, SlotError> {
    let (part, p) = match which {
        BootPart::Kernel => ("kernel", header.kernel),
        BootPart::Initramfs => ("initramfs", header.initramfs),
    };
    let len = usize::try_from(p.size).map_err(|_| SlotError::Overflow { part })?;
    let mut bytes = vec![0u8; len];
    read_exact_at(dev, p.offset, &mut bytes, part)?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    if digest != p.sha256 {
        return Err(SlotError::PartHash {
            part,
            offset: p.offset,
            size: p.size,
        });
    }
    Ok(bytes)
}

/// Reads the superblock and the header from a device and checks the layout (reading
/// rules 1–3), without reading the rest of the partition. The signature is not checked.
pub fn read_header_from(
    dev: &mut impl ReadAt,
) -> Result<(SlotLayout, UnverifiedHeader), SlotError> {
    let dev_len = dev.size().map_err(|source| SlotError::Io {
        part: "device size",
        offset: 0,
        source,
    })?;
    if dev_len < SQUASHFS_SUPERBLOCK_SIZE as u64 {
        return Err(SlotError::Truncated {
            part: "squashfs superblock",
            needed: SQUASHFS_SUPERBLOCK_SIZE as u64,
            len: dev_len,
        });
    }
    let mut sb = [0u8; SQUASHFS_SUPERBLOCK_SIZE];
    read_exact_at(dev, 0, &mut sb, "squashfs superblock")?;
    let used = bytes_used(&sb)?;
    if used > dev_len {
        return Err(SlotError::Truncated {
            part: "squashfs",
            needed: used,
            len: dev_len,
        });
    }
    let (_, _, header_offset) = layout_until_header(used)?;
    let header_end = end_of(header_offset, HEADER_SIZE as u64, "header")?;
    if header_end > dev_len {
        return Err(SlotError::Truncated {
            part: "header",
            needed: header_end,
            len: dev_len,
        });
    }
    let mut buf = vec![0u8; HEADER_SIZE];
    read_exact_at(dev, header_offset, &mut buf, "header")?;
    let header = SlotHeader::decode(&buf).map_err(|source| SlotError::Header {
        offset: header_offset,
        source,
    })?;
    let layout = check_layout(header.unverified(), used, dev_len)?;
    Ok((layout, header))
}

/// [`read_header_from`] on a `Read + Seek` device.
#[cfg(feature = "std")]
pub fn read_header_at(
    dev: &mut (impl std::io::Read + std::io::Seek),
) -> Result<(SlotLayout, UnverifiedHeader), SlotError> {
    read_header_from(&mut crate::io::Io(dev))
}
