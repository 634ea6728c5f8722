//! limpet-image: the bytes of a Limpet firmware image.
//!
//! - [`verity`]: the dm-verity hash tree (veritysetup format 1, sha256, no superblock).
//! - [`header`]: the signed slot header.
//! - [`slot`]: a slot image (squashfs, hash tree, header, attachment); its format is
//!   documented in that module.
//! - [`gpt`]: reading a GUID partition table (the device uses it to find its slots).
//! - with feature `build`: [`squashfs`], [`cpio`] (the initramfs) and [`disk`] (the GPT
//!   disk image writer).
//!
//! Rules this crate keeps:
//! - Deterministic: the same inputs give the same bytes. No clocks, no random numbers,
//!   entries sorted, owners root:root, modes given by the caller.
//! - Every length read from input is bounds-checked before it is used to index or to
//!   allocate; no panics on input-driven paths.
//! - The format core (`verity`, `header`, `slot`, `gpt`) builds without default features
//!   for the device's static musl PID 1.

#![warn(missing_docs)]

mod at;
pub mod gpt;
pub mod header;
pub mod slot;
pub mod verity;

#[cfg(feature = "build")]
pub mod cpio;
#[cfg(feature = "build")]
pub mod disk;
#[cfg(feature = "build")]
pub mod squashfs;
