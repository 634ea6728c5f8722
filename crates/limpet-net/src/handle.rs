//! [`Nft`]: PID 1's handle on table `inet limpet`, owning the netlink socket.
//!
//! Rules this module keeps:
//! - Every change is one batch, applied by the kernel atomically or not at all; every
//!   message of it asks for an acknowledgement and every acknowledgement is read before the
//!   call returns. A rejected batch names the first object the kernel refused.
//! - Nothing blocks for ever: each receive has [`REPLY_TIMEOUT`], and each loop is bounded.

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::counters::Counters;
use crate::nft::batch::{dump_rules, Batch, Encoded};
use crate::nft::consts::{NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP};
use crate::nft::object::{ObjectRef, SetElem};
use crate::nft::reply::{self, DumpedRule};
use crate::nft::wire::{self, WireError};
use crate::ruleset::{lan_elements, Ruleset, SET_DNS, SET_LAN, TABLE};
use crate::sys::NetlinkSocket;

/// How long the kernel has to answer one receive.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive buffer for one datagram: netlink dumps fill at most 32 KiB per datagram.
const RECV_BUF: usize = 64 * 1024;
/// Socket buffer room per batch message: an acknowledgement's skb takes well under this.
const ROOM_PER_MESSAGE: usize = 2048;
/// Most datagrams one dump may take: far above a ruleset's size, a bound on a confused
/// kernel conversation.
const MAX_DUMP_DATAGRAMS: usize = 10_000;

