//! The whole update story in real QEMU (TCG), through the real boot chain (firmware with
//! Secure Boot, Limpet's loader), with the real repository, server, agent, PID 1 and
//! kernel: a device runs v1; v2, whose kernel command line and release differ, is published;
//! the device's update agent fetches it over the restricted user network (the only host it
//! may reach), PID 1 verifies and stages it, the device reboots, the loader starts v2's
//! kernel with v2's command line and v2's PID 1, and the health gate commits it. Then v3,
//! vendor-signed but with a kernel that panics at boot, is published: the device stages it,
//! spends its trial boots on it, the loader returns to v2 by itself and records why, and
//! the agent does not try v3 again.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use common::disk::panicking_release;
use common::repo::*;
use common::*;
use limpet_state::{FailureReason, Region, Slot, StateStore};

/// Safety net for one TCG boot (with an update) on a loaded 2-core machine.
const BOOT_DEADLINE_SECS: &str = "420";

/// QEMU tests of this file one at a time (2 cores), and their builds made once.
static QEMU: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An extra kernel parameter of v2's, which v1 does not have.
const V2_KERNEL_PARAM: &str = "init_on_free=1";

struct Built {
    f: Fixture,
    v1: PathBuf,
    v2: PathBuf,
    /// v3's slot image (a file, not a build output).
    v3: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: std::sync::OnceLock<Built> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let f = fixture("update-repo");
        let v1 = release(&f, "0.1.0", None);
        let v2 = release(&f, "0.2.0", Some(V2_KERNEL_PARAM));
        let v3 = panicking_release(&v2, "0.3.0");
        Built { f, v1, v2, v3 }
    })
}

/// examples/hello as `version` with `[update]` on the test repository, with `[kernel]
/// cmdline = kernel_param` when given.
fn release(f: &Fixture, version: &str, kernel_param: Option<&str>) -> PathBuf {
    hello_release_edited(
        "update",
        version,
        &f.update_table(),
        |manifest| match kernel_param {
            Some(param) => manifest.replace(
                "source = \"host\"",
                &format!("source = \"host\"\ncmdline = \"{param}\""),
            ),
            None => manifest,
        },
    )
}

/// One boot through the chain with the repository on `port`: [`boot_with_repo`].
fn boot(dir: &Path, port: u16, until: Option<&str>) -> String {
    require_tool("qemu-system-x86_64");
    boot_with_repo(dir, port, until, BOOT_DEADLINE_SECS)
}

