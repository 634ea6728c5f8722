//! The identity file, byte by byte (`docs/identity.md` has the same table):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `LIMPETID` |
//! | 8 | 1 | format version, 1 |
//! | 9 | 1 | class: 1 software, 2 tpm-sealed |
//! | 10 | 2 | reserved, zero |
//! | 12 | 32 | the Ed25519 public key |
//! | 44 | 4 | length `n` of the secret, little-endian |
//! | 48 | n | the secret: software, the 32-byte Ed25519 seed; tpm-sealed, the sealed object |
//! | 48 + n | 32 | SHA-256 of bytes 0 .. 48 + n |
//!
//! Rules this module keeps:
//! - Pure: bytes in, bytes or a [`FileError`] out; no I/O.
//! - Every field is checked before use, the checksum over all of them; a software file's
//!   seed must give the public key it stores, so a file whose two halves disagree (a torn
//!   or tampered write the checksum happened to match) is refused, never half used.
//! - The public key is readable without the secret: `limpet inspect` shows it from a disk
//!   image, and a sealed identity shows it without the TPM.

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::key::{Class, Identity};

/// The file's first bytes.
pub const MAGIC: [u8; 8] = *b"LIMPETID";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the secret.
pub const HEADER_LEN: usize = 48;
/// The checksum's length.
pub const CHECKSUM_LEN: usize = 32;
/// The largest secret read (a sealed TPM object is a few hundred bytes).
pub const MAX_SECRET: usize = 4096;
/// A software identity's secret: the seed.
pub const SEED_LEN: usize = 32;

/// Why bytes are not a valid identity file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("{len} bytes, shorter than the smallest identity file ({min})")]
    TooShort { len: usize, min: usize },
    #[error("no identity file magic (found {found:02x?})")]
    Magic { found: Vec<u8> },
    #[error("format version {found}, this device reads {VERSION}")]
    Version { found: u8 },
    #[error("unknown class {found}")]
    Class { found: u8 },
    #[error("reserved bytes are not zero")]
    Reserved,
    #[error("the secret is said to be {said} bytes, the file holds {len} in all")]
    Length { said: u64, len: usize },
    #[error("a software identity's secret is {found} bytes, not {SEED_LEN}")]
    SeedLength { found: usize },
    #[error("checksum mismatch: the file is damaged")]
    Checksum,
    #[error("the stored public key is not a valid Ed25519 point")]
    PublicKey,
    #[error("the seed does not give the stored public key")]
    KeyMismatch,
    #[error("the sealed object is not a TPM2B_PUBLIC followed by a TPM2B_PRIVATE")]
    SealedObject,
}

/// A checked identity file, before its secret is used.
#[derive(Debug)]
pub struct Decoded {
    /// How the secret is kept.
    pub class: Class,
    /// The public key.
    pub public: VerifyingKey,
    /// The secret (the seed, or the sealed object), zeroed on drop.
    pub secret: Zeroizing<Vec<u8>>,
}

/// The file of a software identity.
pub fn encode(identity: &Identity) -> Zeroizing<Vec<u8>> {
    encode_parts(
        identity.class(),
        &identity.public_key(),
        identity.seed().as_slice(),
    )
}

/// The file of `class`, `public` and `secret`.
pub fn encode_parts(class: Class, public: &VerifyingKey, secret: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(HEADER_LEN + secret.len() + CHECKSUM_LEN));
    bytes.extend_from_slice(&MAGIC);
    bytes.push(VERSION);
    bytes.push(class_byte(class));
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(public.as_bytes());
    // The secret is at most MAX_SECRET bytes when it comes from this crate; saturate
    // rather than truncate if someone passes more (decode then refuses the file).
    let len = u32::try_from(secret.len()).unwrap_or(u32::MAX);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(secret);
    let sum = Sha256::digest(bytes.as_slice());
    bytes.extend_from_slice(&sum);
    bytes
}

fn class_byte(class: Class) -> u8 {
    match class {
        Class::Software => 1,
        Class::TpmSealed => 2,
    }
}

