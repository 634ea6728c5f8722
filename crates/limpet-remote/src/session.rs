//! The end-to-end session between an operator and a device: Noise, then both keys' proofs.
//!
//! `Noise_NN_25519_ChaChaPoly_BLAKE2s` with the prologue [`PROLOGUE`] ‖ the device's
//! identity key, then three encrypted messages:
//!
//! 1. device → operator: the device identity's signature (purpose `remote-access`) of
//!    [`DEVICE_PROOF`] ‖ h, h being this handshake's hash;
//! 2. operator → device: the operator key, its signature of [`OPERATOR_PROOF`] ‖ h, the
//!    service asked for, and the capability file; when the operator takes the direct
//!    path, then a zero byte and its statement of its own observed address
//!    ([`crate::pinhole::PeerStatement`], which PID 1 checks before it opens a pinhole);
//! 3. device → operator: the verdict, `0` or a [`Refusal`] code and its text; a grant is
//!    `0 1` when the device offers the direct path (PID 1 opened its pinhole,
//!    [`crate::direct`]), which the operator then tries, and `0` alone otherwise.
//!
//! Rules this module keeps:
//! - Both sides are authenticated by an Ed25519 signature over the handshake hash, which
//!   covers both fresh ephemeral keys: a signature made for one session verifies in no
//!   other, and a recorded session replayed to the device fails at its first encrypted
//!   message (the device's new ephemeral key gives new keys).
//! - The identity key signs only under its `remote-access` purpose with a fixed prefix; it
//!   is never used as a Diffie-Hellman key.
//! - Nothing is read or written in the clear after message 2 of the handshake; the relay
//!   sees ephemeral public keys and sizes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpStream};
use std::sync::{Arc, Mutex};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use limpet_identity::Purpose;

use crate::capability::SignedCapability;
use crate::decide::{authorize, DevicePolicy, Grant, Refusal, Request};
use crate::frame;
use crate::pinhole::PeerStatement;

/// The Noise protocol name.
pub const NOISE: &str = "Noise_NN_25519_ChaChaPoly_BLAKE2s";
/// The start of the prologue; the device's identity key follows.
pub const PROLOGUE: &[u8] = b"limpet remote-access session v1\0";
/// What the device's identity signs (then the handshake hash), under `remote-access`.
pub const DEVICE_PROOF: &[u8] = limpet_install_api::remote::SESSION_PROOF;
/// What the operator key signs (then the handshake hash).
pub const OPERATOR_PROOF: &[u8] = b"limpet remote-access operator v1\0session\0";

/// The byte between the hello's capability and the operator's statement: a capability's
/// JSON text never holds it.
pub const STATEMENT_MARK: u8 = 0;

/// The longest a closing session waits for its last bytes to be sent.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(10);

/// The most plaintext in one data frame (a Noise message less its 16-byte tag).
const MAX_PLAIN: usize = frame::MAX_FRAME - 16;

/// Why a session did not start or ended badly.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session i/o")]
    Io(#[from] io::Error),
    #[error("noise handshake")]
    Noise(#[source] snow::Error),
    #[error("a message failed to decrypt (not this session's keys)")]
    Decrypt,
    #[error("the device did not prove it holds the identity key asked for")]
    DeviceProof,
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("refused by the device (code {code}): {message}")]
    Refused { code: u8, message: String },
    #[error(transparent)]
    Sign(#[from] crate::signer::SignError),
}

/// An established session: encrypts and decrypts frames on `S`.
#[derive(Debug)]
pub struct Channel<S> {
    stream: S,
    noise: Arc<Mutex<snow::TransportState>>,
}

fn noise(device: &VerifyingKey) -> Result<snow::Builder<'static>, SessionError> {
    let params = NOISE.parse().map_err(SessionError::Noise)?;
    let _ = device;
    Ok(snow::Builder::new(params))
}

fn prologue(device: &VerifyingKey) -> Vec<u8> {
    [PROLOGUE, device.as_bytes()].concat()
}

/// The operator's side: runs the handshake with `device` over `stream`, proves `operator`,
/// asks for `service` with `capability`.
pub fn operator<S: Read + Write>(
    stream: S,
    device: &VerifyingKey,
    operator: &SigningKey,
    capability: Option<&SignedCapability>,
    service: &str,
) -> Result<Channel<S>, SessionError> {
    operator_offered(stream, device, operator, capability, service, None)
        .map(|(channel, _)| channel)
}

