//! The names of what `limpet build` writes: the files of an output directory, and the
//! files it places inside the squashfs and the initramfs.
//!
//! Building writes these names, reading back (`verify`, `inspect`) and `limpet run` look
//! them up: this module is the one place they are spelled, so the three cannot drift.

/// The signed slot: squashfs, dm-verity tree, header, SBOM, kernel, initramfs.
pub const SLOT_IMG: &str = "slot.img";
/// The zstd-compressed initramfs that carries `limpet-init`.
pub const INITRAMFS: &str = "initramfs.cpio";
/// The kernel image as the slot carries it: signed for Secure Boot with the vendor's db key.
pub const KERNEL: &str = "kernel";
/// The GPT disk image: esp, state, slot-a, slot-b, data.
pub const DISK_IMG: &str = "disk.img";
/// The firmware's UEFI variable store with the vendor's Secure Boot keys enrolled and
/// Secure Boot enforcing: what the factory writes into the device's firmware.
pub const FIRMWARE_VARS: &str = "efivars.fd";
/// Limpet's boot loader as the EFI system partition carries it, signed with the db key.
pub const LOADER: &str = "loader.efi";

/// Name of the canonical manifest inside the squashfs.
pub const MANIFEST_FILE: &str = "manifest.toml";
/// Name of the compiled policy inside the squashfs: what PID 1 applies to each task.
pub const POLICY_FILE: &str = "policy.json";
/// Where the initramfs carries the vendor's public image key.
pub const INITRAMFS_PUBLIC_KEY: &str = "etc/limpet/image.pub";
/// The module load list in the initramfs: one absolute path per line, in load order.
pub const INITRAMFS_MODULE_LIST: &str = "etc/limpet/modules";
