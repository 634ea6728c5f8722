//! `[[task]]`: one supervised process and its sandbox; the types and their checks.
//!
//! Submodules: [`supervision`] (restart and readiness, what PID 1 does with the process) and
//! [`net`] (the task's network access, egress and listen rules).
//!
//! Rules this module keeps:
//! - A task declares everything it may use: memory, CPU, processes, files, devices, system
//!   calls, network. Whatever is not declared is denied by the sandbox and the network
//!   policy built from these values.
//! - Defaults are the most restrictive value that still runs a task: no network, the
//!   `minimal` system call profile, no files, no devices.
//! - A budget that cannot work is refused here, not at run time: memory below the kernel's
//!   own per-process need, a `/tmp` that does not fit in the memory budget.

pub(crate) mod net;
pub(crate) mod supervision;

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Serialize;
use toml::Spanned;

use crate::diag::Problem;
use crate::keyword::{keywords, Keyword};
use crate::names::{check_package_name, AbsPath, BinaryName, SyscallName, TaskName};
use crate::raw::{RawSyscalls, RawTask, StrOr};
use crate::units::{ByteSize, CpuShare};
use crate::validate::{Checker, TaskFacts};
use net::{EgressRule, ListenRule, NetworkAccess};
use supervision::{Readiness, Restart};

/// Smallest task memory budget: below this the kernel's own per-process memory (page
/// tables, stack, the binary's pages) cannot fit, so the task would be killed at start.
pub const MIN_TASK_MEMORY: ByteSize = ByteSize::mib(1);
/// Default process budget of a task (`pids`).
pub const DEFAULT_PIDS: u32 = 16;
/// Most processes a task may declare; a bound that keeps fork bombs small.
pub const MAX_PIDS: u32 = 4096;

/// One supervised process: `[[task]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    /// Unique name, `[a-z][a-z0-9-]{0,31}`.
    pub name: TaskName,
    /// The cargo package that builds the task's binary.
    pub package: String,
    /// The binary target in that package (default: the package name).
    pub binary: BinaryName,
    /// Command-line arguments after the program name.
    pub args: Vec<String>,
    /// Environment variables; the task sees only these.
    pub env: BTreeMap<String, String>,
    /// Memory budget (cgroup `memory.max`); all tasks' budgets must fit in the device's memory.
    pub memory: ByteSize,
    /// CPU budget in percent of one CPU (cgroup `cpu.max`); all shares must fit in `cpus * 100%`.
    pub cpu: CpuShare,
    /// Process and thread budget (cgroup `pids.max`, default 16).
    pub pids: u32,
    /// What the supervisor does when the task exits.
    pub restart: Restart,
    /// When the task counts as up, for boot health and update commit.
    pub readiness: Readiness,
    /// Files and directories the task may read or write (Landlock).
    pub files: FileAccess,
    /// Device nodes the task may open, all under `/dev`.
    pub devices: Vec<AbsPath>,
    /// System calls the task may make (seccomp).
    pub syscalls: Syscalls,
    /// Whether the task has network at all (default `none`).
    pub network: NetworkAccess,
    /// Destinations the task may reach; needs `network = "allowlist"`.
    pub egress: Vec<EgressRule>,
    /// Ports the task listens on; needs `network = "allowlist"`.
    pub listen: Vec<ListenRule>,
    /// Size of a private, `noexec` tmpfs on `/tmp`, if the task wants one; counts against
    /// its memory budget.
    pub tmp: Option<ByteSize>,
    /// Requests to PID 1 beyond its own sandbox the task may make (default none).
    pub rights: Vec<Right>,
}

/// A request to PID 1 a task may make when the manifest grants it: `rights = [...]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Right {
    /// Ask the boot loader to enter or leave owner mode at the next boot, which a person
    /// at the device must confirm (docs/owner-mode.md).
    OwnerRequest,
}

keywords!(Right, "right", {
    OwnerRequest => "owner-request",
});

/// Filesystem access beyond the read-only code slot: `files = { read = [...], write = [...] }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FileAccess {
    /// Paths the task may read (recursively for directories).
    pub read: Vec<AbsPath>,
    /// Paths the task may read and write (recursively for directories); they live on the
    /// `noexec` data partition.
    pub write: Vec<AbsPath>,
}

