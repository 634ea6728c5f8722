//! PID 1's decision on a pinhole for the direct path: pure, the capability verified again
//! by PID 1 itself, and the peer taken from the operator's signed word, not the agent's
//! (docs/remote-access.md, "The direct path").
//!
//! Rules this module keeps:
//! - A pinhole is opened only for a capability PID 1 verifies itself with the checks of
//!   [`crate::decide::valid_capability`] (signed by the access key pinned in the slot, not
//!   revoked by the newest list PID 1 holds, for this device or its cohort, within its
//!   lifetime) that also grants `direct`. What the remote agent says about the capability
//!   counts for nothing: a compromised agent opens only the pinholes a vendor-signed,
//!   short-lived capability allows.
//! - The peer is the one the operator named: a [`PeerStatement`] signed by the
//!   capability's operator key over [`STATEMENT_PROOF`], this device's key, the
//!   capability's hash and the peer (the operator's address as the relay observed it).
//!   A pinhole to any other address, or with a statement for another device or
//!   capability, is refused, so a compromised agent cannot choose where a pinhole leads.
//! - One pinhole is one peer address and port, from one local port; the peer is a unicast
//!   address and a port that is not 0. One capability has at most one open pinhole to one
//!   peer: a replayed statement opens nothing while its pinhole is open, and only ever the
//!   operator's own address.
//! - A pinhole lives the capability's remaining life, at most [`MAX_PINHOLE_SECS`]; at most
//!   [`MAX_PINHOLES`] are open at once, the open ones counted by their own expiry.
//! - The checks run in one fixed order and the first failure is the answer.

use std::net::SocketAddrV4;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::capability::SignedCapability;
use crate::decide::{valid_capability, DevicePolicy, Refusal};

/// Pinholes open at once, at most.
pub const MAX_PINHOLES: usize = 4;
/// The longest a pinhole stays open: 1 hour.
pub const MAX_PINHOLE_SECS: u64 = 3600;

/// What the operator key signs, then the device's key, the capability's hash and the peer
/// (its session proof is the same prefix with `session\0`, never the same message).
pub const STATEMENT_PROOF: &[u8] = b"limpet remote-access operator v1\0pinhole\0";
/// A statement's bytes: device key (32), capability hash (32), peer (6), signature (64).
pub const STATEMENT_LEN: usize = 32 + 32 + 6 + 64;

/// The operator's signed word on where the device's pinhole leads: its own address as the
/// relay observed it, for one device and one capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatement {
    /// The device's identity key (as bytes: compared, never used to verify).
    pub device: [u8; 32],
    /// The capability's hash ([`SignedCapability::hash`]).
    pub capability: [u8; 32],
    /// The peer the pinhole is to lead to: the operator's observed address and port.
    pub peer: SocketAddrV4,
    /// The operator key's signature of [`PeerStatement::message`].
    pub signature: Signature,
}

/// Why a statement's bytes are not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("a statement is {STATEMENT_LEN} bytes, not {0}")]
    Length(usize),
    #[error("not hex")]
    Hex,
}

impl PeerStatement {
    /// The operator's statement that `peer` is its address, for `device` and the
    /// capability whose hash is `capability`.
    pub fn sign(
        operator: &SigningKey,
        device: &VerifyingKey,
        capability: [u8; 32],
        peer: SocketAddrV4,
    ) -> PeerStatement {
        let mut statement = PeerStatement {
            device: device.to_bytes(),
            capability,
            peer,
            signature: Signature::from_bytes(&[0; 64]),
        };
        statement.signature = operator.sign(&statement.message());
        statement
    }

    /// What is signed: [`STATEMENT_PROOF`], the device key, the capability hash, the peer's
    /// address and port (as the relay's wire has them: 4 bytes, then 2 big-endian).
    pub fn message(&self) -> Vec<u8> {
        [
            STATEMENT_PROOF,
            &self.device,
            &self.capability,
            &crate::relay::encode_addr(&self.peer),
        ]
        .concat()
    }

    /// Whether `operator` signed it (strict verification).
    pub fn signed_by(&self, operator: &VerifyingKey) -> bool {
        operator
            .verify_strict(&self.message(), &self.signature)
            .is_ok()
    }

