//! limpet-image: the bytes of a Limpet firmware image.
//!
//! - [`verity`]: the dm-verity hash tree (veritysetup format 1, sha256, no superblock).
//! - [`header`]: the signed slot header.
//! - [`slot`]: a slot image (squashfs, hash tree, header, SBOM attachment, kernel,
//!   initramfs); its format is documented in that module.
//! - [`gpt`]: reading a GUID partition table (the device and the boot loader use it to find
//!   their partitions).
//! - [`io`]: [`io::ReadAt`], the one seam between these readers and a device.
//! - [`cmdline`]: Limpet's own kernel command-line parameters (the watchdog timeout).
//! - [`datafs`]: the empty data filesystem as a template of its non-zero bytes, which
//!   PID 1 writes onto a wiped data partition.
//! - [`release`]: the release file the build writes into the initramfs and PID 1 prints.
//! - [`measure`]: what the loader measures into the TPM (the image key's fingerprint,
//!   PCR 13) and PID 1 seals the identity to.
//! - with feature `build`: [`squashfs`], [`cpio`] (the initramfs), [`esp`] (the EFI
//!   system partition) and [`disk`] (the GPT disk image writer).
//!
//! Rules this crate keeps:
//! - Deterministic: the same inputs give the same bytes. No clocks, no random numbers,
//!   entries sorted, owners root:root, modes given by the caller.
//! - Every length read from input is bounds-checked before it is used to index or to
//!   allocate; no panics on input-driven paths.
//! - The format core (`verity`, `header`, `slot`, `gpt`, `io`, `cmdline`, `datafs`,
//!   `release`) is `no_std` + `alloc`
//!   without the `std` feature, for the UEFI boot loader; with `std` (PID 1, the host) it
//!   also reads from `std::io` devices.

#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod cmdline;
pub mod datafs;
pub mod gpt;
pub mod header;
pub mod io;
pub mod measure;
pub mod release;
pub mod slot;
pub mod verity;

#[cfg(feature = "build")]
pub mod cpio;
#[cfg(feature = "build")]
pub mod disk;
#[cfg(feature = "build")]
pub mod esp;
#[cfg(feature = "build")]
pub mod squashfs;
