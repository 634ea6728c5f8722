//! The device's side: dial out to the relay, register, answer each operator.
//!
//! Rules this module keeps:
//! - The device only ever dials out, to the one relay address it is given; it listens on
//!   nothing.
//! - Each session is decided by [`crate::decide`] before a byte reaches a service, and
//!   reaches only the granted service's local address.
//! - Sessions at once are bounded ([`MAX_SESSIONS`]); a lost relay connection is dialled
//!   again after a growing pause (1 s doubling to [`MAX_BACKOFF`]).
//! - Every session's start, end and refusal is a line on standard output with the operator
//!   key and the capability's hash (the console, which PID 1 logs); each start and end is
//!   also given to the [`Recorder`] (PID 1, for the signed check-in) before the service
//!   is reached and after the session closed.
//! - The direct path (`--direct`, [`crate::direct`]): a granted session whose capability
//!   grants `direct`, whose operator asked for it, is offered it only after PID 1 opened
//!   its pinhole (the [`Pinholer`]), given the operator's statement of its address from
//!   the hello: PID 1 opens it to that address only. The session on the direct
//!   connection is decided again from the start, and the relay session is the fallback.
//!   The pinhole is closed (`ClosePinhole`) once the direct session is over (its
//!   connection closed, its last bytes acknowledged: [`session::LINGER`]), or at once when
//!   the direct path was not taken.
//! - A frame on the control connection that is not a session id and starts with
//!   [`relay::TAG_REVOCATIONS`] is a revocation list: taken only when the access key
//!   signed it and it is newer than the one held ([`crate::revocation`]).

use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::decide::{DevicePolicy, Grant};
use crate::direct::Route;
use crate::relay::{self, REGISTER_PROOF, TAG_JOIN, TAG_REGISTER};
use crate::session::{self, Outcome};
use limpet_install_api::remote::{PinholeAsk, RemoteSession, SessionEvent};

/// Sessions served at once.
pub const MAX_SESSIONS: usize = 8;
/// The longest pause between two dials to the relay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub use crate::signer::{Pinholer, Recorder, Signer};

/// Why a registration with the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("relay {relay}")]
    Io {
        relay: String,
        #[source]
        source: std::io::Error,
    },
    #[error("relay {relay} refused the registration: {why}")]
    Refused { relay: String, why: String },
    #[error(transparent)]
    Sign(#[from] crate::signer::SignError),
}

