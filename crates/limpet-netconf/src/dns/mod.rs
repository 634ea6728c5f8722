//! The logic of the DNS stub PID 1 serves on `127.0.0.53:53` (UDP), without I/O.
//!
//! Tasks send it queries; it answers only names on the allowlist, only with A records, and
//! tells PID 1 each address it learns ([`Action::Resolved`]) so that PID 1 can add it to
//! that name's nftables address set **before** the task sees the reply. The caller owns the
//! sockets and the clock: it feeds datagrams to [`Stub::on_query`] and [`Stub::on_upstream`],
//! calls [`Stub::on_timer`] at [`Stub::next_deadline`], and performs the returned actions
//! **in order**.
//!
//! Rules this module keeps:
//! - Queries: `QR` set or shorter than a header → dropped (never answer an answer, so two
//!   resolvers cannot be made to ping-pong). Opcode other than QUERY → NOTIMP. Not exactly
//!   one question, answer or authority records present, a compressed or malformed
//!   question → FORMERR. Class other than IN → REFUSED. Name not on the allowlist →
//!   REFUSED. Type AAAA → NOERROR with no answers (the device's egress policy is IPv4).
//!   Any type other than A or AAAA → REFUSED.
//! - Upstream: a fresh random 16-bit id per attempt, the name sent with random letter case
//!   (0x20, unless [`CaseRandomization::Preserve`]), the response accepted only from the
//!   address queried, with the same id, QR set, opcode QUERY and a byte-identical
//!   question. Mismatches are ignored as possible spoofs (the real answer may still come).
//!   CNAME chains are followed inside the answer section only (at most 8 hops); authority
//!   and additional sections are never read.
//! - TTL: the least TTL over the chain and the A records, clamped to [`MIN_TTL`] (so a
//!   zero-TTL answer does not send every connection attempt upstream, nor vanish from the
//!   address set before the task can connect) and [`MAX_TTL`] (so an address does not
//!   stay allowed for longer than a day without being asked again). Replies carry the
//!   same clamped TTL (the remaining TTL for cache hits), so a task never holds an address
//!   longer than the address set does.
//! - Limits: client queries are limited per source address; when limited they are
//!   **dropped** silently (replying would cost as much as answering). Upstream queries go
//!   through one token bucket; a new name that finds it empty gets **REFUSED** at once,
//!   a retry that finds it empty ends in SERVFAIL. In-flight names and waiting clients are
//!   capped; beyond the caps, SERVFAIL.
//! - Timeouts: each attempt waits [`Limits::upstream_timeout`], the next attempt goes to
//!   the next upstream, at most [`Limits::max_attempts`] attempts, then SERVFAIL.
//! - No upstream yet (a DHCP lease not bound): a query for an allowed name **waits** for
//!   [`Stub::set_upstreams`], at most [`Limits::upstream_wait`], and is then asked
//!   upstream as if it had just arrived; only when the wait runs out does it get
//!   SERVFAIL. A task that asks early in boot therefore gets the name's addresses, never
//!   a failure it would take for an answer. Waiting names count against
//!   [`Limits::max_pending`].
//! - Errors upstream (SERVFAIL, REFUSED, FORMERR, TC) move on to the next attempt;
//!   NXDOMAIN is passed on to the clients; nothing negative is cached.
//!
//! TCP is not served: replies are cut to the A records that fit in 512 bytes, which for
//! one name is more than a client uses.

mod limit;
mod name;
pub mod wire;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

pub use limit::Rate;
use limit::{PerSource, TokenBucket};
pub use name::{DnsName, NameError};
use wire::{Header, Question, Rcode};

/// Least TTL given to an answer (see the module doc).
pub const MIN_TTL: Duration = Duration::from_secs(5);
/// Greatest TTL given to an answer (see the module doc).
pub const MAX_TTL: Duration = Duration::from_secs(86_400);
/// Most addresses kept for one name.
pub const MAX_ADDRS: usize = 16;

