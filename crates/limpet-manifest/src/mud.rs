//! The device's Manufacturer Usage Description (RFC 8520): the manifest's network
//! allowlist written as a MUD file, so a MUD-aware router can enforce the same policy
//! upstream of the device.
//!
//! Rules this module keeps:
//! - Pure: the caller supplies the MUD URL and the `last-update` time (from
//!   `SOURCE_DATE_EPOCH`), so the same manifest and options give the same bytes.
//! - Options are checked when built ([`MudOptions::new`] and its setters); [`mud`] itself
//!   cannot fail.
//! - One ACE per rule and port range, named `<task>-<n>` (`n` counts the task's egress
//!   rules' ranges, then its listen rules, from 0). Every flow gets an ACE in each
//!   direction, as in the examples of RFC 8520 §9: an egress rule is a from-device ACE
//!   (destination host and port) and a to-device ACE for the replies (source host and
//!   port); a listen rule is a to-device ACE and a from-device ACE for the replies. TCP
//!   ACEs carry `ietf-mud:direction-initiated`, so the router can refuse connections
//!   opened the other way.
//! - A DNS name is written with `ietf-acldns` (RFC 8520 §8) in both the IPv4 and the IPv6
//!   ACLs; an address or network only in the ACL of its family; a listen rule in both.
//! - ACLs are `mud-<device>-v4fr`, `-v4to`, `-v6fr`, `-v6to` (the RFC's naming); an ACL
//!   with no ACE is left out, and a policy names exactly the ACLs that exist. A device
//!   without network gets empty policies: the router lets nothing through.
//! - Order follows the manifest (task order, rule order, port order), never a hash.
//! - The device's own traffic is in it too: the update agent's task (to the repository's
//!   host and port, with `[update]`), and PID 1's DHCP (`limpet-init-dhcp`, with
//!   `mode = "dhcp"`) and DNS (`limpet-init-dns-<i>-udp|tcp`, UDP and TCP 53 to each
//!   `[network] dns` server, or to the local networks when DHCP names the servers).

use std::net::IpAddr;

use serde_json::{json, Value};

use crate::diag::Problem;
use crate::units::Date;
use crate::{Host, Manifest, NetworkAccess, NetworkMode, Proto, RepositoryUrl, Scope};

/// Default `cache-validity`: how long, in hours, a router may keep the file before
/// fetching it again (RFC 8520 §3.5 suggests 48).
pub const DEFAULT_CACHE_VALIDITY_HOURS: u8 = 48;
/// Longest `cache-validity` RFC 8520 allows: one week.
pub const MAX_CACHE_VALIDITY_HOURS: u8 = 168;
/// Longest `systeminfo` RFC 8520 allows, in characters.
pub const MAX_SYSTEMINFO_CHARS: usize = 60;
/// The file name appended to `[update] repository` for the default MUD URL.
pub const DEFAULT_MUD_FILE: &str = "mud.json";

/// Options that would make an invalid MUD file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MudError {
    /// The MUD URL is not an `https://` URL a device could announce.
    #[error("invalid MUD URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `last-update` is not an RFC 3339 date and time.
    #[error("last-update {value:?} is not an RFC 3339 date and time (e.g. 2024-05-01T12:00:00Z)")]
    LastUpdate {
        /// The value as given.
        value: String,
    },
    /// `cache-validity` is outside what RFC 8520 allows.
    #[error("cache validity {hours}h is outside 1-{MAX_CACHE_VALIDITY_HOURS} hours")]
    CacheValidity {
        /// The hours as given.
        hours: u32,
    },
    /// `systeminfo` is empty or too long.
    #[error("systeminfo {text:?} must have 1-{MAX_SYSTEMINFO_CHARS} characters")]
    SystemInfo {
        /// The text as given.
        text: String,
    },
    /// The manufacturer name is empty.
    #[error("manufacturer name must not be empty")]
    MfgName,
}

/// What the MUD file says beyond the manifest, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MudOptions {
    mud_url: String,
    last_update: String,
    last_update_date: Date,
    cache_validity_hours: u8,
    systeminfo: Option<String>,
    mfg_name: Option<String>,
}

