//! Test helpers shared by Limpet's crates. A dev-dependency only: nothing here is linked into
//! a device or host binary.

pub mod docs;