/// Whether upstream queries randomise the letter case of the name (draft-vixie-dnsext-
/// dns0x20): about one more bit per letter that a spoofer must guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaseRandomization {
    /// Randomise, and require the response's question to match byte for byte.
    #[default]
    Randomize,
    /// Send names in lower case, for upstreams that do not echo the question's case.
    Preserve,
}

/// Bounds on the work the stub does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// All upstream queries together.
    pub upstream: Rate,
    /// Queries from one client source address.
    pub per_client: Rate,
    /// Client addresses tracked by the per-client limiter.
    pub max_clients: usize,
    /// Names being resolved at once.
    pub max_pending: usize,
    /// Client queries waiting on one name.
    pub max_waiters: usize,
    /// How long one upstream attempt waits.
    pub upstream_timeout: Duration,
    /// Attempts per resolution, across the upstreams in turn.
    pub max_attempts: u32,
    /// How long a query waits for the first upstream to be known.
    pub upstream_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            upstream: Rate {
                per_second: 20,
                burst: 40,
            },
            per_client: Rate {
                per_second: 50,
                burst: 100,
            },
            max_clients: 256,
            max_pending: 64,
            max_waiters: 16,
            upstream_timeout: Duration::from_secs(2),
            max_attempts: 4,
            // A resolver's usual timeout (musl's and glibc's: 5 s); a client that has
            // waited longer has given up.
            upstream_wait: Duration::from_secs(5),
        }
    }
}

/// The stub's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The names that may be resolved (exact names, compared case-insensitively).
    pub allow: Vec<DnsName>,
    /// Upstream resolvers, tried in turn.
    pub upstreams: Vec<SocketAddr>,
    /// Bounds.
    pub limits: Limits,
    /// 0x20 case randomisation of upstream queries.
    pub case: CaseRandomization,
}

/// Something the caller must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `bytes` to the upstream resolver `to`, from the upstream socket.
    SendUpstream {
        /// Upstream address.
        to: SocketAddr,
        /// The query.
        bytes: Vec<u8>,
    },
    /// Send `bytes` to the client `to`, from the stub's listening socket.
    Reply {
        /// The client that asked.
        to: SocketAddr,
        /// The reply.
        bytes: Vec<u8>,
    },
    /// `name` resolved to `addrs`, each valid for its TTL: add them to the name's address
    /// set before performing the replies that follow.
    Resolved {
        /// The allowed name.
        name: DnsName,
        /// Addresses and TTLs (clamped).
        addrs: Vec<(Ipv4Addr, Duration)>,
    },
}

#[derive(Debug)]
struct Waiter {
    client: SocketAddr,
    id: u16,
    rd: bool,
    question: Question,
}

#[derive(Debug)]
struct Pending {
    name: DnsName,
    asked: Question,
    to: SocketAddr,
    upstream: usize,
    attempt: u32,
    deadline: Instant,
    waiters: Vec<Waiter>,
}

/// A name asked before any upstream was known, and who asked.
#[derive(Debug)]
struct Waiting {
    name: DnsName,
    deadline: Instant,
    waiters: Vec<Waiter>,
}

#[derive(Debug)]
struct CacheEntry {
    addrs: Vec<Ipv4Addr>,
    expires: Instant,
}

/// The stub resolver's state.
#[derive(Debug)]
pub struct Stub {
    allow: Vec<DnsName>,
    upstreams: Vec<SocketAddr>,
    limits: Limits,
    case: CaseRandomization,
    upstream_bucket: TokenBucket,
    clients: PerSource,
    /// By upstream query id.
    pending: HashMap<u16, Pending>,
    /// Names waiting for the first upstream, in arrival order.
    waiting: Vec<Waiting>,
    cache: HashMap<DnsName, CacheEntry>,
    /// The upstream that answered last; new resolutions start there.
    preferred: usize,
}

enum Parsed {
    Drop,
    Reply(Vec<u8>),
    Ask { name: DnsName, waiter: Waiter },
}

impl Stub {
    /// A stub with an empty cache.
    pub fn new(config: Config, now: Instant) -> Self {
        let mut allow = config.allow;
        allow.sort();
        allow.dedup();
        Self {
            allow,
            upstreams: config.upstreams,
            upstream_bucket: TokenBucket::new(config.limits.upstream, now),
            clients: PerSource::new(config.limits.per_client, config.limits.max_clients),
            limits: config.limits,
            case: config.case,
            pending: HashMap::new(),
            waiting: Vec::new(),
            cache: HashMap::new(),
            preferred: 0,
        }
    }

