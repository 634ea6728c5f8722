//! The device's key pair in memory, and signing with it.
//!
//! Rules this module keeps:
//! - The private key stays inside [`Identity`]: there is no accessor for it, no `Clone`,
//!   and `Debug` prints the class and fingerprint only. Its bytes are zeroed on drop
//!   (ed25519-dalek's `SigningKey` zeroizes itself).
//! - Every signature is over `DOMAIN || purpose || 0x00 || message`: a signature made for
//!   one [`Purpose`] (a check-in) never verifies as another (a remote-access answer), and
//!   no signature of the identity is a valid signature of a bare message someone else
//!   chose the framing of.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The prefix of every message the identity signs.
pub const DOMAIN: &[u8] = b"limpet device identity v1\0";

/// How the private key is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// In the identity file on the data partition, readable by whoever can read that
    /// partition (PID 1, or anyone holding the storage).
    Software,
    /// Sealed by the device's TPM to the measured boot chain: usable only on this TPM and
    /// only when the same chain booted.
    TpmSealed,
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Class::Software => "software",
            Class::TpmSealed => "tpm-sealed",
        })
    }
}

/// What a signature is for; part of the signed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A status report to the fleet server.
    CheckIn,
    /// An answer to a remote-access challenge.
    RemoteAccess,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::CheckIn => b"check-in",
            Purpose::RemoteAccess => b"remote-access",
        }
    }
}

/// The bytes actually signed for `purpose` and `message` (`DOMAIN`, the purpose's label,
/// a zero byte, the message): public so a party holding a raw Ed25519 key in its place (a
/// simulated fleet in a test or benchmark) signs exactly what a device signs.
pub fn signed_bytes(purpose: Purpose, message: &[u8]) -> Vec<u8> {
    framed(purpose, message)
}

fn framed(purpose: Purpose, message: &[u8]) -> Vec<u8> {
    let label = purpose.label();
    let mut bytes = Vec::with_capacity(DOMAIN.len() + label.len() + 1 + message.len());
    bytes.extend_from_slice(DOMAIN);
    bytes.extend_from_slice(label);
    bytes.push(0);
    bytes.extend_from_slice(message);
    bytes
}

/// SHA-256 of the 32-byte public key: how people and servers name an identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `public`.
    pub fn of(public: &VerifyingKey) -> Fingerprint {
        Fingerprint(Sha256::digest(public.as_bytes()).into())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The device's identity: its Ed25519 key pair and how the private half is kept.
pub struct Identity {
    key: SigningKey,
    class: Class,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("class", &self.class)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The identity whose private key is derived from `seed` (RFC 8032: the 32-byte
    /// secret key). Crate-private: only [`crate::store`] makes identities, from the
    /// kernel's RNG or from the file.
    pub(crate) fn from_seed(seed: &[u8; 32], class: Class) -> Identity {
        Identity {
            key: SigningKey::from_bytes(seed),
            class,
        }
    }

    /// The 32-byte seed, for writing the file. Crate-private, and used only by
    /// [`crate::file::encode`].
    pub(crate) fn seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.key.to_bytes())
    }

    /// The public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.public_key())
    }

    /// How the private key is kept.
    pub fn class(&self) -> Class {
        self.class
    }

    /// Signs `message` for `purpose` (see the module doc for the signed bytes).
    pub fn sign(&self, purpose: Purpose, message: &[u8]) -> Signature {
        self.key.sign(&framed(purpose, message))
    }
}

/// Whether `signature` is `public`'s signature of `message` for `purpose`: the check a
/// fleet server or a remote-access client makes.
pub fn verify(
    public: &VerifyingKey,
    purpose: Purpose,
    message: &[u8],
    signature: &Signature,
) -> bool {
    public.verify(&framed(purpose, message), signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(byte: u8) -> Identity {
        Identity::from_seed(&[byte; 32], Class::Software)
    }

    /// A signature verifies for its own purpose and message only.
    #[test]
    fn a_signature_verifies_only_for_its_purpose_and_message() {
        let id = identity(7);
        let public = id.public_key();
        let sig = id.sign(Purpose::CheckIn, b"status 1");
        assert!(verify(&public, Purpose::CheckIn, b"status 1", &sig));
        // Replayed as another purpose, or over another message: refused.
        assert!(!verify(&public, Purpose::RemoteAccess, b"status 1", &sig));
        assert!(!verify(&public, Purpose::CheckIn, b"status 2", &sig));
        // Another device's key: refused.
        assert!(!verify(
            &identity(8).public_key(),
            Purpose::CheckIn,
            b"status 1",
            &sig
        ));
        // Not a signature of the bare message: the framing cannot be stripped.
        assert!(public.verify(b"status 1", &sig).is_err());
    }

    /// The fingerprint is SHA-256 of the public key, and `Debug` never shows the seed.
    #[test]
    fn the_fingerprint_names_the_public_key_and_debug_hides_the_secret() {
        let id = identity(7);
        let expected = hex::encode(Sha256::digest(id.public_key().as_bytes()));
        assert_eq!(id.fingerprint().to_string(), expected);
        let debug = format!("{id:?}");
        assert!(debug.contains(&expected), "{debug}");
        assert!(!debug.contains(&hex::encode([7u8; 32])), "{debug}");
        assert!(!debug.contains("[7, 7"), "{debug}");
        assert_ne!(identity(7).fingerprint(), identity(8).fingerprint());
    }

    #[test]
    fn classes_have_their_wire_names() {
        assert_eq!(Class::Software.to_string(), "software");
        assert_eq!(Class::TpmSealed.to_string(), "tpm-sealed");
        assert_eq!(
            serde_json::to_string(&Class::TpmSealed).unwrap(),
            "\"tpm-sealed\""
        );
    }
}
