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

#[cfg(test)]
mod tests {
    use super::*;

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
