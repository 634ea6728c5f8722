//! limpet-lifecycle: a device's end of life, decided without trusting its clock.
//!
//! - [`time`]: the pure rules of trusted time: the time floor (the build time of the signed
//!   slot, the newest verified signed time, the floor saved on the device: it never goes
//!   back), what an RTC reading may do (move time forward, never below the floor), uptime
//!   accumulated without fresh metadata, the support window and its signed extensions, and
//!   when island mode is due. Values in, values out: no I/O, no clock read.
//! - [`island`]: whether the device is in island mode, since when and why, and the rule
//!   that moves it in and out (it follows `island_due`).
//! - [`keeper`]: PID 1's side: the live state, the slot's facts and the record together,
//!   saved on rule 5's schedule ([`Keeper`]).
//! - [`record`]: the 4096-byte on-disk record of that state, documented byte by byte.
//! - [`store`]: two alternately written copies of the record in the `state` partition,
//!   beside (never over) the A/B record of `limpet-state`, on a
//!   [`limpet_state::BlockDevice`].
//!
//! The rules are also described in `docs/end-of-life.md`, the record in `docs/state.md`.
//!
//! Rules this crate keeps:
//! - Time comes in as values ([`WallTime`], [`Uptime`]); nothing here reads a clock, so
//!   every bad-time case is a unit test.
//! - A [`time::TimeState`] is valid by construction: its floor, its earliest time and its
//!   accepted support end never go back, and the store refuses to write a floor or an
//!   accepted end below the stored one.
//! - No panics on input-driven paths: every byte read from the disk is checked before use.

#![warn(missing_docs)]

pub mod island;
pub mod keeper;
pub mod record;
pub mod store;
pub mod time;

pub use island::{IslandCause, IslandChange, IslandMode};
pub use keeper::{Keeper, KeeperError, Opened, Settled, SAVE_INTERVAL};
pub use record::RecordError;
pub use store::{LifecycleStore, Loaded, StoreError};
pub use time::{
    Freshness, InvariantError, IslandReason, Now, RoughtimeChange, SlotLifecycle, SupportError,
    TimeError, TimeSource, TimeState, TimeStateParts, Uptime, WallTime,
};
