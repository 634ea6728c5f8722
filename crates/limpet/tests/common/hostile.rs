//! examples/hostile's attacks and how each must fail, shared by tests/hostile.rs (Debian's
//! kernel) and tests/kernel.rs (Limpet's own, on both architectures): the markers that say the
//! device has settled, and the checks of a console that ran it to its power-off.
#![allow(dead_code)]

/// How an attack must end.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// The task prints `ATTACK <name>: blocked: <this>` and exits 0.
    Blocked(&'static str),
    /// The seccomp filter kills the task: it ends by SIGSYS (31) and prints no verdict.
    KilledBySeccomp,
}

use Expect::{Blocked, KilledBySeccomp};

/// Every attack of examples/hostile and the one way it must fail.
pub const ATTACKS: &[(&str, Expect)] = &[
    // Executing anything but its own binary.
    ("exec-shell", Blocked("ENOENT")), // no shell in its root
    ("exec-written-file", Blocked("EACCES")), // its data directory is noexec (and Landlock)
    ("memfd-exec", KilledBySeccomp),
    ("fork", Blocked("EPERM")), // threads only: clone without CLONE_THREAD is refused
    // Writing where it may not.
    ("write-root-fs", Blocked("EROFS")),
    ("write-slot", Blocked("EROFS")),
    ("write-outside-data", Blocked("EROFS")),
    ("fill-tmp", Blocked("ENOSPC")), // /tmp is a 1 MiB tmpfs
    // Reading what is not its own.
    ("read-other-task-data", Blocked("ENOENT")), // not in its mount tree
    ("read-shadow", Blocked("ENOENT")),
    ("read-sysfs", Blocked("ENOENT")),
    ("open-dev-mem", Blocked("ENOENT")),
    ("open-block-device", Blocked("ENOENT")),
    ("change-sysctl", Blocked("ENOENT")), // its /proc shows processes only (subset=pid)
    // Other processes.
    (
        "see-other-processes",
        Blocked("only itself (pid 1 of its namespace) is visible"),
    ),
    ("signal-pid1", Blocked("ESRCH")), // kill(-1): nobody else to signal
    ("ptrace-pid1", KilledBySeccomp),
    ("process-vm-read", KilledBySeccomp),
    // The kernel and the machine.
    ("mount", KilledBySeccomp),
    ("pivot-root", KilledBySeccomp),
    ("chroot", KilledBySeccomp),
    ("load-module", KilledBySeccomp),
    ("kexec", KilledBySeccomp),
    ("reboot", KilledBySeccomp),
    ("set-clock", KilledBySeccomp),
    ("bpf", KilledBySeccomp),
    ("perf-event-open", KilledBySeccomp),
    ("userfaultfd", KilledBySeccomp),
    ("io-uring", KilledBySeccomp),
    ("keyctl", KilledBySeccomp),
    // Privileges.
    ("unshare-user-ns", KilledBySeccomp),
    ("setuid-root", KilledBySeccomp),
    // Memory: write-xor-execute.
    ("mprotect-exec", Blocked("EACCES")),
    ("mmap-write-exec", Blocked("EACCES")),
    // Network, from tasks with the `network` syscall profile but no network.
    ("raw-socket", Blocked("EPERM")),
    ("packet-socket", Blocked("EAFNOSUPPORT")),
    ("netlink-route", Blocked("EAFNOSUPPORT")),
    ("inet-socket-no-network", Blocked("ENETUNREACH")), // its net namespace has only lo
    // Budgets.
    (
        "threads-past-pids-max",
        Blocked("EAGAIN after 3 more threads"),
    ), // pids = 4: the main thread and 3 more (RLIMIT_NPROC refuses the 5th, pids.max would)
];

/// Console lines that must all appear before the test presses the power button.
pub fn settled_markers() -> Vec<String> {
    let mut markers: Vec<String> = ATTACKS
        .iter()
        .map(|(name, _)| format!("limpet-init: {name} exited ("))
        .collect();
    // The hog's third OOM kill, which puts it in a crash loop: a marker of its own, since
    // the crash task's crash loop can come first.
    markers.push(
        "limpet-init: memory-hog exited (Signal(9), OOM-killed in its cgroup (memory.max) 1 time(s)); crash loop"
            .into(),
    );
    markers.push("limpet-init: crash exited (Code(1)); crash loop after 3 failures".into());
    markers.push("limpet-init: never-ready exited (".into());
    markers
}

