//! The device's boot chain in real QEMU (TCG): OVMF with the vendor's PK, KEK and db
//! enrolled and Secure Boot enforcing starts Limpet's signed loader, which counts the boot,
//! verifies the whole-image slot (header signature, floor, every block of the app, the
//! kernel, the initramfs, the command line) and starts its kernel, whose PID 1 takes the
//! hand-over. Each attack on the chain must fail in exactly the documented way: the
//! firmware refuses what db did not sign, the loader refuses what the image key did not
//! sign, and a trial it refuses is rolled back for the committed slot.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::disk::*;
use common::*;
use limpet_state::{FailureReason, Slot};

/// Safety net for one TCG boot through the firmware on a loaded 2-core machine.
const BOOT_DEADLINE_SECS: &str = "400";

/// The example's task is up: the boot went through.
const UP: &str = "[hello] hello from limpet: beat 1";
/// What OVMF prints when no boot option starts (every image refused).
const NOTHING_BOOTS: &str = "No bootable option or device was found";
/// What the loader prints when nothing verifies.
const HALTED: &str = "limpet-boot: halted";

/// Boots `dir` through the chain, keeping its disk and firmware writes, until a console
/// line contains `until`; returns the console.
fn boot_until(dir: &Path, until: &str) -> String {
    require_tool("qemu-system-x86_64");
    boot_until_line(dir, until, BOOT_DEADLINE_SECS)
}

/// A copy of the example's output directory.
fn hello_copy(name: &str) -> PathBuf {
    let (out, _) = hello_build();
    mixed_output(name, out, out, &[])
}

/// The vendor's image key (the one `hello_build` signs with).
fn vendor_key() -> ed25519_dalek::SigningKey {
    signing_key(&scratch().join("keys/image.key"))
}

/// Where the parts of the example's slot lie.
fn layout() -> limpet_image::slot::SlotLayout {
    let bytes = std::fs::read(hello_build().0.join("slot.img")).unwrap();
    limpet_image::slot::open(&bytes).unwrap().layout
}

#[test]
fn the_chain_boots_with_secure_boot_enforcing_and_counts_each_boot_once() {
    let dir = hello_copy("chain-boot");
    let disk = dir.join("disk.img");
    for boot in 1..=2u64 {
        let console = boot_until(&dir, UP);
        for line in [
            "limpet-boot: UEFI Secure Boot: enabled",
            &format!("limpet-boot: boot {boot} counted"),
            "limpet-boot: slot-a verified: hello 0.1.0 (x86_64)",
            "limpet-boot: hardware watchdog: i6300ESB at 0000:00:02.0 armed for 60 s, locked on until the next reset",
            "limpet-boot: starting the kernel of slot A: console=ttyS0 panic=-1 quiet limpet.watchdog=60 limpet.slot=a limpet.counted=1",
            "limpet-init: watchdog /dev/watchdog0: 60 s timeout, petted every 15000 ms",
            "limpet-init: state: committed slot A (0.1.0), floor 0.1.0, loader started slot A (boot counted by the loader)",
            "limpet-init: slot-a (hello 0.1.0) mounted read-only",
        ] {
            assert!(console.contains(line), "boot {boot}: missing `{line}`:\n{console}");
        }
        // Counted by the loader only: PID 1 did not count it a second time.
        assert_eq!(with_state(&disk, |s| s.boot_count()), boot, "{console}");
    }
}

#[test]
fn a_loader_signed_by_another_key_is_refused_by_the_firmware() {
    let dir = hello_copy("chain-other-loader");
    let (other, _) = other_key_build();
    // The EFI system partition of a build signed with another vendor's db key.
    let (esp, size) = partition(&other.join("disk.img"), "esp");
    let mut bytes = vec![0u8; usize::try_from(size).unwrap()];
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(other.join("disk.img")).unwrap();
        f.seek(SeekFrom::Start(esp)).unwrap();
        f.read_exact(&mut bytes).unwrap();
    }
    patch(
        &dir.join("disk.img"),
        partition(&dir.join("disk.img"), "esp").0,
        &bytes,
    );
    let console = boot_until(&dir, NOTHING_BOOTS);
    assert!(console.contains("Access Denied"), "{console}");
    assert!(!console.contains("limpet-boot:"), "{console}");
    assert!(!console.contains("limpet-init"), "{console}");
}

