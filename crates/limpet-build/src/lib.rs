//! Host side of Limpet: everything the `limpet` command line does to a project and its
//! images, apart from parsing the manifest (`limpet-manifest`), the image formats
//! themselves (`limpet-image`) and booting an image (`limpet-run`).
//!
//! The modules, grouped by what they do:
//! - [`build`](mod@build): `limpet build`, from a manifest to `slot.img`, `initramfs.cpio`, `kernel`
//!   and `disk.img` ([`build::pipeline`] reads as its numbered steps);
//! - [`read`]: reading built images back: `verify`, `inspect`, a disk's A/B state;
//! - [`project`]: the vendor's project: reading it, creating one (`limpet new`), its
//!   image signing key;
//! - [`secureboot`]: the vendor's UEFI Secure Boot keys, Authenticode signing of the boot
//!   loader and the kernel, and the firmware variables with the keys enrolled;
//! - [`outputs`]: the names of what a build writes, shared by all three and by
//!   `limpet-run`.
//!
//! The modules the command line calls are re-exported here under their own names.

#![warn(missing_docs)]

pub mod build;
pub mod outputs;
pub mod project;
pub mod read;
pub mod secureboot;

pub use build::pipeline::{build, BuildError, BuildOptions, BuildReport};
pub use build::{cohort, pipeline, sbom};
pub use project::{keys, scaffold};
pub use read::{disk_identity, disk_state, image_file, inspect, verify};