impl MudOptions {
    /// `mud_url`: the `https://` URL the vendor publishes the file at (RFC 8520 §3.3).
    /// `last_update`: an RFC 3339 date and time.
    pub fn new(mud_url: &str, last_update: &str) -> Result<Self, MudError> {
        let url_err = |reason: String| MudError::Url {
            url: mud_url.to_owned(),
            reason,
        };
        let url: RepositoryUrl = mud_url.parse().map_err(|p: Problem| {
            url_err(p.hint.unwrap_or_else(|| "not an https:// URL".to_owned()))
        })?;
        if !url.is_https() {
            return Err(url_err("RFC 8520 requires https://".to_owned()));
        }
        let last_update_date = rfc3339_date(last_update).ok_or_else(|| MudError::LastUpdate {
            value: last_update.to_owned(),
        })?;
        Ok(MudOptions {
            mud_url: url.as_str().to_owned(),
            last_update: last_update.to_owned(),
            last_update_date,
            cache_validity_hours: DEFAULT_CACHE_VALIDITY_HOURS,
            systeminfo: None,
            mfg_name: None,
        })
    }

    /// Sets `cache-validity`, 1-168 hours (default 48).
    pub fn cache_validity_hours(mut self, hours: u32) -> Result<Self, MudError> {
        self.cache_validity_hours = u8::try_from(hours)
            .ok()
            .filter(|h| (1..=MAX_CACHE_VALIDITY_HOURS).contains(h))
            .ok_or(MudError::CacheValidity { hours })?;
        Ok(self)
    }

    /// Sets `systeminfo`, 1-60 characters (default `"<device name> <version>"`).
    pub fn systeminfo(mut self, text: &str) -> Result<Self, MudError> {
        let chars = text.chars().count();
        if chars == 0 || chars > MAX_SYSTEMINFO_CHARS {
            return Err(MudError::SystemInfo {
                text: text.to_owned(),
            });
        }
        self.systeminfo = Some(text.to_owned());
        Ok(self)
    }

    /// Sets `mfg-name`, the manufacturer's name (default: none).
    pub fn mfg_name(mut self, name: &str) -> Result<Self, MudError> {
        if name.is_empty() {
            return Err(MudError::MfgName);
        }
        self.mfg_name = Some(name.to_owned());
        Ok(self)
    }
}

/// `[update] repository` + `/mud.json`, when the repository is `https://`: where a vendor
/// that already publishes updates would publish the MUD file.
pub fn default_mud_url(manifest: &Manifest) -> Option<String> {
    let repo = manifest.update.as_ref()?.repository.clone();
    repo.is_https()
        .then(|| format!("{}/{DEFAULT_MUD_FILE}", repo.as_str().trim_end_matches('/')))
}

/// The MUD file of `manifest` as JSON (RFC 8520 §2-§3, ACLs per RFC 8519).
pub fn mud(manifest: &Manifest, options: &MudOptions) -> Value {
    let device = manifest.device.name.as_str();
    let acls = Acls::from_manifest(manifest);
    let names = |fr: bool| -> Vec<Value> {
        acls.lists()
            .into_iter()
            .filter(|l| l.from_device == fr && !l.aces.is_empty())
            .map(|l| json!({ "name": l.name(device) }))
            .collect()
    };
    let is_supported = manifest
        .lifecycle
        .as_ref()
        .is_none_or(|l| options.last_update_date <= l.support_until);
    let systeminfo = options.systeminfo.clone().unwrap_or_else(|| {
        format!("{} {}", device, manifest.device.version)
            .chars()
            .take(MAX_SYSTEMINFO_CHARS)
            .collect()
    });
    let mut mud = json!({
        "mud-version": 1,
        "mud-url": options.mud_url,
        "last-update": options.last_update,
        "cache-validity": options.cache_validity_hours,
        "is-supported": is_supported,
        "systeminfo": systeminfo,
        "from-device-policy": { "access-lists": { "access-list": names(true) } },
        "to-device-policy": { "access-lists": { "access-list": names(false) } },
    });
    if let (Some(name), Some(obj)) = (&options.mfg_name, mud.as_object_mut()) {
        obj.insert("mfg-name".to_owned(), json!(name));
    }
    let acl: Vec<Value> = acls
        .lists()
        .into_iter()
        .filter(|l| !l.aces.is_empty())
        .map(|l| {
            json!({
                "name": l.name(device),
                "type": l.family.acl_type(),
                "aces": { "ace": l.aces },
            })
        })
        .collect();
    json!({
        "ietf-mud:mud": mud,
        "ietf-access-control-list:acls": { "acl": acl },
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// The RFC 8519 ACL type identity.
    fn acl_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4-acl-type",
            Family::V6 => "ipv6-acl-type",
        }
    }
    /// The match container and the `-vN` of ACL names.
    fn key(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
    fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
    /// The families a host is reached over: a name may resolve to either.
    fn of_host(host: &Host) -> &'static [Family] {
        match host {
            Host::Name(_) => &[Family::V4, Family::V6],
            Host::Ip(ip) => Family::of(*ip).slice(),
            Host::Net(net) => Family::of(net.addr()).slice(),
        }
    }
    fn slice(self) -> &'static [Family] {
        match self {
            Family::V4 => &[Family::V4],
            Family::V6 => &[Family::V6],
        }
    }
}

