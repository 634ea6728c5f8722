//! Links, IPv4 addresses and default routes over rtnetlink (`NETLINK_ROUTE`), with messages
//! encoded by hand in [`msg`].
//!
//! Rules this module keeps:
//! - Every request asks for an acknowledgement and waits for the one with its own sequence
//!   number; the socket has a receive timeout ([`REQUEST_TIMEOUT`]) and the wait reads at
//!   most [`MAX_DATAGRAMS`] datagrams, so no call blocks indefinitely.
//! - Addresses and routes are created with `NLM_F_REPLACE`, so applying the same lease twice
//!   (a renewal) is idempotent.
//! - Every error names the operation, the interface and the kernel's errno.

pub mod msg;

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::sys;

/// How long one request may wait for the kernel's answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Most datagrams read while waiting for one answer (a dump of a busy host's addresses
/// fits in a few; this only bounds a misbehaving kernel or stray multicast).
pub const MAX_DATAGRAMS: usize = 4096;

/// Receive buffer size: the kernel never puts more than 32 KiB in one netlink datagram.
const RECV_BUF: usize = 32 * 1024;

/// A failed rtnetlink operation.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The netlink socket could not be opened.
    #[error("cannot open rtnetlink socket")]
    Open {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The interface does not exist.
    #[error("no interface named {interface:?}")]
    NoSuchInterface {
        /// Interface name asked for.
        interface: String,
    },
    /// The interface name cannot be a Linux interface name.
    #[error("invalid interface name {interface:?}")]
    InvalidName {
        /// Interface name asked for.
        interface: String,
    },
    /// The kernel refused the request, or the socket failed while sending or receiving.
    #[error("{op} on {interface}: {source}")]
    Kernel {
        /// What was being done (`"set link up"`, `"add address 192.0.2.5/24"`...).
        op: String,
        /// Interface name.
        interface: String,
        /// The errno, as an `io::Error` (`raw_os_error()` gives the number).
        #[source]
        source: io::Error,
    },
    /// The kernel's answer could not be decoded.
    #[error("{op} on {interface}: malformed answer")]
    Malformed {
        /// What was being done.
        op: String,
        /// Interface name.
        interface: String,
        /// Decoding error.
        #[source]
        source: msg::DecodeError,
    },
    /// No answer with the request's sequence number came within the bounds.
    #[error("{op} on {interface}: no answer from the kernel")]
    NoAnswer {
        /// What was being done.
        op: String,
        /// Interface name.
        interface: String,
    },
}

/// One network interface, looked up by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Hardware address, for Ethernet-like links.
    pub mac: Option<[u8; 6]>,
    /// Whether the link is administratively up (`IFF_UP`).
    pub up: bool,
}

/// An open rtnetlink socket.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

/// Kernel lifetimes to put on an address so that it disappears by itself when a lease
/// runs out, even if nobody removes it.
pub use msg::Lifetimes as AddrLifetimes;

