//! Owner handover end to end in real QEMU (TCG), through the device's whole chain (firmware
//! with Secure Boot, Limpet's loader, PID 1, the update agent) with real repositories served
//! to the guest (docs/end-of-life.md#owner-handover), one device in four boots:
//! 1. vendor v1 runs and checks its vendor's repository: the signed time it verifies
//!    raises the device's time floor past the handover statement's date;
//! 2. the owner serves their own repository at the repository's address, their request
//!    beside it: the vendor's metadata fails there, the agent fetches the request, finds it
//!    holds and asks the boot loader to hand the device over (nothing else moves);
//! 3. the loader asks at the console, the owner types the code: the data partition is
//!    wiped, the device is handing over; the agent fetches the request again, enrols, and
//!    installs the owner's v2 (signed by the owner's image key) from the owner's repository;
//! 4. v2 boots as a trial and commits; the vendor, with its old keys, publishes v3 and
//!    its repository answers again: the owner's v2 refuses its metadata.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::disk::*;
use common::repo::*;
use common::*;
use limpet_state::Slot;

/// Safety net for one TCG boot (an update, or the loader's confirmation wait) on a loaded
/// 2-core machine.
const BOOT_DEADLINE_SECS: &str = "420";
/// The loader's question, after which the owner types.
const QUESTION: &str = "to confirm, at this console type";
/// The statement's date: after the build time (SOURCE_DATE_EPOCH 2023-11-14), so the
/// device's floor passes it only with its vendor's signed time.
const AFTER: &str = "2024-06-01";
/// The support window both releases declare (the device keeps a time record only with one).
const LIFECYCLE: &str = "\n[lifecycle]\nsupport_until = \"2040-12-31\"\n";