/// Who opens the flow, for `ietf-mud:direction-initiated`.
#[derive(Debug, Clone, Copy)]
enum Initiator {
    Device,
    Peer,
}

/// One ACL being filled.
#[derive(Debug)]
struct List {
    family: Family,
    from_device: bool,
    aces: Vec<Value>,
}

impl List {
    fn name(&self, device: &str) -> String {
        let dir = if self.from_device { "fr" } else { "to" };
        let v = match self.family {
            Family::V4 => "v4",
            Family::V6 => "v6",
        };
        format!("mud-{device}-{v}{dir}")
    }
}

/// The four ACLs, in the order they are written.
#[derive(Debug)]
struct Acls {
    v4fr: List,
    v4to: List,
    v6fr: List,
    v6to: List,
}

impl Acls {
    fn from_manifest(manifest: &Manifest) -> Self {
        let list = |family, from_device| List {
            family,
            from_device,
            aces: Vec::new(),
        };
        let mut acls = Acls {
            v4fr: list(Family::V4, true),
            v4to: list(Family::V4, false),
            v6fr: list(Family::V6, true),
            v6to: list(Family::V6, false),
        };
        // The device runs the update agent too, when it has [update], and the remote agent
        // when it has [remote]: their egress is in the profile. Only the remote agent's
        // egress is read here, so an access key kept in a file (which this crate does not
        // read) stands in as zeros.
        let with_agent = manifest.with_update_agent().and_then(|m| {
            let key = match m.remote.as_ref().map(|r| &r.access_key) {
                Some(crate::AccessKeyRef::Key(hex)) => hex.clone(),
                _ => "0".repeat(64),
            };
            m.with_remote_agent(&key)
        });
        let manifest = with_agent.as_ref().unwrap_or(manifest);
        for task in &manifest.tasks {
            let mut n = 0usize;
            for rule in &task.egress {
                // Loopback never reaches the network (the remote agent's services).
                if matches!(&rule.host, crate::Host::Ip(ip) if ip.is_loopback()) {
                    continue;
                }
                for range in &rule.ports {
                    let ports = Ports(range.start(), range.end());
                    let name = format!("{}-{n}", task.name);
                    n += 1;
                    for &family in Family::of_host(&rule.host) {
                        let peer = Peer::Host(&rule.host);
                        let flow = Flow {
                            family,
                            proto: rule.proto,
                            initiator: Initiator::Device,
                        };
                        // Out: to the host's port. Back: from the host's port.
                        acls.get(family, true)
                            .aces
                            .push(ace(&name, flow, peer, End::Dst, ports));
                        acls.get(family, false)
                            .aces
                            .push(ace(&name, flow, peer, End::Src, ports));
                    }
                }
            }
            for rule in &task.listen {
                let name = format!("{}-{n}", task.name);
                n += 1;
                let peer = match rule.scope {
                    Scope::Lan => Peer::Local,
                    Scope::Any => Peer::Any,
                };
                let port = Ports(rule.port, rule.port);
                for family in [Family::V4, Family::V6] {
                    let flow = Flow {
                        family,
                        proto: rule.proto,
                        initiator: Initiator::Peer,
                    };
                    // In: to the device's port. Back: from the device's port.
                    acls.get(family, false)
                        .aces
                        .push(ace(&name, flow, peer, End::Dst, port));
                    acls.get(family, true)
                        .aces
                        .push(ace(&name, flow, peer, End::Src, port));
                }
            }
        }
        acls.device_rules(manifest);
        acls
    }

