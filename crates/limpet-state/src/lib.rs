//! limpet-state: the device's A/B boot state, and how it survives power cuts.
//!
//! - [`machine`]: the pure state machine, a [`State`] value with named transitions
//!   (`factory`, `mark_trial`, `begin_boot`, `commit`, `roll_back`, `cancel_trial`); its rules
//!   are in that module's doc.
//! - [`record`]: the 4096-byte on-disk record, documented byte by byte, in the [`frame`]
//!   every record of the state partition shares (limpet-lifecycle's time record too).
//! - [`copies`]: the two alternately written copies on the `state` partition, 512 KiB
//!   apart, and the reading and writing rules that make every power cut leave a readable
//!   state, over any medium (the [`copies::Copies`] trait).
//! - [`owner`]: owner mode's two small formats, the loader's owner key store and the
//!   request the running OS leaves for it in the `state` partition.
//! - [`store`] (feature `std`): [`StateStore`], those rules on a [`BlockDevice`].
//! - [`device`] (feature `std`): the [`BlockDevice`] seam (a file or partition node, a [`Region`] of a
//!   whole disk); the tests drive it with `SimDisk` (limpet-testkit's `power_cut_disk`), a device that
//!   loses power after N bytes and fails reads on demand.
//!
//! The format is also described in `docs/state.md`, for bootloaders (U-Boot, GRUB) that
//! would drive the same boot counting.
//!
//! Rules this crate keeps:
//! - No panics on input-driven paths: every byte read from the disk is checked before use.
//! - No I/O outside [`store`] and [`device`]; the decisions are pure functions of a
//!   [`State`].
//! - No dependency beyond `semver` and `thiserror`: it builds for the static musl PID 1.
//!   The record's CRC-32 is computed here ([`crc`]).
//! - `no_std` + `alloc` without the default feature `std`: `machine`, `record`, `version`
//!   and `copies` are the core the UEFI boot loader (limpet-boot) links, so the loader and
//!   PID 1 read, count and write the same state by the same code. `store` and `device`
//!   (files and partition nodes) need `std`.

#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod copies;
pub mod crc;
#[cfg(feature = "std")]
pub mod device;
pub mod frame;
pub mod machine;
pub mod owner;
pub mod record;
#[cfg(feature = "std")]
pub mod store;
pub mod version;

pub use copies::{Copies, CopyId, StoreError};
#[cfg(feature = "std")]
pub use device::{BlockDevice, Region};
pub use machine::{
    BootChoice, BootKind, Failure, FailureReason, Slot, State, TransitionError, Trial, TrialPhase,
};
pub use record::RecordError;
#[cfg(feature = "std")]
pub use store::{Loaded, StateError, StateStore};
pub use version::{Version, VersionError};
