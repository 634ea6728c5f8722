//! The direct path: TCP simultaneous open between the operator and the device, each from
//! the local port of its connection to the relay, to the address the relay observed of the
//! other (docs/remote-access.md, "The direct path").
//!
//! Rules this module keeps:
//! - Both relay connections and both direct attempts are made from sockets with
//!   `SO_REUSEADDR`, so the direct attempt binds the local port the relay connection holds;
//!   a NAT that keeps ports (Linux masquerade without `random`) then maps it to the port the
//!   relay observed, and the other side's SYN matches its conntrack entry.
//! - An attempt is bounded ([`PUNCH_TIME`]); a refused one (a NAT that answers RST) is tried
//!   again after [`RETRY`], within the same bound.
//! - The device's pinhole leads only to the address the operator signed
//!   ([`crate::pinhole::PeerStatement`], in the relay session's hello): the operator's own,
//!   as the relay observed it and told it.
//! - The direct connection carries a session of its own, with the same Noise handshake,
//!   proofs and decision as the relay's ([`crate::session`]): the path changes nothing the
//!   device trusts. The operator says over the relay session which path it took
//!   ([`WORD_DIRECT`] or [`WORD_RELAY`]); the relay session is the fallback.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};

use crate::capability::SignedCapability;
use crate::relay::{self, AskError};
use crate::session::{self, Channel, SessionError};

/// The longest a direct attempt takes before the relay path is used.
pub const PUNCH_TIME: Duration = Duration::from_secs(3);
/// The pause before a refused attempt is made again.
pub const RETRY: Duration = Duration::from_millis(100);
/// The operator's word on the relay session: it took the direct path.
pub const WORD_DIRECT: u8 = 1;
/// The operator's word on the relay session: it stays on the relay.
pub const WORD_RELAY: u8 = 0;

/// The path a session took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Directly to the peer's observed address.
    Direct(SocketAddrV4),
    /// Through the relay.
    Relay,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Direct(peer) => write!(f, "direct to {peer}"),
            Route::Relay => f.write_str("relay"),
        }
    }
}

/// Why an operator's session did not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("relay {relay}: cannot connect")]
    Dial {
        relay: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Ask(#[from] AskError),
    #[error(transparent)]
    Session(#[from] SessionError),
}

fn tcp_socket() -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    Ok(fd)
}

/// A TCP connection to `to` from a socket with `SO_REUSEADDR` (module rules).
pub fn dial(to: SocketAddr) -> io::Result<TcpStream> {
    let fd = tcp_socket()?;
    rustix::net::connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// [`dial`] to the first IPv4 address `host:port` resolves to.
pub fn dial_host(host_port: &str) -> io::Result<TcpStream> {
    let to = host_port
        .to_socket_addrs()?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no IPv4 address"))?;
    dial(to)
}

/// The direct attempt: connects from `local_port` to `peer` until it succeeds or `within`
/// ends (module rules).
pub fn punch(local_port: u16, peer: SocketAddrV4, within: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no direct connection to {peer} within {within:?}"),
            ));
        }
        let fd = tcp_socket()?;
        let local = SocketAddr::from(([0, 0, 0, 0], local_port));
        rustix::net::bind(&fd, &local)?;
        // A blocking connect with a send timeout ends with EINPROGRESS at the timeout.
        sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, Some(left))?;
        match rustix::net::connect(&fd, &SocketAddr::V4(peer)) {
            Ok(()) => {
                sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, None)?;
                return Ok(TcpStream::from(fd));
            }
            Err(rustix::io::Errno::CONNREFUSED) | Err(rustix::io::Errno::CONNRESET) => {
                drop(fd);
                std::thread::sleep(RETRY.min(deadline.saturating_duration_since(Instant::now())));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The operator's side of a session on either path: asks `relay` for `device`, runs the
/// session over the relay (its hello carrying, when the capability grants `direct`, the
/// operator's signed statement of the address the relay observed of it), and when the
/// device offers the direct path, tries it for at most `within`, runs the session again
/// over it and tells the device over the relay session which path it took.
pub fn operator(
    relay: SocketAddr,
    device: &VerifyingKey,
    key: &SigningKey,
    capability: &SignedCapability,
    service: &str,
    within: Duration,
) -> Result<(Channel<TcpStream>, Route), ConnectError> {
    let dial_err = |source| ConnectError::Dial { relay, source };
    let want = capability.capability.direct;
    let mut stream = if want {
        dial(relay).map_err(dial_err)?
    } else {
        TcpStream::connect(relay).map_err(dial_err)?
    };
    // The relay's answer and the handshake are bounded; the session then idles at will.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(SessionError::Io)?;
    let observed = if want {
        relay::ask_direct(&mut stream, device)?
    } else {
        relay::ask(&mut stream, device)?;
        None
    };
    let local_port = stream.local_addr().map_err(SessionError::Io)?.port();
    // Our own observed address goes to the device signed: PID 1 opens its pinhole to it.
    let own = observed.map(|o| o.operator);
    let (mut channel, offered) =
        session::operator_offered(stream, device, key, Some(capability), service, own)?;
    let Some(peer) = observed.map(|o| o.device).filter(|_| offered) else {
        return Ok((channel, Route::Relay));
    };
    match punch(local_port, peer, within) {
        Ok(direct) => {
            direct
                .set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(SessionError::Io)?;
            channel.send(&[WORD_DIRECT])?;
            drop(channel);
            let channel = session::operator(direct, device, key, Some(capability), service)?;
            Ok((channel, Route::Direct(peer)))
        }
        Err(_) => {
            channel.send(&[WORD_RELAY])?;
            Ok((channel, Route::Relay))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    /// The direct attempt binds the port a live connection holds (both with
    /// `SO_REUSEADDR`), and is refused within its bound when nothing answers.
    #[test]
    fn the_attempt_reuses_the_relay_connections_port_and_is_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = listener.local_addr().unwrap();
        let held = dial(relay).unwrap();
        let _accepted = listener.accept().unwrap();
        let port = held.local_addr().unwrap().port();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(to) = other.local_addr().unwrap() else {
            panic!("not v4")
        };
        let direct = punch(port, to, Duration::from_secs(2)).unwrap();
        assert_eq!(direct.local_addr().unwrap().port(), port);
        // Nothing listens at another port: refused, tried again, ended by the bound.
        let gone = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = SocketAddrV4::new(Ipv4Addr::LOCALHOST, gone.local_addr().unwrap().port());
        drop(gone);
        let err = punch(port, closed, Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }
}
