//! The whole update story in real QEMU (TCG), with the real repository, server, agent,
//! PID 1 and kernel: a device runs v1; v2 is published; the device's update agent fetches
//! it over the restricted user network (the only host it may reach), PID 1 verifies and
//! stages it, the device reboots into the trial, and the health gate commits it. Then v3,
//! whose task fails at start, is published: the device stages and tries it, rolls back to
//! v2 by itself, records the failure, and does not try v3 again.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use limpet_state::{Region, Slot, StateStore};

/// Safety net for one TCG boot (with an update) on a loaded 2-core machine.
const BOOT_DEADLINE_SECS: &str = "420";

/// The repository as the guest sees it (`limpet run --forward 80=...`).
const REPOSITORY: &str = "http://10.0.2.100:80/";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone)]
struct Fixture {
    repo: PathBuf,
    tuf_keys: PathBuf,
    image_pub: PathBuf,
    root: PathBuf,
    key_id: String,
}

/// QEMU tests of this file one at a time (2 cores), and their builds made once.
static QEMU: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Built {
    f: Fixture,
    v1: PathBuf,
    v2: PathBuf,
    v3: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: std::sync::OnceLock<Built> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let f = fixture();
        let v1 = release(&f, "0.1.0", false);
        let v2 = release(&f, "0.2.0", false);
        let v3 = release(&f, "0.3.0", true);
        Built { f, v1, v2, v3 }
    })
}

fn fixture() -> Fixture {
    let (_, image_pub) = keys_in(&scratch().join("keys"));
    let repo = scratch().join("update-repo");
    let tuf_keys = scratch().join("update-tuf-keys");
    let (root, key_id) = tuf_repo(&repo, &tuf_keys);
    Fixture {
        repo,
        tuf_keys,
        image_pub,
        root,
        key_id,
    }
}

/// examples/hello as `version` with `[update]` on the test repository; `fail` makes its
/// task exit 1 at start and never be restarted.
fn release(f: &Fixture, version: &str, fail: bool) -> PathBuf {
    let update = format!(
        "\n[update]\nrepository = \"{REPOSITORY}\"\nkeys = [{{ id = \"{}\" }}]\nroot = \"{}\"\npoll = \"1m\"\nhealth = \"5s\"\ntry_boots = 2\n",
        f.key_id,
        f.root.display()
    );
    hello_release("update", version, fail, &update)
}

fn publish(f: &Fixture, out: &Path) {
    run(
        limpet()
            .arg("publish")
            .arg(out)
            .arg("--repo")
            .arg(&f.repo)
            .arg("--keys")
            .arg(&f.tuf_keys)
            .arg("--image-key")
            .arg(&f.image_pub),
        true,
    );
}

fn serve(f: &Fixture) -> (Server, u16) {
    // A free loopback port: bound, read, released, then given to the server.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_limpet"))
        .arg("serve")
        .arg(&f.repo)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (server, port);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("limpet serve did not listen on {port}");
}

/// One boot of the device in `dir` on the user network with the repository forwarded,
/// keeping its disk writes, until it powers off or reboots by itself (QEMU runs with
/// `-no-reboot`), pressing the power button once `until` appears.
fn boot(dir: &Path, port: u16, until: Option<&str>) -> String {
    require_tool("qemu-system-x86_64");
    let mut cmd = limpet();
    cmd.arg("run")
        .arg(dir)
        .args(["--json", "--persist", "--timeout", BOOT_DEADLINE_SECS])
        .arg("--user-net")
        .args(["--forward", &format!("80=127.0.0.1:{port}")]);
    if let Some(until) = until {
        cmd.args(["--powerdown-on", until]);
    }
    let out = run(&mut cmd, true);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let console = stderr(&out);
    // The boot times of commits and rollbacks, for BENCHMARKS.md.
    for line in console.lines().filter(|l| l.contains("(boottime ")) {
        eprintln!("timing: {line}");
    }
    assert_eq!(summary["exit_code"], 0, "{summary}\n{console}");
    console
}

