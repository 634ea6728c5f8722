//! `[remote]`: remote access through a relay (docs/remote-access.md): the relay the device
//! dials, the access key whose capabilities it accepts, and the services an operator may
//! reach; the types, their checks, and the agent's task a device with `[remote]` runs
//! ([`Manifest::with_remote_agent`]).
//!
//! Rules this module keeps:
//! - The relay is one `host:port` (a DNS name or an IPv4 address, a port written out): the
//!   agent's only destination off the device, so its egress rule is exactly that.
//! - The access key is 64 hex digits, or a path to a file holding them that the build
//!   reads (this crate does no I/O); all-hex text of another length is an error, not a path.
//! - Each service has a unique name (1 to 32 of `a-z`, `0-9`, `-`, as a capability names
//!   it), a declared task that is on the device's network (`network = "allowlist"`; a task
//!   with `network = "none"` has a loopback of its own the agent cannot reach), and a port
//!   on that task's loopback. The agent may connect to those ports on `127.0.0.1` and
//!   nowhere else on the device.
//! - The agent's task is declared through the same checks as any task (the canonical
//!   manifest plus the agent's `[[task]]`, parsed again), like the update agent's, and its
//!   arguments are written here from the checked section, never by hand.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use crate::diag::{did_you_mean, Diagnostic, Diagnostics, Problem};
use crate::names::TaskName;
use crate::network::ipv6_problem;
use crate::raw::{RawManifest, RawRemote, RawService};
use crate::task::net::{check_dns_name, port_number, NetworkAccess, Proto};
use crate::task::supervision::RestartPolicy;
use crate::task::SyscallProfile;
use crate::units::serialize_as_display;
use crate::validate::{file_path, Checker};
use crate::Manifest;

/// The remote agent's task name; no vendor task may use it.
pub const REMOTE_AGENT_TASK: &str = "limpet-remote";
/// The cargo package (in Limpet's own workspace) that holds the agent.
pub const REMOTE_AGENT_PACKAGE: &str = "limpet-remote";
/// The agent's binary in that package.
pub const REMOTE_AGENT_BINARY: &str = "limpet-remote-agent";
/// Where the agent asks PID 1 for the device's key and its signatures (`--signer`;
/// limpet-install-api's `DeviceKey` and `SignRemoteAccess`): PID 1 binds it for the
/// agent's uid and the compiled sandbox bind-mounts it (limpet-install-api's
/// `REMOTE_SOCKET`, the same path; limpet-compile checks they agree).
pub const REMOTE_SIGNER_SOCKET: &str = "/run/limpet/remote.sock";
/// The most services a device declares (a capability names at most 16).
pub const MAX_REMOTE_SERVICES: usize = 16;

/// The agent's budgets: at most 8 sessions, each a thread and a splice.
const AGENT_MEMORY: &str = "16MiB";
const AGENT_CPU: &str = "10%";
const AGENT_PIDS: u32 = 24;

/// `[remote]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remote {
    /// The relay the device dials, its only destination for remote access.
    pub relay: RelayAddr,
    /// The key whose capabilities the device accepts, pinned in the signed image.
    pub access_key: AccessKeyRef,
    /// What an operator may reach; at least one.
    pub services: Vec<RemoteService>,
    /// Whether a session may take the direct path (hole punching): the agent's task gets
    /// an empty set of pinholes PID 1 fills, one per session whose capability it verified
    /// grants `direct`. False by default: every byte through the relay.
    pub direct: bool,
}

/// `host:port`: a DNS name or an IPv4 address, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelayAddr {
    host: String,
    port: u16,
}

impl RelayAddr {
    /// The host: a DNS name or an IPv4 address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for RelayAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}
serialize_as_display!(RelayAddr);

impl FromStr for RelayAddr {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        let err = || {
            Problem::new(format!("invalid relay {s:?}"))
                .expected("host:port, a DNS name or an IPv4 address and a port, e.g. \"relay.example.com:7400\"")
        };
        if s.starts_with('[') || s.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
            return Err(ipv6_problem("relay", s));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(err().hint("the port is needed: the relay has no default port"));
        };
        let port = port
            .parse::<i64>()
            .map_err(|_| err().hint(format!("{port:?} is not a port number")))
            .and_then(|n| port_number(n, port))?;
        if host.parse::<Ipv4Addr>().is_err() {
            if !host.is_empty() && host.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return Err(err().hint("this looks like an IPv4 address but is not a valid one"));
            }
            check_dns_name(host).map_err(|hint| err().hint(hint))?;
        }
        Ok(RelayAddr {
            host: host.to_owned(),
            port,
        })
    }
}

