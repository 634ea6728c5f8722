//! PID 1 asks Roughtime servers for real (docs/end-of-life.md#roughtime):
//! `examples/contain/roughtime.toml`, built at `SOURCE_DATE_EPOCH` 1700000000 (November
//! 2023, so its earliest time is years behind), runs with `limpet run --sim --netns` (root
//! needed, as in CI) beside two pyroughtime servers in another namespace (TEST-NET
//! addresses only):
//!
//! ```text
//!  dev  eth0 192.0.2.2 (static): limpet-init as PID 1, its nftables policy installed
//!        │ veth
//!  srv  s0 192.0.2.1: pyroughtime on UDP 2002 under rt1's listed key,
//!                     and on UDP 2003 under a key of its own (rt2 lists another)
//! ```
//!
//! rt1's answer raises the device's earliest time to the server's time (said on the
//! console, shown in the status file); rt2's is refused with the client's exact error. In a
//! simulation the clock is the host's, so it is not set; the time record is a scratch file.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use netns::{ip, require_pyroughtime, roughtime_server, stderr_lines, Lab, RT1_PRIVATE};

/// The status file of the simulated device run by `limpet run` `pid`: PID 1's `/run` is a
/// tmpfs of its own mount namespace, reached through `/proc/<PID 1>/root`.
fn status_file(run_pid: u32) -> Option<serde_json::Value> {
    let root = std::env::temp_dir().join(format!("limpet-sim-{run_pid}"));
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let proc_dir = entry.path();
        let Ok(link) = std::fs::read_link(proc_dir.join("root")) else {
            continue;
        };
        if link != root {
            continue;
        }
        let path: PathBuf = proc_dir.join("root/run/limpet/status.json");
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(v) = serde_json::from_str(&text) {
                return Some(v);
            }
        }
    }
    None
}

#[test]
fn pid1_raises_its_earliest_time_from_a_listed_server_and_refuses_an_unlisted_key() {
    require_pyroughtime();
    let out = build_example("contain/roughtime.toml", "contain-roughtime-out");

    let mut lab = Lab::new();
    let dev = lab.namespace("lrd", "dev");
    let srv = lab.namespace("lrd", "srv");
    ip(&srv, "link set lo up");
    ip(
        &srv,
        &format!("link add s0 type veth peer name eth0 netns {dev}"),
    );
    ip(&srv, "addr add 192.0.2.1/24 dev s0");
    ip(&srv, "link set s0 up");
    let rt1 = roughtime_server(&mut lab, &srv, "192.0.2.1", 2002, Some(RT1_PRIVATE));
    assert_eq!(
        rt1, "x7zzcWUdImVSQwugvqZHLuSlB9GSMuuhHcHVvUMMBHU=",
        "the key the manifest lists"
    );
    roughtime_server(&mut lab, &srv, "192.0.2.1", 2003, None);

    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut device = limpet()
        .arg("run")
        .arg(&out)
        .args(["--sim", "--netns", &dev, "--timeout", "120", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run limpet");
    let lines = stderr_lines(&mut device);
    let mut console = Vec::<String>::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let said =
        |console: &[String], prefix: &str| console.iter().find(|l| l.contains(prefix)).cloned();
    while said(&console, "roughtime rt2:").is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => console.push(line),
            Err(_) => panic!("PID 1 said nothing about rt2:\n{}", console.join("\n")),
        }
    }
    // The status file, once it has both results (it is written on the loop's next turn).
    let mut status = None;
    while Instant::now() < deadline {
        if let Some(s) = status_file(device.id()) {
            if s["system"]["roughtime"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
            {
                status = Some(s);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Ended by SIGTERM, `limpet run` leaves its scratch root (its mounts went with its
    // namespace): removed here.
    let _ = Command::new("kill")
        .args(["-TERM", &device.id().to_string()])
        .status();
    let _ = device.wait();
    let _ =
        std::fs::remove_dir_all(std::env::temp_dir().join(format!("limpet-sim-{}", device.id())));
    console.extend(lines.try_iter());
    let context = console.join("\n");

    // rt1: the earliest time, built at 1700000000, raised to the server's time.
    let rt1 = said(&console, "roughtime rt1:").unwrap_or_default();
    let raised: u64 = rt1
        .split("limpet-init: roughtime rt1: earliest time raised to @")
        .nth(1)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("rt1 did not raise the earliest time: {rt1:?}\n{context}"));
    assert!(
        raised > 1_700_000_000 && raised + 120 > before && raised <= after,
        "raised to {raised}, host time {before}..{after}\n{context}"
    );
    // rt2: its server signs with a key the manifest does not list.
    let rt2 = said(&console, "roughtime rt2:").unwrap_or_default();
    assert!(
        rt2.ends_with(
            "roughtime rt2: answer refused: the certificate is not signed by rt2's listed key"
        ),
        "{rt2}\n{context}"
    );

    eprintln!("{rt1}\n{rt2}");
    let status = status.unwrap_or_else(|| panic!("no status file with both results\n{context}"));
    let results = &status["system"]["roughtime"];
    assert_eq!(results[0]["server"], "rt1", "{status}");
    assert_eq!(results[0]["result"], "raised", "{status}");
    assert_eq!(results[0]["lower"], raised, "{status}");
    assert_eq!(results[1]["server"], "rt2", "{status}");
    assert_eq!(results[1]["result"], "refused", "{status}");
    assert_eq!(results[1]["lower"], serde_json::Value::Null, "{status}");
    let time = &status["system"]["time"];
    assert!(time["earliest"].as_u64().unwrap() >= raised, "{status}");
    assert_eq!(
        time["floor"], 1_700_000_000u64,
        "the floor that refuses signed metadata stays: {status}"
    );
}
