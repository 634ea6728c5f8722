//! Test fixtures shared by this crate's unit tests: fixed keys, a fixed "now", and the
//! device policy most tests decide under.

use std::collections::BTreeMap;
use std::sync::Arc;

use ed25519_dalek::{Signature, Signer, SigningKey};

use crate::capability::ServiceName;
use crate::decide::DevicePolicy;

/// The tests' "now" (Unix seconds).
pub const NOW: u64 = 1_800_000_000;
/// The access key's seed byte ([`key`]).
pub const ACCESS: u8 = 1;
/// The device identity's seed byte.
pub const DEVICE: u8 = 2;
/// The operator key's seed byte.
pub const OPERATOR: u8 = 3;

/// A fixed Ed25519 key: 32 bytes of `b`.
pub fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&[b; 32])
}

/// A service name that parses.
pub fn svc(s: &str) -> ServiceName {
    ServiceName::parse(s).unwrap()
}

/// The device [`DEVICE`] with access key [`ACCESS`], no cohort, no revocation, and
/// `services` (name, local address).
pub fn policy(services: &[(&str, &str)]) -> DevicePolicy {
    DevicePolicy {
        device: key(DEVICE).verifying_key(),
        cohort: None,
        access_key: key(ACCESS).verifying_key(),
        services: services
            .iter()
            .map(|(name, addr)| (svc(name), addr.parse().unwrap()))
            .collect::<BTreeMap<_, _>>(),
        revocations: Arc::default(),
    }
}

/// The device identity's ([`DEVICE`]) signature under its `remote-access` purpose, framed
/// as `limpet_identity::Identity::sign` frames it.
pub fn device_sign(msg: &[u8]) -> Result<Signature, crate::signer::SignError> {
    let framed = [
        b"limpet device identity v1\0".as_slice(),
        b"remote-access\0",
        msg,
    ]
    .concat();
    Ok(key(DEVICE).sign(&framed))
}
