//! PID 1's own verified boot in real QEMU (TCG) with Debian's kernel: limpet-init loads
//! its modules, finds the disk, chooses the slot from the A/B state, checks the header
//! signature and the version floor, maps the slot through dm-verity and mounts it
//! read-only. Each tampered disk must fail in exactly the documented way.
//!
//! These boots use `limpet run --direct` (QEMU starts the kernel itself), so what is
//! tested is PID 1's defence on its own, as on a device whose loader was bypassed; the
//! boot loader's checks before it are tested in `chain.rs`.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use common::disk::{partition, patch};
use common::*;

/// Safety net for one TCG boot on a loaded 2-core machine.
const BOOT_DEADLINE_SECS: &str = "300";

/// The example's task runs until the device shuts down: once its second line is out, the
/// test presses the power button (QMP) and the guest must stop cleanly by itself. Boots
/// that fail never print it and power off on their own.
const POWERDOWN_ON: &str = "[hello] hello from limpet: beat 1";

/// Boots `dir` with `limpet run --json` and returns the console; the disk is not
/// modified.
fn boot(dir: &Path) -> String {
    boot_with(dir, &[])
}

/// Boots `dir` with extra `limpet run` arguments.
fn boot_with(dir: &Path, extra: &[&str]) -> String {
    require_tool("qemu-system-x86_64");
    let out = run(
        limpet()
            .arg("run")
            .arg(dir)
            .args(["--direct", "--json", "--timeout", BOOT_DEADLINE_SECS])
            .args(["--powerdown-on", POWERDOWN_ON])
            .args(extra),
        true,
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["exit_code"], 0, "{summary}");
    stderr(&out)
}

fn hello_copy(name: &str) -> std::path::PathBuf {
    let (out, _) = hello_build();
    mixed_output(name, out, out, &[])
}

#[test]
fn the_example_boots_verified() {
    let (out, _) = hello_build();
    let console = boot(out);
    for line in [
        "limpet-init 0.1.0 of release hello 0.1.0 (x86_64) starting",
        "kernel module(s) loaded",
        "state: committed slot A (0.1.0), floor 0.1.0, booting slot A",
        "slot-a header verified: hello 0.1.0 (x86_64)",
        "slot-a (hello 0.1.0) mounted read-only from /dev/dm-0 on /slot",
        "data partition /dev/vda5 mounted on /data (nosuid,nodev,noexec)",
        "hardening sysctls set; module loading locked",
        "limpet-init: started hello",
        "[hello] hello from limpet: beat 0",
        "limpet-init: power button: shutting down",
        "limpet-init: stopping hello",
        "limpet-init: hello exited",
        "limpet-init: all tasks stopped, filesystems unmounted",
        "limpet-init: powering off",
    ] {
        assert!(console.contains(line), "missing `{line}`:\n{console}");
    }
    assert!(!console.contains("Kernel panic"), "{console}");
    assert!(!console.contains("not present in this kernel"), "{console}");
    assert!(!console.contains("not set"), "{console}");
    // The other slot (blank on a new disk) is checked for the status once the task runs.
    assert_after(
        &console,
        "limpet-init: started hello",
        "limpet-init: slot-b (the other slot): no valid header: /dev/vda4: bad slot",
    );
}

/// `later` is on the console, after `earlier`.
fn assert_after(console: &str, earlier: &str, later: &str) {
    let first = console.find(earlier);
    let second = console.find(later);
    assert!(
        matches!((first, second), (Some(a), Some(b)) if a < b),
        "`{later}` must follow `{earlier}`:\n{console}"
    );
}

#[test]
fn a_slot_signed_by_another_key_is_refused_before_mounting() {
    let (out, _) = hello_build();
    let (other, _) = other_key_build();
    let dir = mixed_output("boot-other-key", out, other, &["disk.img"]);
    let console = boot(&dir);
    assert!(console.contains("slot-a refused"), "{console}");
    assert!(console.contains("signed by key"), "{console}");
    assert!(
        console.contains("boot failed: committed slot A"),
        "{console}"
    );
    assert!(!console.contains("mounted read-only"), "{console}");
    assert!(
        !console.contains("device-mapper"),
        "nothing may reach dm-verity:\n{console}"
    );
}