/// Allowed system calls: a profile plus named additions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Syscalls {
    /// The base set (default `minimal`).
    pub profile: SyscallProfile,
    /// Extra system calls on top of the profile.
    pub allow: Vec<SyscallName>,
}

/// A base set of system calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SyscallProfile {
    /// Memory, files already granted, time, signals, exit: what a computing task needs.
    #[default]
    Minimal,
    /// `minimal` plus sockets (socket, connect, bind, listen, accept, send/recv, poll).
    Network,
}

keywords!(SyscallProfile, "syscall profile", {
    Minimal => "minimal",
    Network => "network",
});

/// Checks one `[[task]]`; the facts the cross-checks need come back even when the task
/// failed.
pub(crate) fn check(c: &mut Checker<'_>, t: &Spanned<RawTask>) -> (Option<Task>, TaskFacts) {
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
    let restart = r.restart.as_ref().map_or(Some(Restart::default()), |s| {
        supervision::check_restart(c, s)
    });
    let readiness = r
        .readiness
        .as_ref()
        .map_or(Some(Readiness::default()), |s| {
            supervision::check_readiness(c, s)
        });
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
        .map_or(Some(Syscalls::default()), |s| check_syscalls(c, s));
    let network = match &r.network {
        Some(n) => c.keyword(n),
        None => Some(NetworkAccess::None),
    };
    if network == Some(NetworkAccess::None) {
        let allowlist = NetworkAccess::Allowlist;
        let shown = name
            .as_ref()
            .map_or_else(|| r.name.get_ref().clone(), |n| n.to_string());
        if let Some(e) = r.egress.first() {
            c.report(
                &e.span(),
                Problem::new(format!("task \"{shown}\" has egress rules but no network"))
                    .expected(format!(
                        "network = \"{allowlist}\" in a task with [[task.egress]]"
                    ))
                    .hint(format!(
                        "add network = \"{allowlist}\" to this task, or remove its egress rules"
                    )),
            );
        }
        if let Some(l) = r.listen.first() {
            c.report(
                &l.span(),
                Problem::new(format!("task \"{shown}\" has listen rules but no network"))
                    .expected(format!(
                        "network = \"{allowlist}\" in a task with [[task.listen]]"
                    ))
                    .hint(format!(
                        "add network = \"{allowlist}\" to this task, or remove its listen rules"
                    )),
            );
        }
    }
    let egress: Option<Vec<EgressRule>> = r
        .egress
        .iter()
        .map(|e| net::egress(c, e.get_ref()))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let listen: Option<Vec<ListenRule>> = r
        .listen
        .iter()
        .map(|l| net::listen(c, l.get_ref()))
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
    let rights = c.list(&r.rights, Right::parse_keyword).map(|mut v| {
        v.sort();
        v.dedup();
        v
    });
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
            rights: rights?,
        })
    })();
    (task, facts)
}

/// Text the kernel would cut short: refused.
fn no_nul(what: &str, v: &str) -> Result<(), Problem> {
    if v.contains('\0') {
        return Err(Problem::new(format!("{what} contains a NUL character"))
            .expected("text without \\u0000; the kernel cuts strings at NUL"));
    }
    Ok(())
}

/// Checks `env`: POSIX-style names, values without NUL.
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

/// Checks `syscalls`: a profile word, or a table with the profile and additions.
fn check_syscalls(c: &mut Checker<'_>, s: &Spanned<StrOr<RawSyscalls>>) -> Option<Syscalls> {
    c.str_or_table(
        s,
        |c, word| {
            Some(Syscalls {
                profile: c.keyword(word)?,
                allow: Vec::new(),
            })
        },
        |c, t| {
            let profile = t
                .profile
                .as_ref()
                .map_or(Some(SyscallProfile::Minimal), |p| c.keyword(p));
            let allow = c.list(&t.allow, str::parse);
            Some(Syscalls {
                profile: profile?,
                allow: allow?,
            })
        },
    )
}