/// examples/hello as `version`, `update` and [`LIFECYCLE`] appended, built with `key`
/// into `scratch()/handover-<version>`.
fn build_release(version: &str, update: &str, key: &Path) -> PathBuf {
    // Inside the repository, so the build finds the cargo workspace with the `hello` package.
    let dir = repo_root()
        .join("target/limpet-test-manifests")
        .join(format!("handover-{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = std::fs::read_to_string(hello_manifest())
        .unwrap()
        .replace("version = \"0.1.0\"", &format!("version = \"{version}\""))
        + update
        + LIFECYCLE;
    let path = dir.join("limpet.toml");
    std::fs::write(&path, manifest).unwrap();
    let out = scratch().join(format!("handover-{version}"));
    build(&path, &out, key);
    out
}

/// One boot through the chain with the repository on `port` forwarded as the device's
/// repository, keeping its writes; `args` add to `limpet run`. It must end cleanly (a
/// power-off asked by `--powerdown-on`, or the reboot into a trial, which QEMU's
/// `-no-reboot` turns into an exit): [`boot_with_repo_args`]. Returns the console.
fn boot(dir: &Path, port: u16, args: &[&str]) -> String {
    require_tool("qemu-system-x86_64");
    boot_with_repo_args(dir, port, args, BOOT_DEADLINE_SECS)
}

fn has(console: &str, text: &str) {
    assert!(console.contains(text), "no {text:?} in\n{console}");
}

/// The agent's line containing `text`.
fn agent_line(console: &str, text: &str) -> String {
    console
        .lines()
        .find(|l| l.starts_with("[limpet-update] ") && l.contains(text))
        .unwrap_or_else(|| panic!("the agent logged no {text:?}:\n{console}"))
        .to_owned()
}

#[test]
fn a_device_is_handed_to_its_owner_and_refuses_its_vendor_afterwards() {
    let started = std::time::Instant::now();
    // The vendor: its repository, its image key, v1 as the device ships it.
    let vendor = fixture("handover-vendor-repo");
    let (vendor_key, _) = keys_in(&scratch().join("keys"));
    let v1 = build_release("0.1.0", &vendor.update_table(), &vendor_key);
    vendor.publish(&v1);
    let statement = scratch().join("handover-statement.json");
    run(
        limpet()
            .arg("handover")
            .arg(&vendor.repo)
            .arg("--keys")
            .arg(&vendor.tuf_keys)
            .args(["--device", "hello", "--after", AFTER, "-o"])
            .arg(&statement),
        true,
    );

    // The owner: their own repository and image key (`limpet repo init`, `limpet keys`),
    // their v2 built with their key and their root as `[update] root`, on the same
    // repository address the device's network policy allows.
    let (owner_key, owner_pub) = keys_in(&scratch().join("handover-owner-keys"));
    let owner = Fixture {
        image_pub: owner_pub.clone(),
        ..fixture("handover-owner-repo")
    };
    let owner_out = build_release("0.2.0", &owner.update_table(), &owner_key);
    // The owner's release carries the vendor's kernel, whose PE signature the firmware's
    // db accepts (docs/owner-mode.md: the firmware's Secure Boot check is not the loader's
    // to waive), and is signed with the owner's image key.
    let vendor_slot = std::fs::read(v1.join("slot.img")).unwrap();
    let vendor_kernel = limpet_image::slot::open(&vendor_slot)
        .unwrap()
        .kernel
        .to_vec();
    let v2 = scratch().join("handover-v2.slot");
    std::fs::write(
        &v2,
        recompose(
            &owner_out.join("slot.img"),
            "0.2.0",
            Some(&vendor_kernel),
            &signing_key(&owner_key),
        ),
    )
    .unwrap();
    owner.publish(&v2);
    // The owner's request, served beside their repository.
    run(
        limpet()
            .args(["owner", "handover-request", "--statement"])
            .arg(&statement)
            .arg("--root")
            .arg(&owner.root)
            .arg("--image-key")
            .arg(&owner_pub)
            .arg("-o")
            .arg(owner.repo.join("owner-request.json")),
        true,
    );
    let printed = stdout(&run(
        limpet()
            .args(["owner", "fingerprint", "--key"])
            .arg(&owner_pub),
        true,
    ));
    let fingerprint = printed.split_whitespace().next().unwrap().to_owned();
    let code = &fingerprint[..8];
    let (_vendor_server, vendor_port) = vendor.serve();
    let (_owner_server, owner_port) = owner.serve();
    let device = mixed_output("handover-device", &v1, &v1, &[]);
    let disk = device.join("disk.img");
    println!("builds and repositories: {:?}", started.elapsed());

    // 1. v1 checks its vendor's repository: up to date, and the floor (the build time,
    // 2023-11-14) rises to the repository's signed time, today, past the date.
    let console = boot(
        &device,
        vendor_port,
        &["--powerdown-on", "[limpet-update] up to date"],
    );
    has(&console, "mode: vendor (only the vendor's image key)");
    agent_line(&console, "up to date at 0.1.0");

    // 2. The owner's server answers at the repository's address: the vendor's metadata
    // fails its threshold there, the agent fetches owner-request.json, checks it against
    // the vendor's root and the floor, and asks the loader. The vendor's root stays the
    // trust anchor: the poll fails as the vendor's refresh did.
    let console = boot(
        &device,
        owner_port,
        &["--powerdown-on", "the owner's request holds"],
    );
    agent_line(&console, "the owner's request holds: the boot loader asks");
    assert!(!console.contains("handed over to the owner"), "{console}");

    // 3. The loader asks; the owner checks the fingerprint and types its first 8
    // characters. The data partition is wiped; the device is handing over, PID 1 told so.
    // The agent fetches the request again (its state was wiped), enrols, and installs v2
    // from the owner's repository; PID 1 checks it with the owner's key and the device
    // reboots into it.
    let console = boot(
        &device,
        owner_port,
        &["--type-on", QUESTION, "--type", code],
    );
    has(
        &console,
        &format!("HANDOVER REQUEST: hand this device over for good to the owner key {fingerprint}"),
    );
    has(
        &console,
        "owner request confirmed: mode is now handing over",
    );
    has(&console, "data partition wiped");
    has(
        &console,
        "owner mode: handed over; a new slot must be signed by the OWNER's image key",
    );
    agent_line(
        &console,
        &format!("handed over to the owner (statement for hello after {AFTER}T00:00:00Z, confirmed at the device)"),
    );
    has(
        &console,
        "limpet-init: update 0.2.0 verified and staged as a trial in slot b",
    );
    has(&console, "update agent: reboot into the staged trial");

    // 4. v2, the owner's, boots as a trial and commits. Meanwhile the vendor publishes v3
    // with its old keys (TUF and image key), and its repository answers at the address
    // again: the owner's v2 trusts only the owner's root, so the vendor's timestamp fails
    // its threshold and nothing is fetched past it.
    let v3 = scratch().join("handover-v3.slot");
    std::fs::write(
        &v3,
        recompose(
            &v1.join("slot.img"),
            "0.3.0",
            None,
            &signing_key(&vendor_key),
        ),
    )
    .unwrap();
    vendor.publish(&v3);
    let console = boot(
        &device,
        vendor_port,
        &["--powerdown-on", "[limpet-update] poll failed"],
    );
    has(&console, "booting slot B (trial");
    has(&console, "trial committed, floor now 0.2.0");
    let refused = agent_line(&console, "poll failed");
    assert!(
        refused
            .contains("timestamp: 0 valid signature(s) from distinct trusted keys, threshold is 1"),
        "{refused}"
    );
    assert!(!console.contains("0.3.0"), "{console}");
    let state = {
        let (offset, size) = partition(&disk, "state");
        let mut file = std::fs::File::open(&disk).unwrap();
        let region = limpet_state::Region::new(&mut file, offset, size).unwrap();
        limpet_state::StateStore::new(region)
            .unwrap()
            .load()
            .unwrap()
    };
    assert_eq!(state.committed_slot(), Slot::B);
    assert!(state.trial().is_none());
    println!("handover end to end: {:?}", started.elapsed());
    // Passed: the servers end, and the builds and disk (about 380 MB) go; a failed run
    // leaves them for a look.
    drop((_vendor_server, _owner_server));
    let _ = std::fs::remove_dir_all(scratch());
}
