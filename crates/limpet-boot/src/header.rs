//! The signed slot header as the loader reads it: version, target, and where the kernel,
//! the initramfs and the command line are in the slot, each with its sha256.
//!
//! Swap point: this is a **temporary rig format** (magic `LIMPETBT`, at slot offset 0)
//! until limpet-image's header format version 2 (the whole-image slot) lands `no_std`;
//! then [`decode`] and [`UnverifiedHeader::verify`] call limpet-image's decoder and
//! verifier and this module's byte layout goes. [`BootHeader`] is what the rest of the
//! loader uses, and it stays.
//!
//! # Rig format (4096 bytes at slot offset 0; integers little-endian)
//!
//! ```text
//! offset len  field
//! 0      8    magic            "LIMPETBT"
//! 8      4    format_version   u32 = 2
//! 12     4    header_size      u32 = 4096
//! 16     64   device           UTF-8, NUL-padded
//! 80     16   target           "x86_64" or "aarch64", NUL-padded
//! 96     64   version          semver text, NUL-padded (limpet-state's rule)
//! 160    48   kernel           u64 offset in the slot, u64 size, sha256
//! 208    48   initramfs        the same
//! 256    48   cmdline          the same
//! 304    8    key_id           first 8 bytes of sha256 of the Ed25519 public key
//! 312    64   signature        Ed25519 over bytes 0..312
//! 376    3720 zero
//! ```
//!
//! Rules: every field is checked before use (magic, sizes, text, target, that each part
//! lies after the header and the command line is at most [`MAX_CMDLINE`] bytes); the
//! signature is checked with `verify_strict` (no malleable or small-order signatures) and
//! a header whose `key_id` is not the key's is refused before any signature work.

use alloc::string::{String, ToString};

use ed25519_dalek::{Signature, VerifyingKey};
use limpet_state::Version;
use sha2::{Digest, Sha256};

use crate::le::{le32, le64};

/// Size of the header.
pub const HEADER_SIZE: usize = 4096;
/// The rig header's magic.
pub const MAGIC: [u8; 8] = *b"LIMPETBT";
/// The format version (the whole-image slot is format 2).
pub const FORMAT_VERSION: u32 = 2;
/// Longest signed command line, in bytes.
pub const MAX_CMDLINE: u64 = 4096;
/// Bytes covered by the signature.
const SIGNED: usize = 312;

/// Where one part of the slot is, and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the slot partition.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of those bytes.
    pub sha256: [u8; 32],
}

/// The header's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootHeader {
    /// Device model.
    pub device: String,
    /// Architecture.
    pub target: String,
    /// Firmware version.
    pub version: Version,
    /// The kernel (an EFI-stub PE image).
    pub kernel: Extent,
    /// The initramfs.
    pub initramfs: Extent,
    /// The kernel command line (ASCII).
    pub cmdline: Extent,
}

/// A decoded header whose signature is not checked yet.
#[derive(Debug, Clone)]
pub struct UnverifiedHeader {
    header: BootHeader,
    key_id: [u8; 8],
    signature: [u8; 64],
    signed: [u8; SIGNED],
}

/// Why a header is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Not a slot header.
    #[error("bad magic")]
    Magic,
    /// Another format version.
    #[error("unsupported header format version {found}")]
    FormatVersion {
        /// The version found.
        found: u32,
    },
    /// A field is invalid.
    #[error("header field {field} at offset {offset} is invalid: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// Its offset.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Signed by another key.
    #[error("header signed by key {found}, expected key {expected}")]
    OtherKey {
        /// Key id in the header (hex).
        found: String,
        /// Id of the loader's key (hex).
        expected: String,
    },
    /// The signature does not verify.
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

fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write;
    let mut s = String::new();
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn field(field: &'static str, offset: usize, reason: &'static str) -> HeaderError {
    HeaderError::Field {
        field,
        offset,
        reason,
    }
}

/// A NUL-padded text field: non-empty, no NUL inside, UTF-8.
fn text<'a>(
    b: &'a [u8],
    name: &'static str,
    offset: usize,
    len: usize,
) -> Result<&'a str, HeaderError> {
    let raw = &b[offset..offset + len];
    let end = raw.iter().position(|&x| x == 0).unwrap_or(len);
    if end == 0 {
        return Err(field(name, offset, "empty"));
    }
    if raw[end..].iter().any(|&x| x != 0) {
        return Err(field(name, offset, "bytes after the terminating NUL"));
    }
    core::str::from_utf8(&raw[..end]).map_err(|_| field(name, offset, "not UTF-8"))
}

fn extent(b: &[u8], name: &'static str, offset: usize) -> Result<Extent, HeaderError> {
    let e = Extent {
        offset: le64(b, offset),
        size: le64(b, offset + 8),
        sha256: {
            let mut h = [0u8; 32];
            h.copy_from_slice(&b[offset + 16..offset + 48]);
            h
        },
    };
    if e.offset < HEADER_SIZE as u64 {
        return Err(field(name, offset, "overlaps the header"));
    }
    if e.offset.checked_add(e.size).is_none() {
        return Err(field(name, offset, "offset + size overflows"));
    }
    Ok(e)
}

