//! Seccomp: building a task's filter on the build host. The device installs it with
//! `limpet_sandbox::seccomp::apply`.
//!
//! Rules this module keeps:
//! - A filter is an allowlist: the task's profile (`minimal`, or `network` on top of it),
//!   the readiness socket calls for a `notify` task, and the calls its manifest names in
//!   `syscalls.allow`. Any other call kills the whole task (SECCOMP_RET_KILL_PROCESS, seen
//!   by the supervisor as SIGSYS), as does any call from another ABI (i386, x32).
//! - Some calls are never allowed, whatever the manifest says; naming one is a build error
//!   that names the task and the call ([`profile`]'s `NEVER` list gives each reason).
//! - Inside allowed calls, argument rules refuse what the sandbox forbids with an errno, not
//!   a kill, where a clear failure serves the task better: no executable memory (EACCES, the
//!   in-filter equivalent of PR_SET_MDWE), no new processes or namespaces through `clone`
//!   (EPERM), no `clone3` (ENOSYS, so callers fall back to `clone`), no socket family beyond
//!   the profile's (EAFNOSUPPORT) and no raw or packet socket (EPERM).
//! - One program per task and architecture, deterministic for one input: the allowlist
//!   filter first, then one filter per errno, chained so that each "allow" of one filter
//!   continues into the next. The first refusal wins.
//! - Programs are stored as raw `struct sock_filter`s, 8 bytes each, little-endian
//!   (`u16 code, u8 jt, u8 jf, u32 k`): both device architectures are little-endian
//!   ([`limpet_policy::Bpf`]).

pub mod profile;
mod table;

use std::collections::BTreeMap;

use limpet_manifest::{Readiness, SyscallProfile, Target, Task};
use limpet_policy::seccomp::{BpfError, INSTRUCTION_BYTES, MAX_INSTRUCTIONS};
use limpet_policy::{Arch, Bpf};
use seccompiler::{
    sock_filter, BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp,
    SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use profile::{Allow, Args, Deny, On, Test};

// Classic BPF opcodes and the seccomp return value used when chaining filters.
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
const BPF_JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

/// The architecture of a manifest's `target`.
pub fn arch(target: Target) -> Arch {
    match target {
        Target::X86_64 => Arch::X86_64,
        Target::Aarch64 => Arch::Aarch64,
    }
}

/// The number of system call `name` on `arch`, if it has one.
pub fn syscall_number(arch: Arch, name: &str) -> Option<u32> {
    let table = match arch {
        Arch::X86_64 => table::X86_64,
        Arch::Aarch64 => table::AARCH64,
    };
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .and_then(|i| table.get(i))
        .map(|(_, nr)| u32::from(*nr))
}

fn target_arch(arch: Arch) -> TargetArch {
    match arch {
        Arch::X86_64 => TargetArch::x86_64,
        Arch::Aarch64 => TargetArch::aarch64,
    }
}

/// Errors building a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// `syscalls.allow` names a call the architecture does not have.
    #[error("task \"{task}\": system call `{syscall}` does not exist on {arch}")]
    UnknownSyscall {
        /// The task whose manifest names the call.
        task: String,
        /// The call as written in `syscalls.allow`.
        syscall: String,
        /// The device's architecture, whose table lacks the call.
        arch: Arch,
    },
    /// `syscalls.allow` names a call that is never allowed.
    #[error("task \"{task}\": system call `{syscall}` is never allowed: {reason}")]
    Forbidden {
        /// The task whose manifest names the call.
        task: String,
        /// The call as written in `syscalls.allow`.
        syscall: String,
        /// Why no task may make it (its entry in the `NEVER` list).
        reason: &'static str,
    },
    /// A built-in profile names a call missing from the architecture's table (a bug here).
    #[error("built-in profile entry `{syscall}` is missing from the {arch} system call table")]
    Table {
        /// The profile's entry.
        syscall: &'static str,
        /// The architecture whose table lacks it.
        arch: Arch,
    },
    /// seccompiler refused the rules.
    #[error("building the {arch} seccomp program for task \"{task}\"")]
    Build {
        /// The task whose filter was being built.
        task: String,
        /// The architecture it was built for.
        arch: Arch,
        /// seccompiler's reason.
        #[source]
        source: BackendError,
    },
    /// The chained program is longer than the kernel accepts.
    #[error("the {arch} seccomp program for task \"{task}\" has {len} instructions, more than the kernel's {MAX_INSTRUCTIONS}")]
    TooLong {
        /// The task whose filter it is.
        task: String,
        /// The architecture it was built for.
        arch: Arch,
        /// Its length in instructions, all chained filters together.
        len: usize,
    },
    /// The chained program is not a valid stored program (a bug here).
    #[error("the {arch} seccomp program for task \"{task}\"")]
    Program {
        /// The task whose filter it is.
        task: String,
        /// The architecture it was built for.
        arch: Arch,
        /// Why the stored form refused it.
        #[source]
        source: BpfError,
    },
}

