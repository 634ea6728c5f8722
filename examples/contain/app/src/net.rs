//! Socket helpers over `rustix` (no `unsafe` here): what an attacker needs that std does not
//! offer — a chosen source port before connecting, non-blocking connects in bulk, ICMP
//! echo sockets — and one way of naming how an attempt ended.

use std::fmt;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{
    bind, connect, ipproto, sendto, socket_with, sockopt, AddressFamily, SendFlags, SocketFlags,
    SocketType,
};

/// How one attempt ended, from the attacker's side. The sink hosts' counters are the
/// ground truth; this is what the task itself could tell.
#[derive(Debug)]
pub enum Outcome {
    /// The attempt got nowhere: the errno, `timed out`, or what was missing.
    Blocked(String),
    /// It got through: what the attacker gained.
    Escaped(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Blocked(how) => write!(f, "blocked ({how})"),
            Outcome::Escaped(what) => write!(f, "ESCAPED: {what}"),
        }
    }
}

/// The symbolic name of an errno, e.g. `EPERM`.
pub fn errno_name(e: Errno) -> String {
    let name = match e {
        Errno::PERM => "EPERM",
        Errno::ACCESS => "EACCES",
        Errno::TIMEDOUT => "ETIMEDOUT",
        Errno::CONNREFUSED => "ECONNREFUSED",
        Errno::NETUNREACH => "ENETUNREACH",
        Errno::HOSTUNREACH => "EHOSTUNREACH",
        Errno::AGAIN => "EAGAIN",
        Errno::INPROGRESS => "EINPROGRESS",
        Errno::AFNOSUPPORT => "EAFNOSUPPORT",
        Errno::PROTONOSUPPORT => "EPROTONOSUPPORT",
        Errno::ADDRINUSE => "EADDRINUSE",
        Errno::ADDRNOTAVAIL => "EADDRNOTAVAIL",
        Errno::INVAL => "EINVAL",
        Errno::NOBUFS => "ENOBUFS",
        Errno::MFILE => "EMFILE",
        other => return format!("errno {}", other.raw_os_error()),
    };
    name.to_owned()
}

/// An std error named as its errno where it has one (`timed out` for a read timeout).
pub fn io_name(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => match e.raw_os_error() {
            Some(raw) => errno_name(Errno::from_raw_os_error(raw)),
            None => e.to_string(),
        },
    }
}

/// A non-blocking TCP socket, bound to `source_port` unless it is 0.
pub fn tcp_socket(source_port: u16) -> Result<OwnedFd, Errno> {
    let fd = socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    if source_port != 0 {
        sockopt::set_socket_reuseaddr(&fd, true)?;
        bind(&fd, &SocketAddrV4::new([0, 0, 0, 0].into(), source_port))?;
    }
    Ok(fd)
}

/// Starts a connect on a non-blocking socket: `Ok` when it is under way or done.
pub fn start_connect(fd: &OwnedFd, to: SocketAddrV4) -> Result<(), Errno> {
    match connect(fd, &to) {
        Ok(()) | Err(Errno::INPROGRESS) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the connect started on `fd` has completed, waiting at most `wait`:
/// `Ok(true)` connected, `Ok(false)` still pending, `Err` refused with that errno.
pub fn connected_within(fd: &OwnedFd, wait: Duration) -> Result<bool, Errno> {
    let timeout = timespec(wait);
    let mut fds = [PollFd::new(fd, PollFlags::OUT)];
    let ready = loop {
        match poll(&mut fds, Some(&timeout)) {
            Err(Errno::INTR) => continue,
            other => break other?,
        }
    };
    if ready == 0 {
        return Ok(false);
    }
    match sockopt::socket_error(fd)? {
        Ok(()) => Ok(true),
        Err(e) => Err(e),
    }
}

/// One TCP connect from `source_port` (0: any) to `to`, waiting at most `wait`.
pub fn tcp_attempt(source_port: u16, to: SocketAddrV4, wait: Duration) -> Outcome {
    let fd = match tcp_socket(source_port) {
        Ok(fd) => fd,
        Err(e) => return Outcome::Blocked(format!("socket: {}", errno_name(e))),
    };
    if let Err(e) = start_connect(&fd, to) {
        return Outcome::Blocked(errno_name(e));
    }
    match connected_within(&fd, wait) {
        Ok(true) => Outcome::Escaped(format!("connected to {to}")),
        Ok(false) => Outcome::Blocked("timed out".into()),
        Err(e) => Outcome::Blocked(errno_name(e)),
    }
}

/// One UDP datagram from `source_port` to `to`.
pub fn udp_attempt(source_port: u16, to: SocketAddrV4, payload: &[u8]) -> Outcome {
    let socket = match UdpSocket::bind(SocketAddrV4::new([0, 0, 0, 0].into(), source_port)) {
        Ok(s) => s,
        Err(e) => return Outcome::Blocked(format!("bind: {}", io_name(&e))),
    };
    match socket.send_to(payload, to) {
        // Only the sink can tell whether it arrived; the kernel let it leave the socket.
        Ok(_) => Outcome::Escaped(format!("sent {} bytes to {to}", payload.len())),
        Err(e) => Outcome::Blocked(io_name(&e)),
    }
}

/// An ICMP echo request to `to` through an unprivileged ping socket (identifier
/// `ident`), waiting at most `wait` for the reply.
pub fn ping_attempt(to: SocketAddrV4, ident: u16, wait: Duration) -> Outcome {
    let fd = match socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(ipproto::ICMP),
    ) {
        Ok(fd) => fd,
        Err(e) => return Outcome::Blocked(format!("socket: {}", errno_name(e))),
    };
    // A ping socket's "port" is the echo identifier.
    if let Err(e) = bind(&fd, &SocketAddrV4::new([0, 0, 0, 0].into(), ident)) {
        return Outcome::Blocked(format!("bind: {}", errno_name(e)));
    }
    // Type 8 (echo request), code 0; the kernel fills in identifier and checksum.
    let request = [
        8, 0, 0, 0, 0, 0, 0, 1, b'c', b'o', b'n', b't', b'a', b'i', b'n', b'!',
    ];
    if let Err(e) = sendto(&fd, &request, SendFlags::empty(), &to) {
        return Outcome::Blocked(errno_name(e));
    }
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    match poll(&mut fds, Some(&timespec(wait))) {
        Ok(0) => Outcome::Blocked("no reply".into()),
        Ok(_) => Outcome::Escaped(format!("echo reply from {}", to.ip())),
        Err(e) => Outcome::Blocked(errno_name(e)),
    }
}

/// Sleeps until `start + i / per_second`: spreads `i` attempts evenly, so that a bounded
/// flood lasts its whole window instead of spending its budget in the first moments.
pub fn pace(start: Instant, i: u64, per_second: u64) {
    let due = start + Duration::from_micros(i.saturating_mul(1_000_000) / per_second.max(1));
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}
