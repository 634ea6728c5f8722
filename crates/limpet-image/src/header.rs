//! The signed slot header: a fixed 4096-byte little-endian record.
//!
//! The byte layout is in the [`crate::slot`] module docs. Rules:
//! - Decoding checks every field (magic, version, text fields, enums, zero padding) and
//!   yields an [`UnverifiedHeader`]; only [`UnverifiedHeader::verify`] yields a
//!   [`SlotHeader`] the device may act on.
//! - The signature covers every byte before it (bytes `0..SIGNED_LEN`); the rest of the
//!   header must be zero.
//! - A header signed by another key is [`HeaderError::WrongKey`] (the key id says so before
//!   any signature work); a bad signature under the right key id is
//!   [`HeaderError::BadSignature`]. Verification uses `verify_strict` (no malleable or
//!   small-order signatures).

use alloc::borrow::ToOwned;
use alloc::string::String;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::verity::{HashAlgorithm, VerityParams};

/// Size of the header on disk.
pub const HEADER_SIZE: usize = 4096;
/// [`HEADER_SIZE`] as stored in the header.
const HEADER_SIZE_U32: u32 = 4096;
/// The first eight bytes of every header.
pub const MAGIC: [u8; 8] = *b"LIMPETSH";
/// The header format this code writes and reads: 2, the whole-image slot (version 1 had
/// no kernel, initramfs or command line).
pub const FORMAT_VERSION: u32 = 2;
/// The longest kernel command line the header holds, in bytes.
pub const CMDLINE_MAX: usize = 1024;
/// The dm-verity hash format (veritysetup `--format`).
pub const VERITY_FORMAT: u32 = 1;

/// Field offsets and lengths, in header order.
mod field {
    pub const MAGIC: (usize, usize) = (0, 8);
    pub const FORMAT_VERSION: (usize, usize) = (8, 4);
    pub const HEADER_SIZE: (usize, usize) = (12, 4);
    pub const DEVICE: (usize, usize) = (16, 64);
    pub const TARGET: (usize, usize) = (80, 16);
    pub const VERSION: (usize, usize) = (96, 64);
    pub const SQUASHFS_SIZE: (usize, usize) = (160, 8);
    pub const DATA_BLOCKS: (usize, usize) = (168, 8);
    pub const HASH_OFFSET: (usize, usize) = (176, 8);
    pub const TREE_SIZE: (usize, usize) = (184, 8);
    pub const DATA_BLOCK_SIZE: (usize, usize) = (192, 4);
    pub const HASH_BLOCK_SIZE: (usize, usize) = (196, 4);
    pub const HASH_ALGORITHM: (usize, usize) = (200, 4);
    pub const VERITY_FORMAT: (usize, usize) = (204, 4);
    pub const SALT: (usize, usize) = (208, 32);
    pub const ROOT_HASH: (usize, usize) = (240, 32);
    pub const ATTACHMENT_SIZE: (usize, usize) = (272, 8);
    pub const ATTACHMENT_SHA256: (usize, usize) = (280, 32);
    pub const KERNEL_OFFSET: (usize, usize) = (312, 8);
    pub const KERNEL_SIZE: (usize, usize) = (320, 8);
    pub const KERNEL_SHA256: (usize, usize) = (328, 32);
    pub const INITRAMFS_OFFSET: (usize, usize) = (360, 8);
    pub const INITRAMFS_SIZE: (usize, usize) = (368, 8);
    pub const INITRAMFS_SHA256: (usize, usize) = (376, 32);
    pub const CMDLINE: (usize, usize) = (408, super::CMDLINE_MAX);
    pub const KEY_ID: (usize, usize) = (1432, 8);
    pub const SIGNATURE: (usize, usize) = (1440, 64);
}

/// Bytes covered by the signature: everything before it.
pub const SIGNED_LEN: usize = field::SIGNATURE.0;
/// First byte after the signature; from here to [`HEADER_SIZE`] the header is zero.
pub const PADDING_START: usize = field::SIGNATURE.0 + field::SIGNATURE.1;

/// The CPU architecture a slot is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `x86_64`.
    X86_64,
    /// `aarch64`.
    Aarch64,
}

