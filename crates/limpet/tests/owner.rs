//! Owner mode in real QEMU, through the device's whole chain (docs/owner-mode.md), one
//! device through the whole story in three boots. The vendor's image has two more tasks:
//! `asker`, granted `rights = ["owner-request"]`, asks PID 1 to enter owner mode with the
//! owner's key; `intruder`, the same program without the right, tries the same.
//! 1. an owner mode request written into the state partition from the host (what root on
//!    the device, or anyone with the disk, can do) and an owner-signed release as slot B's
//!    trial, nobody at the console: the loader shows the request, waits, drops it; the
//!    owner image is refused for its key and the vendor's slot boots; the data partition
//!    (an identity, a marker file) is untouched. Then the running device asks by itself:
//!    PID 1 writes `asker`'s request into the block (read back from the disk after the
//!    boot) and `intruder` finds no owner-request socket in its sandbox;
//! 2. the device's own request, and the owner types the code at the serial console: the
//!    loader records owner mode, wipes the data partition (marker and identity gone),
//!    boots the owner-signed slot and prints the owner key's fingerprint; PID 1 writes the
//!    empty filesystem its initramfs carries onto the wiped partition and makes a new
//!    identity there, on the disk;
//! 3. a request to leave, confirmed: the loader wipes again, returns to vendor mode and
//!    refuses the owner-signed slot.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::disk::*;
use common::*;
use limpet_state::Slot;

/// Safety net for one TCG boot on a loaded 2-core machine (the loader's confirmation wait
/// included).
const BOOT_DEADLINE_SECS: &str = "360";
/// The loader's question, after which the owner types.
const QUESTION: &str = "to confirm, at this console type";
/// The task's first line: the device is up.
const UP: &str = "hello from limpet: beat 0";
/// The granted task's line once PID 1 has written its request.
const ASKED: &str = "[asker] owner-ask: PID 1 wrote the request";

