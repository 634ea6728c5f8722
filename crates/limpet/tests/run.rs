//! `limpet run` boots the example's build in real QEMU (TCG) and exits with the guest's
//! outcome: a matched console line, the guest powering off, or the deadline.
//!
//! The assertions hold as limpet-init grows: they rely only on its lines containing
//! `limpet-init` and its last one saying `powering off`.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Safety net for one TCG boot on a loaded 2-core machine; a boot that needs it fails
/// the test (exit 124 instead of 0).
const BOOT_DEADLINE_SECS: &str = "300";

fn out_dir() -> &'static Path {
    &hello_build().0
}

#[test]
fn exit_on_stops_at_the_first_matching_line() {
    require_tool("qemu-system-x86_64");
    let out = run(
        limpet().arg("run").arg(out_dir()).args([
            "--exit-on",
            "limpet-init",
            "--timeout",
            BOOT_DEADLINE_SECS,
        ]),
        true,
    );
    let console = stdout(&out);
    let matched = console
        .lines()
        .find(|l| l.contains("limpet-init"))
        .unwrap_or_else(|| panic!("no matched line on stdout:\n{console}"));
    // The guest was stopped at the match: nothing after it was printed.
    assert_eq!(console.lines().last(), Some(matched), "{console}");
    assert!(!console.contains("powering off"), "{console}");
    let summary = stderr(&out);
    assert!(summary.contains("guest stopped"), "{summary}");
    assert!(summary.contains(matched), "{summary}");
}

#[test]
fn runs_until_the_guest_powers_off() {
    require_tool("qemu-system-x86_64");
    let out = run(
        limpet()
            .arg("run")
            .arg(out_dir())
            .args(["--json", "--timeout", BOOT_DEADLINE_SECS])
            // The example's task runs forever: press the power button once it runs.
            .args(["--powerdown-on", "[hello] hello from limpet"]),
        true,
    );
    // With --json the console goes to stderr and stdout holds only the summary.
    let console = stderr(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(&out)));
    assert_eq!(report["outcome"], "powered-off", "{report}\n{console}");
    assert_eq!(report["exit_code"], 0, "{report}");
    assert!(report["matched_line"].is_null(), "{report}");
    assert!(report["seconds"].as_f64().unwrap() > 0.0, "{report}");
    let lines = report["console_lines"].as_u64().unwrap();
    assert!(lines >= 2, "{report}\n{console}");
    assert!(console.contains("limpet-init"), "{console}");
    assert!(console.contains("power button: shutting down"), "{console}");
    assert!(console.contains("powering off"), "{console}");
    assert!(!console.contains("Kernel panic"), "{console}");
}

#[test]
fn timeout_stops_the_guest_with_its_own_exit_code() {
    require_tool("qemu-system-x86_64");
    let started = Instant::now();
    let out = run(
        limpet().arg("run").arg(out_dir()).args(["--timeout", "1"]),
        false,
    );
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("timed out after 1 s"),
        "{}",
        stderr(&out)
    );
    // Well before a boot could finish: the deadline does not wait for console output.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_kernel_panic_is_reported_with_its_own_exit_code() {
    require_tool("qemu-system-x86_64");
    // No such /init in the initramfs: the kernel falls back to a root device there is
    // none of, and panics.
    let out = run(
        limpet().arg("run").arg(out_dir()).args([
            "--direct",
            "--append",
            "rdinit=/no-such-init",
            "--timeout",
            BOOT_DEADLINE_SECS,
        ]),
        false,
    );
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{err}
{}",
        stdout(&out)
    );
    assert!(err.contains("kernel panicked"), "{err}");
    assert!(stdout(&out).contains("Kernel panic"), "{}", stdout(&out));
}

#[test]
fn a_dir_without_a_kernel_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["initramfs.cpio", "disk.img", "slot.img"] {
        std::os::unix::fs::symlink(out_dir().join(name), dir.path().join(name)).unwrap();
    }
    let out = run(limpet().arg("run").arg(dir.path()), false);
    let err = stderr(&out);
    assert!(
        err.contains(&dir.path().join("kernel").display().to_string()),
        "{err}"
    );
    assert!(err.contains("limpet build"), "{err}");
}

#[test]
fn missing_qemu_says_what_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let out = run(
        limpet().arg("run").arg(out_dir()).env("PATH", empty.path()),
        false,
    );
    let err = stderr(&out);
    assert!(err.contains("qemu-system-x86_64"), "{err}");
    assert!(err.contains("apt-get install qemu-system-x86"), "{err}");
}