/// [`operator`], and whether the device's grant offered the direct path; with `own` (the
/// operator's address as the relay observed it) and a capability, the hello carries the
/// operator's statement that the device's pinhole is to lead there.
pub fn operator_offered<S: Read + Write>(
    mut stream: S,
    device: &VerifyingKey,
    operator: &SigningKey,
    capability: Option<&SignedCapability>,
    service: &str,
    own: Option<SocketAddrV4>,
) -> Result<(Channel<S>, bool), SessionError> {
    let prologue = prologue(device);
    let mut hs = noise(device)?
        .prologue(&prologue)
        .map_err(SessionError::Noise)?
        .build_initiator()
        .map_err(SessionError::Noise)?;
    let mut buf = vec![0u8; frame::MAX_FRAME];
    let n = hs
        .write_message(&[], &mut buf)
        .map_err(SessionError::Noise)?;
    frame::write(&mut stream, buf.get(..n).unwrap_or_default())?;
    let msg2 = frame::read_some(&mut stream)?;
    hs.read_message(&msg2, &mut buf)
        .map_err(SessionError::Noise)?;
    let h = hs.get_handshake_hash().to_vec();
    let transport = hs.into_transport_mode().map_err(SessionError::Noise)?;
    let mut channel = Channel {
        stream,
        noise: Arc::new(Mutex::new(transport)),
    };
    // 1. The device's proof.
    let proof = channel
        .recv()?
        .ok_or(SessionError::Malformed("device proof"))?;
    let sig = Signature::from_slice(&proof).map_err(|_| SessionError::Malformed("device proof"))?;
    if !limpet_identity::verify(
        device,
        Purpose::RemoteAccess,
        &[DEVICE_PROOF, &h].concat(),
        &sig,
    ) {
        return Err(SessionError::DeviceProof);
    }
    // 2. Ours.
    let mut hello = operator.verifying_key().as_bytes().to_vec();
    hello.extend_from_slice(&operator.sign(&[OPERATOR_PROOF, &h].concat()).to_bytes());
    let service = service.as_bytes();
    hello.push(u8::try_from(service.len()).map_err(|_| SessionError::Malformed("service"))?);
    hello.extend_from_slice(service);
    if let Some(cap) = capability {
        hello.extend_from_slice(cap.to_json().as_bytes());
        if let Some(own) = own {
            let statement = PeerStatement::sign(operator, device, cap.hash(), own);
            hello.push(STATEMENT_MARK);
            hello.extend_from_slice(&statement.to_bytes());
        }
    }
    channel.send(&hello)?;
    // 3. The verdict.
    let verdict = channel.recv()?.ok_or(SessionError::Malformed("verdict"))?;
    match verdict.split_first() {
        Some((0, offer)) => Ok((channel, offer == [1])),
        Some((&code, message)) => Err(SessionError::Refused {
            code,
            message: String::from_utf8_lossy(message).into_owned(),
        }),
        None => Err(SessionError::Malformed("verdict")),
    }
}

/// What the device's side ended with.
#[derive(Debug)]
pub enum Outcome<S> {
    /// Accepted: the channel and the grant.
    Granted(Channel<S>, Grant),
    /// Refused (the operator was told why).
    Refused {
        refusal: Refusal,
        /// The key that signed the session, when its signature checked.
        operator: Option<VerifyingKey>,
    },
}

/// The device's side: answers the handshake, proves the identity with `sign` (which signs
/// under the `remote-access` purpose), and decides the operator's request at `now`.
pub fn device<S: Read + Write>(
    stream: S,
    policy: &DevicePolicy,
    sign: &dyn Fn(&[u8]) -> Result<Signature, crate::signer::SignError>,
    now: u64,
) -> Result<Outcome<S>, SessionError> {
    device_offering(stream, policy, sign, now, &|_, _| false)
}