/// Builds the filter for `task` on `arch`: its profile, its readiness calls and its
/// `syscalls.allow`, followed by the argument rules of [`deny_rules`].
///
/// Fails when `syscalls.allow` names a call that `arch` lacks or that is never allowed, and
/// when the chained program is longer than the kernel accepts.
pub fn compile(task: &Task, arch: Arch) -> Result<Bpf, SeccompError> {
    let name = task.name.as_str();
    let allowed = allowlist(task, arch)?;
    let build_err = |source| SeccompError::Build {
        task: name.to_owned(),
        arch,
        source,
    };
    let mut programs = Vec::new();
    let filter = SeccompFilter::new(
        allowed.clone(),
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        target_arch(arch),
    )
    .map_err(build_err)?;
    programs.push(BpfProgram::try_from(filter).map_err(build_err)?);
    for (errno, rules) in refusals(task, arch, &allowed).map_err(build_err)? {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
            target_arch(arch),
        )
        .map_err(build_err)?;
        programs.push(BpfProgram::try_from(filter).map_err(build_err)?);
    }
    let len: usize = programs.iter().map(Vec::len).sum();
    let too_long = || SeccompError::TooLong {
        task: name.to_owned(),
        arch,
        len,
    };
    if len > MAX_INSTRUCTIONS {
        return Err(too_long());
    }
    let program = chain(programs).ok_or_else(too_long)?;
    Bpf::from_bytes(encode(&program)).map_err(|source| SeccompError::Program {
        task: name.to_owned(),
        arch,
        source,
    })
}

/// What a profile allows and refuses, with the reason for each entry: for `limpet inspect`
/// and the docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Allowed calls and the code path that needs each (x86_64-only calls included).
    pub allowed: Vec<(&'static str, &'static str)>,
    /// Refusals inside allowed calls: the call, the errno it returns, what it stops.
    pub refused: Vec<(&'static str, u32, &'static str)>,
    /// Calls never allowed, and why.
    pub never: Vec<(&'static str, &'static str)>,
}

