//! A task with an egress allowlist on a DHCP network gets its name and its connection on
//! the first try: PID 1 does not start it before the lease is bound and the DNS servers
//! are known, and its DNS stub does not answer "no address" while it has no upstream.
//!
//! `examples/contain/dhcp.toml` runs with `limpet run --sim --netns` (root needed, as in
//! CI) in two namespaces joined by a veth pair (TEST-NET addresses only):
//!
//! ```text
//!  dev  eth0 (DHCP, configured by the device)
//!        │
//!  srv  s0 192.0.2.1: dnsmasq (DHCP 192.0.2.50-60, router and DNS 192.0.2.1,
//!                      api.test → 203.0.113.10), started only after the device has
//!                      brought eth0 up, so the lease comes late
//!       lo 203.0.113.10: api.test, TCP 443 answers one line
//! ```
//!
//! The task (`contain first-try`) looks `api.test` up once on the stub and connects once;
//! it says on the console whether that worked.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use netns::{dnsmasq, ip, line_server, stderr_lines, Lab};

/// The line the task ends its one try with, either way.
const DONE: &str = "[first-try] first-try: done:";
/// How long the lease is held back after the device brought eth0 up: long enough that a
/// task started at once has asked, and failed, before the lease exists.
const LEASE_DELAY: Duration = Duration::from_secs(3);

#[test]
fn an_egress_task_on_dhcp_resolves_and_connects_on_its_first_try() {
    require_tool("dnsmasq");
    let out = build_example("contain/dhcp.toml", "contain-dhcp-out");

    let mut lab = Lab::new();
    let dev = lab.namespace("lf", "dev");
    let srv = lab.namespace("lf", "srv");
    ip(&srv, "link set lo up");
    ip(&srv, "addr add 203.0.113.10/32 dev lo");
    ip(
        &srv,
        &format!("link add s0 type veth peer name eth0 netns {dev}"),
    );
    ip(&srv, "addr add 192.0.2.1/24 dev s0");
    ip(&srv, "link set s0 up");

    // api.test: one line in, one line out, each connection logged.
    let stop = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(Mutex::new(Vec::<String>::new()));
    line_server(
        &srv,
        "203.0.113.10:443",
        "pong from api.test",
        Arc::clone(&stop),
        Arc::clone(&connections),
    );

    let mut device = limpet()
        .arg("run")
        .arg(&out)
        .args(["--sim", "--netns", &dev])
        .args(["--exit-on", DONE, "--timeout", "120", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run limpet");
    let lines = stderr_lines(&mut device);
    let mut console = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !console
        .iter()
        .any(|l: &String| l.contains("limpet-init: eth0 up: DHCP"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => console.push(line),
            Err(_) => panic!("the device did not bring eth0 up:\n{}", console.join("\n")),
        }
    }

    // The DHCP and DNS server, late.
    std::thread::sleep(LEASE_DELAY);
    let dir = scratch().join("first-lookup-dnsmasq");
    dnsmasq(
        &mut lab,
        &srv,
        &dir,
        &[
            "--interface=s0",
            "--listen-address=192.0.2.1",
            "--dhcp-range=192.0.2.50,192.0.2.60,255.255.255.0,2m",
            "--dhcp-option=3,192.0.2.1",
            "--dhcp-option=6,192.0.2.1",
            "--address=/api.test/203.0.113.10",
            "--local-ttl=60",
            "--log-queries",
            "--log-dhcp",
        ],
    );

    let status = device.wait().unwrap();
    console.extend(lines.try_iter());
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
        console.push(line);
    }
    stop.store(true, Ordering::Relaxed);
    let console = console.join("\n");
    let mut stdout = String::new();
    device
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let dns_log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let context = format!("{console}\n--- dnsmasq:\n{dns_log}");
    let summary: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("summary {stdout:?}: {e} ({status})\n{context}"));
    assert_eq!(summary["outcome"], "matched", "{summary}\n{context}");

    let position = |pattern: &str| console.lines().position(|l| l.contains(pattern));
    let done = console
        .lines()
        .find(|l| l.contains(DONE))
        .unwrap_or_default();
    assert!(
        done.contains(
            "connected to api.test (203.0.113.10:443) on the first try: pong from api.test"
        ),
        "the task's first try failed: {done}\n{context}"
    );
    let connections = connections.lock().unwrap().clone();
    assert_eq!(connections.len(), 1, "{connections:?}\n{context}");
    assert!(connections[0] == "hello from first-try", "{connections:?}");
    // Held until the lease, and said so; started after it.
    let lease = position("limpet-init: eth0 up: DHCP lease").expect("no lease line");
    let started = position("limpet-init: started first-try").expect("no start line");
    assert!(lease < started, "started before the lease:\n{context}");
    assert!(
        console.contains("limpet-init: first-try waits for the network"),
        "{context}"
    );
}
