//! The network itself (see `network.rs` for what it does and in which order), in a PID 1
//! built for a device whose policy has a network (the default; see `network.rs`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use limpet_net::{Nft, Ruleset, Runtime, TaskMatch};
use limpet_netconf::dhcp::{self, DhcpSocket};
use limpet_netconf::dns::{self, DnsName, Stub};
use limpet_netconf::link::{AddrLifetimes, Link, LinkError, Netlink};
use limpet_policy::NetPolicy;

use super::{
    InterfaceStatus, NetMode, NetworkError, NetworkStatus, Source, COUNTERS_EVERY, DROP_LOG_EVERY,
};
use crate::console;

/// Extra life given to an address-set entry beyond its TTL, for the time between the
/// stub's answer and the task's connect.
const SET_GRACE: Duration = Duration::from_secs(5);
/// An upstream query socket lives at most this long (the stub gives up sooner).
const UPSTREAM_SOCKET_LIFE: Duration = Duration::from_secs(15);

#[derive(Debug)]
struct DhcpLink {
    link: Link,
    client: dhcp::Client,
    socket: DhcpSocket,
    status: usize,
}

#[derive(Debug)]
struct Upstream {
    socket: UdpSocket,
    opened: Instant,
}

/// PID 1's network: the nftables handle, the links, DHCP and the DNS stub.
#[derive(Debug)]
pub struct Network {
    /// The policy installed now: `normal` or `island`'s.
    policy: NetPolicy,
    /// The normal policy.
    normal: NetPolicy,
    /// Island mode's policy, if the device has one.
    island: Option<NetPolicy>,
    /// The mode installed now.
    mode: NetMode,
    /// What a ruleset is built with beyond the policy: each task's socket match, and the
    /// LAN networks and DNS servers learned since boot (kept for a switch of policy).
    facts: Runtime,
    nft: Nft,
    netlink: Netlink,
    dhcp: Vec<DhcpLink>,
    stub: Stub,
    stub_socket: Option<UdpSocket>,
    upstreams: Vec<Upstream>,
    next_counters: Instant,
    last_drop_log: Option<Instant>,
    logged_drops: BTreeMap<String, u64>,
    status: NetworkStatus,
}

