//! The device's boot chain on aarch64, in `qemu-system-aarch64 -M virt` (TCG): AAVMF with
//! the vendor's PK, KEK and db enrolled and Secure Boot enforcing starts Limpet's signed
//! loader (`BOOTAA64.EFI`), which verifies the whole-image slot and starts Debian's arm64
//! EFI-stub kernel, re-signed with the vendor's db key, with its initramfs through
//! LoadFile2; PID 1 takes the hand-over, and shuts down cleanly when the board's power
//! button is pressed. Two attacks: a kernel without the vendor's db
//! signature (Debian's own, signed by Debian only) is refused by the firmware, so Secure
//! Boot is enforced and Microsoft's keys in AAVMF's template were not kept; a trial whose
//! kernel has one flipped byte is refused by the loader and rolled back; a vendor-signed
//! release below the floor is refused by the loader. And the update story of `update.rs`
//! on aarch64: 0.1.0 updates to 0.2.0 (another kernel command line, another PID 1) through
//! the device's own agent and commits; 0.3.0, whose kernel panics, spends its two trial
//! boots and the loader returns to 0.2.0 by itself.
//!
//! The kernel comes from `.ci/fetch-arm64-kernel` (run by `.ci/install-deps`), unpacked
//! into `target/arm64-kernel`. A TCG aarch64 boot through the firmware takes minutes on a
//! loaded 2-core machine, so this file boots ten times in all.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::disk::*;
use common::repo::*;
use common::*;
use limpet_state::{FailureReason, Slot};

/// Safety net for one TCG aarch64 boot through the firmware on a loaded 2-core machine.
const BOOT_DEADLINE_SECS: &str = "600";

/// The example's task is up: the boot went through.
const UP: &str = "[hello] hello from limpet: beat 1";

/// The arm64 kernel `.ci/fetch-arm64-kernel` unpacked: (image, modules directory).
fn arm64_kernel() -> (PathBuf, PathBuf) {
    let dir = repo_root().join("target/arm64-kernel");
    let release = std::fs::read_to_string(dir.join("release")).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run .ci/fetch-arm64-kernel (part of .ci/install-deps)",
            dir.join("release").display()
        )
    });
    let release = release.trim();
    (
        dir.join(format!("boot/vmlinuz-{release}")),
        dir.join(format!("lib/modules/{release}")),
    )
}

/// examples/hello's manifest text `manifest` made an aarch64 device with the arm64 kernel.
fn arm64_manifest(manifest: String) -> String {
    let (image, modules) = arm64_kernel();
    let manifest = manifest
        .replace("target = \"x86_64\"", "target = \"aarch64\"")
        .replace(
            "source = \"host\"",
            &format!(
                "source = {{ image = {:?}, modules = {:?} }}",
                image.display().to_string(),
                modules.display().to_string()
            ),
        );
    assert!(manifest.contains("aarch64") && manifest.contains("modules ="));
    manifest
}

/// One build of examples/hello for aarch64 with the arm64 kernel, made on first use: its
/// output directory.
fn hello_arm64() -> &'static PathBuf {
    static BUILD: OnceLock<PathBuf> = OnceLock::new();
    BUILD.get_or_init(|| hello_release_edited("hello-arm64", "0.1.0", "", arm64_manifest))
}

