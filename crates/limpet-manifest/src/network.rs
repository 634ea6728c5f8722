//! `[network]`: how the device gets its address, its DNS servers and interfaces; the
//! types and their checks. A task's own network (egress and listen rules) is in
//! [`crate::task::net`].
//!
//! Rules this module keeps:
//! - IPv4 only: an IPv6 address, gateway or DNS server is refused with a reason, because the
//!   device's ruleset drops every IPv6 packet and such a setting could never work.
//! - `address` and `gateway` belong to `mode = "static"` and nothing else; a static gateway
//!   is inside the device's network and is not the device's own address.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::diag::Problem;
use crate::keyword::keywords;
use crate::names::InterfaceName;
use crate::raw::RawNetwork;
use crate::units::Rate;
use crate::validate::Checker;

/// Device-wide network settings: `[network]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    /// How the device gets its address.
    pub mode: NetworkMode,
    /// DNS servers; empty means those offered by DHCP.
    pub dns: Vec<IpAddr>,
    /// Interfaces to bring up (default `["eth0"]`).
    pub interfaces: Vec<InterfaceName>,
    /// Optional cap on all traffic leaving the device.
    pub egress_cap: Option<Rate>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            mode: NetworkMode::Dhcp,
            dns: Vec::new(),
            interfaces: default_interfaces(),
            egress_cap: None,
        }
    }
}

/// `eth0`: the first interface on the Debian kernels and QEMU machines Limpet targets.
pub(crate) fn default_interfaces() -> Vec<InterfaceName> {
    "eth0".parse().map(|n| vec![n]).unwrap_or_default()
}

/// How the device gets its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum NetworkMode {
    /// DHCP on every listed interface.
    Dhcp,
    /// A fixed address.
    Static {
        /// The device's address with its prefix, e.g. `192.0.2.10/24`.
        address: IpNet,
        /// The default route, inside `address`'s network; none for a link-only device.
        gateway: Option<IpAddr>,
    },
}

/// How `mode` is written: the word that chooses a [`NetworkMode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModeWord {
    Dhcp,
    Static,
}

keywords!(ModeWord, "network mode", {
    Dhcp => "dhcp",
    Static => "static",
});

impl NetworkMode {
    /// The `mode` word this mode is written with.
    pub(crate) fn word(&self) -> ModeWord {
        match self {
            NetworkMode::Dhcp => ModeWord::Dhcp,
            NetworkMode::Static { .. } => ModeWord::Static,
        }
    }
}

/// Checks `[network]`.
pub(crate) fn check(c: &mut Checker<'_>, n: &RawNetwork) -> Option<Network> {
    let mode = match &n.mode {
        Some(m) => c.keyword(m),
        None => Some(ModeWord::Dhcp),
    };
    let address =
        n.address.as_ref().and_then(|a| {
            c.check(a, |v| {
                v.parse::<IpNet>()
                    .map_err(|_| {
                        let hint = v
                            .parse::<IpAddr>()
                            .ok()
                            .map(|ip| format!("add the prefix length, e.g. \"{ip}/24\""));
                        Problem::new(format!("invalid address {v:?}"))
                    .expected("the device's address with its prefix length, e.g. \"192.0.2.10/24\"")
                    .maybe_hint(hint)
                    })
                    .and_then(|net| match net {
                        IpNet::V6(_) => Err(ipv6_problem("address", v)),
                        IpNet::V4(_) => Ok(net),
                    })
            })
            .map(|net| (net, a.span()))
        });
    let gateway = n.gateway.as_ref().and_then(|g| {
        c.check(g, |v| {
            v.parse::<IpAddr>()
                .map_err(|_| {
                    Problem::new(format!("invalid gateway {v:?}"))
                        .expected("an IP address, e.g. \"192.0.2.1\"")
                })
                .and_then(|ip| match ip {
                    IpAddr::V6(_) => Err(ipv6_problem("gateway", v)),
                    IpAddr::V4(_) => Ok(ip),
                })
        })
        .map(|ip| (ip, g.span()))
    });
    let mode = match mode {
        Some(ModeWord::Dhcp) => {
            for (raw, key) in [(&n.address, "address"), (&n.gateway, "gateway")] {
                if let Some(raw) = raw {
                    c.report(
                        &raw.span(),
                        Problem::new(format!("`{key}` is only used with a static address"))
                            .expected(format!(
                                "no `address` or `gateway` with mode = \"{}\"",
                                ModeWord::Dhcp
                            ))
                            .hint(format!(
                                "set mode = \"{}\", or remove this key",
                                ModeWord::Static
                            )),
                    );
                }
            }
            (n.address.is_none() && n.gateway.is_none()).then_some(NetworkMode::Dhcp)
        }
        Some(ModeWord::Static) => match (&address, &n.address) {
            (Some((net, _)), _) => {
                let gw_ok = match &gateway {
                    Some((gw, span)) if !net.contains(gw) || *gw == net.addr() => {
                        let why = if *gw == net.addr() {
                            "is the device's own address"
                        } else {
                            "is outside the device's network"
                        };
                        c.report(
                            span,
                            Problem::new(format!("gateway {gw} {why}"))
                                .expected(format!("an address inside {}", net.trunc())),
                        );
                        false
                    }
                    _ => true,
                };
                gw_ok.then(|| NetworkMode::Static {
                    address: *net,
                    gateway: gateway.as_ref().map(|(g, _)| *g),
                })
            }
            (None, Some(_)) => None,
            (None, None) => {
                if let Some(m) = &n.mode {
                    c.report(
                        &m.span(),
                        Problem::new("static mode needs an address")
                            .expected("`address = \"192.0.2.10/24\"` in [network]")
                            .hint(format!(
                                "add address (and gateway) or use mode = \"{}\"",
                                ModeWord::Dhcp
                            )),
                    );
                }
                None
            }
        },
        None => None,
    };
    let dns = c.list(&n.dns, |v| {
        v.parse::<IpAddr>()
            .map_err(|_| {
                Problem::new(format!("invalid DNS server {v:?}"))
                    .expected("an IP address, e.g. \"192.0.2.53\"")
            })
            .and_then(|ip| match ip {
                IpAddr::V6(_) => Err(ipv6_problem("DNS server", v)),
                IpAddr::V4(_) => Ok(ip),
            })
    });
    let interfaces = match &n.interfaces {
        Some(_) => c.list(&n.interfaces, str::parse),
        None => Some(default_interfaces()),
    };
    let egress_cap = n.egress_cap.as_ref().map(|r| c.parse(r));
    let egress_cap = egress_cap.map_or(Some(None), |r| r.map(Some));
    Some(Network {
        mode: mode?,
        dns: dns?,
        interfaces: interfaces?,
        egress_cap: egress_cap?,
    })
}

/// IPv6 is refused where the manifest names addresses: the device's ruleset drops every
/// IPv6 packet (limpet-net enforces IPv4 only), so such a rule could never work.
pub(crate) fn ipv6_problem(what: &str, v: &str) -> Problem {
    Problem::new(format!("IPv6 {what} {v:?} is not supported"))
        .expected("an IPv4 address")
        .hint("the device drops all IPv6 traffic; its network policy is IPv4 only for now")
}
