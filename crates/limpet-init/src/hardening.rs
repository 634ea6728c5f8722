//! Kernel hardening applied by PID 1 before any task starts: sysctls, each with the reason
//! it is set, and finally `kernel.modules_disabled`, which locks module loading until the
//! next boot (every module the image needs was loaded from the initramfs list before).
//!
//! Rules: the table is the single place these values live (docs/boot.md's tables are
//! rendered from it by the test `docs_list_the_sysctls`); a
//! sysctl the kernel does not have is reported and skipped, never fatal; module loading
//! is locked last, after the data filesystem is mounted.

use std::path::Path;

/// One sysctl: its `/proc/sys` path, the value, and why.
#[derive(Debug, Clone, Copy)]
pub struct Sysctl {
    pub key: &'static str,
    pub value: &'static str,
    pub reason: &'static str,
}

/// The hardening sysctls, in the order they are written.
pub const SYSCTLS: &[Sysctl] = &[
    Sysctl {
        key: "kernel.kptr_restrict",
        value: "2",
        reason: "hide kernel addresses from /proc and logs (KASLR stays useful)",
    },
    Sysctl {
        key: "kernel.dmesg_restrict",
        value: "1",
        reason: "kernel log readable by CAP_SYSLOG only",
    },
    Sysctl {
        key: "kernel.unprivileged_bpf_disabled",
        value: "1",
        reason: "no bpf() for unprivileged users, and it cannot be re-enabled",
    },
    Sysctl {
        key: "net.core.bpf_jit_harden",
        value: "2",
        reason: "constant blinding for every BPF JIT program (seccomp filters included)",
    },
    Sysctl {
        key: "kernel.yama.ptrace_scope",
        value: "3",
        reason: "no ptrace at all, not even of one's own children",
    },
    Sysctl {
        key: "kernel.kexec_load_disabled",
        value: "1",
        reason: "no replacing the running kernel; one-way",
    },
    Sysctl {
        key: "kernel.perf_event_paranoid",
        value: "3",
        reason: "no perf_event_open for unprivileged users (Debian's patch)",
    },
    Sysctl {
        key: "kernel.sysrq",
        value: "0",
        reason: "no magic SysRq from the console or /proc/sysrq-trigger",
    },
    Sysctl {
        key: "kernel.unprivileged_userns_clone",
        value: "0",
        reason: "no user namespaces for unprivileged users (Debian's patch)",
    },
    Sysctl {
        key: "user.max_user_namespaces",
        value: "0",
        reason: "no user namespaces at all: tasks never need them",
    },
    Sysctl {
        key: "vm.unprivileged_userfaultfd",
        value: "0",
        reason: "userfaultfd only for privileged users (a race-exploitation aid)",
    },
    Sysctl {
        key: "dev.tty.ldisc_autoload",
        value: "0",
        reason: "no autoloading of TTY line disciplines",
    },
    Sysctl {
        key: "fs.protected_symlinks",
        value: "1",
        reason: "no following others' symlinks in sticky directories",
    },
    Sysctl {
        key: "fs.protected_hardlinks",
        value: "1",
        reason: "no hard links to files one cannot write",
    },
    Sysctl {
        key: "fs.protected_fifos",
        value: "2",
        reason: "no opening others' FIFOs in sticky directories",
    },
    Sysctl {
        key: "fs.protected_regular",
        value: "2",
        reason: "no opening others' files in sticky directories with O_CREAT",
    },
    Sysctl {
        key: "fs.suid_dumpable",
        value: "0",
        reason: "no core dumps of processes that changed credentials",
    },
    Sysctl {
        key: "kernel.core_pattern",
        value: "|/nonexistent",
        reason: "core dumps go nowhere (tasks also have RLIMIT_CORE 0)",
    },
];

/// The sysctl that locks module loading; written last.
pub const MODULES_DISABLED: Sysctl = Sysctl {
    key: "kernel.modules_disabled",
    value: "1",
    reason: "no module loading until the next boot; one-way",
};

