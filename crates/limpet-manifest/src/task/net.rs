//! A task's network: whether it has one (`network`), where it may connect
//! (`[[task.egress]]`: hosts, ports, rates) and what it listens on (`[[task.listen]]`); the
//! types and their checks. The device-wide `[network]` is in [`crate::network`].
//!
//! Rules this module keeps:
//! - A host is exactly one of a DNS name, an IP address or a CIDR network, decided once
//!   here; the policy compiler never re-guesses from a string.
//! - A CIDR has no host bits set and a prefix above zero: `0.0.0.0/0` would turn an
//!   allowlist into "everything", which defeats principle 4 of the design.
//! - Ports are 1-65535 and ranges run upwards; port 0 is never a real destination.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Serialize;

use crate::diag::Problem;
use crate::keyword::keywords;
use crate::network::ipv6_problem;
use crate::raw::{RawEgress, RawListen, RawPort};
use crate::units::{serialize_as_display, PacketRate, Rate};
use crate::validate::Checker;

/// Where a task may connect to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, resolved on the device by the policy's stub resolver.
    Name(String),
    /// One IP address.
    Ip(IpAddr),
    /// A network, e.g. `192.0.2.0/24`.
    Net(IpNet),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Net(net) => write!(f, "{net}"),
        }
    }
}
serialize_as_display!(Host);

const HOST_EXPECTED: &str = "a DNS name (e.g. \"api.example.com\"), an IP address or a CIDR network (e.g. \"192.0.2.0/24\")";

impl FromStr for Host {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        let err = || Problem::new(format!("invalid host {s:?}")).expected(HOST_EXPECTED);
        if s.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6())
            || s.parse::<IpNet>().is_ok_and(|n| matches!(n, IpNet::V6(_)))
        {
            return Err(ipv6_problem("host", s));
        }
        if s.contains('/') {
            let net: IpNet = s.parse().map_err(|_| {
                err().hint(
                    "a CIDR network is an address, '/', and a prefix length, e.g. \"192.0.2.0/24\"",
                )
            })?;
            if net.prefix_len() == 0 {
                return Err(err()
                    .hint("a /0 network allows every address; list the networks the task needs"));
            }
            if net.trunc() != net {
                return Err(err().hint(format!(
                    "host bits are set; did you mean \"{}\"?",
                    net.trunc()
                )));
            }
            return Ok(Host::Net(net));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if s.contains(':') || (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.')) {
            return Err(err().hint("this looks like an IP address but is not a valid one"));
        }
        check_dns_name(s).map_err(|hint| err().hint(hint))?;
        Ok(Host::Name(s.to_owned()))
    }
}

/// RFC 1123 host name syntax, lower-case; returns a hint on failure.
pub(crate) fn check_dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the host cannot be empty".to_owned());
    }
    if let Some(stripped) = s.strip_suffix('.') {
        return Err(format!("drop the trailing dot: \"{stripped}\""));
    }
    if s.len() > 253 {
        return Err("a DNS name is at most 253 characters".to_owned());
    }
    if s.starts_with("*.") {
        return Err("wildcards are not supported; list each host".to_owned());
    }
    if s.chars().any(|c| c.is_ascii_uppercase()) && check_dns_name(&s.to_ascii_lowercase()).is_ok()
    {
        return Err(format!(
            "DNS names are written in lower case: \"{}\"",
            s.to_ascii_lowercase()
        ));
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label has 1 to 63 characters".to_owned());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!("{c:?} is not allowed in a DNS name"));
        }
    }
    Ok(())
}

/// One port or an inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// First port.
    pub fn start(self) -> u16 {
        self.start
    }
    /// Last port (equal to `start` for a single port).
    pub fn end(self) -> u16 {
        self.end
    }

    /// A single port, 1-65535.
    pub(crate) fn single(port: i64) -> Result<Self, Problem> {
        let p = port_number(port, &port.to_string())?;
        Ok(PortRange { start: p, end: p })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}
serialize_as_display!(PortRange);

const PORT_EXPECTED: &str = "a port from 1 to 65535, or a range \"a-b\" with a <= b";

/// Checks a port number; `shown` is how it was written.
pub(crate) fn port_number(n: i64, shown: &str) -> Result<u16, Problem> {
    match u16::try_from(n) {
        Ok(0) => Err(Problem::new("invalid port 0")
            .expected(PORT_EXPECTED)
            .hint("port 0 is not a destination; name the real port")),
        Ok(p) => Ok(p),
        Err(_) => Err(Problem::new(format!("invalid port {shown}"))
            .expected(PORT_EXPECTED)
            .hint("ports run from 1 to 65535")),
    }
}

