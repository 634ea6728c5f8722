//! The device's decision on a session: pure, over the policy pinned in its signed image.
//!
//! Rules this module keeps:
//! - Access comes only from a capability signed by the image's pinned access key, for this
//!   device (or its cohort), valid now, naming the requested service, which the manifest
//!   declares. Nothing the network says (addresses, the relay) grants anything.
//! - The session's operator proof (a signature over this session's Noise handshake hash) must
//!   come from the capability's operator key: a capability alone, without its operator's
//!   private key, reaches nothing.
//! - The checks run in one fixed order and the first failure is the answer, so every
//!   refusal has one exact, tested reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ed25519_dalek::VerifyingKey;

use std::sync::Arc;

use crate::capability::{ServiceName, SignedCapability, Subject, MAX_LIFETIME_SECS};
use crate::revocation::Revocations;

/// What the device's signed image says about remote access (the manifest's `[remote]`).
#[derive(Debug, Clone)]
pub struct DevicePolicy {
    /// The device's identity public key.
    pub device: VerifyingKey,
    /// The device's cohort, when its image names one.
    pub cohort: Option<String>,
    /// The access key pinned in the image: only it signs capabilities.
    pub access_key: VerifyingKey,
    /// The declared services and the local address each one is.
    pub services: BTreeMap<ServiceName, SocketAddr>,
    /// The revocation list the device holds ([`crate::revocation`]), signed by the same
    /// access key; empty until its relay sends one.
    pub revocations: Arc<Revocations>,
}

/// Why the device refused a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no capability was presented")]
    NoCapability,
    #[error("the capability is not signed by this device's access key")]
    SignedByAnotherKey,
    #[error("the capability is for another device")]
    AnotherDevice,
    #[error("the capability is for cohort {0:?}, not this device's")]
    AnotherCohort(String),
    #[error("the capability is not valid before {not_before} (now {now})")]
    NotYetValid { not_before: u64, now: u64 },
    #[error("the capability expired at {expires} (now {now})")]
    Expired { expires: u64, now: u64 },
    #[error("the capability's lifetime of {secs} s is longer than {MAX_LIFETIME_SECS} s")]
    LifetimeTooLong { secs: u64 },
    #[error("the session is not signed by the capability's operator key")]
    NotTheOperator,
    #[error("service {0:?} is not declared by this device's manifest")]
    ServiceNotDeclared(String),
    #[error("service {0:?} is not granted by the capability")]
    ServiceNotGranted(String),
    #[error("the capability cannot be read: {0}")]
    Unreadable(String),
    #[error("the capability is revoked (by the access key's list issued at {issued})")]
    Revoked { issued: u64 },
}

impl Refusal {
    /// The one-byte code sent to the operator.
    pub fn code(&self) -> u8 {
        match self {
            Refusal::NoCapability => 1,
            Refusal::SignedByAnotherKey => 2,
            Refusal::AnotherDevice => 3,
            Refusal::AnotherCohort(_) => 4,
            Refusal::NotYetValid { .. } => 5,
            Refusal::Expired { .. } => 6,
            Refusal::LifetimeTooLong { .. } => 7,
            Refusal::NotTheOperator => 8,
            Refusal::ServiceNotDeclared(_) => 9,
            Refusal::ServiceNotGranted(_) => 10,
            Refusal::Unreadable(_) => 11,
            Refusal::Revoked { .. } => 12,
        }
    }
}

/// What an operator asks for in a session.
#[derive(Debug)]
pub struct Request<'a> {
    /// The capability, if one was presented.
    pub capability: Option<&'a SignedCapability>,
    /// The key that signed this session's handshake hash (already verified by the session
    /// layer: this is the key whose signature checked).
    pub session_signer: VerifyingKey,
    /// The service asked for.
    pub service: &'a str,
}

/// A session the device accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The operator.
    pub operator: VerifyingKey,
    /// SHA-256 of the capability (what the device records).
    pub capability_hash: [u8; 32],
    /// The service.
    pub service: ServiceName,
    /// Its local address.
    pub target: SocketAddr,
    /// The capability itself (PID 1 verifies it again before it opens a pinhole).
    pub capability: Box<SignedCapability>,
}

