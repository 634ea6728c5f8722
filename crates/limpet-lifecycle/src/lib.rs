//! limpet-lifecycle: a device's end of life, decided without trusting its clock.
//!
//! - [`time`]: the pure rules of trusted time: the time floor (the build time of the signed
//!   slot, the newest verified signed time, the floor saved on the device: it never goes
//!   back), what an RTC reading may do (move time forward, never below the floor), uptime
//!   accumulated without fresh metadata, the support window and its signed extensions, and
//!   when island mode is due. Values in, values out: no I/O, no clock read.
//!
//! The rules are also described in `docs/end-of-life.md`.
//!
//! Rules this crate keeps:
//! - Time comes in as values ([`WallTime`], [`Uptime`]); nothing here reads a clock, so
//!   every bad-time case is a unit test.
//! - A [`time::TimeState`] is valid by construction: its floor, its earliest time and its
//!   accepted support end never go back.

#![warn(missing_docs)]

pub mod time;

pub use time::{
    Freshness, InvariantError, IslandReason, Now, SlotLifecycle, SupportError, TimeError,
    TimeSource, TimeState, TimeStateParts, Uptime, WallTime,
};