/// The `/proc/sys` path of a sysctl key.
pub fn proc_path(root: &Path, key: &str) -> std::path::PathBuf {
    root.join("proc/sys").join(key.replace('.', "/"))
}

/// A sysctl the kernel has that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("sysctl {} not set ({})", sysctl.key, sysctl.reason)]
pub struct SysctlError {
    pub sysctl: &'static Sysctl,
    pub path: std::path::PathBuf,
    pub source: std::io::Error,
}

/// What applying the table did.
#[derive(Debug, Default)]
pub struct HardeningReport {
    pub set: usize,
    pub missing: Vec<&'static str>,
    pub failed: Vec<SysctlError>,
}

/// Writes every sysctl of `table` under `root`.
pub fn apply(root: &Path, table: &'static [Sysctl]) -> HardeningReport {
    let mut report = HardeningReport::default();
    for sysctl in table {
        let path = proc_path(root, sysctl.key);
        if !path.exists() {
            report.missing.push(sysctl.key);
            continue;
        }
        match std::fs::write(&path, sysctl.value) {
            Ok(()) => report.set += 1,
            Err(source) => report.failed.push(SysctlError {
                sysctl,
                path,
                source,
            }),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_present_sysctls_and_reports_missing_ones() {
        let root = tempfile::tempdir().unwrap();
        let present = proc_path(root.path(), "kernel.kptr_restrict");
        std::fs::create_dir_all(present.parent().unwrap()).unwrap();
        std::fs::write(&present, "0").unwrap();
        let report = apply(root.path(), &SYSCTLS[..2]);
        assert_eq!(report.set, 1);
        assert_eq!(report.missing, ["kernel.dmesg_restrict"]);
        assert_eq!(std::fs::read_to_string(present).unwrap(), "2");
    }

    #[test]
    fn every_sysctl_has_a_reason_and_a_unique_key() {
        let mut keys: Vec<_> = SYSCTLS.iter().map(|s| s.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), SYSCTLS.len());
        assert!(SYSCTLS.iter().all(|s| !s.reason.is_empty()));
        assert!(
            !keys.contains(&MODULES_DISABLED.key),
            "module loading is locked separately, last"
        );
    }

    #[test]
    fn a_sysctl_that_cannot_be_written_names_its_key_and_reason() {
        let root = tempfile::tempdir().unwrap();
        // A directory where the file should be: present, but not writable as a sysctl.
        std::fs::create_dir_all(proc_path(root.path(), SYSCTLS[0].key)).unwrap();
        let report = apply(root.path(), &SYSCTLS[..1]);
        assert_eq!(report.set, 0);
        let failed = &report.failed[0];
        assert_eq!(failed.sysctl.key, "kernel.kptr_restrict");
        assert!(crate::console::chain(failed).starts_with(
            "sysctl kernel.kptr_restrict not set (hide kernel addresses from /proc and logs (KASLR stays useful)): "
        ));
    }
}

/// The tables of docs/boot.md, rendered from [`SYSCTLS`] and [`MODULES_DISABLED`].
#[cfg(test)]
mod docs_tests {
    use super::*;
    use limpet_testkit::docs;

    fn table<'a>(sysctls: impl IntoIterator<Item = &'a Sysctl>) -> String {
        let rows = sysctls.into_iter().map(|s| {
            [
                format!("`{}`", s.key),
                format!("`{}`", s.value),
                s.reason.to_owned(),
            ]
        });
        docs::table(&["sysctl", "value", "why"], rows)
    }

    #[test]
    fn docs_list_the_sysctls() {
        let boot = docs::workspace_path("docs/boot.md");
        docs::assert_region(&boot, "hardening-sysctls", file!(), &table(SYSCTLS));
        docs::assert_region(
            &boot,
            "hardening-modules-disabled",
            file!(),
            &table([&MODULES_DISABLED]),
        );
    }
}
