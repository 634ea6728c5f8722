//! limpet-testkit: the test doubles, rigs and doc-sync checks Limpet's tests share.
//!
//! Dev-only: this crate is only ever a `[dev-dependencies]` entry, never a dependency of a
//! production crate, so no production crate carries test code or a test-only feature
//! (`tests/dev_only.rs` holds that with `cargo tree`).
//! Helpers here may panic (they are test code); each module says what it stands in for.

#![warn(missing_docs)]

pub mod docs;
pub mod noise;
pub mod policy;
pub mod power_cut_disk;
pub mod python_tuf;
pub mod relay;
pub mod slot;