impl Network {
    /// Installs the policy of `mode` (`normal`, or `island` in island mode), then brings
    /// the links up (see the module doc). `tasks` says how each task's sockets are
    /// recognised.
    pub fn start(
        normal: &NetPolicy,
        island: Option<&NetPolicy>,
        mode: NetMode,
        tasks: BTreeMap<String, TaskMatch>,
    ) -> Result<Network, NetworkError> {
        let mut netlink = Netlink::open().map_err(NetworkError::Netlink)?;
        let runtime = Runtime {
            tasks,
            lan: Vec::new(),
            dns_upstream: Vec::new(),
        };
        let (policy, mode) = match (mode, island) {
            (NetMode::Island, Some(island)) => (island, NetMode::Island),
            _ => (normal, NetMode::Normal),
        };
        let ruleset = Ruleset::build(policy, &runtime).map_err(NetworkError::Ruleset)?;
        let mut nft = Nft::open().map_err(NetworkError::Nftables)?;
        // The interfaces' state before the policy, for the record: all down.
        let before: Vec<String> = std::iter::once("lo".to_owned())
            .chain(policy.links.interfaces.iter().cloned())
            .map(|name| match netlink.link(&name) {
                Ok(l) => format!("{name} {}", if l.up { "UP" } else { "down" }),
                Err(_) => format!("{name} absent"),
            })
            .collect();
        nft.install(&ruleset).map_err(NetworkError::Install)?;
        console::line(&format!(
            "limpet-init: {} network policy installed: {} rules, {} sets in table inet limpet, default drop; interfaces: {}",
            mode.as_str(),
            ruleset.rules.len(),
            ruleset.sets.len(),
            before.join(", ")
        ));
        let mut status = NetworkStatus {
            rules: ruleset.rules.len(),
            dns: policy.dns_upstream.clone(),
            ..NetworkStatus::default()
        };

        match netlink.link("lo").and_then(|lo| netlink.set_up(&lo)) {
            Ok(()) => console::line("limpet-init: lo up"),
            Err(e) => console::line(&format!("limpet-init: lo: {e}")),
        }
        let mut dhcp_links = Vec::new();
        for name in &policy.links.interfaces {
            let index = status.interfaces.len();
            status.interfaces.push(InterfaceStatus {
                name: name.clone(),
                config: String::new(),
                address: None,
                gateway: None,
            });
            match bring_up(&mut netlink, name, policy) {
                Ok(Up::Static { address, gateway }) => {
                    if let Some(s) = status.interfaces.get_mut(index) {
                        s.config = "static".into();
                        s.address = Some(address);
                        s.gateway = gateway;
                    }
                }
                Ok(Up::Dhcp(link)) => match DhcpSocket::bind(&link.name) {
                    Ok(socket) => {
                        let mac = link.mac.unwrap_or([0x02, 0, 0, 0, 0, 1]);
                        if let Some(s) = status.interfaces.get_mut(index) {
                            s.config = "dhcp: selecting".into();
                        }
                        dhcp_links.push(DhcpLink {
                            client: dhcp::Client::new(mac, Instant::now()),
                            link,
                            socket,
                            status: index,
                        });
                    }
                    Err(e) => {
                        console::line(&format!("limpet-init: {name}: DHCP socket: {e}"));
                        if let Some(s) = status.interfaces.get_mut(index) {
                            s.config = format!("dhcp socket failed: {e}");
                        }
                    }
                },
                Err(e) => {
                    console::line(&format!("limpet-init: {name}: {e}"));
                    if let Some(s) = status.interfaces.get_mut(index) {
                        s.config = e.to_string();
                    }
                }
            }
        }

        let allow: Vec<DnsName> = policy
            .names
            .iter()
            .filter_map(|n| DnsName::parse(&n.name).ok())
            .collect();
        let stub = Stub::new(
            dns::Config {
                allow,
                upstreams: upstreams(&policy.dns_upstream),
                limits: dns::Limits::default(),
                case: dns::CaseRandomization::default(),
            },
            Instant::now(),
        );
        let stub_socket = if policy.names.is_empty() {
            None
        } else {
            match UdpSocket::bind(SocketAddr::V4(policy.dns_stub))
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
            {
                Ok(s) => {
                    console::line(&format!(
                        "limpet-init: DNS stub on {} for {} name(s)",
                        policy.dns_stub,
                        policy.names.len()
                    ));
                    Some(s)
                }
                Err(e) => {
                    console::line(&format!(
                        "limpet-init: DNS stub on {}: {e}",
                        policy.dns_stub
                    ));
                    None
                }
            }
        };
        Ok(Network {
            policy: policy.clone(),
            normal: normal.clone(),
            island: island.cloned(),
            mode,
            facts: runtime,
            nft,
            netlink,
            dhcp: dhcp_links,
            stub,
            stub_socket,
            upstreams: Vec::new(),
            next_counters: Instant::now(),
            last_drop_log: None,
            logged_drops: BTreeMap::new(),
            status,
        })
    }

    /// Replaces the installed ruleset by the one of `mode`, built with the facts learned
    /// since boot, in one atomic batch (the kernel applies all of it or nothing, so no
    /// packet ever meets a mix or no policy). The DNS names' sets start empty again, and
    /// the stub forgets its answers, so it fills them at the next query (a name the new
    /// policy has no set for is answered and added nowhere: no rule lets it out). Returns the number of rules installed.
    pub fn switch(&mut self, mode: NetMode) -> Result<usize, NetworkError> {
        let policy = match mode {
            NetMode::Normal => &self.normal,
            NetMode::Island => self.island.as_ref().ok_or(NetworkError::NoIslandPolicy)?,
        };
        let ruleset = Ruleset::build(policy, &self.facts).map_err(NetworkError::Ruleset)?;
        self.nft.install(&ruleset).map_err(NetworkError::Install)?;
        self.policy = policy.clone();
        self.mode = mode;
        self.status.rules = ruleset.rules.len();
        self.stub.forget_answers();
        Ok(ruleset.rules.len())
    }

