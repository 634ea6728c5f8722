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
    /// Tasks with `network = "allowlist"`, in manifest order: PID 1 gives each an output
    /// chain of its own (`task_<name>`). The other tasks have no entry.
    pub tasks: Vec<TaskNet>,
    /// Cap on all traffic leaving the device (loopback excepted), from `[network] egress_cap`;
    /// PID 1 drops what goes over it in the output chain, before any task's own rules.
    pub egress_cap: Option<ByteRate>,
    /// How PID 1 gets its address (`[network] mode`); decides whether DHCP traffic is allowed
    /// and whether the LAN set starts with the static network.
    pub addressing: Addressing,
    /// DNS servers from `[network] dns`: the only addresses PID 1's stub may query (set
    /// `dns4`) until DHCP adds its own at run time.
    pub dns_upstream: Vec<Ipv4Addr>,
    /// The stub resolver tasks with a DNS-name rule may reach ([`DNS_STUB`]).
    pub dns_stub: SocketAddrV4,
    /// One address set per DNS name of any allowlist task's egress rules, in sorted name
    /// order: PID 1 creates the sets empty, and its stub fills them with the answers it gives.
    pub names: Vec<NameSet>,
    /// What PID 1 brings up: the interfaces, and the static address if there is one.
    pub links: Links,
    /// The Roughtime servers of `[lifecycle] roughtime`: PID 1 (uid 0) may send UDP to
    /// exactly these, in the normal and the island policy alike.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roughtime: Vec<SocketAddrV4>,
}

/// The device's interfaces and their configuration, for PID 1's network bring-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Links {
    /// Interfaces to bring up, from `[network] interfaces` in manifest order (DHCP runs on
    /// each).
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
    /// The DNS name, as an egress rule's `host` gives it.
    pub name: String,
    /// The nftables set holding its current addresses (`n<i>`); the stub adds each answer
    /// with its TTL as the element's timeout.
    pub set: String,
}

/// One task's network policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskNet {
    /// The task's name: PID 1 matches its packets by its cgroup `limpet/<name>`, and names
    /// its chain and counters after it.
    pub name: String,
    /// Its uid (the sandbox's, by manifest position): the match when there is no cgroup2.
    pub uid: u32,
    /// Whether it may reach the DNS stub: only a task with a DNS-name egress rule may.
    pub dns: DnsAccess,
    /// Where it may connect to: its `[[task.egress]]` rules in manifest order, each turned
    /// into rules of the task's chain; whatever none of them accepts is dropped.
    pub egress: Vec<Egress>,
    /// Where it listens: its `[[task.listen]]` rules in manifest order, each one accept rule
    /// in the input chain.
    pub listen: Vec<Listen>,
    /// Whether the task has a set of pinholes (the remote agent with `[remote] direct =
    /// true`): PID 1 creates it empty and adds one element (a peer's address and port, from
    /// the task's own source port, with a timeout) per direct session it verified the
    /// capability of; the task's chain accepts TCP to exactly those. Left out of the JSON
    /// when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinholes: bool,
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
        /// The DNS name, as the rule's `host` gives it.
        name: String,
        /// The set holding its addresses (the one [`NetPolicy::names`] gives it).
        set: String,
    },
}

/// A byte rate cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRate {
    /// Bytes per second, rounded up from the manifest's rate; PID 1 drops what goes over it
    /// (`limit rate over`).
    pub bytes_per_second: u64,
}

/// A packet rate cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketCap {
    /// Packets per period, from the rule's `packets`; PID 1 drops what goes over it.
    pub count: u64,
    /// The period in seconds: 1, 60 or 3600.
    pub per_seconds: u64,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    /// First port of the range (for a single port, the port).
    pub start: u16,
    /// Last port of the range, included (equal to `start` for a single port).
    pub end: u16,
}

/// One resolved egress rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Egress {
    /// The destination, from the rule's `host`: a network, or a DNS name's set.
    pub to: Destination,
    /// Destination ports, from the rule's `ports`: one rule of the task's chain per range.
    pub ports: Vec<Ports>,
    /// The transport protocol, from the rule's `proto`.
    pub proto: L4,
    /// Byte rate cap over all its ports, from the rule's `rate`: packets of the rule then
    /// jump to a chain of their own that drops what goes over it.
    pub rate: Option<ByteRate>,
    /// Packet rate cap over all its ports, from the rule's `packets`, in the same chain as
    /// `rate`.
    pub packets: Option<PacketCap>,
    /// Whether the rule reaches its whole destination or only the part of it on the LAN
    /// (island mode with `lan = true`). Left out of the JSON when it is
    /// [`Reach::Declared`], so a policy without island mode reads as before.
    #[serde(default, skip_serializing_if = "Reach::is_declared")]
    pub reach: Reach,
}

/// What part of an egress rule's destination a task may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// The destination as declared.
    #[default]
    Declared,
    /// Only addresses of the destination that are on the LAN (the `lan4` set: the networks
    /// the device is connected to): island mode's rules with `lan = true`.
    LanOnly,
}

impl Reach {
    /// Whether this is [`Reach::Declared`].
    pub fn is_declared(&self) -> bool {
        *self == Reach::Declared
    }
}

/// One listening port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// The destination port PID 1's input chain accepts, from the rule's `port`.
    pub port: u16,
    /// The transport protocol, from the rule's `proto`.
    pub proto: L4,
    /// Who may connect, from the rule's `scope`.
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
