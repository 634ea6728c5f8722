//! The hostile device in real QEMU: every task but one tries one way out of its sandbox,
//! and each attempt must fail in exactly the expected way — a precise errno, or the
//! seccomp filter killing the task (SIGSYS) — while PID 1 and the neighbour task keep
//! running. Also checked from inside the guest: every thread of every task runs with
//! seccomp in filter mode, no_new_privs, no capabilities, a non-root uid; a memory hog is
//! OOM-killed inside its cgroup and restarted with backoff until its crash-loop limit;
//! a crash-looping task stops being restarted at its limit; tasks start in declared order
//! once the ones before them are ready, and a task that never reports ready is killed.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::hostile::*;
use common::*;

#[test]
fn every_escape_attempt_fails_as_expected_and_the_device_survives() {
    require_tool("qemu-system-x86_64");
    assert!(
        ATTACKS.len() >= 30,
        "the issue asks for at least 30 attacks"
    );
    let out = hostile_build();
    let mut cmd = limpet();
    cmd.arg("run")
        .arg(out)
        .args(["--memory", "512", "--json", "--timeout", "600"]);
    for marker in settled_markers() {
        cmd.arg("--powerdown-on").arg(marker);
    }
    let result = run(&mut cmd, true);
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    let console = stderr(&result);
    assert_eq!(summary["outcome"], "powered-off", "{summary}\n{console}");
    assert_every_attack_failed(&console);
}
