//! PID 1's side of the update agent's socket ([`limpet_install_api::INSTALL_SOCKET`]): the only way
//! the sandboxed agent can touch a slot. Each request is checked and carried out by
//! `limpet_install` against the partitions; nothing else is reachable through it.
//!
//! - the socket is `SOCK_SEQPACKET`, owned by the agent's uid with mode 0600, and every
//!   connection's peer credentials must be that uid;
//! - one connection at a time; one request, one answer;
//! - `Finish` verifies the whole written slot in PID 1 (a few seconds for a large slot,
//!   during which the poll loop waits; tasks' pipes buffer meanwhile).
//! - The device's time record is PID 1's runtime's, which ticks it on its own timer; the
//!   runtime lends it to each request ([`InstallServer::ready`]'s `time`). With it,
//!   `Verified` takes the signed time and support end the agent verified into it
//!   (limpet-lifecycle's rules refuse a time below the floor and a shorter support window),
//!   and `Status` answers the floor and the end of support. Every request counts the uptime
//!   since the last count (`CLOCK_BOOTTIME`) and saves the record when due. Without it,
//!   `Verified` is refused and `Status` answers no floor.
//! - The device's identity (limpet-identity) stays here: `SignCheckIn` signs, for
//!   `Purpose::CheckIn` only, a report that parses as a check-in report
//!   (`limpet_fleet_api::report::Report`) naming this device's own key and reporting
//!   exactly the remote-access sessions recorded ([`crate::remote::SessionLog`]), and
//!   nothing else;
//!   `DeviceKey` answers its public key; `SignRemoteAccess` is refused here (the remote
//!   agent's own socket, [`crate::remote`], signs its proofs).
//! - `HandOver` writes one thing: the owner request block the boot loader reads
//!   (`limpet_state::owner`, at `REQUEST_OFFSET` of the `state` partition), a hand-over to
//!   an Ed25519 key, synced. PID 1 checks no handover statement (it holds no TUF root; the
//!   agent checked it): the loader acts on the block only when a person at the device
//!   types the key's fingerprint, so this request grants nothing by itself.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Session;
use ed25519_dalek::VerifyingKey;
use limpet_install_api::{DeviceStatus, Request, Response, MAX_DATA, MAX_MESSAGE};
use limpet_lifecycle::{Keeper, Uptime, WallTime};
use limpet_state::{StateStore, TrialPhase};
use rustix::net::{RecvFlags, SendFlags};

/// What the runtime must do after a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A slot was verified and marked as a trial.
    Staged {
        /// The version staged.
        version: String,
    },
    /// The agent asked for the reboot into a staged trial.
    Reboot,
    /// The agent verified a Roughtime server list in the repository's signed metadata: the
    /// runtime gives it to its Roughtime client, which takes it only when every address is
    /// one the slot lists.
    Roughtime {
        /// The servers, in the order to ask them.
        servers: Vec<limpet_install_api::RoughtimeServer>,
    },
    /// An install step failed; the text says why (for the status file).
    Failed {
        /// The version being installed, if known.
        version: Option<String>,
        /// The error and its causes, one line.
        error: String,
    },
}

/// The listening socket, the open connection, and the install in progress.
#[derive(Debug)]
pub struct InstallServer {
    listener: OwnedFd,
    conn: Option<OwnedFd>,
    agent_uid: u32,
    state: PathBuf,
    running: PathBuf,
    running_length: u64,
    running_version: String,
    inactive: PathBuf,
    key: VerifyingKey,
    trial_boots: u8,
    identity: Option<Arc<limpet_identity::Identity>>,
    sessions: crate::remote::SessionLog,
    owner_mode: Option<String>,
    session: Option<(Session, File)>,
}

/// Where the server finds the device's parts.
#[derive(Debug)]
pub struct Devices {
    /// The `state` partition.
    pub state: PathBuf,
    /// The running slot's partition (read only, for the delta seed).
    pub running: PathBuf,
    /// The running slot's version, as its verified header gives it.
    pub running_version: String,
    /// The other slot's partition: the one updates are written to.
    pub inactive: PathBuf,
    /// The image key the slot headers must be signed with.
    pub key: VerifyingKey,
    /// Boots a staged trial gets.
    pub trial_boots: u8,
    /// The device's identity, when it has one: signs fleet check-ins (shared with the
    /// remote agent's server, [`crate::remote::RemoteServer`], in the same process).
    pub identity: Option<Arc<limpet_identity::Identity>>,
    /// The remote-access sessions the remote agent's server records: `Status` answers
    /// them, and a check-in is signed only when it reports exactly them.
    pub sessions: crate::remote::SessionLog,
    /// The owner mode the boot loader reported, as `DeviceStatus::owner_mode` says it.
    pub owner_mode: Option<String>,
}

