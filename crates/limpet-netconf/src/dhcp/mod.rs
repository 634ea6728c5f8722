//! A DHCPv4 client (RFC 2131) as a pure state machine, and the UDP socket that carries it.
//!
//! The [`Client`] does no I/O and reads no clock: the caller passes `now` to every call,
//! sends what [`Client::poll_transmit`] returns, feeds received datagrams to
//! [`Client::handle`], applies the [`Event`]s, and sleeps until [`Client::next_deadline`].
//! A PID 1 poll loop drives it like this, on every wake-up:
//!
//! ```text
//! while let Some(n) = socket.recv(&mut buf)? { if let Some(e) = client.handle(now, &buf[..n]) { apply(e) } }
//! while let Some(t) = client.poll_transmit(now) { socket.send(&t) }
//! while let Some(e) = client.poll_event(now) { apply(e) }
//! sleep until client.next_deadline() or the socket is readable
//! ```
//!
//! States follow RFC 2131 §4.4 (figure 5): INIT → SELECTING → REQUESTING → BOUND →
//! RENEWING (at T1, REQUEST unicast to the server) → REBINDING (at T2, broadcast) → lease
//! expiry → INIT. Off-spec, each marked where it is done:
//! - no INIT-REBOOT: the device keeps no lease across boots (nothing persistent to trust);
//! - no ARP probe of the offered address and so no DHCPDECLINE (§4.4.1 says SHOULD);
//! - the first DISCOVER goes out at once rather than after a 1–10 s random wait, because
//!   boot time matters and devices boot at different moments anyway; restarts after a NAK
//!   or a lost lease do wait, [`RESTART_DELAY`] plus jitter.
//!
//! Every wait is bounded: retransmission delays double from 4 s to at most 64 s with ±1 s
//! jitter (§4.1); REQUESTING gives up after [`MAX_REQUESTS`] transmissions; RENEWING and
//! REBINDING retransmit at half the remaining time, at least [`MIN_RENEW_RETRANSMIT`] apart
//! (§4.4.5).

mod socket;
pub mod wire;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

pub use socket::{DhcpSocket, SocketError};
use wire::{MessageType, Outgoing};

/// First retransmission delay (RFC 2131 §4.1).
pub const INITIAL_RETRANSMIT: Duration = Duration::from_secs(4);
/// Longest retransmission delay (RFC 2131 §4.1).
pub const MAX_RETRANSMIT: Duration = Duration::from_secs(64);
/// Maximum jitter added to or taken from each retransmission delay (RFC 2131 §4.1).
pub const JITTER: Duration = Duration::from_secs(1);
/// REQUESTs sent in REQUESTING before going back to INIT (about a minute in total).
pub const MAX_REQUESTS: u32 = 5;
/// Least time between retransmissions in RENEWING and REBINDING (RFC 2131 §4.4.5).
pub const MIN_RENEW_RETRANSMIT: Duration = Duration::from_secs(60);
/// Wait before starting over after a NAK or a lost lease, so that a server that NAKs
/// everything cannot make the client spin.
pub const RESTART_DELAY: Duration = Duration::from_secs(2);
/// Shortest lease accepted; shorter ones are lengthened to this. Off-spec: a zero or
/// seconds-long lease would make the client renew in a tight loop.
pub const MIN_LEASE: Duration = Duration::from_secs(30);

/// A datagram to send: from port 68 to `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// `255.255.255.255:67`, or the server's address in RENEWING.
    pub dst: SocketAddrV4,
    /// The encoded message.
    pub bytes: Vec<u8>,
}

/// An address lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Address and prefix (from the subnet mask, else the address's class).
    pub addr: Ipv4Net,
    /// First router, if any.
    pub router: Option<Ipv4Addr>,
    /// DNS servers, at most [`wire::MAX_DNS`].
    pub dns: Vec<Ipv4Addr>,
    /// Lease duration.
    pub lease: Duration,
    /// Renewal time (T1), from `acquired`.
    pub t1: Duration,
    /// Rebinding time (T2), from `acquired`.
    pub t2: Duration,
    /// The server that granted the lease (option 54).
    pub server: Ipv4Addr,
    /// When the REQUEST that this lease answers was sent; times count from here (§4.4.1).
    pub acquired: Instant,
}

impl Lease {
    fn at(&self, d: Duration) -> Instant {
        // An "infinite" lease (0xffffffff s) still fits in an Instant; if not, far future.
        self.acquired
            .checked_add(d)
            .or_else(|| {
                self.acquired
                    .checked_add(Duration::from_secs(u64::from(u32::MAX / 2)))
            })
            .unwrap_or(self.acquired)
    }

