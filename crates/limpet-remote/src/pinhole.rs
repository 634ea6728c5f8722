//! PID 1's decision on a pinhole for the direct path: pure, the capability verified again
//! by PID 1 itself (docs/remote-access.md, "The direct path").
//!
//! Rules this module keeps:
//! - A pinhole is opened only for a capability PID 1 verifies itself with the checks of
//!   [`crate::decide::valid_capability`] (signed by the access key pinned in the slot, not
//!   revoked by the newest list PID 1 holds, for this device or its cohort, within its
//!   lifetime) that also grants `direct`. What the remote agent says about the capability
//!   counts for nothing: a compromised agent opens only the pinholes a vendor-signed,
//!   short-lived capability allows.
//! - One pinhole is one peer address and port, from one local port; the peer is a unicast
//!   address and a port that is not 0.
//! - A pinhole lives the capability's remaining life, at most [`MAX_PINHOLE_SECS`]; at most
//!   [`MAX_PINHOLES`] are open at once, the open ones counted by their own expiry.
//! - The checks run in one fixed order and the first failure is the answer.

use std::net::SocketAddrV4;

use crate::capability::SignedCapability;
use crate::decide::{valid_capability, DevicePolicy, Refusal};

/// Pinholes open at once, at most.
pub const MAX_PINHOLES: usize = 4;
/// The longest a pinhole stays open: 1 hour.
pub const MAX_PINHOLE_SECS: u64 = 3600;

/// What the remote agent asks for.
#[derive(Debug, Clone, Copy)]
pub struct PinholeRequest<'a> {
    /// The session's capability, as the operator presented it.
    pub capability: &'a SignedCapability,
    /// The peer's address as the relay observed it (the operator's NAT).
    pub peer: SocketAddrV4,
    /// The agent's local port the direct connection leaves from.
    pub local_port: u16,
}

/// A pinhole: TCP to `peer` from `local_port`, until `expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinhole {
    /// The peer's address and port.
    pub peer: SocketAddrV4,
    /// The local source port.
    pub local_port: u16,
    /// When it closes (Unix seconds).
    pub expires: u64,
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
    #[error("peer {0} is not a unicast address and port")]
    BadPeer(SocketAddrV4),
    #[error("local port 0 is not a port")]
    BadLocalPort,
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
    if open.iter().filter(|p| p.expires > now).count() >= MAX_PINHOLES {
        return Err(PinholeRefusal::Full);
    }
    Ok(Pinhole {
        peer: request.peer,
        local_port: request.local_port,
        expires: cap.expires.min(now.saturating_add(MAX_PINHOLE_SECS)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{Capability, ServiceName, Subject};
    use crate::fixtures::{key, NOW};

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

    fn ask(
        signed: &SignedCapability,
        peer: &str,
        open: &[Pinhole],
    ) -> Result<Pinhole, PinholeRefusal> {
        let request = PinholeRequest {
            capability: signed,
            peer: peer.parse().unwrap(),
            local_port: 40000,
        };
        decide(&policy(), &request, open, NOW)
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
}
