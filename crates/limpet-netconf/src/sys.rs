//! Every system call this crate makes. Mostly through `rustix` and `std`; `SO_BINDTODEVICE`,
//! which rustix does not wrap, is the one `unsafe` call, with its SAFETY note. Above this
//! module nothing sees raw flags, pointers or file descriptor numbers.

use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::sockopt::{self, Timeout};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// Longest interface name the kernel accepts (`IFNAMSIZ` less the terminating NUL).
pub const IFNAME_MAX: usize = 15;

/// Opens a `NETLINK_ROUTE` socket bound to a kernel-chosen port id, with both send and
/// receive timeouts so that no call on it can block for longer than `timeout`.
pub fn netlink_route_socket(timeout: Duration) -> io::Result<OwnedFd> {
    // NETLINK_ROUTE is protocol 0, which rustix spells `None`.
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))?;
    sockopt::set_socket_timeout(&fd, Timeout::Recv, Some(timeout))?;
    sockopt::set_socket_timeout(&fd, Timeout::Send, Some(timeout))?;
    Ok(fd)
}

/// Sends one datagram to the kernel (netlink port id 0).
pub fn netlink_send(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<()> {
    let sent = rustix::net::sendto(fd, bytes, SendFlags::empty(), &SocketAddrNetlink::new(0, 0))?;
    if sent == bytes.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short netlink send",
        ))
    }
}

/// Receives one datagram; `Ok(0)`-length reads are returned as they are. A timeout
/// surfaces as `WouldBlock`. Returns the datagram's full length, which may exceed
/// `buf.len()` (then it was truncated).
pub fn netlink_recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let (_, full_len) = rustix::net::recv(fd, buf, RecvFlags::TRUNC)?;
    Ok(full_len)
}

/// Opens a non-blocking UDP socket bound to `local` that only sends and receives through
/// the interface `ifname` (`SO_BINDTODEVICE`), with `SO_BROADCAST` and `SO_REUSEADDR` set.
pub fn udp_socket_on_device(ifname: &str, local: SocketAddrV4) -> io::Result<UdpSocket> {
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_socket_broadcast(&fd, true)?;
    // Bound to the device before the address, so no datagram from another interface can
    // be queued in between.
    bind_to_device(fd.as_fd(), ifname)?;
    rustix::net::bind(&fd, &local)?;
    Ok(UdpSocket::from(fd))
}

/// `setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname)`.
fn bind_to_device(fd: BorrowedFd<'_>, ifname: &str) -> io::Result<()> {
    let name = ifname.as_bytes();
    if name.is_empty() || name.len() > IFNAME_MAX || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid interface name",
        ));
    }
    let mut buf = [0u8; IFNAME_MAX + 1];
    buf[..name.len()].copy_from_slice(name);
    let len = libc::socklen_t::try_from(buf.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `fd` is a valid open socket borrowed for the duration of the call; `buf` is a
    // live, NUL-terminated array of `len` bytes that the kernel only reads during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            buf.as_ptr().cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