#[test]
fn a_kernel_signed_by_another_db_key_is_refused_by_the_firmware() {
    let dir = hello_copy("chain-other-kernel");
    let (other, _) = other_key_build();
    // Signed by the vendor's image key, so the loader accepts the slot; its kernel carries
    // another vendor's db signature, so the firmware refuses to load it.
    let kernel = std::fs::read(other.join("kernel")).unwrap();
    let slot = recompose(&dir.join("slot.img"), "0.1.0", Some(&kernel), &vendor_key());
    install_bytes(&dir.join("disk.img"), Slot::A, &slot);
    let console = boot_until(&dir, HALTED);
    assert!(
        console.contains("limpet-boot: slot-a verified"),
        "{console}"
    );
    assert!(
        console.contains("the firmware refused to load the kernel image"),
        "{console}"
    );
    assert!(!console.contains("limpet-init"), "{console}");
}

/// Slot B holds release 0.2.0 (the example recomposed and signed by the vendor) on trial,
/// with the byte at `offset` of the slot flipped: the loader refuses it, records the
/// rollback and starts slot A. Returns the console.
fn trial_with_flipped_byte(name: &str, offset: u64) -> String {
    let dir = hello_copy(name);
    let disk = dir.join("disk.img");
    let v2 = recompose(&dir.join("slot.img"), "0.2.0", None, &vendor_key());
    install_bytes(&disk, Slot::B, &v2);
    mark_trial(&disk, Slot::B, "0.2.0");
    flip(&disk, "slot-b", offset);
    let console = boot_until(&dir, UP);
    assert!(
        console.contains("limpet-boot: trial slot B refused"),
        "{console}"
    );
    assert!(
        console.contains("limpet-boot: slot-a verified: hello 0.1.0"),
        "{console}"
    );
    assert!(
        console.contains("loader started slot A (boot counted by the loader)"),
        "{console}"
    );
    with_state(&disk, |s| {
        assert!(s.trial().is_none(), "{console}");
        let f = s.last_failure().unwrap();
        assert_eq!((f.slot, f.reason), (Slot::B, FailureReason::VerifyFailed));
        assert_eq!(f.version.to_string(), "0.2.0");
    });
    console
}

#[test]
fn a_trial_with_a_flipped_kernel_byte_starts_nothing_from_its_slot() {
    let console = trial_with_flipped_byte("chain-flip-kernel", layout().kernel_offset + 4096);
    assert!(
        console.contains("kernel at offset") && console.contains("does not match its sha256"),
        "{console}"
    );
}

#[test]
fn a_trial_with_a_flipped_initramfs_byte_starts_nothing_from_its_slot() {
    let console = trial_with_flipped_byte("chain-flip-initramfs", layout().initramfs_offset + 100);
    assert!(
        console.contains("initramfs at offset") && console.contains("does not match its sha256"),
        "{console}"
    );
}

#[test]
fn a_trial_with_a_flipped_command_line_byte_starts_nothing_from_its_slot() {
    // The command line is the header field at byte 408.
    let console = trial_with_flipped_byte("chain-flip-cmdline", layout().header_offset + 410);
    assert!(
        console.contains("header signature does not verify"),
        "{console}"
    );
}

#[test]
fn a_trial_with_a_flipped_app_byte_starts_nothing_from_its_slot() {
    // A byte of the squashfs past its superblock: only the dm-verity tree notices.
    let console = trial_with_flipped_byte("chain-flip-app", 5000);
    assert!(console.contains("dm-verity check failed"), "{console}");
}

#[test]
fn a_vendor_signed_release_below_the_floor_is_refused_by_the_loader() {
    let dir = hello_copy("chain-rollback-attack");
    let disk = dir.join("disk.img");
    // The state expects 0.2.0 on trial; slot B holds an old release, validly signed.
    let v0 = recompose(&dir.join("slot.img"), "0.0.9", None, &vendor_key());
    install_bytes(&disk, Slot::B, &v0);
    mark_trial(&disk, Slot::B, "0.2.0");
    let console = boot_until(&dir, UP);
    assert!(
        console.contains("version 0.0.9 is below the floor 0.1.0"),
        "{console}"
    );
    assert!(
        console.contains("loader started slot A (boot counted by the loader)"),
        "{console}"
    );
    assert!(!console.contains("hello 0.0.9) mounted"), "{console}");
}

#[test]
fn a_trial_whose_kernel_panics_spends_its_boots_and_is_never_tried_again() {
    let dir = hello_copy("chain-panic");
    let disk = dir.join("disk.img");
    // Release 0.2.0, vendor-signed, whose kernel cannot find its init: it panics at boot.
    let v2 = recompose_with(
        &dir.join("slot.img"),
        "0.2.0",
        None,
        Some("console=ttyS0 panic=-1 quiet rdinit=/no-such-init"),
        &vendor_key(),
    );
    install_bytes(&disk, Slot::B, &v2);
    mark_trial(&disk, Slot::B, "0.2.0");
    // Three boots allowed: each is counted by the loader before the kernel starts.
    for left in (0..3u8).rev() {
        let console = boot_to_panic(&dir, BOOT_DEADLINE_SECS);
        assert!(
            console.contains(&format!(
                "booting slot B (trial, {left} boot(s) left after this one)"
            )),
            "{console}"
        );
        assert!(console.contains("Kernel panic"), "{console}");
    }
    // The fourth boot: the trial has no boots left; the loader rolls it back by itself.
    boots_back_from_spent_trial(&dir);
}