    /// PID 1's own traffic, for a device with network: DHCP (with `mode = "dhcp"`) to any
    /// server, and DNS (UDP and TCP 53) to the manifest's servers, or to the local
    /// networks where DHCP names them.
    fn device_rules(&mut self, manifest: &Manifest) {
        if !manifest
            .tasks
            .iter()
            .any(|t| t.network == NetworkAccess::Allowlist)
        {
            return;
        }
        let v4 = |proto, initiator| Flow {
            family: Family::V4,
            proto,
            initiator,
        };
        if manifest.network.mode == NetworkMode::Dhcp {
            let flow = v4(Proto::Udp, Initiator::Device);
            let name = "limpet-init-dhcp";
            self.v4fr
                .aces
                .push(ace(name, flow, Peer::Any, End::Dst, Ports(67, 67)));
            self.v4to
                .aces
                .push(ace(name, flow, Peer::Any, End::Src, Ports(67, 67)));
        }
        let servers: Vec<Host> = manifest
            .network
            .dns
            .iter()
            .map(|ip| Host::Ip(*ip))
            .collect();
        let peers: Vec<Peer<'_>> = if servers.is_empty() {
            vec![Peer::Local]
        } else {
            servers.iter().map(Peer::Host).collect()
        };
        for (i, peer) in peers.into_iter().enumerate() {
            for proto in [Proto::Udp, Proto::Tcp] {
                let name = format!("limpet-init-dns-{i}-{}", proto.as_str());
                let flow = v4(proto, Initiator::Device);
                self.v4fr
                    .aces
                    .push(ace(&name, flow, peer, End::Dst, Ports(53, 53)));
                self.v4to
                    .aces
                    .push(ace(&name, flow, peer, End::Src, Ports(53, 53)));
            }
        }
    }

    fn get(&mut self, family: Family, from_device: bool) -> &mut List {
        match (family, from_device) {
            (Family::V4, true) => &mut self.v4fr,
            (Family::V4, false) => &mut self.v4to,
            (Family::V6, true) => &mut self.v6fr,
            (Family::V6, false) => &mut self.v6to,
        }
    }

    fn lists(&self) -> [&List; 4] {
        [&self.v4fr, &self.v4to, &self.v6fr, &self.v6to]
    }
}

/// A port or an inclusive range, first and last.
#[derive(Debug, Clone, Copy)]
struct Ports(u16, u16);

/// The other end of a flow.
#[derive(Debug, Clone, Copy)]
enum Peer<'a> {
    /// A manifest host (egress).
    Host(&'a Host),
    /// The local networks (listen scope `lan`).
    Local,
    /// Anyone (listen scope `any`).
    Any,
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    family: Family,
    proto: Proto,
    initiator: Initiator,
}

/// Which end of the packet the rule's port (and, for an egress ACE, host) is: the
/// destination on the way there, the source on the way back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Dst,
    Src,
}

