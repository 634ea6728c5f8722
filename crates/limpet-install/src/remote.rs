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
//! - `OpenPinhole` (the direct path, `[remote] direct = true`): PID 1 verifies the
//!   session's capability itself ([`PinholeGate`], limpet-remote's pure `pinhole::decide`:
//!   the slot's access key, this device, not expired, not revoked, granting `direct`, the
//!   peer the one the capability's operator key signed a statement for, one pinhole per
//!   capability and peer, at most 4 open, at most 1 hour) before the kernel's set gets the
//!   element; the agent's word counts for nothing. `ClosePinhole` removes an open one from
//!   the set and the count (closing only narrows the agent's egress). Without a gate (no
//!   `direct`) both are refused by name.
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
use limpet_install_api::remote::{PinholeAsk, PinholeClose};
use limpet_install_api::{Request, Response, MAX_MESSAGE};
use limpet_remote::capability::SignedCapability;
use limpet_remote::decide::DevicePolicy;
pub use limpet_remote::pinhole::Pinhole;
use limpet_remote::pinhole::{self, PeerStatement, PinholeRefusal, PinholeRequest};
use limpet_remote::revocation::{RevocationList, Revocations};
use rustix::net::{RecvFlags, SendFlags};

/// The kernel's set of the agent's pinholes (PID 1: limpet-net's `Nft::add_pinhole` and
/// `Nft::remove_pinhole` on the agent's `pin_<task>`); each error is the kernel's refusal.
pub trait PinholeSet {
    /// Adds a decided pinhole for `secs` seconds.
    fn add(&mut self, hole: &Pinhole, secs: u64) -> Result<(), String>;
    /// Removes an open pinhole before its timeout.
    fn remove(&mut self, hole: &Pinhole) -> Result<(), String>;
}

/// PID 1's gate on the direct path: what it verifies a capability against (the device's
/// key, the slot's access key, the newest revocation list it was given), the pinholes it
/// opened, and how it adds one to the kernel's set.
pub struct PinholeGate {
    policy: DevicePolicy,
    open: Vec<Pinhole>,
    set: Box<dyn PinholeSet>,
}

impl std::fmt::Debug for PinholeGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinholeGate")
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl PinholeGate {
    /// A gate for the device `device` whose slot pins `access_key` (64 hex digits, the
    /// policy's `remote_direct`) and names `cohort`; `set` is the kernel's set the
    /// pinholes go into. A key that is not one is an error naming it.
    pub fn new(
        device: ed25519_dalek::VerifyingKey,
        access_key: &str,
        cohort: Option<String>,
        set: Box<dyn PinholeSet>,
    ) -> Result<PinholeGate, String> {
        let access_key =
            limpet_remote::capability::public_key("remote_direct.access_key", access_key)
                .map_err(|e| e.to_string())?;
        Ok(PinholeGate {
            policy: DevicePolicy {
                device,
                cohort,
                access_key,
                services: Default::default(),
                revocations: Arc::new(Revocations::default()),
            },
            open: Vec::new(),
            set,
        })
    }

    /// The answer to `OpenPinhole` at `now` (Unix seconds): the seconds the pinhole stays
    /// open, or the refusal by name.
    pub fn answer(&mut self, ask: &PinholeAsk, now: u64) -> Response {
        if let Some(list) = &ask.revocations {
            // A list the access key did not sign, or not newer, changes nothing.
            if let Ok(list) = RevocationList::from_json(list.as_bytes()) {
                let _ = self.policy.revocations.apply(list, &self.policy.access_key);
            }
        }
        self.open.retain(|p| p.expires > now);
        let decided = SignedCapability::from_json(ask.capability.as_bytes())
            .map_err(|e| PinholeRefusal::Unreadable(e.to_string()))
            .and_then(|capability| {
                let statement = ask
                    .statement
                    .as_deref()
                    .map(PeerStatement::from_hex)
                    .transpose()
                    .map_err(|e| PinholeRefusal::StatementUnreadable(e.to_string()))?;
                let request = PinholeRequest {
                    capability: &capability,
                    statement: statement.as_ref(),
                    peer: ask.peer,
                    local_port: ask.local_port,
                };
                pinhole::decide(&self.policy, &request, &self.open, now)
            });
        match decided {
            Err(refusal) => Response::Error(format!("pinhole refused: {refusal}")),
            Ok(hole) => {
                let secs = hole.lifetime(now);
                match self.set.add(&hole, secs) {
                    Ok(()) => {
                        self.open.push(hole);
                        Response::Data(secs.to_be_bytes().to_vec())
                    }
                    Err(e) => Response::Error(format!("pinhole not opened: {e}")),
                }
            }
        }
    }

    /// The answer to `ClosePinhole` at `now`: the open pinhole to that peer from that port
    /// removed from the kernel's set and from the count, or why not.
    pub fn close(&mut self, close: &PinholeClose, now: u64) -> Response {
        self.open.retain(|p| p.expires > now);
        let Some(at) = self
            .open
            .iter()
            .position(|p| p.peer == close.peer && p.local_port == close.local_port)
        else {
            return Response::Error(format!(
                "no pinhole is open to {} from port {}",
                close.peer, close.local_port
            ));
        };
        let hole = self.open.remove(at);
        match self.set.remove(&hole) {
            Ok(()) => Response::Ok,
            Err(e) => Response::Error(format!("pinhole not closed: {e}")),
        }
    }
}

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
    pinholes: Option<PinholeGate>,
}