    /// When RENEWING starts.
    pub fn renew_at(&self) -> Instant {
        self.at(self.t1)
    }

    /// When REBINDING starts.
    pub fn rebind_at(&self) -> Instant {
        self.at(self.t2)
    }

    /// When the lease runs out.
    pub fn expires_at(&self) -> Instant {
        self.at(self.lease)
    }

    /// Time left at `now`, in whole seconds, for the kernel's address lifetime.
    pub fn remaining_secs(&self, now: Instant) -> u32 {
        let left = self.expires_at().saturating_duration_since(now).as_secs();
        u32::try_from(left).unwrap_or(u32::MAX)
    }
}

/// What the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new lease: configure the address, the default route and the DNS upstreams.
    Bound(Lease),
    /// The lease was extended (same address); refresh lifetimes, router and DNS.
    Renewed(Lease),
    /// The lease ended (expired or NAKed): remove the address and route.
    Lost(Lease),
}

/// The RFC 2131 state, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// INIT.
    Init,
    /// SELECTING.
    Selecting,
    /// REQUESTING.
    Requesting,
    /// BOUND.
    Bound,
    /// RENEWING.
    Renewing,
    /// REBINDING.
    Rebinding,
}

#[derive(Debug, Clone)]
struct Txn {
    xid: u32,
    started: Instant,
    next_tx: Instant,
    sent: u32,
    last_sent: Instant,
}

impl Txn {
    fn new(now: Instant) -> Self {
        Self {
            xid: crate::rand::u32(),
            started: now,
            next_tx: now,
            sent: 0,
            last_sent: now,
        }
    }

    fn secs(&self, now: Instant) -> u16 {
        u16::try_from(now.saturating_duration_since(self.started).as_secs()).unwrap_or(u16::MAX)
    }
}

#[derive(Debug, Clone)]
enum State {
    Init {
        start_at: Instant,
    },
    Selecting {
        txn: Txn,
    },
    Requesting {
        txn: Txn,
        offered: Ipv4Addr,
        server: Ipv4Addr,
    },
    Bound {
        lease: Lease,
    },
    Renewing {
        txn: Txn,
        lease: Lease,
    },
    Rebinding {
        txn: Txn,
        lease: Lease,
    },
}

/// The DHCPv4 client state machine for one interface.
#[derive(Debug)]
pub struct Client {
    mac: [u8; 6],
    state: State,
    pending: Option<Event>,
}

impl Client {
    /// A client for the interface with hardware address `mac`, in INIT, ready to send a
    /// DISCOVER at `now`.
    pub fn new(mac: [u8; 6], now: Instant) -> Self {
        Self {
            mac,
            state: State::Init { start_at: now },
            pending: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> StateKind {
        match self.state {
            State::Init { .. } => StateKind::Init,
            State::Selecting { .. } => StateKind::Selecting,
            State::Requesting { .. } => StateKind::Requesting,
            State::Bound { .. } => StateKind::Bound,
            State::Renewing { .. } => StateKind::Renewing,
            State::Rebinding { .. } => StateKind::Rebinding,
        }
    }

    /// The lease held, in BOUND, RENEWING and REBINDING.
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            State::Bound { lease }
            | State::Renewing { lease, .. }
            | State::Rebinding { lease, .. } => Some(lease),
            _ => None,
        }
    }

    /// When the client next needs [`Client::poll_transmit`] or [`Client::poll_event`].
    pub fn next_deadline(&self) -> Instant {
        match &self.state {
            State::Init { start_at } => *start_at,
            State::Selecting { txn } | State::Requesting { txn, .. } => txn.next_tx,
            State::Bound { lease } => lease.renew_at(),
            State::Renewing { txn, lease } => txn.next_tx.min(lease.rebind_at()),
            State::Rebinding { txn, lease } => txn.next_tx.min(lease.expires_at()),
        }
    }