/// Describes `profile` (without a task's additions).
pub fn describe(profile: SyscallProfile) -> Description {
    let mut allowed: Vec<_> = profile::MINIMAL.iter().map(|a| (a.name, a.why)).collect();
    if profile == SyscallProfile::Network {
        allowed.extend(profile::NETWORK.iter().map(|a| (a.name, a.why)));
    }
    Description {
        allowed,
        refused: deny_rules(profile)
            .iter()
            .map(|d| (d.name, d.errno, d.why))
            .collect(),
        never: profile::NEVER.to_vec(),
    }
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// Adds `new` rules for `nr`; an empty list means "any arguments" and absorbs the others.
fn merge(rules: &mut Rules, nr: i64, new: Vec<SeccompRule>) {
    match rules.get_mut(&nr) {
        None => {
            rules.insert(nr, new);
        }
        Some(existing) if existing.is_empty() => {}
        Some(existing) if new.is_empty() => existing.clear(),
        Some(existing) => existing.extend(new),
    }
}

/// The allowlist: profile entries, the readiness socket, then the manifest's additions.
fn allowlist(task: &Task, arch: Arch) -> Result<Rules, SeccompError> {
    let mut lists: Vec<&[Allow]> = vec![profile::MINIMAL];
    if task.syscalls.profile == SyscallProfile::Network {
        lists.push(profile::NETWORK);
    }
    if matches!(task.readiness, Readiness::Notify { .. }) {
        lists.push(profile::NOTIFY);
    }
    let mut rules = Rules::new();
    for entry in lists.into_iter().flatten() {
        if entry.on == On::X86_64 && arch != Arch::X86_64 {
            continue;
        }
        let nr = syscall_number(arch, entry.name).ok_or(SeccompError::Table {
            syscall: entry.name,
            arch,
        })?;
        let new = allow_rules(entry.args).map_err(|source| SeccompError::Build {
            task: task.name.to_string(),
            arch,
            source,
        })?;
        merge(&mut rules, i64::from(nr), new);
    }
    for name in &task.syscalls.allow {
        let name = name.as_str();
        if let Some((_, reason)) = profile::NEVER.iter().find(|(n, _)| *n == name) {
            return Err(SeccompError::Forbidden {
                task: task.name.to_string(),
                syscall: name.to_owned(),
                reason,
            });
        }
        let nr = syscall_number(arch, name).ok_or_else(|| SeccompError::UnknownSyscall {
            task: task.name.to_string(),
            syscall: name.to_owned(),
            arch,
        })?;
        // Named in the manifest: any arguments (e.g. every ioctl a device driver takes).
        merge(&mut rules, i64::from(nr), Vec::new());
    }
    Ok(rules)
}

fn allow_rules(args: Args) -> Result<Vec<SeccompRule>, BackendError> {
    match args {
        Args::Any => Ok(Vec::new()),
        Args::OneOf { arg, values } => values
            .iter()
            .map(|&v| {
                let c = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v)?;
                SeccompRule::new(vec![c])
            })
            .collect(),
        Args::Null { arg } => {
            let c = SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, 0)?;
            Ok(vec![SeccompRule::new(vec![c])?])
        }
    }
}

/// Every refusal for a task of `profile`. Filters are built per errno in the order each
/// errno first appears here, so when two refusals match one call the earlier one answers:
/// the socket family first (a netlink socket is "family not supported", not "raw").
pub fn deny_rules(profile: SyscallProfile) -> Vec<Deny> {
    let mut rules = profile::socket_family_rules(match profile {
        SyscallProfile::Network => profile::NETWORK_FAMILIES,
        SyscallProfile::Minimal => profile::LOCAL_FAMILIES,
    });
    rules.extend(profile::WRITE_XOR_EXECUTE);
    rules.extend(profile::clone_rules());
    rules.extend(profile::socket_type_rules());
    rules.push(profile::CLONE3);
    rules
}

/// The refusals that apply to allowed calls, grouped by errno in [`deny_rules`] order.
fn refusals(task: &Task, arch: Arch, allowed: &Rules) -> Result<Vec<(u32, Rules)>, BackendError> {
    let mut by_errno: Vec<(u32, Rules)> = Vec::new();
    for deny in deny_rules(task.syscalls.profile) {
        let Some(nr) = syscall_number(arch, deny.name).map(i64::from) else {
            continue; // e.g. no such call on this architecture
        };
        if !allowed.contains_key(&nr) {
            continue; // already killed by the allowlist
        }
        let rule = match deny.test {
            Test::Always => Vec::new(),
            Test::Masked { arg, mask, value } => {
                vec![SeccompRule::new(vec![SeccompCondition::new(
                    arg,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::MaskedEq(mask),
                    value,
                )?])?]
            }
            Test::Masked64 { arg, mask, value } => {
                vec![SeccompRule::new(vec![SeccompCondition::new(
                    arg,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(mask),
                    value,
                )?])?]
            }
            Test::NoneOf { arg, values } => vec![SeccompRule::new(
                values
                    .iter()
                    .map(|&v| {
                        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, v)
                    })
                    .collect::<Result<_, _>>()?,
            )?],
        };
        let i = match by_errno.iter().position(|(e, _)| *e == deny.errno) {
            Some(i) => i,
            None => {
                by_errno.push((deny.errno, Rules::new()));
                by_errno.len() - 1
            }
        };
        if let Some((_, group)) = by_errno.get_mut(i) {
            merge(group, nr, rule);
        }
    }
    Ok(by_errno)
}