/// The access key: its 64 hex digits, or a file holding them (read by the build).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessKeyRef {
    /// The Ed25519 public key, 64 lower-case hex digits.
    Key(String),
    /// A file holding the key's hex (`limpet access keygen`'s `.pub`), relative to the
    /// manifest's directory or absolute.
    File(PathBuf),
}

impl AccessKeyRef {
    /// As written in the canonical manifest.
    pub fn as_written(&self) -> String {
        match self {
            AccessKeyRef::Key(k) => k.clone(),
            AccessKeyRef::File(p) => p.to_string_lossy().into_owned(),
        }
    }
}

impl FromStr for AccessKeyRef {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit()) {
            if s.len() != 64 {
                return Err(Problem::new(format!(
                    "access key of {} hex digits",
                    s.len()
                ))
                .expected("an Ed25519 public key, 64 hex digits, or a path to a file holding them")
                .hint("write a file path with a '/' or '.' in it, e.g. \"./access.pub\""));
            }
            return Ok(AccessKeyRef::Key(s.to_ascii_lowercase()));
        }
        file_path("access key", s).map(AccessKeyRef::File)
    }
}

/// One `services` entry: `{ name = "echo", task = "web", port = 8080 }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteService {
    /// The name a capability grants.
    pub name: String,
    /// The task that listens on the port.
    pub task: TaskName,
    /// The port on loopback (`127.0.0.1`).
    pub port: u16,
}

fn service_name(s: &str) -> Result<String, Problem> {
    let ok = (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Problem::new(format!("invalid service name {s:?}"))
            .expected("1 to 32 of a-z, 0-9 and '-', the name a capability grants"))
    }
}

/// Checks `[remote]` against the tasks it names.
pub(crate) fn check(c: &mut Checker<'_>, r: &RawRemote, raw: &RawManifest) -> Option<Remote> {
    let relay = c.parse(&r.relay);
    let access_key = c.parse(&r.access_key);
    let services = r.services.get_ref();
    let mut ok = true;
    if services.is_empty() {
        ok = false;
        c.report(
            &r.services.span(),
            Problem::new("no services listed")
                .expected("at least one { name, task, port }")
                .hint("remote access reaches only declared services; without one there is nothing to reach"),
        );
    } else if services.len() > MAX_REMOTE_SERVICES {
        ok = false;
        c.report(
            &r.services.span(),
            Problem::new(format!("{} services listed", services.len()))
                .expected(format!("at most {MAX_REMOTE_SERVICES}")),
        );
    }
    let mut out: Vec<RemoteService> = Vec::new();
    for s in services {
        match service(c, s.get_ref(), raw) {
            Some(svc) if out.iter().any(|o| o.name == svc.name) => {
                ok = false;
                c.report(
                    &s.get_ref().name.span(),
                    Problem::new(format!("service {:?} is listed twice", svc.name))
                        .expected("each service name once"),
                );
            }
            Some(svc) => out.push(svc),
            None => ok = false,
        }
    }
    ok.then_some(())?;
    Some(Remote {
        relay: relay?,
        access_key: access_key?,
        services: out,
        direct: r.direct.as_ref().is_some_and(|d| *d.get_ref()),
    })
}

