//! The UDP socket that carries the client's messages: bound to `0.0.0.0:68` on one
//! interface (`SO_BINDTODEVICE`) with `SO_BROADCAST`, non-blocking. Because the client sets
//! the BROADCAST flag until it has an address, servers broadcast OFFER and ACK, and this
//! socket receives them without a raw (`AF_PACKET`) socket.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};

use super::{wire, Transmit};
use crate::sys;

/// A failed operation on the DHCP socket.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The socket could not be opened or bound.
    #[error("cannot bind DHCP client socket on {interface}")]
    Bind {
        /// Interface name.
        interface: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A datagram could not be sent.
    #[error("cannot send DHCP message on {interface} to {dst}")]
    Send {
        /// Interface name.
        interface: String,
        /// Destination.
        dst: SocketAddrV4,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Receiving failed for a reason other than "nothing to read".
    #[error("cannot receive DHCP message on {interface}")]
    Recv {
        /// Interface name.
        interface: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The client's socket on one interface.
#[derive(Debug)]
pub struct DhcpSocket {
    socket: UdpSocket,
    interface: String,
}

impl DhcpSocket {
    /// Opens the socket on interface `ifname` (needs `CAP_NET_RAW` for `SO_BINDTODEVICE`).
    pub fn bind(ifname: &str) -> Result<Self, SocketError> {
        let local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, wire::CLIENT_PORT);
        let socket =
            sys::udp_socket_on_device(ifname, local).map_err(|source| SocketError::Bind {
                interface: ifname.to_owned(),
                source,
            })?;
        Ok(Self {
            socket,
            interface: ifname.to_owned(),
        })
    }

    /// Sends one datagram. A full socket buffer (`WouldBlock`) is reported as an error;
    /// the client retransmits on its own schedule.
    pub fn send(&self, t: &Transmit) -> Result<(), SocketError> {
        self.socket
            .send_to(&t.bytes, t.dst)
            .map(|_| ())
            .map_err(|source| SocketError::Send {
                interface: self.interface.clone(),
                dst: t.dst,
                source,
            })
    }

    /// Receives one datagram into `buf` (size it [`wire::MAX_LEN`]); `Ok(None)` when none
    /// is waiting. Datagrams not from port 67 are skipped (reported as `Ok(Some(0))`,
    /// which the client ignores as malformed).
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<usize>, SocketError> {
        match self.socket.recv_from(buf) {
            Ok((n, SocketAddr::V4(from))) if from.port() == wire::SERVER_PORT => Ok(Some(n)),
            Ok(_) => Ok(Some(0)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(source) => Err(SocketError::Recv {
                interface: self.interface.clone(),
                source,
            }),
        }
    }
}

impl AsFd for DhcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}