    /// Forgets every cached answer, so the next query for each name goes upstream and is
    /// [`Action::Resolved`] again: PID 1 calls it when it replaces its ruleset, whose
    /// address sets then start empty, so that no task is told an address its set no
    /// longer holds.
    pub fn forget_answers(&mut self) {
        self.cache.clear();
    }

    /// Replaces the upstream resolvers (a new DHCP lease). In-flight attempts finish or
    /// time out; their retries use the new list. Names that were waiting for an upstream
    /// are asked now: the returned actions carry their queries.
    pub fn set_upstreams(&mut self, now: Instant, upstreams: Vec<SocketAddr>) -> Vec<Action> {
        self.upstreams = upstreams;
        self.preferred = 0;
        if self.upstreams.is_empty() {
            return Vec::new();
        }
        let waiting = std::mem::take(&mut self.waiting);
        let mut actions = Vec::new();
        for w in waiting {
            actions.extend(self.resolve(now, w.name, w.waiters));
        }
        actions
    }

    /// When [`Stub::on_timer`] must next be called, if anything is in flight or waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.deadline)
            .chain(self.waiting.iter().map(|w| w.deadline))
            .min()
    }

    /// Handles one datagram from a client.
    pub fn on_query(&mut self, now: Instant, client: SocketAddr, bytes: &[u8]) -> Vec<Action> {
        if !self.clients.try_take(client.ip(), now) {
            return Vec::new();
        }
        let (name, waiter) = match self.parse_query(client, bytes) {
            Parsed::Drop => return Vec::new(),
            Parsed::Reply(bytes) => return vec![Action::Reply { to: client, bytes }],
            Parsed::Ask { name, waiter } => (name, waiter),
        };
        if let Some(entry) = self.cache.get(&name) {
            if entry.expires > now {
                let left = entry.expires.saturating_duration_since(now);
                let ttl = u32::try_from(left.as_secs() + u64::from(left.subsec_nanos() > 0))
                    .unwrap_or(u32::MAX);
                let answers: Vec<_> = entry.addrs.iter().map(|a| (*a, ttl)).collect();
                return vec![reply(&waiter, Rcode::NoError, &answers)];
            }
            self.cache.remove(&name);
        }
        let max_waiters = self.limits.max_waiters;
        let queue = self
            .pending
            .values_mut()
            .find(|p| p.name == name)
            .map(|p| &mut p.waiters)
            .or_else(|| {
                self.waiting
                    .iter_mut()
                    .find(|w| w.name == name)
                    .map(|w| &mut w.waiters)
            });
        if let Some(waiters) = queue {
            if waiters
                .iter()
                .any(|w| w.client == waiter.client && w.id == waiter.id)
            {
                return Vec::new(); // the client's own retransmission: one answer is enough
            }
            if waiters.len() >= max_waiters {
                return vec![reply(&waiter, Rcode::ServFail, &[])];
            }
            waiters.push(waiter);
            return Vec::new();
        }
        if self.pending.len() + self.waiting.len() >= self.limits.max_pending {
            return vec![reply(&waiter, Rcode::ServFail, &[])];
        }
        if self.upstreams.is_empty() {
            // Early in boot: wait for the lease's servers rather than fail the name.
            self.waiting.push(Waiting {
                name,
                deadline: now + self.limits.upstream_wait,
                waiters: vec![waiter],
            });
            return Vec::new();
        }
        self.resolve(now, name, vec![waiter])
    }

    /// Starts resolving `name` upstream for `waiters` (the upstreams are known).
    fn resolve(&mut self, now: Instant, name: DnsName, waiters: Vec<Waiter>) -> Vec<Action> {
        let fail = |waiters: &[Waiter], rcode| -> Vec<Action> {
            waiters.iter().map(|w| reply(w, rcode, &[])).collect()
        };
        if !self.upstream_bucket.try_take(now) {
            return fail(&waiters, Rcode::Refused);
        }
        if self.upstreams.is_empty() {
            return fail(&waiters, Rcode::ServFail);
        }
        let upstream = self.preferred % self.upstreams.len();
        let Some(&to) = self.upstreams.get(upstream) else {
            return fail(&waiters, Rcode::ServFail);
        };
        let mut p = Pending {
            asked: Question {
                name: Vec::new(),
                qtype: wire::TYPE_A,
                qclass: wire::CLASS_IN,
            },
            to,
            name,
            upstream,
            attempt: 0,
            deadline: now,
            waiters,
        };
        self.launch(&mut p, now);
        self.insert_pending(p)
    }

    /// Handles one datagram received on the upstream socket from `from`.
    pub fn on_upstream(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Vec<Action> {
        let Some(h) = Header::parse(bytes) else {
            return Vec::new();
        };
        match self.pending.get(&h.id) {
            Some(p) if p.to == from => {}
            _ => return Vec::new(),
        }
        let Some(asked) = self.pending.get(&h.id).map(|p| p.asked.clone()) else {
            return Vec::new();
        };
        let answer = match wire::parse_response(bytes, &asked) {
            Ok(a) => a,
            // Not an answer to this query: maybe a spoof, maybe garbage. Keep waiting for
            // the real one until the deadline.
            Err(wire::ResponseError::QuestionMismatch | wire::ResponseError::NotAResponse) => {
                return Vec::new();
            }
            // An answer we cannot use: try the next upstream now.
            Err(wire::ResponseError::Truncated | wire::ResponseError::Wire(_)) => {
                return self.retry(h.id, now);
            }
        };
        let Some(p) = self.pending.remove(&h.id) else {
            return Vec::new();
        };
        match answer.rcode {
            0 => {
                self.preferred = p.upstream;
                let addrs: Vec<Ipv4Addr> = answer.addrs.into_iter().take(MAX_ADDRS).collect();
                let ttl = clamp_ttl(answer.ttl.unwrap_or(0));
                let mut actions = Vec::with_capacity(p.waiters.len() + 1);
                if !addrs.is_empty() {
                    actions.push(Action::Resolved {
                        name: p.name.clone(),
                        addrs: addrs.iter().map(|a| (*a, ttl)).collect(),
                    });
                    self.cache.insert(
                        p.name.clone(),
                        CacheEntry {
                            addrs: addrs.clone(),
                            expires: now + ttl,
                        },
                    );
                }
                let secs = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
                let answers: Vec<_> = addrs.iter().map(|a| (*a, secs)).collect();
                actions.extend(p.waiters.iter().map(|w| reply(w, Rcode::NoError, &answers)));
                actions
            }
            3 => {
                self.preferred = p.upstream;
                p.waiters
                    .iter()
                    .map(|w| reply(w, Rcode::NxDomain, &[]))
                    .collect()
            }
            _ => {
                let id = h.id;
                self.pending.insert(id, p);
                self.retry(id, now)
            }
        }
    }

    /// Retries or fails every attempt whose deadline has passed, and fails the names that
    /// waited [`Limits::upstream_wait`] for an upstream in vain.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let due: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut actions: Vec<Action> = due.into_iter().flat_map(|id| self.retry(id, now)).collect();
        let (expired, waiting): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.deadline <= now);
        self.waiting = waiting;
        for w in expired {
            actions.extend(w.waiters.iter().map(|c| reply(c, Rcode::ServFail, &[])));
        }
        actions
    }

    /// Moves the resolution with upstream id `id` to its next attempt, or fails it.
    fn retry(&mut self, id: u16, now: Instant) -> Vec<Action> {
        let Some(mut p) = self.pending.remove(&id) else {
            return Vec::new();
        };
        if p.attempt >= self.limits.max_attempts
            || self.upstreams.is_empty()
            || !self.upstream_bucket.try_take(now)
        {
            return p
                .waiters
                .iter()
                .map(|w| reply(w, Rcode::ServFail, &[]))
                .collect();
        }
        p.upstream = (p.upstream + 1) % self.upstreams.len();
        let Some(&to) = self.upstreams.get(p.upstream) else {
            return p
                .waiters
                .iter()
                .map(|w| reply(w, Rcode::ServFail, &[]))
                .collect();
        };
        p.to = to;
        self.launch(&mut p, now);
        self.insert_pending(p)
    }

    /// Prepares attempt `p.attempt + 1`: a fresh question (new 0x20 case) and deadline.
    fn launch(&self, p: &mut Pending, now: Instant) {
        p.attempt += 1;
        p.deadline = now + self.limits.upstream_timeout;
        let mut wire_name = p.name.to_wire();
        if self.case == CaseRandomization::Randomize {
            randomize_case(&mut wire_name);
        }
        p.asked.name = wire_name;
    }

    /// Files `p` under a fresh id and returns the query to send.
    fn insert_pending(&mut self, p: Pending) -> Vec<Action> {
        // A few draws find a free id: at most `max_pending` of 65536 are taken.
        let Some(id) = (0..16)
            .map(|_| crate::rand::u16())
            .find(|id| !self.pending.contains_key(id))
        else {
            return p
                .waiters
                .iter()
                .map(|w| reply(w, Rcode::ServFail, &[]))
                .collect();
        };
        let bytes = wire::build_query(id, &p.asked.name);
        let to = p.to;
        self.pending.insert(id, p);
        vec![Action::SendUpstream { to, bytes }]
    }

    fn parse_query(&self, client: SocketAddr, bytes: &[u8]) -> Parsed {
        let Some(h) = Header::parse(bytes) else {
            return Parsed::Drop;
        };
        if h.is_response() {
            return Parsed::Drop;
        }
        let rd = h.recursion_desired();
        let bare = |rcode| Parsed::Reply(wire::build_reply(h.id, rd, None, rcode, &[]));
        if h.opcode() != 0 {
            return bare(Rcode::NotImp);
        }
        if h.qdcount != 1 || h.ancount != 0 || h.nscount != 0 {
            return bare(Rcode::FormErr);
        }
        let Ok((question, _)) = wire::read_question(bytes, false) else {
            return bare(Rcode::FormErr);
        };
        let waiter = Waiter {
            client,
            id: h.id,
            rd,
            question,
        };
        let refuse = |w: &Waiter, rcode| Parsed::Reply(reply_bytes(w, rcode, &[]));
        if waiter.question.qclass != wire::CLASS_IN {
            return refuse(&waiter, Rcode::Refused);
        }
        let Some(name) = DnsName::from_wire(&waiter.question.name)
            .filter(|n| self.allow.binary_search(n).is_ok())
        else {
            return refuse(&waiter, Rcode::Refused);
        };
        match waiter.question.qtype {
            wire::TYPE_A => Parsed::Ask { name, waiter },
            wire::TYPE_AAAA => refuse(&waiter, Rcode::NoError),
            _ => refuse(&waiter, Rcode::Refused),
        }
    }
}

fn reply_bytes(w: &Waiter, rcode: Rcode, answers: &[(Ipv4Addr, u32)]) -> Vec<u8> {
    wire::build_reply(w.id, w.rd, Some(&w.question), rcode, answers)
}

fn reply(w: &Waiter, rcode: Rcode, answers: &[(Ipv4Addr, u32)]) -> Action {
    Action::Reply {
        to: w.client,
        bytes: reply_bytes(w, rcode, answers),
    }
}

fn clamp_ttl(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs)).clamp(MIN_TTL, MAX_TTL)
}

/// Flips the case of each letter at random (0x20 bit).
fn randomize_case(wire_name: &mut [u8]) {
    let mut bits = [0u8; 32];
    crate::rand::fill(&mut bits);
    for (i, b) in wire_name.iter_mut().enumerate() {
        // Length bytes are below 64 and never letters, so only label bytes change.
        let bit = bits
            .get((i / 8) % 32)
            .map_or(0, |byte| (byte >> (i % 8)) & 1);
        if b.is_ascii_alphabetic() && bit == 1 {
            *b ^= 0x20;
        }
    }
}

#[cfg(test)]
mod tests;
