//! The device's identity at boot (limpet-identity, docs/identity.md): loaded from the
//! data partition, or made from the kernel's RNG on the first boot after the partition was
//! made (at the factory's first power-on, or after a wipe); with a TPM (`/dev/tpmrm0`),
//! sealed to the Secure Boot state and the loader's measurement of the image key.
//!
//! Rules this module keeps:
//! - A damaged, unreadable or unsealable identity file does not stop the device: its tasks
//!   run as before, with no identity in use, and the console and the status file say why.
//!   The file is left as it is and no new identity is made (only a wipe of the data
//!   partition makes one), so damage cannot silently turn the device into another one.
//! - After the identity is loaded or made, PID 1 extends the image key's PCR with a cap
//!   ([`CAP`]): nothing that runs later in this boot can unseal it again.
//! - Only the public key, its fingerprint and the class are ever printed.
//!
//! The TPM commands are linked only into a PID 1 whose manifest says `[kernel] tpm =
//! "tpm2"`: `limpet build` leaves the `tpm` feature off otherwise, and that PID 1 keeps the
//! identity in software whatever the kernel offers.

use std::path::Path;

#[cfg(feature = "tpm")]
use limpet_identity::tpm;
use limpet_identity::{IdentityStatus, IdentityView, Opened};

/// What PID 1 extends the image key's PCR with once the identity is in memory.
#[cfg(feature = "tpm")]
pub const CAP: &[u8] = b"limpet-init: identity loaded, sealed identity capped until reboot";

/// Loads or makes the identity kept under `data` (the data partition's mount point), with
/// the TPM under `root` if there is one, saying on the console what happened; the
/// identity, if there is one, and its status.
pub fn open(root: &Path, data: &Path) -> (Option<limpet_identity::Identity>, IdentityStatus) {
    match load_or_make(root, data) {
        Ok(Opened::Loaded(id)) => {
            let view = IdentityView::of_identity(&id);
            console!("identity: {}", view.line());
            (Some(id), IdentityStatus::Loaded(view))
        }
        Ok(Opened::Created(id, not_sealed)) => {
            let view = IdentityView::of_identity(&id);
            console!("identity: made a new one at this boot: {}", view.line());
            if let Some(why) = not_sealed {
                console!(
                    "identity kept in software although a TPM is present: {}",
                    crate::console::chain(&why)
                );
            }
            (Some(id), IdentityStatus::Created(view))
        }
        Err(e) => {
            let error = crate::console::chain(&e);
            console!("identity REFUSED: {error}; the device runs without an identity");
            (None, IdentityStatus::Refused { error })
        }
    }
}

/// Loads or makes the identity, unsealing or sealing it with the TPM under `root` if
/// there is one, then caps the image key's PCR.
#[cfg(feature = "tpm")]
fn load_or_make(root: &Path, data: &Path) -> Result<Opened, limpet_identity::StoreError> {
    let mut device = match tpm::Device::open(root) {
        Ok(device) => {
            console!("TPM: {}", device.path().display());
            Some(device)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            console!("TPM: cannot open /dev/tpmrm0: {e}; identity kept without it");
            None
        }
    };
    let opened = limpet_identity::store::open_with(
        data,
        limpet_identity::random::kernel_seed,
        device.as_mut().map(|d| d as &mut dyn tpm::Transport),
    );
    if let Some(device) = device.as_mut() {
        cap(device);
    }
    opened
}

/// Loads or makes the identity in software: this PID 1 was built without the TPM
/// commands (its `tpm` feature off, a manifest without `[kernel] tpm`), so a TPM the
/// kernel offers is left alone and a sealed identity file is refused by name.
#[cfg(not(feature = "tpm"))]
fn load_or_make(_root: &Path, data: &Path) -> Result<Opened, limpet_identity::StoreError> {
    limpet_identity::store::open(data, limpet_identity::random::kernel_seed)
}

/// Extends the image key's PCR with [`CAP`], saying so only when it fails.
#[cfg(feature = "tpm")]
fn cap(device: &mut tpm::Device) {
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(CAP).into();
    if let Err(e) = tpm::extend(device, limpet_image::measure::IMAGE_KEY_PCR, &digest) {
        console!(
            "TPM: cannot cap PCR {}: {}",
            limpet_image::measure::IMAGE_KEY_PCR,
            crate::console::chain(&e)
        );
    }
}
