//! Host side of Limpet: everything the `limpet` command line does to a project and its
//! images, apart from parsing the manifest (`limpet-manifest`) and the image formats
//! themselves (`limpet-image`).
//!
//! - [`pipeline`]: `limpet build`, from a manifest to `slot.img`, `initramfs.cpio`,
//!   `kernel` and `disk.img`;
//! - [`cargo`]: compiling task binaries and `limpet-init` for the device;
//! - [`kernel`]: the kernel and the module closure the initramfs carries;
//! - [`initramfs`] and [`disk_image`]: two of the outputs, apart from the pipeline's order;
//! - [`datafs`]: the data partition's ext4; [`ids`]: UUIDs derived from content;
//! - [`sbom`]: the CycloneDX SBOM attached to each slot;
//! - [`keys`]: the image signing key;
//! - [`verify`], [`inspect`] and [`disk_state`]: checking and reading built images;
//! - [`run`] and [`sim`]: `limpet run` in QEMU or in namespaces on this host;
//! - [`scaffold`]: `limpet new`.

pub mod cargo;
pub mod datafs;
pub mod disk_image;
pub mod disk_state;
pub mod ids;
pub mod image_file;
pub mod initramfs;
pub mod inspect;
pub mod kernel;
pub mod keys;
pub mod pipeline;
pub mod project;
pub mod run;
pub mod sbom;
pub mod scaffold;
pub mod sim;
pub mod verify;

pub use pipeline::{build, BuildError, BuildOptions, BuildReport};
