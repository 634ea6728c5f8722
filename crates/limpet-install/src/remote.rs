//! PID 1's side of the remote agent's socket ([`limpet_install_api::REMOTE_SOCKET`],
//! docs/remote-access.md): the device's identity signs the remote-access proofs for the
//! agent, which never holds its private key.
//!
//! Rules this module keeps:
//! - The socket is `SOCK_SEQPACKET`, owned by the remote agent's uid with mode 0600, and
//!   every connection's peer must be that uid (as the update agent's, `crate::socket`).
//! - Three requests are served and nothing else: `DeviceKey` (the identity's public key),
//!   `RemoteSession` (a session's start or end, kept in the [`SessionLog`] for the
//!   check-in, stamped with PID 1's clock) and `SignRemoteAccess`, which signs for `Purpose::RemoteAccess` only a message of the
//!   shape `limpet_install_api::remote::check_message` allows (a relay registration or a
//!   session proof). Every other request is refused by name, so a compromised remote agent
//!   cannot sign a check-in, read the device's state or touch a slot.
//! - The identity is the one PID 1 opened at boot, shared (`Arc`) with the update agent's
//!   server in the same single-threaded loop; it is never written anywhere.
//! - The session log keeps the newest [`MAX_SESSIONS`] records; the update agent's server
//!   answers them in `Status` and signs only a check-in that reports exactly them.
//! - One connection at a time, one request, one answer; a peer that hangs up is dropped.
//!   This module does not depend on the install server: a device without `[update]` links
//!   it alone.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use limpet_install_api::remote::{RemoteSession, MAX_SESSIONS};

use limpet_identity::{Identity, Purpose};
use limpet_install_api::{Request, Response, MAX_MESSAGE};
use rustix::net::{RecvFlags, SendFlags};

/// The remote-access sessions PID 1 recorded, shared by its two servers (module rules).
#[derive(Debug, Clone, Default)]
pub struct SessionLog(Arc<Mutex<VecDeque<RemoteSession>>>);

impl SessionLog {
    /// Keeps `record`, dropping the oldest beyond [`MAX_SESSIONS`].
    pub fn push(&self, record: RemoteSession) {
        let mut log = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        log.push_back(record);
        while log.len() > MAX_SESSIONS {
            log.pop_front();
        }
    }

    /// The records kept, oldest first.
    pub fn records(&self) -> Vec<RemoteSession> {
        let log = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        log.iter().cloned().collect()
    }
}

/// The listening socket and the connection being served.
#[derive(Debug)]
pub struct RemoteServer {
    listener: OwnedFd,
    conn: Option<OwnedFd>,
    agent_uid: u32,
    identity: Option<Arc<Identity>>,
    sessions: SessionLog,
}

impl RemoteServer {
    /// Binds the socket at `path` for the remote agent's `agent_uid`/`agent_gid`,
    /// replacing a stale one; `identity` signs (absent: every signature is refused), and
    /// `sessions` keeps the sessions the agent reports.
    pub fn bind(
        path: &Path,
        agent_uid: u32,
        agent_gid: u32,
        identity: Option<Arc<Identity>>,
        sessions: SessionLog,
    ) -> Result<Self, String> {
        Ok(RemoteServer {
            listener: crate::socket::listen(
                path,
                "remote agent's",
                0o600,
                Some((agent_uid, agent_gid)),
            )?,
            conn: None,
            agent_uid,
            identity,
            sessions,
        })
    }

    /// The descriptor to poll: the connection when one is open, else the listener.
    pub fn pollable(&self) -> &OwnedFd {
        self.conn.as_ref().unwrap_or(&self.listener)
    }

