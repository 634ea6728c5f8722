//! A staged rollout in real QEMU (TCG), through the real boot chain, with the real
//! repository (`limpet serve`), fleet server (`limpet fleet serve` on SQLite), update agent,
//! PID 1 and its health gate (docs/fleet.md): two devices, two disks of one image, each
//! making its own identity at its first boot, check in; 0.2.0, whose task crashes at start,
//! is published in two waves (the first device's place in wave 0, open; the second's in
//! wave 1, not yet). The second device waits for its wave while the first installs 0.2.0,
//! boots it, fails its health gate, returns to 0.1.0 and reports the rollback; the fleet
//! server halts the rollout by itself; the vendor then opens wave 1 (`limpet repo waves`),
//! and the second device is held by the server's signed hold and never fetches 0.2.0.
//!
//! Each device's repository traffic passes through a relay of this test that logs every
//! request line, so "never fetched" is asserted on what crossed the wire.
//!
//! The guest sees the repository at `10.0.2.100:80` and the fleet server at
//! `10.0.2.100:8090` (`limpet run --forward`), both on this machine's loopback.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::repo::*;
use common::*;
use limpet_tuf::UnixTime;

/// Safety net for one TCG boot (with an update) on a loaded 2-core machine.
const BOOT_DEADLINE_SECS: &str = "420";

/// The fleet server's port as the guest sees it (`--forward 8090=...`).
const FLEET_GUEST_PORT: u16 = 8090;

/// The release the test rolls out.
const RELEASE: &str = "hello/0.2.0";

const PASSWORD: &str = "a long operator password";