impl Target {
    /// The name stored in the header.
    pub const fn as_str(self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64",
            Target::Aarch64 => "aarch64",
        }
    }

    /// The target with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "x86_64" => Some(Target::X86_64),
            "aarch64" => Some(Target::Aarch64),
            _ => None,
        }
    }
}

impl core::fmt::Display for Target {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The contents of a slot header, signature aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotHeader {
    /// Device model name, 1 to 64 bytes of UTF-8 without NUL.
    pub device: String,
    /// Target architecture.
    pub target: Target,
    /// Version text (semver), 1 to 64 bytes of `[0-9A-Za-z.+-]`.
    pub version: String,
    /// The squashfs superblock's `bytes_used`.
    pub squashfs_size: u64,
    /// Number of 4096-byte data blocks (the squashfs padded to 4096).
    pub data_blocks: u64,
    /// Offset of the hash tree (= `data_blocks * 4096`).
    pub hash_offset: u64,
    /// Size of the hash tree in bytes.
    pub tree_size: u64,
    /// Data block size (4096).
    pub data_block_size: u32,
    /// Hash block size (4096).
    pub hash_block_size: u32,
    /// Hash algorithm.
    pub hash_algorithm: HashAlgorithm,
    /// Verity salt.
    pub salt: [u8; 32],
    /// Verity root hash.
    pub root_hash: [u8; 32],
    /// Size of the attachment in bytes.
    pub attachment_size: u64,
    /// sha256 of the attachment.
    pub attachment_sha256: [u8; 32],
    /// The kernel: an EFI-stub image the boot loader starts.
    pub kernel: Part,
    /// The initramfs (zstd cpio) holding PID 1.
    pub initramfs: Part,
    /// The kernel command line, 1 to [`CMDLINE_MAX`] bytes of printable ASCII.
    pub cmdline: String,
    /// Id of the signing key ([`key_id`]).
    pub key_id: [u8; 8],
}

/// Where a part of the slot after the header lies, and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Part {
    /// Offset from the start of the slot (a multiple of 4096).
    pub offset: u64,
    /// Size in bytes (at least 1).
    pub size: u64,
    /// sha256 of the part's `size` bytes.
    pub sha256: [u8; 32],
}

/// A header whose fields decoded but whose signature is not checked yet.
#[derive(Debug, Clone)]
pub struct UnverifiedHeader {
    header: SlotHeader,
    signed: [u8; SIGNED_LEN],
    signature: [u8; 64],
}

/// Why a header cannot be decoded or trusted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    /// The header is not exactly [`HEADER_SIZE`] bytes.
    #[error("header is {len} bytes, expected {HEADER_SIZE}")]
    Length {
        /// Actual length.
        len: usize,
    },
    /// The magic is not `LIMPETSH`.
    #[error("bad header magic {found}")]
    Magic {
        /// The bytes found, hex.
        found: String,
    },
    /// A format this code does not know.
    #[error("unsupported header format version {found}")]
    FormatVersion {
        /// The version found.
        found: u32,
    },
    /// A field holds a value this format does not allow.
    #[error("header field {field} at offset {offset} is invalid: {reason}")]
    Field {
        /// Field name.
        field: &'static str,
        /// Byte offset of the field in the header.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The bytes after the signature are not all zero.
    #[error("header padding is not zero at offset {offset}")]
    Padding {
        /// Offset of the first non-zero byte.
        offset: usize,
    },
    /// The header was signed by a different key.
    #[error("header signed by key {found}, expected key {expected}")]
    WrongKey {
        /// Id of the key verified against, hex.
        expected: String,
        /// Id in the header, hex.
        found: String,
    },
    /// The signature does not verify under the expected key.
    #[error("header signature does not verify")]
    BadSignature,
}

/// The id of a public key: the first 8 bytes of the sha256 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> [u8; 8] {
    let digest = Sha256::digest(key.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

fn put(buf: &mut [u8; HEADER_SIZE], (offset, len): (usize, usize), bytes: &[u8]) {
    // Callers pass fields no longer than `len`; `min` keeps this panic-free regardless.
    let n = bytes.len().min(len);
    buf[offset..offset + n].copy_from_slice(&bytes[..n]);
}

fn get(buf: &[u8; HEADER_SIZE], (offset, len): (usize, usize)) -> &[u8] {
    &buf[offset..offset + len]
}

fn get_u32(buf: &[u8; HEADER_SIZE], f: (usize, usize)) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(get(buf, (f.0, 4)));
    u32::from_le_bytes(b)
}