fn service(c: &mut Checker<'_>, s: &RawService, raw: &RawManifest) -> Option<RemoteService> {
    let name = c.check(&s.name, service_name);
    let port = match port_number(*s.port.get_ref(), &s.port.get_ref().to_string()) {
        Ok(p) => Some(p),
        Err(p) => {
            c.report(&s.port.span(), p);
            None
        }
    };
    let task = c.check(&s.task, |t| {
        let name: TaskName = t.parse()?;
        let names: Vec<&str> = raw.task.iter().map(|t| t.get_ref().name.get_ref().as_str()).collect();
        let Some(declared) = raw
            .task
            .iter()
            .find(|t| t.get_ref().name.get_ref().as_str() == name.as_str())
        else {
            let list = names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
            return Err(Problem::new(format!("unknown task \"{name}\" in [remote] services"))
                .expected(format!("the name of a [[task]]: {list}"))
                .maybe_hint(did_you_mean(t, names.iter().copied()).map(|n| format!("did you mean \"{n}\"?"))));
        };
        let network = declared.get_ref().network.as_ref().map(|n| n.get_ref().as_str());
        if network != Some(NetworkAccess::Allowlist.as_str()) {
            return Err(Problem::new(format!(
                "task \"{name}\" has network = \"{}\": the remote agent cannot reach its loopback",
                network.unwrap_or(NetworkAccess::None.as_str())
            ))
            .expected("a task with network = \"allowlist\", listening on 127.0.0.1")
            .hint("a task without network has a loopback of its own; give it network = \"allowlist\" (no egress or listen rule is needed for loopback)"));
        }
        Ok(name)
    });
    Some(RemoteService {
        name: name?,
        task: task?,
        port: port?,
    })
}

impl Manifest {
    /// The manifest with the remote agent's task appended, when there is a `[remote]`; the
    /// manifest as it is otherwise. `access_key` is the access key's 64 hex digits (the
    /// build reads them from the file `[remote] access_key` may name).
    pub fn with_remote_agent(&self, access_key: &str) -> Result<Manifest, Diagnostics> {
        let Some(remote) = &self.remote else {
            return Ok(self.clone());
        };
        let problem = |message: String, expected: &str, hint: &str| {
            Diagnostics(vec![Diagnostic {
                file: "[remote]".to_owned(),
                line: 0,
                column: 0,
                message,
                expected: Some(expected.to_owned()),
                hint: Some(hint.to_owned()),
            }])
        };
        if self
            .tasks
            .iter()
            .any(|t| t.name.as_str() == REMOTE_AGENT_TASK)
        {
            return Err(problem(
                format!("task name {REMOTE_AGENT_TASK:?} is reserved"),
                "another name",
                "a device with [remote] runs Limpet's remote agent under that name",
            ));
        }
        if !(access_key.len() == 64 && access_key.chars().all(|c| c.is_ascii_hexdigit())) {
            return Err(problem(
                format!("access key {access_key:?} is not 64 hex digits"),
                "an Ed25519 public key, 64 hex digits",
                "the file [remote] access_key names holds the key `limpet access keygen` wrote",
            ));
        }
        let text = format!(
            "{}\n{}",
            self.to_canonical_toml(),
            agent_toml(remote, access_key)
        );
        crate::parse("<manifest with the remote agent>", &text)
    }
}

