//! The relay: devices register by identity key, operators ask for a key, the relay splices.
//!
//! Wire (every message a [`frame`]):
//! - device control connection: `01 ‖ key(32)`; relay: `challenge(32)`; device: the
//!   identity's `remote-access` signature of [`REGISTER_PROOF`] ‖ challenge; relay: `00`
//!   (registered) or `01 ‖ text`. Then the relay sends `session-id(16)` for each operator
//!   waiting, and the device dials a data connection for it. Before each session id, a
//!   relay given a revocation list (`--revocations FILE`) sends `04 ‖ the list's JSON`
//!   ([`crate::revocation`]): the device takes it only when its access key signed it and
//!   it is newer than the one held, so the relay can withhold a list but not forge or
//!   roll one back.
//! - device data connection: `03 ‖ session-id(16)`; then raw bytes, spliced. A device that
//!   takes the direct path joins with `03 ‖ session-id(16) ‖ 01`; the relay first sends it
//!   one frame, the operator's observed address (`ip(4) ‖ port(2)`, [`crate::direct`]) when
//!   the operator asked for it too, empty otherwise.
//! - operator: `02 ‖ key(32)`; relay: `00` (spliced from here on), `01` (no such device) or
//!   `02` (busy). An operator that would take the direct path asks `02 ‖ key(32) ‖ 01`; a
//!   grant is then `00 ‖ the device's observed address(6) ‖ the operator's own observed
//!   address(6)` when the device joined for it (the operator signs its own for the
//!   device's pinhole, [`crate::pinhole::PeerStatement`]), `00` alone otherwise.
//!
//! Rules this module keeps:
//! - The relay reads nothing after the splice: it copies bytes and counts them. It knows
//!   the device's key (it proved possession), the operator's address, times and sizes.
//! - Every resource an unauthenticated peer can hold is bounded: connections
//!   ([`Limits::connections`]), registered devices, waiting operators per relay, and the time
//!   to finish a registration or a join ([`Limits::handshake`]).
//! - A later registration of the same key replaces the earlier one (a rebooted device); it
//!   has to prove the key again.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use limpet_identity::Purpose;
use rand_core::{OsRng, RngCore};

use crate::frame;

/// What the device's identity signs (then the relay's challenge) to register.
pub const REGISTER_PROOF: &[u8] = limpet_install_api::remote::REGISTER_PROOF;

/// Message tags.
pub const TAG_REGISTER: u8 = 1;
/// An operator asking for a device.
pub const TAG_CONNECT: u8 = 2;
/// A device's data connection for a session.
pub const TAG_JOIN: u8 = 3;
/// A revocation list on a device's control connection.
pub const TAG_REVOCATIONS: u8 = 4;

/// The byte after a key or a session id that asks for the direct path.
pub const DIRECT: u8 = 1;

/// Relay answers to an operator.
pub const ANSWER_OK: u8 = 0;
/// No device with that key is registered.
pub const ANSWER_ABSENT: u8 = 1;
/// Too many operators are waiting.
pub const ANSWER_BUSY: u8 = 2;

/// The relay's bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at once, of any kind.
    pub connections: usize,
    /// Registered devices.
    pub devices: usize,
    /// Operators waiting for their device's data connection.
    pub pending: usize,
    /// Time to finish a registration or a join, and for a device to dial back.
    pub handshake: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: 512,
            devices: 1024,
            pending: 64,
            handshake: Duration::from_secs(10),
        }
    }
}

/// An operator waiting for its device's data connection.
#[derive(Debug)]
struct Waiting {
    stream: TcpStream,
    since: Instant,
    /// Its observed address, when it asked for the direct path.
    direct: Option<SocketAddrV4>,
}

#[derive(Debug, Default)]
struct State {
    devices: HashMap<[u8; 32], TcpStream>,
    pending: HashMap<[u8; 16], Waiting>,
}

/// The IPv4 address and port a peer's connection comes from, as this side sees it.
fn observed(stream: &TcpStream) -> Option<SocketAddrV4> {
    match stream.peer_addr().ok()? {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None,
    }
}