fn get_u64(buf: &[u8; HEADER_SIZE], f: (usize, usize)) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(get(buf, (f.0, 8)));
    u64::from_le_bytes(b)
}

fn get_array<const N: usize>(buf: &[u8; HEADER_SIZE], f: (usize, usize)) -> [u8; N] {
    let mut b = [0u8; N];
    b.copy_from_slice(get(buf, (f.0, N)));
    b
}

/// Checks a text field as the header stores it: non-empty, NUL-padded, no NUL inside.
fn check_text(name: &'static str, f: (usize, usize), text: &str) -> Result<(), HeaderError> {
    let bad = |reason| HeaderError::Field {
        field: name,
        offset: f.0,
        reason,
    };
    if text.is_empty() {
        return Err(bad("empty"));
    }
    if text.len() > f.1 {
        return Err(bad("too long"));
    }
    if text.bytes().any(|b| b == 0) {
        return Err(bad("contains NUL"));
    }
    Ok(())
}

fn check_version(text: &str) -> Result<(), HeaderError> {
    check_text("version", field::VERSION, text)?;
    let ok = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'));
    if !ok {
        return Err(HeaderError::Field {
            field: "version",
            offset: field::VERSION.0,
            reason: "not semver text",
        });
    }
    Ok(())
}

/// The command line: printable ASCII only (it becomes the UCS-2 load options of the
/// kernel image, and a console line), not empty, at most [`CMDLINE_MAX`] bytes.
fn check_cmdline(text: &str) -> Result<(), HeaderError> {
    check_text("cmdline", field::CMDLINE, text)?;
    if !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(HeaderError::Field {
            field: "cmdline",
            offset: field::CMDLINE.0,
            reason: "not printable ASCII",
        });
    }
    Ok(())
}

fn read_text(
    buf: &[u8; HEADER_SIZE],
    name: &'static str,
    f: (usize, usize),
) -> Result<String, HeaderError> {
    let raw = get(buf, f);
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let bad = |reason| HeaderError::Field {
        field: name,
        offset: f.0,
        reason,
    };
    if raw[end..].iter().any(|&b| b != 0) {
        return Err(bad("bytes after the terminating NUL"));
    }
    let text = core::str::from_utf8(&raw[..end]).map_err(|_| bad("not UTF-8"))?;
    check_text(name, f, text)?;
    Ok(text.to_owned())
}

impl SlotHeader {
    /// The verity parameters this header carries.
    pub fn verity_params(&self) -> VerityParams {
        VerityParams {
            data_block_size: self.data_block_size,
            hash_block_size: self.hash_block_size,
            data_blocks: self.data_blocks,
            hash_offset: self.hash_offset,
            hash_algorithm: self.hash_algorithm,
            salt: self.salt,
            root_hash: self.root_hash,
        }
    }

    /// Checks the fields that have a textual form (device, version, command line).
    pub fn check(&self) -> Result<(), HeaderError> {
        check_text("device", field::DEVICE, &self.device)?;
        check_version(&self.version)?;
        check_cmdline(&self.cmdline)
    }

