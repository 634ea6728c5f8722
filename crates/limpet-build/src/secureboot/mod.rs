//! UEFI Secure Boot for a Limpet device: the chain of trust from the firmware to the slot.
//!
//! - [`keys`]: the vendor's Secure Boot keys, PK, KEK and db (X.509 certificates with
//!   RSA-2048 keys, the kind every UEFI firmware accepts), made with `openssl`;
//! - [`sign`]: Authenticode signatures with the db key (`osslsigncode`, with the build's
//!   epoch as signing time) on the boot loader and the kernel, checked with `sbverify`
//!   before they are used;
//! - [`vars`]: the firmware's variable store with the vendor's PK, KEK and db enrolled and
//!   Secure Boot on (`virt-fw-vars`): what a factory writes into a device's firmware, and
//!   what `limpet run` gives QEMU's OVMF or AAVMF.
//!
//! Rules this module keeps:
//! - the external tools are Debian's and PyPI's own (`openssl`, `osslsigncode`,
//!   `sbsigntool`, `virt-firmware`); each missing tool is an error naming the package that installs it;
//! - private keys are created mode 0600, never overwritten, and only ever passed to the
//!   signing tool by path;
//! - nothing here decides what boots: the firmware enforces db, the boot loader enforces
//!   the slot's signature and the version floor.

pub mod keys;
pub mod sign;
mod tool;
pub mod vars;

pub use tool::ToolError;
