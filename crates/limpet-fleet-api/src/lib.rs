//! What a device and the fleet server exchange, without any of the server: the device's
//! update agent links this crate, never `limpet-fleet` (sqlx, axum, tokio).
//!
//! - [`report`]: the signed check-in report, its parsing and verification.
//! - [`waves`]: the `x-limpet-waves` field of the signed targets metadata and a device's
//!   wave.
//! - [`hold`]: holds signed by the fleet server and how a device evaluates them.
//!
//! The fleet server can only delay or halt: a hold names a release to wait for, never one to
//! install, and a device honours it only within what the signed metadata allows.

#![warn(missing_docs)]

pub mod hold;
pub mod report;
pub mod waves;
