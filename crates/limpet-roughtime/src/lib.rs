//! limpet-roughtime: the deciding half of a Roughtime client (IETF draft 07, the version
//! Debian-free servers such as pyroughtime speak): the request a device sends, and the checks
//! that turn a server's answer into a time the device may trust. No I/O: the caller sends
//! the bytes (PID 1, over UDP) and hands back what came.
//!
//! A Roughtime answer is trusted when, and only when:
//! 1. it echoes the request's nonce (`NONC`), which the device drew from its RNG for this
//!    one request: an answer recorded earlier, however well signed, is for another nonce;
//! 2. its certificate (`CERT`: `DELE` and `SIG`) is signed by one of the long-term keys the
//!    signed slot lists (the manifest's `[lifecycle] roughtime`), over the delegation
//!    context "RoughTime v1 delegation signature\0";
//! 3. the nonce is a leaf of the Merkle tree whose root the answer signs: SHA-512/256 of
//!    `0x00 ‖ nonce`, then of `0x01 ‖ left ‖ right` up the `PATH`, steered by `INDX`;
//! 4. the signed response (`SREP`: `ROOT`, `MIDP`, `RADI`) is signed by the delegated key,
//!    over "RoughTime v1 response signature\0";
//! 5. the midpoint lies within the delegation's `MINT..=MAXT`, and the version is draft 07.
//!
//! What the device does with a trusted time is `limpet-lifecycle`'s rule: it may raise the
//! time floor to `midpoint − radius`, never lower it (docs/end-of-life.md).
//!
//! Rules this crate keeps:
//! - Values in, values out; the nonce comes from the caller (the device's RNG; tests fix it).
//! - Every failure is a named [`Error`] saying which check failed; nothing panics on any
//!   bytes a network can deliver.

#![warn(missing_docs)]

pub mod message;

use base64::Engine as _;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha512_256};

use message::{Message, Tag};

/// The protocol version this client speaks: IETF draft 07 (`0x80000000 | 7`).
pub const VERSION: u32 = 0x8000_0007;
/// The smallest request a server answers (draft 07, section 6.1).
pub const REQUEST_SIZE: usize = 1024;
/// The longest Merkle path accepted: a tree of 2^32 nonces.
pub const MAX_PATH: usize = 32;
/// What the long-term key signs before the delegation (`DELE`).
pub const DELEGATION_CONTEXT: &[u8] = b"RoughTime v1 delegation signature\0";
/// What the delegated key signs before the signed response (`SREP`).
pub const RESPONSE_CONTEXT: &[u8] = b"RoughTime v1 response signature\0";
/// The Modified Julian Date of 1970-01-01.
const MJD_UNIX_EPOCH: u64 = 40_587;
const MICROS_PER_DAY: u64 = 86_400_000_000;

