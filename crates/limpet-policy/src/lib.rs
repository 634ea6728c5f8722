//! The signed device policy (`policy.json`): its wire types, and nothing else.
//!
//! The build host compiles a validated manifest into a [`DevicePolicy`] (`limpet-compile`)
//! and stores it as JSON in the signed slot; PID 1 reads it back with
//! [`DevicePolicy::from_json`] and applies each value as it stands (`limpet-sandbox` for a
//! task's sandbox and its seccomp program, `limpet-net` for the nftables ruleset).
//!
//! Rules this crate keeps:
//! - Wire types only: serde structures, the format version, the constants both sides must
//!   agree on, and reading and writing the JSON. No compilation and no system calls: it
//!   depends on nothing that parses TOML or builds seccomp programs, because PID 1 and the
//!   update agent link it (`.ci/check-boundary` proves it).
//! - The JSON is a signed format: field names, order and serde attributes do not change
//!   without a new [`FORMAT`], and unknown fields are refused.
//! - Security choices are enums, never `bool`; several have one variant, so that the JSON
//!   states the choice and no value can weaken it.

#![warn(missing_docs)]

mod device;
pub mod net;
pub mod seccomp;
mod task;

pub use device::{
    DevicePolicy, IslandPolicy, LifecyclePolicy, PolicyError, RemoteDirect, RoughtimeServer,
    TrialPolicy, DEFAULT_HEALTH_MS, DEFAULT_HEALTH_TIMEOUT_MS, DEFAULT_TRY_BOOTS, FORMAT,
    NO_NETWORK,
};
pub use net::NetPolicy;
pub use seccomp::{Arch, Bpf};
pub use task::*;