/// Serves `listener` forever, one thread per connection (up to `limits.connections`); the
/// file `revocations`, when given, is read before each session request and sent to the
/// device.
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    revocations: Option<PathBuf>,
) -> io::Result<()> {
    let state = Arc::new(Mutex::new(State::default()));
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if open.fetch_add(1, Ordering::SeqCst) >= limits.connections {
            open.fetch_sub(1, Ordering::SeqCst);
            drop(stream);
            continue;
        }
        let (state, open, limits) = (Arc::clone(&state), Arc::clone(&open), limits.clone());
        let revocations = revocations.clone();
        std::thread::spawn(move || {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            if let Err(e) = connection(stream, &state, &limits, revocations.as_deref()) {
                println!("relay: {peer}: {e}");
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn lock(state: &Mutex<State>) -> io::Result<std::sync::MutexGuard<'_, State>> {
    state.lock().map_err(|_| bad("relay state poisoned"))
}

fn connection(
    mut stream: TcpStream,
    state: &Mutex<State>,
    limits: &Limits,
    revocations: Option<&Path>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(limits.handshake))?;
    let first = frame::read_some(&mut stream)?;
    match first.split_first() {
        Some((&TAG_REGISTER, key)) => register(stream, key, state, limits),
        Some((&TAG_CONNECT, key)) => connect(stream, key, state, limits, revocations),
        Some((&TAG_JOIN, id)) => join(stream, id, state),
        _ => Err(bad("unknown first message")),
    }
}

fn register(
    mut stream: TcpStream,
    key: &[u8],
    state: &Mutex<State>,
    limits: &Limits,
) -> io::Result<()> {
    let key_bytes = <[u8; 32]>::try_from(key).map_err(|_| bad("register: key is not 32 bytes"))?;
    let device = VerifyingKey::from_bytes(&key_bytes).map_err(|_| bad("register: not a key"))?;
    let mut challenge = [0u8; 32];
    OsRng.fill_bytes(&mut challenge);
    frame::write(&mut stream, &challenge)?;
    let proof = frame::read_some(&mut stream)?;
    let sig = Signature::from_slice(&proof).map_err(|_| bad("register: not a signature"))?;
    if !limpet_identity::verify(
        &device,
        Purpose::RemoteAccess,
        &[REGISTER_PROOF, &challenge].concat(),
        &sig,
    ) {
        frame::write(&mut stream, b"\x01the proof does not verify for this key")?;
        return Err(bad("register: the proof does not verify"));
    }
    {
        let mut s = lock(state)?;
        if !s.devices.contains_key(&key_bytes) && s.devices.len() >= limits.devices {
            drop(s);
            frame::write(&mut stream, b"\x01the relay is full")?;
            return Err(bad("register: full"));
        }
        s.devices.insert(key_bytes, stream.try_clone()?);
    }
    frame::write(&mut stream, &[ANSWER_OK])?;
    println!("relay: device {} registered", hex::encode(key_bytes));
    // The control connection stays open: its end is the device's going away.
    stream.set_read_timeout(None)?;
    let mut sink = [0u8; 64];
    while stream.read(&mut sink).unwrap_or(0) > 0 {}
    let mut s = lock(state)?;
    let same = s
        .devices
        .get(&key_bytes)
        .and_then(|c| Some(c.peer_addr().ok()? == stream.peer_addr().ok()?))
        .unwrap_or(false);
    if same {
        s.devices.remove(&key_bytes);
        println!("relay: device {} gone", hex::encode(key_bytes));
    }
    Ok(())
}

fn connect(
    mut stream: TcpStream,
    key: &[u8],
    state: &Mutex<State>,
    limits: &Limits,
    revocations: Option<&Path>,
) -> io::Result<()> {
    let (key, direct) = match key.split_at_checked(32) {
        Some((key, [])) => (key, false),
        Some((key, [DIRECT])) => (key, true),
        _ => return Err(bad("connect: key is not 32 bytes")),
    };
    let key = <[u8; 32]>::try_from(key).map_err(|_| bad("connect: key is not 32 bytes"))?;
    let direct = direct.then(|| observed(&stream)).flatten();
    // Read before the lock: a missing file sends nothing (a relay without revocations yet).
    let list = revocations.and_then(|path| match std::fs::read(path) {
        Ok(bytes) => Some([&[TAG_REVOCATIONS][..], &bytes].concat()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            println!("relay: revocation list {}: {e}", path.display());
            None
        }
    });
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    {
        let mut s = lock(state)?;
        s.pending
            .retain(|_, w| w.since.elapsed() < limits.handshake);
        if s.pending.len() >= limits.pending {
            drop(s);
            return frame::write(&mut stream, &[ANSWER_BUSY]);
        }
        let Some(control) = s.devices.get_mut(&key) else {
            drop(s);
            return frame::write(&mut stream, &[ANSWER_ABSENT]);
        };
        let sent = list
            .as_ref()
            .map_or(Ok(()), |list| frame::write(control, list))
            .and_then(|()| frame::write(control, &id));
        if sent.is_err() {
            s.devices.remove(&key);
            drop(s);
            return frame::write(&mut stream, &[ANSWER_ABSENT]);
        }
        s.pending.insert(
            id,
            Waiting {
                stream,
                since: Instant::now(),
                direct,
            },
        );
    }
    Ok(())
}

fn join(mut device: TcpStream, id: &[u8], state: &Mutex<State>) -> io::Result<()> {
    let (id, device_direct) = match id.split_at_checked(16) {
        Some((id, [])) => (id, false),
        Some((id, [DIRECT])) => (id, true),
        _ => return Err(bad("join: id is not 16 bytes")),
    };
    let id = <[u8; 16]>::try_from(id).map_err(|_| bad("join: id is not 16 bytes"))?;
    let Some(waiting) = lock(state)?.pending.remove(&id) else {
        return Err(bad("join: no operator waits with that id"));
    };
    let mut operator = waiting.stream;
    device.set_read_timeout(None)?;
    operator.set_read_timeout(None)?;
    // The direct path: each side learns the other's observed address, when both asked.
    let both = device_direct && waiting.direct.is_some();
    let device_addr = if both { observed(&device) } else { None };
    if device_direct {
        let to_device = waiting.direct.map(|a| encode_addr(&a).to_vec());
        frame::write(&mut device, &to_device.unwrap_or_default())?;
    }
    let mut answer = vec![ANSWER_OK];
    if let (Some(addr), Some(own)) = (device_addr, waiting.direct) {
        answer.extend_from_slice(&encode_addr(&addr));
        answer.extend_from_slice(&encode_addr(&own));
    }
    frame::write(&mut operator, &answer)?;
    let (up, down) = splice(operator, device)?;
    println!(
        "relay: session {}: {up} bytes operator to device, {down} bytes device to operator",
        hex::encode(id)
    );
    Ok(())
}

/// An address on the wire: the IPv4 address, then the port big-endian.
pub fn encode_addr(addr: &SocketAddrV4) -> [u8; 6] {
    let mut out = [0u8; 6];
    out[..4].copy_from_slice(&addr.ip().octets());
    out[4..].copy_from_slice(&addr.port().to_be_bytes());
    out
}

/// Reads [`encode_addr`]'s 6 bytes; anything else is `None`.
pub fn decode_addr(bytes: &[u8]) -> Option<SocketAddrV4> {
    let b = <[u8; 6]>::try_from(bytes).ok()?;
    Some(SocketAddrV4::new(
        std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_be_bytes([b[4], b[5]]),
    ))
}

/// Copies `a` to `b` and `b` to `a` until both directions end; returns the byte counts.
pub fn splice(a: TcpStream, b: TcpStream) -> io::Result<(u64, u64)> {
    let (mut a_in, mut b_out) = (a.try_clone()?, b.try_clone()?);
    let forward = std::thread::spawn(move || {
        let n = io::copy(&mut a_in, &mut b_out).unwrap_or(0);
        let _ = b_out.shutdown(Shutdown::Write);
        n
    });
    let (mut b_in, mut a_out) = (b, a);
    let back = io::copy(&mut b_in, &mut a_out).unwrap_or(0);
    let _ = a_out.shutdown(Shutdown::Write);
    let forward = forward.join().map_err(|_| bad("splice thread"))?;
    Ok((forward, back))
}

/// The operator's side: asks the relay at `stream` for `device`; on `Ok` the stream is
/// spliced to the device.
pub fn ask(stream: &mut TcpStream, device: &VerifyingKey) -> Result<(), AskError> {
    ask_for(stream, device, false).map(|_| ())
}

/// The two observed addresses the relay answers an operator that asked for the direct
/// path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The device's data connection's source, as the relay sees it.
    pub device: SocketAddrV4,
    /// The operator's own connection's source, as the relay sees it.
    pub operator: SocketAddrV4,
}

/// [`ask`], also asking for both observed addresses (the direct path); `None` when the
/// device did not join for it, or the relay is older and answered the device's only.
pub fn ask_direct(
    stream: &mut TcpStream,
    device: &VerifyingKey,
) -> Result<Option<Observed>, AskError> {
    let addrs = ask_for(stream, device, true)?;
    Ok(addrs.split_first_chunk::<6>().and_then(|(device, own)| {
        Some(Observed {
            device: decode_addr(device)?,
            operator: decode_addr(own)?,
        })
    }))
}

fn ask_for(
    stream: &mut TcpStream,
    device: &VerifyingKey,
    direct: bool,
) -> Result<Vec<u8>, AskError> {
    let flag: &[u8] = if direct { &[DIRECT] } else { &[] };
    frame::write(
        stream,
        &[&[TAG_CONNECT], device.as_bytes().as_slice(), flag].concat(),
    )?;
    let answer = frame::read_some(stream)?;
    match answer.split_first() {
        Some((&ANSWER_OK, addrs)) => Ok(addrs.to_vec()),
        Some((&ANSWER_ABSENT, _)) => Err(AskError::Absent),
        Some((&ANSWER_BUSY, _)) => Err(AskError::Busy),
        _ => Err(AskError::Io(bad("unknown relay answer"))),
    }
}

/// Why the relay did not splice an operator to a device.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("relay i/o")]
    Io(#[from] io::Error),
    #[error("the device is not connected to this relay")]
    Absent,
    #[error("the relay is busy")]
    Busy,
}

/// Reads `n` bytes as a fixed array (a helper for the device's side).
pub(crate) fn read_array<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
    let bytes = frame::read_some(r)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| bad("a message of the wrong size"))
}

