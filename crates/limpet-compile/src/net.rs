//! The network policy: the manifest's egress and listen rules, its addressing and DNS
//! servers compiled into the [`NetPolicy`] PID 1 turns into one nftables ruleset
//! (`limpet_net::Ruleset::build`).
//!
//! Rules this module keeps:
//! - Pure: no I/O. Same manifest, same policy.
//! - IPv4 only: an IPv6 address, network or DNS server is an error, not silently dropped, so
//!   that a manifest never promises reach the device does not give.
//! - One address set per DNS name, shared by every task allowed that name, named `n<i>` in
//!   the sorted order of the names.
//! - Task identity is the sandbox's: task number `i` (manifest order, every task counted)
//!   runs as uid [`FIRST_TASK_UID`]` + i`. Only tasks with `network = "allowlist"` appear.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use limpet_manifest::{
    EgressRule, Host, ListenRule, Manifest, NetworkAccess, NetworkMode, PacketRatePer, Proto,
    Scope, Task,
};
use limpet_policy::net::{
    Addressing, ByteRate, Destination, DnsAccess, Egress, Links, Listen, ListenScope, NameSet,
    NetPolicy, PacketCap, Ports, Reach, StaticAddress, TaskNet, DNS_STUB, FIRST_TASK_UID, L4,
    NAME_SET_PREFIX,
};

/// Errors compiling the network policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// An egress rule names an IPv6 address or network.
    #[error("task \"{task}\" egress rule {rule} ({host}): IPv6 is not supported yet")]
    Ipv6Egress {
        /// The task whose rule it is.
        task: String,
        /// Index of the rule in the task's `egress`.
        rule: usize,
        /// The host as written.
        host: String,
    },
    /// A DNS server is an IPv6 address.
    #[error("DNS server {server}: IPv6 is not supported yet")]
    Ipv6Dns {
        /// The server as `[network] dns` gives it.
        server: IpAddr,
    },
    /// The static address, or its gateway, is IPv6.
    #[error("static address {address}: IPv6 is not supported yet")]
    Ipv6Address {
        /// The address as `[network] address` gives it (for an IPv6 gateway too).
        address: IpNet,
    },
    /// More tasks than uids.
    #[error("task \"{task}\" is number {index}; no uid is left for it")]
    TooManyTasks {
        /// The first task left without a uid.
        task: String,
        /// Its position in the manifest, from 0.
        index: usize,
    },
}

