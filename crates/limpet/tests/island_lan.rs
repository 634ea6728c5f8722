//! Island mode on a real LAN, in real QEMU (TCG) with the host's kernel
//! (docs/end-of-life.md#island-mode): the device's Roughtime client asks a real server over
//! UDP and learns that its support has ended; the power is cut (QEMU killed by its pid) the
//! moment PID 1 says island mode begins; the next boot comes up in island mode, since the
//! same moment, and with `lan = true` its kept tasks reach the LAN and nothing beyond it.
//!
//! `examples/contain/island-lan.toml` (built at `SOURCE_DATE_EPOCH` 1700000000, support
//! until 2025-06-30, `island = { keep = ["lan", "wan"], lan = true }`) boots with
//! `limpet run --net-tap` on the test network of `netns::TapNet` (TEST-NET addresses only):
//!
//! ```text
//!  lan   br0 192.0.2.2: dnsmasq (DHCP), the LAN far end on TCP 7000 ── tap0 ── the device
//!   │                                                                    (DHCP 192.0.2.1xx)
//!  rtr   192.0.2.1 / 198.51.100.1
//!   │
//!  inet  198.51.100.2: the internet far end on TCP 7000; pyroughtime on UDP 2002 (rt1, the
//!        listed key) and 2003 (a key of its own; the device lists another for rt2)
//! ```
//!
//! The `lan` task beacons to 192.0.2.2:7000, the `wan` task to 198.51.100.2:7000, each with
//! its egress rule; each far end logs every line it receives. Island mode keeps both: the
//! island policy narrows their rules to `lan4` (the DHCP lease's network), so `lan`'s still
//! matches and `wan`'s cannot.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::repo::Booted;
use common::*;
use netns::{
    children_of, inside, kill_by_pid, line_server, require_pyroughtime, roughtime_server, Lab,
    TapNet, RT1_PRIVATE,
};

/// Safety net for one TCG boot on a loaded 2-core machine.
const BOOT_DEADLINE_SECS: &str = "480";
/// How many beacons of each task the second boot waits for.
const BEACONS: u64 = 3;

const BEGINS: &str =
    "limpet-init: island mode begins: support ended at @1751328000 (earliest time @";

/// Boots `dir` (its disk writes kept) with `limpet run --net-tap` in the LAN's namespace;
/// the power button is pressed once every line of `powerdown_on` has appeared.
fn boot(net: &TapNet, dir: &Path, powerdown_on: &[&str]) -> Booted {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &net.lan])
        .arg(env!("CARGO_BIN_EXE_limpet"))
        .arg("run")
        .arg(dir)
        .args(["--json", "--persist", "--timeout", BOOT_DEADLINE_SECS])
        .args(["--net-tap", TapNet::TAP]);
    for line in powerdown_on {
        cmd.args(["--powerdown-on", line]);
    }
    Booted::spawn(&mut cmd)
}

/// The power cut: QEMU, the one child of `limpet run` (`ip netns exec` runs it in its own
/// place), killed by its pid with SIGKILL; returns the console and `limpet run`'s exit
/// code.
fn cut_power(mut device: Booted) -> (String, Option<i32>) {
    let run = device.child.0.id();
    let qemu: Vec<u32> = children_of(run)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("qemu-system"))
        })
        .collect();
    assert_eq!(qemu.len(), 1, "one QEMU under limpet run {run}: {qemu:?}");
    kill_by_pid(i32::try_from(qemu[0]).unwrap());
    let status = device.child.0.wait().unwrap();
    device.drain();
    (device.console.join("\n"), status.code())
}