    /// The mode whose policy is installed.
    pub fn mode(&self) -> NetMode {
        self.mode
    }

    /// The descriptors to poll for reading, each with the source [`Network::ready`]
    /// takes back.
    pub fn pollables(&self) -> Vec<(Source, BorrowedFd<'_>)> {
        self.sources()
            .into_iter()
            .filter_map(|s| {
                let fd = match s {
                    Source::Dhcp(i) => self.dhcp.get(i).map(|d| d.socket.as_fd()),
                    Source::Stub => self.stub_socket.as_ref().map(AsFd::as_fd),
                    Source::Upstream(i) => self.upstreams.get(i).map(|u| u.socket.as_fd()),
                }?;
                Some((s, fd))
            })
            .collect()
    }

    /// What the status file shows of the network.
    pub fn status(&self) -> &NetworkStatus {
        &self.status
    }

    /// Whether an interface has its address (static, or a bound DHCP lease with its DNS
    /// servers given to the stub).
    pub fn is_up(&self) -> bool {
        self.status.interfaces.iter().any(|i| i.address.is_some())
    }

    /// Whether the network may still come up: a DHCP client runs. Without one (every
    /// interface absent or failed) there is nothing to wait for.
    pub fn may_come_up(&self) -> bool {
        !self.dhcp.is_empty()
    }

    fn sources(&self) -> Vec<Source> {
        let mut s: Vec<Source> = (0..self.dhcp.len()).map(Source::Dhcp).collect();
        if self.stub_socket.is_some() {
            s.push(Source::Stub);
        }
        s.extend((0..self.upstreams.len()).map(Source::Upstream));
        s
    }

    /// Handles the readable sources (from [`Network::pollables`], in its order), then the
    /// timers that are due.
    pub fn ready(&mut self, readable: &[Source]) {
        let now = Instant::now();
        for source in readable {
            match *source {
                Source::Dhcp(i) => self.dhcp_readable(i, now),
                Source::Stub => self.stub_readable(now),
                Source::Upstream(i) => self.upstream_readable(i, now),
            }
        }
        self.timers(now);
    }

    /// When [`Network::ready`] must run next even if nothing is readable.
    pub fn next_deadline(&self) -> Instant {
        let mut next = self.next_counters;
        for d in &self.dhcp {
            next = next.min(d.client.next_deadline());
        }
        if let Some(t) = self.stub.next_deadline() {
            next = next.min(t);
        }
        next
    }

    fn timers(&mut self, now: Instant) {
        for i in 0..self.dhcp.len() {
            self.dhcp_step(i, now);
        }
        let actions = self.stub.on_timer(now);
        self.perform(actions, now);
        self.upstreams
            .retain(|u| now.saturating_duration_since(u.opened) < UPSTREAM_SOCKET_LIFE);
        if now >= self.next_counters {
            self.next_counters = now + COUNTERS_EVERY;
            self.read_counters(now);
        }
    }

