//! `limpet run --sim`: limpet-init as PID 1 of new namespaces on this host (root needed,
//! as in CI): the slot is checked against the initramfs's key and unpacked, and the
//! device's own runtime starts the example's task in its sandbox.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[test]
fn the_example_runs_in_a_simulation() {
    let (out, _) = hello_build();
    let result = run(
        limpet().arg("run").arg("--sim").arg(out).args([
            "--exit-on",
            "beat 1",
            "--timeout",
            "120",
            "--json",
        ]),
        true,
    );
    let console = stderr(&result);
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(summary["outcome"], "matched", "{summary}\n{console}");
    for line in [
        "limpet-init: SIMULATION on the build host",
        "limpet-init: started hello",
        "[hello] hello from limpet: beat 0",
        "[hello] hello from limpet: beat 1",
    ] {
        assert!(console.contains(line), "missing `{line}`:\n{console}");
    }
    assert!(!console.contains("cannot start"), "{console}");
}

#[test]
fn a_simulation_refuses_a_tampered_slot() {
    let (out, _) = hello_build();
    let dir = mixed_output("sim-tampered", out, out, &[]);
    let json = inspect_json(&dir.join("slot.img"));
    let squashfs = json["layout"]["squashfs_size"].as_u64().unwrap();
    flipped_copy(&out.join("slot.img"), squashfs / 2, &dir.join("slot.img"));
    let result = run(
        limpet()
            .arg("run")
            .arg("--sim")
            .arg(&dir)
            .args(["--timeout", "60"]),
        false,
    );
    let err = stderr(&result);
    assert!(
        err.contains("the slot does not verify against the initramfs's key"),
        "{err}"
    );
    assert!(err.contains("data block"), "{err}");
}

#[test]
fn a_simulation_has_no_power_button() {
    let (out, _) = hello_build();
    let result = run(
        limpet()
            .arg("run")
            .arg("--sim")
            .arg(out)
            .args(["--powerdown-on", "beat 1"]),
        false,
    );
    assert!(
        stderr(&result).contains("--powerdown-on must be absent with --sim"),
        "{}",
        stderr(&result)
    );
}

/// A device with `[update]` in a simulation: its update agent needs PID 1's install socket
/// and slots, which a simulation has not, so PID 1 says so and does not start it; the
/// other tasks run.
#[test]
fn a_simulation_does_not_start_the_update_agent() {
    let (root, key_id) = tuf_repo(
        &scratch().join("sim-tuf-repo"),
        &scratch().join("sim-tuf-keys"),
    );
    let update = format!(
        "\n[update]\nrepository = \"http://192.0.2.1/hello\"\nkeys = [{{ id = \"{key_id}\" }}]\nroot = \"{}\"\n",
        root.display()
    );
    let out = hello_release("sim", "0.1.0", false, &update);
    let result = run(
        limpet().arg("run").arg("--sim").arg(&out).args([
            "--exit-on",
            "beat 2",
            "--timeout",
            "120",
            "--json",
        ]),
        true,
    );
    let console = stderr(&result);
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(summary["outcome"], "matched", "{summary}\n{console}");
    assert!(
        console.contains(
            "limpet-init: limpet-update not started: a simulation has no slots to update"
        ),
        "{console}"
    );
    assert!(!console.contains("started limpet-update"), "{console}");
    assert!(!console.contains("cannot start"), "{console}");
}
