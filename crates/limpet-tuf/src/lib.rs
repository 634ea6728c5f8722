//! The Update Framework (specification 1.0): metadata, a static repository writer and the
//! client workflow of section 5.
//!
//! - [`repo::Repository`] writes a repository (`limpet publish`): role keys as PEM files or
//!   signer commands, offline root keys, atomic writes, root and role key rotation,
//!   delegated targets roles (`limpet repo delegate`).
//! - [`client::Client`] follows the specification's client workflow step by step, with
//!   threshold checks counting unique keys ([`verify::verify_threshold`]), a trusted-time floor
//!   for devices without a trustworthy clock, and exact-bytes metadata storage.
//! - [`delegation`] is the delegations object and the target search of step 5.6.7.2
//!   (paths, path hash prefixes, hash bins, terminating roles), which the client's
//!   [`client::Client::target`] goes through.
//! - [`transport`] fetches files from a directory or over plain HTTP/1.1, every download
//!   length-capped, rate-bounded and hash-checked by construction.
//!
//! Keys: Ed25519, ECDSA P-256 and RSASSA-PSS ([`keys::public`]), signing with private key
//! files or a signer command ([`keys::external`]). Metadata
//! is signed over canonical JSON ([`canonical`]), interoperable with python-tuf.

#![warn(missing_docs)]

pub mod canonical;
pub mod client;
pub mod delegation;
pub mod error;
mod fsutil;
pub mod keys;
pub mod metadata;
pub mod repo;
pub mod time;
pub mod transport;
pub mod verify;

pub use client::{Client, Limits};
pub use error::Error;
pub use repo::{ExpiryPolicy, InitOptions, RepoError, Repository};
pub use time::{Clock, FixedClock, SystemClock, UnixTime};
pub use transport::{RetrievalPolicy, Transport};

/// The largest length any metadata field may declare: 4 GiB (`u32::MAX + 1`). Larger values
/// are refused with [`Error::LengthTooLarge`].
pub const MAX_LENGTH: u64 = 1 << 32;