/// The entries of an output directory's initramfs, (path, contents), in archive order.
fn initramfs_entries(out: &Path) -> Vec<(String, Vec<u8>)> {
    let compressed = std::fs::read(out.join("initramfs.cpio")).unwrap();
    let raw = limpet_image::cpio::decompress(&compressed).unwrap();
    limpet_image::cpio::read_entries(&raw)
        .unwrap()
        .into_iter()
        .map(|e| (e.path.to_owned(), e.data.to_vec()))
        .collect()
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
    let f = &f.copied("update-repo-e2e");
    let dir = mixed_output("update-device", v1, v1, &[]);
    let disk = dir.join("disk.img");
    let (_server, port) = f.serve();

    // v1, the release the device runs, was published when it shipped; v2 is published now
    // (with a delta from v1); the running v1 fetches it, PID 1 stages it, the device
    // reboots.
    f.publish(v1);
    // What the publisher said of 0.2.0's delta (made, or skipped and why): printed, and
    // in the message of the delta assertion below.
    let published = f.publish_report(v2);
    println!("limpet publish of 0.2.0:\n{published}");
    // PID 1 is the same bytes in both: only the two files of the second archive change
    // with the version, so the first archive's compressed bytes are the same in both.
    let (old, new) = (initramfs_entries(v1), initramfs_entries(v2));
    let changed: Vec<&str> = old
        .iter()
        .zip(&new)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.0.as_str())
        .collect();
    assert_eq!(old.len(), new.len());
    assert_eq!(
        changed,
        ["etc/limpet/data-fs.template", "etc/limpet/release"]
    );
    assert_eq!(
        old[old.len() - 5..]
            .iter()
            .map(|e| e.0.as_str())
            .collect::<Vec<_>>(),
        [
            "init",
            "etc",
            "etc/limpet",
            "etc/limpet/data-fs.template",
            "etc/limpet/release"
        ]
    );
    let first_archive = |out: &Path| {
        let compressed = std::fs::read(out.join("initramfs.cpio")).unwrap();
        let first = zstd::zstd_safe::find_frame_compressed_size(&compressed).unwrap();
        compressed[..first].to_vec()
    };
    assert!(
        first_archive(v1) == first_archive(v2),
        "the first archive (PID 1, key, modules) differs between 0.1.0 and 0.2.0"
    );
    assert!(
        published.contains("delta:        hello/0.2.0/from-0.1.0.delta"),
        "limpet publish made no delta from 0.1.0:\n{published}"
    );
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
    assert!(
        staged.contains("a delta from 0.1.0"),
        "{console}\nlimpet publish of 0.2.0:\n{published}"
    );
    assert!(
        console.contains("update agent: reboot into the staged trial"),
        "{console}"
    );
    let s = state(&disk);
    assert_eq!(s.trial().unwrap().version.to_string(), "0.2.0");

    // The trial boots: the loader starts v2's kernel with v2's command line, the kernel
    // runs v2's PID 1, and the health gate commits it.
    let console = boot(&dir, port, Some("trial committed"));
    assert!(console.contains("booting slot B (trial"), "{console}");
    assert!(
        console.contains(&format!(
            "limpet-boot: starting the kernel of slot B: console=ttyS0 panic=-1 quiet {V2_KERNEL_PARAM} limpet.watchdog=60 limpet.slot=b limpet.counted=1"
        )),
        "{console}"
    );
    let kernel = console
        .lines()
        .find(|l| l.starts_with("limpet-init: kernel "))
        .unwrap_or_else(|| panic!("PID 1 named no kernel:\n{console}"));
    assert!(kernel.contains(V2_KERNEL_PARAM), "{kernel}");
    assert!(
        console.contains("limpet-init 0.1.0 of release hello 0.2.0 (x86_64) starting"),
        "{console}"
    );
    assert!(
        console.contains("trial committed, floor now 0.2.0"),
        "{console}"
    );
    let s = state(&disk);
    assert_eq!(s.committed_slot(), Slot::B);
    assert_eq!(s.floor().to_string(), "0.2.0");

    // v3 (its kernel panics at boot) is published and staged.
    let published = f.publish_report(v3);
    println!("limpet publish of 0.3.0:\n{published}");
    assert!(
        published.contains("delta:        hello/0.3.0/from-0.2.0.delta"),
        "limpet publish made no delta from 0.2.0:\n{published}"
    );
    let console = boot(&dir, port, None);
    assert!(
        console.contains("limpet-init: update 0.3.0 verified and staged as a trial in slot a"),
        "{console}"
    );
    let staged = staged_line(&console);
    println!("v2 -> v3 on the device: {staged}");
    assert!(
        staged.contains("a delta from 0.2.0"),
        "{console}\nlimpet publish of 0.3.0:\n{published}"
    );
    // Its two trial boots: each counted by the loader before the kernel starts, each a
    // kernel panic.
    for left in (0..2u8).rev() {
        let console = boot_to_panic(&dir, BOOT_DEADLINE_SECS);
        assert!(
            console.contains(&format!(
                "booting slot A (trial, {left} boot(s) left after this one)"
            )),
            "{console}"
        );
        assert!(console.contains("Kernel panic"), "{console}");
    }
    // The next boot: the loader rolls v3 back by itself and v2 runs again; its agent sees
    // v3 and leaves it alone.
    let console = boot(&dir, port, Some("[limpet-update] up to date"));
    assert!(console.contains("spent its boots"), "{console}");
    assert!(
        console.contains("slot-b (hello 0.2.0) mounted read-only"),
        "{console}"
    );
    assert!(!console.contains("staged as a trial"), "{console}");
    let s = state(&disk);
    assert_eq!(s.committed_slot(), Slot::B);
    assert!(s.trial().is_none());
    assert_eq!(s.highest_failed().unwrap().to_string(), "0.3.0");
    let failure = s.last_failure().unwrap();
    assert_eq!(
        (failure.slot, failure.reason, failure.version.to_string()),
        (Slot::A, FailureReason::BootCountExhausted, "0.3.0".into())
    );
}