/// The number after `prefix` in `line`, up to the first character that is not a digit.
fn number_after(line: &str, prefix: &str) -> u64 {
    line.split(prefix)
        .nth(1)
        .map(|t| {
            t.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no number after {prefix:?} in {line:?}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn roughtime_ends_support_a_power_cut_at_the_switch_boots_island_and_lan_traffic_follows_lan() {
    require_tool("qemu-system-x86_64");
    require_tool("dnsmasq");
    require_pyroughtime();
    let out = build_example("contain/island-lan.toml", "contain-island-lan-out");

    let mut lab = Lab::new();
    let net = TapNet::new(&mut lab, "lil", &scratch().join("island-lan-dnsmasq"));
    let rt1 = roughtime_server(
        &mut lab,
        &net.inet,
        TapNet::INET_HOST,
        2002,
        Some(RT1_PRIVATE),
    );
    assert_eq!(
        rt1, "x7zzcWUdImVSQwugvqZHLuSlB9GSMuuhHcHVvUMMBHU=",
        "the key the manifest lists for rt1"
    );
    roughtime_server(&mut lab, &net.inet, TapNet::INET_HOST, 2003, None);
    let stop = Arc::new(AtomicBool::new(false));
    let lan_seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let wan_seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let lan_far_end = format!("{}:7000", TapNet::LAN_HOST);
    let wan_far_end = format!("{}:7000", TapNet::INET_HOST);
    line_server(
        &net.lan,
        &lan_far_end,
        "pong from the lan",
        stop.clone(),
        lan_seen.clone(),
    );
    line_server(
        &net.inet,
        &wan_far_end,
        "pong from the internet",
        stop.clone(),
        wan_seen.clone(),
    );
    // The control: a host on the LAN reaches the internet far end through the router, so
    // a count of zero there is the device's doing, not the network's.
    let reply = inside(&net.lan, move || {
        let addr: SocketAddr = wan_far_end.parse().unwrap();
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (&stream).write_all(b"probe from the lan\n").unwrap();
        let mut reply = String::new();
        BufReader::new(&stream).read_line(&mut reply).unwrap();
        reply
    });
    assert_eq!(reply, "pong from the internet\n");
    let wans = |seen: &Mutex<Vec<String>>| {
        let seen = seen.lock().unwrap();
        seen.iter().filter(|l| l.starts_with("wan ")).count()
    };

    // 1. First boot: out of island mode by the build time. rt1's answer raises the earliest
    //    time to the server's (the host's) time, past the end of support: island mode
    //    begins. The power is cut as PID 1 says so.
    let before = now();
    let mut device = boot(&net, &out, &[]);
    device.wait_for("limpet-init: island mode: off");
    let lease = device.wait_for(" up: DHCP lease ");
    assert!(
        lease.contains("192.0.2.1"),
        "an address of dnsmasq's range: {lease}"
    );
    let raised = device.wait_for("limpet-init: roughtime rt1:");
    let begins = device.wait_for(BEGINS);
    let (console, code) = cut_power(device);
    let after = now();
    let context = format!("{console}\n--- dnsmasq:\n{}", net.dnsmasq_log());
    let raised_to = number_after(&raised, "roughtime rt1: earliest time raised to @");
    assert!(
        raised_to + 120 > before && raised_to <= after,
        "rt1 raised the earliest time to {raised_to}, the host's time {before}..{after}\n{context}"
    );
    let since = number_after(&begins, "(earliest time @");
    assert!(since >= raised_to, "{begins}\n{context}");
    assert_eq!(
        code,
        Some(1),
        "limpet run fails: QEMU was killed\n{context}"
    );
    assert!(
        console.contains("`qemu-system-x86_64` failed (signal: 9 (SIGKILL))"),
        "{context}"
    );
    assert!(
        !console.contains("limpet-init: all tasks stopped"),
        "a power cut, not a shutdown:\n{context}"
    );
    let wan_before_island = wans(&wan_seen);
    let lan_before_island = lan_seen.lock().unwrap().len();

    // 2. Second boot after the cut: the saved record says island mode since the moment of
    //    the switch, before any task starts; the island policy is the first and only one.
    //    Both beacons are kept: `lan` reaches the LAN host, `wan` reaches nothing; rt2's
    //    answer is refused (its server signs with a key the device does not list).
    let lan_done = format!("[lan] beacon {BEACONS}:");
    let wan_done = format!("[wan] beacon {BEACONS}:");
    let mut device = boot(&net, &out, &[&lan_done, &wan_done]);
    let on = device.wait_for("limpet-init: island mode: ON since @");
    assert!(
        on.contains(&format!("island mode: ON since @{since} (support ended)")),
        "{on}\nthe first boot's switch: {begins}"
    );
    device.wait_for("limpet-init: island network policy installed:");
    device.wait_for_all(&["limpet-init: roughtime rt2:", &lan_done, &wan_done]);
    let console = device.finish();
    stop.store(true, Ordering::Relaxed);
    let context = format!("{console}\n--- dnsmasq:\n{}", net.dnsmasq_log());
    assert!(
        !console.contains("limpet-init: island mode: off")
            && !console.contains("limpet-init: normal network policy installed"),
        "island mode from the start to the end:\n{context}"
    );
    let rt2 = console
        .lines()
        .find(|l| l.contains("limpet-init: roughtime rt2:"))
        .unwrap_or_default();
    assert!(
        rt2.ends_with(
            "roughtime rt2: answer refused: the certificate is not signed by rt2's listed key"
        ),
        "{rt2}\n{context}"
    );
    for task in ["lan", "wan"] {
        assert!(
            console.contains(&format!("limpet-init: started {task} (pid ")),
            "the kept {task} runs:\n{context}"
        );
    }
    let said = |task: &str| -> Vec<String> {
        console
            .lines()
            .filter_map(|l| l.split(&format!("[{task}] beacon ")).nth(1))
            .map(str::to_owned)
            .collect()
    };
    // `lan`: every beacon got through, and the LAN host has each of them.
    let lan_said = said("lan");
    assert!(lan_said.len() >= 3, "{context}");
    let lan_seen = lan_seen.lock().unwrap()[lan_before_island..].to_vec();
    for (i, line) in lan_said.iter().enumerate() {
        let n = i + 1;
        assert!(
            line.starts_with(&format!("{n}: ok: pong from the lan")),
            "lan beacon {n}: {line}\n{context}"
        );
        assert!(
            lan_seen.contains(&format!("lan {n}")),
            "{lan_seen:?}\n{context}"
        );
    }
    assert!(
        lan_seen.iter().all(|l| l.starts_with("lan ")),
        "{lan_seen:?}"
    );
    // `wan`: every beacon failed on the device, and the internet host counted none of this
    // boot.
    let wan_said = said("wan");
    assert!(wan_said.len() >= 3, "{context}");
    for line in &wan_said {
        assert!(
            line.contains(": failed: "),
            "wan beacon in island mode: {line}\n{context}"
        );
    }
    assert_eq!(
        wans(&wan_seen),
        wan_before_island,
        "the internet host counted a beacon in island mode: {wan_seen:?}\n{context}"
    );
    eprintln!(
        "rt1 raised to @{raised_to}; island since @{since}; the internet host counted {} \
         beacon(s) before island mode, 0 in it; the LAN host {} in it",
        wan_before_island,
        lan_seen.len()
    );
}
