//! The network policy in the exact form PID 1 applies.
//!
//! `limpet-compile` turns the manifest's network declarations into a [`NetPolicy`]; PID 1
//! builds the nftables ruleset from it with `limpet_net::Ruleset::build` and never reads the
//! manifest.
//!
//! Rules this module keeps:
//! - IPv4 only: the compiler refuses an IPv6 address, network or DNS server rather than
//!   dropping it, so that a policy never promises reach the device does not give.
//! - One address set per DNS name, shared by every task allowed that name, named `n<i>` in
//!   the sorted order of the names; [`NetPolicy::names`] records the mapping.
//! - Task identity is the sandbox's: task number `i` (manifest order, every task counted)
//!   runs as uid [`FIRST_TASK_UID`]` + i`. Only tasks with `network = "allowlist"` appear;
//!   the others have their own empty network namespace.

use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// uid of the first task: the sandbox's [`FIRST_TASK_ID`](crate::FIRST_TASK_ID).
pub const FIRST_TASK_UID: u32 = crate::FIRST_TASK_ID;
/// Where PID 1's DNS stub listens, on UDP and TCP. Tasks with a DNS-name rule may reach it.
pub const DNS_STUB: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 53), 53);
/// Prefix of the address set of a DNS name: `n0`, `n1`, ...
pub const NAME_SET_PREFIX: &str = "n";

/// The device's whole network policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetPolicy {
    /// Tasks with `network = "allowlist"`, in manifest order.
    pub tasks: Vec<TaskNet>,
    /// Cap on all traffic leaving the device (loopback excepted), in bytes per second.
    pub egress_cap: Option<ByteRate>,
    /// How PID 1 gets its address; decides whether DHCP traffic is allowed.
    pub addressing: Addressing,
    /// DNS servers from the manifest; DHCP adds its own at run time.
    pub dns_upstream: Vec<Ipv4Addr>,
    /// The stub resolver tasks with a DNS-name rule may reach ([`DNS_STUB`]).
    pub dns_stub: SocketAddrV4,
    /// One address set per DNS name.
    pub names: Vec<NameSet>,
    /// What PID 1 brings up: the interfaces, and the static address if there is one.
    pub links: Links,
}

/// The device's interfaces and their configuration, for PID 1's network bring-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Links {
    /// Interfaces to bring up, in manifest order (DHCP runs on each).
    pub interfaces: Vec<String>,
    /// The static address (with its prefix) and gateway; `None` means DHCP.
    pub static_address: Option<StaticAddress>,
}

/// A fixed address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticAddress {
    /// The address with its prefix length, e.g. `192.0.2.10/24`.
    pub address: Ipv4Net,
    /// The default route; `None` for a link-only device.
    pub gateway: Option<Ipv4Addr>,
}

/// How PID 1 gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Addressing {
    /// DHCP: UDP 68 to 67 out, 67 to 68 in, for PID 1 only.
    Dhcp,
    /// A static address: no DHCP traffic; its network is on the LAN from the start.
    Static {
        /// The device's network (host bits cleared).
        network: Ipv4Net,
    },
}

/// The address set of one DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameSet {
    /// The DNS name.
    pub name: String,
    /// The nftables set holding its current addresses (`n<i>`).
    pub set: String,
}

/// One task's network policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskNet {
    /// The task's name.
    pub name: String,
    /// Its uid: the fallback match when there is no cgroup2.
    pub uid: u32,
    /// Whether it may reach the DNS stub.
    pub dns: DnsAccess,
    /// Where it may connect to, in manifest order.
    pub egress: Vec<Egress>,
    /// Where it listens, in manifest order.
    pub listen: Vec<Listen>,
}

/// Whether a task may query the DNS stub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsAccess {
    /// No DNS-name rule: no DNS.
    None,
    /// At least one DNS-name rule: UDP and TCP to [`NetPolicy::dns_stub`].
    Stub,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4 {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
}

impl L4 {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4::Tcp => 6,
            L4::Udp => 17,
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        }
    }
}

/// Where an egress rule leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Destination {
    /// A literal network (a single address is a /32).
    Net {
        /// The network.
        net: Ipv4Net,
    },
    /// The current addresses of a DNS name, in its set.
    Name {
        /// The DNS name.
        name: String,
        /// Its set.
        set: String,
    },
}

/// A byte rate cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRate {
    /// Bytes per second (rounded up from the manifest's rate).
    pub bytes_per_second: u64,
}

/// A packet rate cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketCap {
    /// Packets per period.
    pub count: u64,
    /// The period in seconds: 1, 60 or 3600.
    pub per_seconds: u64,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

/// One resolved egress rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Egress {
    /// Where.
    pub to: Destination,
    /// Destination ports.
    pub ports: Vec<Ports>,
    /// Protocol.
    pub proto: L4,
    /// Byte rate cap over all its ports.
    pub rate: Option<ByteRate>,
    /// Packet rate cap over all its ports.
    pub packets: Option<PacketCap>,
}

/// One listening port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// The port.
    pub port: u16,
    /// Protocol.
    pub proto: L4,
    /// Who may connect.
    pub from: ListenScope,
}

/// Who may connect to a listening port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenScope {
    /// Sources in the `lan4` set: the networks the device is connected to.
    Lan,
    /// Any source.
    Any,
}

impl NetPolicy {
    /// The set holding the addresses of `name`, if any task may reach it.
    pub fn set_of_name(&self, name: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.set.as_str())
    }
}
