//! The health gate of a trial slot, in real QEMU: a new release written to the other slot
//! and marked as a trial is committed once its tasks stayed up for the health period; a release
//! whose task fails at start is rolled back, the failure is recorded, the device reboots
//! into the committed slot, and the failed version cannot be tried again.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::disk::*;
use common::*;
use limpet_state::{Slot, TransitionError, Version};

/// Safety net for one TCG boot on a loaded 2-core machine.
const BOOT_DEADLINE_SECS: &str = "300";

/// examples/hello as release `version`, with a 5 s health period; `fail` makes its task
/// exit with code 1 at start and never be restarted.
fn release(version: &str, fail: bool) -> PathBuf {
    let (root, key_id) = tuf_root();
    let update = format!(
        "\n[update]\nrepository = \"http://192.0.2.1/hello\"\nkeys = [{{ id = \"{key_id}\" }}]\nroot = \"{}\"\nhealth = \"5s\"\n",
        root.display()
    );
    hello_release("trial", version, fail, &update)
}

/// A TUF repository made with `limpet repo init` (once): its first root metadata and one
/// of its root key ids, for `[update]`.
fn tuf_root() -> (PathBuf, String) {
    tuf_repo(&scratch().join("tuf-repo"), &scratch().join("tuf-keys"))
}

/// Writes `slot.img` of `release` into partition `slot-x` of `disk`.
fn install(disk: &Path, slot: Slot, release: &Path) {
    install_bytes(
        disk,
        slot,
        &std::fs::read(release.join("slot.img")).unwrap(),
    );
}

/// Boots `dir` (keeping the guest's disk writes) until the guest powers off or reboots
/// by itself (QEMU runs with `-no-reboot`), pressing the power button once `until`
/// appears on the console; returns the console.
fn boot_until(dir: &Path, until: Option<&str>) -> String {
    require_tool("qemu-system-x86_64");
    let mut cmd = limpet();
    cmd.arg("run")
        .arg(dir)
        .args(["--json", "--persist", "--timeout", BOOT_DEADLINE_SECS]);
    if let Some(until) = until {
        cmd.args(["--powerdown-on", until]);
    }
    let out = run(&mut cmd, true);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["exit_code"], 0, "{summary}");
    let console = stderr(&out);
    // The boot times of commits and rollbacks, for BENCHMARKS.md.
    for line in console.lines().filter(|l| l.contains("(boottime ")) {
        eprintln!("timing: {line}");
    }
    console
}

#[test]
fn a_healthy_trial_is_committed_and_a_failing_one_rolls_back_for_good() {
    let (v1, _) = hello_build();
    let dir = mixed_output("trial", v1, v1, &[]);
    let disk = dir.join("disk.img");
    let v2 = release("0.2.0", false);
    let v3 = release("0.3.0", true);

    // v2 on slot B, on trial: committed after 5 s of its task up.
    install(&disk, Slot::B, &v2);
    mark_trial(&disk, Slot::B, "0.2.0");
    let console = boot_until(&dir, Some("trial committed"));
    assert!(console.contains("booting slot B (trial"), "{console}");
    assert!(console.contains("trial slot: commit after"), "{console}");
    assert!(
        console
            .contains("every task healthy for the health period: trial committed, floor now 0.2.0"),
        "{console}"
    );
    with_state(&disk, |s| {
        assert_eq!(s.committed_slot(), Slot::B);
        assert_eq!(s.committed_version().to_string(), "0.2.0");
        assert_eq!(s.floor().to_string(), "0.2.0");
        assert!(s.trial().is_none());
    });

    // v3, whose task fails at start, on slot A: rolled back, recorded, rebooted.
    install(&disk, Slot::A, &v3);
    mark_trial(&disk, Slot::A, "0.3.0");
    let console = boot_until(&dir, None);
    assert!(console.contains("booting slot A (trial"), "{console}");
    assert!(console.contains("hello: failing at start"), "{console}");
    assert!(console.contains("limpet-init: rebooting"), "{console}");
    assert!(
        console.contains("trial failed its health gate (task hello exited with code 1 and is not restarted): rebooting into the committed slot"),
        "{console}"
    );
    let refused = with_state(&disk, |s| {
        assert_eq!(s.committed_slot(), Slot::B);
        assert_eq!(s.floor().to_string(), "0.2.0");
        assert!(s.trial().is_none());
        let failure = s.last_failure().unwrap();
        assert_eq!(failure.version.to_string(), "0.3.0");
        assert_eq!(failure.reason.to_string(), "health check failed");
        s.mark_trial(Slot::A, Version::parse("0.3.0").unwrap(), 3)
    });
    // The failed version is never tried again; only a newer one may be.
    assert!(
        matches!(refused, Err(TransitionError::FailedBefore { .. })),
        "{refused:?}"
    );
    let inspected = inspect_json(&disk);
    assert_eq!(
        inspected["state"]["committed_slot"], "slot-b",
        "{inspected}"
    );

    // The next boot runs v2 from slot B.
    let console = boot_until(&dir, Some("[hello] hello from limpet: beat 1"));
    assert!(console.contains("booting slot B"), "{console}");
    assert!(!console.contains("(trial)"), "{console}");
    assert!(
        console.contains("slot-b (hello 0.2.0) mounted read-only"),
        "{console}"
    );
}