/// One ACE. For an egress flow the peer host is on the same `end` as the port; for a
/// listen flow the port is the device's, so the peer is on the other end.
fn ace(name: &str, flow: Flow, peer: Peer<'_>, end: End, ports: Ports) -> Value {
    let (end, dnsname) = match end {
        End::Dst => ("destination", "ietf-acldns:dst-dnsname"),
        End::Src => ("source", "ietf-acldns:src-dnsname"),
    };
    let protocol = match flow.proto {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    };
    let mut ip = json!({ "protocol": protocol });
    let mut matches = serde_json::Map::new();
    match peer {
        Peer::Host(host) => {
            let (key, value) = match host {
                Host::Name(n) => (dnsname.to_owned(), n.clone()),
                Host::Ip(addr) => {
                    let len = if addr.is_ipv4() { 32 } else { 128 };
                    (
                        format!("{end}-{}-network", flow.family.key()),
                        format!("{addr}/{len}"),
                    )
                }
                Host::Net(net) => (
                    format!("{end}-{}-network", flow.family.key()),
                    net.to_string(),
                ),
            };
            if let Some(obj) = ip.as_object_mut() {
                obj.insert(key, json!(value));
            }
        }
        Peer::Local => {
            // RFC 8520 §4: matches traffic to or from the local networks, in the
            // direction the ACL is applied.
            matches.insert(
                "ietf-mud:mud".to_owned(),
                json!({ "local-networks": [null] }),
            );
        }
        Peer::Any => {}
    }
    let Ports(first, last) = ports;
    let port_match = if first == last {
        json!({ "operator": "eq", "port": first })
    } else {
        json!({ "lower-port": first, "upper-port": last })
    };
    let mut l4 = serde_json::Map::new();
    l4.insert(format!("{end}-port"), port_match);
    if flow.proto == Proto::Tcp {
        let by = match flow.initiator {
            Initiator::Device => "from-device",
            Initiator::Peer => "to-device",
        };
        l4.insert("ietf-mud:direction-initiated".to_owned(), json!(by));
    }
    matches.insert(flow.family.key().to_owned(), ip);
    matches.insert(flow.proto.as_str().to_owned(), Value::Object(l4));
    json!({
        "name": name,
        "matches": matches,
        "actions": { "forwarding": "accept" },
    })
}