impl RemoteServer {
    /// The server with the direct path's gate (`[remote] direct = true`): `OpenPinhole`
    /// is then decided by it instead of refused.
    pub fn with_pinholes(mut self, gate: PinholeGate) -> Self {
        self.pinholes = Some(gate);
        self
    }

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
            pinholes: None,
        })
    }

    /// The descriptor to poll: the connection when one is open, else the listener.
    pub fn pollable(&self) -> &OwnedFd {
        self.conn.as_ref().unwrap_or(&self.listener)
    }

    /// Called when [`RemoteServer::pollable`] is readable: accepts a connection or serves
    /// one request.
    pub fn ready(&mut self) {
        let Some(conn) = self.conn.take() else {
            self.conn =
                crate::socket::accept(&self.listener, self.agent_uid, "not the remote agent");
            return;
        };
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = match rustix::net::recv(&conn, &mut buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) | Err(_) => return,
            Ok((n, _)) => n,
        };
        let answer = match Request::decode(buf.get(..n).unwrap_or_default()) {
            Ok(request) => self.answer(request),
            Err(e) => Response::Error(format!("bad request: {e}")),
        };
        if rustix::net::send(&conn, &answer.encode(), SendFlags::DONTWAIT).is_ok() {
            self.conn = Some(conn);
        }
    }

    /// The answer to one request (module rules).
    fn answer(&mut self, request: Request) -> Response {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        match request {
            Request::DeviceKey => device_key(self.identity.as_deref()),
            Request::OpenPinhole(ask) => match &mut self.pinholes {
                Some(gate) => gate.answer(&ask, now),
                None => no_direct_path(),
            },
            Request::ClosePinhole(close) => match &mut self.pinholes {
                Some(gate) => gate.close(&close, now),
                None => no_direct_path(),
            },
            Request::RemoteSession(mut record) => {
                record.at = i64::try_from(now).unwrap_or(0);
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
                "the remote agent's socket serves only device-key, remote-session, sign-remote-access, open-pinhole and close-pinhole, not {}",
                other.name()
            )),
        }
    }
}