/// Boots `dir` through the chain in qemu-system-aarch64, keeping its disk and firmware
/// writes, until a console line contains `until`; returns the console.
fn boot_until(dir: &Path, until: &str) -> String {
    require_tool("qemu-system-aarch64");
    let started = std::time::Instant::now();
    let console = boot_until_line(dir, until, BOOT_DEADLINE_SECS);
    // For BENCHMARKS.md (`--nocapture`); never asserted.
    eprintln!(
        "aarch64 chain boot: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    console
}

/// A copy of the aarch64 build's output directory.
fn hello_arm64_copy(name: &str) -> PathBuf {
    let out = hello_arm64();
    mixed_output(name, out, out, &[])
}

#[test]
fn the_aarch64_chain_boots_with_secure_boot_enforcing() {
    let dir = hello_arm64_copy("chain-arm64-boot");
    require_tool("qemu-system-aarch64");
    // Once the task beats, the board's power button (a GPIO key) is pressed: PID 1 shuts
    // the device down cleanly.
    let console = boot_then_power_off(&dir, UP, BOOT_DEADLINE_SECS);
    for line in [
        "limpet-boot: version 0.1.0 (aarch64)",
        "limpet-boot: UEFI Secure Boot: enabled",
        "limpet-boot: boot 1 counted",
        "limpet-boot: slot-a verified: hello 0.1.0 (aarch64)",
        "limpet-boot: initramfs",
        "offered through the Linux initrd LoadFile2 protocol",
        "limpet-boot: starting the kernel of slot A: console=ttyAMA0 panic=-1 quiet limpet.watchdog=60 limpet.slot=a limpet.counted=1",
        "limpet-boot: hardware watchdog: i6300ESB at 0000:00:",
        "armed for 60 s, locked on until the next reset",
        "limpet-init: watchdog /dev/watchdog0: 60 s timeout, petted every 15000 ms",
        "limpet-init: state: committed slot A (0.1.0), floor 0.1.0, loader started slot A (boot counted by the loader)",
        "limpet-init: slot-a (hello 0.1.0) mounted read-only",
        UP,
        "power button: shutting down",
        "powering off",
    ] {
        assert!(console.contains(line), "missing `{line}`:\n{console}");
    }
    // Counted by the loader only: PID 1 did not count it a second time.
    assert_eq!(with_state(&dir.join("disk.img"), |s| s.boot_count()), 1);
}

#[test]
fn an_aarch64_kernel_without_the_vendors_db_signature_is_refused_by_the_firmware() {
    let dir = hello_arm64_copy("chain-arm64-debian-kernel");
    // Debian's kernel as Debian ships it: its only signature chains to Debian's CA, which
    // Microsoft's UEFI CA signed; the device's db holds the vendor's certificate only.
    let debian = std::fs::read(arm64_kernel().0).unwrap();
    let key = signing_key(&scratch().join("keys/image.key"));
    let slot = recompose(&dir.join("slot.img"), "0.1.0", Some(&debian), &key);
    install_bytes(&dir.join("disk.img"), Slot::A, &slot);
    let console = boot_until(&dir, "limpet-boot: halted");
    for line in [
        "limpet-boot: UEFI Secure Boot: enabled",
        "limpet-boot: slot-a verified: hello 0.1.0 (aarch64)",
        "the firmware refused to load the kernel image",
    ] {
        assert!(console.contains(line), "missing `{line}`:\n{console}");
    }
    assert!(!console.contains("limpet-init"), "{console}");
}

#[test]
fn an_aarch64_trial_with_a_flipped_kernel_byte_is_rolled_back() {
    let dir = hello_arm64_copy("chain-arm64-flip-kernel");
    let disk = dir.join("disk.img");
    let key = signing_key(&scratch().join("keys/image.key"));
    let slot = std::fs::read(dir.join("slot.img")).unwrap();
    let kernel_offset = limpet_image::slot::open(&slot)
        .unwrap()
        .layout
        .kernel_offset;
    // Release 0.2.0, vendor-signed, on trial in slot B, with one byte of its kernel flipped.
    let v2 = recompose(&dir.join("slot.img"), "0.2.0", None, &key);
    install_bytes(&disk, Slot::B, &v2);
    mark_trial(&disk, Slot::B, "0.2.0");
    flip(&disk, "slot-b", kernel_offset + 4096);
    let console = boot_until(&dir, UP);
    for line in [
        "limpet-boot: trial slot B refused",
        "kernel at offset",
        "does not match its sha256",
        "limpet-boot: slot-a verified: hello 0.1.0 (aarch64)",
        "loader started slot A (boot counted by the loader)",
    ] {
        assert!(console.contains(line), "missing `{line}`:\n{console}");
    }
    with_state(&disk, |s| {
        assert!(s.trial().is_none(), "{console}");
        let f = s.last_failure().unwrap();
        assert_eq!(
            (f.slot, f.reason, f.version.to_string()),
            (Slot::B, FailureReason::VerifyFailed, "0.2.0".into())
        );
    });
}

/// An extra kernel parameter of the update's, which the release the device runs lacks.
const V2_KERNEL_PARAM: &str = "init_on_free=1";

/// The update agent on aarch64 (its libzstd cross-compiled against musl): a device runs
/// 0.1.0; 0.2.0, whose kernel command line and PID 1 differ, is published (with a delta);
/// the agent fetches it over the restricted user network, PID 1 verifies and stages it, the
/// device reboots, the loader starts 0.2.0's kernel with its command line and its PID 1,
/// and the health gate commits it.
#[test]
fn an_aarch64_device_updates_its_whole_slot_through_its_agent() {
    let f = fixture("update-repo-arm64");
    let release = |version: &str, edit: fn(String) -> String| {
        hello_release_edited("update-arm64", version, &f.update_table(), |m| {
            edit(arm64_manifest(m))
        })
    };
    let v1 = release("0.1.0", |m| m);
    let v2 = release("0.2.0", |m| {
        m.replace(
            "[kernel]\n",
            &format!("[kernel]\ncmdline = \"{V2_KERNEL_PARAM}\"\n"),
        )
    });
    let dir = mixed_output("update-arm64-device", &v1, &v1, &[]);
    let disk = dir.join("disk.img");
    f.publish(&v1);
    // Printed on failure: whether the publisher made the delta, and if not why.
    let published = f.publish_report(&v2);
    let (_server, port) = f.serve();
    require_tool("qemu-system-aarch64");

    let console = boot_with_repo(&dir, port, None, BOOT_DEADLINE_SECS);
    for line in [
        "limpet-init: update 0.2.0 verified and staged as a trial in slot b",
        "update agent: reboot into the staged trial",
    ] {
        assert!(console.contains(line), "missing `{line}`:\n{console}");
    }
    let staged = staged_line(&console);
    println!("aarch64 0.1.0 -> 0.2.0 on the device: {staged}");
    assert!(
        staged.contains("a delta from 0.1.0"),
        "{console}\nlimpet publish of 0.2.0:\n{published}"
    );
    with_state(&disk, |s| {
        assert_eq!(s.trial().unwrap().version.to_string(), "0.2.0");
    });

    let console = boot_with_repo(&dir, port, Some("trial committed"), BOOT_DEADLINE_SECS);
    for line in [
        "booting slot B (trial",
        &format!("limpet-boot: starting the kernel of slot B: console=ttyAMA0 panic=-1 quiet {V2_KERNEL_PARAM} limpet.watchdog=60 limpet.slot=b limpet.counted=1"),
        "limpet-init 0.1.0 of release hello 0.2.0 (aarch64) starting",
        "trial committed, floor now 0.2.0",
    ] {
        assert!(console.contains(line), "missing `{line}`:\n{console}");
    }
    with_state(&disk, |s| {
        assert_eq!(s.committed_slot(), Slot::B);
        assert_eq!(s.floor().to_string(), "0.2.0");
    });

    // 0.3.0, vendor-signed, whose kernel panics at boot: staged, its two trial boots
    // spent on panics, then the loader returns to 0.2.0 by itself, and the agent leaves
    // 0.3.0 alone.
    let v3 = panicking_release(&v2, "0.3.0");
    f.publish(&v3);
    let console = boot_with_repo(&dir, port, None, BOOT_DEADLINE_SECS);
    assert!(
        console.contains("limpet-init: update 0.3.0 verified and staged as a trial in slot a"),
        "{console}"
    );
    for left in (0..2u8).rev() {
        let console = boot_to_panic(&dir, BOOT_DEADLINE_SECS);
        for line in [
            &format!("booting slot A (trial, {left} boot(s) left after this one)"),
            "Kernel panic",
        ] {
            assert!(console.contains(line), "missing `{line}`:\n{console}");
        }
    }
    let console = boot_with_repo(
        &dir,
        port,
        Some("[limpet-update] up to date"),
        BOOT_DEADLINE_SECS,
    );
    for line in ["spent its boots", "slot-b (hello 0.2.0) mounted read-only"] {
        assert!(console.contains(line), "missing `{line}`:\n{console}");
    }
    assert!(!console.contains("staged as a trial"), "{console}");
    with_state(&disk, |s| {
        assert_eq!(s.committed_slot(), Slot::B);
        assert!(s.trial().is_none());
        let failure = s.last_failure().unwrap();
        assert_eq!(
            (failure.slot, failure.reason, failure.version.to_string()),
            (Slot::A, FailureReason::BootCountExhausted, "0.3.0".into())
        );
    });
}

#[test]
fn an_aarch64_vendor_signed_release_below_the_floor_is_refused_by_the_loader() {
    let dir = hello_arm64_copy("chain-arm64-rollback");
    let disk = dir.join("disk.img");
    let key = signing_key(&scratch().join("keys/image.key"));
    // The state expects 0.2.0 on trial; slot B holds an old release, validly signed.
    let v0 = recompose(&dir.join("slot.img"), "0.0.9", None, &key);
    install_bytes(&disk, Slot::B, &v0);
    mark_trial(&disk, Slot::B, "0.2.0");
    let console = boot_until(&dir, UP);
    for line in [
        "version 0.0.9 is below the floor 0.1.0",
        "loader started slot A (boot counted by the loader)",
    ] {
        assert!(console.contains(line), "missing `{line}`:\n{console}");
    }
    assert!(!console.contains("hello 0.0.9) mounted"), "{console}");
}
