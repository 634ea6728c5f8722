//! From [`RawManifest`] to [`Manifest`]: every semantic check, every error located.
//!
//! Rules this module keeps:
//! - All errors are collected, not just the first: each check reports and moves on, and a
//!   failed value becomes `None` so later checks can still run on the values that parsed.
//! - The manifest is built only when no error was reported; a missing value without a
//!   report would be a bug here, and is reported as one rather than panicking.
//! - Cross-checks (budgets, names across sections) run on whatever parsed, and point at the
//!   value that tips the balance, with the totals in the message.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;
use toml::Spanned;

use crate::diag::{did_you_mean, Diagnostic, Locator, Problem};
use crate::model::*;
use crate::names::{check_package_name, AbsPath, BinaryName, TaskName};
use crate::net::{
    port_number, EgressRule, ListenRule, Network, NetworkAccess, NetworkMode, PortRange, Proto,
    Scope,
};
use crate::raw::*;
use crate::task::*;
use crate::units::{ByteSize, CpuShare, Date, Duration};

/// Smallest task memory budget: below this the kernel's own per-process memory (page
/// tables, stack, the binary's pages) cannot fit, so the task would be killed at start.
pub const MIN_TASK_MEMORY: ByteSize = ByteSize::mib(1);
/// Shortest update poll interval: a fleet polling faster would load the repository for no gain.
pub const MIN_POLL: Duration = Duration::secs(60);
/// Shortest health period: long enough for a task that crashes at start to be seen.
pub const MIN_HEALTH: Duration = Duration::secs(5);
/// Most consecutive failures a crash-loop limit may allow.
const MAX_CRASH_LOOP_LIMIT: i64 = 1000;

