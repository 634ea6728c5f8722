//! The device's network, run by PID 1: the nftables policy first, then the links, DHCP and
//! the DNS stub (docs/network.md).
//!
//! Order at boot ([`Network::start`]), so no packet ever passes without the policy:
//! 1. install the ruleset compiled into the image (limpet-net), in one atomic netlink
//!    batch, while every interface is still down (each one's state is printed): the
//!    normal one, or island mode's when the device boots in island mode;
//! 2. bring up `lo`, then each interface of the manifest, with its static address and
//!    default route, or a DHCP client;
//! 3. open the DNS stub on 127.0.0.53:53: it answers only the names of egress rules and
//!    adds every answer to that name's address set, with its TTL, before replying.
//!
//! Then, from the runtime's poll loop: DHCP leases and renewals, the stub's queries and
//! upstream answers, and every [`COUNTERS_EVERY`] the rule counters, whose per-task drops
//! go to the status file and, at most every [`DROP_LOG_EVERY`], to the console.
//!
//! Island mode begins or ends ([`Network::switch`]): the ruleset is replaced as a whole by
//! the other policy's, built with the facts learned since boot (each task's socket match,
//! the DHCP lease's LAN and DNS servers), again in one atomic batch.
//!
//! The network is *up* ([`Network::is_up`]) once an interface has its address: a static
//! one from the start, else a bound DHCP lease, whose DNS servers the stub has from the
//! same moment. The runtime starts the tasks that declare egress only then (or after its
//! bounded wait, or at once when no DHCP client runs: [`Network::may_come_up`]); the stub
//! holds queries that come before it has an upstream.
//!
//! Nothing here panics or blocks for long: netlink requests are bounded by the kernel's
//! answer (limpet-net, limpet-netconf), sockets are non-blocking.
//!
//! The network is linked only into a PID 1 whose device has one: `limpet build` leaves
//! limpet-init's `network` feature off when the device's policy has no network, which
//! gives this module `network/off.rs` instead of `network/live.rs`. Its [`Network`] has no
//! values, so none of the network's code (nftables, rtnetlink, DHCP, the DNS stub) is in
//! that binary, and a policy with a network meets `NetworkError::NotBuiltIn`: every
//! interface stays down.

// Built without the network, PID 1 makes none of these; they keep one definition for both.
#![cfg_attr(not(feature = "network"), allow(dead_code))]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use limpet_netconf::link::LinkError;
use serde::Serialize;

#[cfg(feature = "network")]
mod live;
#[cfg(feature = "network")]
pub use live::Network;
#[cfg(not(feature = "network"))]
mod off;
#[cfg(not(feature = "network"))]
pub use off::Network;

/// How often the rule counters are read.
pub const COUNTERS_EVERY: Duration = Duration::from_secs(2);
/// Least time between two console lines about dropped packets.
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Why the network could not be started (every interface then stays down).
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("rtnetlink")]
    Netlink(#[source] LinkError),
    #[error("network policy")]
    Ruleset(#[source] limpet_net::RulesetError),
    #[error("nftables")]
    Nftables(#[source] limpet_net::NftError),
    #[error("installing the network policy")]
    Install(#[source] limpet_net::NftError),
    /// Island mode, and the policy carries no island network policy (`limpet build` always
    /// writes one for a device with `[lifecycle]` and a network).
    #[error("the policy has no island network policy")]
    NoIslandPolicy,
    /// The policy has a network but this PID 1 was built without one (`limpet build`
    /// leaves the network out only when the policy has none).
    #[cfg(not(feature = "network"))]
    #[error("this limpet-init was built without its `network` feature")]
    NotBuiltIn,
}

/// Which of the signed policy's network policies is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetMode {
    /// `policy.json`'s `network`.
    Normal,
    /// `policy.json`'s `island.network` (island mode).
    Island,
}

impl NetMode {
    /// The word the console uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NetMode::Normal => "normal",
            NetMode::Island => "island",
        }
    }
}

/// The network part of the status file.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct NetworkStatus {
    /// Rules in the installed ruleset.
    pub rules: usize,
    pub interfaces: Vec<InterfaceStatus>,
    /// Upstream DNS servers the stub uses.
    pub dns: Vec<Ipv4Addr>,
    /// Packets each task's final drop rule dropped.
    pub drops: BTreeMap<String, u64>,
    /// Packets the device-wide drop rules dropped (input, forward, output, PID 1).
    pub device_drops: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InterfaceStatus {
    pub name: String,
    /// `static`, `dhcp: <state>`, or why it is not up.
    pub config: String,
    pub address: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
}

/// Which descriptor of [`Network::pollables`] is which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Dhcp(usize),
    Stub,
    Upstream(usize),
}
