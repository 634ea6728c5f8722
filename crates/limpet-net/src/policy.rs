//! The network policy in the exact form PID 1 applies.
//!
//! [`NetPolicy::compile`] runs on the build host and turns a validated [`Manifest`] into a
//! [`NetPolicy`], stored (serde) in the signed image; PID 1 builds the nftables ruleset from
//! it with [`crate::Ruleset::build`] and never reads the manifest.
//!
//! Rules this module keeps:
//! - Pure: no I/O. Same manifest, same policy.
//! - IPv4 only: an IPv6 address, network or DNS server is an error, not silently dropped, so
//!   that a manifest never promises reach the device does not give.
//! - One address set per DNS name, shared by every task allowed that name, named `n<i>` in
//!   the sorted order of the names; [`NetPolicy::names`] records the mapping.
//! - Task identity is the sandbox's: task number `i` (manifest order, every task counted)
//!   runs as uid [`FIRST_TASK_UID`]` + i`. Only tasks with `network = "allowlist"` appear;
//!   the others have their own empty network namespace.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use ipnet::{IpNet, Ipv4Net};
use limpet_manifest::{
    EgressRule, Host, ListenRule, Manifest, NetworkAccess, NetworkMode, PacketRatePer, Proto,
    Scope, Task,
};
use serde::{Deserialize, Serialize};

/// uid of the first task; equal to `limpet_sandbox::policy::FIRST_TASK_ID` (the two crates
/// do not depend on each other; the integration in PID 1 must keep them equal).
pub const FIRST_TASK_UID: u32 = 10_000;
/// Where PID 1's DNS stub listens, on UDP and TCP. Tasks with a DNS-name rule may reach it.
pub const DNS_STUB: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 53), 53);
/// Prefix of the address set of a DNS name: `n0`, `n1`, ...
pub const NAME_SET_PREFIX: &str = "n";

/// Errors compiling a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An egress rule names an IPv6 address or network.
    #[error("task \"{task}\" egress rule {rule} ({host}): IPv6 is not supported yet")]
    Ipv6Egress {
        /// The task.
        task: String,
        /// Index of the rule in the task's `egress`.
        rule: usize,
        /// The host as written.
        host: String,
    },
    /// A DNS server is an IPv6 address.
    #[error("DNS server {server}: IPv6 is not supported yet")]
    Ipv6Dns {
        /// The server.
        server: IpAddr,
    },
    /// The static address is IPv6.
    #[error("static address {address}: IPv6 is not supported yet")]
    Ipv6Address {
        /// The address.
        address: IpNet,
    },
    /// More tasks than uids.
    #[error("task \"{task}\" is number {index}; no uid is left for it")]
    TooManyTasks {
        /// The task.
        task: String,
        /// Its index.
        index: usize,
    },
}

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