#[test]
fn a_flipped_squashfs_byte_stops_the_mount_in_dm_verity() {
    let dir = hello_copy("boot-flipped");
    let disk = dir.join("disk.img");
    let (slot_a, _) = partition(&disk, "slot-a");
    // Byte 200 lies in data block 0 (the squashfs superblock block) but outside the 96
    // superblock bytes used to find the header: the signature still verifies, and the
    // kernel's dm-verity refuses the block when squashfs reads it at mount.
    let mut b = [0u8; 1];
    let mut f = File::open(&disk).unwrap();
    f.seek(SeekFrom::Start(slot_a + 200)).unwrap();
    f.read_exact(&mut b).unwrap();
    patch(&disk, slot_a + 200, &[b[0] ^ 0x01]);
    let console = boot(&dir);
    assert!(console.contains("slot-a header verified"), "{console}");
    assert!(console.contains("slot-a not mounted"), "{console}");
    assert!(
        console.contains("boot failed: committed slot A"),
        "{console}"
    );
    assert!(!console.contains("mounted read-only"), "{console}");
}

#[test]
fn a_blank_state_boots_slot_a_and_writes_the_factory_state() {
    let dir = hello_copy("boot-blank-state");
    let disk = dir.join("disk.img");
    let (state, size) = partition(&disk, "state");
    patch(&disk, state, &vec![0u8; usize::try_from(size).unwrap()]);
    let console = boot(&dir);
    assert!(
        console.contains("state partition is blank: booting slot A (factory)"),
        "{console}"
    );
    assert!(
        console.contains("slot-a (hello 0.1.0) mounted read-only"),
        "{console}"
    );
}

#[test]
fn a_trial_slot_that_fails_verification_rolls_back_to_the_committed_slot() {
    let dir = hello_copy("boot-bad-try");
    let disk = dir.join("disk.img");
    // Slot B holds a slot signed by another key; the state says: trial on B (version 0.2.0).
    let (other, _) = other_key_build();
    let bad_slot = std::fs::read(other.join("slot.img")).unwrap();
    let (slot_b, _) = partition(&disk, "slot-b");
    patch(&disk, slot_b, &bad_slot);
    let (state_offset, state_size) = partition(&disk, "state");
    {
        let mut file = File::options().read(true).write(true).open(&disk).unwrap();
        let region = limpet_state::Region::new(&mut file, state_offset, state_size).unwrap();
        let mut store = limpet_state::StateStore::new(region).unwrap();
        let state = store.load().unwrap();
        let version = limpet_state::Version::parse("0.2.0").unwrap();
        let trying = state.mark_trial(limpet_state::Slot::B, version, 3).unwrap();
        store.store(&trying).unwrap();
    }
    // --persist: the guest's writes to the state partition must reach disk.img.
    let console = boot_with(&dir, &["--persist"]);
    assert!(console.contains("booting slot B (trial)"), "{console}");
    assert!(
        console.contains("trial slot B failed: slot-b refused"),
        "{console}"
    );
    assert!(console.contains("rolling back"), "{console}");
    assert!(
        console.contains("slot-a (hello 0.1.0) mounted read-only"),
        "{console}"
    );
    // Checked again for the status after the task started: still refused, no version.
    assert_after(
        &console,
        "limpet-init: started hello",
        "limpet-init: slot-b (the other slot): no valid header: /dev/vda4: header refused: header signed by key",
    );
    // The rollback was recorded: the failure is in the stored state.
    let mut file = File::open(&disk).unwrap();
    let region = limpet_state::Region::new(&mut file, state_offset, state_size).unwrap();
    let state = limpet_state::StateStore::new(region)
        .unwrap()
        .load()
        .unwrap();
    let inspected = inspect_json(&disk);
    assert_eq!(
        inspected["state"]["committed_slot"], "slot-a",
        "{inspected}"
    );
    assert!(
        inspected["state"]["last_failure"]
            .as_str()
            .unwrap()
            .contains("VerifyFailed"),
        "{}",
        inspected["state"]
    );
    let failure = state.last_failure().expect("a recorded failure");
    assert_eq!(failure.reason, limpet_state::FailureReason::VerifyFailed);
    assert!(state.trial().is_none());
}