impl InstallServer {
    /// Binds the socket at `path` for `agent_uid`/`agent_gid`, replacing a stale one.
    pub fn bind(
        path: &Path,
        agent_uid: u32,
        agent_gid: u32,
        devices: Devices,
    ) -> Result<Self, String> {
        let listener = crate::socket::listen(path, "update", 0o600, Some((agent_uid, agent_gid)))?;

        let running = devices.running;
        let running_length = File::open(&running)
            .map_err(|e| e.to_string())
            .and_then(|mut f| limpet_image::slot::read_header_at(&mut f).map_err(|e| e.to_string()))
            .map(|(layout, _)| layout.total_size)
            .map_err(|e| format!("running slot {}: {e}", running.display()))?;
        Ok(InstallServer {
            listener,
            conn: None,
            agent_uid,
            state: devices.state,
            running,
            running_length,
            running_version: devices.running_version,
            inactive: devices.inactive,
            key: devices.key,
            trial_boots: devices.trial_boots,
            identity: devices.identity,
            sessions: devices.sessions,
            owner_mode: devices.owner_mode,
            session: None,
        })
    }

    /// The descriptor to poll: the connection when one is open, else the listener.
    pub fn pollable(&self) -> &OwnedFd {
        self.conn.as_ref().unwrap_or(&self.listener)
    }

