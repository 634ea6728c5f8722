//! Remote access to a Limpet device through a relay that cannot read it.
//!
//! The device dials out to the relay its image names and registers by its identity key
//! ([`relay`]); an operator asks the relay for that key and the relay splices the two TCP
//! streams. Inside, a Noise session ([`session`]) authenticates both ends with Ed25519
//! signatures over the handshake hash, and the device decides ([`decide`]) on a
//! short-lived [`capability`] signed by the access key pinned in its image.
//!
//! Shared by the three parties: the device's agent ([`device`]), the relay and the operator's
//! client (`limpet relay serve`, `limpet connect`).

pub mod capability;
pub mod decide;
pub mod device;
pub mod direct;
pub mod frame;
pub mod pinhole;
pub mod relay;
pub mod revocation;
pub mod session;
pub mod signer;

#[cfg(test)]
mod fixtures;
