//! Island mode in real QEMU (TCG), with the real repository, server, update agent, PID 1
//! and kernel (docs/end-of-life.md): a device whose support ended before the repository's
//! signed time goes into island mode as soon as its agent verifies that time, stays in it
//! across a reboot, keeps only its kept task (and the agent) running, lets nothing of the
//! kept task reach the far end, and leaves island mode when `limpet repo extend-support`
//! publishes a later end.
//!
//! The device: `hello` (not kept), `beacon` (kept; examples/contain's `beacon` mode: one
//! connection to `10.0.2.100:7000` every 3 s, allowed by its egress rule) and the update
//! agent, on QEMU's restricted user network, where `10.0.2.100:80` is the repository
//! (`limpet serve`) and `10.0.2.100:7000` the beacon's far end, a server of this test that
//! counts every line it receives. `[lifecycle] island` keeps `beacon` with `lan` left at its
//! default (blocked): in island mode the beacon may reach nothing at all. (QEMU's user
//! network puts the far end on the device's own /24, so this network cannot tell the LAN
//! from the internet; `lan = true` is shown by traffic on a tap in `island_lan.rs`.)
//!
//! The slot is built at `SOURCE_DATE_EPOCH` 1700000000 (2023-11-14) with support until
//! 2025-06-30: not over by the build time, over by the repository's signed time (now).
//!
//! The same by `freshness` (`a_repository_gone_quiet_islands_the_device_whatever_its_clock`):
//! support until 2040, `freshness = "75s"`, the guest's clock started in 2001 (`limpet run
//! --rtc-base`): the agent's first check is fresh, the repository then stops refreshing its
//! timestamp, and 75 s of uptime later the device is in island mode; `limpet publish
//! --refresh` signs a new timestamp, and the next check lifts it. (75 s: above the poll of
//! 1 min, as the manifest requires, and short enough that the refresh is signed before the
//! agent's second poll after the fresh one, so the test waits out no extra poll.)
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::repo::*;
use common::*;

/// Safety net for one TCG boot on a loaded 2-core machine.
const BOOT_DEADLINE_SECS: &str = "480";

/// The beacon's far end as the guest sees it (`--forward 7000=...`).
const FAR_END: &str = "10.0.2.100:7000";

const BEGINS: &str = "limpet-init: island mode begins: support ended at @1751328000";
const ENDS: &str = "limpet-init: island mode ends";
const AGAIN: &str = "[beacon] beacon";

/// QEMU tests of this file one at a time (2 cores).
static QEMU: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The device: examples/hello plus the kept `beacon` task, `[update]` on the test
/// repository polled every minute, `[lifecycle]` `lifecycle` (its support window) and
/// `island.keep = ["beacon"]`.
fn release(label: &str, f: &Fixture, lifecycle: &str) -> PathBuf {
    let tail = format!(
        "{}\n[lifecycle]\n{lifecycle}\nisland = {{ keep = [\"beacon\"] }}\n",
        f.update_table()
    );
    hello_release_edited(label, "0.1.0", &tail, |manifest| {
        format!(
            "{manifest}\n[[task]]\nname = \"beacon\"\npackage = \"contain\"\n\
             args = [\"beacon\", \"{FAR_END}\"]\nmemory = \"8MiB\"\ncpu = \"10%\"\npids = 4\n\
             restart = \"always\"\nsyscalls = \"network\"\nnetwork = \"allowlist\"\n\n\
             [[task.egress]]\nhost = \"10.0.2.100\"\nports = [7000]\nproto = \"tcp\"\n"
        )
    })
}

/// The far end: counts every `beacon N` line it receives, answers `pong`.
fn far_end(stop: Arc<AtomicBool>) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
                    let mut line = String::new();
                    let _ = BufReader::new(&stream).read_line(&mut line);
                    if line.starts_with("beacon ") {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = (&stream).write_all(b"pong\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, count)
}

/// Boots `dir` (its disk writes kept) with the repository and the far end forwarded;
/// the power button is pressed once a console line contains `powerdown_on`.
fn boot(dir: &Path, repo_port: u16, far_port: u16, powerdown_on: &str) -> Booted {
    boot_with(dir, repo_port, far_port, powerdown_on, &[])
}

/// [`boot`] with more arguments for `limpet run`.
fn boot_with(
    dir: &Path,
    repo_port: u16,
    far_port: u16,
    powerdown_on: &str,
    extra: &[&str],
) -> Booted {
    require_tool("qemu-system-x86_64");
    Booted::spawn(
        limpet()
            .arg("run")
            .args(extra)
            .arg(dir)
            .args(["--json", "--persist", "--timeout", BOOT_DEADLINE_SECS])
            .arg("--user-net")
            .args(["--forward", &format!("80=127.0.0.1:{repo_port}")])
            .args(["--forward", &format!("7000=127.0.0.1:{far_port}")])
            .args(["--powerdown-on", powerdown_on]),
    )
}

/// Three beacons in island mode: each fails on the device, and the far end's count is
/// still `before`.
fn beacons_reach_nothing(device: &mut Booted, reached: &AtomicU64, before: u64) {
    for _ in 0..3 {
        let line = device.wait_for(AGAIN);
        assert!(line.contains(": failed: "), "in island mode: {line}");
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        before,
        "the far end counted a beacon in island mode"
    );
}

/// The lines after the first one containing `from`.
fn after<'c>(console: &'c str, from: &str) -> Vec<&'c str> {
    console
        .lines()
        .skip_while(|l| !l.contains(from))
        .skip(1)
        .collect()
}