/// Why an answer is not a trusted time.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bytes that are not a Roughtime message.
    #[error("{what}: not a Roughtime message: {reason}")]
    Malformed {
        /// Which message (the answer, its certificate, ...).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A field the check needs is missing.
    #[error("{what}: no {tag} field")]
    Missing {
        /// Which message.
        what: &'static str,
        /// The missing tag.
        tag: String,
    },
    /// A field of the wrong size.
    #[error("{what}: {tag} is {len} bytes, expected {expected}")]
    FieldSize {
        /// Which message.
        what: &'static str,
        /// The tag.
        tag: String,
        /// Its length.
        len: usize,
        /// The length it must have.
        expected: &'static str,
    },
    /// Another protocol version.
    #[error("the server speaks Roughtime version {0:#x}, not draft 07 ({VERSION:#x})")]
    Version(u32),
    /// The answer is for another request (a replay, or a mixed-up answer).
    #[error("the answer's nonce is not this request's: a replayed or foreign answer")]
    NonceMismatch,
    /// No listed key signed the certificate.
    #[error("the certificate is not signed by {server}'s listed key")]
    UntrustedCertificate {
        /// The server whose key was tried.
        server: String,
    },
    /// The nonce is not in the signed Merkle tree.
    #[error("the nonce is not in the signed Merkle tree: {0}")]
    MerklePath(&'static str),
    /// The signed response's signature is not the delegated key's.
    #[error("the signed response is not signed by the delegated key")]
    BadResponseSignature,
    /// The time lies outside the delegation's validity.
    #[error("the midpoint {midpoint} lies outside the delegated key's validity {mint}..={maxt}")]
    OutsideDelegation {
        /// The midpoint (Roughtime's MJD encoding).
        midpoint: u64,
        /// Start of validity.
        mint: u64,
        /// End of validity.
        maxt: u64,
    },
    /// A timestamp that is not a date after 1970.
    #[error("timestamp {0:#x} is not a time after 1970")]
    Timestamp(u64),
    /// A server key that is not an Ed25519 public key.
    #[error("Roughtime key of {server}: {reason}")]
    Key {
        /// The server.
        server: String,
        /// What is wrong with the key.
        reason: String,
    },
}

/// A Roughtime server a device may ask: its name (for messages) and long-term public key.
#[derive(Debug, Clone)]
pub struct Server {
    name: String,
    key: VerifyingKey,
}

impl Server {
    /// A server with its long-term Ed25519 key given as 32 bytes in base64 (the form
    /// Roughtime server lists publish).
    pub fn new(name: &str, key_base64: &str) -> Result<Self, Error> {
        let err = |reason: String| Error::Key {
            server: name.to_owned(),
            reason,
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key_base64.trim())
            .map_err(|e| err(format!("not base64: {e}")))?;
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| err(format!("{} bytes, an Ed25519 key is 32", bytes.len())))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|e| err(format!("not an Ed25519 point: {e}")))?;
        Ok(Server {
            name: name.to_owned(),
            key,
        })
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The request for `nonce`: framed, padded to [`REQUEST_SIZE`] bytes.
pub fn request(nonce: &[u8; 32]) -> Vec<u8> {
    let version = VERSION.to_le_bytes();
    let fixed = message::encode(&[(Tag::VER, &version), (Tag::NONC, nonce), (Tag::PAD, &[])]);
    // The header (12 bytes) and the padding make the whole request REQUEST_SIZE bytes.
    let pad = vec![0u8; REQUEST_SIZE.saturating_sub(12 + fixed.len())];
    message::frame(&message::encode(&[
        (Tag::VER, &version),
        (Tag::NONC, nonce),
        (Tag::PAD, &pad),
    ]))
}

/// A time a listed server vouched for, for this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The server's name.
    pub server: String,
    /// The midpoint, in microseconds since 1970-01-01T00:00:00Z.
    pub midpoint_micros: u64,
    /// The radius of uncertainty, in microseconds.
    pub radius_micros: u32,
}

impl Verified {
    /// The earliest time the answer allows, in whole seconds since the epoch: the one a
    /// time floor may be raised to.
    pub fn earliest_secs(&self) -> u64 {
        self.midpoint_micros
            .saturating_sub(u64::from(self.radius_micros))
            / 1_000_000
    }
}

/// Checks `answer` against the request made with `nonce` and the server `server`: the
/// five checks of the crate's doc, in that order.
pub fn verify(answer: &[u8], nonce: &[u8; 32], server: &Server) -> Result<Verified, Error> {
    let reply = Message::parse(answer, "answer")?;
    let version = u32_field(&reply, Tag::VER, "answer")?;
    if version != VERSION {
        return Err(Error::Version(version));
    }
    if reply.require(Tag::NONC, "answer")? != nonce {
        return Err(Error::NonceMismatch);
    }

    // 2. The certificate, by the listed long-term key.
    let cert = Message::parse(reply.require(Tag::CERT, "answer")?, "certificate")?;
    let dele_bytes = cert.require(Tag::DELE, "certificate")?;
    let dele_sig = signature(&cert, "certificate")?;
    server
        .key
        .verify(&[DELEGATION_CONTEXT, dele_bytes].concat(), &dele_sig)
        .map_err(|_| Error::UntrustedCertificate {
            server: server.name.clone(),
        })?;
    let dele = Message::parse(dele_bytes, "delegation")?;
    let pubk: [u8; 32] = fixed(&dele, Tag::PUBK, "delegation")?;
    let delegated = VerifyingKey::from_bytes(&pubk).map_err(|_| Error::FieldSize {
        what: "delegation",
        tag: "PUBK".into(),
        len: 32,
        expected: "an Ed25519 point",
    })?;
    let mint = u64_field(&dele, Tag::MINT, "delegation")?;
    let maxt = u64_field(&dele, Tag::MAXT, "delegation")?;

    // 3. The nonce in the tree.
    let srep_bytes = reply.require(Tag::SREP, "answer")?;
    let srep = Message::parse(srep_bytes, "signed response")?;
    let root: [u8; 32] = fixed(&srep, Tag::ROOT, "signed response")?;
    let index = u32_field(&reply, Tag::INDX, "answer")?;
    let path = reply.require(Tag::PATH, "answer")?;
    merkle_check(nonce, index, path, &root)?;

    // 4. The signed response, by the delegated key.
    let sig = signature(&reply, "answer")?;
    delegated
        .verify(&[RESPONSE_CONTEXT, srep_bytes].concat(), &sig)
        .map_err(|_| Error::BadResponseSignature)?;

    // 5. The time, within the delegation.
    let midpoint = u64_field(&srep, Tag::MIDP, "signed response")?;
    let radius = u32_field(&srep, Tag::RADI, "signed response")?;
    if !(mint..=maxt).contains(&midpoint) {
        return Err(Error::OutsideDelegation {
            midpoint,
            mint,
            maxt,
        });
    }
    Ok(Verified {
        server: server.name.clone(),
        midpoint_micros: unix_micros(midpoint)?,
        radius_micros: radius,
    })
}

