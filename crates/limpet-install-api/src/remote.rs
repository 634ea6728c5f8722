//! The remote agent's one request ([`crate::Request::SignRemoteAccess`]): the device's
//! identity signs, under its `remote-access` purpose, exactly the two messages the remote
//! access protocol needs (docs/remote-access.md), and nothing else, so that the key stays
//! in PID 1 and the remote agent runs without access to it.
//!
//! Rules this module keeps:
//! - A message is one of the two proofs' prefixes followed by exactly 32 bytes: the relay's
//!   registration challenge, or the session's Noise handshake hash. Anything else is
//!   refused by [`check_message`], with the reason.
//! - The prefixes are defined here once; `limpet-remote` uses these constants.
//! - A session record ([`RemoteSession`], the remote agent's `RemoteSession` request and
//!   a check-in's `remote_sessions`) is checked by [`RemoteSession::check`] wherever it is
//!   read: keys and hashes of 64 lower-case hex digits, a service name of 1 to
//!   [`MAX_SERVICE`] printable bytes.

use serde::{Deserialize, Serialize};

/// The relay registration proof's prefix: the identity signs it then the relay's challenge.
pub const REGISTER_PROOF: &[u8] = b"relay-register\0";
/// The session proof's prefix: the identity signs it then the session's handshake hash.
pub const SESSION_PROOF: &[u8] = b"session-device\0";
/// The bytes after a prefix: a 32-byte challenge or handshake hash.
pub const PROOF_BODY: usize = 32;
/// The longest message a `SignRemoteAccess` carries on the wire.
pub const MAX_REMOTE_MESSAGE: usize = 64;

/// Whether `message` is one the remote agent may have signed: a proof prefix and 32 bytes.
pub fn check_message(message: &[u8]) -> Result<(), String> {
    for prefix in [REGISTER_PROOF, SESSION_PROOF] {
        if let Some(body) = message.strip_prefix(prefix) {
            return if body.len() == PROOF_BODY {
                Ok(())
            } else {
                Err(format!(
                    "a remote-access proof is its prefix and {PROOF_BODY} bytes, not {}",
                    body.len()
                ))
            };
        }
    }
    Err("not a remote-access proof (a relay registration or a session's handshake hash)".to_owned())
}

/// Most session records PID 1 keeps and a check-in carries (the newest).
pub const MAX_SESSIONS: usize = 32;
/// The longest service name in a record.
pub const MAX_SERVICE: usize = 64;

/// Which end of a session a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionEvent {
    /// The device granted the session.
    Start,
    /// The session ended.
    End,
}

/// A remote-access session's start or end, as the device records and reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSession {
    /// Start or end.
    pub event: SessionEvent,
    /// The device's clock when PID 1 recorded it, seconds since the epoch (informational).
    pub at: i64,
    /// The operator's public key, 64 hex digits.
    pub operator: String,
    /// The capability's hash (SHA-256 of its encoding and signature), 64 hex digits.
    pub capability: String,
    /// The service reached.
    pub service: String,
}

impl RemoteSession {
    /// Whether the record is well formed (module rules); the error names the field.
    pub fn check(&self) -> Result<(), String> {
        for (field, value) in [
            ("operator", &self.operator),
            ("capability", &self.capability),
        ] {
            if value.len() != 64
                || !value
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(format!("{field}: not 64 lower-case hex digits"));
            }
        }
        if self.service.is_empty()
            || self.service.len() > MAX_SERVICE
            || self.service.chars().any(char::is_control)
        {
            return Err(format!("service: not 1 to {MAX_SERVICE} printable bytes"));
        }
        Ok(())
    }
}

/// The remote agent's request for a pinhole (`OpenPinhole`, tag 16): the session's
/// capability, the operator's signed statement of its address, and the peer the relay
/// observed. PID 1 decides on it alone (limpet-remote's `pinhole`); nothing here is taken
/// on the agent's word: the peer must be the one the capability's operator key signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinholeAsk {
    /// The peer's address and port as the relay observed them.
    pub peer: std::net::SocketAddrV4,
    /// The agent's local port the direct connection leaves from.
    pub local_port: u16,
    /// The session's capability file (its JSON text).
    pub capability: String,
    /// The operator's statement of its address (limpet-remote's `PeerStatement`, its 134
    /// bytes in hex), from the session's hello; PID 1 refuses a pinhole without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// The newest revocation list the agent holds (its JSON text), if any: PID 1 takes it
    /// when the access key signed it and it is newer than its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocations: Option<String>,
}

