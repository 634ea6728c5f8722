//! The device identity in real QEMU, through the device's whole chain (docs/identity.md):
//! two devices of one image make two different identities at their first boot; a device
//! keeps its identity across a reboot and a slot update; a wipe of its data partition
//! destroys it (the next boot makes a new one); a damaged identity file is refused with a
//! console error, kept as it is, and not replaced, while the device's tasks still run.
//! With a TPM (swtpm), the identity is sealed to the chain the loader measured: it loads on
//! every boot through that chain, and neither a boot whose loader measured no image key
//! (QEMU's `-kernel`, no Limpet loader) nor the disk rewritten with another vendor's image
//! and keys (data partition kept) can unseal it.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::disk::*;
use common::*;
use limpet_state::Slot;

/// Safety net for one TCG boot on a loaded 2-core machine.
const BOOT_DEADLINE_SECS: &str = "300";
/// The identity file on the data partition.
const IDENTITY_FILE: &str = "/.limpet/identity/device.key";

/// Boots `dir` (keeping its disk writes) until its task's first line, then presses the
/// power button: a clean shutdown, so the data partition is unmounted and its journal
/// written out before `limpet inspect` reads it. Returns the console.
fn boot(dir: &Path) -> String {
    boot_with(dir, &[])
}

/// [`boot`] with more `limpet run` arguments.
fn boot_with(dir: &Path, extra: &[&std::ffi::OsStr]) -> String {
    require_tool("qemu-system-x86_64");
    let out = run(
        limpet()
            .arg("run")
            .arg(dir)
            .args(["--json", "--persist", "--timeout", BOOT_DEADLINE_SECS])
            .args(["--powerdown-on", "hello from limpet: beat 0"])
            .args(extra),
        true,
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let console = stderr(&out);
    assert_eq!(summary["exit_code"], 0, "{summary}\n{console}");
    assert!(console.contains("all tasks stopped"), "{console}");
    console
}

/// How the boot found the identity: (`made` or `loaded`, fingerprint, public key), of
/// class software.
fn identity_of(console: &str) -> (&'static str, String, String) {
    identity_of_class(console, "software")
}

/// [`identity_of`] for an identity of `class`.
fn identity_of_class(console: &str, class: &str) -> (&'static str, String, String) {
    let line = console
        .lines()
        .find(|l| l.contains("limpet-init: identity: "))
        .unwrap_or_else(|| panic!("no identity line\n{console}"));
    let how = if line.contains("made a new one at this boot") {
        "made"
    } else {
        "loaded"
    };
    let field = |name: &str| {
        line.split(name)
            .nth(1)
            .and_then(|rest| rest.split([' ', ',']).next())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            .to_owned()
    };
    let fingerprint = field("fingerprint ");
    let public = field("public key ");
    assert_eq!(fingerprint.len(), 64, "{line}");
    assert_eq!(public.len(), 64, "{line}");
    assert!(line.contains(&format!("({class})")), "{line}");
    (how, fingerprint, public)
}

/// `limpet inspect --json` of `disk`'s identity.
fn inspected(disk: &Path) -> serde_json::Value {
    inspect_json(disk)["identity"].clone()
}

/// Writes the `data` partition's bytes from `from` over `disk`'s: with a freshly built
/// `from`, the wipe a factory reset does.
fn wipe_data(disk: &Path, from: &Path) {
    let (offset, size) = partition(from, "data");
    assert_eq!(partition(disk, "data"), (offset, size));
    let bytes = std::fs::read(from).unwrap();
    let start = usize::try_from(offset).unwrap();
    let end = start + usize::try_from(size).unwrap();
    patch(disk, offset, &bytes[start..end]);
}

/// Replaces the identity file on `disk`'s data partition with `bytes` (debugfs, writing
/// the filesystem inside the image).
fn replace_identity_file(disk: &Path, bytes: &[u8]) {
    require_tool("debugfs");
    let (offset, _) = partition(disk, "data");
    let local = scratch().join("identity-replacement");
    std::fs::write(&local, bytes).unwrap();
    let commands = scratch().join("identity-debugfs");
    std::fs::write(
        &commands,
        format!(
            "cd /.limpet/identity\nrm device.key\nwrite {} device.key\n",
            local.display()
        ),
    )
    .unwrap();
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&commands)
        .arg(format!("{}?offset={offset}", disk.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Reads the identity file's bytes from `disk`'s data partition.
fn identity_file(disk: &Path) -> Vec<u8> {
    let (offset, _) = partition(disk, "data");
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {IDENTITY_FILE}"))
        .arg(format!("{}?offset={offset}", disk.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

#[test]
fn each_device_makes_its_own_identity_which_survives_reboot_and_update_but_not_a_wipe() {
    let (v1, _) = hello_build();
    let pristine = v1.join("disk.img");
    let first = mixed_output("identity-first", v1, v1, &[]);
    let second = mixed_output("identity-second", v1, v1, &[]);
    let disk = first.join("disk.img");

    // A built image carries no identity: it is made on the device, never at build time.
    assert_eq!(inspected(&pristine)["state"], "absent");

    // Two devices of one image: two identities, each made at its first boot.
    let console = boot(&first);
    let (how, fp, public) = identity_of(&console);
    assert_eq!(how, "made", "{console}");
    let console = boot(&second);
    let (how, other_fp, other_public) = identity_of(&console);
    assert_eq!(how, "made", "{console}");
    assert_ne!(fp, other_fp);
    assert_ne!(public, other_public);

    // `limpet inspect` of the device's disk shows the same public key and fingerprint.
    let shown = inspected(&disk);
    assert_eq!(shown["state"], "present", "{shown}");
    assert_eq!(shown["class"], "software", "{shown}");
    assert_eq!(shown["fingerprint"], fp.as_str(), "{shown}");
    assert_eq!(shown["public_key"], public.as_str(), "{shown}");
    // The secret is in the file (class software), and never in what inspect shows.
    let file = identity_file(&disk);
    let seed: String = file[48..80].iter().map(|b| format!("{b:02x}")).collect();
    assert!(!shown.to_string().contains(&seed), "{shown}");

    // A reboot loads the same identity.
    let console = boot(&first);
    assert_eq!(
        identity_of(&console),
        ("loaded", fp.clone(), public.clone())
    );

    // An update (a new release on slot B, on trial) keeps it.
    let key = signing_key(&scratch().join("keys/image.key"));
    let update = recompose(&v1.join("slot.img"), "0.2.0", None, &key);
    install_bytes(&disk, Slot::B, &update);
    mark_trial(&disk, Slot::B, "0.2.0");
    let console = boot(&first);
    assert!(console.contains("booting slot B (trial"), "{console}");
    assert!(
        console.contains("slot-b (hello 0.2.0) mounted read-only"),
        "{console}"
    );
    assert_eq!(
        identity_of(&console),
        ("loaded", fp.clone(), public.clone())
    );

    // A damaged identity file: refused by name, kept, not replaced; the task still runs.
    let mut damaged = file.clone();
    damaged[60] ^= 0x01;
    replace_identity_file(&disk, &damaged);
    assert_eq!(inspected(&disk)["state"], "damaged");
    let console = boot(&first);
    assert!(
        console.contains(&format!(
            "limpet-init: identity REFUSED: /data{IDENTITY_FILE} is damaged; it is kept as it is and no new identity is made (a wipe of the data partition makes one): checksum mismatch: the file is damaged; the device runs without an identity"
        )),
        "{console}"
    );
    assert!(!console.contains("limpet-init: identity: "), "{console}");
    assert_eq!(identity_file(&disk), damaged);

    // A wipe of the data partition destroys the identity; the next boot makes a new one.
    wipe_data(&disk, &pristine);
    assert_eq!(inspected(&disk)["state"], "absent");
    let console = boot(&first);
    let (how, new_fp, _) = identity_of(&console);
    assert_eq!(how, "made", "{console}");
    assert_ne!(new_fp, fp);
    assert_ne!(new_fp, other_fp);
    assert_eq!(inspected(&disk)["fingerprint"], new_fp.as_str());
}

/// examples/hello declaring a TPM (`[kernel] tpm = "tpm2"`, so its PID 1 has the TPM
/// commands), built with the keys in `scratch()/<keys>` into `scratch()/<out>`.
fn tpm_build(keys: &str, out: &str) -> std::path::PathBuf {
    let dir = repo_root().join("target/limpet-test-manifests/identity-tpm");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = std::fs::read_to_string(hello_manifest())
        .unwrap()
        .replace("source = \"host\"", "source = \"host\"\ntpm = \"tpm2\"");
    assert!(manifest.contains("tpm = \"tpm2\""));
    let path = dir.join("limpet.toml");
    std::fs::write(&path, manifest).unwrap();
    let (key, _) = keys_in(&scratch().join(keys));
    let out = scratch().join(out);
    build(&path, &out, &key);
    out
}

#[test]
fn with_a_tpm_the_identity_is_sealed_to_the_measured_chain() {
    require_tool("swtpm");
    let dir = tpm_build("keys", "identity-tpm");
    let disk = dir.join("disk.img");
    let state = scratch().join("identity-tpm-state");
    let tpm = [std::ffi::OsStr::new("--tpm"), state.as_os_str()];

    // First boot through the chain: the loader measures the image key, PID 1 seals.
    let console = boot_with(&dir, &tpm);
    assert!(
        console.contains("limpet-boot: TPM: image key fingerprint measured into PCR 13"),
        "{console}"
    );
    assert!(
        console.contains("limpet-init: TPM: /dev/tpmrm0"),
        "{console}"
    );
    let (how, fp, public) = identity_of_class(&console, "tpm-sealed");
    assert_eq!(how, "made", "{console}");
    let shown = inspected(&disk);
    assert_eq!(shown["class"], "tpm-sealed", "{shown}");
    assert_eq!(shown["fingerprint"], fp.as_str(), "{shown}");
    let file = identity_file(&disk);
    assert_eq!(file[9], 2, "class byte of a sealed file");

    // The next boot through the same chain and the same TPM unseals the same identity.
    let console = boot_with(&dir, &tpm);
    assert_eq!(
        identity_of_class(&console, "tpm-sealed"),
        ("loaded", fp.clone(), public.clone())
    );

    // A boot that skips the loader (QEMU's -kernel): no image key measured, so the TPM
    // refuses to unseal with TPM_RC_POLICY_FAIL; the file is kept and the task still runs.
    let direct = [tpm[0], tpm[1], std::ffi::OsStr::new("--direct")];
    let console = boot_with(&dir, &direct);
    assert!(
        console.contains(
            "limpet-init: identity REFUSED: cannot unseal /data/.limpet/identity/device.key: the boot chain (Secure Boot state, image key) differs from the one it was sealed to, or this is another TPM; it is kept as it is and no new identity is made: TPM2_Unseal: the TPM answered with response code 0x0000099d (TPM_RC_POLICY_FAIL: the PCRs differ from those sealed to); the device runs without an identity"
        ),
        "{console}"
    );
    assert!(console.contains("hello from limpet: beat 0"), "{console}");
    assert_eq!(identity_file(&disk), file);

    // The device's disk rewritten with another vendor's image (another image key, its own
    // Secure Boot keys enrolled, a PID 1 with the TPM commands), its data partition kept:
    // that loader measures its own key, so the TPM refuses to unseal with
    // TPM_RC_POLICY_FAIL.
    let attacked = tpm_build("other-keys", "identity-tpm-other");
    wipe_data(&attacked.join("disk.img"), &disk);
    let console = boot_with(&attacked, &tpm);
    assert!(
        console.contains("limpet-boot: TPM: image key fingerprint measured into PCR 13"),
        "{console}"
    );
    assert!(
        console.contains("limpet-init: identity REFUSED: cannot unseal /data/.limpet/identity/device.key: the boot chain (Secure Boot state, image key) differs from the one it was sealed to, or this is another TPM; it is kept as it is and no new identity is made: TPM2_Unseal: the TPM answered with response code 0x0000099d (TPM_RC_POLICY_FAIL: the PCRs differ from those sealed to)"),
        "{console}"
    );
    assert_eq!(identity_file(&attacked.join("disk.img")), file);

    // Back through the device's own chain: the same identity again (the refusals destroyed
    // nothing).
    let console = boot_with(&dir, &tpm);
    assert_eq!(
        identity_of_class(&console, "tpm-sealed"),
        ("loaded", fp, public)
    );
}