    /// The header bytes before the signature, with `key_id` as given.
    fn encode_unsigned(&self) -> Result<[u8; HEADER_SIZE], HeaderError> {
        self.check()?;
        let mut b = [0u8; HEADER_SIZE];
        put(&mut b, field::MAGIC, &MAGIC);
        put(&mut b, field::FORMAT_VERSION, &FORMAT_VERSION.to_le_bytes());
        put(&mut b, field::HEADER_SIZE, &HEADER_SIZE_U32.to_le_bytes());
        put(&mut b, field::DEVICE, self.device.as_bytes());
        put(&mut b, field::TARGET, self.target.as_str().as_bytes());
        put(&mut b, field::VERSION, self.version.as_bytes());
        put(
            &mut b,
            field::SQUASHFS_SIZE,
            &self.squashfs_size.to_le_bytes(),
        );
        put(&mut b, field::DATA_BLOCKS, &self.data_blocks.to_le_bytes());
        put(&mut b, field::HASH_OFFSET, &self.hash_offset.to_le_bytes());
        put(&mut b, field::TREE_SIZE, &self.tree_size.to_le_bytes());
        put(
            &mut b,
            field::DATA_BLOCK_SIZE,
            &self.data_block_size.to_le_bytes(),
        );
        put(
            &mut b,
            field::HASH_BLOCK_SIZE,
            &self.hash_block_size.to_le_bytes(),
        );
        put(
            &mut b,
            field::HASH_ALGORITHM,
            &self.hash_algorithm.id().to_le_bytes(),
        );
        put(&mut b, field::VERITY_FORMAT, &VERITY_FORMAT.to_le_bytes());
        put(&mut b, field::SALT, &self.salt);
        put(&mut b, field::ROOT_HASH, &self.root_hash);
        put(
            &mut b,
            field::ATTACHMENT_SIZE,
            &self.attachment_size.to_le_bytes(),
        );
        put(&mut b, field::ATTACHMENT_SHA256, &self.attachment_sha256);
        put(
            &mut b,
            field::KERNEL_OFFSET,
            &self.kernel.offset.to_le_bytes(),
        );
        put(&mut b, field::KERNEL_SIZE, &self.kernel.size.to_le_bytes());
        put(&mut b, field::KERNEL_SHA256, &self.kernel.sha256);
        put(
            &mut b,
            field::INITRAMFS_OFFSET,
            &self.initramfs.offset.to_le_bytes(),
        );
        put(
            &mut b,
            field::INITRAMFS_SIZE,
            &self.initramfs.size.to_le_bytes(),
        );
        put(&mut b, field::INITRAMFS_SHA256, &self.initramfs.sha256);
        put(&mut b, field::CMDLINE, self.cmdline.as_bytes());
        put(&mut b, field::KEY_ID, &self.key_id);
        Ok(b)
    }

    /// Encodes the header and signs it with `key`. The `key_id` field is set from `key`,
    /// whatever it held.
    pub fn encode_signed(&self, key: &SigningKey) -> Result<[u8; HEADER_SIZE], HeaderError> {
        let mut header = self.clone();
        header.key_id = key_id(&key.verifying_key());
        let mut b = header.encode_unsigned()?;
        let signature = key.sign(&b[..SIGNED_LEN]);
        put(&mut b, field::SIGNATURE, &signature.to_bytes());
        Ok(b)
    }