/// The remote agent's word that a session's direct path is over (`ClosePinhole`, tag 17):
/// PID 1 removes the pinhole to `peer` from `local_port` it opened, if it is still open.
/// Closing only narrows the agent's egress, so it needs no capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinholeClose {
    /// The peer's address and port, as the pinhole was opened to.
    pub peer: std::net::SocketAddrV4,
    /// The agent's local port, as the pinhole was opened from.
    pub local_port: u16,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A well-formed record.
    pub(crate) fn session(event: SessionEvent) -> RemoteSession {
        RemoteSession {
            event,
            at: 1_800_000_000,
            operator: "ab".repeat(32),
            capability: "cd".repeat(32),
            service: "echo".into(),
        }
    }

    #[test]
    fn bad_session_records_are_refused_on_the_wire_naming_the_field() {
        for (edit, says) in [
            (
                (|r: &mut RemoteSession| r.operator = "AB".repeat(32)) as fn(&mut RemoteSession),
                "operator: not 64 lower-case hex digits",
            ),
            (|r| r.capability.truncate(63), "capability: not 64"),
            (|r| r.service = String::new(), "service: not 1 to 64"),
            (|r| r.service = "a\nb".into(), "service: not 1 to 64"),
        ] {
            let mut r = session(SessionEvent::Start);
            edit(&mut r);
            assert!(r.check().unwrap_err().starts_with(says), "{says}");
            let wire = crate::Request::RemoteSession(r).encode();
            let e = crate::Request::decode(&wire).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("remote session record: {says}")),
                "{e}"
            );
        }
        let mut wire = vec![15u8];
        wire.extend_from_slice(br#"{"event":"start","extra":1}"#);
        assert!(crate::Request::decode(&wire)
            .unwrap_err()
            .to_string()
            .starts_with("remote session record: unknown field `extra`"));
    }

    #[test]
    fn a_pinhole_request_round_trips_and_an_unknown_field_is_refused() {
        let r = crate::Request::OpenPinhole(PinholeAsk {
            peer: "198.51.100.6:4000".parse().unwrap(),
            local_port: 40000,
            capability: "{}".into(),
            statement: Some("ab".repeat(134)),
            revocations: None,
        });
        assert_eq!(r.encode()[0], 16);
        assert_eq!(crate::Request::decode(&r.encode()), Ok(r));
        let mut wire = vec![16u8];
        wire.extend_from_slice(
            br#"{"peer":"198.51.100.6:4000","local_port":1,"capability":"","ttl":9}"#,
        );
        let e = crate::Request::decode(&wire).unwrap_err().to_string();
        assert!(e.contains("pinhole request: unknown field `ttl`"), "{e}");
        let close = crate::Request::ClosePinhole(PinholeClose {
            peer: "198.51.100.6:4000".parse().unwrap(),
            local_port: 40000,
        });
        assert_eq!(close.encode()[0], 17);
        assert_eq!(crate::Request::decode(&close.encode()), Ok(close));
        let mut wire = vec![17u8];
        wire.extend_from_slice(br#"{"peer":"198.51.100.6:4000"}"#);
        let e = crate::Request::decode(&wire).unwrap_err().to_string();
        assert!(
            e.contains("pinhole request: missing field `local_port`"),
            "{e}"
        );
    }

    #[test]
    fn only_the_two_proofs_of_32_bytes_pass() {
        for prefix in [REGISTER_PROOF, SESSION_PROOF] {
            assert_eq!(check_message(&[prefix, &[7u8; 32]].concat()), Ok(()));
            let e = check_message(&[prefix, &[7u8; 31]].concat()).unwrap_err();
            assert!(e.contains("not 31"), "{e}");
            let e = check_message(&[prefix, &[7u8; 33]].concat()).unwrap_err();
            assert!(e.contains("not 33"), "{e}");
        }
        for other in [&b""[..], b"relay-register", b"session-operator\0"] {
            let msg = [other, &[7u8; 32]].concat();
            let e = check_message(&msg).unwrap_err();
            assert!(e.starts_with("not a remote-access proof"), "{e}");
        }
        assert!(REGISTER_PROOF.len() + PROOF_BODY <= MAX_REMOTE_MESSAGE);
        // On the wire: the request round-trips; a longer datagram is refused by length.
        let r = crate::Request::SignRemoteAccess {
            message: [SESSION_PROOF, &[7u8; 32]].concat(),
        };
        assert_eq!(crate::Request::decode(&r.encode()), Ok(r));
        let mut long = vec![10u8];
        long.extend_from_slice(&[0u8; MAX_REMOTE_MESSAGE + 1]);
        assert_eq!(
            crate::Request::decode(&long).unwrap_err().to_string(),
            format!(
                "message with tag 10 is {} bytes, expected at most {}",
                MAX_REMOTE_MESSAGE + 2,
                MAX_REMOTE_MESSAGE + 1
            )
        );
        assert!(SESSION_PROOF.len() + PROOF_BODY <= MAX_REMOTE_MESSAGE);
    }
}
