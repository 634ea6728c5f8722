//! The fleet server (`limpet fleet serve`): signed check-ins, rollout waves, holds and
//! automatic halts.
//!
//! The fleet server can only delay or halt: it never tells a device what to install. What a
//! device installs is what the TUF targets metadata signs; the waves a release rolls out in
//! are in that metadata too ([`waves`]); the server adds only holds signed by its hold key
//! ([`hold`]), which a device honours for at most the `max_hold` the metadata allows.
//!
//! - [`limpet_fleet_api`] (re-exported as [`report`], [`waves`], [`hold`]): the signed
//!   check-in report, the `x-limpet-waves` field and a device's wave, signed holds.
//! - [`halt`]: the automatic halt rule.
//! - [`store`]: SQLite or PostgreSQL, one schema and migrations.
//! - [`rollout`]: the rules put together over the store ([`rollout::Fleet`]).
//! - [`auth`]: operator passwords and sessions; [`server`]: the HTTP API;
//!   [`dashboard`]: its pages.
//! - [`config`]: what `limpet fleet serve` runs (database, hold key, address).

#![warn(missing_docs)]

pub use limpet_fleet_api::{hold, report, waves};

pub mod auth;
pub mod config;
pub mod dashboard;
pub mod halt;
pub mod rollout;
pub mod server;
pub mod store;