/// Checks the console of a run of examples/hostile's tasks that ended by the power button
/// once every [`settled_markers`] line had appeared: every attack failed its one expected way,
/// every thread of every task ran confined, the budgets and restart policies held, the
/// neighbour beat throughout, and PID 1 shut down cleanly.
pub fn assert_every_attack_failed(console: &str) {
    let lines: Vec<&str> = console.lines().collect();

    assert!(
        !console.contains("ESCAPED"),
        "an attack got through:\n{console}"
    );
    assert!(!console.contains("Kernel panic"), "{console}");
    assert!(!console.contains("cannot start"), "{console}");

    for (name, expect) in ATTACKS {
        let exit = lines
            .iter()
            .find(|l| l.starts_with(&format!("limpet-init: {name} exited (")))
            .unwrap_or_else(|| panic!("{name} never exited:\n{console}"));
        let verdict = lines
            .iter()
            .find(|l| l.starts_with(&format!("[{name}] ATTACK {name}: ")));
        match expect {
            Blocked(how) => {
                let verdict =
                    verdict.unwrap_or_else(|| panic!("{name}: no verdict; it ended: {exit}"));
                assert_eq!(
                    *verdict,
                    format!("[{name}] ATTACK {name}: blocked: {how}"),
                    "{name} was not blocked the expected way"
                );
                assert!(exit.contains("(Code(0))"), "{name}: {exit}");
            }
            KilledBySeccomp => {
                assert!(
                    verdict.is_none(),
                    "{name} survived its forbidden call: {verdict:?}"
                );
                assert!(
                    exit.contains("(Signal(31))"),
                    "{name} should die by SIGSYS: {exit}"
                );
            }
        }
    }

    // Every thread of every task: seccomp filter mode, no_new_privs, no capabilities.
    let statuses: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("] STATUS threads="))
        .collect();
    assert!(
        statuses.len() >= 2 * ATTACKS.len(),
        "too few STATUS lines: {}",
        statuses.len()
    );
    for status in &statuses {
        assert!(status.contains("threads=2 "), "{status}");
        for field in [
            "Seccomp=2",
            "NoNewPrivs=1",
            "CapEff=0000000000000000",
            "CapPrm=0000000000000000",
            "CapBnd=0000000000000000",
            "CapAmb=0000000000000000",
        ] {
            assert!(status.contains(field), "{field} missing in {status}");
        }
        assert!(!status.ends_with("Uid=0"), "{status}");
    }

    // The memory hog: OOM-killed inside its cgroup, restarted with backoff, then given up.
    let hog: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("limpet-init: memory-hog exited"))
        .collect();
    assert_eq!(hog.len(), 3, "{hog:?}");
    for exit in &hog[..2] {
        assert!(
            exit.contains(
                "(Signal(9), OOM-killed in its cgroup (memory.max) 1 time(s)); restart at"
            ),
            "{exit}"
        );
    }
    assert!(hog[2].contains("crash loop after 3 failures"), "{}", hog[2]);
    // The crash-looping task: restarted twice, then reported and left alone.
    let crash: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("limpet-init: crash exited"))
        .collect();
    assert_eq!(crash.len(), 3, "{crash:?}");
    assert!(
        crash[2].contains("crash loop after 3 failures: not restarted until reboot"),
        "{}",
        crash[2]
    );

    // Readiness and declared order: the tasks after `notifier` start only once it has said
    // READY=1; `never-ready` is killed at its 3 s deadline and, with restart = never, left.
    let position = |text: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(text))
            .unwrap_or_else(|| panic!("no `{text}`:\n{console}"))
    };
    assert!(
        position("limpet-init: notifier is ready") < position("limpet-init: started exec-shell")
    );
    assert!(
        console.contains("[notifier] sent READY=1 to /run/notify"),
        "{console}"
    );
    assert!(
        position("limpet-init: never-ready did not report ready in time: killing it")
            < position("limpet-init: never-ready exited (Signal(9)); not restarted (policy)")
    );

    // The neighbour kept running through all of it, and PID 1 shut down cleanly.
    // The neighbour: started once, never restarted, beating without a gap until shutdown.
    let starts = lines
        .iter()
        .filter(|l| l.starts_with("limpet-init: started heartbeat "))
        .count();
    assert_eq!(starts, 1, "{console}");
    let beats: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("[heartbeat] heartbeat ")?.parse().ok())
        .collect();
    assert!(beats.len() >= 5, "{beats:?}");
    assert!(
        beats.iter().enumerate().all(|(i, &b)| b == i as u64),
        "{beats:?}"
    );
    let heartbeat_exits: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("limpet-init: heartbeat exited"))
        .collect();
    assert_eq!(heartbeat_exits.len(), 1, "{heartbeat_exits:?}");
    assert!(
        heartbeat_exits[0].ends_with("; stopped"),
        "{}",
        heartbeat_exits[0]
    );
    assert!(
        position("limpet-init: power button: shutting down")
            < position("limpet-init: heartbeat exited"),
        "the neighbour ended before shutdown"
    );
    assert!(
        console.contains("limpet-init: power button: shutting down"),
        "{console}"
    );
    assert!(
        console.contains("limpet-init: all tasks stopped, filesystems unmounted"),
        "{console}"
    );
}