fn state(disk: &Path) -> limpet_state::State {
    let parts = limpet_image::gpt::read(&mut File::open(disk).unwrap()).unwrap();
    let p = parts.iter().find(|p| p.name == "state").unwrap();
    let mut file = File::open(disk).unwrap();
    let region = Region::new(&mut file, p.offset(), p.size()).unwrap();
    StateStore::new(region).unwrap().load().unwrap()
}

#[test]
fn v1_updates_to_v2_then_refuses_a_broken_v3_by_itself() {
    let _one = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let Built { f, v1, v2, v3 } = built();
    // Its own repository: the other test of this file publishes only v2.
    let f = &Fixture {
        repo: scratch().join("update-repo-e2e"),
        ..f.clone()
    };
    copy_dir(&built().f.repo, &f.repo);
    let dir = mixed_output("update-device", v1, v1, &[]);
    let disk = dir.join("disk.img");
    let (_server, port) = serve(f);

    // v1, the release the device runs, was published when it shipped; v2 is published now
    // (with a delta from v1); the running v1 fetches it, PID 1 stages it, the device
    // reboots.
    publish(f, v1);
    publish(f, v2);
    let console = boot(&dir, port, None);
    assert!(console.contains("[limpet-update] "), "{console}");
    assert!(
        console.contains("limpet-init: update 0.2.0 verified and staged as a trial in slot b"),
        "{console}"
    );
    // publish made a delta from 0.1.0, and the agent used it: the device read its running
    // slot through PID 1, rebuilt 0.2.0 from it and wrote it.
    let staged = staged_line(&console);
    println!("v1 -> v2 on the device: {staged}");
    assert!(staged.contains("a delta from 0.1.0"), "{console}");
    assert!(
        console.contains("update agent: reboot into the staged trial"),
        "{console}"
    );
    let s = state(&disk);
    assert_eq!(s.trial().unwrap().version.to_string(), "0.2.0");

    // The trial boots and is committed after its health period.
    let console = boot(&dir, port, Some("trial committed"));
    assert!(console.contains("booting slot B (trial"), "{console}");
    assert!(
        console.contains("trial committed, floor now 0.2.0"),
        "{console}"
    );
    let s = state(&disk);
    assert_eq!(s.committed_slot(), Slot::B);
    assert_eq!(s.floor().to_string(), "0.2.0");

    // v3 (broken) is published: staged, tried, rolled back.
    publish(f, v3);
    let console = boot(&dir, port, None);
    assert!(
        console.contains("limpet-init: update 0.3.0 verified and staged as a trial in slot a"),
        "{console}"
    );
    let staged = staged_line(&console);
    println!("v2 -> v3 on the device: {staged}");
    assert!(staged.contains("a delta from 0.2.0"), "{console}");
    let console = boot(&dir, port, None);
    assert!(console.contains("booting slot A (trial"), "{console}");
    assert!(
        console.contains(
            "trial failed its health gate (task hello exited with code 1 and is not restarted)"
        ),
        "{console}"
    );
    let s = state(&disk);
    assert_eq!(s.committed_slot(), Slot::B);
    assert_eq!(s.highest_failed().unwrap().to_string(), "0.3.0");
    assert_eq!(
        s.last_failure().unwrap().reason.to_string(),
        "health check failed"
    );

    // Back on v2, the agent sees v3 and leaves it alone.
    let console = boot(&dir, port, Some("[limpet-update] up to date"));
    assert!(
        console.contains("slot-b (hello 0.2.0) mounted read-only"),
        "{console}"
    );
    assert!(!console.contains("staged as a trial"), "{console}");
    assert!(state(&disk).trial().is_none());
}