/// Decides `request` under `policy` at `now` (Unix seconds, the device's trusted time).
pub fn authorize(policy: &DevicePolicy, request: &Request<'_>, now: u64) -> Result<Grant, Refusal> {
    let signed = request.capability.ok_or(Refusal::NoCapability)?;
    valid_capability(policy, signed, now)?;
    let cap = &signed.capability;
    if request.session_signer != cap.operator {
        return Err(Refusal::NotTheOperator);
    }
    let (service, target) = policy
        .services
        .iter()
        .find(|(name, _)| name.as_str() == request.service)
        .ok_or_else(|| Refusal::ServiceNotDeclared(request.service.to_owned()))?;
    if !cap.services.contains(service) {
        return Err(Refusal::ServiceNotGranted(request.service.to_owned()));
    }
    Ok(Grant {
        operator: cap.operator,
        capability_hash: signed.hash(),
        service: service.clone(),
        target: *target,
        capability: Box::new(signed.clone()),
    })
}

/// Whether `signed` is a capability this device takes at `now`: signed by its access key,
/// not revoked, for it (or its cohort), not too long-lived, valid now. The first checks of
/// [`authorize`], in its order; PID 1 runs them too before it opens a pinhole
/// ([`crate::pinhole`]).
pub fn valid_capability(
    policy: &DevicePolicy,
    signed: &SignedCapability,
    now: u64,
) -> Result<(), Refusal> {
    if !signed.signed_by(&policy.access_key) {
        return Err(Refusal::SignedByAnotherKey);
    }
    if let Some(issued) = policy.revocations.revoked(&signed.hash()) {
        return Err(Refusal::Revoked { issued });
    }
    let cap = &signed.capability;
    match &cap.subject {
        Subject::Device(key) if *key == policy.device => {}
        Subject::Device(_) => return Err(Refusal::AnotherDevice),
        Subject::Cohort(name) if policy.cohort.as_ref() == Some(name) => {}
        Subject::Cohort(name) => return Err(Refusal::AnotherCohort(name.clone())),
    }
    let lifetime = cap.expires.saturating_sub(cap.not_before);
    if lifetime > MAX_LIFETIME_SECS {
        return Err(Refusal::LifetimeTooLong { secs: lifetime });
    }
    if now < cap.not_before {
        return Err(Refusal::NotYetValid {
            not_before: cap.not_before,
            now,
        });
    }
    if now >= cap.expires {
        return Err(Refusal::Expired {
            expires: cap.expires,
            now,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capability;

    use crate::fixtures::{key, svc, ACCESS, DEVICE, NOW, OPERATOR};

    fn policy() -> DevicePolicy {
        DevicePolicy {
            cohort: Some("lab".into()),
            ..crate::fixtures::policy(&[("echo", "127.0.0.1:7"), ("status", "127.0.0.1:8")])
        }
    }

    fn capability(subject: Subject, services: &[&str], nb: u64, exp: u64) -> Capability {
        Capability {
            operator: key(OPERATOR).verifying_key(),
            subject,
            services: services.iter().map(|s| svc(s)).collect(),
            not_before: nb,
            expires: exp,
            nonce: [5; 16],
            direct: false,
        }
    }

    fn good() -> Capability {
        capability(
            Subject::Device(key(DEVICE).verifying_key()),
            &["echo"],
            NOW - 60,
            NOW + 3600,
        )
    }

    fn decide(cap: Option<&SignedCapability>, service: &str, now: u64) -> Result<Grant, Refusal> {
        let request = Request {
            capability: cap,
            session_signer: key(OPERATOR).verifying_key(),
            service,
        };
        authorize(&policy(), &request, now)
    }

    #[test]
    fn a_good_capability_grants_its_declared_service() {
        let signed = good().sign(&key(ACCESS));
        let grant = decide(Some(&signed), "echo", NOW).unwrap();
        assert_eq!(grant.operator, key(OPERATOR).verifying_key());
        assert_eq!(grant.target, "127.0.0.1:7".parse().unwrap());
        assert_eq!(grant.capability_hash, signed.hash());
    }

    #[test]
    fn a_cohort_capability_grants_the_cohorts_devices_only() {
        let signed =
            capability(Subject::Cohort("lab".into()), &["echo"], NOW, NOW + 60).sign(&key(ACCESS));
        assert!(decide(Some(&signed), "echo", NOW).is_ok());
        let other = capability(Subject::Cohort("field".into()), &["echo"], NOW, NOW + 60)
            .sign(&key(ACCESS));
        assert_eq!(
            decide(Some(&other), "echo", NOW),
            Err(Refusal::AnotherCohort("field".into()))
        );
    }

    /// A capability the access key revoked is refused before its expiry, with the list's
    /// time; another capability of the same operator still grants.
    #[test]
    fn refused_when_revoked() {
        use crate::revocation::RevocationList;
        let signed = good().sign(&key(ACCESS));
        let mut other = good();
        other.nonce = [6; 16];
        let other = other.sign(&key(ACCESS));
        let policy = policy();
        let list = RevocationList::sign(NOW, [signed.hash()].into(), &key(ACCESS)).unwrap();
        policy
            .revocations
            .apply(list, &key(ACCESS).verifying_key())
            .unwrap();
        let ask = |cap| Request {
            capability: Some(cap),
            session_signer: key(OPERATOR).verifying_key(),
            service: "echo",
        };
        let refusal = authorize(&policy, &ask(&signed), NOW).unwrap_err();
        assert_eq!(refusal, Refusal::Revoked { issued: NOW });
        assert_eq!(refusal.code(), 12);
        assert!(authorize(&policy, &ask(&other), NOW).is_ok());
    }

    #[test]
    fn refused_without_a_capability() {
        assert_eq!(decide(None, "echo", NOW), Err(Refusal::NoCapability));
    }

    #[test]
    fn refused_when_expired_and_before_its_time() {
        let signed = good().sign(&key(ACCESS));
        assert_eq!(
            decide(Some(&signed), "echo", NOW + 3600),
            Err(Refusal::Expired {
                expires: NOW + 3600,
                now: NOW + 3600
            })
        );
        assert_eq!(
            decide(Some(&signed), "echo", NOW - 61),
            Err(Refusal::NotYetValid {
                not_before: NOW - 60,
                now: NOW - 61
            })
        );
    }

    #[test]
    fn refused_when_signed_by_another_key() {
        let signed = good().sign(&key(9));
        assert_eq!(
            decide(Some(&signed), "echo", NOW),
            Err(Refusal::SignedByAnotherKey)
        );
    }

    #[test]
    fn refused_for_another_device() {
        let signed = capability(
            Subject::Device(key(8).verifying_key()),
            &["echo"],
            NOW,
            NOW + 60,
        )
        .sign(&key(ACCESS));
        assert_eq!(
            decide(Some(&signed), "echo", NOW),
            Err(Refusal::AnotherDevice)
        );
    }

    #[test]
    fn refused_for_a_service_the_manifest_does_not_declare() {
        let signed = capability(
            Subject::Device(key(DEVICE).verifying_key()),
            &["echo", "ssh"],
            NOW,
            NOW + 60,
        )
        .sign(&key(ACCESS));
        assert_eq!(
            decide(Some(&signed), "ssh", NOW),
            Err(Refusal::ServiceNotDeclared("ssh".into()))
        );
    }

    #[test]
    fn refused_for_a_declared_service_the_capability_does_not_grant() {
        let signed = good().sign(&key(ACCESS));
        assert_eq!(
            decide(Some(&signed), "status", NOW),
            Err(Refusal::ServiceNotGranted("status".into()))
        );
    }

    #[test]
    fn refused_when_another_key_signs_the_session() {
        let signed = good().sign(&key(ACCESS));
        let request = Request {
            capability: Some(&signed),
            session_signer: key(7).verifying_key(),
            service: "echo",
        };
        assert_eq!(
            authorize(&policy(), &request, NOW),
            Err(Refusal::NotTheOperator)
        );
    }

    #[test]
    fn refused_when_the_lifetime_is_too_long_even_if_signed() {
        let signed = capability(
            Subject::Device(key(DEVICE).verifying_key()),
            &["echo"],
            NOW - 10,
            NOW + MAX_LIFETIME_SECS,
        )
        .sign(&key(ACCESS));
        assert_eq!(
            decide(Some(&signed), "echo", NOW),
            Err(Refusal::LifetimeTooLong {
                secs: MAX_LIFETIME_SECS + 10
            })
        );
    }
}