/// Walks `path` from the nonce's leaf to the root (check 3).
fn merkle_check(
    nonce: &[u8; 32],
    mut index: u32,
    path: &[u8],
    root: &[u8; 32],
) -> Result<(), Error> {
    if !path.len().is_multiple_of(32) {
        return Err(Error::MerklePath("PATH is not whole 32-byte nodes"));
    }
    if path.len() / 32 > MAX_PATH {
        return Err(Error::MerklePath("PATH is longer than 32 nodes"));
    }
    let mut node: [u8; 32] = Sha512_256::new()
        .chain_update([0u8])
        .chain_update(nonce)
        .finalize()
        .into();
    for sibling in path.chunks_exact(32) {
        let (left, right) = if index & 1 == 0 {
            (&node[..], sibling)
        } else {
            (sibling, &node[..])
        };
        node = Sha512_256::new()
            .chain_update([1u8])
            .chain_update(left)
            .chain_update(right)
            .finalize()
            .into();
        index >>= 1;
    }
    if index != 0 {
        return Err(Error::MerklePath("INDX has bits left after the PATH"));
    }
    if &node != root {
        return Err(Error::MerklePath(
            "the path does not lead to the signed ROOT",
        ));
    }
    Ok(())
}

/// Roughtime's timestamp (Modified Julian Date in the top 24 bits, microseconds of that
/// day in the low 40) as microseconds since the Unix epoch.
pub fn unix_micros(timestamp: u64) -> Result<u64, Error> {
    let mjd = timestamp >> 40;
    let micros = timestamp & ((1 << 40) - 1);
    if mjd < MJD_UNIX_EPOCH || micros >= MICROS_PER_DAY {
        return Err(Error::Timestamp(timestamp));
    }
    Ok((mjd - MJD_UNIX_EPOCH) * MICROS_PER_DAY + micros)
}

/// The inverse of [`unix_micros`].
pub fn timestamp(unix_micros: u64) -> u64 {
    let mjd = unix_micros / MICROS_PER_DAY + MJD_UNIX_EPOCH;
    (mjd << 40) | (unix_micros % MICROS_PER_DAY)
}

fn fixed<const N: usize>(m: &Message<'_>, tag: Tag, what: &'static str) -> Result<[u8; N], Error> {
    let value = m.require(tag, what)?;
    value.try_into().map_err(|_| Error::FieldSize {
        what,
        tag: tag.name(),
        len: value.len(),
        expected: match N {
            4 => "4",
            8 => "8",
            32 => "32",
            _ => "64",
        },
    })
}

fn u32_field(m: &Message<'_>, tag: Tag, what: &'static str) -> Result<u32, Error> {
    fixed::<4>(m, tag, what).map(u32::from_le_bytes)
}

fn u64_field(m: &Message<'_>, tag: Tag, what: &'static str) -> Result<u64, Error> {
    fixed::<8>(m, tag, what).map(u64::from_le_bytes)
}

fn signature(m: &Message<'_>, what: &'static str) -> Result<Signature, Error> {
    fixed::<64>(m, Tag::SIG, what).map(|b| Signature::from_bytes(&b))
}

#[cfg(test)]
mod tests;
