//! The device's identity at boot (limpet-identity, docs/identity.md): loaded from the
//! data partition, or made from the kernel's RNG on the first boot after the partition was
//! made (at the factory's first power-on, or after a wipe).
//!
//! Rules this module keeps:
//! - A damaged or unreadable identity file does not stop the device: its tasks run as
//!   before, with no identity in use, and the console and the status file say why. The
//!   file is left as it is and no new identity is made (only a wipe of the data partition
//!   makes one), so damage cannot silently turn the device into another one.
//! - Only the public key, its fingerprint and the class are ever printed.

use std::path::Path;

use limpet_identity::{IdentityStatus, IdentityView, Opened};

/// Loads or makes the identity kept under `data` (the data partition's mount point),
/// saying on the console what happened; the identity, if there is one, and its status.
pub fn open(data: &Path) -> (Option<limpet_identity::Identity>, IdentityStatus) {
    match limpet_identity::store::open(data, limpet_identity::random::kernel_seed) {
        Ok(Opened::Loaded(id)) => {
            let view = IdentityView::of_identity(&id);
            console!("identity: {}", view.line());
            (Some(id), IdentityStatus::Loaded(view))
        }
        Ok(Opened::Created(id, _)) => {
            let view = IdentityView::of_identity(&id);
            console!("identity: made a new one at this boot: {}", view.line());
            (Some(id), IdentityStatus::Created(view))
        }
        Err(e) => {
            let error = crate::console::chain(&e);
            console!("identity REFUSED: {error}; the device runs without an identity");
            (None, IdentityStatus::Refused { error })
        }
    }
}