impl FromStr for PortRange {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        let err = || Problem::new(format!("invalid port range {s:?}")).expected(PORT_EXPECTED);
        let num = |p: &str| -> Result<u16, Problem> {
            let p = p.trim();
            let n: i64 = p
                .parse()
                .map_err(|_| err().hint("write numbers, e.g. \"8000-8080\""))?;
            port_number(n, p)
        };
        let Some((a, b)) = s.split_once('-') else {
            return num(s).map(|p| PortRange { start: p, end: p });
        };
        let (start, end) = (num(a)?, num(b)?);
        if start > end {
            return Err(err().hint(format!(
                "the range runs backwards; did you mean \"{end}-{start}\"?"
            )));
        }
        Ok(PortRange { start, end })
    }
}

/// Transport protocol of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

keywords!(Proto, "protocol", {
    Tcp => "tcp",
    Udp => "udp",
});

/// Who may connect to a listening port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Only peers on the device's own link-local and private networks (the safe default).
    Lan,
    /// Any address.
    Any,
}

keywords!(Scope, "listen scope", {
    Lan => "lan",
    Any => "any",
});

/// One destination a task may reach: `[[task.egress]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EgressRule {
    /// DNS name, IP address or CIDR network.
    pub host: Host,
    /// Destination ports and ranges; never empty.
    pub ports: Vec<PortRange>,
    /// Transport protocol (default `tcp`).
    pub proto: Proto,
    /// Optional cap on the data rate to this destination.
    pub rate: Option<Rate>,
    /// Optional cap on the packet rate to this destination.
    pub packets: Option<PacketRate>,
}

/// One port a task listens on: `[[task.listen]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenRule {
    /// The port, 1-65535.
    pub port: u16,
    /// Transport protocol (default `tcp`).
    pub proto: Proto,
    /// Who may connect (default `lan`).
    pub scope: Scope,
}

/// Whether a task has any network at all.
///
/// An enum, not a bool, so that network access is a named, deliberate choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NetworkAccess {
    /// Own network namespace with loopback only (the default).
    #[default]
    None,
    /// The device's network, limited to the task's `egress` and `listen` rules.
    Allowlist,
}

keywords!(NetworkAccess, "network access", {
    None => "none",
    Allowlist => "allowlist",
});

/// Checks one `[[task.egress]]`.
pub(crate) fn egress(c: &mut Checker<'_>, e: &RawEgress) -> Option<EgressRule> {
    let host = c.parse(&e.host);
    let mut ports = Vec::new();
    let mut ports_ok = true;
    for p in e.ports.get_ref() {
        let parsed = match p.get_ref() {
            RawPort::Int(n) => PortRange::single(*n),
            RawPort::Str(s) => s.parse(),
        };
        match parsed {
            Ok(r) => ports.push(r),
            Err(problem) => {
                ports_ok = false;
                c.report(&p.span(), problem);
            }
        }
    }
    if e.ports.get_ref().is_empty() {
        ports_ok = false;
        c.report(
            &e.ports.span(),
            Problem::new("no ports listed").expected("at least one port or range, e.g. [443]"),
        );
    }
    let proto = e.proto.as_ref().map_or(Some(Proto::Tcp), |p| c.keyword(p));
    let rate = e
        .rate
        .as_ref()
        .map(|r| c.parse(r))
        .map_or(Some(None), |r| r.map(Some));
    let packets = e
        .packets
        .as_ref()
        .map(|r| c.parse(r))
        .map_or(Some(None), |r| r.map(Some));
    ports_ok.then_some(())?;
    Some(EgressRule {
        host: host?,
        ports,
        proto: proto?,
        rate: rate?,
        packets: packets?,
    })
}

/// Checks one `[[task.listen]]`.
pub(crate) fn listen(c: &mut Checker<'_>, l: &RawListen) -> Option<ListenRule> {
    let n = *l.port.get_ref();
    let port = match port_number(n, &n.to_string()) {
        Ok(p) => Some(p),
        Err(p) => {
            c.report(&l.port.span(), p);
            None
        }
    };
    let proto = l.proto.as_ref().map_or(Some(Proto::Tcp), |p| c.keyword(p));
    let scope = l.scope.as_ref().map_or(Some(Scope::Lan), |s| c.keyword(s));
    Some(ListenRule {
        port: port?,
        proto: proto?,
        scope: scope?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            "api.example.com".parse::<Host>().ok(),
            Some(Host::Name("api.example.com".into()))
        );
        assert!(matches!("192.0.2.1".parse::<Host>(), Ok(Host::Ip(_))));
        assert!(matches!("192.0.2.0/24".parse::<Host>(), Ok(Host::Net(_))));
        assert!("192.0.2.1/24".parse::<Host>().is_err());
        assert!("300.1.1.1".parse::<Host>().is_err());
        assert!("-bad.example".parse::<Host>().is_err());
        assert!("0.0.0.0/0".parse::<Host>().is_err());
    }

    #[test]
    fn ports() {
        assert!("8000-8080".parse::<PortRange>().is_ok());
        assert!("8080-8000".parse::<PortRange>().is_err());
        assert!("0".parse::<PortRange>().is_err());
        assert!("70000".parse::<PortRange>().is_err());
        assert!(PortRange::single(65536).is_err());
    }
}
