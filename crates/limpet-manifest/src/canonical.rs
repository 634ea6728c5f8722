//! The canonical TOML form of a manifest.
//!
//! Rules this module keeps:
//! - Every default is written out, so the canonical form is the whole truth about a device
//!   and a diff of two canonical forms is a diff of behaviour.
//! - The order is fixed (sections, then keys, as in the docs) and independent of how the
//!   input was written; lists keep manifest order, maps are sorted.
//! - `parse(&m.to_canonical_toml()) == Ok(m)`: the roundtrip test holds this.
//! - Strings are quoted by the `toml` crate, never by hand.

use std::fmt::Write as _;

use crate::device::KernelSource;
use crate::lifecycle::IslandLan;
use crate::network::NetworkMode;
use crate::task::net::{EgressRule, ListenRule};
use crate::task::supervision::Readiness;
use crate::task::Task;
use crate::update::KeyRef;
use crate::Manifest;

/// A TOML basic string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML array of strings.
fn list<T: ToString>(items: &[T]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| q(&i.to_string())).collect();
    format!("[{}]", quoted.join(", "))
}

impl Manifest {
    /// The manifest in canonical form: every default explicit, stable order.
    pub fn to_canonical_toml(&self) -> String {
        let mut o = String::new();
        // Writing to a String cannot fail; the results are discarded on purpose.
        let d = &self.device;
        let _ = writeln!(o, "[device]");
        let _ = writeln!(o, "name = {}", q(d.name.as_str()));
        let _ = writeln!(o, "version = {}", q(&d.version.to_string()));
        let _ = writeln!(o, "target = {}", q(d.target.as_str()));
        let _ = writeln!(o, "memory = {}", q(&d.memory.to_string()));
        let _ = writeln!(o, "cpus = {}", d.cpus);

        let _ = writeln!(o, "\n[kernel]");
        match &self.kernel.source {
            KernelSource::Host => {
                let _ = writeln!(o, "source = {}", q(KernelSource::HOST));
            }
            KernelSource::Limpet => {
                let _ = writeln!(o, "source = {}", q(KernelSource::LIMPET));
            }
            KernelSource::Paths { image, modules } => {
                let _ = writeln!(
                    o,
                    "source = {{ image = {}, modules = {} }}",
                    q(&image.to_string_lossy()),
                    q(&modules.to_string_lossy())
                );
            }
        }
        let _ = writeln!(o, "modules = {}", list(&self.kernel.modules));
        let _ = writeln!(o, "cmdline = {}", q(&self.kernel.cmdline.to_string()));
        let _ = writeln!(o, "watchdog = {}", q(&self.kernel.watchdog.to_string()));
        let _ = writeln!(o, "tpm = {}", q(self.kernel.tpm.as_str()));

        let _ = writeln!(o, "\n[disk]");
        let _ = writeln!(o, "slot_size = {}", q(&self.disk.slot_size.to_string()));
        let _ = writeln!(o, "data_size = {}", q(&self.disk.data_size.to_string()));

        let n = &self.network;
        let _ = writeln!(o, "\n[network]");
        let _ = writeln!(o, "mode = {}", q(n.mode.word().as_str()));
        match &n.mode {
            NetworkMode::Dhcp => {}
            NetworkMode::Static { address, gateway } => {
                let _ = writeln!(o, "address = {}", q(&address.to_string()));
                if let Some(g) = gateway {
                    let _ = writeln!(o, "gateway = {}", q(&g.to_string()));
                }
            }
        }
        let _ = writeln!(o, "dns = {}", list(&n.dns));
        let _ = writeln!(o, "interfaces = {}", list(&n.interfaces));
        if let Some(cap) = n.egress_cap {
            let _ = writeln!(o, "egress_cap = {}", q(&cap.to_string()));
        }

        for t in &self.tasks {
            write_task(&mut o, t);
        }

        if let Some(u) = &self.update {
            let _ = writeln!(o, "\n[update]");
            let _ = writeln!(o, "repository = {}", q(u.repository.as_str()));
            let _ = writeln!(o, "poll = {}", q(&u.poll.to_string()));
            if let Some(root) = &u.root {
                let _ = writeln!(o, "root = {}", q(&root.to_string_lossy()));
            }
            if let Some(w) = &u.reboot_window {
                let _ = writeln!(o, "reboot_window = {}", q(w));
            }
            if let Some(f) = &u.fleet {
                let _ = writeln!(o, "fleet = {}", q(f.as_str()));
            }
            let _ = writeln!(o, "health = {}", q(&u.health.to_string()));
            let _ = writeln!(o, "health_timeout = {}", q(&u.health_timeout.to_string()));
            let _ = writeln!(o, "try_boots = {}", u.try_boots);
            let keys: Vec<String> = u
                .keys
                .iter()
                .map(|k| match k {
                    KeyRef::File(p) => format!("{{ file = {} }}", q(&p.to_string_lossy())),
                    KeyRef::Id(id) => format!("{{ id = {} }}", q(id.as_str())),
                })
                .collect();
            let _ = writeln!(o, "keys = [{}]", keys.join(", "));
        }

        if let Some(l) = &self.lifecycle {
            let _ = writeln!(o, "\n[lifecycle]");
            let _ = writeln!(o, "support_until = {}", q(&l.support_until.to_string()));
            if let Some(f) = l.freshness {
                let _ = writeln!(o, "freshness = {}", q(&f.to_string()));
            }
            let lan = matches!(l.island.lan, IslandLan::Allowed);
            let _ = writeln!(
                o,
                "island = {{ keep = {}, lan = {lan} }}",
                list(&l.island.keep)
            );
            if !l.roughtime.is_empty() {
                let servers: Vec<String> = l
                    .roughtime
                    .iter()
                    .map(|r| {
                        format!(
                            "{{ name = {}, address = {}, key = {} }}",
                            q(&r.name),
                            q(&r.address.to_string()),
                            q(&r.key)
                        )
                    })
                    .collect();
                let _ = writeln!(o, "roughtime = [{}]", servers.join(", "));
            }
        }

        if let Some(r) = &self.remote {
            let _ = writeln!(o, "\n[remote]");
            let _ = writeln!(o, "relay = {}", q(&r.relay.to_string()));
            let _ = writeln!(o, "access_key = {}", q(&r.access_key.as_written()));
            let services: Vec<String> = r
                .services
                .iter()
                .map(|s| {
                    format!(
                        "{{ name = {}, task = {}, port = {} }}",
                        q(&s.name),
                        q(s.task.as_str()),
                        s.port
                    )
                })
                .collect();
            let _ = writeln!(o, "services = [{}]", services.join(", "));
            if r.direct {
                let _ = writeln!(o, "direct = true");
            }
        }
        o
    }
}