    /// Called when [`InstallServer::pollable`] is readable: accepts a connection or serves
    /// one request, with the device's time record `time` when it keeps one (`Verified`, the
    /// time fields of `Status`).
    pub fn ready(&mut self, on_trial: bool, time: Option<&mut Keeper<File>>) -> Option<Event> {
        let Some(conn) = &self.conn else {
            self.accept();
            return None;
        };
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = match rustix::net::recv(conn, &mut buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) | Err(_) => {
                // The agent hung up (or the socket failed): drop the connection and any
                // unfinished install; the slot it was writing is not marked, so harmless.
                self.conn = None;
                self.session = None;
                return None;
            }
            Ok((n, _)) => n,
        };
        let (response, event) = match Request::decode(buf.get(..n).unwrap_or_default()) {
            Ok(request) => self.handle(request, on_trial, time),
            Err(e) => (Response::Error(format!("bad request: {e}")), None),
        };
        if let Some(conn) = &self.conn {
            if rustix::net::send(conn, &response.encode(), SendFlags::DONTWAIT).is_err() {
                self.conn = None;
                self.session = None;
            }
        }
        event
    }

    fn accept(&mut self) {
        self.conn = crate::socket::accept(&self.listener, self.agent_uid, "not the update agent");
    }

    fn handle(
        &mut self,
        request: Request,
        on_trial: bool,
        mut time: Option<&mut Keeper<File>>,
    ) -> (Response, Option<Event>) {
        if let Some(keeper) = time.as_deref_mut() {
            // A failed save is retried by the runtime's timer; the request is served anyway.
            let _ = keeper.tick(uptime());
        }
        match request {
            Request::Verified {
                signed_time,
                support_until,
            } => (verified(time, signed_time, support_until), None),
            Request::Roughtime { servers } => (Response::Ok, Some(Event::Roughtime { servers })),
            Request::SignCheckIn { report } => match self.sign_check_in(&report) {
                Ok(signature) => (Response::Signed { signature }, None),
                Err(e) => (Response::Error(e), None),
            },
            // The remote agent's requests, served on its own socket only: the update agent
            // has no use for them.
            Request::SignRemoteAccess { .. }
            | Request::RemoteSession(_)
            | Request::OpenPinhole(_)
            | Request::ClosePinhole(_) => (
                Response::Error(format!(
                    "{} is served on {} only",
                    request.name(),
                    limpet_install_api::REMOTE_SOCKET
                )),
                None,
            ),
            Request::DeviceKey => (crate::remote::device_key(self.identity.as_deref()), None),
            Request::HandOver { key } => (self.hand_over(&key), None),
            Request::OwnerMode { .. } => (
                Response::Error(
                    "owner-mode request refused: this socket is the update agent's; a task \
                     granted owner-request asks on the owner-request socket"
                        .into(),
                ),
                None,
            ),
            Request::Status => match self.status(on_trial, time.as_deref()) {
                Ok(s) => (Response::Status(s), None),
                Err(e) => (Response::Error(e), None),
            },
            Request::Begin { version, length } => {
                self.session = None;
                let result = (|| {
                    let mut store = self.store()?;
                    let target = File::options()
                        .read(true)
                        .write(true)
                        .open(&self.inactive)
                        .map_err(|e| format!("{}: {e}", self.inactive.display()))?;
                    let session = crate::begin(&mut store, &target, &version, length)
                        .map_err(|e| limpet_error_chain::one_line(&e))?;
                    Ok::<_, String>((session, target))
                })();
                match result {
                    Ok(s) => {
                        self.session = Some(s);
                        (Response::Ok, None)
                    }
                    Err(error) => failed(Some(version), error),
                }
            }
            Request::ReadRunning { offset, len } => {
                let len = usize::try_from(len).unwrap_or(usize::MAX).min(MAX_DATA);
                let end = offset.saturating_add(len as u64);
                if end > self.running_length {
                    return (
                        Response::Error(format!(
                            "read of {len} bytes at {offset} is past the running slot's {} bytes",
                            self.running_length
                        )),
                        None,
                    );
                }
                let mut buf = vec![0u8; len];
                let read = File::open(&self.running).and_then(|f| {
                    use std::os::unix::fs::FileExt;
                    f.read_exact_at(&mut buf, offset)
                });
                match read {
                    Ok(()) => (Response::Data(buf), None),
                    Err(e) => (
                        Response::Error(format!("{}: {e}", self.running.display())),
                        None,
                    ),
                }
            }
            Request::Write { offset, data } => match &mut self.session {
                None => (Response::Error("no install begun".to_owned()), None),
                Some((session, target)) => match session.write(target, offset, &data) {
                    Ok(()) => (Response::Ok, None),
                    Err(e) => {
                        let version = Some(session.version().to_string());
                        self.session = None;
                        failed(version, limpet_error_chain::one_line(&e))
                    }
                },
            },
            Request::Finish { root_hash } => {
                let Some((session, mut target)) = self.session.take() else {
                    return (Response::Error("no install begun".to_owned()), None);
                };
                let version = session.version().to_string();
                let result = self.store().and_then(|mut store| {
                    session
                        .finish(
                            &mut store,
                            &mut target,
                            &self.key,
                            &root_hash,
                            self.trial_boots,
                        )
                        .map_err(|e| limpet_error_chain::one_line(&e))
                });
                match result {
                    Ok(_) => (
                        Response::Staged {
                            version: version.clone(),
                            boots: self.trial_boots,
                        },
                        Some(Event::Staged { version }),
                    ),
                    Err(error) => failed(Some(version), error),
                }
            }
            Request::Reboot => match self
                .store()
                .and_then(|mut s| s.load().map_err(|e| e.to_string()))
            {
                Ok(state) if state.trial().is_some_and(|t| t.phase == TrialPhase::Staged) => {
                    (Response::Ok, Some(Event::Reboot))
                }
                Ok(_) => (
                    Response::Error("no staged trial: nothing to reboot into".to_owned()),
                    None,
                ),
                Err(e) => (Response::Error(e), None),
            },
        }
    }

    /// Writes the owner hand-over request block for the loader (see the module doc).
    fn hand_over(&self, key: &[u8; 32]) -> Response {
        if VerifyingKey::from_bytes(key).is_err() {
            return Response::Error(
                "hand-over refused: the owner's image key is not an Ed25519 public key".into(),
            );
        }
        let request = limpet_state::owner::Request::HandOver { key: *key };
        match crate::owner::write_block(&self.state, &request) {
            Ok(()) => Response::Ok,
            Err(e) => Response::Error(e),
        }
    }

    fn store(&self) -> Result<StateStore<File>, String> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(&self.state)
            .map_err(|e| format!("{}: {e}", self.state.display()))?;
        StateStore::new(file).map_err(|e| format!("state partition: {e}"))
    }

    fn status(&self, on_trial: bool, time: Option<&Keeper<File>>) -> Result<DeviceStatus, String> {
        let state = self.store()?.load().map_err(|e| format!("state: {e}"))?;
        let capacity = File::open(&self.inactive)
            .and_then(|f| limpet_state::BlockDevice::len(&f))
            .map_err(|e| format!("{}: {e}", self.inactive.display()))?;
        Ok(DeviceStatus {
            running_version: self.running_version.clone(),
            running_length: self.running_length,
            inactive_capacity: capacity,
            floor: state.floor().to_string(),
            time_floor: time.map(|k| k.state().floor().as_secs()),
            earliest_time: time.map(|k| k.state().earliest().as_secs()),
            support_until: time.and_then(Keeper::support_until).map(WallTime::as_secs),
            highest_failed: state.highest_failed().map(ToString::to_string),
            trial: state.trial().map(|t| t.version.to_string()),
            on_trial,
            device_key: self.identity.as_ref().map(|id| hex_key(&id.public_key())),
            record: Some(Box::new(record_facts(&state, on_trial))),
            remote_sessions: self.sessions.records(),
            owner_mode: self.owner_mode.clone(),
        })
    }

    /// Signs a check-in report of this device's own key (module rules).
    fn sign_check_in(&self, json: &[u8]) -> Result<[u8; 64], String> {
        let identity = self
            .identity
            .as_ref()
            .ok_or("this device has no identity: nothing to sign check-ins with")?;
        let report: limpet_fleet_api::report::Report =
            serde_json::from_slice(json).map_err(|e| format!("not a check-in report: {e}"))?;
        let own = hex_key(&identity.public_key());
        if report.device != own {
            return Err(format!(
                "the report names device {}, not this device's key {own}",
                report.device
            ));
        }
        let recorded = self.sessions.records();
        if report.remote_sessions != recorded {
            return Err(format!(
                "the report's {} remote sessions are not the {} PID 1 recorded",
                report.remote_sessions.len(),
                recorded.len()
            ));
        }
        let message = limpet_fleet_api::report::message(&report).map_err(|e| e.to_string())?;
        Ok(identity
            .sign(limpet_identity::Purpose::CheckIn, &message)
            .to_bytes())
    }
}