    /// Advances timers, then returns the event they caused, if any (only [`Event::Lost`]
    /// comes from timers).
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        self.advance(now);
        self.pending.take()
    }

    /// Advances timers, then returns the datagram due at `now`, if any. Call until `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.advance(now);
        let mac = self.mac;
        let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, wire::SERVER_PORT);
        let (msg, dst) = match &mut self.state {
            State::Init { .. } | State::Bound { .. } => return None,
            State::Selecting { txn } => {
                if now < txn.next_tx {
                    return None;
                }
                let m = Outgoing {
                    kind: MessageType::Discover,
                    xid: txn.xid,
                    secs: txn.secs(now),
                    ciaddr: Ipv4Addr::UNSPECIFIED,
                    mac,
                    requested_ip: None,
                    server_id: None,
                };
                txn.next_tx = now + backoff(txn.sent);
                (m, broadcast)
            }
            State::Requesting {
                txn,
                offered,
                server,
            } => {
                if now < txn.next_tx {
                    return None;
                }
                // Table 5: REQUEST in SELECTING carries requested IP and server id, no ciaddr.
                let m = Outgoing {
                    kind: MessageType::Request,
                    xid: txn.xid,
                    secs: txn.secs(now),
                    ciaddr: Ipv4Addr::UNSPECIFIED,
                    mac,
                    requested_ip: Some(*offered),
                    server_id: Some(*server),
                };
                txn.next_tx = now + backoff(txn.sent);
                (m, broadcast)
            }
            State::Renewing { txn, lease } => {
                if now < txn.next_tx {
                    return None;
                }
                // Table 5: REQUEST in RENEWING has ciaddr, no requested IP or server id,
                // and goes by unicast to the server.
                let m = renew_request(txn, lease, mac, now);
                txn.next_tx = half_remaining(now, lease.rebind_at());
                (m, SocketAddrV4::new(lease.server, wire::SERVER_PORT))
            }
            State::Rebinding { txn, lease } => {
                if now < txn.next_tx {
                    return None;
                }
                // Same message as RENEWING, broadcast to any server.
                let m = renew_request(txn, lease, mac, now);
                txn.next_tx = half_remaining(now, lease.expires_at());
                (m, broadcast)
            }
        };
        if let State::Selecting { txn }
        | State::Requesting { txn, .. }
        | State::Renewing { txn, .. }
        | State::Rebinding { txn, .. } = &mut self.state
        {
            txn.sent = txn.sent.saturating_add(1);
            txn.last_sent = now;
        }
        Some(Transmit {
            dst,
            bytes: msg.encode(),
        })
    }

    /// Handles one datagram received on port 68. Datagrams that are malformed, for another
    /// client or transaction, or unexpected in the current state are ignored.
    pub fn handle(&mut self, now: Instant, bytes: &[u8]) -> Option<Event> {
        self.advance(now);
        if let Some(e) = self.pending.take() {
            // The lease ran out before this datagram was looked at; report that first. The
            // datagram belongs to the finished transaction and is dropped.
            return Some(e);
        }
        let msg = wire::decode(bytes).ok()?;
        if msg.chaddr != self.mac {
            return None;
        }
        match &self.state {
            State::Init { .. } | State::Bound { .. } => None,
            State::Selecting { txn } => {
                // §4.4.1: take the first acceptable offer.
                if msg.xid != txn.xid || msg.kind != MessageType::Offer || !usable(msg.yiaddr) {
                    return None;
                }
                let server = msg.server_id.filter(|s| usable(*s))?;
                let mut next = txn.clone();
                next.next_tx = now;
                next.sent = 0;
                self.state = State::Requesting {
                    txn: next,
                    offered: msg.yiaddr,
                    server,
                };
                None
            }
            State::Requesting { txn, server, .. } => {
                if msg.xid != txn.xid || msg.server_id.is_some_and(|s| s != *server) {
                    return None;
                }
                match msg.kind {
                    MessageType::Ack => {
                        let lease = lease_from(&msg, *server, txn.last_sent)?;
                        self.state = State::Bound {
                            lease: lease.clone(),
                        };
                        Some(Event::Bound(lease))
                    }
                    MessageType::Nak => {
                        self.restart(now);
                        None
                    }
                    _ => None,
                }
            }
            State::Renewing { txn, lease } | State::Rebinding { txn, lease } => {
                if msg.xid != txn.xid {
                    return None;
                }
                match msg.kind {
                    // A renewal that moves the address is not a renewal; ignore it and let
                    // the lease run its course (servers do not do this, §4.3.2).
                    MessageType::Ack if msg.yiaddr == lease.addr.addr() => {
                        let server = msg.server_id.unwrap_or(lease.server);
                        let renewed = lease_from(&msg, server, txn.last_sent)?;
                        self.state = State::Bound {
                            lease: renewed.clone(),
                        };
                        Some(Event::Renewed(renewed))
                    }
                    MessageType::Nak => {
                        let lost = lease.clone();
                        self.restart(now);
                        Some(Event::Lost(lost))
                    }
                    _ => None,
                }
            }
        }
    }

    fn restart(&mut self, now: Instant) {
        let jitter = Duration::from_millis(crate::rand::below(1000));
        self.state = State::Init {
            start_at: now + RESTART_DELAY + jitter,
        };
    }

    /// Applies every timer transition due at `now`.
    fn advance(&mut self, now: Instant) {
        // Each pass moves at least one state forward; six passes cover the longest chain.
        for _ in 0..6 {
            let next = match &self.state {
                State::Init { start_at } if now >= *start_at => {
                    State::Selecting { txn: Txn::new(now) }
                }
                State::Requesting { txn, .. } if txn.sent >= MAX_REQUESTS && now >= txn.next_tx => {
                    // §3.1.5: no answer to REQUEST after retransmissions: back to INIT.
                    State::Selecting { txn: Txn::new(now) }
                }
                State::Bound { lease }
                | State::Renewing { lease, .. }
                | State::Rebinding { lease, .. }
                    if now >= lease.expires_at() =>
                {
                    self.pending = Some(Event::Lost(lease.clone()));
                    self.restart(now);
                    continue;
                }
                State::Bound { lease } | State::Renewing { lease, .. }
                    if now >= lease.rebind_at() =>
                {
                    State::Rebinding {
                        txn: Txn::new(now),
                        lease: lease.clone(),
                    }
                }
                State::Bound { lease } if now >= lease.renew_at() => State::Renewing {
                    txn: Txn::new(now),
                    lease: lease.clone(),
                },
                _ => return,
            };
            self.state = next;
        }
    }
}