fn write_task(o: &mut String, t: &Task) {
    let _ = writeln!(o, "\n[[task]]");
    let _ = writeln!(o, "name = {}", q(t.name.as_str()));
    let _ = writeln!(o, "package = {}", q(&t.package));
    let _ = writeln!(o, "binary = {}", q(t.binary.as_str()));
    let _ = writeln!(o, "args = {}", list(&t.args));
    let env: Vec<String> = t
        .env
        .iter()
        .map(|(k, v)| format!("{k} = {}", q(v)))
        .collect();
    if env.is_empty() {
        let _ = writeln!(o, "env = {{}}");
    } else {
        let _ = writeln!(o, "env = {{ {} }}", env.join(", "));
    }
    let _ = writeln!(o, "memory = {}", q(&t.memory.to_string()));
    let _ = writeln!(o, "cpu = {}", q(&t.cpu.to_string()));
    let _ = writeln!(o, "pids = {}", t.pids);
    if let Some(tmp) = t.tmp {
        let _ = writeln!(o, "tmp = {}", q(&tmp.to_string()));
    }
    let r = &t.restart;
    let _ = writeln!(
        o,
        "restart = {{ policy = {}, backoff_initial = {}, backoff_max = {}, crash_loop_limit = {} }}",
        q(r.policy.as_str()),
        q(&r.backoff_initial.to_string()),
        q(&r.backoff_max.to_string()),
        r.crash_loop_limit
    );
    let kind = q(t.readiness.kind().as_str());
    match t.readiness {
        Readiness::Started => {
            let _ = writeln!(o, "readiness = {{ kind = {kind} }}");
        }
        Readiness::Notify { timeout } => {
            let _ = writeln!(
                o,
                "readiness = {{ kind = {kind}, timeout = {} }}",
                q(&timeout.to_string())
            );
        }
    }
    let _ = writeln!(
        o,
        "files = {{ read = {}, write = {} }}",
        list(&t.files.read),
        list(&t.files.write)
    );
    let _ = writeln!(o, "devices = {}", list(&t.devices));
    // Written only when granted, so the canonical form of a manifest without rights (every
    // slot built before them) is unchanged.
    if !t.rights.is_empty() {
        let _ = writeln!(o, "rights = {}", list(&t.rights));
    }
    let _ = writeln!(
        o,
        "syscalls = {{ profile = {}, allow = {} }}",
        q(t.syscalls.profile.as_str()),
        list(&t.syscalls.allow)
    );
    let _ = writeln!(o, "network = {}", q(t.network.as_str()));
    for e in &t.egress {
        write_egress(o, e);
    }
    for l in &t.listen {
        write_listen(o, l);
    }
}

fn write_egress(o: &mut String, e: &EgressRule) {
    let _ = writeln!(o, "\n[[task.egress]]");
    let _ = writeln!(o, "host = {}", q(&e.host.to_string()));
    let ports: Vec<String> = e
        .ports
        .iter()
        .map(|p| {
            if p.start() == p.end() {
                p.start().to_string()
            } else {
                q(&p.to_string())
            }
        })
        .collect();
    let _ = writeln!(o, "ports = [{}]", ports.join(", "));
    let _ = writeln!(o, "proto = {}", q(e.proto.as_str()));
    if let Some(r) = e.rate {
        let _ = writeln!(o, "rate = {}", q(&r.to_string()));
    }
    if let Some(p) = e.packets {
        let _ = writeln!(o, "packets = {}", q(&p.to_string()));
    }
}

fn write_listen(o: &mut String, l: &ListenRule) {
    let _ = writeln!(o, "\n[[task.listen]]");
    let _ = writeln!(o, "port = {}", l.port);
    let _ = writeln!(o, "proto = {}", q(l.proto.as_str()));
    let _ = writeln!(o, "scope = {}", q(l.scope.as_str()));
}