/// The console line from which the power cuts are timed: PID 1 starts the update agent.
/// Before it, nothing of the update has happened on the device (a cut there is a cut of a
/// booting v1, whatever the moment).
const AGENT_STARTED: &str = "limpet-init: started limpet-update";

/// `limpet run` of `dir`, `--direct`, `--persist`, with the boot deadline; on the restricted
/// user network with the repository at `port` when given.
fn direct_run(dir: &Path, port: Option<u16>) -> std::process::Command {
    require_tool("qemu-system-x86_64");
    let mut cmd = limpet();
    cmd.arg("run").arg(dir).args([
        "--direct",
        "--json",
        "--persist",
        "--timeout",
        BOOT_DEADLINE_SECS,
    ]);
    if let Some(port) = port {
        cmd.arg("--user-net")
            .args(["--forward", &format!("80=127.0.0.1:{port}")]);
    }
    cmd
}

/// One `--direct`, `--persist` boot of `dir` on the repository at `port`, cut (QEMU killed)
/// `cut_ms` after [`AGENT_STARTED`] unless it ends first: the JSON summary and the
/// console.
fn cut_boot(dir: &Path, port: u16, cut_ms: u64) -> (serde_json::Value, String) {
    let mut cmd = direct_run(dir, Some(port));
    cmd.args([
        "--cut-on",
        AGENT_STARTED,
        "--cut-delay",
        &cut_ms.to_string(),
    ]);
    // --timeout and --cut-on kill QEMU (SIGKILL): the guest loses power mid-whatever, and
    // limpet run exits 124.
    let out = cmd.output().unwrap();
    let console = stderr(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("limpet run: {e}: {}\n{console}", out.status));
    (summary, console)
}

/// Which verified slot a boot's console says PID 1 mounted, v1 or v2 as its trial; panics
/// with `what` and the console if none.
fn mounted(console: &str, what: &str) -> &'static str {
    if console.contains("slot-a (hello 0.1.0) mounted read-only") {
        "v1"
    } else if console.contains("slot-b (hello 0.2.0) mounted read-only") {
        assert!(
            console.contains("booting slot B (trial"),
            "{what}:\n{console}"
        );
        "v2 try"
    } else {
        panic!("{what}: no verified slot mounted:\n{console}");
    }
}

/// A `--persist` boot of `dir` to PID 1's mount of a verified slot, and no further (the
/// earliest line that proves it): which slot, as [`mounted`] says.
fn boot_to_mount(dir: &Path, what: &str) -> &'static str {
    let out = run(
        direct_run(dir, None).args(["--exit-on", "mounted read-only from"]),
        true,
    );
    let console = stderr(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["outcome"], "matched", "{what}:\n{console}");
    mounted(&console, what)
}