/// [`device`], with `offer` asked after a grant and before the verdict whether to offer the
/// direct path (the verdict is then `0 1`), given the operator's statement's bytes when
/// its hello carried one (unchecked here: PID 1 checks it).
pub fn device_offering<S: Read + Write>(
    mut stream: S,
    policy: &DevicePolicy,
    sign: &dyn Fn(&[u8]) -> Result<Signature, crate::signer::SignError>,
    now: u64,
    offer: &dyn Fn(&Grant, Option<&[u8]>) -> bool,
) -> Result<Outcome<S>, SessionError> {
    let prologue = prologue(&policy.device);
    let mut hs = noise(&policy.device)?
        .prologue(&prologue)
        .map_err(SessionError::Noise)?
        .build_responder()
        .map_err(SessionError::Noise)?;
    let mut buf = vec![0u8; frame::MAX_FRAME];
    let msg1 = frame::read_some(&mut stream)?;
    hs.read_message(&msg1, &mut buf)
        .map_err(SessionError::Noise)?;
    let n = hs
        .write_message(&[], &mut buf)
        .map_err(SessionError::Noise)?;
    frame::write(&mut stream, buf.get(..n).unwrap_or_default())?;
    let h = hs.get_handshake_hash().to_vec();
    let transport = hs.into_transport_mode().map_err(SessionError::Noise)?;
    let mut channel = Channel {
        stream,
        noise: Arc::new(Mutex::new(transport)),
    };
    channel.send(&sign(&[DEVICE_PROOF, &h].concat())?.to_bytes())?;
    let hello = channel
        .recv()?
        .ok_or(SessionError::Malformed("operator hello"))?;
    let parsed = parse_hello(&hello, &h);
    let statement = parsed.as_ref().ok().and_then(|hello| hello.statement);
    let (operator, decision) = match parsed {
        Err(refusal) => (None, Err(refusal)),
        Ok(Hello {
            key,
            service,
            capability,
            ..
        }) => match capability {
            Err(refusal) => (Some(key), Err(refusal)),
            Ok(capability) => {
                let request = Request {
                    capability: capability.as_ref(),
                    session_signer: key,
                    service: &service,
                };
                (Some(key), authorize(policy, &request, now))
            }
        },
    };
    match decision {
        Ok(grant) => {
            if offer(&grant, statement) {
                channel.send(&[0, 1])?;
            } else {
                channel.send(&[0])?;
            }
            Ok(Outcome::Granted(channel, grant))
        }
        Err(refusal) => {
            let mut verdict = vec![refusal.code()];
            verdict.extend_from_slice(refusal.to_string().as_bytes());
            channel.send(&verdict)?;
            Ok(Outcome::Refused { refusal, operator })
        }
    }
}

/// The operator's hello, its proof checked.
struct Hello<'a> {
    key: VerifyingKey,
    service: String,
    capability: Result<Option<SignedCapability>, Refusal>,
    /// The operator's statement's bytes, after [`STATEMENT_MARK`], when present.
    statement: Option<&'a [u8]>,
}

/// The operator's hello: key, proof over `h`, service, capability (maybe none), then maybe
/// the operator's statement.
fn parse_hello<'a>(hello: &'a [u8], h: &[u8]) -> Result<Hello<'a>, Refusal> {
    let key = hello
        .get(..32)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or(Refusal::NotTheOperator)?;
    let sig = hello
        .get(32..96)
        .and_then(|b| Signature::from_slice(b).ok())
        .ok_or(Refusal::NotTheOperator)?;
    if key
        .verify_strict(&[OPERATOR_PROOF, h].concat(), &sig)
        .is_err()
    {
        return Err(Refusal::NotTheOperator);
    }
    let len = usize::from(*hello.get(96).ok_or(Refusal::NoCapability)?);
    let service = hello
        .get(97..97 + len)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or(Refusal::NoCapability)?;
    let rest = hello.get(97 + len..).unwrap_or_default();
    let (rest, statement) = match rest.iter().position(|&b| b == STATEMENT_MARK) {
        Some(at) => (rest.get(..at).unwrap_or_default(), rest.get(at + 1..)),
        None => (rest, None),
    };
    let capability = if rest.is_empty() {
        Ok(None)
    } else {
        SignedCapability::from_json(rest)
            .map(Some)
            .map_err(|e| Refusal::Unreadable(e.to_string()))
    };
    Ok(Hello {
        key,
        service,
        capability,
        statement,
    })
}

impl<S: Read + Write> Channel<S> {
    /// Encrypts and sends `plain` (at most 65519 bytes).
    pub fn send(&mut self, plain: &[u8]) -> Result<(), SessionError> {
        let cipher = encrypt(&self.noise, plain)?;
        frame::write(&mut self.stream, &cipher)?;
        Ok(())
    }

    /// Receives and decrypts one frame; `None` at the end of the stream.
    pub fn recv(&mut self) -> Result<Option<Vec<u8>>, SessionError> {
        match frame::read(&mut self.stream)? {
            None => Ok(None),
            Some(cipher) => decrypt(&self.noise, &cipher).map(Some),
        }
    }
}

fn encrypt(noise: &Mutex<snow::TransportState>, plain: &[u8]) -> Result<Vec<u8>, SessionError> {
    let mut out = vec![0u8; plain.len() + 16];
    let mut state = noise
        .lock()
        .map_err(|_| SessionError::Malformed("poisoned state"))?;
    let n = state
        .write_message(plain, &mut out)
        .map_err(SessionError::Noise)?;
    out.truncate(n);
    Ok(out)
}

