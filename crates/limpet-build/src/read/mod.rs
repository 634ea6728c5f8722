//! Reading back: what a built image holds and whether it is sound, from the files alone
//! (never from the build that made them).
//!
//! - [`image_file`]: finding the slot in an output directory, a `slot.img` or a `disk.img`;
//! - [`verify`]: `limpet verify`, the whole slot checked against the vendor's public key;
//! - [`inspect`]: `limpet inspect`, files, tasks, policy, verity parameters and SBOM;
//! - [`disk_state`]: a disk image's A/B state, in words;
//! - [`disk_identity`]: the device identity on a disk image's data partition (public part).

pub mod disk_identity;
pub mod disk_state;
pub mod image_file;
pub mod inspect;
pub mod verify;