/// The agent's `[[task]]`: egress to the relay and to each service's loopback port, no
/// listening port, no file beyond its binary.
fn agent_toml(r: &Remote, access_key: &str) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let relay = r.relay.to_string();
    let mut args: Vec<String> = [
        "--signer",
        REMOTE_SIGNER_SOCKET,
        "--relay",
        relay.as_str(),
        "--access-key",
        &access_key.to_ascii_lowercase(),
    ]
    .iter()
    .map(|s| q(s))
    .collect();
    for s in &r.services {
        args.push(q("--service"));
        args.push(q(&format!("{}=127.0.0.1:{}", s.name, s.port)));
    }
    if r.direct {
        args.push(q("--direct"));
    }
    let mut egress = format!(
        "\n[[task.egress]]\nhost = {}\nports = [{}]\nproto = {}\n",
        q(r.relay.host()),
        r.relay.port(),
        q(Proto::Tcp.as_str())
    );
    let mut ports: Vec<u16> = r.services.iter().map(|s| s.port).collect();
    ports.sort_unstable();
    ports.dedup();
    egress.push_str(&format!(
        "\n[[task.egress]]\nhost = {}\nports = [{}]\nproto = {}\n",
        q(&Ipv4Addr::LOCALHOST.to_string()),
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        q(Proto::Tcp.as_str())
    ));
    format!(
        "[[task]]\nname = {name}\npackage = {package}\nbinary = {binary}\nargs = [{args}]\n\
         memory = {memory}\ncpu = {cpu}\npids = {AGENT_PIDS}\nrestart = {restart}\n\
         syscalls = {syscalls}\nnetwork = {network}\n{egress}",
        name = q(REMOTE_AGENT_TASK),
        package = q(REMOTE_AGENT_PACKAGE),
        binary = q(REMOTE_AGENT_BINARY),
        args = args.join(", "),
        memory = q(AGENT_MEMORY),
        cpu = q(AGENT_CPU),
        restart = q(RestartPolicy::Always.as_str()),
        syscalls = q(SyscallProfile::Network.as_str()),
        network = q(NetworkAccess::Allowlist.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

    fn manifest(remote: &str) -> String {
        format!(
            r#"
[device]
name = "thermostat"
version = "1.4.0"
target = "x86_64"

[[task]]
name = "web"
package = "thermostat-web"
memory = "8MiB"
cpu = "10%"
network = "allowlist"

[[task]]
name = "sensor"
package = "thermostat-sensor"
memory = "8MiB"
cpu = "10%"

[remote]
{remote}
"#
        )
    }

    fn good() -> String {
        manifest(&format!(
            "relay = \"relay.example.com:7400\"\naccess_key = \"{KEY}\"\n\
             services = [{{ name = \"console\", task = \"web\", port = 8080 }}, \
             {{ name = \"status\", task = \"web\", port = 8081 }}]"
        ))
    }

    #[test]
    fn the_section_parses_and_round_trips_through_the_canonical_form() {
        let m = crate::parse("t.toml", &good()).unwrap();
        let r = m.remote.as_ref().unwrap();
        assert_eq!(
            (r.relay.host(), r.relay.port()),
            ("relay.example.com", 7400)
        );
        assert_eq!(r.access_key, AccessKeyRef::Key(KEY.to_owned()));
        assert_eq!(r.services.len(), 2);
        assert_eq!(
            crate::parse("t.toml", &m.to_canonical_toml()),
            Ok(m.clone())
        );
        let by_file = crate::parse(
            "t.toml",
            &good().replace(&format!("\"{KEY}\""), "\"keys/access.pub\""),
        )
        .unwrap();
        assert_eq!(
            by_file.remote.unwrap().access_key,
            AccessKeyRef::File("keys/access.pub".into())
        );
    }

    #[test]
    fn the_agent_task_reaches_the_relay_and_the_services_loopback_ports_only() {
        let m = crate::parse("t.toml", &good()).unwrap();
        let with = m.with_remote_agent(KEY).unwrap();
        assert_eq!(with.tasks.len(), 3);
        let agent = &with.tasks[2];
        assert_eq!(agent.name.as_str(), REMOTE_AGENT_TASK);
        assert_eq!(agent.package, REMOTE_AGENT_PACKAGE);
        assert_eq!(agent.binary.as_str(), REMOTE_AGENT_BINARY);
        assert_eq!(agent.network, NetworkAccess::Allowlist);
        assert!(agent.listen.is_empty());
        assert!(agent.files.read.is_empty() && agent.files.write.is_empty());
        let egress: Vec<(String, Vec<String>)> = agent
            .egress
            .iter()
            .map(|e| {
                (
                    e.host.to_string(),
                    e.ports.iter().map(ToString::to_string).collect(),
                )
            })
            .collect();
        assert_eq!(
            egress,
            [
                ("relay.example.com".to_owned(), vec!["7400".to_owned()]),
                (
                    "127.0.0.1".to_owned(),
                    vec!["8080".to_owned(), "8081".to_owned()]
                ),
            ]
        );
        assert_eq!(
            agent.args,
            [
                "--signer",
                REMOTE_SIGNER_SOCKET,
                "--relay",
                "relay.example.com:7400",
                "--access-key",
                KEY,
                "--service",
                "console=127.0.0.1:8080",
                "--service",
                "status=127.0.0.1:8081",
            ]
        );
        // Without [remote], nothing is added; a bad resolved key is refused.
        let plain = crate::parse("t.toml", good().split("[remote]").next().unwrap()).unwrap();
        assert_eq!(plain.with_remote_agent(KEY).unwrap().tasks.len(), 2);
        let e = m.with_remote_agent("abc").unwrap_err().to_string();
        assert!(e.contains("not 64 hex digits"), "{e}");
    }

    #[test]
    fn a_vendor_task_cannot_take_the_agents_name() {
        let text = good().replace("name = \"sensor\"", "name = \"limpet-remote\"");
        let e = crate::parse("t.toml", &text)
            .unwrap()
            .with_remote_agent(KEY)
            .unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
    }

    /// `direct = true`: kept through the canonical form, and the agent gets `--direct`;
    /// absent, neither. Anything but a boolean is refused at the value.
    #[test]
    fn direct_is_parsed_strictly_and_given_to_the_agent() {
        let m = crate::parse("t.toml", &format!("{}\ndirect = true\n", good())).unwrap();
        assert!(m.remote.as_ref().unwrap().direct);
        let again = crate::parse("c.toml", &m.to_canonical_toml()).unwrap();
        assert!(again.remote.as_ref().unwrap().direct);
        let agent = |m: &Manifest| {
            let m = m.with_remote_agent(KEY).unwrap();
            let t = m
                .tasks
                .iter()
                .find(|t| t.name.as_str() == REMOTE_AGENT_TASK)
                .unwrap()
                .clone();
            t.args
        };
        assert!(agent(&m).iter().any(|a| a == "--direct"));
        let plain = crate::parse("t.toml", &good()).unwrap();
        assert!(!plain.remote.as_ref().unwrap().direct);
        assert!(!agent(&plain).iter().any(|a| a == "--direct"));
        let err = crate::parse("t.toml", &format!("{}\ndirect = \"yes\"\n", good()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("direct") || err.contains("boolean"), "{err}");
        assert!(err.contains("t.toml:"), "{err}");
    }

    #[test]
    fn bad_sections_are_refused_where_they_are_written() {
        let services = "services = [{ name = \"console\", task = \"web\", port = 8080 }]";
        for (remote, says) in [
            (
                format!("relay = \"relay.example.com\"\naccess_key = \"{KEY}\"\n{services}"),
                "the port is needed",
            ),
            (
                format!("relay = \"[2001:db8::1]:7400\"\naccess_key = \"{KEY}\"\n{services}"),
                "IPv6",
            ),
            (
                format!("relay = \"300.1.2.3:7400\"\naccess_key = \"{KEY}\"\n{services}"),
                "not a valid one",
            ),
            (
                format!("relay = \"192.0.2.1:0\"\naccess_key = \"{KEY}\"\n{services}"),
                "invalid port 0",
            ),
            (
                format!(
                    "relay = \"192.0.2.1:7400\"\naccess_key = \"{}\"\n{services}",
                    &KEY[1..]
                ),
                "access key of 63 hex digits",
            ),
            (
                format!("relay = \"192.0.2.1:7400\"\naccess_key = \"{KEY}\"\nservices = []"),
                "no services listed",
            ),
            (
                format!(
                    "relay = \"192.0.2.1:7400\"\naccess_key = \"{KEY}\"\n\
                     services = [{{ name = \"Console\", task = \"web\", port = 8080 }}]"
                ),
                "invalid service name \"Console\"",
            ),
            (
                format!(
                    "relay = \"192.0.2.1:7400\"\naccess_key = \"{KEY}\"\n\
                     services = [{{ name = \"console\", task = \"wbe\", port = 8080 }}]"
                ),
                "did you mean \"web\"",
            ),
            (
                format!(
                    "relay = \"192.0.2.1:7400\"\naccess_key = \"{KEY}\"\n\
                     services = [{{ name = \"console\", task = \"sensor\", port = 8080 }}]"
                ),
                "task \"sensor\" has network = \"none\"",
            ),
            (
                format!(
                    "relay = \"192.0.2.1:7400\"\naccess_key = \"{KEY}\"\n\
                     services = [{{ name = \"console\", task = \"web\", port = 70000 }}]"
                ),
                "invalid port 70000",
            ),
            (
                format!(
                    "relay = \"192.0.2.1:7400\"\naccess_key = \"{KEY}\"\n\
                     services = [{{ name = \"a\", task = \"web\", port = 1 }}, \
                     {{ name = \"a\", task = \"web\", port = 2 }}]"
                ),
                "listed twice",
            ),
            (
                format!("relay = \"192.0.2.1:7400\"\naccess_key = \"{KEY}\"\n{services}\nport = 1"),
                "unknown key `port`",
            ),
        ] {
            let e = crate::parse("t.toml", &manifest(&remote))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{remote}: {e}");
            assert!(e.contains("t.toml:"), "{remote}: {e}");
        }
    }
}