/// `limpet run DIR --json --persist` with `args`; the summary's outcome must be `outcome`.
fn boot(dir: &Path, args: &[&str], outcome: &str) -> String {
    require_tool("qemu-system-x86_64");
    let out = run(
        limpet()
            .arg("run")
            .arg(dir)
            .args(["--json", "--persist", "--timeout", BOOT_DEADLINE_SECS])
            .args(args),
        true,
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let console = stderr(&out);
    assert_eq!(summary["outcome"], outcome, "{summary}\n{console}");
    console
}

fn has(console: &str, text: &str) {
    assert!(console.contains(text), "no {text:?} in\n{console}");
}

/// `limpet owner ARGS`, which must succeed; its stdout.
fn owner(args: &[&std::ffi::OsStr]) -> String {
    stdout(&run(limpet().arg("owner").args(args), true))
}

/// The fingerprint of the identity PID 1 made at the boot whose console is `console`.
fn identity_made(console: &str) -> String {
    let marker = "identity: made a new one at this boot: fingerprint ";
    let at = console
        .find(marker)
        .unwrap_or_else(|| panic!("no new identity at this boot:\n{console}"));
    console[at + marker.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// The `data` partition's bytes.
fn data_bytes(disk: &Path) -> Vec<u8> {
    let (offset, size) = partition(disk, "data");
    let bytes = std::fs::read(disk).unwrap();
    bytes[usize::try_from(offset).unwrap()..usize::try_from(offset + size).unwrap()].to_vec()
}

/// `debugfs` on the data partition's ext4 (`-w` when `write`): its output.
fn debugfs(disk: &Path, request: &str, write: bool) -> std::process::Output {
    require_tool("debugfs");
    let (offset, _) = partition(disk, "data");
    let mut cmd = Command::new("debugfs");
    if write {
        cmd.arg("-w");
    }
    cmd.arg("-R")
        .arg(request)
        .arg(format!("{}?offset={offset}", disk.display()))
        .output()
        .unwrap()
}

#[test]
fn owner_mode_needs_the_press_wipes_on_entry_and_exit_and_boots_the_owners_image() {
    let (owner_out, owner_pub) = other_key_build();
    let owner_hex: String = limpet_build_key(owner_pub)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // The vendor's release with the two asking tasks (module doc).
    let vendor_out = &hello_release_edited("owner-asker", "0.1.0", "", |manifest| {
        let task = |name: &str, rights: &str| {
            format!(
                "\n[[task]]\nname = \"{name}\"\npackage = \"contain\"\n\
                 args = [\"owner-ask\", \"enter\", \"{owner_hex}\"]\nmemory = \"8MiB\"\n\
                 cpu = \"5%\"\npids = 2\nrestart = \"never\"\nsyscalls = \"network\"\n{rights}"
            )
        };
        format!(
            "{manifest}{}{}",
            task("asker", "rights = [\"owner-request\"]\n"),
            task("intruder", "")
        )
    });
    let device = mixed_output("owner-device", vendor_out, vendor_out, &[]);
    let disk = device.join("disk.img");

    // The owner's release: the owner's build (its initramfs carries the owner's key for
    // PID 1), with the vendor's kernel, whose PE signature the firmware's db accepts
    // (docs/owner-mode.md: the firmware's Secure Boot check is not the loader's to waive),
    // signed with the owner's image key.
    let vendor_slot = std::fs::read(vendor_out.join("slot.img")).unwrap();
    let vendor_kernel = limpet_image::slot::open(&vendor_slot)
        .unwrap()
        .kernel
        .to_vec();
    let owner_key = signing_key(&scratch().join("other-keys/image.key"));
    // A version refused once is never marked as a trial again: each try is a new release.
    let install_owner_release = |version: &str| {
        let slot = recompose(
            &owner_out.join("slot.img"),
            version,
            Some(&vendor_kernel),
            &owner_key,
        );
        install_bytes(&disk, Slot::B, &slot);
        mark_trial(&disk, Slot::B, version);
    };

    let printed = owner(&[
        "fingerprint".as_ref(),
        "--key".as_ref(),
        owner_pub.as_os_str(),
    ]);
    let fingerprint = printed.split_whitespace().next().unwrap().to_owned();
    assert_eq!(fingerprint.len(), 64, "{printed}");
    let code = &fingerprint[..8];
    let request = || {
        owner(&[
            "request".as_ref(),
            "--key".as_ref(),
            owner_pub.as_os_str(),
            "--disk".as_ref(),
            disk.as_os_str(),
        ])
    };

    // 1. The request without the press: nothing changes.
    has(&request(), code);
    install_owner_release("0.2.0");
    let console = boot(
        &device,
        &[
            "--powerdown-on",
            UP,
            "--powerdown-on",
            ASKED,
            "--powerdown-on",
            "[intruder] owner-ask:",
        ],
        "powered-off",
    );
    has(
        &console,
        &format!("OWNER REQUEST: enter owner mode with the owner key {fingerprint}"),
    );
    has(
        &console,
        "owner request NOT confirmed: dropped, mode unchanged (vendor)",
    );
    has(&console, "mode: vendor (only the vendor's image key)");
    has(&console, "trial slot B refused: header signed by key");
    has(&console, "slot-a verified");
    let first_identity = identity_made(&console);
    assert!(!console.contains("data partition wiped"), "{console}");
    // The running device asked by itself: the granted task through PID 1, which wrote the
    // block the loader reads; the task without the right found no socket to ask on.
    has(&console, ASKED);
    has(
        &console,
        &format!(
            "owner request from task asker written for the boot loader: enter owner mode \
             with the owner key {fingerprint}"
        ),
    );
    has(
        &console,
        "[intruder] owner-ask: cannot reach /run/limpet/owner.sock",
    );
    assert!(
        !console.contains("owner request from task intruder"),
        "{console}"
    );
    assert_eq!(
        owner_request_on(&disk),
        Some(limpet_state::owner::Request::Enter {
            key: limpet_build_key(owner_pub)
        })
    );
    // A marker beside the identity the boot made.
    let marker = scratch().join("owner-marker");
    std::fs::write(&marker, b"the owner's data\n").unwrap();
    let out = debugfs(&disk, &format!("write {} marker", marker.display()), true);
    assert!(out.status.success(), "{out:?}");
    for file in ["/marker", "/.limpet/identity/device.key"] {
        let out = debugfs(&disk, &format!("cat {file}"), false);
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "{file} missing: {out:?}"
        );
    }

    // 2. The device's own request with the press: owner mode, the data partition wiped,
    // the owner's image boots with its fingerprint on the console.
    install_owner_release("0.2.1");
    let console = boot(
        &device,
        &["--type-on", QUESTION, "--type", code, "--powerdown-on", UP],
        "powered-off",
    );
    has(&console, "owner request confirmed: mode is now owner");
    has(&console, "data partition wiped");
    has(
        &console,
        &format!("OWNER MODE (owner): images signed by the owner key {fingerprint} boot"),
    );
    has(
        &console,
        "slot-b verified: hello 0.2.1 (x86_64), signed by the OWNER's key",
    );
    // The wiped partition gets the slot's empty filesystem back at this boot: /data is on
    // the disk again, without the marker, with a new identity.
    has(
        &console,
        "was WIPED: wrote the slot's empty filesystem onto it",
    );
    has(&console, "mounted on /data (nosuid,nodev,noexec)");
    assert!(!console.contains("is a tmpfs for this boot"), "{console}");
    let second_identity = identity_made(&console);
    assert_ne!(
        first_identity, second_identity,
        "the identity survived the wipe"
    );
    let out = debugfs(&disk, "cat /marker", false);
    assert!(
        out.stdout.is_empty(),
        "the marker survived the wipe: {out:?}"
    );
    let out = debugfs(&disk, "cat /.limpet/identity/device.key", false);
    assert!(
        out.status.success() && out.stdout.len() == 112,
        "the new identity is not on the disk: {out:?}"
    );

    // 3. Leaving owner mode, confirmed: wiped again, the owner's image refused.
    let (data_at, _) = partition(&disk, "data");
    patch(&disk, data_at + 8192, b"written in owner mode");
    owner(&["leave".as_ref(), "--disk".as_ref(), disk.as_os_str()]);
    let console = boot(
        &device,
        &[
            "--type-on",
            QUESTION,
            "--type",
            code,
            "--exit-on",
            "slot B refused",
        ],
        "matched",
    );
    has(
        &console,
        &format!("OWNER REQUEST: leave owner mode (owner key {fingerprint})"),
    );
    has(&console, "owner request confirmed: mode is now vendor");
    has(&console, "data partition wiped");
    has(&console, "mode: vendor (only the vendor's image key)");
    has(&console, "slot B refused: header signed by key");
    assert!(data_bytes(&disk).iter().all(|&b| b == 0));
}

#[test]
fn owner_commands_explain_themselves_write_the_loaders_block_and_refuse_bad_input() {
    let help = stdout(&run(limpet().args(["owner", "--help"]), true));
    for command in ["request", "leave", "fingerprint"] {
        assert!(help.contains(command), "{help}");
    }
    let help = stdout(&run(limpet().args(["run", "--help"]), true));
    assert!(
        help.contains("--type-on") && help.contains("--type <TEXT>"),
        "{help}"
    );

    let (_, public) = keys_in(&scratch().join("owner-cli-keys"));
    let block = scratch().join("owner-request.bin");
    let out = owner(&[
        "request".as_ref(),
        "--key".as_ref(),
        public.as_os_str(),
        "--out".as_ref(),
        block.as_os_str(),
    ]);
    assert!(out.contains("owner mode requested for the key"), "{out}");
    let key = limpet_build_key(&public);
    assert_eq!(
        limpet_state::owner::Request::parse_block(&std::fs::read(&block).unwrap()).unwrap(),
        Some(limpet_state::owner::Request::Enter { key })
    );
    owner(&["leave".as_ref(), "--out".as_ref(), block.as_os_str()]);
    assert_eq!(
        limpet_state::owner::Request::parse_block(&std::fs::read(&block).unwrap()).unwrap(),
        Some(limpet_state::owner::Request::Leave)
    );

    // Not a key; no target; a disk without a GPT: refused, each saying why.
    let not_a_key = scratch().join("owner-not-a-key.pub");
    std::fs::write(&not_a_key, "hello\n").unwrap();
    let out = run(
        limpet()
            .args(["owner", "request", "--key"])
            .arg(&not_a_key)
            .arg("--out")
            .arg(&block),
        false,
    );
    assert!(
        stderr(&out).contains(&not_a_key.display().to_string()),
        "{}",
        stderr(&out)
    );
    let out = run(
        limpet().args(["owner", "request", "--key"]).arg(&public),
        false,
    );
    assert!(stderr(&out).contains("--disk"), "{}", stderr(&out));
    let not_a_disk = scratch().join("owner-not-a-disk.img");
    std::fs::write(&not_a_disk, vec![0u8; 8192]).unwrap();
    let out = run(
        limpet().args(["owner", "leave", "--disk"]).arg(&not_a_disk),
        false,
    );
    assert!(
        stderr(&out).contains("cannot find the state partition"),
        "{}",
        stderr(&out)
    );
}

/// The owner request block on `disk`'s state partition, parsed.
fn owner_request_on(disk: &Path) -> Option<limpet_state::owner::Request> {
    use limpet_state::owner::{Request, REQUEST_BLOCK, REQUEST_OFFSET};
    use std::os::unix::fs::FileExt;
    let (state_at, _) = partition(disk, "state");
    let mut block = vec![0u8; REQUEST_BLOCK];
    std::fs::File::open(disk)
        .unwrap()
        .read_exact_at(&mut block, state_at + REQUEST_OFFSET)
        .unwrap();
    Request::parse_block(&block).unwrap()
}

/// The raw bytes of the image public key in `path` (SPKI PEM).
fn limpet_build_key(path: &Path) -> [u8; 32] {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    ed25519_dalek::VerifyingKey::from_public_key_pem(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .to_bytes()
}
