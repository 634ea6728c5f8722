//! The netlink socket: the only code here that makes system calls.
//!
//! Everything goes through `rustix`, so there is no `unsafe` in this crate. Each call
//! returns `io::Result` at once; callers add the context.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::sockopt;
use rustix::net::{
    bind, recv, sendto, socket_with, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType,
};

/// A `NETLINK_NETFILTER` socket bound to a kernel-chosen port id.
#[derive(Debug)]
pub struct NetlinkSocket {
    fd: OwnedFd,
}

impl NetlinkSocket {
    /// Opens and binds the socket, with `timeout` on every receive.
    pub fn open(timeout: Duration) -> io::Result<NetlinkSocket> {
        let fd = socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(rustix::net::netlink::NETFILTER),
        )?;
        bind(&fd, &SocketAddrNetlink::new(0, 0))?;
        sockopt::set_socket_timeout(&fd, sockopt::Timeout::Recv, Some(timeout))?;
        Ok(NetlinkSocket { fd })
    }

    /// Makes room for `bytes` in the send and receive buffers: a batch goes out as one
    /// datagram, and its acknowledgements all arrive before we read. `_force` variants
    /// (CAP_NET_ADMIN, which PID 1 has) lift the sysctl limits; without the capability the
    /// plain ones are tried.
    pub fn reserve(&self, bytes: usize) -> io::Result<()> {
        let have = sockopt::socket_send_buffer_size(&self.fd)?;
        if have < bytes {
            sockopt::set_socket_send_buffer_size_force(&self.fd, bytes)
                .or_else(|_| sockopt::set_socket_send_buffer_size(&self.fd, bytes))?;
        }
        let have = sockopt::socket_recv_buffer_size(&self.fd)?;
        if have < bytes {
            sockopt::set_socket_recv_buffer_size_force(&self.fd, bytes)
                .or_else(|_| sockopt::set_socket_recv_buffer_size(&self.fd, bytes))?;
        }
        Ok(())
    }

    /// Sends one datagram to the kernel.
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let n = sendto(
            &self.fd,
            bytes,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )?;
        if n != bytes.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "netlink datagram sent in part",
            ));
        }
        Ok(())
    }

    /// Receives one datagram into `buf`, returning its length. A datagram longer than
    /// `buf` is an error, never silently cut.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, full) = recv(&self.fd, &mut *buf, RecvFlags::TRUNC)?;
        if full > n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "netlink datagram larger than the receive buffer",
            ));
        }
        Ok(n)
    }
}