    /// Decodes a header and checks every field; the signature is not checked yet.
    pub fn decode(bytes: &[u8]) -> Result<UnverifiedHeader, HeaderError> {
        let b: &[u8; HEADER_SIZE] = bytes
            .try_into()
            .map_err(|_| HeaderError::Length { len: bytes.len() })?;
        if get(b, field::MAGIC) != MAGIC {
            return Err(HeaderError::Magic {
                found: hex::encode(get(b, field::MAGIC)),
            });
        }
        let version = get_u32(b, field::FORMAT_VERSION);
        if version != FORMAT_VERSION {
            return Err(HeaderError::FormatVersion { found: version });
        }
        let bad = |name, f: (usize, usize), reason| HeaderError::Field {
            field: name,
            offset: f.0,
            reason,
        };
        if get_u32(b, field::HEADER_SIZE) != HEADER_SIZE_U32 {
            return Err(bad("header_size", field::HEADER_SIZE, "not 4096"));
        }
        if let Some(i) = b[PADDING_START..].iter().position(|&x| x != 0) {
            return Err(HeaderError::Padding {
                offset: PADDING_START + i,
            });
        }
        let device = read_text(b, "device", field::DEVICE)?;
        let target_name = read_text(b, "target", field::TARGET)?;
        let target = Target::from_name(&target_name).ok_or(bad(
            "target",
            field::TARGET,
            "not x86_64 or aarch64",
        ))?;
        let version_text = read_text(b, "version", field::VERSION)?;
        check_version(&version_text)?;
        let hash_algorithm = HashAlgorithm::from_id(get_u32(b, field::HASH_ALGORITHM)).ok_or(
            bad("hash_algorithm", field::HASH_ALGORITHM, "unknown algorithm"),
        )?;
        if get_u32(b, field::VERITY_FORMAT) != VERITY_FORMAT {
            return Err(bad("verity_format", field::VERITY_FORMAT, "not 1"));
        }
        let data_block_size = get_u32(b, field::DATA_BLOCK_SIZE);
        if data_block_size != 4096 {
            return Err(bad("data_block_size", field::DATA_BLOCK_SIZE, "not 4096"));
        }
        let hash_block_size = get_u32(b, field::HASH_BLOCK_SIZE);
        if hash_block_size != 4096 {
            return Err(bad("hash_block_size", field::HASH_BLOCK_SIZE, "not 4096"));
        }
        let cmdline = read_text(b, "cmdline", field::CMDLINE)?;
        check_cmdline(&cmdline)?;
        let header = SlotHeader {
            device,
            target,
            version: version_text,
            squashfs_size: get_u64(b, field::SQUASHFS_SIZE),
            data_blocks: get_u64(b, field::DATA_BLOCKS),
            hash_offset: get_u64(b, field::HASH_OFFSET),
            tree_size: get_u64(b, field::TREE_SIZE),
            data_block_size,
            hash_block_size,
            hash_algorithm,
            salt: get_array(b, field::SALT),
            root_hash: get_array(b, field::ROOT_HASH),
            attachment_size: get_u64(b, field::ATTACHMENT_SIZE),
            attachment_sha256: get_array(b, field::ATTACHMENT_SHA256),
            kernel: Part {
                offset: get_u64(b, field::KERNEL_OFFSET),
                size: get_u64(b, field::KERNEL_SIZE),
                sha256: get_array(b, field::KERNEL_SHA256),
            },
            initramfs: Part {
                offset: get_u64(b, field::INITRAMFS_OFFSET),
                size: get_u64(b, field::INITRAMFS_SIZE),
                sha256: get_array(b, field::INITRAMFS_SHA256),
            },
            cmdline,
            key_id: get_array(b, field::KEY_ID),
        };
        Ok(UnverifiedHeader {
            header,
            signed: get_array(b, (0, SIGNED_LEN)),
            signature: get_array(b, field::SIGNATURE),
        })
    }
}

impl UnverifiedHeader {
    /// The decoded fields, not yet trusted: for layout checks and error messages only.
    pub fn unverified(&self) -> &SlotHeader {
        &self.header
    }

    /// Checks the signature against `key` and returns the trusted header.
    pub fn verify(&self, key: &VerifyingKey) -> Result<SlotHeader, HeaderError> {
        let expected = key_id(key);
        if self.header.key_id != expected {
            return Err(HeaderError::WrongKey {
                expected: hex::encode(expected),
                found: hex::encode(self.header.key_id),
            });
        }
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(&self.signed, &signature)
            .map_err(|_| HeaderError::BadSignature)?;
        Ok(self.header.clone())
    }
}

