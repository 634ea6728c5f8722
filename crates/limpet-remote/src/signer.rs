//! Who signs for the device: PID 1, over its socket (`SignRemoteAccess`,
//! limpet-install-api), so the identity's private key never enters the agent.
//!
//! Rules this module keeps:
//! - Each session's start and end is given to PID 1 (`RemoteSession`), which keeps it for
//!   the device's signed check-in ([`pid1_recorder`]).
//! - One request, one answer, on a `SOCK_SEQPACKET` connection opened for each signature
//!   (a restarted PID 1 server is found again); each wait is bounded ([`ANSWER_TIMEOUT`]).
//! - The device's public key comes from PID 1's `DeviceKey` answer; only the two proofs are
//!   asked to be signed; PID 1 refuses any other message and its refusal is
//!   the error's text, never a signature made up here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use limpet_install_api::remote::{PinholeAsk, PinholeClose, RemoteSession};
use limpet_install_api::{Request, Response, MAX_MESSAGE};
use rustix::net::{
    sockopt, AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// The longest wait for PID 1's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the device's signature could not be had.
#[derive(Debug, thiserror::Error)]
#[error("signing the remote-access proof: {0}")]
pub struct SignError(pub String);

/// Signs under the identity's `remote-access` purpose.
pub type Signer = Arc<dyn Fn(&[u8]) -> Result<Signature, SignError> + Send + Sync>;

/// Keeps a session's start or end where the device's check-in reports it.
pub type Recorder = Arc<dyn Fn(RemoteSession) + Send + Sync>;

/// Asks for a pinhole; the answer is the seconds it stays open.
pub type OpenPinhole = Arc<dyn Fn(&PinholeAsk) -> Result<u64, SignError> + Send + Sync>;
/// Says a session's direct path is over: its pinhole is closed.
pub type ClosePinhole = Arc<dyn Fn(&PinholeClose) -> Result<(), SignError> + Send + Sync>;

/// Opens and closes the pinholes of sessions' direct paths.
#[derive(Clone)]
pub struct Pinholer {
    /// Asks for a pinhole.
    pub open: OpenPinhole,
    /// Closes one.
    pub close: ClosePinhole,
}

impl std::fmt::Debug for Pinholer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinholer").finish_non_exhaustive()
    }
}

/// A pinholer that asks PID 1 over the socket at `path` (`OpenPinhole`, `ClosePinhole`);
/// PID 1's refusal is the error, word for word.
pub fn pid1_pinholer(path: &Path) -> Pinholer {
    let (at, path) = (path.to_owned(), path.to_owned());
    Pinholer {
        open: Arc::new(move |ask: &PinholeAsk| {
            match exchange(&at, &Request::OpenPinhole(ask.clone()))? {
                Response::Data(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| {
                        SignError(format!("PID 1's pinhole answer is {} bytes", bytes.len()))
                    }),
                other => Err(SignError(format!("PID 1 answered {other:?}"))),
            }
        }),
        close: Arc::new(move |close: &PinholeClose| {
            match exchange(&path, &Request::ClosePinhole(close.clone()))? {
                Response::Ok => Ok(()),
                other => Err(SignError(format!("PID 1 answered {other:?}"))),
            }
        }),
    }
}

/// A recorder that gives each record to PID 1 over the socket at `path`
/// (`RemoteSession`); a record PID 1 does not take is a line on standard output (the
/// console keeps it), never a session refused.
pub fn pid1_recorder(path: &Path) -> Recorder {
    let path = path.to_owned();
    Arc::new(
        move |record: RemoteSession| match exchange(&path, &Request::RemoteSession(record)) {
            Ok(Response::Ok) => {}
            Ok(other) => println!("limpet-remote: PID 1 did not record the session: {other:?}"),
            Err(e) => println!("limpet-remote: PID 1 did not record the session: {e}"),
        },
    )
}

/// A signer that asks PID 1 over the socket at `path`.
pub fn pid1(path: &Path) -> Signer {
    let path = path.to_owned();
    Arc::new(move |message: &[u8]| {
        let request = Request::SignRemoteAccess {
            message: message.to_vec(),
        };
        match exchange(&path, &request)? {
            Response::Signed { signature } => Ok(Signature::from_bytes(&signature)),
            other => Err(SignError(format!("PID 1 answered {other:?}"))),
        }
    })
}