/// Compiles the manifest's network declarations: the `network = "allowlist"` tasks' rules,
/// the addressing and the DNS servers.
///
/// Fails on an IPv6 address, network or DNS server, and when there are more tasks than uids.
pub fn compile(m: &Manifest) -> Result<NetPolicy, NetError> {
    let names = name_sets(m);
    let mut tasks = Vec::new();
    for (index, task) in m.tasks.iter().enumerate() {
        if task.network != NetworkAccess::Allowlist {
            continue;
        }
        let uid = u32::try_from(index)
            .ok()
            .and_then(|i| FIRST_TASK_UID.checked_add(i))
            .ok_or_else(|| NetError::TooManyTasks {
                task: task.name.to_string(),
                index,
            })?;
        let mut net = task_net(task, uid, &names)?;
        // `[remote] direct = true`: the remote agent's set of pinholes, empty until PID 1
        // opens one for a session whose capability it verified.
        net.pinholes = task.name.as_str() == limpet_manifest::REMOTE_AGENT_TASK
            && m.remote.as_ref().is_some_and(|r| r.direct);
        tasks.push(net);
    }
    let dns_upstream = m
        .network
        .dns
        .iter()
        .map(|s| match s {
            IpAddr::V4(a) => Ok(*a),
            IpAddr::V6(_) => Err(NetError::Ipv6Dns { server: *s }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (addressing, static_address) = match &m.network.mode {
        NetworkMode::Dhcp => (Addressing::Dhcp, None),
        NetworkMode::Static { address, gateway } => match address {
            IpNet::V4(a) => {
                let gateway = match gateway {
                    None => None,
                    Some(IpAddr::V4(g)) => Some(*g),
                    Some(IpAddr::V6(_)) => return Err(NetError::Ipv6Address { address: *address }),
                };
                (
                    Addressing::Static { network: a.trunc() },
                    Some(StaticAddress {
                        address: *a,
                        gateway,
                    }),
                )
            }
            IpNet::V6(_) => return Err(NetError::Ipv6Address { address: *address }),
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
        roughtime: m
            .lifecycle
            .iter()
            .flat_map(|l| &l.roughtime)
            .map(|r| r.address)
            .collect(),
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

fn task_net(task: &Task, uid: u32, names: &[NameSet]) -> Result<TaskNet, NetError> {
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
        pinholes: false,
    })
}

fn egress(task: &Task, i: usize, e: &EgressRule, names: &[NameSet]) -> Result<Egress, NetError> {
    let v6 = || NetError::Ipv6Egress {
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
        proto: l4(e.proto),
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
        reach: Reach::Declared,
    })
}

fn listen(l: &ListenRule) -> Listen {
    Listen {
        port: l.port,
        proto: l4(l.proto),
        from: match l.scope {
            Scope::Lan => ListenScope::Lan,
            Scope::Any => ListenScope::Any,
        },
    }
}

fn l4(p: Proto) -> L4 {
    match p {
        Proto::Tcp => L4::Tcp,
        Proto::Udp => L4::Udp,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::net::Ipv4Addr;

    /// The test device: `tests/fixtures/network.toml`.
    const MANIFEST: &str = include_str!("../tests/fixtures/network.toml");

    fn manifest() -> Manifest {
        limpet_manifest::parse("limpet.toml", MANIFEST).unwrap()
    }

    /// `[remote]`: the agent's egress is the relay's address and port and the services'
    /// loopback ports, nothing else, and it listens on nothing.
    #[test]
    fn the_remote_agent_reaches_the_relay_and_the_declared_loopback_ports_only() {
        let text = format!(
            "[device]\nname = \"d\"\nversion = \"1.0.0\"\ntarget = \"x86_64\"\n\n\
             [[task]]\nname = \"web\"\npackage = \"web\"\nmemory = \"8MiB\"\ncpu = \"10%\"\n\
             network = \"allowlist\"\n\n[remote]\nrelay = \"192.0.2.7:7400\"\n\
             access_key = \"{}\"\nservices = [{{ name = \"console\", task = \"web\", port = 8080 }}]\n",
            "ab".repeat(32)
        );
        let m = limpet_manifest::parse("limpet.toml", &text)
            .unwrap()
            .with_remote_agent(&"ab".repeat(32))
            .unwrap();
        let p = compile(&m).unwrap();
        let agent = p
            .tasks
            .iter()
            .find(|t| t.name == limpet_manifest::REMOTE_AGENT_TASK)
            .unwrap();
        let egress: Vec<_> = agent
            .egress
            .iter()
            .map(|e| (e.to.clone(), e.ports.clone(), e.proto))
            .collect();
        let net = |a: Ipv4Addr| Destination::Net {
            net: Ipv4Net::new(a, 32).unwrap(),
        };
        assert_eq!(
            egress,
            [
                (
                    net(Ipv4Addr::new(192, 0, 2, 7)),
                    vec![Ports {
                        start: 7400,
                        end: 7400
                    }],
                    L4::Tcp
                ),
                (
                    net(Ipv4Addr::LOCALHOST),
                    vec![Ports {
                        start: 8080,
                        end: 8080
                    }],
                    L4::Tcp
                ),
            ]
        );
        assert!(agent.listen.is_empty());
    }

    /// `[remote] direct = true`: the agent's task, and no other, gets its pinhole set, and
    /// the policy names the access key PID 1 verifies pinholes against; without `direct`
    /// neither is there. No egress rule is added for the direct path.
    #[test]
    fn the_remote_agent_s_pinholes_are_compiled_only_with_direct() {
        let key = "ab".repeat(32);
        let compiled = |direct: &str| {
            let text = format!(
                "[device]\nname = \"d\"\nversion = \"1.0.0\"\ntarget = \"x86_64\"\n\n\
                 [[task]]\nname = \"web\"\npackage = \"web\"\nmemory = \"8MiB\"\ncpu = \"10%\"\n\
                 network = \"allowlist\"\n\n[remote]\nrelay = \"192.0.2.7:7400\"\n\
                 access_key = \"{key}\"\nservices = [{{ name = \"console\", task = \"web\", port = 8080 }}]\n{direct}"
            );
            let m = limpet_manifest::parse("limpet.toml", &text)
                .unwrap()
                .with_remote_agent(&key)
                .unwrap();
            crate::compile(&m).unwrap()
        };
        let with = compiled("direct = true\n");
        let pinholes: Vec<(&str, bool, usize)> = with
            .network
            .as_ref()
            .unwrap()
            .tasks
            .iter()
            .map(|t| (t.name.as_str(), t.pinholes, t.egress.len()))
            .collect();
        assert_eq!(
            pinholes,
            [
                ("web", false, 0),
                (limpet_manifest::REMOTE_AGENT_TASK, true, 2)
            ]
        );
        assert_eq!(with.remote_direct.map(|d| d.access_key), Some(key.clone()));
        let without = compiled("");
        assert!(without.network.unwrap().tasks.iter().all(|t| !t.pinholes));
        assert_eq!(without.remote_direct, None);
    }

    #[test]
    fn compiles_tasks_names_and_caps() {
        let p = compile(&manifest()).unwrap();
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
        let p = compile(&manifest()).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""to":{"kind":"name","name":"api.example.com","set":"n1"}"#));
        assert_eq!(serde_json::from_str::<NetPolicy>(&json).unwrap(), p);

        let text = MANIFEST.replace(
            "[network]\n",
            "[network]\nmode = \"static\"\naddress = \"192.0.2.10/24\"\n",
        );
        let m = limpet_manifest::parse("limpet.toml", &text).unwrap();
        let p = compile(&m).unwrap();
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