/// Boots `dir`, whose trial of 0.2.0 in slot B has spent its boots: the loader rolls it
/// back by itself, records why, and 0.2.0 can never be marked again.
fn boots_back_from_spent_trial(dir: &Path) {
    let console = boot_until(dir, UP);
    assert!(console.contains("spent its boots"), "{console}");
    assert!(
        console.contains("loader started slot A (boot counted by the loader)"),
        "{console}"
    );
    let refused = with_state(&dir.join("disk.img"), |s| {
        assert!(s.trial().is_none());
        let f = s.last_failure().unwrap();
        assert_eq!(
            (f.slot, f.reason, f.version.to_string()),
            (Slot::B, FailureReason::BootCountExhausted, "0.2.0".into())
        );
        s.mark_trial(Slot::B, limpet_state::Version::parse("0.2.0").unwrap(), 3)
    });
    // The failed version is never tried again.
    assert!(
        matches!(
            refused,
            Err(limpet_state::TransitionError::FailedBefore { .. })
        ),
        "{refused:?}"
    );
}

#[test]
fn a_committed_slot_that_does_not_verify_halts_the_device() {
    let dir = hello_copy("chain-halt");
    flip(
        &dir.join("disk.img"),
        "slot-a",
        layout().kernel_offset + 4096,
    );
    let console = boot_until(&dir, "nothing verified can boot");
    assert!(console.contains(HALTED), "{console}");
    assert!(!console.contains("limpet-init"), "{console}");
    assert!(!console.contains("starting the kernel"), "{console}");
}

#[test]
fn a_trial_that_hangs_is_reset_by_the_watchdog_and_rolled_back() {
    let dir = hello_copy("chain-hang");
    let disk = dir.join("disk.img");
    // Release 0.2.0, vendor-signed, whose kernel cannot find its init and, with `panic=0`,
    // waits forever after its panic: nothing but the watchdog the loader arms (30 s, from
    // the signed command line) can end that boot. (30 s, not less: under TCG on a loaded
    // machine the kernel may take over 10 s to reach its panic, and the watchdog must not
    // end the boot before the panic is on the console.)
    let v2 = recompose_with(
        &dir.join("slot.img"),
        "0.2.0",
        None,
        Some("console=ttyS0 panic=0 quiet rdinit=/no-such-init limpet.watchdog=30"),
        &vendor_key(),
    );
    install_bytes(&disk, Slot::B, &v2);
    mark_trial_with(&disk, Slot::B, "0.2.0", 1);
    // The hung boot ends by itself (QEMU runs with `-no-reboot`: the watchdog's reset
    // ends it) instead of running into the run's deadline.
    let console = boot_to_panic(&dir, BOOT_DEADLINE_SECS);
    assert!(
        console.contains("booting slot B (trial, 0 boot(s) left after this one)"),
        "{console}"
    );
    assert!(
        console.contains(
            "limpet-boot: hardware watchdog: i6300ESB at 0000:00:02.0 armed for 30 s, locked on until the next reset"
        ),
        "{console}"
    );
    assert!(console.contains("Kernel panic"), "{console}");
    assert!(!console.contains("limpet-init"), "{console}");
    // The next boot: the trial has no boots left, the loader rolls it back.
    boots_back_from_spent_trial(&dir);
}

#[test]
fn pid1_pets_the_watchdog_so_a_healthy_device_outlives_its_timeout() {
    let dir = hello_copy("chain-pet");
    // The committed release, signed again with a 20 s watchdog.
    let v1 = recompose_with(
        &dir.join("slot.img"),
        "0.1.0",
        None,
        Some("console=ttyS0 panic=-1 quiet limpet.watchdog=20"),
        &vendor_key(),
    );
    install_bytes(&dir.join("disk.img"), Slot::A, &v1);
    // The task's 13th line comes 36 s after its first: a reset on the way would end the
    // run (`-no-reboot`) before it.
    let console = boot_until(&dir, "[hello] hello from limpet: beat 12,");
    for line in [
        "limpet-boot: hardware watchdog: i6300ESB at 0000:00:02.0 armed for 20 s, locked on until the next reset",
        "limpet-init: watchdog /dev/watchdog0: 20 s timeout, petted every 5000 ms",
    ] {
        assert!(console.contains(line), "missing `{line}`:\n{console}");
    }
    assert_eq!(
        console.matches("limpet-boot: version").count(),
        1,
        "{console}"
    );
}