/// The longest hold the signed metadata allows.
const MAX_HOLD_SECS: u64 = 3600;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// `limpet fleet serve` on a free loopback port with SQLite in `dir`, plain-HTTP cookies:
/// the process, its address and the hold key's public half (hex).
fn fleet_serve(dir: &Path) -> (KillOnDrop, std::net::SocketAddr, String) {
    let db = format!("sqlite://{}", dir.join("fleet.db").display());
    let mut op = limpet()
        .args(["fleet", "operator", "ada", "--database", &db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(op.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    assert!(op.wait().unwrap().success());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("fleet-serve.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_limpet"))
        .args(["fleet", "serve", "--database", &db, "--hold-key"])
        .arg(dir.join("hold-key.pem"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--tick", "5"])
        .arg("--plain-http-cookies")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = KillOnDrop(child);
    // Its first line once it listens: `fleet server at http://ADDR/ (hold key HEX); …`.
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // Whatever it prints later is read, so it never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let key = line
        .split("(hold key ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("limpet fleet serve said {line:?}"))
        .to_owned();
    assert_eq!(key.len(), 64, "{line}");
    (server, ([127, 0, 0, 1], port).into(), key)
}

/// One HTTP/1.1 request on a connection of its own: status, headers (lowercase names) and
/// body.
fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// Logs in as the operator: the Cookie header value.
fn login(addr: std::net::SocketAddr) -> String {
    let form = format!("name=ada&password={}", PASSWORD.replace(' ', "+"));
    let (status, headers, body) = request(
        addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    assert_eq!(status, 303, "{body}");
    let set = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// `GET /api/v1/overview` as the operator.
fn overview(addr: std::net::SocketAddr, cookie: &str) -> serde_json::Value {
    let (status, _, body) = request(addr, "GET", "/api/v1/overview", &[("Cookie", cookie)], b"");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A relay between a device and the repository that logs the request line of every HTTP
/// request the device sends (its requests carry no body).
struct RequestLog {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl RequestLog {
    fn start(upstream: u16) -> RequestLog {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&lines);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let log = Arc::clone(&log);
                // Device to repository: passed on line by line, request lines logged.
                std::thread::spawn(move || {
                    let mut from = BufReader::new(c2);
                    let mut to = s2;
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        match from.read_until(b'\n', &mut line) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        let text = String::from_utf8_lossy(&line);
                        if text.starts_with("GET ") || text.starts_with("HEAD ") {
                            log.lock().unwrap().push(text.trim_end().to_owned());
                        }
                        if to.write_all(&line).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
                // Repository to device: as is.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (server, client);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        RequestLog { port, lines }
    }

    /// The request lines logged so far, and forgotten.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

/// One boot of `dir` through its chain on the user network, the repository (through the
/// device's request log on `repo_port`) and the fleet server forwarded, keeping its disk
/// writes, until it powers off or reboots by itself, pressing the power button once `until`
/// appears. Returns the console.
fn boot(dir: &Path, repo_port: u16, fleet_port: u16, until: Option<&str>) -> String {
    require_tool("qemu-system-x86_64");
    let mut cmd = limpet();
    cmd.arg("run")
        .arg(dir)
        .args(["--json", "--persist", "--timeout", BOOT_DEADLINE_SECS])
        .arg("--user-net")
        .args(["--forward", &format!("80=127.0.0.1:{repo_port}")])
        .args([
            "--forward",
            &format!("{FLEET_GUEST_PORT}=127.0.0.1:{fleet_port}"),
        ]);
    if let Some(until) = until {
        cmd.args(["--powerdown-on", until]);
    }
    let out = run(&mut cmd, true);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let console = stderr(&out);
    assert_eq!(summary["exit_code"], 0, "{summary}\n{console}");
    console
}

/// The device's public key from PID 1's identity line of its first boot.
fn identity_made(console: &str) -> [u8; 32] {
    let line = console
        .lines()
        .find(|l| l.contains("limpet-init: identity: made a new one at this boot"))
        .unwrap_or_else(|| panic!("no new identity at the first boot:\n{console}"));
    let key = line
        .split("public key ")
        .nth(1)
        .and_then(|rest| rest.split([' ', ',']).next())
        .unwrap_or_else(|| panic!("no public key in {line}"));
    hex::decode(key).unwrap().try_into().unwrap()
}

/// The console line containing `what`.
fn line<'a>(console: &'a str, what: &str) -> &'a str {
    console
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no line with {what:?}:\n{console}"))
}

/// `--wave SHARE@START` arguments of two waves: wave 0 up to place `split` (exclusive),
/// started an hour ago, and wave 1 from `split` on, starting at `second`.
fn two_waves(split: u32, first: i64, second: i64) -> Vec<String> {
    vec![
        "--wave".into(),
        format!("{split}@{}", UnixTime::from_secs(first)),
        "--wave".into(),
        format!("{}@{}", 10_000 - split, UnixTime::from_secs(second)),
    ]
}

#[test]
fn a_rollout_goes_wave_by_wave_and_halts_itself_on_booted_devices() {
    let started = std::time::Instant::now();
    let f = fixture("fleet-repo");
    let fleet_dir = scratch().join("fleet-server");
    std::fs::create_dir_all(&fleet_dir).unwrap();
    let (_fleet, fleet_addr, hold_key) = fleet_serve(&fleet_dir);
    let table = format!(
        "{}fleet = \"http://10.0.2.100:{FLEET_GUEST_PORT}\"\n",
        f.update_table()
    );
    let v1 = hello_release("fleet", "0.1.0", false, &table);
    // 0.2.0's task exits at start and is never restarted: its trial fails the health gate.
    let v2 = hello_release("fleet", "0.2.0", true, &table);
    f.publish(&v1);
    let (_repo, repo_port) = f.serve();
    let fleet_port = fleet_addr.port();
    let devices = [
        mixed_output("fleet-device-1", &v1, &v1, &[]),
        mixed_output("fleet-device-2", &v1, &v1, &[]),
    ];
    let logs = [RequestLog::start(repo_port), RequestLog::start(repo_port)];

    // First boots: each device makes its identity and checks in with a signed report.
    let mut keys = Vec::new();
    for (dir, log) in devices.iter().zip(&logs) {
        let console = boot(
            dir,
            log.port,
            fleet_port,
            Some("[limpet-update] up to date"),
        );
        keys.push(identity_made(&console));
        assert!(
            console.contains(
                "limpet-agent: checked in with http://10.0.2.100:8090: 0 hold(s) in force"
            ),
            "{console}"
        );
    }
    let cookie = login(fleet_addr);
    let o = overview(fleet_addr, &cookie);
    assert_eq!(
        o["versions"],
        serde_json::json!([{"version": "0.1.0", "devices": 2}]),
        "{o}"
    );

    // The waves of 0.2.0: the device with the lower place goes first, in wave 0 (started an
    // hour ago); the other is in wave 1, which starts in a day.
    let keys: [[u8; 32]; 2] = keys.try_into().unwrap();
    let places = keys.map(|k| limpet_fleet_api::waves::bucket(&k, RELEASE));
    assert_ne!(
        places[0], places[1],
        "both devices in one place: {places:?}"
    );
    let (first, second) = if places[0] < places[1] {
        (0, 1)
    } else {
        (1, 0)
    };
    let t0 = now();
    run(
        limpet()
            .arg("publish")
            .arg(&v2)
            .arg("--repo")
            .arg(&f.repo)
            .arg("--keys")
            .arg(&f.tuf_keys)
            .arg("--image-key")
            .arg(&f.image_pub)
            .args(two_waves(places[second], t0 - 3600, t0 + 86_400))
            .args(["--hold-key", &hold_key])
            .args(["--max-hold-secs", &MAX_HOLD_SECS.to_string()]),
        true,
    );
    // The operator creates the rollout with the waves as signed: it halts when half of a
    // wave (at least one device) fails.
    let targets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.repo.join("metadata/targets.json")).unwrap())
            .unwrap();
    let create = serde_json::json!({
        "release": RELEASE,
        "waves": targets["signed"]["x-limpet-waves"],
        "thresholds": {"max_failure_bp": 5000, "min_reports": 1, "report_deadline_secs": 3600},
    });
    let (status, _, body) = request(
        fleet_addr,
        "POST",
        "/api/v1/rollouts",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        create.to_string().as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
    for log in &logs {
        log.take();
    }

    // The wave-1 device waits for its wave, fetching nothing of 0.2.0.
    let console = boot(
        &devices[second],
        logs[second].port,
        fleet_port,
        Some("waiting: 0.2.0"),
    );
    let waiting = line(&console, "waiting: 0.2.0");
    assert!(
        waiting.ends_with(&format!(
            "waiting: 0.2.0 is listed, this device is in wave 1, which starts at {}",
            UnixTime::from_secs(t0 + 86_400)
        )),
        "{waiting}"
    );

    // The wave-0 device installs 0.2.0 and reboots into it.
    let console = boot(&devices[first], logs[first].port, fleet_port, None);
    assert!(
        console.contains("limpet-init: update 0.2.0 verified and staged as a trial in slot b"),
        "{console}"
    );
    println!(
        "0.1.0 -> 0.2.0 on the wave-0 device: {}",
        staged_line(&console)
    );
    let fetched = logs[first].take();
    assert!(
        fetched.iter().any(|l| l.contains("/hello/0.2.0/")),
        "the wave-0 device fetched no target of 0.2.0: {fetched:?}"
    );
    // Its trial boot: the task crashes, the health gate rolls 0.2.0 back and reboots.
    let console = boot(&devices[first], logs[first].port, fleet_port, None);
    assert!(console.contains("booting slot B (trial"), "{console}");
    assert!(
        console.contains(
            "trial failed its health gate (task hello exited with code 1 and is not restarted)"
        ),
        "{console}"
    );
    for l in console.lines().filter(|l| l.contains("[limpet-update] ")) {
        println!("trial boot: {l}");
    }
    // Back on 0.1.0, its agent reports the rollback; the server halts the rollout at once
    // and answers with its hold.
    let console = boot(
        &devices[first],
        logs[first].port,
        fleet_port,
        Some("[limpet-update] up to date"),
    );
    assert!(
        console.contains("slot-a (hello 0.1.0) mounted read-only"),
        "{console}"
    );
    // (Its agent may have checked in with the rollback already on the trial boot, before
    // PID 1 rebooted: then this check-in finds the hold it keeps still in force.)
    let checked_in = line(
        &console,
        "limpet-agent: checked in with http://10.0.2.100:8090: ",
    );
    assert!(
        checked_in.ends_with(": 1 hold(s) in force") || checked_in.ends_with(": holds unchanged"),
        "{console}"
    );
    let o = overview(fleet_addr, &cookie);
    let rollout = &o["rollouts"][0];
    assert_eq!(rollout["release"], RELEASE, "{o}");
    assert_eq!(rollout["state"], "halted", "{o}");
    let reason = rollout["halt_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("wave 0: 1 of 1 devices failed (1 rolled back"),
        "{reason}"
    );
    assert_eq!(rollout["waves"][0]["rollbacks"], 1, "{o}");

    // The vendor opens wave 1 now (the targets keys sign its new start); the server's hold
    // keeps the wave-1 device from fetching 0.2.0.
    let opened = now() - 60;
    run(
        limpet()
            .args(["repo", "waves"])
            .arg(&f.repo)
            .arg("--keys")
            .arg(&f.tuf_keys)
            .args(["--release", RELEASE])
            .args(two_waves(places[second], t0 - 3600, opened)),
        true,
    );
    let console = boot(
        &devices[second],
        logs[second].port,
        fleet_port,
        Some("held: 0.2.0"),
    );
    let held = line(&console, "held: 0.2.0");
    assert!(
        held.contains("held: 0.2.0 is held by the fleet server until ")
            && held.contains(&format!(": {reason}")),
        "{held}"
    );
    let fetched = logs[second].take();
    assert!(
        fetched.iter().any(|l| l.contains("/metadata/")),
        "the relay saw none of the wave-1 device's requests: {fetched:?}"
    );
    let of_release: Vec<_> = fetched
        .iter()
        .filter(|l| l.contains("/hello/0.2.0/") || l.contains("/chunks/"))
        .collect();
    assert!(
        of_release.is_empty(),
        "the held device fetched {of_release:?}"
    );
    println!(
        "fleet rollout in QEMU: 7 boots, {} s in all",
        started.elapsed().as_secs()
    );
    // Passed: the servers end, and the builds and disks (about 560 MB) go; a failed run
    // leaves them for a look.
    drop((_fleet, _repo));
    let _ = std::fs::remove_dir_all(scratch());
}