struct Checker<'a> {
    loc: Locator<'a>,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn report(&mut self, span: &Range<usize>, problem: Problem) {
        self.diags.push(self.loc.at(span, problem));
    }

    /// Parses a spanned string with `FromStr`, reporting at its span.
    fn parse<T: FromStr<Err = Problem>>(&mut self, s: &Spanned<String>) -> Option<T> {
        self.check(s, |v| v.parse())
    }

    fn check<T>(
        &mut self,
        s: &Spanned<String>,
        f: impl FnOnce(&str) -> Result<T, Problem>,
    ) -> Option<T> {
        match f(s.get_ref()) {
            Ok(v) => Some(v),
            Err(p) => {
                self.report(&s.span(), p);
                None
            }
        }
    }

    /// Parses an optional value, or takes the default.
    fn parse_or<T: FromStr<Err = Problem>>(
        &mut self,
        s: &Option<Spanned<String>>,
        default: T,
    ) -> Option<T> {
        match s {
            Some(s) => self.parse(s),
            None => Some(default),
        }
    }

    /// Parses every element of an optional list; `None` if any failed (each one reported).
    fn list<T>(
        &mut self,
        v: &Option<Vec<Spanned<String>>>,
        f: impl Fn(&str) -> Result<T, Problem>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        let mut ok = true;
        for s in v.iter().flatten() {
            match self.check(s, &f) {
                Some(x) => out.push(x),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// One of a fixed set of words, with a did-you-mean hint.
    fn choice<T: Copy>(
        &mut self,
        s: &Spanned<String>,
        what: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let v = s.get_ref();
        if let Some((_, t)) = options.iter().find(|(name, _)| name == v) {
            return Some(*t);
        }
        let names = options
            .iter()
            .map(|(n, _)| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let hint = did_you_mean(v, options.iter().map(|(n, _)| *n))
            .map(|n| format!("did you mean \"{n}\"?"));
        self.report(
            &s.span(),
            Problem::new(format!("invalid {what} {v:?}"))
                .expected(format!("one of {names}"))
                .maybe_hint(hint),
        );
        None
    }

    /// An integer within bounds.
    fn int_in(&mut self, v: &Spanned<i64>, what: &str, min: i64, max: i64) -> Option<u32> {
        let n = *v.get_ref();
        match u32::try_from(n) {
            Ok(x) if (min..=max).contains(&n) => Some(x),
            _ => {
                self.report(
                    &v.span(),
                    Problem::new(format!("invalid {what} {n}"))
                        .expected(format!("a whole number from {min} to {max}")),
                );
                None
            }
        }
    }

    fn positive_duration(&mut self, s: &Spanned<String>, what: &str) -> Option<Duration> {
        let d: Duration = self.parse(s)?;
        if d.as_millis() == 0 {
            self.report(
                &s.span(),
                Problem::new(format!("{what} cannot be zero")).expected("a duration above zero"),
            );
            return None;
        }
        Some(d)
    }
}

/// Facts about a task that cross-checks need even when the task as a whole failed.
struct TaskFacts {
    name: Option<(TaskName, Range<usize>)>,
    memory: Option<(ByteSize, Range<usize>)>,
    cpu: Option<(CpuShare, Range<usize>)>,
}

pub(crate) fn validate(raw: &RawManifest, loc: Locator<'_>) -> Result<Manifest, Vec<Diagnostic>> {
    let mut c = Checker {
        loc,
        diags: Vec::new(),
    };
    let device = device(&mut c, &raw.device);
    let kernel = match &raw.kernel {
        Some(k) => kernel(&mut c, k),
        None => Some(Kernel::default()),
    };
    let disk = match &raw.disk {
        Some(d) => disk(&mut c, d),
        None => Some(Disk::default()),
    };
    let network = match &raw.network {
        Some(n) => network(&mut c, n),
        None => Some(Network::default()),
    };
    let mut tasks = Vec::new();
    let mut facts = Vec::new();
    for t in &raw.task {
        let (task, f) = task(&mut c, t);
        tasks.push(task);
        facts.push(f);
    }
    if raw.task.is_empty() {
        c.report(
            &(0..0),
            Problem::new("the manifest declares no tasks")
                .expected("at least one [[task]]")
                .hint("add a [[task]] table with name, package, memory and cpu"),
        );
    }
    cross_check_tasks(&mut c, raw, device.as_ref(), &facts);
    let update = raw.update.as_ref().map(|u| update(&mut c, u));
    let lifecycle = raw.lifecycle.as_ref().map(|l| {
        lifecycle(
            &mut c,
            l,
            raw,
            &facts,
            update.as_ref().and_then(Option::as_ref),
        )
    });

    let tasks: Option<Vec<Task>> = tasks.into_iter().collect();
    let update = update.map_or(Some(None), |u| u.map(Some));
    let lifecycle = lifecycle.map_or(Some(None), |l| l.map(Some));
    if !c.diags.is_empty() {
        return Err(c.diags);
    }
    match (device, kernel, disk, network, tasks, update, lifecycle) {
        (
            Some(device),
            Some(kernel),
            Some(disk),
            Some(network),
            Some(tasks),
            Some(update),
            Some(lifecycle),
        ) => Ok(Manifest {
            device,
            kernel,
            disk,
            network,
            tasks,
            update,
            lifecycle,
        }),
        _ => {
            c.report(
                &(0..0),
                Problem::new("internal error: a value failed without a diagnostic"),
            );
            Err(c.diags)
        }
    }
}

fn device(c: &mut Checker<'_>, d: &RawDevice) -> Option<Device> {
    let name = c.parse(&d.name);
    let version = c.check(&d.version, parse_version);
    let target = c.check(&d.target, parse_target);
    let memory = c.parse_or(&d.memory, DEFAULT_DEVICE_MEMORY);
    let cpus = match &d.cpus {
        Some(n) => c.int_in(n, "cpu count", 1, i64::from(MAX_CPUS)),
        None => Some(DEFAULT_CPUS),
    };
    if let (Some(m), Some(s)) = (memory, &d.memory) {
        if m < MIN_TASK_MEMORY {
            c.report(
                &s.span(),
                Problem::new(format!("device memory {m} is too small"))
                    .expected(format!("at least {MIN_TASK_MEMORY}")),
            );
        }
    }
    Some(Device {
        name: name?,
        version: version?,
        target: target?,
        memory: memory?,
        cpus: cpus?,
    })
}

fn parse_version(s: &str) -> Result<semver::Version, Problem> {
    semver::Version::parse(s).map_err(|e| {
        // Suggest the nearest version that parses: no leading 'v', missing parts as 0.
        let t = s.trim().trim_start_matches(['v', 'V']);
        let dots = t.split(['-', '+']).next().unwrap_or(t).matches('.').count();
        let padded = match dots {
            0 => format!("{t}.0.0"),
            1 => format!("{t}.0"),
            _ => t.to_owned(),
        };
        let padded = if dots < 2 {
            // Keep pre-release/build suffixes after the padded core.
            match t.find(['-', '+']) {
                Some(i) => {
                    let (core, suffix) = t.split_at(i);
                    format!("{core}{}{suffix}", if dots == 0 { ".0.0" } else { ".0" })
                }
                None => padded,
            }
        } else {
            padded
        };
        let hint = semver::Version::parse(&padded)
            .ok()
            .filter(|_| padded != s)
            .map(|v| format!("did you mean \"{v}\"?"));
        Problem::new(format!("invalid version {s:?}"))
            .expected("a semantic version MAJOR.MINOR.PATCH, e.g. \"1.4.0\"")
            .hint(hint.unwrap_or_else(|| e.to_string()))
    })
}

fn parse_target(s: &str) -> Result<Target, Problem> {
    if let Some(t) = Target::ALL.into_iter().find(|t| t.as_str() == s) {
        return Ok(t);
    }
    let supported = Target::ALL.map(|t| t.as_str()).join(", ");
    let hint = match s.to_ascii_lowercase().as_str() {
        "amd64" | "x86-64" | "x64" | "x86_64-unknown-linux-musl" | "x86_64-unknown-linux-gnu" => {
            Some("did you mean \"x86_64\"?".to_owned())
        }
        "arm64" | "armv8" | "aarch64-unknown-linux-musl" | "aarch64-unknown-linux-gnu" => {
            Some("did you mean \"aarch64\"?".to_owned())
        }
        "arm" | "armv7" | "armhf" | "armv7l" | "riscv64" | "riscv" => {
            Some("armv7 and riscv64 are planned but not supported yet".to_owned())
        }
        _ => did_you_mean(s, Target::ALL.map(|t| t.as_str()))
            .map(|t| format!("did you mean \"{t}\"?")),
    };
    Err(Problem::new(format!("unsupported target {s:?}"))
        .expected(format!("a supported target: {supported}"))
        .maybe_hint(hint))
}

fn kernel(c: &mut Checker<'_>, k: &RawKernel) -> Option<Kernel> {
    let source = match &k.source {
        None => Some(KernelSource::Host),
        Some(s) => match s.get_ref() {
            StrOr::Str(v) if v == "host" => Some(KernelSource::Host),
            StrOr::Str(v) => {
                let hint = if did_you_mean(v, ["host"]).is_some() {
                    "did you mean \"host\"?".to_owned()
                } else {
                    "for your own kernel write source = { image = \"path/to/vmlinuz\", modules = \"path/to/lib/modules/<version>\" }".to_owned()
                };
                c.report(
                    &s.span(),
                    Problem::new(format!("invalid kernel source {v:?}"))
                        .expected("\"host\" or a table { image = \"...\", modules = \"...\" }")
                        .hint(hint),
                );
                None
            }
            StrOr::Table(p) => {
                let image = c.check(&p.image, |v| file_path("kernel image", v));
                let modules = c.check(&p.modules, |v| file_path("modules directory", v));
                Some(KernelSource::Paths {
                    image: image?,
                    modules: modules?,
                })
            }
        },
    };
    let modules = c.list(&k.modules, str::parse);
    Some(Kernel {
        source: source?,
        modules: modules?,
    })
}

/// A path to a build-host file, kept as written.
fn file_path(what: &str, s: &str) -> Result<PathBuf, Problem> {
    if s.trim().is_empty() {
        return Err(Problem::new(format!("empty {what} path"))
            .expected("a path, relative to the manifest's directory or absolute"));
    }
    if s.contains('\0') {
        return Err(Problem::new(format!("invalid {what} path {s:?}"))
            .expected("a path without NUL characters"));
    }
    Ok(PathBuf::from(s))
}

fn disk(c: &mut Checker<'_>, d: &RawDisk) -> Option<Disk> {
    let slot = c.parse_or(&d.slot_size, DEFAULT_SLOT_SIZE);
    let data = c.parse_or(&d.data_size, DEFAULT_DATA_SIZE);
    let mut ok = true;
    for (value, raw, min, what) in [
        (slot, &d.slot_size, MIN_SLOT_SIZE, "slot_size"),
        (data, &d.data_size, MIN_DATA_SIZE, "data_size"),
    ] {
        let (Some(v), Some(raw)) = (value, raw) else {
            continue;
        };
        if v < min {
            ok = false;
            c.report(
                &raw.span(),
                Problem::new(format!("{what} {v} is too small"))
                    .expected(format!("at least {min}"))
                    .hint(format!("did you mean \"{min}\"?")),
            );
        } else if v.bytes() % DISK_ALIGN.bytes() != 0 {
            ok = false;
            let up = ByteSize(
                v.bytes()
                    .div_ceil(DISK_ALIGN.bytes())
                    .saturating_mul(DISK_ALIGN.bytes()),
            );
            c.report(
                &raw.span(),
                Problem::new(format!("{what} {v} is not a whole number of MiB"))
                    .expected("a size in whole MiB, so partitions stay aligned")
                    .hint(format!("did you mean \"{up}\"?")),
            );
        }
    }
    ok.then_some(())?;
    Some(Disk {
        slot_size: slot?,
        data_size: data?,
    })
}

fn network(c: &mut Checker<'_>, n: &RawNetwork) -> Option<Network> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Dhcp,
        Static,
    }
    let mode = match &n.mode {
        Some(m) => c.choice(
            m,
            "network mode",
            &[("dhcp", Mode::Dhcp), ("static", Mode::Static)],
        ),
        None => Some(Mode::Dhcp),
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
        Some(Mode::Dhcp) => {
            for (raw, key) in [(&n.address, "address"), (&n.gateway, "gateway")] {
                if let Some(raw) = raw {
                    c.report(
                        &raw.span(),
                        Problem::new(format!("`{key}` is only used with a static address"))
                            .expected("no `address` or `gateway` with mode = \"dhcp\"")
                            .hint("set mode = \"static\", or remove this key"),
                    );
                }
            }
            (n.address.is_none() && n.gateway.is_none()).then_some(NetworkMode::Dhcp)
        }
        Some(Mode::Static) => match (&address, &n.address) {
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
                            .hint("add address (and gateway) or use mode = \"dhcp\""),
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
        None => Some(crate::net::default_interfaces()),
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

fn task(c: &mut Checker<'_>, t: &Spanned<RawTask>) -> (Option<Task>, TaskFacts) {
    let r = t.get_ref();
    let name: Option<TaskName> = c.parse(&r.name);
    let package = c.check(&r.package, |v| check_package_name(v).map(|()| v.to_owned()));
    let binary = match (&r.binary, &package) {
        (Some(b), _) => c.parse(b),
        (None, Some(p)) => BinaryName::from_str(p).ok(),
        (None, None) => None,
    };
    let args = c.list(&r.args, |v| no_nul("argument", v).map(|()| v.to_owned()));
    let env = env(c, r.env.as_ref());
    let memory: Option<ByteSize> = c.parse(&r.memory);
    let memory = memory.filter(|m| {
        let ok = *m >= MIN_TASK_MEMORY;
        if !ok {
            c.report(
                &r.memory.span(),
                Problem::new(format!("memory budget {m} is too small"))
                    .expected(format!("at least {MIN_TASK_MEMORY}"))
                    .hint(format!("did you mean \"{MIN_TASK_MEMORY}\"?")),
            );
        }
        ok
    });
    let cpu: Option<CpuShare> = c.parse(&r.cpu);
    let pids = match &r.pids {
        Some(p) => c.int_in(p, "pids budget", 1, i64::from(MAX_PIDS)),
        None => Some(DEFAULT_PIDS),
    };
    let restart = r
        .restart
        .as_ref()
        .map_or(Some(Restart::default()), |s| restart(c, s));
    let readiness = r
        .readiness
        .as_ref()
        .map_or(Some(Readiness::default()), |s| readiness(c, s));
    let files = match &r.files {
        Some(f) => {
            let read = c.list(&f.read, str::parse);
            let write = c.list(&f.write, str::parse);
            read.zip(write)
                .map(|(read, write)| FileAccess { read, write })
        }
        None => Some(FileAccess::default()),
    };
    let devices = c.list(&r.devices, |v| {
        let p: AbsPath = v.parse()?;
        if !v.starts_with("/dev/") {
            return Err(Problem::new(format!("device path {v:?} is not under /dev"))
                .expected("a device node such as \"/dev/i2c-1\"")
                .hint("files go in `files = { read = [...], write = [...] }`"));
        }
        Ok(p)
    });
    let syscalls = r
        .syscalls
        .as_ref()
        .map_or(Some(Syscalls::default()), |s| syscalls(c, s));
    let network = match &r.network {
        Some(n) => c.choice(
            n,
            "network access",
            &[
                ("none", NetworkAccess::None),
                ("allowlist", NetworkAccess::Allowlist),
            ],
        ),
        None => Some(NetworkAccess::None),
    };
    if network == Some(NetworkAccess::None) {
        let shown = name
            .as_ref()
            .map_or_else(|| r.name.get_ref().clone(), |n| n.to_string());
        if let Some(e) = r.egress.first() {
            c.report(
                &e.span(),
                Problem::new(format!("task \"{shown}\" has egress rules but no network"))
                    .expected("network = \"allowlist\" in a task with [[task.egress]]")
                    .hint("add network = \"allowlist\" to this task, or remove its egress rules"),
            );
        }
        if let Some(l) = r.listen.first() {
            c.report(
                &l.span(),
                Problem::new(format!("task \"{shown}\" has listen rules but no network"))
                    .expected("network = \"allowlist\" in a task with [[task.listen]]")
                    .hint("add network = \"allowlist\" to this task, or remove its listen rules"),
            );
        }
    }
    let egress: Option<Vec<EgressRule>> = r
        .egress
        .iter()
        .map(|e| egress(c, e.get_ref()))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let listen: Option<Vec<ListenRule>> = r
        .listen
        .iter()
        .map(|l| listen(c, l.get_ref()))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let tmp = match &r.tmp {
        Some(s) => c.parse::<ByteSize>(s).and_then(|size| {
            // tmpfs pages are charged to the memory cgroup of the task that writes them, so a
            // /tmp larger than the budget could never be filled, and one that fills it starves
            // the task: say so now rather than at run time.
            if size.bytes() == 0 {
                c.report(
                    &s.span(),
                    Problem::new("tmp size cannot be zero")
                        .expected("a size above zero, or no `tmp` key for no /tmp"),
                );
                None
            } else if memory.is_some_and(|m| size >= m) {
                let m = memory.unwrap_or(size);
                c.report(
                    &s.span(),
                    Problem::new(format!(
                        "tmp size {size} does not fit in the task's memory budget {m}"
                    ))
                    .expected("a /tmp smaller than `memory`; tmpfs pages count against it"),
                );
                None
            } else {
                Some(Some(size))
            }
        }),
        None => Some(None),
    };
    let facts = TaskFacts {
        name: name.clone().map(|n| (n, r.name.span())),
        memory: memory.map(|m| (m, r.memory.span())),
        cpu: cpu.map(|m| (m, r.cpu.span())),
    };
    let egress_ok =
        network != Some(NetworkAccess::None) || (r.egress.is_empty() && r.listen.is_empty());
    let task = (|| {
        egress_ok.then_some(())?;
        Some(Task {
            name: name?,
            package: package?,
            binary: binary?,
            args: args?,
            env: env?,
            memory: memory?,
            cpu: cpu?,
            pids: pids?,
            restart: restart?,
            readiness: readiness?,
            files: files?,
            devices: devices?,
            syscalls: syscalls?,
            network: network?,
            egress: egress?,
            listen: listen?,
            tmp: tmp?,
        })
    })();
    (task, facts)
}

fn no_nul(what: &str, v: &str) -> Result<(), Problem> {
    if v.contains('\0') {
        return Err(Problem::new(format!("{what} contains a NUL character"))
            .expected("text without \\u0000; the kernel cuts strings at NUL"));
    }
    Ok(())
}

fn env(
    c: &mut Checker<'_>,
    env: Option<&BTreeMap<Spanned<String>, Spanned<String>>>,
) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in env.into_iter().flatten() {
        let key = c.check(k, |key| {
            let mut chars = key.chars();
            let valid = chars
                .next()
                .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
                && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if valid {
                Ok(key.to_owned())
            } else {
                let fixed: String = key
                    .chars()
                    .map(|ch| {
                        if ch == '-' || ch == '.' || ch == ' ' {
                            '_'
                        } else {
                            ch.to_ascii_uppercase()
                        }
                    })
                    .collect();
                let fixed_ok = fixed
                    .chars()
                    .next()
                    .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
                    && fixed
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
                Err(
                    Problem::new(format!("invalid environment variable name {key:?}"))
                        .expected("a letter or '_', then letters, digits or '_'")
                        .maybe_hint(fixed_ok.then(|| format!("did you mean \"{fixed}\"?"))),
                )
            }
        });
        let value = c.check(v, |val| {
            no_nul("environment value", val).map(|()| val.to_owned())
        });
        match (key, value) {
            (Some(k), Some(v)) => {
                out.insert(k, v);
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

const RESTART_POLICIES: [(&str, RestartPolicy); 3] = [
    ("always", RestartPolicy::Always),
    ("on-failure", RestartPolicy::OnFailure),
    ("never", RestartPolicy::Never),
];

fn restart(c: &mut Checker<'_>, s: &Spanned<StrOr<RawRestart>>) -> Option<Restart> {
    match s.get_ref() {
        StrOr::Str(v) => {
            let policy = c.choice(
                &Spanned::new(s.span(), v.clone()),
                "restart policy",
                &RESTART_POLICIES,
            )?;
            Some(Restart {
                policy,
                ..Restart::default()
            })
        }
        StrOr::Table(t) => {
            let policy = match &t.policy {
                Some(p) => c.choice(p, "restart policy", &RESTART_POLICIES),
                None => Some(RestartPolicy::Always),
            };
            let initial = t
                .backoff_initial
                .as_ref()
                .map_or(Some(DEFAULT_BACKOFF_INITIAL), |d| {
                    c.positive_duration(d, "backoff_initial")
                });
            let max = t
                .backoff_max
                .as_ref()
                .map_or(Some(DEFAULT_BACKOFF_MAX), |d| {
                    c.positive_duration(d, "backoff_max")
                });
            let limit = match &t.crash_loop_limit {
                Some(n) => c.int_in(n, "crash_loop_limit", 1, MAX_CRASH_LOOP_LIMIT),
                None => Some(DEFAULT_CRASH_LOOP_LIMIT),
            };
            if let (Some(i), Some(m)) = (initial, max) {
                if i > m {
                    let span = t
                        .backoff_initial
                        .as_ref()
                        .or(t.backoff_max.as_ref())
                        .map_or(s.span(), Spanned::span);
                    c.report(
                        &span,
                        Problem::new(format!(
                            "backoff_initial {i} is longer than backoff_max {m}"
                        ))
                        .expected("backoff_initial <= backoff_max"),
                    );
                    return None;
                }
            }
            Some(Restart {
                policy: policy?,
                backoff_initial: initial?,
                backoff_max: max?,
                crash_loop_limit: limit?,
            })
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Started,
    Notify,
}
const READINESS: [(&str, Kind); 2] = [("started", Kind::Started), ("notify", Kind::Notify)];

fn readiness(c: &mut Checker<'_>, s: &Spanned<StrOr<RawReadiness>>) -> Option<Readiness> {
    match s.get_ref() {
        StrOr::Str(v) => {
            match c.choice(&Spanned::new(s.span(), v.clone()), "readiness", &READINESS)? {
                Kind::Started => Some(Readiness::Started),
                Kind::Notify => Some(Readiness::Notify {
                    timeout: DEFAULT_NOTIFY_TIMEOUT,
                }),
            }
        }
        StrOr::Table(t) => match c.choice(&t.kind, "readiness", &READINESS)? {
            Kind::Started => {
                if let Some(to) = &t.timeout {
                    c.report(
                        &to.span(),
                        Problem::new("`timeout` only applies to kind = \"notify\"")
                            .expected("no timeout with kind = \"started\"")
                            .hint("remove timeout, or set kind = \"notify\""),
                    );
                    return None;
                }
                Some(Readiness::Started)
            }
            Kind::Notify => {
                let timeout = t
                    .timeout
                    .as_ref()
                    .map_or(Some(DEFAULT_NOTIFY_TIMEOUT), |d| {
                        c.positive_duration(d, "readiness timeout")
                    })?;
                Some(Readiness::Notify { timeout })
            }
        },
    }
}

const PROFILES: [(&str, SyscallProfile); 2] = [
    ("minimal", SyscallProfile::Minimal),
    ("network", SyscallProfile::Network),
];

fn syscalls(c: &mut Checker<'_>, s: &Spanned<StrOr<RawSyscalls>>) -> Option<Syscalls> {
    match s.get_ref() {
        StrOr::Str(v) => {
            let profile = c.choice(
                &Spanned::new(s.span(), v.clone()),
                "syscall profile",
                &PROFILES,
            )?;
            Some(Syscalls {
                profile,
                allow: Vec::new(),
            })
        }
        StrOr::Table(t) => {
            let profile = t
                .profile
                .as_ref()
                .map_or(Some(SyscallProfile::Minimal), |p| {
                    c.choice(p, "syscall profile", &PROFILES)
                });
            let allow = c.list(&t.allow, str::parse);
            Some(Syscalls {
                profile: profile?,
                allow: allow?,
            })
        }
    }
}

const PROTOS: [(&str, Proto); 2] = [("tcp", Proto::Tcp), ("udp", Proto::Udp)];

fn egress(c: &mut Checker<'_>, e: &RawEgress) -> Option<EgressRule> {
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
    let proto = e
        .proto
        .as_ref()
        .map_or(Some(Proto::Tcp), |p| c.choice(p, "protocol", &PROTOS));
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

fn listen(c: &mut Checker<'_>, l: &RawListen) -> Option<ListenRule> {
    let n = *l.port.get_ref();
    let port = match port_number(n, &n.to_string()) {
        Ok(p) => Some(p),
        Err(p) => {
            c.report(&l.port.span(), p);
            None
        }
    };
    let proto = l
        .proto
        .as_ref()
        .map_or(Some(Proto::Tcp), |p| c.choice(p, "protocol", &PROTOS));
    let scope = l.scope.as_ref().map_or(Some(Scope::Lan), |s| {
        c.choice(
            s,
            "listen scope",
            &[("lan", Scope::Lan), ("any", Scope::Any)],
        )
    });
    Some(ListenRule {
        port: port?,
        proto: proto?,
        scope: scope?,
    })
}

/// Duplicate names and budgets that cannot fit.
fn cross_check_tasks(
    c: &mut Checker<'_>,
    raw: &RawManifest,
    device: Option<&Device>,
    facts: &[TaskFacts],
) {
    let mut seen: BTreeMap<&TaskName, &Range<usize>> = BTreeMap::new();
    for (name, span) in facts.iter().filter_map(|f| f.name.as_ref()) {
        if let Some(first) = seen.get(name) {
            let (line, _) = c.loc.line_column(first.start);
            c.report(
                span,
                Problem::new(format!("duplicate task name \"{name}\""))
                    .expected("each task name once")
                    .hint(format!("\"{name}\" is first declared on line {line}")),
            );
        } else {
            seen.insert(name, span);
        }
    }
    let memory = device
        .map(|d| d.memory)
        .or_else(|| raw.device.memory.is_none().then_some(DEFAULT_DEVICE_MEMORY));
    if let Some(limit) = memory {
        let mut total: u64 = 0;
        let mut culprit = None;
        for (m, span) in facts.iter().filter_map(|f| f.memory.as_ref()) {
            total = total.saturating_add(m.bytes());
            if total > limit.bytes() && culprit.is_none() {
                culprit = Some(span.clone());
            }
        }
        if let Some(span) = culprit {
            let each = facts
                .iter()
                .filter_map(|f| Some(format!("{} {}", f.name.as_ref()?.0, f.memory.as_ref()?.0)))
                .collect::<Vec<_>>()
                .join(", ");
            let explicit = if raw.device.memory.is_some() {
                ""
            } else {
                " (the default)"
            };
            c.report(
                &span,
                Problem::new(format!(
                    "task memory budgets total {} but the device has {limit}{explicit}",
                    ByteSize(total)
                ))
                .expected("the sum of every task's memory to fit in [device] memory")
                .hint(format!("raise [device] memory or lower a budget: {each}")),
            );
        }
    }
    let cpus = device
        .map(|d| d.cpus)
        .or_else(|| raw.device.cpus.is_none().then_some(DEFAULT_CPUS));
    if let Some(cpus) = cpus {
        let limit = u64::from(cpus) * 100;
        let mut total: u64 = 0;
        let mut culprit = None;
        for (share, span) in facts.iter().filter_map(|f| f.cpu.as_ref()) {
            total = total.saturating_add(u64::from(share.percent()));
            if total > limit && culprit.is_none() {
                culprit = Some(span.clone());
            }
        }
        if let Some(span) = culprit {
            let each = facts
                .iter()
                .filter_map(|f| Some(format!("{} {}", f.name.as_ref()?.0, f.cpu.as_ref()?.0)))
                .collect::<Vec<_>>()
                .join(", ");
            let plural = if cpus == 1 { "" } else { "s" };
            c.report(
                &span,
                Problem::new(format!("task CPU shares total {total}% but the device has {cpus} CPU{plural} ({limit}%)"))
                    .expected("the sum of every task's cpu to fit in [device] cpus * 100%")
                    .hint(format!("raise [device] cpus or lower a share: {each}")),
            );
        }
    }
}

fn update(c: &mut Checker<'_>, u: &RawUpdate) -> Option<Update> {
    let repository = c.parse(&u.repository);
    let poll = match &u.poll {
        Some(p) => c.parse::<Duration>(p).and_then(|d| {
            if d < MIN_POLL {
                c.report(&p.span(), Problem::new(format!("poll interval {d} is too short")).expected(format!("at least {MIN_POLL}")).hint("devices of a fleet poll together; a short interval loads the repository for nothing"));
                None
            } else {
                Some(d)
            }
        }),
        None => Some(DEFAULT_POLL),
    };
    let mut keys = Vec::new();
    let mut ok = true;
    for k in u.keys.get_ref() {
        let parsed = match k.get_ref() {
            RawKeyRef::File(f) => file_path("key file", f).map(KeyRef::File),
            RawKeyRef::Id(id) => id.parse().map(KeyRef::Id),
        };
        match parsed {
            Ok(key) if keys.contains(&key) => {
                ok = false;
                c.report(
                    &k.span(),
                    Problem::new("duplicate key")
                        .expected("each key once")
                        .hint("a key listed twice would count twice towards a signature threshold"),
                );
            }
            Ok(key) => keys.push(key),
            Err(p) => {
                ok = false;
                c.report(&k.span(), p);
            }
        }
    }
    if u.keys.get_ref().is_empty() {
        ok = false;
        c.report(&u.keys.span(), Problem::new("no update keys listed").expected("at least one key: { file = \"keys/root.pub\" } or { id = \"<64 hex digits>\" }").hint("without a trusted key the device cannot accept any update"));
    }
    let health = match &u.health {
        Some(h) => c.parse::<Duration>(h).and_then(|d| {
            if d < MIN_HEALTH {
                c.report(&h.span(), Problem::new(format!("health period {d} is too short")).expected(format!("at least {MIN_HEALTH}")).hint("a try is committed only after every task stayed up this long; a crash a moment later would go unseen"));
                None
            } else {
                Some(d)
            }
        }),
        None => Some(DEFAULT_HEALTH),
    };
    let health_timeout = match &u.health_timeout {
        Some(t) => c.parse::<Duration>(t).and_then(|d| match health {
            Some(h) if d <= h => {
                c.report(
                    &t.span(),
                    Problem::new(format!(
                        "health_timeout {d} is not longer than the health period {h}"
                    ))
                    .expected("a timeout well above `health`, e.g. 10m")
                    .hint(
                        "a try could never become healthy in time and every update would roll back",
                    ),
                );
                None
            }
            _ => Some(d),
        }),
        None => match health {
            Some(h) if h >= DEFAULT_HEALTH_TIMEOUT => {
                c.report(&u.repository.span(), Problem::new(format!("health period {h} needs a longer health_timeout than the default {DEFAULT_HEALTH_TIMEOUT}")).expected("`health_timeout` set above `health`").hint("add health_timeout = \"...\" to [update]"));
                None
            }
            _ => Some(DEFAULT_HEALTH_TIMEOUT),
        },
    };
    let try_boots = match &u.try_boots {
        Some(n) => c.int_in(n, "try_boots", 1, i64::from(MAX_TRY_BOOTS)),
        None => Some(DEFAULT_TRY_BOOTS),
    };
    let root = match &u.root {
        Some(r) => match file_path("root metadata", r.get_ref()) {
            Ok(p) => Some(Some(p)),
            Err(p) => {
                c.report(&r.span(), p);
                None
            }
        },
        None => Some(None),
    };
    let reboot_window = match &u.reboot_window {
        Some(w) if reboot_window_ok(w.get_ref()) => Some(Some(w.get_ref().clone())),
        Some(w) => {
            c.report(
                &w.span(),
                Problem::new(format!("invalid reboot window {:?}", w.get_ref()))
                    .expected("HH:MM-HH:MM in UTC, e.g. \"03:00-05:00\" (two different times)")
                    .hint("the device reboots into a staged update only inside this window"),
            );
            None
        }
        None => Some(None),
    };
    ok.then_some(())?;
    Some(Update {
        repository: repository?,
        poll: poll?,
        keys,
        root: root?,
        reboot_window: reboot_window?,
        health: health?,
        health_timeout: health_timeout?,
        try_boots: try_boots?,
    })
}

fn lifecycle(
    c: &mut Checker<'_>,
    l: &RawLifecycle,
    raw: &RawManifest,
    facts: &[TaskFacts],
    update: Option<&Update>,
) -> Option<Lifecycle> {
    let span = l.support_until.span();
    let date = match l.support_until.get_ref() {
        toml::Value::String(s) => match s.parse::<Date>() {
            Ok(d) => Some(d),
            Err(p) => {
                c.report(&span, p);
                None
            }
        },
        toml::Value::Datetime(dt) => match (&dt.date, &dt.time, &dt.offset) {
            (Some(d), None, None) => match Date::from_ymd(d.year, d.month, d.day) {
                Ok(d) => Some(d),
                Err(p) => {
                    c.report(&span, p);
                    None
                }
            },
            _ => {
                c.report(
                    &span,
                    Problem::new(format!("invalid date {dt}"))
                        .expected("a date without a time, YYYY-MM-DD"),
                );
                None
            }
        },
        other => {
            c.report(
                &span,
                Problem::new(format!("invalid date {other}"))
                    .expected("a date, YYYY-MM-DD, e.g. \"2032-01-01\""),
            );
            None
        }
    };
    let freshness = match &l.freshness {
        Some(f) => c.positive_duration(f, "freshness").and_then(|d| {
            match (&raw.update, update) {
                (None, _) => {
                    c.report(&f.span(), Problem::new("freshness needs an [update] section").expected("[update] with a repository whose metadata stays fresh").hint("without updates no fresh metadata ever arrives and the device would go into island mode at once; remove freshness or add [update]"));
                    None
                }
                (Some(_), Some(u)) if d <= u.poll => {
                    c.report(&f.span(), Problem::new(format!("freshness {d} is not longer than the update poll interval {}", u.poll)).expected("freshness well above [update] poll, e.g. several days").hint("a device would go into island mode between two polls"));
                    None
                }
                _ => Some(Some(d)),
            }
        }),
        None => Some(None),
    };
    let island = match &l.island {
        Some(i) => {
            let known: Vec<&str> = facts
                .iter()
                .filter_map(|f| f.name.as_ref())
                .map(|(n, _)| n.as_str())
                .collect();
            let keep = c.list(&i.keep, |v| {
                let name: TaskName = v.parse()?;
                let all_named = facts.iter().all(|f| f.name.is_some());
                if !known.contains(&name.as_str()) && all_named {
                    let list = known
                        .iter()
                        .map(|n| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(
                        Problem::new(format!("unknown task \"{name}\" in island.keep"))
                            .expected(format!("the name of a [[task]]: {list}"))
                            .maybe_hint(
                                did_you_mean(v, known.iter().copied())
                                    .map(|n| format!("did you mean \"{n}\"?")),
                            ),
                    );
                }
                Ok(name)
            });
            let lan = match &i.lan {
                Some(b) if *b.get_ref() => IslandLan::Allowed,
                _ => IslandLan::Blocked,
            };
            keep.map(|keep| Island { keep, lan })
        }
        None => Some(Island::default()),
    };
    Some(Lifecycle {
        support_until: date?,
        freshness: freshness?,
        island: island?,
    })
}

/// IPv6 is refused where the manifest names addresses: the device's ruleset drops every
/// IPv6 packet (limpet-net enforces IPv4 only), so such a rule could never work.
pub(crate) fn ipv6_problem(what: &str, v: &str) -> Problem {
    Problem::new(format!("IPv6 {what} {v:?} is not supported"))
        .expected("an IPv4 address")
        .hint("the device drops all IPv6 traffic; its network policy is IPv4 only for now")
}

/// `HH:MM-HH:MM` with two different valid times (the agent's `--reboot-window`).
fn reboot_window_ok(w: &str) -> bool {
    let time = |t: &str| {
        let b = t.as_bytes();
        t.len() == 5
            && b.get(2) == Some(&b':')
            && t.get(..2)
                .and_then(|h| h.parse::<u8>().ok())
                .is_some_and(|h| h < 24)
            && t.get(3..)
                .and_then(|m| m.parse::<u8>().ok())
                .is_some_and(|m| m < 60)
    };
    w.split_once('-')
        .is_some_and(|(a, b)| time(a) && time(b) && a != b)
}
