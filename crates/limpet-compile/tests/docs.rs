//! docs/sandbox.md's seccomp tables, rendered from the lists in `seccomp::profile` (see
//! limpet-testkit's `docs` module): edit the lists, then `LIMPET_BLESS=1 cargo test`.

#![allow(clippy::unwrap_used, clippy::panic)]

use limpet_compile::seccomp::deny_rules;
use limpet_compile::seccomp::profile::{self, Allow, Args, Deny, On, Test};
use limpet_manifest::SyscallProfile;
use limpet_policy::Arch;
use limpet_testkit::docs;

fn value(v: impl TryInto<u64, Error: std::fmt::Debug>) -> u64 {
    v.try_into().unwrap()
}

/// The names of the values an argument of `call` is compared with. The values come from
/// `libc` (the build host's UAPI headers; these are the same on x86_64 and aarch64), so a
/// name here cannot stand for another value than the list's.
fn value_names(call: &str, arg: u8) -> Vec<(&'static str, u64)> {
    match (call, arg) {
        ("socket" | "socketpair", 0) => vec![
            ("AF_UNIX", value(libc::AF_UNIX)),
            ("AF_INET", value(libc::AF_INET)),
            ("AF_INET6", value(libc::AF_INET6)),
        ],
        ("socket" | "socketpair", 1) => vec![
            ("SOCK_RAW", value(libc::SOCK_RAW)),
            // Deprecated in `libc` (AF_PACKET replaced it), and still what the rule refuses.
            #[allow(deprecated)]
            ("SOCK_PACKET", value(libc::SOCK_PACKET)),
        ],
        ("mmap" | "mprotect" | "pkey_mprotect", 2) => vec![("PROT_EXEC", value(libc::PROT_EXEC))],
        ("shmat", 2) => vec![("SHM_EXEC", value(libc::SHM_EXEC))],
        ("clone", 0) => vec![
            ("CLONE_THREAD", value(libc::CLONE_THREAD)),
            ("CLONE_NEWNS", value(libc::CLONE_NEWNS)),
            ("CLONE_NEWCGROUP", value(libc::CLONE_NEWCGROUP)),
            ("CLONE_NEWUTS", value(libc::CLONE_NEWUTS)),
            ("CLONE_NEWIPC", value(libc::CLONE_NEWIPC)),
            ("CLONE_NEWUSER", value(libc::CLONE_NEWUSER)),
            ("CLONE_NEWPID", value(libc::CLONE_NEWPID)),
            ("CLONE_NEWNET", value(libc::CLONE_NEWNET)),
        ],
        ("prctl", 0) => vec![
            ("PR_SET_NAME", value(libc::PR_SET_NAME)),
            ("PR_GET_NAME", value(libc::PR_GET_NAME)),
        ],
        ("ioctl", 1) => vec![
            ("TCGETS", value(libc::TCGETS)),
            ("TIOCGWINSZ", value(libc::TIOCGWINSZ)),
            ("FIONBIO", value(libc::FIONBIO)),
            ("FIONCLEX", value(libc::FIONCLEX)),
            ("FIOCLEX", value(libc::FIOCLEX)),
        ],
        // <asm/prctl.h>, x86_64 only (not in `libc` for every build host).
        ("arch_prctl", 0) => vec![("ARCH_SET_FS", 0x1002)],
        _ => Vec::new(),
    }
}

/// `NAME` of `v` compared with argument `arg` of `call`, in backticks.
fn name_of(call: &str, arg: u8, v: u64) -> String {
    match value_names(call, arg).iter().find(|(_, n)| *n == v) {
        Some((name, _)) => format!("`{name}`"),
        None => panic!("no name for {v:#x} in argument {arg} of {call}: add it to value_names"),
    }
}

fn errno_name(errno: u32) -> &'static str {
    let known = [
        ("EPERM", libc::EPERM),
        ("EACCES", libc::EACCES),
        ("ENOSYS", libc::ENOSYS),
        ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
    ];
    match known.iter().find(|(_, e)| value(*e) == u64::from(errno)) {
        Some((name, _)) => name,
        None => panic!("no name for errno {errno}: add it to errno_name"),
    }
}

/// An allowlist as docs/sandbox.md shows it.
fn allow_table(list: &[Allow]) -> String {
    let rows = list.iter().map(|a| {
        let args = match a.args {
            Args::Any => "any".to_owned(),
            Args::OneOf { arg, values: [v] } => format!("arg {arg} = {}", name_of(a.name, arg, *v)),
            Args::OneOf { arg, values } => {
                let names: Vec<_> = values.iter().map(|v| name_of(a.name, arg, *v)).collect();
                format!("arg {arg} ∈ {{{}}}", names.join(", "))
            }
            Args::Null { arg } => format!("arg {arg} = NULL"),
        };
        let on = match a.on {
            On::All => "",
            On::X86_64 => " (x86_64 only)",
        };
        [
            format!("`{}`", a.name),
            format!("{args}{on}"),
            a.why.to_owned(),
        ]
    });
    docs::table(&["call", "arguments allowed", "needed by"], rows)
}

/// What a refusal compares, merged over the rules of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// Any of the bits set in the argument.
    AnyBit {
        arg: u8,
        names: Vec<String>,
    },
    /// None of the bits set.
    NoBit {
        arg: u8,
        names: Vec<String>,
    },
    /// The masked argument is one of the values.
    MaskedIs {
        arg: u8,
        mask: u64,
        names: Vec<String>,
    },
    /// The argument is none of the values.
    NoneOf {
        arg: u8,
        names: Vec<String>,
    },
    Always,
}