/// Errors talking to nf_tables.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The socket could not be opened or set up.
    #[error("opening the netfilter netlink socket")]
    Open(#[source] io::Error),
    /// A request could not be sent.
    #[error("sending {what} to the kernel")]
    Send {
        /// What was being sent.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A reply could not be received (a timeout included).
    #[error("receiving the kernel's reply to {what}")]
    Recv {
        /// What was being answered.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A reply could not be read.
    #[error("reading the kernel's reply to {what}")]
    Malformed {
        /// What was being answered.
        what: &'static str,
        /// The error.
        #[source]
        source: WireError,
    },
    /// The kernel refused an object; the batch was not applied.
    #[error("the kernel rejected {object} (errno {errno}; {rejected} object(s) rejected in all)")]
    Rejected {
        /// The first object refused, in batch order.
        object: ObjectRef,
        /// Its errno.
        errno: i32,
        /// How many objects were refused.
        rejected: usize,
        /// The errno as an error.
        #[source]
        source: io::Error,
    },
}

/// The handle on table `inet limpet`.
#[derive(Debug)]
pub struct Nft {
    sock: NetlinkSocket,
    seq: u32,
}

impl Nft {
    /// Opens a netlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Nft, NftError> {
        let sock = NetlinkSocket::open(REPLY_TIMEOUT).map_err(NftError::Open)?;
        Ok(Nft { sock, seq: 1 })
    }

    fn batch(&mut self) -> Batch {
        Batch::new(TABLE, self.seq)
    }

    /// Replaces table `inet limpet` with `r`, atomically: the old table (if any) is deleted
    /// and the new one created in one batch, so there is no moment without a policy.
    pub fn install(&mut self, r: &Ruleset) -> Result<(), NftError> {
        let mut b = self.batch();
        // NEWTABLE without NLM_F_EXCL makes the deletion valid whether or not the table
        // existed; nf_tables' DESTROYTABLE (ignore a missing table) needs Linux 6.3.
        b.new_table();
        b.del_table();
        b.new_table();
        for s in &r.sets {
            b.new_set(s);
        }
        for c in &r.chains {
            b.new_chain(c);
        }
        for (i, rule) in r.rules.iter().enumerate() {
            b.new_rule(i, rule);
        }
        self.transact(b.finish(), "the ruleset")
    }

    /// Adds addresses to an expiring set (a DNS name's `n<i>`), each for its `ttl`. An
    /// address already there gets the new timeout: the batch adds it (a no-op if present),
    /// deletes it and adds it afresh, since Linux before 6.10 keeps the old timeout when an
    /// existing element is added again.
    pub fn add_set_elements(
        &mut self,
        set: &str,
        elems: &[(Ipv4Addr, Duration)],
    ) -> Result<(), NftError> {
        // One entry per address (the longest ttl): deleting one twice would fail.
        let mut unique: BTreeMap<Ipv4Addr, Duration> = BTreeMap::new();
        for (a, ttl) in elems {
            let e = unique.entry(*a).or_insert(*ttl);
            *e = (*e).max(*ttl);
        }
        if unique.is_empty() {
            return Ok(());
        }
        let with_ttl: Vec<SetElem> = unique
            .iter()
            .map(|(a, t)| SetElem::Expiring(*a, *t))
            .collect();
        let keys: Vec<SetElem> = unique.keys().map(|a| SetElem::Addr(*a)).collect();
        let mut b = self.batch();
        b.new_set_elems(set, &with_ttl);
        b.del_set_elems(set, &keys);
        b.new_set_elems(set, &with_ttl);
        self.transact(b.finish(), "set elements")
    }

    /// Opens a pinhole in a task's pinhole set (`pin_<task>`,
    /// [`Ruleset::pinhole_set`](crate::Ruleset::pinhole_set)): TCP to `peer`, from
    /// `local_port`, for `ttl`, after which the kernel removes it. Whether it may be opened
    /// is not decided here (limpet-remote's `pinhole` decides, in PID 1).
    pub fn add_pinhole(
        &mut self,
        set: &str,
        peer: std::net::SocketAddrV4,
        local_port: u16,
        ttl: Duration,
    ) -> Result<(), NftError> {
        let mut b = self.batch();
        b.new_set_elems(
            set,
            &[SetElem::Pinhole {
                peer: *peer.ip(),
                peer_port: peer.port(),
                local_port,
                ttl,
            }],
        );
        self.transact(b.finish(), "a pinhole")
    }

    /// Closes a pinhole [`Nft::add_pinhole`] opened, before its timeout; an element that is
    /// gone (expired) is the kernel's error.
    pub fn remove_pinhole(
        &mut self,
        set: &str,
        peer: std::net::SocketAddrV4,
        local_port: u16,
    ) -> Result<(), NftError> {
        let mut b = self.batch();
        b.del_set_elems(
            set,
            &[SetElem::PinholeKey {
                peer: *peer.ip(),
                peer_port: peer.port(),
                local_port,
            }],
        );
        self.transact(b.finish(), "a pinhole's removal")
    }

    /// Adds upstream DNS servers (from DHCP) to the `dns4` set.
    pub fn add_dns_servers(&mut self, servers: &[Ipv4Addr]) -> Result<(), NftError> {
        if servers.is_empty() {
            return Ok(());
        }
        let elems: Vec<SetElem> = servers.iter().map(|a| SetElem::Addr(*a)).collect();
        let mut b = self.batch();
        b.new_set_elems(SET_DNS, &elems);
        self.transact(b.finish(), "DNS servers")
    }

    /// Adds a network to the `lan4` set. A network overlapping one already there is
    /// refused by the kernel; use [`Nft::replace_lan_networks`] with the whole list then.
    pub fn add_lan_network(&mut self, net: Ipv4Net) -> Result<(), NftError> {
        let mut b = self.batch();
        b.new_set_elems(SET_LAN, &lan_elements(&[net]));
        self.transact(b.finish(), "a LAN network")
    }

    /// Makes `nets` the whole content of the `lan4` set, atomically.
    pub fn replace_lan_networks(&mut self, nets: &[Ipv4Net]) -> Result<(), NftError> {
        let mut b = self.batch();
        b.del_set_elems(SET_LAN, &[]);
        let elems = lan_elements(nets);
        if !elems.is_empty() {
            b.new_set_elems(SET_LAN, &elems);
        }
        self.transact(b.finish(), "the LAN networks")
    }

    /// Reads every rule's counter.
    pub fn counters(&mut self) -> Result<Counters, NftError> {
        Ok(Counters::from_dump(&self.dump_rules()?))
    }

    /// Dumps the table's rules.
    pub fn dump_rules(&mut self) -> Result<Vec<DumpedRule>, NftError> {
        const WHAT: &str = "a rule dump";
        let seq = self.next_seq(1);
        self.sock
            .send(&dump_rules(TABLE, seq))
            .map_err(|source| NftError::Send { what: WHAT, source })?;
        let mut buf = vec![0u8; RECV_BUF];
        let mut out = Vec::new();
        for _ in 0..MAX_DUMP_DATAGRAMS {
            let n = self
                .sock
                .recv(&mut buf)
                .map_err(|source| NftError::Recv { what: WHAT, source })?;
            let msgs = wire::messages(&buf[..n])
                .map_err(|source| NftError::Malformed { what: WHAT, source })?;
            for m in msgs {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_NOOP => {}
                    NLMSG_ERROR => {
                        let a = reply::ack(&m)
                            .map_err(|source| NftError::Malformed { what: WHAT, source })?;
                        if a.errno != 0 {
                            return Err(rejected(ObjectRef::Dump("rules"), a.errno, 1));
                        }
                    }
                    _ => out.push(
                        reply::dumped_rule(&m)
                            .map_err(|source| NftError::Malformed { what: WHAT, source })?,
                    ),
                }
            }
        }
        Err(NftError::Recv {
            what: WHAT,
            source: io::Error::new(io::ErrorKind::InvalidData, "dump did not end"),
        })
    }

    fn next_seq(&mut self, count: usize) -> u32 {
        let s = self.seq;
        let n = u32::try_from(count).unwrap_or(u32::MAX);
        self.seq = self.seq.wrapping_add(n).max(1);
        s
    }

    /// Sends a batch and reads an acknowledgement for each of its objects.
    fn transact(&mut self, e: Encoded, what: &'static str) -> Result<(), NftError> {
        // Batch begin, the objects, batch end.
        self.next_seq(e.objects.len() + 2);
        self.sock
            .reserve((e.objects.len() + 1) * ROOM_PER_MESSAGE + e.bytes.len())
            .map_err(|source| NftError::Send { what, source })?;
        self.sock
            .send(&e.bytes)
            .map_err(|source| NftError::Send { what, source })?;
        let mut answered: BTreeMap<u32, i32> = BTreeMap::new();
        let mut buf = vec![0u8; RECV_BUF];
        // Each datagram holds at least one acknowledgement.
        for _ in 0..=e.objects.len() {
            if answered.len() == e.objects.len() {
                break;
            }
            let n = self
                .sock
                .recv(&mut buf)
                .map_err(|source| NftError::Recv { what, source })?;
            let msgs =
                wire::messages(&buf[..n]).map_err(|source| NftError::Malformed { what, source })?;
            for m in msgs.iter().filter(|m| m.ty == NLMSG_ERROR) {
                let a = reply::ack(m).map_err(|source| NftError::Malformed { what, source })?;
                if e.objects.iter().any(|(s, _)| *s == a.seq) {
                    answered.insert(a.seq, a.errno);
                }
            }
        }
        let failures: Vec<(&ObjectRef, i32)> = e
            .objects
            .iter()
            .filter_map(|(s, o)| match answered.get(s) {
                Some(0) => None,
                Some(errno) => Some((o, *errno)),
                None => None,
            })
            .collect();
        if let Some((object, errno)) = failures.first() {
            return Err(rejected((*object).clone(), *errno, failures.len()));
        }
        if answered.len() != e.objects.len() {
            return Err(NftError::Recv {
                what,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} of {} messages unanswered",
                        e.objects.len() - answered.len(),
                        e.objects.len()
                    ),
                ),
            });
        }
        Ok(())
    }
}

fn rejected(object: ObjectRef, errno: i32, rejected: usize) -> NftError {
    NftError::Rejected {
        object,
        errno,
        rejected,
        source: io::Error::from_raw_os_error(errno),
    }
}
