//! Limpet's own kernel (`[kernel] source = "limpet"`) in real QEMU: `limpet build` builds
//! Linux from Debian's `linux-source-6.1` with a configuration derived from the manifest
//! (every driver built in, no loadable modules, the attack surface off), audits it, signs it
//! with the vendor's db key, and the device boots it through the whole chain: OVMF with
//! Secure Boot enforcing, Limpet's loader, the kernel, PID 1, the sandboxed task.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::*;

/// examples/hello on Limpet's kernel, built once per test binary: its output directory
/// and its build report.
fn built() -> &'static (PathBuf, serde_json::Value) {
    static BUILT: std::sync::OnceLock<(PathBuf, serde_json::Value)> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let (key, _) = keys_in(&scratch().join("keys"));
        // Inside the repository, so the build finds the cargo workspace with `hello`.
        let dir = repo_root().join("target/limpet-test-manifests/own-kernel");
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = std::fs::read_to_string(hello_manifest())
            .unwrap()
            .replace("source = \"host\"", "source = \"limpet\"");
        std::fs::write(dir.join("limpet.toml"), manifest).unwrap();
        let out = scratch().join("own-kernel");
        let built = run(
            limpet()
                .args(["build", "--json", "--manifest"])
                .arg(dir.join("limpet.toml"))
                .arg("--out")
                .arg(&out)
                .arg("--key")
                .arg(&key)
                .env("SOURCE_DATE_EPOCH", "1700000000"),
            true,
        );
        (out, serde_json::from_slice(&built.stdout).unwrap())
    })
}

#[test]
fn a_device_on_limpets_own_kernel_boots_through_the_chain_without_modules() {
    require_tool("qemu-system-x86_64");
    let (out, report) = built();
    assert_eq!(report["modules"], serde_json::json!([]), "{report}");
    let release = report["kernel_release"].as_str().unwrap().to_owned();
    let dir = mixed_output("own-kernel-boot", out, out, &[]);
    let console = boot_until_line(&dir, "[hello] hello from limpet: beat 1,", "400");
    for line in [
        "limpet-boot: UEFI Secure Boot: enabled",
        "limpet-boot: hardware watchdog: i6300ESB at 0000:00:02.0 armed for 60 s",
        &format!("limpet-init: kernel {release}: console=ttyS0 panic=-1 quiet"),
        "limpet-init: 0 kernel module(s) loaded",
        "limpet-init: watchdog /dev/watchdog0: 60 s timeout, petted every 15000 ms",
        "slot-a (hello 0.1.0) mounted read-only",
        "module loading absent from this kernel",
        "limpet-init: started hello",
    ] {
        assert!(console.contains(line), "missing `{line}`:\n{console}");
    }
}

#[test]
fn limpets_kernel_meets_the_needs_and_has_no_attack_surface_on() {
    let (_, report) = built();
    let config = report["kernel_config"].as_str().unwrap();
    let out = run(
        limpet()
            .args(["check", "--json", "--kernel-config", config])
            .arg("--manifest")
            .arg(hello_manifest()),
        true,
    );
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = audit.to_string();
    println!("audit of Limpet's kernel: {text}");
    let failed = |list: &str| -> Vec<String> {
        audit[list]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["passed"] == false)
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(!audit["needs"].as_array().unwrap().is_empty(), "{text}");
    assert_eq!(failed("needs"), Vec::<String>::new(), "{text}");
    assert_eq!(failed("attack_surface"), Vec::<String>::new(), "{text}");
}