    /// Called when [`RemoteServer::pollable`] is readable: accepts a connection or serves
    /// one request.
    pub fn ready(&mut self) {
        let Some(conn) = &self.conn else {
            self.conn =
                crate::socket::accept(&self.listener, self.agent_uid, "not the remote agent");
            return;
        };
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = match rustix::net::recv(conn, &mut buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) | Err(_) => {
                self.conn = None;
                return;
            }
            Ok((n, _)) => n,
        };
        let answer = match Request::decode(buf.get(..n).unwrap_or_default()) {
            Ok(request) => self.answer(request),
            Err(e) => Response::Error(format!("bad request: {e}")),
        };
        if rustix::net::send(conn, &answer.encode(), SendFlags::DONTWAIT).is_err() {
            self.conn = None;
        }
    }

    /// The answer to one request (module rules).
    fn answer(&self, request: Request) -> Response {
        match request {
            Request::DeviceKey => device_key(self.identity.as_deref()),
            Request::RemoteSession(mut record) => {
                record.at = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .ok()
                    .and_then(|d| i64::try_from(d.as_secs()).ok())
                    .unwrap_or(0);
                self.sessions.push(record);
                Response::Ok
            }
            Request::SignRemoteAccess { message } => {
                match sign_remote_access(self.identity.as_deref(), &message) {
                    Ok(signature) => Response::Signed { signature },
                    Err(e) => Response::Error(e),
                }
            }
            other => Response::Error(format!(
                "the remote agent's socket serves only device-key, remote-session and sign-remote-access, not {}",
                other.name()
            )),
        }
    }
}

/// `DeviceKey`'s answer: the identity's public key, or why there is none.
pub(crate) fn device_key(identity: Option<&Identity>) -> Response {
    match identity {
        Some(id) => Response::Data(id.public_key().as_bytes().to_vec()),
        None => Response::Error("this device has no identity".to_owned()),
    }
}