impl Condition {
    fn of(rule: &Deny) -> Condition {
        let name = |v| name_of(rule.name, arg_of(rule.test), v);
        match rule.test {
            Test::Masked { arg, mask, value } | Test::Masked64 { arg, mask, value }
                if mask == value =>
            {
                Condition::AnyBit {
                    arg,
                    names: vec![name(value)],
                }
            }
            Test::Masked64 {
                arg,
                mask,
                value: 0,
            } => Condition::NoBit {
                arg,
                names: vec![name(mask)],
            },
            Test::Masked { arg, mask, value } | Test::Masked64 { arg, mask, value } => {
                Condition::MaskedIs {
                    arg,
                    mask,
                    names: vec![name(value)],
                }
            }
            Test::NoneOf { arg, values } => Condition::NoneOf {
                arg,
                names: values.iter().map(|v| name(*v)).collect(),
            },
            Test::Always => Condition::Always,
        }
    }

    /// Adds `other`'s names when it compares the same argument the same way.
    fn merge(&mut self, other: &Condition) -> bool {
        use Condition::*;
        let (names, more) = match (self, other) {
            (
                AnyBit { arg, names },
                AnyBit {
                    arg: a,
                    names: more,
                },
            )
            | (
                NoBit { arg, names },
                NoBit {
                    arg: a,
                    names: more,
                },
            ) if arg == a => (names, more),
            (
                MaskedIs { arg, mask, names },
                MaskedIs {
                    arg: a,
                    mask: m,
                    names: more,
                },
            ) if arg == a && mask == m => (names, more),
            (
                NoneOf { arg, names },
                NoneOf {
                    arg: a,
                    names: more,
                },
            ) => return arg == a && names == more,
            (Always, Always) => return true,
            _ => return false,
        };
        for name in more {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        true
    }

    fn text(&self) -> String {
        match self {
            Condition::AnyBit { arg, names } if names.len() == 1 => {
                format!("{} in arg {arg}", names.join(""))
            }
            Condition::AnyBit { arg, names } => format!("any of {} in arg {arg}", names.join(", ")),
            Condition::NoBit { arg, names } => format!("{} not in arg {arg}", names.join(", ")),
            Condition::MaskedIs { arg, mask, names } => {
                format!("arg {arg} & `{mask:#x}` is {}", names.join(" or "))
            }
            Condition::NoneOf { arg, names } => {
                format!("arg {arg} ∉ {{{}}}", names.join(", "))
            }
            Condition::Always => "always".to_owned(),
        }
    }
}

fn arg_of(test: Test) -> u8 {
    match test {
        Test::Masked { arg, .. } | Test::Masked64 { arg, .. } | Test::NoneOf { arg, .. } => arg,
        Test::Always => 0,
    }
}

/// One row of the argument rules: consecutive rules with the same errno and reason.
#[derive(Debug)]
struct Row {
    calls: Vec<&'static str>,
    conditions: Vec<Condition>,
    errno: u32,
    why: &'static str,
}

fn rows(rules: &[Deny]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for rule in rules {
        let condition = Condition::of(rule);
        match rows.last_mut() {
            Some(row) if row.errno == rule.errno && row.why == rule.why => {
                if !row.calls.contains(&rule.name) {
                    row.calls.push(rule.name);
                }
                if !row.conditions.iter_mut().any(|c| c.merge(&condition)) {
                    row.conditions.push(condition);
                }
            }
            _ => rows.push(Row {
                calls: vec![rule.name],
                conditions: vec![condition],
                errno: rule.errno,
                why: rule.why,
            }),
        }
    }
    rows
}

/// The refusals: those of `network`, with `minimal`'s condition where it differs.
fn deny_table() -> String {
    let network = rows(&deny_rules(SyscallProfile::Network));
    let minimal = rows(&deny_rules(SyscallProfile::Minimal));
    assert_eq!(
        network.len(),
        minimal.len(),
        "the profiles' refusals differ in shape"
    );
    let text = |row: &Row| {
        let texts: Vec<_> = row.conditions.iter().map(Condition::text).collect();
        texts.join(", or ")
    };
    let table_rows = network.iter().zip(&minimal).map(|(n, m)| {
        let calls: Vec<_> = n
            .calls
            .iter()
            .map(
                |c| match limpet_compile::seccomp::syscall_number(Arch::Aarch64, c) {
                    Some(_) => format!("`{c}`"),
                    None => format!("`{c}` (x86_64 only)"),
                },
            )
            .collect();
        let when = if text(n) == text(m) {
            text(n)
        } else {
            format!("{} under `network`; {} otherwise", text(n), text(m))
        };
        [
            calls.join(", "),
            when,
            format!("`{}`", errno_name(n.errno)),
            n.why.to_owned(),
        ]
    });
    docs::table(&["call", "refused when", "result", "why"], table_rows)
}

#[test]
fn docs_list_the_seccomp_tables() {
    let doc = docs::workspace_path("docs/sandbox.md");
    let never = profile::NEVER
        .iter()
        .map(|(name, why)| [format!("`{name}`"), (*why).to_owned()]);
    for (region, text) in [
        ("seccomp-minimal", allow_table(profile::MINIMAL)),
        ("seccomp-network", allow_table(profile::NETWORK)),
        ("seccomp-notify", allow_table(profile::NOTIFY)),
        ("seccomp-never", docs::table(&["call", "why"], never)),
        ("seccomp-argument-rules", deny_table()),
    ] {
        docs::assert_region(&doc, region, file!(), &text);
    }
}