#[test]
fn support_ends_the_device_goes_island_and_an_extension_brings_it_back() {
    let _one = QEMU
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let f = fixture("island-repo");
    let dir = release("island", &f, "support_until = \"2025-06-30\"");
    f.publish(&dir);
    let (_server, repo_port) = f.serve();
    let stop = Arc::new(AtomicBool::new(false));
    let (far_port, reached) = far_end(stop.clone());

    // 1. First boot: not in island mode by the build time; the agent's first check brings
    //    the repository's signed time (now), past the end of support: island mode begins,
    //    hello is stopped, and the device is powered down right after.
    let mut device = boot(&dir, repo_port, far_port, BEGINS);
    device.wait_for("limpet-init: island mode: off");
    device.wait_for(BEGINS);
    let console = device.finish();
    let island = after(&console, BEGINS);
    assert!(
        island
            .iter()
            .any(|l| l.contains("limpet-init: stopping hello (pid ")
                && l.ends_with("for island mode")),
        "{console}"
    );
    assert!(
        island
            .iter()
            .any(|l| l.contains("limpet-init: island network policy installed")),
        "{console}"
    );
    assert!(
        !island
            .iter()
            .any(|l| l.contains("stopping beacon") && l.contains("for island mode")),
        "the kept task keeps running:\n{console}"
    );

    // 2. Second boot: the record says island mode; the boot says so before any task
    //    starts, installs the island policy first, and never starts hello. The kept beacon
    //    runs, and nothing of it reaches the far end.
    let before = reached.load(Ordering::SeqCst);
    let mut device = boot(&dir, repo_port, far_port, "ok again after");
    let on = device.wait_for("limpet-init: island mode: ON since @");
    assert!(on.contains("(support ended)"), "{on}");
    device.wait_for("limpet-init: island network policy installed:");
    device.wait_for("limpet-init: started beacon (pid ");
    beacons_reach_nothing(&mut device, &reached, before);

    // 3. A signed extension: the agent's next check brings it, island mode ends, the
    //    normal policy is back, hello starts again, the beacon gets through again.
    run(
        limpet()
            .args(["repo", "extend-support"])
            .arg(&f.repo)
            .arg("--keys")
            .arg(&f.tuf_keys)
            .args(["--device", "hello", "--until", "2040-12-31"]),
        true,
    );
    device.wait_for(ENDS);
    device.wait_for("limpet-init: normal network policy installed:");
    device.wait_for("limpet-init: started hello (pid ");
    device.wait_for("ok again after");
    let console = device.finish();
    stop.store(true, Ordering::Relaxed);
    assert!(
        reached.load(Ordering::SeqCst) > before,
        "the beacon reached the far end after island mode:\n{console}"
    );
    let boot = console
        .lines()
        .take_while(|l| !l.contains(ENDS))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !boot.contains("limpet-init: started hello"),
        "hello never started in island mode:\n{console}"
    );
}

#[test]
fn a_repository_gone_quiet_islands_the_device_whatever_its_clock() {
    let _one = QEMU
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let f = fixture("island-stale-repo");
    let dir = release(
        "island-stale",
        &f,
        "support_until = \"2040-12-31\"\nfreshness = \"75s\"",
    );
    f.publish(&dir);
    let (_server, repo_port) = f.serve();
    let stop = Arc::new(AtomicBool::new(false));
    let (far_port, reached) = far_end(stop.clone());

    // The clock starts in 2001: PID 1 moves it to the earliest time, and it cannot stop the
    // count of uptime without fresh metadata either way.
    let mut device = boot_with(
        &dir,
        repo_port,
        far_port,
        "ok again after",
        &["--rtc-base", "2001-01-01T00:00:00"],
    );
    device.wait_for("was behind the time floor: set to @");
    device.wait_for("limpet-init: island mode: off");
    let begins = device.wait_for("limpet-init: island mode begins: no fresh signed metadata for");
    assert!(begins.contains("(freshness 75 s)"), "{begins}");
    device.wait_for("limpet-init: stopping hello (pid ");
    device.wait_for("limpet-init: island network policy installed:");
    // Island mode is on: the kept beacon reaches nothing.
    let before = reached.load(Ordering::SeqCst);
    beacons_reach_nothing(&mut device, &reached, before);

    // The vendor's timestamp is signed again: the next check is fresh, island mode ends.
    run(
        limpet()
            .args(["publish", "--refresh", "--repo"])
            .arg(&f.repo)
            .arg("--keys")
            .arg(&f.tuf_keys),
        true,
    );
    device.wait_for(ENDS);
    device.wait_for("limpet-init: normal network policy installed:");
    device.wait_for("limpet-init: started hello (pid ");
    device.wait_for("ok again after");
    let console = device.finish();
    stop.store(true, Ordering::Relaxed);
    assert!(
        reached.load(Ordering::SeqCst) > before,
        "the beacon reached the far end after island mode:\n{console}"
    );
}