impl Netlink {
    /// Opens the socket.
    pub fn open() -> Result<Self, LinkError> {
        let fd = sys::netlink_route_socket(REQUEST_TIMEOUT)
            .map_err(|source| LinkError::Open { source })?;
        Ok(Self {
            fd,
            seq: crate::rand::u32() & 0x00ff_ffff,
            buf: vec![0; RECV_BUF],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Looks up the interface called `name`.
    pub fn link(&mut self, name: &str) -> Result<Link, LinkError> {
        if name.is_empty() || name.len() > sys::IFNAME_MAX || name.contains(['\0', '/']) {
            return Err(LinkError::InvalidName {
                interface: name.to_owned(),
            });
        }
        let seq = self.next_seq();
        let op = "look up link";
        let mut found = None;
        let res = self.transact(op, name, &msg::get_link_by_name(seq, name), seq, |m| {
            if m.msg_type == msg::RTM_NEWLINK {
                found = Some(msg::parse_link(m.payload)?);
            }
            Ok(())
        });
        match res {
            Err(LinkError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                return Err(LinkError::NoSuchInterface {
                    interface: name.to_owned(),
                })
            }
            other => other?,
        }
        let info = found.ok_or_else(|| LinkError::NoSuchInterface {
            interface: name.to_owned(),
        })?;
        Ok(Link {
            name: name.to_owned(),
            index: info.index,
            mac: info.mac,
            up: msg::is_up(info.flags),
        })
    }

    /// The interface index of `name`.
    pub fn ifindex(&mut self, name: &str) -> Result<u32, LinkError> {
        Ok(self.link(name)?.index)
    }

    /// Sets the link administratively up (works for `lo` too).
    pub fn set_up(&mut self, link: &Link) -> Result<(), LinkError> {
        let seq = self.next_seq();
        self.transact(
            "set link up",
            &link.name,
            &msg::set_link_up(seq, link.index),
            seq,
            |_| Ok(()),
        )
    }

    /// Adds `addr` (address and prefix length) to `link`, or replaces it if present, with
    /// the subnet's broadcast address (none for /31 and /32) and optional lifetimes.
    pub fn replace_address(
        &mut self,
        link: &Link,
        addr: Ipv4Net,
        lifetimes: Option<AddrLifetimes>,
    ) -> Result<(), LinkError> {
        let broadcast = (addr.prefix_len() < 31).then(|| addr.broadcast());
        let seq = self.next_seq();
        let req = msg::new_address(
            seq,
            link.index,
            addr.addr(),
            addr.prefix_len(),
            broadcast,
            lifetimes,
        );
        self.transact(
            &format!("add address {addr}"),
            &link.name,
            &req,
            seq,
            |_| Ok(()),
        )
    }

    /// Removes `addr` from `link` (a lost lease). The kernel also removes the routes that
    /// depended on it.
    pub fn delete_address(&mut self, link: &Link, addr: Ipv4Net) -> Result<(), LinkError> {
        let seq = self.next_seq();
        let req = msg::del_address(seq, link.index, addr.addr(), addr.prefix_len());
        self.transact(
            &format!("delete address {addr}"),
            &link.name,
            &req,
            seq,
            |_| Ok(()),
        )
    }

    /// The IPv4 addresses on `link`.
    pub fn addresses(&mut self, link: &Link) -> Result<Vec<Ipv4Net>, LinkError> {
        let seq = self.next_seq();
        let mut out = Vec::new();
        self.transact(
            "list addresses",
            &link.name,
            &msg::dump_addresses(seq),
            seq,
            |m| {
                if m.msg_type == msg::RTM_NEWADDR {
                    if let Some(a) = msg::parse_addr(m.payload)? {
                        if a.index == link.index {
                            if let Ok(net) = Ipv4Net::new(a.addr, a.prefix) {
                                out.push(net);
                            }
                        }
                    }
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// Adds the default route via `gateway` through `link` in the main table, replacing an
    /// existing default route. The gateway must be reachable on one of the link's subnets.
    pub fn replace_default_route(
        &mut self,
        link: &Link,
        gateway: Ipv4Addr,
    ) -> Result<(), LinkError> {
        let seq = self.next_seq();
        let req = msg::new_default_route(seq, link.index, gateway);
        self.transact(
            &format!("add default route via {gateway}"),
            &link.name,
            &req,
            seq,
            |_| Ok(()),
        )
    }

    /// Removes the default route through `link`; `ESRCH` (no such route) is not an error.
    pub fn delete_default_route(&mut self, link: &Link) -> Result<(), LinkError> {
        let seq = self.next_seq();
        let req = msg::del_default_route(seq, link.index);
        match self.transact("delete default route", &link.name, &req, seq, |_| Ok(())) {
            Err(LinkError::Kernel { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {
                Ok(())
            }
            other => other,
        }
    }

    /// Sends `req` and reads answers until the acknowledgement (or `NLMSG_DONE` for a dump)
    /// with sequence number `seq`, passing every other message with that number to `each`.
    fn transact(
        &mut self,
        op: &str,
        interface: &str,
        req: &[u8],
        seq: u32,
        mut each: impl FnMut(&msg::Message<'_>) -> Result<(), msg::DecodeError>,
    ) -> Result<(), LinkError> {
        let kernel = |source: io::Error| LinkError::Kernel {
            op: op.to_owned(),
            interface: interface.to_owned(),
            source,
        };
        let malformed = |source| LinkError::Malformed {
            op: op.to_owned(),
            interface: interface.to_owned(),
            source,
        };
        sys::netlink_send(self.fd.as_fd(), req).map_err(kernel)?;
        for _ in 0..MAX_DATAGRAMS {
            let n = match sys::netlink_recv(self.fd.as_fd(), &mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(kernel(e)),
            };
            if n > self.buf.len() {
                return Err(kernel(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "netlink datagram truncated",
                )));
            }
            let Some(data) = self.buf.get(..n) else { break };
            for m in msg::messages(data).map_err(malformed)? {
                if m.seq != seq {
                    continue; // an answer to an earlier, abandoned request
                }
                match m.msg_type {
                    msg::NLMSG_ERROR => {
                        let code = msg::error_code(m.payload).map_err(malformed)?;
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(kernel(io::Error::from_raw_os_error(code)))
                        };
                    }
                    msg::NLMSG_DONE => return Ok(()),
                    _ => each(&m).map_err(malformed)?,
                }
            }
        }
        Err(LinkError::NoAnswer {
            op: op.to_owned(),
            interface: interface.to_owned(),
        })
    }
}