/// Signs a remote-access proof, only of the shape the protocol needs (module rules).
fn sign_remote_access(identity: Option<&Identity>, message: &[u8]) -> Result<[u8; 64], String> {
    let identity =
        identity.ok_or("this device has no identity: nothing to sign remote-access proofs with")?;
    limpet_install_api::remote::check_message(message)?;
    Ok(identity.sign(Purpose::RemoteAccess, message).to_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use limpet_install_api::remote::{REGISTER_PROOF, SESSION_PROOF};
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};

    /// A software identity on a temporary data directory (also the install server's tests').
    pub(crate) fn test_identity() -> (tempfile::TempDir, Identity) {
        let data = tempfile::tempdir().unwrap();
        let opened =
            limpet_identity::store::open(data.path(), || Ok(zeroize::Zeroizing::new([5; 32])))
                .unwrap();
        match opened {
            limpet_identity::Opened::Loaded(id) | limpet_identity::Opened::Created(id, _) => {
                (data, id)
            }
        }
    }

    struct Rig {
        _dir: tempfile::TempDir,
        server: RemoteServer,
        client: OwnedFd,
    }

    impl Rig {
        /// A server for `agent_uid` holding `identity`, the test process connected.
        fn new(agent_uid: u32, identity: Option<Identity>) -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("run/limpet/remote.sock");
            let gid = rustix::process::getgid().as_raw();
            let mut server = RemoteServer::bind(
                &socket,
                agent_uid,
                gid,
                identity.map(Arc::new),
                SessionLog::default(),
            )
            .unwrap();
            let client =
                rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
            rustix::net::connect(&client, &SocketAddrUnix::new(&socket).unwrap()).unwrap();
            server.ready(); // accept
            Rig {
                _dir: dir,
                server,
                client,
            }
        }

        fn ask(&mut self, request: &Request) -> Response {
            rustix::net::send(&self.client, &request.encode(), SendFlags::empty()).unwrap();
            self.server.ready();
            let mut buf = vec![0u8; MAX_MESSAGE];
            let (n, _) = rustix::net::recv(&self.client, &mut buf, RecvFlags::empty()).unwrap();
            Response::decode(&buf[..n]).unwrap()
        }
    }

    fn me() -> u32 {
        rustix::process::getuid().as_raw()
    }

    /// `SignRemoteAccess`: the two proofs are signed under `remote-access` (and verify
    /// under no other purpose); `DeviceKey` answers the public key.
    #[test]
    fn the_two_proofs_are_signed_and_the_key_answered() {
        let (_data, identity) = test_identity();
        let public = identity.public_key();
        let mut rig = Rig::new(me(), Some(identity));
        assert_eq!(
            rig.ask(&Request::DeviceKey),
            Response::Data(public.as_bytes().to_vec())
        );
        for prefix in [REGISTER_PROOF, SESSION_PROOF] {
            let message = [prefix, &[9u8; 32]].concat();
            let Response::Signed { signature } = rig.ask(&Request::SignRemoteAccess {
                message: message.clone(),
            }) else {
                panic!("not signed");
            };
            let signature = ed25519_dalek::Signature::from_bytes(&signature);
            assert!(limpet_identity::verify(
                &public,
                Purpose::RemoteAccess,
                &message,
                &signature
            ));
            assert!(!limpet_identity::verify(
                &public,
                Purpose::CheckIn,
                &message,
                &signature
            ));
        }
    }

    /// Attack: a compromised remote agent asks for a check-in signature, another message
    /// shape, the device's state, a slot write, a hand-over. Each is refused by name and
    /// nothing is signed; a device without an identity signs nothing.
    #[test]
    fn everything_but_the_two_proofs_is_refused() {
        let (_data, identity) = test_identity();
        let mut rig = Rig::new(me(), Some(identity));
        for (request, says) in [
            (
                Request::SignRemoteAccess {
                    message: br#"{"device":"00"}"#.to_vec(),
                },
                "not a remote-access proof",
            ),
            (
                Request::SignRemoteAccess {
                    message: [b"session-operator\0", &[9u8; 32][..]].concat(),
                },
                "not a remote-access proof",
            ),
            (
                Request::SignRemoteAccess {
                    message: [SESSION_PROOF, &[9u8; 31]].concat(),
                },
                "not 31",
            ),
            (
                Request::SignCheckIn {
                    report: br#"{"device":"00"}"#.to_vec(),
                },
                "serves only device-key, remote-session and sign-remote-access, not sign-check-in",
            ),
            (Request::Status, "not status"),
            (
                Request::Write {
                    offset: 0,
                    data: vec![1],
                },
                "not write",
            ),
            (Request::HandOver { key: [1; 32] }, "not hand-over"),
        ] {
            match rig.ask(&request) {
                Response::Error(e) => assert!(e.contains(says), "{request:?}: {e}"),
                other => panic!("{request:?}: {other:?}"),
            }
        }
        let mut bare = Rig::new(me(), None);
        for request in [
            Request::DeviceKey,
            Request::SignRemoteAccess {
                message: [REGISTER_PROOF, &[9u8; 32]].concat(),
            },
        ] {
            match bare.ask(&request) {
                Response::Error(e) => assert!(e.contains("no identity"), "{e}"),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Attack: another uid (a vendor task that found the socket) connects. The socket
    /// belongs to uid 54321; this test runs as another (root, whom the file's mode does
    /// not stop). It is answered "not the remote agent" and its connection is not kept.
    #[test]
    fn another_uid_is_refused() {
        let (_data, identity) = test_identity();
        let rig = Rig::new(54_321, Some(identity));
        assert!(rig.server.conn.is_none());
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (n, _) = rustix::net::recv(&rig.client, &mut buf, RecvFlags::DONTWAIT).unwrap();
        assert_eq!(
            Response::decode(&buf[..n]),
            Ok(Response::Error("not the remote agent".to_owned()))
        );
    }

    /// `RemoteSession`: each record is kept with PID 1's clock (not the agent's), the
    /// newest [`MAX_SESSIONS`] only.
    #[test]
    fn session_records_are_kept_stamped_and_bounded() {
        let (_data, identity) = test_identity();
        let mut rig = Rig::new(me(), Some(identity));
        let record = |n: usize| RemoteSession {
            event: limpet_install_api::remote::SessionEvent::Start,
            at: -1,
            operator: format!("{n:064x}"),
            capability: "cd".repeat(32),
            service: "echo".into(),
        };
        for n in 0..MAX_SESSIONS + 2 {
            assert_eq!(rig.ask(&Request::RemoteSession(record(n))), Response::Ok);
        }
        let kept = rig.server.sessions.records();
        assert_eq!(kept.len(), MAX_SESSIONS);
        assert_eq!(kept[0].operator, format!("{:064x}", 2));
        assert!(kept.iter().all(|r| r.at > 1_700_000_000), "{kept:?}");
    }
}