/// Writes a whole message (a helper shared with the device's side).
pub(crate) fn send(w: &mut impl Write, parts: &[&[u8]]) -> io::Result<()> {
    frame::write(w, &parts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{device_sign, key, DEVICE};
    use std::net::Ipv4Addr;

    /// The direct path's answers: the device is told the operator's observed address, and
    /// the operator both the device's and its own (which it signs for the device's pinhole);
    /// each as the relay's side of the connection sees it.
    #[test]
    fn an_operator_asking_for_the_direct_path_is_told_both_observed_addresses() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(listener, Limits::default(), None));
        let device = key(DEVICE).verifying_key();
        let mut control = TcpStream::connect(relay).unwrap();
        send(&mut control, &[&[TAG_REGISTER], device.as_bytes()]).unwrap();
        let challenge: [u8; 32] = read_array(&mut control).unwrap();
        let proof = device_sign(&[REGISTER_PROOF, &challenge].concat()).unwrap();
        send(&mut control, &[&proof.to_bytes()]).unwrap();
        assert_eq!(frame::read_some(&mut control).unwrap(), [ANSWER_OK]);
        let mut operator = TcpStream::connect(relay).unwrap();
        let asked = std::thread::spawn(move || {
            let own = operator.local_addr().unwrap();
            (ask_direct(&mut operator, &device).unwrap(), own)
        });
        let id: [u8; 16] = read_array(&mut control).unwrap();
        let mut data = TcpStream::connect(relay).unwrap();
        send(&mut data, &[&[TAG_JOIN], &id, &[DIRECT]]).unwrap();
        let told = decode_addr(&frame::read_some(&mut data).unwrap()).unwrap();
        let (observed, own) = asked.join().unwrap();
        let v4 = |a: SocketAddr| SocketAddrV4::new(Ipv4Addr::LOCALHOST, a.port());
        assert_eq!(
            observed,
            Some(Observed {
                device: v4(data.local_addr().unwrap()),
                operator: v4(own),
            })
        );
        assert_eq!(told, v4(own));
    }
}