fn hex_key(key: &VerifyingKey) -> String {
    key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The A/B record as a check-in reports it: the running slot (the trial's while on
/// trial), the other slot's version when the record names one, the last failure.
fn record_facts(state: &limpet_state::State, on_trial: bool) -> limpet_install_api::RecordFacts {
    let running = match state.trial() {
        Some(t) if on_trial => t.slot,
        _ => state.committed_slot(),
    };
    let other = running.other();
    let other_version = match (state.trial(), state.last_failure()) {
        (Some(t), _) if t.slot == other => Some(t.version.to_string()),
        (Some(_), _) => Some(state.committed_version().to_string()),
        (None, Some(f)) if f.slot == other => Some(f.version.to_string()),
        _ => None,
    };
    limpet_install_api::RecordFacts {
        active_slot: match running {
            limpet_state::Slot::A => "a".into(),
            limpet_state::Slot::B => "b".into(),
        },
        other_version,
        last_failure: state
            .last_failure()
            .map(|f| limpet_install_api::FailureFacts {
                version: f.version.to_string(),
                reason: f.reason.to_string(),
                boot_count: f.boot_count,
            }),
        boot_count: state.boot_count(),
    }
}

/// `Verified`: the signed time, then the support end, into the time record.
fn verified(
    time: Option<&mut Keeper<File>>,
    signed_time: u64,
    support_until: Option<u64>,
) -> Response {
    let Some(keeper) = time else {
        return Response::Error("this PID 1 keeps no time record".to_owned());
    };
    let now = uptime();
    let result = keeper
        .verified(WallTime::from_secs(signed_time), now)
        .and_then(|_| match support_until {
            Some(end) => keeper.extend_support(WallTime::from_secs(end), now),
            None => Ok(()),
        });
    match result {
        Ok(()) => Response::Ok,
        Err(e) => Response::Error(limpet_error_chain::one_line(&e)),
    }
}

fn failed(version: Option<String>, error: String) -> (Response, Option<Event>) {
    (
        Response::Error(error.clone()),
        Some(Event::Failed { version, error }),
    )
}

/// Uptime since boot (`CLOCK_BOOTTIME`: counts suspend, cannot be set).
fn uptime() -> Uptime {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Uptime::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use limpet_image::squashfs::Entry;
    use limpet_lifecycle::SlotLifecycle;
    use limpet_state::{Slot, State};
    use limpet_testkit::slot::{root_hash, signed_slot, Partitions};
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
    use std::os::fd::AsFd;

    const SLOT_SIZE: u64 = 256 << 10;

    fn release(version: &str, key: &SigningKey) -> (Vec<u8>, [u8; 32]) {
        let entries = vec![Entry {
            path: "task".into(),
            data: version.repeat(5000).into_bytes(),
            mode: 0o755,
        }];
        let bytes = signed_slot(&entries, "t", "x86_64", version, key);
        let root = root_hash(&bytes);
        (bytes, root)
    }

    struct Rig {
        _dir: tempfile::TempDir,
        server: InstallServer,
        /// The time record the runtime would lend the server, if the rig keeps one.
        time: Option<Keeper<File>>,
        client: OwnedFd,
        partitions: Partitions,
        /// The session log the server shares with the remote agent's server.
        sessions: crate::remote::SessionLog,
    }

    impl Rig {
        fn new(key: &SigningKey, v1: &[u8]) -> Rig {
            Rig::for_agent(key, v1, rustix::process::getuid().as_raw())
        }

        /// A server whose agent is `agent_uid`; the test process connects as itself.
        fn for_agent(key: &SigningKey, v1: &[u8], agent_uid: u32) -> Rig {
            Rig::build(key, v1, agent_uid, None)
        }

        /// A server holding the device identity `identity`.
        fn build(
            key: &SigningKey,
            v1: &[u8],
            agent_uid: u32,
            identity: Option<limpet_identity::Identity>,
        ) -> Rig {
            let identity = identity.map(Arc::new);
            let sessions = crate::remote::SessionLog::default();
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().to_owned();
            std::fs::create_dir_all(root.join("dev")).unwrap();
            let partitions = Partitions::factory(&root.join("dev"), v1, "1.0.0", SLOT_SIZE);
            let socket = root.join("run/limpet/update.sock");
            let uid = agent_uid;
            let gid = rustix::process::getgid().as_raw();
            let server = InstallServer::bind(
                &socket,
                uid,
                gid,
                Devices {
                    state: partitions.state.clone(),
                    running: partitions.slot_a.clone(),
                    inactive: partitions.slot_b.clone(),
                    running_version: "1.0.0".into(),
                    key: key.verifying_key(),
                    trial_boots: 3,
                    identity,
                    sessions: sessions.clone(),
                    owner_mode: None,
                },
            )
            .unwrap();
            let client =
                rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
            let mut rig = Rig {
                _dir: dir,
                server,
                time: None,
                client,
                partitions,
                sessions,
            };
            rustix::net::connect(&rig.client, &SocketAddrUnix::new(&socket).unwrap()).unwrap();
            assert_eq!(rig.server.ready(false, None), None); // accept
            rig
        }

        /// The same rig, its server lent the time record in the state partition.
        fn with_lifecycle(mut self, slot: SlotLifecycle) -> Rig {
            let file = File::options()
                .read(true)
                .write(true)
                .open(&self.partitions.state)
                .unwrap();
            let (keeper, _) = Keeper::open(file, slot, Uptime::ZERO);
            self.time = Some(keeper);
            self
        }

        fn status(&mut self) -> DeviceStatus {
            match self.ask(&Request::Status).0 {
                Response::Status(s) => s,
                other => panic!("{other:?}"),
            }
        }

        fn ask(&mut self, request: &Request) -> (Response, Option<Event>) {
            rustix::net::send(self.client.as_fd(), &request.encode(), SendFlags::empty()).unwrap();
            let event = self.server.ready(false, self.time.as_mut());
            let mut buf = vec![0u8; MAX_MESSAGE];
            let (n, _) = rustix::net::recv(&self.client, &mut buf, RecvFlags::empty()).unwrap();
            (Response::decode(&buf[..n]).unwrap(), event)
        }

        fn state(&self) -> State {
            self.partitions.state()
        }

        fn install(&mut self, image: &[u8], version: &str) {
            let (r, _) = self.ask(&Request::Begin {
                version: version.into(),
                length: image.len() as u64,
            });
            assert_eq!(r, Response::Ok);
            for (i, piece) in image.chunks(MAX_DATA).enumerate() {
                let (r, _) = self.ask(&Request::Write {
                    offset: (i * MAX_DATA) as u64,
                    data: piece.to_vec(),
                });
                assert_eq!(r, Response::Ok);
            }
        }
    }

    #[test]
    fn an_update_is_written_verified_and_staged() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let (v1, _) = release("1.0.0", &key);
        let (v2, root2) = release("2.0.0", &key);
        let mut rig = Rig::new(&key, &v1);

        let (r, _) = rig.ask(&Request::Status);
        let Response::Status(s) = r else {
            panic!("{r:?}")
        };
        assert_eq!(s.running_version, "1.0.0");
        assert_eq!(s.running_length, v1.len() as u64);
        assert_eq!(s.inactive_capacity, SLOT_SIZE);

        // The running slot can be read (the delta seed), not past its end.
        let (r, _) = rig.ask(&Request::ReadRunning {
            offset: 0,
            len: 100,
        });
        assert_eq!(r, Response::Data(v1[..100].to_vec()));
        let (r, _) = rig.ask(&Request::ReadRunning {
            offset: v1.len() as u64 - 10,
            len: 100,
        });
        assert!(matches!(r, Response::Error(e) if e.contains("past the running slot")));

        // No reboot without a staged trial.
        let (r, e) = rig.ask(&Request::Reboot);
        assert!(matches!(r, Response::Error(_)) && e.is_none());

        rig.install(&v2, "2.0.0");
        // Writing outside the announced length is refused.
        let (r, _) = rig.ask(&Request::Write {
            offset: v2.len() as u64,
            data: vec![0; 10],
        });
        assert!(
            matches!(r, Response::Error(ref e) if e.contains("outside the announced")),
            "{r:?}"
        );
        // That failure ended the session: begin again.
        rig.install(&v2, "2.0.0");
        let (r, e) = rig.ask(&Request::Finish { root_hash: root2 });
        assert_eq!(
            r,
            Response::Staged {
                version: "2.0.0".into(),
                boots: 3
            }
        );
        assert_eq!(
            e,
            Some(Event::Staged {
                version: "2.0.0".into()
            })
        );
        let t = rig.state().trial().cloned().unwrap();
        assert_eq!(
            (t.slot, t.version.to_string(), t.boots_left),
            (Slot::B, "2.0.0".into(), 3)
        );
        let (r, e) = rig.ask(&Request::Reboot);
        assert_eq!((r, e), (Response::Ok, Some(Event::Reboot)));
    }

    #[test]
    fn a_slot_that_is_not_the_signed_one_is_never_staged() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let other = SigningKey::from_bytes(&[4; 32]);
        let (v1, _) = release("1.0.0", &key);
        let (v2, root2) = release("2.0.0", &key);
        let (v3, root3) = release("3.0.0", &key);
        let (foreign, root_f) = release("2.0.0", &other);
        let mut rig = Rig::new(&key, &v1);

        // Another key's slot.
        rig.install(&foreign, "2.0.0");
        let (r, e) = rig.ask(&Request::Finish { root_hash: root_f });
        assert!(
            matches!(r, Response::Error(ref m) if m.contains("does not verify")),
            "{r:?}"
        );
        assert!(matches!(e, Some(Event::Failed { .. })));
        // The right slot with a root hash the repository did not sign for it.
        rig.install(&v2, "2.0.0");
        let (r, _) = rig.ask(&Request::Finish { root_hash: root3 });
        assert!(
            matches!(r, Response::Error(ref m) if m.contains("root hash")),
            "{r:?}"
        );
        // A slot announced as one version holding another.
        rig.install(&v3, "2.0.0");
        let (r, _) = rig.ask(&Request::Finish { root_hash: root3 });
        assert!(
            matches!(r, Response::Error(ref m) if m.contains("holds version 3.0.0")),
            "{r:?}"
        );
        // A byte flipped after the writes (a payload changed under the installer).
        rig.install(&v2, "2.0.0");
        {
            use std::os::unix::fs::FileExt;
            let f = File::options()
                .write(true)
                .open(&rig.partitions.slot_b)
                .unwrap();
            f.write_all_at(&[v2[5000] ^ 1], 5000).unwrap();
        }
        let (r, _) = rig.ask(&Request::Finish { root_hash: root2 });
        assert!(
            matches!(r, Response::Error(ref m) if m.contains("does not verify")),
            "{r:?}"
        );
        assert!(rig.state().trial().is_none());
        // Rollback: a version at or below the floor is refused before any write.
        let (r, _) = rig.ask(&Request::Begin {
            version: "1.0.0".into(),
            length: 10,
        });
        assert!(
            matches!(r, Response::Error(ref m) if m.contains("may not be tried")),
            "{r:?}"
        );
        // Too large for the slot.
        let (r, _) = rig.ask(&Request::Begin {
            version: "2.0.0".into(),
            length: SLOT_SIZE + 1,
        });
        assert!(
            matches!(r, Response::Error(ref m) if m.contains("does not fit")),
            "{r:?}"
        );
        // Garbage is an error answer, not a crash.
        rustix::net::send(rig.client.as_fd(), &[0xff, 1, 2], SendFlags::empty()).unwrap();
        let _ = rig.server.ready(false, None);
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (n, _) = rustix::net::recv(&rig.client, &mut buf, RecvFlags::empty()).unwrap();
        assert!(
            matches!(Response::decode(&buf[..n]), Ok(Response::Error(m)) if m.contains("bad request"))
        );
    }

    #[test]
    fn only_the_agent_s_uid_is_served() {
        // The socket belongs to uid 54321; this test runs as another uid (root, whom the
        // file's mode does not stop). The peer-credential check must refuse it anyway.
        let key = SigningKey::from_bytes(&[3; 32]);
        let (v1, _) = release("1.0.0", &key);
        let (v2, _) = release("2.0.0", &key);
        let mut rig = Rig::for_agent(&key, &v1, 54_321);
        let mut buf = vec![0u8; MAX_MESSAGE];
        // Already there (DONTWAIT: a server that accepted the peer would have said nothing).
        let (n, _) = rustix::net::recv(&rig.client, &mut buf, RecvFlags::DONTWAIT).unwrap();
        assert_eq!(
            Response::decode(&buf[..n]),
            Ok(Response::Error("not the update agent".into()))
        );
        // The connection is not kept: a write request gets no answer and changes nothing.
        let _ = rustix::net::send(
            rig.client.as_fd(),
            &Request::Begin {
                version: "2.0.0".into(),
                length: v2.len() as u64,
            }
            .encode(),
            SendFlags::empty(),
        );
        assert_eq!(rig.server.ready(false, None), None);
        assert!(rig.state().trial().is_none());
        let slot_b = std::fs::read(&rig.partitions.slot_b).unwrap();
        assert!(slot_b.iter().all(|&b| b == 0));
    }

    /// PID 1 signs a check-in report of its own key, one that verifies as the fleet server
    /// checks it; anything else is refused, and a device without an identity signs nothing.
    /// A device identity made in a temporary data directory (kept alive by the caller).
    use crate::remote::tests::test_identity;

    /// The update agent's socket answers the device key, and refuses to sign
    /// remote-access proofs: that is the remote agent's socket's business.
    #[test]
    fn the_device_key_is_answered_and_remote_proofs_refused() {
        use limpet_install_api::remote::REGISTER_PROOF;
        let key = SigningKey::from_bytes(&[1; 32]);
        let (v1, _) = release("1.0.0", &key);
        let (_data, identity) = test_identity();
        let public = identity.public_key();
        let mut rig = Rig::build(
            &key,
            &v1,
            rustix::process::getuid().as_raw(),
            Some(identity),
        );
        assert_eq!(
            rig.ask(&Request::DeviceKey).0,
            Response::Data(public.as_bytes().to_vec())
        );
        match rig
            .ask(&Request::SignRemoteAccess {
                message: [REGISTER_PROOF, &[9u8; 32]].concat(),
            })
            .0
        {
            Response::Error(e) => {
                assert_eq!(
                    e,
                    "sign-remote-access is served on /run/limpet/remote.sock only"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// A check-in report of `device`: slot A committed, no update, no remote session.
    fn committed_report(device: String) -> limpet_fleet_api::report::Report {
        use limpet_fleet_api::report::{AbRecord, AbState, LastUpdate, Outcome, Report, Slot};
        Report {
            device,
            seq: 1,
            time: 0,
            running: "1.0.0".into(),
            other: None,
            ab: AbRecord {
                active: Slot::A,
                state: AbState::Committed,
            },
            last_update: LastUpdate {
                outcome: Outcome::None,
                release: None,
                reason: None,
            },
            boot_count: 0,
            remote_sessions: Vec::new(),
        }
    }

    /// A rig whose server holds a test identity; its public key in hex.
    fn rig_with_identity() -> (tempfile::TempDir, String, Rig) {
        let key = SigningKey::from_bytes(&[1; 32]);
        let (v1, _) = release("1.0.0", &key);
        let (data, identity) = test_identity();
        let own = hex_key(&identity.public_key());
        let uid = rustix::process::getuid().as_raw();
        (data, own, Rig::build(&key, &v1, uid, Some(identity)))
    }

    #[test]
    fn check_ins_are_signed_for_this_device_only() {
        use limpet_fleet_api::report;
        let key = SigningKey::from_bytes(&[1; 32]);
        let (v1, _) = release("1.0.0", &key);
        let (_data, own, mut rig) = rig_with_identity();
        let status = rig.status();
        assert_eq!(status.device_key.as_deref(), Some(own.as_str()));
        let facts = status.record.unwrap();
        assert_eq!(
            (facts.active_slot.as_str(), facts.other_version),
            ("a", None)
        );
        let mut r = committed_report(own.clone());
        let json = serde_json::to_vec(&r).unwrap();
        let Response::Signed { signature } = rig.ask(&Request::SignCheckIn { report: json }).0
        else {
            panic!("not signed");
        };
        let body = serde_json::to_vec(&report::signed(&r, &signature).unwrap()).unwrap();
        assert_eq!(report::verify(&body).unwrap().report, r);
        // Another device's report: refused, naming both keys.
        r.device = "ab".repeat(32);
        let json = serde_json::to_vec(&r).unwrap();
        match rig.ask(&Request::SignCheckIn { report: json }).0 {
            Response::Error(e) => assert!(
                e.contains("not this device's key") && e.contains(&own),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        // Anything that is not a check-in report: refused.
        match rig
            .ask(&Request::SignCheckIn {
                report: b"{\"hello\": 1}".to_vec(),
            })
            .0
        {
            Response::Error(e) => assert!(e.starts_with("not a check-in report"), "{e}"),
            other => panic!("{other:?}"),
        }
        // No identity: nothing to sign with.
        let mut bare = Rig::new(&key, &v1);
        assert_eq!(bare.status().device_key, None);
        r.device = own;
        let json = serde_json::to_vec(&r).unwrap();
        match bare.ask(&Request::SignCheckIn { report: json }).0 {
            Response::Error(e) => assert!(e.contains("no identity"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    /// The sessions the remote agent's server recorded are in `Status`, and a check-in is
    /// signed only when it reports exactly them. Attack: an update agent that leaves a
    /// session out of its report, or makes one up, gets no signature.
    #[test]
    fn a_check_in_reports_exactly_the_recorded_remote_sessions() {
        use limpet_fleet_api::report::Report;
        use limpet_install_api::remote::{RemoteSession, SessionEvent};
        let (_data, own, mut rig) = rig_with_identity();
        let record = |event| RemoteSession {
            event,
            at: 1_800_000_000,
            operator: "ab".repeat(32),
            capability: "cd".repeat(32),
            service: "echo".into(),
        };
        rig.sessions.push(record(SessionEvent::Start));
        rig.sessions.push(record(SessionEvent::End));
        let recorded = rig.status().remote_sessions;
        assert_eq!(
            recorded,
            [record(SessionEvent::Start), record(SessionEvent::End)]
        );
        let mut r = committed_report(own);
        r.remote_sessions = recorded.clone();
        let ask = |rig: &mut Rig, r: &Report| {
            rig.ask(&Request::SignCheckIn {
                report: serde_json::to_vec(r).unwrap(),
            })
            .0
        };
        assert!(matches!(ask(&mut rig, &r), Response::Signed { .. }));
        r.remote_sessions.pop();
        assert_eq!(
            ask(&mut rig, &r),
            Response::Error("the report's 1 remote sessions are not the 2 PID 1 recorded".into())
        );
        r.remote_sessions = recorded;
        r.remote_sessions[0].operator = "ef".repeat(32);
        assert_eq!(
            ask(&mut rig, &r),
            Response::Error("the report's 2 remote sessions are not the 2 PID 1 recorded".into())
        );
    }

    /// `Verified` takes the agent's signed time and support end into the time record, by
    /// the time rules: a time below the floor and a shorter support window are refused by
    /// name; `Status` answers the floor and the end. The A/B state is not touched.
    #[test]
    fn verified_times_go_into_the_time_record() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let (v1, _) = release("1.0.0", &key);
        let mut rig = Rig::new(&key, &v1);
        let status = rig.status();
        assert_eq!((status.time_floor, status.support_until), (None, None));
        let (r, _) = rig.ask(&Request::Verified {
            signed_time: 2_000_000_000,
            support_until: None,
        });
        assert_eq!(r, Response::Error("this PID 1 keeps no time record".into()));

        let built = 1_900_000_000;
        let slot = SlotLifecycle {
            built: WallTime::from_secs(built),
            support_until: Some(WallTime::from_secs(1_950_000_000)),
            freshness: None,
        };
        let mut rig = Rig::new(&key, &v1).with_lifecycle(slot);
        let ab = rig.state();
        let status = rig.status();
        assert_eq!(
            (status.time_floor, status.support_until),
            (Some(built), Some(1_950_000_000))
        );
        // The earliest time: the floor plus the uptime counted at the request (here the
        // host's boot clock), never below the floor.
        let earliest = status.earliest_time.unwrap();
        assert!(earliest >= built, "{earliest} < {built}");
        let (r, _) = rig.ask(&Request::Verified {
            signed_time: 1_910_000_000,
            support_until: Some(1_990_000_000),
        });
        assert_eq!(r, Response::Ok);
        let status = rig.status();
        assert_eq!(
            (status.time_floor, status.support_until),
            (Some(1_910_000_000), Some(1_990_000_000))
        );
        // Below the floor.
        let (r, _) = rig.ask(&Request::Verified {
            signed_time: 1_905_000_000,
            support_until: None,
        });
        let Response::Error(text) = r else {
            panic!("{r:?}")
        };
        assert!(text.contains("is below the time floor"), "{text}");
        // A shorter support window (the fresh time is still taken).
        let (r, _) = rig.ask(&Request::Verified {
            signed_time: 1_920_000_000,
            support_until: Some(1_960_000_000),
        });
        let Response::Error(text) = r else {
            panic!("{r:?}")
        };
        assert!(text.contains("is before the accepted end"), "{text}");
        assert_eq!(rig.status().support_until, Some(1_990_000_000));
        // Saved in the state partition beside the A/B record, which is as it was.
        let saved =
            limpet_lifecycle::LifecycleStore::new(File::open(&rig.partitions.state).unwrap())
                .unwrap()
                .load()
                .unwrap()
                .state;
        assert_eq!(saved.floor(), WallTime::from_secs(1_920_000_000));
        assert_eq!(rig.state(), ab);
    }

    #[test]
    fn hand_over_writes_the_loaders_request_block_and_nothing_else() {
        use limpet_state::owner::{Request as OwnerRequest, REQUEST_BLOCK, REQUEST_OFFSET};
        let key = SigningKey::from_bytes(&[3; 32]);
        let (v1, _) = release("1.0.0", &key);
        let mut rig = Rig::new(&key, &v1);
        let before = std::fs::read(&rig.partitions.state).unwrap();
        let state = rig.state();
        let owner = SigningKey::from_bytes(&[4; 32]).verifying_key().to_bytes();
        // Bytes that are no curve point: refused, nothing written.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        let (r, e) = rig.ask(&Request::HandOver { key: off_curve });
        assert_eq!(
            r,
            Response::Error(
                "hand-over refused: the owner's image key is not an Ed25519 public key".into()
            )
        );
        assert_eq!(e, None);
        assert_eq!(std::fs::read(&rig.partitions.state).unwrap(), before);
        // A key: the block the loader parses, the A/B state untouched.
        let (r, e) = rig.ask(&Request::HandOver { key: owner });
        assert_eq!((r, e), (Response::Ok, None));
        let after = std::fs::read(&rig.partitions.state).unwrap();
        let at = usize::try_from(REQUEST_OFFSET).unwrap();
        assert_eq!(
            OwnerRequest::parse_block(&after[at..at + REQUEST_BLOCK]).unwrap(),
            Some(OwnerRequest::HandOver { key: owner })
        );
        assert_eq!(rig.state(), state);
        let outside = |b: &[u8]| {
            let mut b = b.to_vec();
            b.resize(b.len().max(at + REQUEST_BLOCK), 0);
            b.splice(at..at + REQUEST_BLOCK, []);
            b
        };
        assert_eq!(outside(&after), outside(&before), "no other byte written");
    }
}