fn renew_request(txn: &Txn, lease: &Lease, mac: [u8; 6], now: Instant) -> Outgoing {
    Outgoing {
        kind: MessageType::Request,
        xid: txn.xid,
        secs: txn.secs(now),
        ciaddr: lease.addr.addr(),
        mac,
        requested_ip: None,
        server_id: None,
    }
}

/// §4.1: 4 s, 8 s, 16 s... capped at 64 s, each ±1 s at random.
fn backoff(sent: u32) -> Duration {
    let base = INITIAL_RETRANSMIT
        .checked_mul(1u32 << sent.min(4))
        .unwrap_or(MAX_RETRANSMIT)
        .min(MAX_RETRANSMIT);
    let span = u64::try_from(JITTER.as_millis() * 2).unwrap_or(2000);
    let offset = crate::rand::below(span + 1);
    (base + Duration::from_millis(offset)).saturating_sub(JITTER)
}

/// §4.4.5: half the time left until `until`, at least 60 s, never past `until`.
fn half_remaining(now: Instant, until: Instant) -> Instant {
    let left = until.saturating_duration_since(now);
    (now + (left / 2).max(MIN_RENEW_RETRANSMIT)).min(until)
}

/// A unicast address a server may hand out or be.
fn usable(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
}

/// The lease an ACK grants, or `None` if the ACK lacks what a lease needs.
fn lease_from(msg: &wire::Incoming, server: Ipv4Addr, acquired: Instant) -> Option<Lease> {
    if !usable(msg.yiaddr) {
        return None;
    }
    // §3.1.4: an ACK to a REQUEST carries the lease time.
    let lease = msg.lease_time?.max(MIN_LEASE);
    let (t1, t2) = match (msg.t1, msg.t2) {
        (t1, t2)
            if t1.unwrap_or(Duration::ZERO) <= t2.unwrap_or(lease)
                && t2.unwrap_or(lease) <= lease =>
        {
            (t1.unwrap_or(lease / 2), t2.unwrap_or(lease * 7 / 8))
        }
        // Inconsistent server times: fall back to the defaults of §4.4.5.
        _ => (lease / 2, lease * 7 / 8),
    };
    let t2 = t2.max(t1);
    let prefix = msg
        .subnet_mask
        .and_then(|m| ipnet::ipv4_mask_to_prefix(m).ok())
        .unwrap_or_else(|| classful_prefix(msg.yiaddr));
    let addr = Ipv4Net::new(msg.yiaddr, prefix).ok()?;
    Some(Lease {
        addr,
        router: msg.router.filter(|r| usable(*r)),
        dns: msg.dns.iter().copied().filter(|d| usable(*d)).collect(),
        lease,
        t1,
        t2,
        server,
        acquired,
    })
}

/// The prefix of the address's class (RFC 1122 §3.3.1.1), when no subnet mask is given.
fn classful_prefix(ip: Ipv4Addr) -> u8 {
    match ip.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests;
