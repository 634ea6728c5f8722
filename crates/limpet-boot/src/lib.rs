//! limpet-boot: Limpet's UEFI boot loader, the first code of the device's own that runs.
//!
//! The firmware (UEFI Secure Boot with the vendor's keys) starts this loader from the
//! disk's EFI system partition. It then, step by step ([`boot::choose`]):
//! 1. reads the boot disk's GPT and finds `state`, `slot-a` and `slot-b` ([`gpt`], with
//!    limpet-image's GPT reader);
//! 2. settles owner mode ([`owner::settle`]): the owner key store, a pending wipe, a
//!    request from the running OS and its physical confirmation; the result is the set of
//!    image keys this boot accepts;
//! 3. loads the A/B state through limpet-state's `no_std` core (the same two-copy rules
//!    and state machine as PID 1), runs `begin_boot` and stores the result *before* it
//!    reads the slot, so a kernel that hangs still spends its trial's boots;
//! 4. reads the chosen slot's header, verifies its Ed25519 signature with the vendor's
//!    image key compiled into the loader (or, in owner mode, the owner's), refuses a version below the floor, reads the
//!    kernel and the initramfs and checks their sha256 against the header ([`slot`], with
//!    limpet-image's slot reader: header format 2, the whole-image slot); a trial that fails is rolled back (stored) and the committed
//!    slot boots; when nothing verifies the loader halts: it never starts unverified code;
//! 5. starts the kernel (an EFI-stub PE) with the signed command line plus
//!    `limpet.slot=a|b limpet.counted=1` ([`cmdline`]) and hands it the initramfs through
//!    the Linux initrd LoadFile2 protocol (the `uefi` platform module `sys`, in the binary),
//!    after arming the hardware watchdog for the signed `limpet.watchdog=` timeout
//!    ([`watchdog`]), so a boot that hangs from there on resets the device.
//!
//! Rules this crate keeps:
//! - Every decision is in plain `no_std` modules over the [`disk::Disk`] seam, unit-tested
//!   on the host against an in-memory disk; every UEFI call is in the binary's one `sys`
//!   module, and the binary's entry point exists only for `target_os = "uefi"`.
//! - No panic on input-driven paths: every byte read from the disk is checked before use,
//!   every size is bounded by its partition before anything is allocated.
//! - Nothing unverified is started: the only bytes handed to the firmware's `LoadImage`,
//!   to the kernel as its initramfs and as its command line are bytes the signed header
//!   holds or names by sha256.

#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod boot;
pub mod cmdline;
pub mod disk;
pub mod gpt;
pub mod initrd;
pub mod owner;
pub mod slot;
pub mod watchdog;

/// The architecture this loader boots (the slot header's `target` must name it).
pub const TARGET: &str = if cfg!(target_arch = "aarch64") {
    "aarch64"
} else {
    "x86_64"
};