/// Field names with their byte ranges, for documentation and for tests that corrupt one
/// field at a time.
pub const FIELDS: &[(&str, usize, usize)] = &[
    ("magic", field::MAGIC.0, field::MAGIC.1),
    (
        "format_version",
        field::FORMAT_VERSION.0,
        field::FORMAT_VERSION.1,
    ),
    ("header_size", field::HEADER_SIZE.0, field::HEADER_SIZE.1),
    ("device", field::DEVICE.0, field::DEVICE.1),
    ("target", field::TARGET.0, field::TARGET.1),
    ("version", field::VERSION.0, field::VERSION.1),
    (
        "squashfs_size",
        field::SQUASHFS_SIZE.0,
        field::SQUASHFS_SIZE.1,
    ),
    ("data_blocks", field::DATA_BLOCKS.0, field::DATA_BLOCKS.1),
    ("hash_offset", field::HASH_OFFSET.0, field::HASH_OFFSET.1),
    ("tree_size", field::TREE_SIZE.0, field::TREE_SIZE.1),
    (
        "data_block_size",
        field::DATA_BLOCK_SIZE.0,
        field::DATA_BLOCK_SIZE.1,
    ),
    (
        "hash_block_size",
        field::HASH_BLOCK_SIZE.0,
        field::HASH_BLOCK_SIZE.1,
    ),
    (
        "hash_algorithm",
        field::HASH_ALGORITHM.0,
        field::HASH_ALGORITHM.1,
    ),
    (
        "verity_format",
        field::VERITY_FORMAT.0,
        field::VERITY_FORMAT.1,
    ),
    ("salt", field::SALT.0, field::SALT.1),
    ("root_hash", field::ROOT_HASH.0, field::ROOT_HASH.1),
    (
        "attachment_size",
        field::ATTACHMENT_SIZE.0,
        field::ATTACHMENT_SIZE.1,
    ),
    (
        "attachment_sha256",
        field::ATTACHMENT_SHA256.0,
        field::ATTACHMENT_SHA256.1,
    ),
    (
        "kernel_offset",
        field::KERNEL_OFFSET.0,
        field::KERNEL_OFFSET.1,
    ),
    ("kernel_size", field::KERNEL_SIZE.0, field::KERNEL_SIZE.1),
    (
        "kernel_sha256",
        field::KERNEL_SHA256.0,
        field::KERNEL_SHA256.1,
    ),
    (
        "initramfs_offset",
        field::INITRAMFS_OFFSET.0,
        field::INITRAMFS_OFFSET.1,
    ),
    (
        "initramfs_size",
        field::INITRAMFS_SIZE.0,
        field::INITRAMFS_SIZE.1,
    ),
    (
        "initramfs_sha256",
        field::INITRAMFS_SHA256.0,
        field::INITRAMFS_SHA256.1,
    ),
    ("cmdline", field::CMDLINE.0, field::CMDLINE.1),
    ("key_id", field::KEY_ID.0, field::KEY_ID.1),
    ("signature", field::SIGNATURE.0, field::SIGNATURE.1),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SlotHeader {
        SlotHeader {
            device: "thermostat".into(),
            target: Target::X86_64,
            version: "1.4.0-rc.1+b7".into(),
            squashfs_size: 5000,
            data_blocks: 2,
            hash_offset: 8192,
            tree_size: 4096,
            data_block_size: 4096,
            hash_block_size: 4096,
            hash_algorithm: HashAlgorithm::Sha256,
            salt: [1; 32],
            root_hash: [2; 32],
            attachment_size: 10,
            attachment_sha256: [3; 32],
            kernel: Part {
                offset: 16384,
                size: 4096,
                sha256: [4; 32],
            },
            initramfs: Part {
                offset: 20480,
                size: 100,
                sha256: [5; 32],
            },
            cmdline: "console=ttyS0 quiet".into(),
            key_id: [0; 8],
        }
    }

    #[test]
    fn round_trip() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let bytes = sample().encode_signed(&key).unwrap();
        let decoded = SlotHeader::decode(&bytes).unwrap();
        let header = decoded.verify(&key.verifying_key()).unwrap();
        let mut expected = sample();
        expected.key_id = key_id(&key.verifying_key());
        assert_eq!(header, expected);
    }

    #[test]
    fn fields_are_contiguous() {
        let mut at = 0;
        for &(_, offset, len) in FIELDS {
            assert_eq!(offset, at);
            at += len;
        }
        assert_eq!(at, PADDING_START);
    }

    #[test]
    fn bad_text_rejected() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut h = sample();
        h.version = "1.0 beta".into();
        assert!(matches!(
            h.encode_signed(&key),
            Err(HeaderError::Field {
                field: "version",
                ..
            })
        ));
        let mut h = sample();
        h.cmdline = "console=ttyS0\nrdinit=/bin/sh".into();
        assert!(matches!(
            h.encode_signed(&key),
            Err(HeaderError::Field {
                field: "cmdline",
                ..
            })
        ));
        let mut h = sample();
        h.device = "x".repeat(65);
        assert!(matches!(
            h.encode_signed(&key),
            Err(HeaderError::Field {
                field: "device",
                ..
            })
        ));
    }
}