/// Checks every field of `bytes` (see the module doc).
pub fn decode(bytes: &[u8]) -> Result<Decoded, FileError> {
    let min = HEADER_LEN + CHECKSUM_LEN;
    if bytes.len() < min {
        return Err(FileError::TooShort {
            len: bytes.len(),
            min,
        });
    }
    let field = |at: usize, len: usize| bytes.get(at..at + len).unwrap_or_default();
    if field(0, 8) != MAGIC {
        return Err(FileError::Magic {
            found: field(0, 8).to_vec(),
        });
    }
    let byte = |at: usize| bytes.get(at).copied().unwrap_or_default();
    if byte(8) != VERSION {
        return Err(FileError::Version { found: byte(8) });
    }
    let class = match byte(9) {
        1 => Class::Software,
        2 => Class::TpmSealed,
        found => return Err(FileError::Class { found }),
    };
    if field(10, 2) != [0, 0] {
        return Err(FileError::Reserved);
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(field(44, 4));
    let said = u32::from_le_bytes(len);
    let secret_len = usize::try_from(said)
        .ok()
        .filter(|&n| n <= MAX_SECRET && HEADER_LEN + n + CHECKSUM_LEN == bytes.len())
        .ok_or(FileError::Length {
            said: u64::from(said),
            len: bytes.len(),
        })?;
    let body = HEADER_LEN + secret_len;
    if Sha256::digest(field(0, body)).as_slice() != field(body, CHECKSUM_LEN) {
        return Err(FileError::Checksum);
    }
    let mut public = [0u8; 32];
    public.copy_from_slice(field(12, 32));
    let public = VerifyingKey::from_bytes(&public).map_err(|_| FileError::PublicKey)?;
    let secret = Zeroizing::new(field(HEADER_LEN, secret_len).to_vec());
    if class == Class::Software && secret.len() != SEED_LEN {
        return Err(FileError::SeedLength {
            found: secret.len(),
        });
    }
    Ok(Decoded {
        class,
        public,
        secret,
    })
}

/// The software identity in a decoded file, its seed checked against its public key.
pub fn software_identity(decoded: &Decoded) -> Result<Identity, FileError> {
    let seed: &[u8; SEED_LEN] =
        decoded
            .secret
            .as_slice()
            .try_into()
            .map_err(|_| FileError::SeedLength {
                found: decoded.secret.len(),
            })?;
    let identity = Identity::from_seed(seed, Class::Software);
    if identity.public_key() != decoded.public {
        return Err(FileError::KeyMismatch);
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Identity, Vec<u8>) {
        let id = Identity::from_seed(&[42; 32], Class::Software);
        let bytes = encode(&id).to_vec();
        (id, bytes)
    }

    /// Recomputes the checksum after an edit, so a test reaches the check after it.
    fn resum(bytes: &mut [u8]) {
        let body = bytes.len() - CHECKSUM_LEN;
        let sum = Sha256::digest(&bytes[..body]);
        bytes[body..].copy_from_slice(&sum);
    }

    #[test]
    fn a_software_identity_round_trips() {
        let (id, bytes) = sample();
        assert_eq!(bytes.len(), HEADER_LEN + SEED_LEN + CHECKSUM_LEN);
        assert_eq!(&bytes[..8], b"LIMPETID");
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.class, Class::Software);
        assert_eq!(decoded.public, id.public_key());
        let back = software_identity(&decoded).unwrap();
        assert_eq!(back.fingerprint(), id.fingerprint());
    }

    /// Each kind of damage is refused with its own error, never half read.
    #[test]
    fn damaged_files_are_refused_by_name() {
        let (_, good) = sample();
        let mut torn = good.clone();
        torn.truncate(100);
        assert_eq!(
            decode(&torn).unwrap_err(),
            FileError::Length { said: 32, len: 100 }
        );
        assert_eq!(
            decode(&[]).unwrap_err(),
            FileError::TooShort { len: 0, min: 80 }
        );
        let mut flipped = good.clone();
        flipped[50] ^= 1;
        assert_eq!(decode(&flipped).unwrap_err(), FileError::Checksum);
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(matches!(decode(&magic), Err(FileError::Magic { .. })));
        let mut version = good.clone();
        version[8] = 2;
        assert_eq!(
            decode(&version).unwrap_err(),
            FileError::Version { found: 2 }
        );
        let mut class = good.clone();
        class[9] = 9;
        assert_eq!(decode(&class).unwrap_err(), FileError::Class { found: 9 });
        let mut reserved = good.clone();
        reserved[11] = 1;
        assert_eq!(decode(&reserved).unwrap_err(), FileError::Reserved);
        let mut zeros = good.clone();
        zeros.iter_mut().for_each(|b| *b = 0);
        assert!(matches!(decode(&zeros), Err(FileError::Magic { .. })));
    }

    /// A file whose checksum was recomputed over a swapped seed (a forged or mixed file)
    /// is refused: the seed must give the stored public key.
    #[test]
    fn a_seed_that_does_not_give_the_public_key_is_refused() {
        let (_, mut bytes) = sample();
        bytes[HEADER_LEN] ^= 1;
        resum(&mut bytes);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(
            software_identity(&decoded).unwrap_err(),
            FileError::KeyMismatch
        );
        // A software file with a secret of the wrong length.
        let id = Identity::from_seed(&[1; 32], Class::Software);
        let short = encode_parts(Class::Software, &id.public_key(), &[1; 16]);
        assert_eq!(
            decode(&short).unwrap_err(),
            FileError::SeedLength { found: 16 }
        );
        // A length field claiming more than the largest secret.
        let mut huge = good_with_len(u32::MAX);
        resum(&mut huge);
        assert!(matches!(decode(&huge), Err(FileError::Length { .. })));
    }

    fn good_with_len(len: u32) -> Vec<u8> {
        let (_, mut bytes) = sample();
        bytes[44..48].copy_from_slice(&len.to_le_bytes());
        bytes
    }
}
