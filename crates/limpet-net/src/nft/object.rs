//! The objects of one nf_tables table: chains, sets, set elements and rules, as plain data.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::expr::Expr;

/// Where a base chain hooks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Packets for this host.
    Input,
    /// Packets routed through this host.
    Forward,
    /// Packets this host sends.
    Output,
}

/// What a base chain does with a packet no rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainPolicy {
    /// Drop it: the only policy this crate writes.
    Drop,
}

/// A base chain's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    /// The hook.
    pub hook: Hook,
    /// Priority at the hook (0, `filter`).
    pub priority: i32,
    /// The policy.
    pub policy: ChainPolicy,
}

/// A chain: a base chain attached to a hook, or a regular chain reached by `jump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Name, unique in the table.
    pub name: String,
    /// Set for base chains.
    pub base: Option<BaseChain>,
}

/// How a set holds its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// Single addresses (a hash).
    Addresses,
    /// Address ranges (`flags interval`).
    Intervals,
    /// Single addresses, each with its own timeout (`flags timeout`).
    Expiring,
    /// Pinholes: `ipv4_addr . inet_service . inet_service` (a peer's address and port, and
    /// the local source port), each with its own timeout (`flags timeout`).
    Pinholes,
}

/// A named set of IPv4 addresses (`type ipv4_addr`), or of pinholes ([`SetKind::Pinholes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Name, unique in the table.
    pub name: String,
    /// How it holds elements.
    pub kind: SetKind,
    /// Most elements it takes (`size`); `None` for the kernel's default.
    pub size: Option<u32>,
    /// Elements added with the set.
    pub elements: Vec<SetElem>,
}

/// One element of an IPv4 set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetElem {
    /// One address.
    Addr(Ipv4Addr),
    /// One address that expires after the timeout (only in [`SetKind::Expiring`] sets).
    Expiring(Ipv4Addr, Duration),
    /// A peer's address and port and the local source port, until the timeout (only in
    /// [`SetKind::Pinholes`] sets).
    Pinhole {
        /// The peer's address.
        peer: Ipv4Addr,
        /// The peer's port (the packet's destination port).
        peer_port: u16,
        /// The local port (the packet's source port).
        local_port: u16,
        /// How long it stays.
        ttl: Duration,
    },
    /// A pinhole's key alone, to delete it ([`SetElem::Pinhole`] without its timeout).
    PinholeKey {
        /// The peer's address.
        peer: Ipv4Addr,
        /// The peer's port.
        peer_port: u16,
        /// The local port.
        local_port: u16,
    },
    /// Addresses `start..=end` (only in [`SetKind::Intervals`] sets).
    Range {
        /// First address.
        start: Ipv4Addr,
        /// Last address.
        end: Ipv4Addr,
    },
}

/// A rule: expressions, in a chain, with a comment that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The chain it is appended to.
    pub chain: String,
    /// Its steps.
    pub exprs: Vec<Expr>,
    /// Stored as the rule's userdata comment (what `nft list` prints); [`crate::counters`]
    /// reads it back to name the rule's counter.
    pub comment: String,
}

/// Names an object of a batch, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectRef {
    /// The table.
    Table(String),
    /// The table's deletion, before it is made anew.
    TableDeletion(String),
    /// A chain.
    Chain(String),
    /// A set.
    Set(String),
    /// Elements added to a set.
    SetElements(String),
    /// Elements removed from a set.
    SetElementsDeletion(String),
    /// A rule, by its position in the ruleset's rule list.
    Rule {
        /// Index in [`crate::Ruleset::rules`].
        index: usize,
        /// Its chain.
        chain: String,
        /// Its comment.
        comment: String,
    },
    /// A dump request.
    Dump(&'static str),
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectRef::Table(t) => write!(f, "table {t}"),
            ObjectRef::TableDeletion(t) => write!(f, "deletion of table {t}"),
            ObjectRef::Chain(c) => write!(f, "chain {c}"),
            ObjectRef::Set(s) => write!(f, "set {s}"),
            ObjectRef::SetElements(s) => write!(f, "elements of set {s}"),
            ObjectRef::SetElementsDeletion(s) => write!(f, "deletion of elements of set {s}"),
            ObjectRef::Rule {
                index,
                chain,
                comment,
            } => write!(f, "rule {index} in chain {chain} ({comment})"),
            ObjectRef::Dump(what) => write!(f, "dump of {what}"),
        }
    }
}