/// At least 20 power cuts (QEMU killed) at random moments of a real update of v1 to v2,
/// each followed by a boot that must mount a verified slot: v1, or v2 as a whole trial.
/// The boots are `--direct`: what is cut is PID 1's install path, and PID 1's own
/// verification decides (the loader's power cuts are in limpet-boot's tests).
///
/// Every cut falls inside the update: at a random millisecond between PID 1 starting the
/// agent and the reboot into the trial, as one uncut update measured here. The boot after
/// a cut that left v1 running is also the next cut's boot: it must mount a verified slot
/// first, then its agent starts the update again (over the slot the cut left half
/// written) and is cut in turn. A cut that left a staged trial is checked by a boot of its
/// own to the mount, and the next cut starts from a fresh v1 disk.
#[test]
fn power_cuts_during_a_real_update_always_leave_a_bootable_verified_slot() {
    let _one = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let Built { f, v1, v2, .. } = built();
    let f = &f.copied("update-repo-kills");
    f.publish(v2);
    let (_server, port) = f.serve();
    // How long an uncut update takes here, from PID 1 starting the agent to the reboot
    // into the trial (QEMU exits then): the cuts fall inside that window.
    let dir = mixed_output("update-kill-calibrate", v1, v1, &[]);
    let window_ms = {
        let mut child = direct_run(&dir, Some(port))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut started = None;
        let mut console = String::new();
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            if started.is_none() && line.contains(AGENT_STARTED) {
                started = Some(std::time::Instant::now());
            }
            console.push_str(&line);
            console.push('\n');
        }
        let out = child.wait_with_output().unwrap();
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["outcome"], "powered-off", "{summary}\n{console}");
        assert!(
            console.contains("update 0.2.0 verified and staged"),
            "{console}"
        );
        let started = started.unwrap_or_else(|| panic!("no `{AGENT_STARTED}`:\n{console}"));
        u64::try_from(started.elapsed().as_millis())
            .unwrap()
            .max(1000)
    };
    let _ = std::fs::remove_dir_all(&dir);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    let mut kills = 0;
    let mut boots = 0;
    let mut disks = 0;
    // The disk whose last boot was cut while v1 was updating, and that cut's moment.
    let mut cut: Option<(PathBuf, u64)> = None;
    while kills < 20 {
        boots += 1;
        assert!(
            boots <= 50,
            "only {kills} cuts fell inside the update in 50 boots"
        );
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let cut_ms = x % window_ms;
        let (dir, previous) = match cut.take() {
            Some((dir, at)) => (dir, Some(at)),
            None => {
                disks += 1;
                (
                    mixed_output(&format!("update-kill-{disks}"), v1, v1, &[]),
                    None,
                )
            }
        };
        let (summary, console) = cut_boot(&dir, port, cut_ms);
        // The boot after a cut must verify and mount a slot, before its own cut.
        if let Some(at) = previous {
            let slot = mounted(&console, &format!("boot {boots}, after a cut at {at} ms"));
            *seen.entry(slot.to_owned()).or_default() += 1;
            assert_eq!(
                slot, "v1",
                "a cut without a staged trial, then v2:\n{console}"
            );
        } else {
            assert_eq!(mounted(&console, &format!("boot {boots}")), "v1");
        }
        let killed = summary["outcome"] == "timeout";
        assert!(
            console.contains(AGENT_STARTED),
            "boot {boots} ({summary}): the agent never started:\n{console}"
        );
        if killed {
            kills += 1;
        }
        // A staged trial (the cut fell after PID 1 staged it, or the update was done and
        // the guest rebooted first): the next boot, to the mount only, must start it.
        let staged = state(&dir.join("disk.img")).trial().is_some();
        if staged {
            let what = format!("boot {boots} (cut at {cut_ms} ms, killed: {killed}), then");
            let slot = boot_to_mount(&dir, &what);
            *seen
                .entry(format!(
                    "{slot}{}",
                    if killed {
                        ""
                    } else {
                        " (update done before the cut)"
                    }
                ))
                .or_default() += 1;
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            assert!(killed, "boot {boots}: no cut and no trial:\n{console}");
            cut = Some((dir, cut_ms));
        }
    }
    // The last cut's check, when its disk still runs v1.
    if let Some((dir, at)) = cut {
        let slot = boot_to_mount(&dir, &format!("after a cut at {at} ms"));
        *seen.entry(slot.to_owned()).or_default() += 1;
    }
    eprintln!(
        "{kills} power cuts in {boots} cut boots on {disks} fresh disks, over an update window of {window_ms} ms from the agent's start: {seen:?}"
    );
}