    fn dhcp_readable(&mut self, i: usize, now: Instant) {
        let mut buf = [0u8; 1500];
        for _ in 0..16 {
            let Some(d) = self.dhcp.get_mut(i) else {
                return;
            };
            match d.socket.recv(&mut buf) {
                Ok(Some(n)) => {
                    if let Some(event) = d.client.handle(now, buf.get(..n).unwrap_or_default()) {
                        self.dhcp_event(i, event, now);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        self.dhcp_step(i, now);
    }

    /// Sends what the client wants sent, applies its timer events.
    fn dhcp_step(&mut self, i: usize, now: Instant) {
        let mut events = Vec::new();
        if let Some(d) = self.dhcp.get_mut(i) {
            while let Some(t) = d.client.poll_transmit(now) {
                if let Err(e) = d.socket.send(&t) {
                    console::line(&format!("limpet-init: {}: DHCP send: {e}", d.link.name));
                    break;
                }
            }
            while let Some(e) = d.client.poll_event(now) {
                events.push(e);
            }
        }
        for e in events {
            self.dhcp_event(i, e, now);
        }
    }

    fn dhcp_event(&mut self, i: usize, event: dhcp::Event, now: Instant) {
        let Some(d) = self.dhcp.get(i) else {
            return;
        };
        let link = d.link.clone();
        let status = d.status;
        match event {
            dhcp::Event::Bound(lease) | dhcp::Event::Renewed(lease) => {
                let secs = lease.remaining_secs(now);
                let lifetimes = AddrLifetimes {
                    valid: secs,
                    preferred: secs,
                };
                let mut problems = Vec::new();
                if let Err(e) = self
                    .netlink
                    .replace_address(&link, lease.addr, Some(lifetimes))
                {
                    problems.push(format!("address: {e}"));
                }
                self.facts.lan = vec![lease.addr.trunc()];
                if let Err(e) = self.nft.replace_lan_networks(&self.facts.lan) {
                    problems.push(format!("lan set: {e}"));
                }
                if let Some(router) = lease.router {
                    if let Err(e) = self.netlink.replace_default_route(&link, router) {
                        problems.push(format!("route: {e}"));
                    }
                }
                let mut dns = self.policy.dns_upstream.clone();
                if dns.is_empty() {
                    dns = lease.dns.clone();
                    self.facts.dns_upstream = dns.clone();
                    if let Err(e) = self.nft.add_dns_servers(&dns) {
                        problems.push(format!("dns set: {e}"));
                    }
                }
                let asked = self.stub.set_upstreams(now, upstreams(&dns));
                console::line(&format!(
                    "limpet-init: {} up: DHCP lease {} from {} for {} s, router {}, DNS {:?}{}",
                    link.name,
                    lease.addr,
                    lease.server,
                    secs,
                    lease
                        .router
                        .map_or_else(|| "none".to_owned(), |r| r.to_string()),
                    dns,
                    if problems.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", problems.join("; "))
                    }
                ));
                self.status.dns = dns;
                if let Some(s) = self.status.interfaces.get_mut(status) {
                    s.config = "dhcp: bound".into();
                    s.address = Some(lease.addr);
                    s.gateway = lease.router;
                }
                // Queries that waited for these servers go out now, after the route and
                // the `dns4` set that let them through.
                self.perform(asked, now);
            }
            dhcp::Event::Lost(lease) => {
                let _ = self.netlink.delete_default_route(&link);
                let _ = self.netlink.delete_address(&link, lease.addr);
                console::line(&format!(
                    "limpet-init: {}: DHCP lease {} lost",
                    link.name, lease.addr
                ));
                if let Some(s) = self.status.interfaces.get_mut(status) {
                    s.config = "dhcp: lease lost".into();
                    s.address = None;
                    s.gateway = None;
                }
            }
        }
    }

    fn stub_readable(&mut self, now: Instant) {
        let mut buf = [0u8; 1500];
        for _ in 0..64 {
            let Some(sock) = &self.stub_socket else {
                return;
            };
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let actions = self
                        .stub
                        .on_query(now, from, buf.get(..n).unwrap_or_default());
                    self.perform(actions, now);
                }
                Err(_) => return,
            }
        }
    }

    fn upstream_readable(&mut self, i: usize, now: Instant) {
        let mut buf = [0u8; 1500];
        let Some(u) = self.upstreams.get(i) else {
            return;
        };
        match u.socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                self.upstreams.swap_remove(i);
                let actions = self
                    .stub
                    .on_upstream(now, from, buf.get(..n).unwrap_or_default());
                self.perform(actions, now);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                self.upstreams.swap_remove(i);
            }
        }
    }

    /// Carries out the stub's actions in order. A reply never goes out for a name whose
    /// answer could not be added to its set: the task would only be dropped.
    fn perform(&mut self, actions: Vec<dns::Action>, now: Instant) {
        let mut failed: Option<String> = None;
        for action in actions {
            match action {
                dns::Action::Resolved { name, addrs } => {
                    let Some(set) = self.policy.set_of_name(name.as_str()) else {
                        continue;
                    };
                    let entries: Vec<(Ipv4Addr, Duration)> = addrs
                        .iter()
                        .map(|(a, ttl)| (*a, *ttl + SET_GRACE))
                        .collect();
                    match self.nft.add_set_elements(set, &entries) {
                        Ok(()) => failed = None,
                        Err(e) => {
                            console::line(&format!(
                                "limpet-init: DNS {}: cannot add to set {set}: {e}",
                                name.as_str()
                            ));
                            failed = Some(name.as_str().to_owned());
                        }
                    }
                }
                dns::Action::Reply { to, bytes } => {
                    if failed.is_none() {
                        if let Some(s) = &self.stub_socket {
                            let _ = s.send_to(&bytes, to);
                        }
                    }
                }
                dns::Action::SendUpstream { to, bytes } => {
                    let sent = UdpSocket::bind(SocketAddr::V4(SocketAddrV4::new(
                        Ipv4Addr::UNSPECIFIED,
                        0,
                    )))
                    .and_then(|s| s.set_nonblocking(true).map(|()| s))
                    .and_then(|s| s.send_to(&bytes, to).map(|_| s));
                    match sent {
                        Ok(socket) => self.upstreams.push(Upstream {
                            socket,
                            opened: now,
                        }),
                        Err(e) => {
                            console::line(&format!("limpet-init: DNS upstream {to}: {e}"));
                        }
                    }
                }
            }
        }
    }

    fn read_counters(&mut self, now: Instant) {
        let Ok(counters) = self.nft.counters() else {
            return;
        };
        let drops: BTreeMap<String, u64> = counters
            .task_drops()
            .into_iter()
            .map(|(task, c)| (task, c.packets))
            .collect();
        self.status.device_drops = counters
            .rules
            .iter()
            .filter(|r| r.owner == limpet_net::Owner::Device && r.rule.ends_with("drop"))
            .map(|r| r.count.packets)
            .sum();
        let changed = drops != self.logged_drops;
        let may_log = self
            .last_drop_log
            .is_none_or(|t| now.saturating_duration_since(t) >= DROP_LOG_EVERY);
        if changed && may_log && drops.values().any(|&n| n > 0) {
            let text: Vec<String> = drops.iter().map(|(t, n)| format!("{t}={n}")).collect();
            console::line(&format!(
                "limpet-init: network drops: {} (device {})",
                text.join(" "),
                self.status.device_drops
            ));
            self.last_drop_log = Some(now);
            self.logged_drops = drops.clone();
        }
        self.status.drops = drops;
    }
}

/// How an interface came up.
enum Up {
    Static {
        address: Ipv4Net,
        gateway: Option<Ipv4Addr>,
    },
    Dhcp(Link),
}

fn bring_up(netlink: &mut Netlink, name: &str, policy: &NetPolicy) -> Result<Up, LinkError> {
    let link = netlink.link(name)?;
    netlink.set_up(&link)?;
    match policy.links.static_address {
        Some(s) => {
            netlink.replace_address(&link, s.address, None)?;
            if let Some(gw) = s.gateway {
                netlink.replace_default_route(&link, gw)?;
            }
            console::line(&format!(
                "limpet-init: {name} up: static {}{}",
                s.address,
                s.gateway
                    .map_or_else(String::new, |g| format!(", default route via {g}"))
            ));
            Ok(Up::Static {
                address: s.address,
                gateway: s.gateway,
            })
        }
        None => {
            console::line(&format!("limpet-init: {name} up: DHCP"));
            Ok(Up::Dhcp(link))
        }
    }
}

fn upstreams(servers: &[Ipv4Addr]) -> Vec<SocketAddr> {
    servers
        .iter()
        .map(|a| SocketAddr::V4(SocketAddrV4::new(*a, 53)))
        .collect()
}