    /// Its [`STATEMENT_LEN`] bytes: device, capability, peer (address, port), signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.message().split_off(STATEMENT_PROOF.len());
        out.extend_from_slice(&self.signature.to_bytes());
        out
    }

    /// Reads [`PeerStatement::to_bytes`]'s form.
    pub fn from_bytes(bytes: &[u8]) -> Result<PeerStatement, StatementError> {
        let length = StatementError::Length(bytes.len());
        let b = <&[u8; STATEMENT_LEN]>::try_from(bytes).map_err(|_| length.clone())?;
        let (device, rest) = b.split_first_chunk::<32>().ok_or(length.clone())?;
        let (capability, rest) = rest.split_first_chunk::<32>().ok_or(length.clone())?;
        let (peer, signature) = rest.split_first_chunk::<6>().ok_or(length.clone())?;
        let peer = crate::relay::decode_addr(peer).ok_or(length.clone())?;
        let signature = <[u8; 64]>::try_from(signature).map_err(|_| length)?;
        Ok(PeerStatement {
            device: *device,
            capability: *capability,
            peer,
            signature: Signature::from_bytes(&signature),
        })
    }

    /// Its bytes in hex (the pinhole request's `statement`).
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// Reads [`PeerStatement::to_hex`]'s form.
    pub fn from_hex(text: &str) -> Result<PeerStatement, StatementError> {
        PeerStatement::from_bytes(&hex::decode(text).map_err(|_| StatementError::Hex)?)
    }
}

/// What the remote agent asks for.
#[derive(Debug, Clone, Copy)]
pub struct PinholeRequest<'a> {
    /// The session's capability, as the operator presented it.
    pub capability: &'a SignedCapability,
    /// The operator's statement of its address, from the session's hello, if any.
    pub statement: Option<&'a PeerStatement>,
    /// The peer's address as the relay observed it (the operator's NAT).
    pub peer: SocketAddrV4,
    /// The agent's local port the direct connection leaves from.
    pub local_port: u16,
}

/// A pinhole: TCP to `peer` from `local_port`, until `expires`, for one capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinhole {
    /// The peer's address and port.
    pub peer: SocketAddrV4,
    /// The local source port.
    pub local_port: u16,
    /// When it closes (Unix seconds).
    pub expires: u64,
    /// The hash of the capability it was opened for.
    pub capability: [u8; 32],
}

impl Pinhole {
    /// Seconds it stays open from `now`.
    pub fn lifetime(&self, now: u64) -> u64 {
        self.expires.saturating_sub(now)
    }
}

/// Why PID 1 opened no pinhole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinholeRefusal {
    #[error("the capability cannot be read: {0}")]
    Unreadable(String),
    #[error("{0}")]
    Capability(Refusal),
    #[error("the capability does not grant the direct path")]
    NotDirect,
    #[error("no statement of the operator's address was presented")]
    NoStatement,
    #[error("the operator's statement cannot be read: {0}")]
    StatementUnreadable(String),
    #[error("the operator's statement is not signed by the capability's operator key")]
    StatementNotByOperator,
    #[error("the operator's statement is for another device")]
    StatementAnotherDevice,
    #[error("the operator's statement is for another capability")]
    StatementAnotherCapability,
    #[error("the operator's statement is for peer {stated}, not {asked}")]
    StatementAnotherPeer {
        stated: SocketAddrV4,
        asked: SocketAddrV4,
    },
    #[error("peer {0} is not a unicast address and port")]
    BadPeer(SocketAddrV4),
    #[error("local port 0 is not a port")]
    BadLocalPort,
    #[error("a pinhole for this capability to {0} is already open")]
    AlreadyOpen(SocketAddrV4),
    #[error("{MAX_PINHOLES} pinholes are open, the most there may be")]
    Full,
}

/// Decides whether to open `request`'s pinhole under `policy` (the device's key, cohort,
/// access key and revocations; its services are not looked at) at `now`, `open` being the
/// pinholes opened before (expired ones are not counted).
pub fn decide(
    policy: &DevicePolicy,
    request: &PinholeRequest<'_>,
    open: &[Pinhole],
    now: u64,
) -> Result<Pinhole, PinholeRefusal> {
    valid_capability(policy, request.capability, now).map_err(PinholeRefusal::Capability)?;
    let cap = &request.capability.capability;
    if !cap.direct {
        return Err(PinholeRefusal::NotDirect);
    }
    let hash = request.capability.hash();
    check_statement(policy, request, &hash)?;
    let ip = request.peer.ip();
    if ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_broadcast()
        || request.peer.port() == 0
    {
        return Err(PinholeRefusal::BadPeer(request.peer));
    }
    if request.local_port == 0 {
        return Err(PinholeRefusal::BadLocalPort);
    }
    if open
        .iter()
        .any(|p| p.expires > now && p.capability == hash && p.peer == request.peer)
    {
        return Err(PinholeRefusal::AlreadyOpen(request.peer));
    }
    if open.iter().filter(|p| p.expires > now).count() >= MAX_PINHOLES {
        return Err(PinholeRefusal::Full);
    }
    Ok(Pinhole {
        peer: request.peer,
        local_port: request.local_port,
        expires: cap.expires.min(now.saturating_add(MAX_PINHOLE_SECS)),
        capability: hash,
    })
}

