//! limpet-identity: a device's own identity.
//!
//! Each device makes its own Ed25519 key on its first boot, from the kernel's random
//! number generator, and keeps it on its data partition; no key is made at the factory or
//! shared between devices. A wipe of the data partition destroys it.
//!
//! - [`key`]: the [`Identity`] (the key pair, held in memory), its [`Fingerprint`] and
//!   [`Class`], and signing with domain separation ([`Purpose`]); the private key never
//!   leaves it.
//! - [`file`]: the identity file, documented byte by byte in `docs/identity.md`: pure
//!   encoding and checking, no I/O.
//! - [`store`]: the file on the data partition: loaded when present, made once when
//!   absent, written power-fail-safely (temporary file, fsync, rename, fsync of the
//!   directory); a damaged file is refused, never replaced.
//! - [`random`]: the key's seed from the kernel's RNG (`getrandom`, blocking until the
//!   kernel's generator is initialised).
//! - [`tpm`]: sealing a secret to PCRs with a TPM 2.0, the few TPM2 commands marshalled
//!   by hand over `/dev/tpmrm0` (or any [`tpm::Transport`]).
//! - [`view`]: what the status file and `limpet inspect` show: class, public key,
//!   fingerprint; never a secret.
//!
//! Rules this crate keeps:
//! - No function returns or prints the private key or the seed; [`Identity`] has no
//!   `Clone`, and its `Debug` shows the public half only.
//! - An identity file that exists is loaded or refused; it is never overwritten. A new
//!   identity is made only when no file exists (first boot, or after a wipe).
//! - No panics on input-driven paths: every byte read from the file is checked before use.

pub mod file;
pub mod key;
pub mod random;
pub mod store;
pub mod tpm;
pub mod view;

pub use file::FileError;
pub use key::{verify, Class, Fingerprint, Identity, Purpose};
pub use store::{Opened, StoreError};
pub use view::{IdentityStatus, IdentityView};
