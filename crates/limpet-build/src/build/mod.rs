//! Building: from a project to the four outputs of `limpet build`.
//!
//! - [`pipeline`]: `limpet build` itself, one function per numbered step;
//! - [`cargo`]: compiling task binaries and `limpet-init` for the device;
//! - [`cohort`]: the seeded code layout of one cohort of a release;
//! - [`kernel`]: the kernel and the module closure the initramfs carries;
//! - [`initramfs`] and [`disk_image`]: two of the outputs;
//! - [`datafs`]: the data partition's ext4; [`ids`]: UUIDs derived from content;
//! - [`sbom`]: the CycloneDX SBOM attached to each slot.
//!
//! Every byte these modules write depends only on the build's inputs (sources, lock file,
//! kernel, key, `SOURCE_DATE_EPOCH`).

pub mod cargo;
pub mod cohort;
pub mod datafs;
pub mod disk_image;
pub mod ids;
pub mod initramfs;
pub mod kernel;
pub mod pipeline;
pub mod sbom;