/// The operator's statement: present, signed by the capability's operator key, for this
/// device, this capability (`hash`) and exactly the peer asked for.
fn check_statement(
    policy: &DevicePolicy,
    request: &PinholeRequest<'_>,
    hash: &[u8; 32],
) -> Result<(), PinholeRefusal> {
    let statement = request.statement.ok_or(PinholeRefusal::NoStatement)?;
    if !statement.signed_by(&request.capability.capability.operator) {
        return Err(PinholeRefusal::StatementNotByOperator);
    }
    if statement.device != policy.device.to_bytes() {
        return Err(PinholeRefusal::StatementAnotherDevice);
    }
    if statement.capability != *hash {
        return Err(PinholeRefusal::StatementAnotherCapability);
    }
    if statement.peer != request.peer {
        return Err(PinholeRefusal::StatementAnotherPeer {
            stated: statement.peer,
            asked: request.peer,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{Capability, ServiceName, Subject};
    use crate::fixtures::{key, DEVICE, NOW, OPERATOR};

    fn policy() -> DevicePolicy {
        crate::fixtures::policy(&[])
    }

    fn cap(expires: u64, direct: bool) -> Capability {
        let c = Capability::new(
            key(3).verifying_key(),
            Subject::Device(key(2).verifying_key()),
            vec![ServiceName::parse("echo").unwrap()],
            NOW - 60,
            expires,
            [4; 16],
        )
        .unwrap();
        if direct {
            c.with_direct()
        } else {
            c
        }
    }

    /// The operator's statement that `peer` is its address, for `signed` on this device.
    fn stated(signed: &SignedCapability, peer: &str) -> PeerStatement {
        PeerStatement::sign(
            &key(OPERATOR),
            &key(DEVICE).verifying_key(),
            signed.hash(),
            peer.parse().unwrap(),
        )
    }

    fn ask_with(
        signed: &SignedCapability,
        statement: Option<&PeerStatement>,
        peer: &str,
        open: &[Pinhole],
    ) -> Result<Pinhole, PinholeRefusal> {
        let request = PinholeRequest {
            capability: signed,
            statement,
            peer: peer.parse().unwrap(),
            local_port: 40000,
        };
        decide(&policy(), &request, open, NOW)
    }

    /// Asks with the operator's own statement for `peer`.
    fn ask(
        signed: &SignedCapability,
        peer: &str,
        open: &[Pinhole],
    ) -> Result<Pinhole, PinholeRefusal> {
        ask_with(signed, Some(&stated(signed, peer)), peer, open)
    }

    #[test]
    fn a_direct_capability_opens_one_pinhole_for_its_remaining_life_at_most_an_hour() {
        let short = cap(NOW + 30, true).sign(&key(1));
        let p = ask(&short, "198.51.100.6:4000", &[]).unwrap();
        assert_eq!(p.peer, "198.51.100.6:4000".parse().unwrap());
        assert_eq!((p.local_port, p.lifetime(NOW)), (40000, 30));
        let long = cap(NOW + 7200, true).sign(&key(1));
        assert_eq!(
            ask(&long, "198.51.100.6:4000", &[]).unwrap().lifetime(NOW),
            MAX_PINHOLE_SECS
        );
    }

    /// Attacks: another signer, an expired capability, one without `direct`, a fifth
    /// pinhole, a peer that is not one; each refused exactly.
    #[test]
    fn refusals_are_exact() {
        let forged = cap(NOW + 30, true).sign(&key(9));
        assert_eq!(
            ask(&forged, "198.51.100.6:4000", &[]),
            Err(PinholeRefusal::Capability(Refusal::SignedByAnotherKey))
        );
        let expired = cap(NOW, true).sign(&key(1));
        assert_eq!(
            ask(&expired, "198.51.100.6:4000", &[]),
            Err(PinholeRefusal::Capability(Refusal::Expired {
                expires: NOW,
                now: NOW
            }))
        );
        let relay_only = cap(NOW + 30, false).sign(&key(1));
        assert_eq!(
            ask(&relay_only, "198.51.100.6:4000", &[]),
            Err(PinholeRefusal::NotDirect)
        );
        let good = cap(NOW + 30, true).sign(&key(1));
        for peer in ["0.0.0.0:4000", "127.0.0.1:4000", "198.51.100.6:0"] {
            assert!(matches!(
                ask(&good, peer, &[]),
                Err(PinholeRefusal::BadPeer(_))
            ));
        }
        let one = ask(&good, "198.51.100.6:4000", &[]).unwrap();
        let four = [one; MAX_PINHOLES];
        assert_eq!(
            ask(&good, "198.51.100.7:4000", &four),
            Err(PinholeRefusal::Full)
        );
        assert_eq!(
            PinholeRefusal::Full.to_string(),
            "4 pinholes are open, the most there may be"
        );
        // Expired ones do not count.
        let old = [Pinhole {
            expires: NOW,
            ..one
        }; MAX_PINHOLES];
        assert!(ask(&good, "198.51.100.7:4000", &old).is_ok());
    }

    /// Attacks by a compromised agent that has seen a valid `direct` capability (and
    /// perhaps its operator's statement): no statement, a forged one (its peer edited after
    /// signing), one by another operator key, one for another peer than asked, for another
    /// capability, for another device; each refused exactly. A replayed statement opens
    /// nothing while its pinhole is open, and never another address.
    #[test]
    fn the_peer_is_the_one_the_operator_signed() {
        let good = cap(NOW + 600, true).sign(&key(1));
        let peer = "198.51.100.6:4000";
        let other = "203.0.113.9:443";
        assert_eq!(
            ask_with(&good, None, peer, &[]),
            Err(PinholeRefusal::NoStatement)
        );
        let mut forged = stated(&good, peer);
        forged.peer = other.parse().unwrap();
        assert_eq!(
            ask_with(&good, Some(&forged), other, &[]),
            Err(PinholeRefusal::StatementNotByOperator)
        );
        let by_another = PeerStatement::sign(
            &key(9),
            &key(DEVICE).verifying_key(),
            good.hash(),
            other.parse().unwrap(),
        );
        assert_eq!(
            ask_with(&good, Some(&by_another), other, &[]),
            Err(PinholeRefusal::StatementNotByOperator)
        );
        assert_eq!(
            ask_with(&good, Some(&stated(&good, peer)), other, &[]),
            Err(PinholeRefusal::StatementAnotherPeer {
                stated: peer.parse().unwrap(),
                asked: other.parse().unwrap(),
            })
        );
        assert_eq!(
            PinholeRefusal::StatementAnotherPeer {
                stated: peer.parse().unwrap(),
                asked: other.parse().unwrap(),
            }
            .to_string(),
            "the operator's statement is for peer 198.51.100.6:4000, not 203.0.113.9:443"
        );
        // The operator's statement for its other capability (another nonce).
        let mut second = cap(NOW + 600, true);
        second.nonce = [5; 16];
        let second = second.sign(&key(1));
        assert_eq!(
            ask_with(&good, Some(&stated(&second, peer)), peer, &[]),
            Err(PinholeRefusal::StatementAnotherCapability)
        );
        let for_another_device = PeerStatement::sign(
            &key(OPERATOR),
            &key(8).verifying_key(),
            good.hash(),
            peer.parse().unwrap(),
        );
        assert_eq!(
            ask_with(&good, Some(&for_another_device), peer, &[]),
            Err(PinholeRefusal::StatementAnotherDevice)
        );
        // The operator's own statement opens its pinhole, once at a time.
        let statement = stated(&good, peer);
        let one = ask_with(&good, Some(&statement), peer, &[]).unwrap();
        assert_eq!(one.capability, good.hash());
        assert_eq!(
            ask_with(&good, Some(&statement), peer, &[one]),
            Err(PinholeRefusal::AlreadyOpen(peer.parse().unwrap()))
        );
        let closed = Pinhole {
            expires: NOW,
            ..one
        };
        assert!(ask_with(&good, Some(&statement), peer, &[closed]).is_ok());
        // Another capability of the operator's to the same address is a pinhole of its own.
        assert!(ask(&second, peer, &[one]).is_ok());
    }

    #[test]
    fn a_statement_round_trips_and_bad_bytes_are_named() {
        let good = cap(NOW + 600, true).sign(&key(1));
        let statement = stated(&good, "198.51.100.6:4000");
        let bytes = statement.to_bytes();
        assert_eq!(bytes.len(), STATEMENT_LEN);
        assert_eq!(PeerStatement::from_bytes(&bytes), Ok(statement));
        assert_eq!(PeerStatement::from_hex(&statement.to_hex()), Ok(statement));
        assert!(statement.signed_by(&key(OPERATOR).verifying_key()));
        assert_eq!(
            PeerStatement::from_bytes(&bytes[1..]),
            Err(StatementError::Length(STATEMENT_LEN - 1))
        );
        assert_eq!(
            StatementError::Length(3).to_string(),
            "a statement is 134 bytes, not 3"
        );
        assert_eq!(PeerStatement::from_hex("zz"), Err(StatementError::Hex));
        // Not the session proof's message: another purpose of the same key.
        assert!(statement
            .message()
            .starts_with(b"limpet remote-access operator v1\0pinhole\0"));
        assert_ne!(STATEMENT_PROOF, crate::session::OPERATOR_PROOF);
    }
}