/// Decodes and checks every field of a header; the signature is checked by
/// [`UnverifiedHeader::verify`].
pub fn decode(b: &[u8; HEADER_SIZE]) -> Result<UnverifiedHeader, HeaderError> {
    if b[..8] != MAGIC {
        return Err(HeaderError::Magic);
    }
    let format = le32(b, 8);
    if format != FORMAT_VERSION {
        return Err(HeaderError::FormatVersion { found: format });
    }
    if le32(b, 12) as usize != HEADER_SIZE {
        return Err(field("header_size", 12, "not 4096"));
    }
    let device = text(b, "device", 16, 64)?.to_string();
    let target = text(b, "target", 80, 16)?;
    if target != "x86_64" && target != "aarch64" {
        return Err(field("target", 80, "not x86_64 or aarch64"));
    }
    let version = Version::parse(text(b, "version", 96, 64)?)
        .map_err(|_| field("version", 96, "not a valid version"))?;
    let kernel = extent(b, "kernel", 160)?;
    let initramfs = extent(b, "initramfs", 208)?;
    let cmdline = extent(b, "cmdline", 256)?;
    if kernel.size == 0 {
        return Err(field("kernel", 160, "empty"));
    }
    if cmdline.size > MAX_CMDLINE {
        return Err(field("cmdline", 256, "longer than 4096 bytes"));
    }
    if b[SIGNED + 64..].iter().any(|&x| x != 0) {
        return Err(field("padding", SIGNED + 64, "not zero"));
    }
    let mut key_id = [0u8; 8];
    key_id.copy_from_slice(&b[304..312]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&b[SIGNED..SIGNED + 64]);
    let mut signed = [0u8; SIGNED];
    signed.copy_from_slice(&b[..SIGNED]);
    Ok(UnverifiedHeader {
        header: BootHeader {
            device,
            target: target.to_string(),
            version,
            kernel,
            initramfs,
            cmdline,
        },
        key_id,
        signature,
        signed,
    })
}

impl UnverifiedHeader {
    /// The fields, unauthenticated (for messages only).
    pub fn unverified(&self) -> &BootHeader {
        &self.header
    }

    /// Checks the key id, then the signature (`verify_strict`), and returns the facts.
    pub fn verify(self, key: &VerifyingKey) -> Result<BootHeader, HeaderError> {
        let expected = key_id(key);
        if self.key_id != expected {
            return Err(HeaderError::OtherKey {
                found: hex(&self.key_id),
                expected: hex(&expected),
            });
        }
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(&self.signed, &signature)
            .map_err(|_| HeaderError::BadSignature)?;
        Ok(self.header)
    }
}

/// Writes a signed rig header (the test rig's slot writer and the unit tests use it; the
/// build pipeline will write limpet-image's format 2 instead).
pub fn encode_signed(h: &BootHeader, key: &ed25519_dalek::SigningKey) -> [u8; HEADER_SIZE] {
    use ed25519_dalek::Signer;
    let mut b = [0u8; HEADER_SIZE];
    let put = |b: &mut [u8; HEADER_SIZE], at: usize, len: usize, bytes: &[u8]| {
        let n = bytes.len().min(len);
        b[at..at + n].copy_from_slice(&bytes[..n]);
    };
    put(&mut b, 0, 8, &MAGIC);
    put(&mut b, 8, 4, &FORMAT_VERSION.to_le_bytes());
    put(&mut b, 12, 4, &4096u32.to_le_bytes());
    put(&mut b, 16, 64, h.device.as_bytes());
    put(&mut b, 80, 16, h.target.as_bytes());
    put(&mut b, 96, 64, h.version.to_string().as_bytes());
    for (at, e) in [(160, h.kernel), (208, h.initramfs), (256, h.cmdline)] {
        put(&mut b, at, 8, &e.offset.to_le_bytes());
        put(&mut b, at + 8, 8, &e.size.to_le_bytes());
        put(&mut b, at + 16, 32, &e.sha256);
    }
    put(&mut b, 304, 8, &key_id(&key.verifying_key()));
    let signature = key.sign(&b[..SIGNED]);
    put(&mut b, SIGNED, 64, &signature.to_bytes());
    b
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ed25519_dalek::SigningKey;

    use super::*;

    fn header() -> BootHeader {
        let e = |offset| Extent {
            offset,
            size: 10,
            sha256: [7; 32],
        };
        BootHeader {
            device: "hello".into(),
            target: "x86_64".into(),
            version: Version::parse("1.2.3").unwrap(),
            kernel: e(4096),
            initramfs: e(8192),
            cmdline: e(12288),
        }
    }

    #[test]
    fn round_trip() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let b = encode_signed(&header(), &key);
        let h = decode(&b).unwrap().verify(&key.verifying_key()).unwrap();
        assert_eq!(h, header());
    }

    #[test]
    fn a_header_signed_by_another_key_is_refused_before_signature_work() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let b = encode_signed(&header(), &other);
        assert!(matches!(
            decode(&b).unwrap().verify(&key.verifying_key()),
            Err(HeaderError::OtherKey { .. })
        ));
    }

    #[test]
    fn a_flipped_signed_byte_breaks_the_signature() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let mut b = encode_signed(&header(), &key);
        b[176] ^= 1; // the kernel's sha256
        assert_eq!(
            decode(&b).unwrap().verify(&key.verifying_key()),
            Err(HeaderError::BadSignature)
        );
    }

    #[test]
    fn a_part_overlapping_the_header_is_refused() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let mut h = header();
        h.initramfs.offset = 100;
        assert!(matches!(
            decode(&encode_signed(&h, &key)),
            Err(HeaderError::Field {
                field: "initramfs",
                ..
            })
        ));
    }
}