/// The calendar date of an RFC 3339 `date-time` (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`),
/// or `None` if `s` is not one. The date is taken as written, in the time's own offset.
fn rfc3339_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u16> {
        let part = s.get(range)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = frac.get(digits..)?;
    }
    match rest {
        "Z" | "z" => {}
        _ => {
            let offset = rest.strip_prefix(['+', '-'])?;
            let (h, m) = offset.split_once(':')?;
            let two_digits = |x: &str| x.len() == 2 && x.bytes().all(|c| c.is_ascii_digit());
            if !(two_digits(h) && two_digits(m) && h <= "23" && m <= "59") {
                return None;
            }
        }
    }
    let month = u8::try_from(num(5..7)?).ok()?;
    let day = u8::try_from(num(8..10)?).ok()?;
    Date::from_ymd(num(0..4)?, month, day).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const FULL: &str = include_str!("../tests/fixtures/good/full.toml");
    const HELLO: &str = include_str!("../../../examples/hello/limpet.toml");
    const NOW: &str = "2024-05-01T12:00:00Z";

    fn full_mud() -> Value {
        let m = crate::parse("full.toml", FULL).unwrap();
        let url = default_mud_url(&m).unwrap();
        mud(&m, &MudOptions::new(&url, NOW).unwrap())
    }

    /// The ACE called `name` in the ACL called `acl`.
    fn ace_in<'a>(doc: &'a Value, acl: &str, name: &str) -> Option<&'a Value> {
        doc["ietf-access-control-list:acls"]["acl"]
            .as_array()?
            .iter()
            .find(|a| a["name"] == acl)?["aces"]["ace"]
            .as_array()?
            .iter()
            .find(|a| a["name"] == name)
    }

    fn accept(matches: Value, name: &str) -> Value {
        json!({ "name": name, "matches": matches, "actions": { "forwarding": "accept" } })
    }

    #[test]
    fn the_container_and_its_leaves() {
        let doc = full_mud();
        let m = &doc["ietf-mud:mud"];
        assert_eq!(m["mud-version"], 1);
        assert_eq!(
            m["mud-url"],
            "https://updates.example.com/thermostat/mud.json"
        );
        assert_eq!(m["last-update"], NOW);
        assert_eq!(m["cache-validity"], 48);
        assert_eq!(m["is-supported"], true);
        assert_eq!(m["systeminfo"], "thermostat 1.4.0");
        assert!(m.get("mfg-name").is_none());
        assert_eq!(
            m["from-device-policy"],
            json!({ "access-lists": { "access-list": [
                { "name": "mud-thermostat-v4fr" }, { "name": "mud-thermostat-v6fr" } ] } })
        );
        assert_eq!(
            m["to-device-policy"],
            json!({ "access-lists": { "access-list": [
                { "name": "mud-thermostat-v4to" }, { "name": "mud-thermostat-v6to" } ] } })
        );
        let acls: Vec<_> = doc["ietf-access-control-list:acls"]["acl"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["name"].as_str().unwrap(), a["type"].as_str().unwrap()))
            .collect();
        assert_eq!(
            acls,
            [
                ("mud-thermostat-v4fr", "ipv4-acl-type"),
                ("mud-thermostat-v4to", "ipv4-acl-type"),
                ("mud-thermostat-v6fr", "ipv6-acl-type"),
                ("mud-thermostat-v6to", "ipv6-acl-type"),
            ]
        );
    }

    #[test]
    fn a_dns_name_rule_goes_out_over_both_families_and_its_replies_come_back() {
        let doc = full_mud();
        for v in ["ipv4", "ipv6"] {
            let acl = format!("mud-thermostat-{}", if v == "ipv4" { "v4" } else { "v6" });
            assert_eq!(
                ace_in(&doc, &format!("{acl}fr"), "sensor-0").unwrap(),
                &accept(
                    json!({
                        v: { "protocol": 6, "ietf-acldns:dst-dnsname": "api.example.com" },
                        "tcp": {
                            "destination-port": { "operator": "eq", "port": 443 },
                            "ietf-mud:direction-initiated": "from-device",
                        },
                    }),
                    "sensor-0"
                )
            );
            assert_eq!(
                ace_in(&doc, &format!("{acl}to"), "sensor-0").unwrap(),
                &accept(
                    json!({
                        v: { "protocol": 6, "ietf-acldns:src-dnsname": "api.example.com" },
                        "tcp": {
                            "source-port": { "operator": "eq", "port": 443 },
                            "ietf-mud:direction-initiated": "from-device",
                        },
                    }),
                    "sensor-0"
                )
            );
        }
    }

    #[test]
    fn a_cidr_rule_and_a_port_range_stay_in_their_family() {
        let doc = full_mud();
        assert_eq!(
            ace_in(&doc, "mud-thermostat-v4fr", "sensor-1").unwrap(),
            &accept(
                json!({
                    "ipv4": { "protocol": 17, "destination-ipv4-network": "198.51.100.0/24" },
                    "udp": { "destination-port": { "operator": "eq", "port": 123 } },
                }),
                "sensor-1"
            )
        );
        assert_eq!(
            ace_in(&doc, "mud-thermostat-v4fr", "sensor-2").unwrap(),
            &accept(
                json!({
                    "ipv4": { "protocol": 17, "destination-ipv4-network": "198.51.100.0/24" },
                    "udp": { "destination-port": { "lower-port": 8000, "upper-port": 8010 } },
                }),
                "sensor-2"
            )
        );
        assert_eq!(
            ace_in(&doc, "mud-thermostat-v4to", "sensor-2").unwrap(),
            &accept(
                json!({
                    "ipv4": { "protocol": 17, "source-ipv4-network": "198.51.100.0/24" },
                    "udp": { "source-port": { "lower-port": 8000, "upper-port": 8010 } },
                }),
                "sensor-2"
            )
        );
        assert!(ace_in(&doc, "mud-thermostat-v6fr", "sensor-1").is_none());
        // One IPv4 address: only in the IPv4 ACLs, as a /32.
        assert_eq!(
            ace_in(&doc, "mud-thermostat-v4fr", "web-0").unwrap()["matches"]["ipv4"],
            json!({ "protocol": 6, "destination-ipv4-network": "198.51.100.7/32" })
        );
        assert!(ace_in(&doc, "mud-thermostat-v6fr", "web-0").is_none());
    }

    #[test]
    fn a_lan_listen_rule_admits_the_local_networks_only() {
        let doc = full_mud();
        for acl in ["mud-thermostat-v4to", "mud-thermostat-v6to"] {
            let v = if acl.contains("v4") { "ipv4" } else { "ipv6" };
            assert_eq!(
                ace_in(&doc, acl, "web-1").unwrap(),
                &accept(
                    json!({
                        "ietf-mud:mud": { "local-networks": [null] },
                        v: { "protocol": 6 },
                        "tcp": {
                            "destination-port": { "operator": "eq", "port": 8080 },
                            "ietf-mud:direction-initiated": "to-device",
                        },
                    }),
                    "web-1"
                )
            );
        }
        assert_eq!(
            ace_in(&doc, "mud-thermostat-v4fr", "web-1").unwrap()["matches"]["tcp"],
            json!({
                "source-port": { "operator": "eq", "port": 8080 },
                "ietf-mud:direction-initiated": "to-device",
            })
        );
    }

    #[test]
    fn an_any_listen_rule_has_no_source_restriction() {
        let text = FULL.replace("scope = \"lan\"", "scope = \"any\"");
        let m = crate::parse("full.toml", &text).unwrap();
        let doc = mud(&m, &MudOptions::new("https://x.example/m", NOW).unwrap());
        let ace = ace_in(&doc, "mud-thermostat-v4to", "web-1").unwrap();
        assert_eq!(
            ace["matches"],
            json!({
                "ipv4": { "protocol": 6 },
                "tcp": {
                    "destination-port": { "operator": "eq", "port": 8080 },
                    "ietf-mud:direction-initiated": "to-device",
                },
            })
        );
    }

    #[test]
    fn the_remote_agent_s_relay_is_declared() {
        let text = format!(
            "{FULL}\n[remote]\nrelay = \"relay.example.com:7400\"\naccess_key = \"keys/access.pub\"\n\
             services = [{{ name = \"console\", task = \"web\", port = 8080 }}]\n"
        );
        let m = crate::parse("remote.toml", &text).unwrap();
        let doc = mud(&m, &MudOptions::new("https://x.example/m", NOW).unwrap());
        let relay = ace_in(&doc, "mud-thermostat-v4fr", "limpet-remote-0").unwrap();
        assert_eq!(
            relay["matches"]["ipv4"]["ietf-acldns:dst-dnsname"],
            "relay.example.com"
        );
        assert_eq!(
            relay["matches"]["tcp"]["destination-port"],
            json!({ "operator": "eq", "port": 7400 })
        );
        // Its loopback rule to the services is no network traffic.
        assert!(ace_in(&doc, "mud-thermostat-v4fr", "limpet-remote-1").is_none());
        assert!(ace_in(&full_mud(), "mud-thermostat-v4fr", "limpet-remote-0").is_none());
    }

    #[test]
    fn the_device_s_own_dhcp_dns_and_update_traffic_is_declared() {
        let doc = full_mud();
        // Static addressing: no DHCP; DNS to each configured server, both protocols.
        assert!(ace_in(&doc, "mud-thermostat-v4fr", "limpet-init-dhcp").is_none());
        assert_eq!(
            ace_in(&doc, "mud-thermostat-v4fr", "limpet-init-dns-1-udp").unwrap()["matches"]
                ["ipv4"],
            json!({ "protocol": 17, "destination-ipv4-network": "198.51.100.53/32" })
        );
        assert!(ace_in(&doc, "mud-thermostat-v4to", "limpet-init-dns-0-tcp").is_some());
        // The update agent reaches the repository's host on 443 only.
        let agent = ace_in(&doc, "mud-thermostat-v4fr", "limpet-update-0").unwrap();
        assert_eq!(
            agent["matches"]["ipv4"]["ietf-acldns:dst-dnsname"],
            "updates.example.com"
        );
        assert_eq!(
            agent["matches"]["tcp"]["destination-port"],
            json!({ "operator": "eq", "port": 443 })
        );
        // DHCP addressing: DHCP to any server, DNS to the local networks.
        let text = FULL
            .replace("mode = \"static\"", "mode = \"dhcp\"")
            .replace("address = \"192.0.2.10/24\"", "")
            .replace("gateway = \"192.0.2.1\"", "")
            .replace("dns = [\"192.0.2.53\", \"198.51.100.53\"]", "");
        let m = crate::parse("dhcp.toml", &text).unwrap();
        let doc = mud(
            &m,
            &MudOptions::new("https://x.example/mud.json", NOW).unwrap(),
        );
        let dhcp = ace_in(&doc, "mud-thermostat-v4fr", "limpet-init-dhcp").unwrap();
        assert_eq!(
            dhcp["matches"]["udp"]["destination-port"],
            json!({ "operator": "eq", "port": 67 })
        );
        let dns = ace_in(&doc, "mud-thermostat-v4fr", "limpet-init-dns-0-udp").unwrap();
        assert_eq!(
            dns["matches"]["ietf-mud:mud"],
            json!({ "local-networks": [null] })
        );
    }

    #[test]
    fn a_device_without_network_has_empty_policies() {
        let m = crate::parse("limpet.toml", HELLO).unwrap();
        assert_eq!(default_mud_url(&m), None);
        let options = MudOptions::new("https://example.com/mud.json", NOW).unwrap();
        assert_eq!(
            mud(&m, &options),
            json!({
                "ietf-mud:mud": {
                    "mud-version": 1,
                    "mud-url": "https://example.com/mud.json",
                    "last-update": NOW,
                    "cache-validity": 48,
                    "is-supported": true,
                    "systeminfo": "hello 0.1.0",
                    "from-device-policy": { "access-lists": { "access-list": [] } },
                    "to-device-policy": { "access-lists": { "access-list": [] } },
                },
                "ietf-access-control-list:acls": { "acl": [] },
            })
        );
    }

    #[test]
    fn support_ends_after_the_last_day() {
        let m = crate::parse("full.toml", FULL).unwrap();
        let supported = |when: &str| {
            let options = MudOptions::new("https://x.example/m", when).unwrap();
            mud(&m, &options)["ietf-mud:mud"]["is-supported"].clone()
        };
        assert_eq!(supported("2032-01-01T23:59:59Z"), true);
        assert_eq!(supported("2032-01-02T00:00:00Z"), false);
    }

    #[test]
    fn options_are_checked() {
        let m = crate::parse("full.toml", FULL).unwrap();
        let ok = MudOptions::new("https://x.example/mud.json", NOW).unwrap();
        assert!(matches!(
            MudOptions::new("http://x.example/mud.json", NOW),
            Err(MudError::Url { .. })
        ));
        assert!(matches!(
            MudOptions::new("x.example", NOW),
            Err(MudError::Url { .. })
        ));
        assert!(matches!(
            ok.clone().cache_validity_hours(0),
            Err(MudError::CacheValidity { hours: 0 })
        ));
        assert!(ok.clone().cache_validity_hours(169).is_err());
        assert!(ok.clone().systeminfo(&"x".repeat(61)).is_err());
        assert!(ok.clone().systeminfo("").is_err());
        assert!(ok.clone().mfg_name("").is_err());
        let custom = ok
            .cache_validity_hours(168)
            .unwrap()
            .systeminfo(&"é".repeat(60))
            .unwrap()
            .mfg_name("Example Ltd")
            .unwrap();
        let doc = mud(&m, &custom);
        assert_eq!(doc["ietf-mud:mud"]["cache-validity"], 168);
        assert_eq!(doc["ietf-mud:mud"]["mfg-name"], "Example Ltd");
    }

    #[test]
    fn last_update_is_rfc3339() {
        for good in [
            NOW,
            "2024-05-01T12:00:00.123Z",
            "2019-01-28T11:20:51+01:00",
            "2024-02-29t00:00:60-12:30",
        ] {
            assert!(rfc3339_date(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01 12:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T24:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+1:00",
            "2024-05-01T12:00:00+01:00x",
            "2024-05-01T12:00:00+é:00",
            "+024-05-01T12:00:00Z",
        ] {
            assert!(rfc3339_date(bad).is_none(), "{bad}");
            assert!(matches!(
                MudOptions::new("https://x.example/m", bad),
                Err(MudError::LastUpdate { .. })
            ));
        }
    }
}