/// A copy of directory `from` (the repository) as `to`, files only, one level of
/// subdirectories deep as a repository has.
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// At least 20 power cuts (QEMU killed) at random moments of a real update of v1 to v2,
/// each followed by a boot that must mount a verified slot: v1, or v2 as a whole trial.
/// The boots are `--direct`: what is cut is PID 1's install path, and PID 1's own
/// verification decides (the loader's power cuts are in limpet-boot's tests).
#[test]
fn power_cuts_during_a_real_update_always_leave_a_bootable_verified_slot() {
    let _one = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let Built { f, v1, v2, .. } = built();
    let f = &Fixture {
        repo: scratch().join("update-repo-kills"),
        ..f.clone()
    };
    copy_dir(&built().f.repo, &f.repo);
    publish(f, v2);
    let (_server, port) = serve(f);
    // How long an uncut update takes here, from QEMU's start to the reboot into the trial
    // (QEMU exits then): the cuts fall inside that window.
    let dir = mixed_output("update-kill-calibrate", v1, v1, &[]);
    let started = std::time::Instant::now();
    let out = run(
        limpet()
            .arg("run")
            .arg(&dir)
            .args([
                "--direct",
                "--json",
                "--persist",
                "--timeout",
                BOOT_DEADLINE_SECS,
            ])
            .arg("--user-net")
            .args(["--forward", &format!("80=127.0.0.1:{port}")]),
        true,
    );
    let window = started.elapsed().as_secs();
    assert!(
        stderr(&out).contains("update 0.2.0 verified and staged"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    let mut kills = 0;
    let mut round = 0;
    while kills < 20 {
        round += 1;
        assert!(
            round <= 40,
            "only {kills} cuts fell inside the update in 40 rounds"
        );
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let cut = 2 + x % window.saturating_sub(2).max(1);
        let dir = mixed_output(&format!("update-kill-{round}"), v1, v1, &[]);
        require_tool("qemu-system-x86_64");
        // --timeout kills QEMU (SIGKILL): the guest loses power mid-whatever.
        // Either outcome is fine here: killed at the cut (timeout), or the update was done
        // and the guest rebooted (QEMU exits) before it.
        let out = limpet()
            .arg("run")
            .arg(&dir)
            .args([
                "--direct",
                "--json",
                "--persist",
                "--timeout",
                &cut.to_string(),
            ])
            .arg("--user-net")
            .args(["--forward", &format!("80=127.0.0.1:{port}")])
            .output()
            .unwrap();
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let killed = summary["outcome"] == "timeout";
        kills += u32::from(killed);
        // The next boot must verify and mount a slot.
        let out = run(
            limpet()
                .arg("run")
                .arg(&dir)
                .args([
                    "--direct",
                    "--json",
                    "--persist",
                    "--timeout",
                    BOOT_DEADLINE_SECS,
                ])
                .args(["--exit-on", "mounted read-only from"]),
            true,
        );
        let console = stderr(&out);
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            summary["outcome"], "matched",
            "round {round} (cut at {cut} s):\n{console}"
        );
        let mounted = if console.contains("slot-a (hello 0.1.0) mounted read-only") {
            "v1"
        } else if console.contains("slot-b (hello 0.2.0) mounted read-only") {
            assert!(
                console.contains("booting slot B (trial"),
                "round {round}:\n{console}"
            );
            "v2 try"
        } else {
            panic!("round {round} (cut at {cut} s): no verified slot mounted:\n{console}");
        };
        *seen
            .entry(format!(
                "{mounted}{}",
                if killed {
                    ""
                } else {
                    " (update done before the cut)"
                }
            ))
            .or_default() += 1;
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!("{kills} power cuts in {round} rounds over an update window of {window} s: {seen:?}");
}

/// The agent's line for the poll that staged a trial.
fn staged_line(console: &str) -> String {
    console
        .lines()
        .find(|l| l.starts_with("[limpet-update] ") && l.contains(" staged "))
        .unwrap_or_else(|| panic!("the agent logged no staged poll:\n{console}"))
        .to_owned()
}