fn decrypt(noise: &Mutex<snow::TransportState>, cipher: &[u8]) -> Result<Vec<u8>, SessionError> {
    let mut out = vec![0u8; cipher.len()];
    let mut state = noise
        .lock()
        .map_err(|_| SessionError::Malformed("poisoned state"))?;
    let n = state
        .read_message(cipher, &mut out)
        .map_err(|_| SessionError::Decrypt)?;
    out.truncate(n);
    Ok(out)
}

impl Channel<TcpStream> {
    /// Copies `plain` (a local TCP connection) both ways through the session until both
    /// directions end; returns the bytes carried (to the peer, from the peer).
    pub fn splice(self, plain: TcpStream) -> Result<(u64, u64), SessionError> {
        let input = plain.try_clone()?;
        let result = self.splice_io(input, &plain, |out| {
            let _ = out.shutdown(Shutdown::Write);
        });
        if result.is_err() {
            let _ = plain.shutdown(Shutdown::Both);
        }
        result
    }

    /// Sends what `input` gives through the session (closing our direction at its end) and
    /// writes what comes back to `output`, calling `close` on it when the peer's direction
    /// ends, until both directions end; returns the bytes carried (to the peer, from the
    /// peer).
    pub fn splice_io<R: Read + Send + 'static, W: Write>(
        self,
        mut input: R,
        mut output: W,
        close: impl FnOnce(&mut W),
    ) -> Result<(u64, u64), SessionError> {
        let Channel { stream, noise } = self;
        // After the handshake a session may idle as long as its peers like.
        stream.set_read_timeout(None)?;
        // Closing waits (at most LINGER) for what is still queued to be sent and its
        // acknowledgement, so the direct path's pinhole closed after it cuts nothing
        // (docs/remote-access.md, "The direct path", step 5).
        rustix::net::sockopt::set_socket_linger(&stream, Some(LINGER)).map_err(io::Error::from)?;
        let mut up_out = stream.try_clone()?;
        let up_noise = Arc::clone(&noise);
        let up = std::thread::spawn(move || -> Result<u64, SessionError> {
            let mut buf = vec![0u8; MAX_PLAIN];
            let mut total = 0u64;
            loop {
                let n = input.read(&mut buf)?;
                if n == 0 {
                    let _ = up_out.shutdown(Shutdown::Write);
                    return Ok(total);
                }
                let cipher = encrypt(&up_noise, buf.get(..n).unwrap_or_default())?;
                frame::write(&mut up_out, &cipher)?;
                total += n as u64;
            }
        });
        let mut down_in = stream;
        let mut down = 0u64;
        let result = loop {
            match frame::read(&mut down_in) {
                Ok(None) => break Ok(()),
                Ok(Some(cipher)) => {
                    let plain = match decrypt(&noise, &cipher) {
                        Ok(p) => p,
                        Err(e) => break Err(e),
                    };
                    if let Err(e) = output.write_all(&plain).and_then(|()| output.flush()) {
                        break Err(e.into());
                    }
                    down += plain.len() as u64;
                }
                Err(e) => break Err(e.into()),
            }
        };
        // The peer's direction ended: say so to the local side before waiting for ours.
        close(&mut output);
        if result.is_err() {
            let _ = down_in.shutdown(Shutdown::Both);
        }
        let up = up
            .join()
            .map_err(|_| SessionError::Malformed("splice thread"))??;
        result.map(|()| (up, down))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{Capability, ServiceName, Subject};
    use std::os::unix::net::UnixStream;

    use crate::fixtures::{device_sign, key, NOW};

    fn policy() -> DevicePolicy {
        crate::fixtures::policy(&[("echo", "127.0.0.1:7")])
    }

    fn cap() -> SignedCapability {
        Capability::new(
            key(3).verifying_key(),
            Subject::Device(key(2).verifying_key()),
            vec![ServiceName::parse("echo").unwrap()],
            NOW - 10,
            NOW + 10,
            [1; 16],
        )
        .unwrap()
        .sign(&key(1))
    }

    /// A stream that records what is written to it.
    struct Recorder(UnixStream, Arc<Mutex<Vec<u8>>>);
    impl Read for Recorder {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.0.read(b)
        }
    }
    impl Write for Recorder {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.1.lock().unwrap().extend_from_slice(b);
            self.0.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn run_device(
        s: UnixStream,
        now: u64,
    ) -> std::thread::JoinHandle<Result<Outcome<UnixStream>, SessionError>> {
        std::thread::spawn(move || device(s, &policy(), &device_sign, now))
    }

    #[test]
    fn a_session_carries_data_both_ways_and_the_wire_has_no_plaintext() {
        let (a, b) = UnixStream::pair().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let dev = run_device(b, NOW);
        let mut op = operator(
            Recorder(a, log.clone()),
            &key(2).verifying_key(),
            &key(3),
            Some(&cap()),
            "echo",
        )
        .unwrap();
        let Outcome::Granted(mut ch, grant) = dev.join().unwrap().unwrap() else {
            panic!("refused")
        };
        assert_eq!(grant.service.as_str(), "echo");
        op.send(b"secret words").unwrap();
        assert_eq!(ch.recv().unwrap().unwrap(), b"secret words");
        ch.send(b"reply").unwrap();
        assert_eq!(op.recv().unwrap().unwrap(), b"reply");
        let wire = log.lock().unwrap().clone();
        assert!(!wire.windows(12).any(|w| w == b"secret words"));
        assert!(!wire.windows(4).any(|w| w == b"echo"));
    }

    #[test]
    fn a_replayed_session_fails_to_decrypt_at_the_device() {
        let (a, b) = UnixStream::pair().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let dev = run_device(b, NOW);
        operator(
            Recorder(a, log.clone()),
            &key(2).verifying_key(),
            &key(3),
            Some(&cap()),
            "echo",
        )
        .unwrap();
        assert!(matches!(dev.join().unwrap().unwrap(), Outcome::Granted(..)));
        // The attacker (a relay) replays every byte the operator sent to a new session.
        let (mut a, b) = UnixStream::pair().unwrap();
        let dev = run_device(b, NOW);
        a.write_all(&log.lock().unwrap()).unwrap();
        let err = dev.join().unwrap().unwrap_err();
        assert!(matches!(err, SessionError::Decrypt), "{err}");
    }

    #[test]
    fn a_device_without_the_identity_key_is_refused_by_the_operator() {
        let (a, b) = UnixStream::pair().unwrap();
        let impostor = |msg: &[u8]| Ok(key(9).sign(msg));
        let dev = std::thread::spawn(move || device(b, &policy(), &impostor, NOW).map(|_| ()));
        let err = operator(a, &key(2).verifying_key(), &key(3), Some(&cap()), "echo").unwrap_err();
        assert!(matches!(err, SessionError::DeviceProof), "{err}");
        drop(dev.join());
    }

    #[test]
    fn a_stolen_capability_without_the_operator_key_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        let dev = run_device(b, NOW);
        let err = operator(a, &key(2).verifying_key(), &key(8), Some(&cap()), "echo").unwrap_err();
        assert!(
            matches!(err, SessionError::Refused { code: 8, .. }),
            "{err}"
        );
        let Outcome::Refused { refusal, operator } = dev.join().unwrap().unwrap() else {
            panic!("granted")
        };
        assert_eq!(refusal, Refusal::NotTheOperator);
        assert_eq!(operator, Some(key(8).verifying_key()));
    }

    /// With the operator's observed address, the hello carries its statement after the
    /// capability; the device's `offer` gets exactly those bytes (a statement the operator
    /// key signed for this device, capability and address) and the capability is read as
    /// before. Without it, `offer` gets none.
    #[test]
    fn the_hello_carries_the_operators_statement_of_its_address() {
        use crate::pinhole::PeerStatement;
        let own: SocketAddrV4 = "198.51.100.6:40000".parse().unwrap();
        for given in [Some(own), None] {
            let (a, b) = UnixStream::pair().unwrap();
            let seen = Arc::new(Mutex::new(None));
            let kept = Arc::clone(&seen);
            let dev = std::thread::spawn(move || {
                let offer = |_: &Grant, statement: Option<&[u8]>| {
                    *kept.lock().unwrap() = Some(statement.map(<[u8]>::to_vec));
                    true
                };
                device_offering(b, &policy(), &device_sign, NOW, &offer).map(|_| ())
            });
            let (_, offered) = operator_offered(
                a,
                &key(2).verifying_key(),
                &key(3),
                Some(&cap()),
                "echo",
                given,
            )
            .unwrap();
            dev.join().unwrap().unwrap();
            assert!(offered);
            let seen = seen.lock().unwrap().clone().expect("offer was asked");
            match given {
                Some(own) => {
                    let statement = PeerStatement::from_bytes(&seen.unwrap()).unwrap();
                    assert_eq!(statement.peer, own);
                    assert_eq!(statement.device, key(2).verifying_key().to_bytes());
                    assert_eq!(statement.capability, cap().hash());
                    assert!(statement.signed_by(&key(3).verifying_key()));
                }
                None => assert_eq!(seen, None),
            }
        }
    }
}