/// Joins filters into one program: every "allow" of a filter but the last becomes a jump to
/// the start of the next, so a call runs only if every filter allows it, and the first
/// filter that decides otherwise decides. Jumps keep every offset inside its own filter
/// valid, as each instruction stays in place. `None` if the program is too long to address.
fn chain(programs: Vec<BpfProgram>) -> Option<Vec<sock_filter>> {
    let count = programs.len();
    let mut out: Vec<sock_filter> = Vec::new();
    for (i, program) in programs.into_iter().enumerate() {
        let next = out.len().checked_add(program.len())?;
        for ins in program {
            if i + 1 < count && ins.code == BPF_RET_K && ins.k == SECCOMP_RET_ALLOW {
                let offset = next.checked_sub(out.len())?.checked_sub(1)?;
                out.push(sock_filter {
                    code: BPF_JMP_JA,
                    jt: 0,
                    jf: 0,
                    k: u32::try_from(offset).ok()?,
                });
            } else {
                out.push(ins);
            }
        }
    }
    Some(out)
}

fn encode(program: &[sock_filter]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(program.len() * INSTRUCTION_BYTES);
    for ins in program {
        bytes.extend_from_slice(&ins.code.to_le_bytes());
        bytes.push(ins.jt);
        bytes.push(ins.jf);
        bytes.extend_from_slice(&ins.k.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(toml: &str) -> Task {
        let text = format!(
            "[device]\nname = \"d\"\nversion = \"1.0.0\"\ntarget = \"x86_64\"\n\n[[task]]\n\
             name = \"t\"\npackage = \"p\"\nmemory = \"8MiB\"\ncpu = \"10%\"\n{toml}\n"
        );
        limpet_manifest::parse("limpet.toml", &text)
            .unwrap()
            .tasks
            .remove(0)
    }

    #[test]
    fn tables_are_sorted_and_unique() {
        for t in [table::X86_64, table::AARCH64] {
            assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn known_numbers() {
        assert_eq!(syscall_number(Arch::X86_64, "read"), Some(0));
        assert_eq!(syscall_number(Arch::X86_64, "socket"), Some(41));
        assert_eq!(syscall_number(Arch::Aarch64, "read"), Some(63));
        assert_eq!(syscall_number(Arch::Aarch64, "newfstatat"), Some(79));
        assert_eq!(syscall_number(Arch::Aarch64, "open"), None);
        assert_eq!(syscall_number(Arch::Aarch64, "clock_gettime64"), None);
        assert_eq!(syscall_number(Arch::X86_64, "nosuchcall"), None);
    }

    #[test]
    fn every_profile_entry_resolves_and_none_is_forbidden() {
        for arch in Arch::ALL {
            for list in [profile::MINIMAL, profile::NETWORK, profile::NOTIFY] {
                for e in list {
                    assert!(
                        !profile::NEVER.iter().any(|(n, _)| *n == e.name),
                        "{} is in a profile and in NEVER",
                        e.name
                    );
                    if e.on == On::All || arch == Arch::X86_64 {
                        assert!(
                            syscall_number(arch, e.name).is_some(),
                            "{} missing on {arch}",
                            e.name
                        );
                    }
                }
            }
            // A refusal meets a call the profiles allow, or one a manifest may add (W^X on
            // pkey_mprotect and shmat); any other would be dead code that reads like
            // protection.
            for d in deny_rules(SyscallProfile::Network) {
                if syscall_number(arch, d.name).is_none() {
                    continue;
                }
                let allowed = [profile::MINIMAL, profile::NETWORK]
                    .into_iter()
                    .flatten()
                    .any(|a| a.name == d.name && (a.on == On::All || arch == Arch::X86_64));
                assert!(
                    allowed || ["pkey_mprotect", "shmat"].contains(&d.name),
                    "{} on {arch}",
                    d.name
                );
            }
        }
        for d in deny_rules(SyscallProfile::Network) {
            assert!(Arch::ALL
                .iter()
                .any(|a| syscall_number(*a, d.name).is_some()));
        }
        // Every NEVER entry is a real call somewhere (a typo would never match).
        for (n, _) in profile::NEVER {
            assert!(
                Arch::ALL.iter().any(|a| syscall_number(*a, n).is_some()),
                "{n} is no system call"
            );
        }
    }

    #[test]
    fn profiles_compile_on_every_arch() {
        for arch in Arch::ALL {
            for t in [
                task(""),
                task("syscalls = \"network\"\nnetwork = \"allowlist\""),
                task("readiness = \"notify\"\nsyscalls = { allow = [\"ioctl\", \"flock\"] }"),
            ] {
                let bpf = compile(&t, arch).unwrap();
                assert!(bpf.len() > 100 && bpf.len() < 1000, "{}", bpf.len());
            }
        }
    }

    #[test]
    fn compile_is_deterministic() {
        let t = task("syscalls = { profile = \"network\", allow = [\"flock\"] }");
        assert_eq!(
            compile(&t, Arch::Aarch64).unwrap(),
            compile(&t, Arch::Aarch64).unwrap()
        );
    }

    #[test]
    fn unknown_and_forbidden_names_are_errors_naming_the_task() {
        let e = compile(
            &task("syscalls = { allow = [\"frobnicate\"] }"),
            Arch::X86_64,
        )
        .unwrap_err();
        assert!(
            matches!(&e, SeccompError::UnknownSyscall { task, syscall, arch: Arch::X86_64 }
                if task == "t" && syscall == "frobnicate"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "task \"t\": system call `frobnicate` does not exist on x86_64"
        );
        // Exists on x86_64 only.
        let t = task("syscalls = { allow = [\"open\"] }");
        assert!(compile(&t, Arch::X86_64).is_ok());
        assert!(matches!(
            compile(&t, Arch::Aarch64),
            Err(SeccompError::UnknownSyscall { .. })
        ));
        for bad in [
            "ptrace",
            "kexec_load",
            "setuid",
            "iopl",
            "unshare",
            "io_uring_setup",
        ] {
            let t = task(&format!("syscalls = {{ allow = [\"{bad}\"] }}"));
            for arch in Arch::ALL {
                let e = compile(&t, arch).unwrap_err();
                assert!(
                    matches!(&e, SeccompError::Forbidden { syscall, .. } if syscall == bad),
                    "{e:?}"
                );
                assert!(e.to_string().starts_with(&format!(
                    "task \"t\": system call `{bad}` is never allowed: "
                )));
            }
        }
    }

    #[test]
    fn chain_turns_allow_into_jump_to_next_filter() {
        let ret = |k| sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k,
        };
        let out = chain(vec![
            vec![ret(SECCOMP_RET_ALLOW), ret(0), ret(SECCOMP_RET_ALLOW)],
            vec![ret(SECCOMP_RET_ALLOW)],
        ])
        .unwrap();
        assert_eq!(out[0].code, BPF_JMP_JA);
        assert_eq!(out[0].k, 2);
        assert_eq!(out[1], ret(0));
        assert_eq!(out[2].code, BPF_JMP_JA);
        assert_eq!(out[2].k, 0);
        assert_eq!(out[3], ret(SECCOMP_RET_ALLOW));
    }

    #[test]
    fn program_round_trips_and_starts_with_the_arch_check() {
        let bpf = compile(&task(""), Arch::X86_64).unwrap();
        let json = serde_json::to_string(&bpf).unwrap();
        let back: Bpf = serde_json::from_str(&json).unwrap();
        assert_eq!(back, bpf);
        // The first instruction loads the architecture (seccomp_data.arch, offset 4).
        assert_eq!(&bpf.as_bytes()[..8], &[0x20, 0, 0, 0, 4, 0, 0, 0]);
    }
}