impl From<Proto> for L4 {
    fn from(p: Proto) -> L4 {
        match p {
            Proto::Tcp => L4::Tcp,
            Proto::Udp => L4::Udp,
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
    /// Compiles the manifest's network declarations.
    pub fn compile(m: &Manifest) -> Result<NetPolicy, PolicyError> {
        let names = name_sets(m);
        let mut tasks = Vec::new();
        for (index, task) in m.tasks.iter().enumerate() {
            if task.network != NetworkAccess::Allowlist {
                continue;
            }
            let uid = u32::try_from(index)
                .ok()
                .and_then(|i| FIRST_TASK_UID.checked_add(i))
                .ok_or_else(|| PolicyError::TooManyTasks {
                    task: task.name.to_string(),
                    index,
                })?;
            tasks.push(task_net(task, uid, &names)?);
        }
        let dns_upstream = m
            .network
            .dns
            .iter()
            .map(|s| match s {
                IpAddr::V4(a) => Ok(*a),
                IpAddr::V6(_) => Err(PolicyError::Ipv6Dns { server: *s }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (addressing, static_address) = match &m.network.mode {
            NetworkMode::Dhcp => (Addressing::Dhcp, None),
            NetworkMode::Static { address, gateway } => match address {
                IpNet::V4(a) => {
                    let gateway = match gateway {
                        None => None,
                        Some(IpAddr::V4(g)) => Some(*g),
                        Some(IpAddr::V6(_)) => {
                            return Err(PolicyError::Ipv6Address { address: *address })
                        }
                    };
                    (
                        Addressing::Static { network: a.trunc() },
                        Some(StaticAddress {
                            address: *a,
                            gateway,
                        }),
                    )
                }
                IpNet::V6(_) => return Err(PolicyError::Ipv6Address { address: *address }),
            },
        };
        Ok(NetPolicy {
            tasks,
            egress_cap: m.network.egress_cap.map(|r| ByteRate {
                bytes_per_second: r.bytes_per_second(),
            }),
            addressing,
            dns_upstream,
            dns_stub: DNS_STUB,
            names,
            links: Links {
                interfaces: m
                    .network
                    .interfaces
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                static_address,
            },
        })
    }

    /// The set holding the addresses of `name`, if any task may reach it.
    pub fn set_of_name(&self, name: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.set.as_str())
    }
}

/// Every DNS name of an allowlist task, sorted, each with its set.
fn name_sets(m: &Manifest) -> Vec<NameSet> {
    let names: BTreeSet<&str> = m
        .tasks
        .iter()
        .filter(|t| t.network == NetworkAccess::Allowlist)
        .flat_map(|t| t.egress.iter())
        .filter_map(|e| match &e.host {
            Host::Name(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| NameSet {
            name: n.to_owned(),
            set: format!("{NAME_SET_PREFIX}{i}"),
        })
        .collect()
}

fn task_net(task: &Task, uid: u32, names: &[NameSet]) -> Result<TaskNet, PolicyError> {
    let egress = task
        .egress
        .iter()
        .enumerate()
        .map(|(i, e)| egress(task, i, e, names))
        .collect::<Result<Vec<_>, _>>()?;
    let dns = if egress
        .iter()
        .any(|e| matches!(e.to, Destination::Name { .. }))
    {
        DnsAccess::Stub
    } else {
        DnsAccess::None
    };
    Ok(TaskNet {
        name: task.name.to_string(),
        uid,
        dns,
        egress,
        listen: task.listen.iter().map(listen).collect(),
    })
}

fn egress(task: &Task, i: usize, e: &EgressRule, names: &[NameSet]) -> Result<Egress, PolicyError> {
    let v6 = || PolicyError::Ipv6Egress {
        task: task.name.to_string(),
        rule: i,
        host: e.host.to_string(),
    };
    let to = match &e.host {
        Host::Ip(IpAddr::V4(a)) => Destination::Net {
            net: Ipv4Net::from(*a),
        },
        Host::Net(IpNet::V4(n)) => Destination::Net { net: *n },
        Host::Ip(IpAddr::V6(_)) | Host::Net(IpNet::V6(_)) => return Err(v6()),
        Host::Name(n) => Destination::Name {
            name: n.clone(),
            // Every name of an allowlist task is in `names` (built from the same tasks).
            set: names
                .iter()
                .find(|s| &s.name == n)
                .map(|s| s.set.clone())
                .unwrap_or_default(),
        },
    };
    Ok(Egress {
        to,
        ports: e
            .ports
            .iter()
            .map(|p| Ports {
                start: p.start(),
                end: p.end(),
            })
            .collect(),
        proto: e.proto.into(),
        rate: e.rate.map(|r| ByteRate {
            bytes_per_second: r.bytes_per_second(),
        }),
        packets: e.packets.map(|p| PacketCap {
            count: p.count,
            per_seconds: match p.per {
                PacketRatePer::Second => 1,
                PacketRatePer::Minute => 60,
                PacketRatePer::Hour => 3600,
            },
        }),
    })
}

fn listen(l: &ListenRule) -> Listen {
    Listen {
        port: l.port,
        proto: l.proto.into(),
        from: match l.scope {
            Scope::Lan => ListenScope::Lan,
            Scope::Any => ListenScope::Any,
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    pub(crate) const MANIFEST: &str = r#"
[device]
name = "thermostat"
version = "1.0.0"
target = "x86_64"

[network]
dns = ["192.0.2.53"]
egress_cap = "1Mbit/s"

[[task]]
name = "quiet"
package = "quiet"
memory = "8MiB"
cpu = "5%"

[[task]]
name = "sensor"
package = "sensor"
memory = "8MiB"
cpu = "10%"
network = "allowlist"
syscalls = "network"

[[task.egress]]
host = "api.example.com"
ports = [443]
proto = "tcp"
rate = "20kbit/s"

[[task.egress]]
host = "198.51.100.0/24"
ports = ["8000-8080", 9000]
proto = "udp"
packets = "50/s"

[[task.listen]]
port = 8080

[[task]]
name = "web"
package = "web"
memory = "8MiB"
cpu = "10%"
network = "allowlist"
syscalls = "network"

[[task.egress]]
host = "api.example.com"
ports = [443]

[[task.egress]]
host = "a.example.net"
ports = [80]

[[task.listen]]
port = 80
scope = "any"
"#;

    pub(crate) fn manifest() -> Manifest {
        limpet_manifest::parse("limpet.toml", MANIFEST).unwrap()
    }

    #[test]
    fn compiles_tasks_names_and_caps() {
        let p = NetPolicy::compile(&manifest()).unwrap();
        assert_eq!(
            p.names,
            vec![
                NameSet {
                    name: "a.example.net".into(),
                    set: "n0".into()
                },
                NameSet {
                    name: "api.example.com".into(),
                    set: "n1".into()
                },
            ]
        );
        assert_eq!(p.tasks.len(), 2, "the task without network is left out");
        let s = &p.tasks[0];
        assert_eq!(
            (s.name.as_str(), s.uid, s.dns),
            ("sensor", 10_001, DnsAccess::Stub)
        );
        assert_eq!(
            s.egress[0].to,
            Destination::Name {
                name: "api.example.com".into(),
                set: "n1".into()
            }
        );
        assert_eq!(
            s.egress[0].rate,
            Some(ByteRate {
                bytes_per_second: 2500
            })
        );
        assert_eq!(
            s.egress[1].ports,
            vec![
                Ports {
                    start: 8000,
                    end: 8080
                },
                Ports {
                    start: 9000,
                    end: 9000
                }
            ]
        );
        assert_eq!(
            s.egress[1].packets,
            Some(PacketCap {
                count: 50,
                per_seconds: 1
            })
        );
        assert_eq!(s.listen[0].from, ListenScope::Lan);
        assert_eq!(p.tasks[1].listen[0].from, ListenScope::Any);
        assert_eq!(p.dns_upstream, vec![Ipv4Addr::new(192, 0, 2, 53)]);
        assert_eq!(
            p.egress_cap,
            Some(ByteRate {
                bytes_per_second: 125_000
            })
        );
        assert_eq!(p.addressing, Addressing::Dhcp);
        assert_eq!(p.set_of_name("a.example.net"), Some("n0"));
    }

    #[test]
    fn json_round_trip_and_static_addressing() {
        let p = NetPolicy::compile(&manifest()).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""to":{"kind":"name","name":"api.example.com","set":"n1"}"#));
        assert_eq!(serde_json::from_str::<NetPolicy>(&json).unwrap(), p);

        let text = MANIFEST.replace(
            "[network]\n",
            "[network]\nmode = \"static\"\naddress = \"192.0.2.10/24\"\n",
        );
        let m = limpet_manifest::parse("limpet.toml", &text).unwrap();
        let p = NetPolicy::compile(&m).unwrap();
        assert_eq!(
            p.addressing,
            Addressing::Static {
                network: "192.0.2.0/24".parse().unwrap()
            }
        );
    }

    #[test]
    fn ipv6_egress_is_refused_where_it_is_written() {
        // The manifest refuses IPv6 hosts at their line; compile's own Ipv6Egress error
        // stays as a second guard for a manifest built in code.
        let text = MANIFEST.replace("198.51.100.0/24", "2001:db8::/32");
        let e = limpet_manifest::parse("limpet.toml", &text).unwrap_err();
        assert!(
            e.to_string()
                .contains("IPv6 host \"2001:db8::/32\" is not supported"),
            "{e}"
        );
    }
}