/// Runs forever: registers at `relay` (`host:port`, resolved at each dial) and serves
/// sessions under `policy`.
pub fn run(
    relay: &str,
    policy: Arc<DevicePolicy>,
    sign: Signer,
    record: Recorder,
    direct: Option<Pinholer>,
) -> ! {
    let mut pause = Duration::from_secs(1);
    loop {
        match serve_once(relay, &policy, &sign, &record, direct.as_ref()) {
            Ok(()) => {
                println!("limpet-remote: relay {relay} closed the connection");
                pause = Duration::from_secs(1);
            }
            Err(e) => println!("limpet-remote: {}", limpet_error_chain(&e)),
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}

fn limpet_error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One registration: returns when the relay closes the control connection.
pub fn serve_once(
    relay: &str,
    policy: &Arc<DevicePolicy>,
    sign: &Signer,
    record: &Recorder,
    direct: Option<&Pinholer>,
) -> Result<(), AgentError> {
    let io = |source| AgentError::Io {
        relay: relay.to_owned(),
        source,
    };
    let mut control = TcpStream::connect(relay).map_err(io)?;
    relay::send(&mut control, &[&[TAG_REGISTER], policy.device.as_bytes()]).map_err(io)?;
    let challenge: [u8; 32] = relay::read_array(&mut control).map_err(io)?;
    relay::send(
        &mut control,
        &[&sign(&[REGISTER_PROOF, &challenge].concat())?.to_bytes()],
    )
    .map_err(io)?;
    let answer = crate::frame::read_some(&mut control).map_err(io)?;
    if answer.first() != Some(&relay::ANSWER_OK) {
        return Err(AgentError::Refused {
            relay: relay.to_owned(),
            why: String::from_utf8_lossy(answer.get(1..).unwrap_or_default()).into_owned(),
        });
    }
    println!(
        "limpet-remote: registered at relay {relay} as {}",
        hex::encode(policy.device.as_bytes())
    );
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let id: [u8; 16] = match crate::frame::read(&mut control).map_err(io)? {
            None => return Ok(()),
            Some(bytes) => match <[u8; 16]>::try_from(bytes.as_slice()) {
                Ok(id) => id,
                Err(_) => {
                    if let Some((&relay::TAG_REVOCATIONS, list)) = bytes.split_first() {
                        take_revocations(policy, list);
                    }
                    continue;
                }
            },
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_SESSIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            println!("limpet-remote: session refused: {MAX_SESSIONS} sessions are open");
            continue;
        }
        let (policy, sign, active) = (Arc::clone(policy), Arc::clone(sign), Arc::clone(&active));
        let (relay, record) = (relay.to_owned(), Arc::clone(record));
        let direct = direct.cloned();
        std::thread::spawn(move || {
            if let Err(e) = session_once(&relay, &id, &policy, &sign, &record, direct.as_ref()) {
                println!("limpet-remote: session failed: {}", limpet_error_chain(&e));
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// A revocation list the relay sent: taken when the access key signed it and it is newer
/// than the one held (crate::revocation's rules), said on standard output either way.
fn take_revocations(policy: &DevicePolicy, list: &[u8]) {
    let taken = crate::revocation::RevocationList::from_json(list).and_then(|list| {
        let issued = list.issued;
        let n = policy.revocations.apply(list, &policy.access_key)?;
        Ok((issued, n))
    });
    match taken {
        Ok((issued, n)) => {
            println!(
                "limpet-remote: revocation list issued at {issued} taken: {n} capabilities revoked"
            );
        }
        Err(crate::revocation::RevocationError::NotNewer { .. }) => {}
        Err(e) => println!("limpet-remote: revocation list refused: {e}"),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn session_once(
    relay: &str,
    id: &[u8; 16],
    policy: &DevicePolicy,
    sign: &Signer,
    record: &Recorder,
    direct: Option<&Pinholer>,
) -> Result<(), session::SessionError> {
    let mut data = match direct {
        Some(_) => crate::direct::dial_host(relay)?,
        None => TcpStream::connect(relay)?,
    };
    let flag: &[u8] = if direct.is_some() {
        &[relay::DIRECT]
    } else {
        &[]
    };
    relay::send(&mut data, &[&[TAG_JOIN], id, flag])?;
    data.set_read_timeout(Some(Duration::from_secs(10)))?;
    // The operator's observed address, when both asked for the direct path.
    let peer = match direct {
        Some(_) => relay::decode_addr(&crate::frame::read_some(&mut data)?),
        None => None,
    };
    let local_port = data.local_addr()?.port();
    let offered = std::cell::Cell::new(false);
    let offer = |grant: &Grant, statement: Option<&[u8]>| {
        let (Some(pinholer), Some(peer)) = (direct, peer) else {
            return false;
        };
        if !grant.capability.capability.direct {
            return false;
        }
        let ask = PinholeAsk {
            peer,
            local_port,
            capability: grant.capability.to_json(),
            statement: statement.map(hex::encode),
            revocations: policy.revocations.held_json(),
        };
        match (pinholer.open)(&ask) {
            Ok(secs) => {
                println!(
                    "limpet-remote: pinhole opened: {peer} from port {local_port} for {secs} s"
                );
                offered.set(true);
                true
            }
            Err(e) => {
                println!("limpet-remote: pinhole refused: {e}");
                false
            }
        }
    };
    match session::device_offering(data, policy, sign.as_ref(), now(), &offer)? {
        Outcome::Refused { refusal, operator } => {
            refused(operator, &refusal);
            Ok(())
        }
        Outcome::Granted(mut channel, grant) => {
            let (Some(peer), Some(pinholer), true) = (peer, direct, offered.get()) else {
                return serve(channel, &grant, record, Route::Relay);
            };
            // Both sides try at once; the operator's word says which path it took.
            let attempt = std::thread::spawn(move || {
                crate::direct::punch(local_port, peer, crate::direct::PUNCH_TIME)
            });
            let word = channel.recv()?;
            let direct = attempt
                .join()
                .map_err(|_| session::SessionError::Malformed("direct attempt"))?;
            // The pinhole closes when the direct session is over, or at once when the
            // direct path was not taken.
            let close = || close_pinhole(pinholer, peer, local_port);
            match (word.as_deref(), direct) {
                (Some([crate::direct::WORD_DIRECT]), Ok(stream)) => {
                    drop(channel);
                    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                    // The same handshake, proofs and decision as on the relay.
                    let served = match session::device(stream, policy, sign.as_ref(), now()) {
                        Ok(Outcome::Refused { refusal, operator }) => {
                            refused(operator, &refusal);
                            Ok(())
                        }
                        Ok(Outcome::Granted(channel, grant)) => {
                            serve(channel, &grant, record, Route::Direct(peer))
                        }
                        Err(e) => Err(e),
                    };
                    close();
                    served
                }
                (Some([crate::direct::WORD_DIRECT]), Err(e)) => {
                    close();
                    Err(e.into())
                }
                _ => {
                    close();
                    serve(channel, &grant, record, Route::Relay)
                }
            }
        }
    }
}

/// Asks for the pinhole to `peer` from `local_port` to be closed (its session's direct
/// path is over), said on standard output either way.
fn close_pinhole(pinholer: &Pinholer, peer: std::net::SocketAddrV4, local_port: u16) {
    let close = limpet_install_api::remote::PinholeClose { peer, local_port };
    match (pinholer.close)(&close) {
        Ok(()) => println!("limpet-remote: pinhole closed: {peer} from port {local_port}"),
        Err(e) => println!("limpet-remote: pinhole not closed: {e}"),
    }
}

fn refused(operator: Option<ed25519_dalek::VerifyingKey>, refusal: &crate::decide::Refusal) {
    let who = operator.map_or_else(|| "unproven".to_owned(), |k| hex::encode(k.as_bytes()));
    println!("limpet-remote: session refused: operator {who}: {refusal}");
}

/// Carries a granted session to its service, recording its start and end.
fn serve(
    channel: session::Channel<TcpStream>,
    grant: &Grant,
    record: &Recorder,
    route: Route,
) -> Result<(), session::SessionError> {
    let who = hex::encode(grant.operator.as_bytes());
    let cap = hex::encode(grant.capability_hash);
    println!(
        "limpet-remote: session start: operator {who}, capability {cap}, service {}, path {route}",
        grant.service
    );
    let event = |event| RemoteSession {
        event,
        at: i64::try_from(now()).unwrap_or(i64::MAX),
        operator: who.clone(),
        capability: cap.clone(),
        service: grant.service.to_string(),
    };
    record(event(SessionEvent::Start));
    let service = TcpStream::connect(grant.target)?;
    // After the handshake a session may idle; the operator ends it.
    let result = channel.splice(service);
    let (up, down) = result.unwrap_or((0, 0));
    println!(
        "limpet-remote: session end: operator {who}, capability {cap}, {down} bytes in, {up} bytes out"
    );
    record(event(SessionEvent::End));
    Ok(())
}
