//! What Limpet's loader measures into the TPM before it starts a kernel, and so what PID 1
//! seals the device identity to (docs/identity.md, "tpm-sealed").
//!
//! The loader extends [`IMAGE_KEY_PCR`] with the fingerprint of the image signing key that
//! verified the slot (SHA-256 of the 32-byte Ed25519 public key: the same hash whose first
//! 8 bytes are a header's `key_id`), never the slot's digest: an update signed with the
//! same key leaves the PCR as it was, so the sealed identity survives updates, while a
//! loader that verified with another key (or a kernel booted some other way) leaves another
//! value, and the identity stays sealed.
//!
//! Rules this module keeps: pure, `no_std`; the loader and PID 1 both take the PCR number
//! and the measured bytes from here, so they cannot disagree.

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

/// The PCR the loader extends with the image key's fingerprint. 13: not used by the
/// firmware (0-7), GRUB (8-9), IMA (10), systemd-stub's kernel and command line (11-12),
/// shim (14) or systemd's machine id (15).
pub const IMAGE_KEY_PCR: u32 = 13;
/// The PCR the firmware extends with the Secure Boot state and the db entry that verified
/// each image: the identity is sealed to it too.
pub const SECURE_BOOT_PCR: u32 = 7;
/// The event log entry's text, followed by the fingerprint in hex.
pub const EVENT_PREFIX: &str = "limpet image key ";

/// The bytes the loader measures: the image key's fingerprint (the TPM stores, per bank,
/// the bank's hash of these bytes).
pub fn image_key_measurement(key: &VerifyingKey) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The SHA-256 bank's value of [`IMAGE_KEY_PCR`] after the loader's one extend from reset
/// (`SHA-256(zeros || SHA-256(measurement))`): what a device booted through `key` holds.
pub fn expected_image_key_pcr(key: &VerifyingKey) -> [u8; 32] {
    let digest = Sha256::digest(image_key_measurement(key));
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(digest);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_measurement_is_the_key_fingerprint_and_differs_per_key() {
        let a = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        let b = ed25519_dalek::SigningKey::from_bytes(&[2; 32]).verifying_key();
        let m = image_key_measurement(&a);
        assert_eq!(&m[..8], &crate::header::key_id(&a));
        assert_ne!(m, image_key_measurement(&b));
        assert_ne!(expected_image_key_pcr(&a), expected_image_key_pcr(&b));
        assert_ne!(expected_image_key_pcr(&a), m);
    }
}