/// [`device_key`], asked again after a growing pause (1 s doubling to
/// [`crate::device::MAX_BACKOFF`]) until PID 1 answers it, each failure a line on standard
/// output: a socket PID 1 does not serve (yet) idles the agent rather than ending it.
pub fn device_key_when_served(path: &Path) -> VerifyingKey {
    let mut pause = Duration::from_secs(1);
    loop {
        match device_key(path) {
            Ok(key) => return key,
            Err(e) => println!("limpet-remote: {e}; asking again in {}s", pause.as_secs()),
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(crate::device::MAX_BACKOFF);
    }
}

/// The device's identity public key, as PID 1's `DeviceKey` answers it.
pub fn device_key(path: &Path) -> Result<VerifyingKey, SignError> {
    match exchange(path, &Request::DeviceKey)? {
        Response::Data(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
            .ok()
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| {
                SignError(format!(
                    "PID 1's device key is not an Ed25519 public key ({} bytes)",
                    bytes.len()
                ))
            }),
        other => Err(SignError(format!("PID 1 answered {other:?}"))),
    }
}

/// One request and its answer; PID 1's refusal is an error with its text.
fn exchange(path: &Path, request: &Request) -> Result<Response, SignError> {
    let err = |op: &'static str| {
        let path = path.display().to_string();
        move |e: rustix::io::Errno| SignError(format!("{path}: {op}: {e}"))
    };
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(err("socket"))?;
    let addr = SocketAddrUnix::new(path).map_err(err("address"))?;
    rustix::net::connect(&fd, &addr).map_err(err("connect"))?;
    for which in [sockopt::Timeout::Recv, sockopt::Timeout::Send] {
        sockopt::set_socket_timeout(&fd, which, Some(ANSWER_TIMEOUT)).map_err(err("timeout"))?;
    }
    rustix::net::send(&fd, &request.encode(), SendFlags::NOSIGNAL).map_err(err("send"))?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let (n, _) = rustix::net::recv(&fd, &mut buf, RecvFlags::empty()).map_err(err("receive"))?;
    match Response::decode(buf.get(..n).unwrap_or_default()) {
        Ok(Response::Error(reason)) => Err(SignError(format!("PID 1 refused: {reason}"))),
        Ok(answer) => Ok(answer),
        Err(e) => Err(SignError(format!("PID 1's answer: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::SocketType;

    /// A one-answer-per-connection stand-in for PID 1 that answers every request with
    /// `answer`.
    fn pid1_answering(answer: Response) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid1.sock");
        let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
        rustix::net::bind(&fd, &SocketAddrUnix::new(&path).unwrap()).unwrap();
        rustix::net::listen(&fd, 4).unwrap();
        std::thread::spawn(move || {
            while let Ok(conn) = rustix::net::accept(&fd) {
                let mut buf = vec![0u8; MAX_MESSAGE];
                let _ = rustix::net::recv(&conn, &mut buf, RecvFlags::empty());
                let _ = rustix::net::send(&conn, &answer.encode(), SendFlags::NOSIGNAL);
            }
        });
        (dir, path)
    }

    /// PID 1's refusal is the error, word for word; no signature is made up.
    #[test]
    fn pid1_refusals_and_missing_keys_are_errors() {
        let (_dir, path) = pid1_answering(Response::Error("not a remote-access proof".into()));
        let e = pid1(&path)(b"anything").unwrap_err().to_string();
        assert_eq!(
            e,
            "signing the remote-access proof: PID 1 refused: not a remote-access proof"
        );
        let (_dir, path) = pid1_answering(Response::Ok);
        let e = device_key(&path).unwrap_err().to_string();
        assert!(e.ends_with("PID 1 answered Ok"), "{e}");
        let (_dir, path) = pid1_answering(Response::Data(vec![7; 31]));
        let e = device_key(&path).unwrap_err().to_string();
        assert!(e.ends_with("not an Ed25519 public key (31 bytes)"), "{e}");
        let e = device_key(std::path::Path::new("/nonexistent/pid1.sock"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/pid1.sock: connect"), "{e}");
    }
}