/// The pinhole requests' answer on a device without `[remote] direct`.
fn no_direct_path() -> Response {
    Response::Error("this device takes no direct path ([remote] direct is not set)".to_owned())
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
                "serves only device-key, remote-session, sign-remote-access, open-pinhole and close-pinhole, not sign-check-in",
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

    /// `OpenPinhole`: the gate adds the element for a capability signed by the access key,
    /// for this device, granting `direct`, to the peer its operator signed, for its
    /// remaining life; a forged capability, one without `direct`, one without the
    /// operator's statement, with an unreadable one or one for another peer, a second
    /// pinhole of one capability to one peer, and a fifth are refused by name and nothing
    /// is added. A server without a gate refuses the request.
    #[test]
    fn pinholes_are_opened_only_for_verified_direct_capabilities() {
        use limpet_remote::capability::{Capability, ServiceName, Subject};
        let (_data, identity) = test_identity();
        let device = identity.public_key();
        let access = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let forger = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let operator = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let cap = |direct: bool, key: &ed25519_dalek::SigningKey| {
            let c = Capability::new(
                operator.verifying_key(),
                Subject::Device(device),
                vec![ServiceName::parse("echo").unwrap()],
                now - 10,
                now + 600,
                [1; 16],
            )
            .unwrap();
            let c = if direct { c.with_direct() } else { c };
            c.sign(key)
        };
        // The operator's statement that `peer` is its address, for `capability`.
        let stated = |capability: &SignedCapability, peer: &str| {
            PeerStatement::sign(&operator, &device, capability.hash(), peer.parse().unwrap())
                .to_hex()
        };
        let ask_with = |capability: String, statement: Option<String>, peer: &str| {
            Request::OpenPinhole(PinholeAsk {
                peer: peer.parse().unwrap(),
                local_port: 40_000,
                capability,
                statement,
                revocations: None,
            })
        };
        let ask = |capability: SignedCapability, peer: &str| {
            ask_with(capability.to_json(), Some(stated(&capability, peer)), peer)
        };
        let mut bare = Rig::new(me(), Some(test_identity().1));
        match bare.ask(&ask(cap(true, &access), "198.51.100.6:4000")) {
            Response::Error(e) => assert!(e.contains("[remote] direct is not set"), "{e}"),
            other => panic!("{other:?}"),
        }
        let kernel = Recorded::default();
        let added = Arc::clone(&kernel.added);
        let removed = Arc::clone(&kernel.removed);
        let gate = PinholeGate::new(
            device,
            &access
                .verifying_key()
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            None,
            Box::new(kernel),
        )
        .unwrap();
        let mut rig = Rig::new(me(), Some(identity));
        rig.server.pinholes = Some(gate);
        let secs = rig.ask(&ask(cap(true, &access), "198.51.100.6:4000"));
        let Response::Data(bytes) = secs else {
            panic!("{secs:?}")
        };
        let secs = u64::from_be_bytes(bytes.try_into().unwrap());
        assert!((599..=600).contains(&secs), "{secs}");
        let good = cap(true, &access);
        let peer = "198.51.100.7:4000";
        for (request, says) in [
            (
                ask(cap(true, &forger), peer),
                "pinhole refused: the capability is not signed by this device's access key",
            ),
            (
                ask(cap(false, &access), peer),
                "pinhole refused: the capability does not grant the direct path",
            ),
            (
                ask_with("{}".to_owned(), None, peer),
                "pinhole refused: the capability cannot be read",
            ),
            (
                ask_with(good.to_json(), None, peer),
                "pinhole refused: no statement of the operator's address was presented",
            ),
            (
                ask_with(good.to_json(), Some("zz".into()), peer),
                "pinhole refused: the operator's statement cannot be read: not hex",
            ),
            (
                ask_with(
                    good.to_json(),
                    Some(stated(&good, "198.51.100.6:4000")),
                    peer,
                ),
                "pinhole refused: the operator's statement is for peer 198.51.100.6:4000, not 198.51.100.7:4000",
            ),
            (
                ask(good.clone(), "198.51.100.6:4000"),
                "pinhole refused: a pinhole for this capability to 198.51.100.6:4000 is already open",
            ),
        ] {
            match rig.ask(&request) {
                Response::Error(e) => assert!(e.starts_with(says), "{e}"),
                other => panic!("{other:?}"),
            }
        }
        for i in 0..3 {
            let peer = format!("198.51.100.{}:4000", 10 + i);
            assert!(matches!(
                rig.ask(&ask(cap(true, &access), &peer)),
                Response::Data(_)
            ));
        }
        assert_eq!(
            rig.ask(&ask(cap(true, &access), "198.51.100.20:4000")),
            Response::Error("pinhole refused: 4 pinholes are open, the most there may be".into())
        );
        assert_eq!(added.lock().unwrap().len(), 4);
        assert_eq!(added.lock().unwrap()[0].0, "198.51.100.6:4000");
        // Closing one frees its place: the kernel's element removed, a fifth then opened.
        let close = |peer: &str| {
            Request::ClosePinhole(PinholeClose {
                peer: peer.parse().unwrap(),
                local_port: 40_000,
            })
        };
        assert_eq!(rig.ask(&close("198.51.100.10:4000")), Response::Ok);
        assert_eq!(
            removed.lock().unwrap().as_slice(),
            [("198.51.100.10:4000".to_owned(), 40_000)]
        );
        assert_eq!(
            rig.ask(&close("198.51.100.10:4000")),
            Response::Error("no pinhole is open to 198.51.100.10:4000 from port 40000".into())
        );
        assert!(matches!(
            rig.ask(&ask(cap(true, &access), "198.51.100.20:4000")),
            Response::Data(_)
        ));
        assert_eq!(added.lock().unwrap().len(), 5);
        match bare.ask(&close("198.51.100.6:4000")) {
            Response::Error(e) => assert!(e.contains("[remote] direct is not set"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    /// A kernel set that records what the gate adds and removes.
    #[derive(Default)]
    struct Recorded {
        added: Arc<Mutex<Vec<(String, u16, u64)>>>,
        removed: Arc<Mutex<Vec<(String, u16)>>>,
    }

    impl PinholeSet for Recorded {
        fn add(&mut self, hole: &Pinhole, secs: u64) -> Result<(), String> {
            let entry = (hole.peer.to_string(), hole.local_port, secs);
            self.added.lock().unwrap().push(entry);
            Ok(())
        }
        fn remove(&mut self, hole: &Pinhole) -> Result<(), String> {
            let entry = (hole.peer.to_string(), hole.local_port);
            self.removed.lock().unwrap().push(entry);
            Ok(())
        }
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
