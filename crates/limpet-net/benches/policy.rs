//! What the Limpet nftables policy costs allowed traffic, and what a fully compromised
//! device can still send, each against a device without the policy, in the same run.
//!
//! Run as root: `cargo bench -p limpet-net --bench policy` (or `benches/network.sh`).
//! Arguments that do not start with `-` pick phases: `throughput`, `latency`, `flood`.
//! Environment: `REPS` (default 3), `FLOOD_SECS` (default 5), `BULK_SECS` (default 3),
//! `PIN_CPU` (the one CPU the flood runs on; default the last one).
//!
//! Topology, made twice, identical: a **device** namespace (192.0.2.10/24, default route via
//! 192.0.2.1) joined by a veth pair to a **sink** namespace (192.0.2.1/24, 198.51.100.1/24,
//! 203.0.113.10/24 = the example's `api.test`). Only TEST-NET addresses. On the `limpet`
//! link the device namespace gets the ruleset PID 1 installs ([`Nft::install`]); the `open`
//! link's device has no table at all (an unconfined Linux device). Namespaces and the
//! cgroup2 mount are removed on drop, also when a measurement panics.
//!
//! The policy is `examples/contain/limpet.toml` compiled by `limpet_compile::net::compile`; its
//! tasks are matched by cgroup (`socket cgroupv2 level 2`, as `limpet-init` does) or by
//! uid (10000 + task index), and `api.test`'s set gets 203.0.113.10 (what PID 1's stub does
//! after resolving it). Senders are this binary re-run as a probe inside the device
//! namespace, in the task's cgroup and with the task's uid.
//!
//! - **throughput**: TCP bulk from `telemetry` to 203.0.113.10:443 for `BULK_SECS`, bytes
//!   counted by the sink's reader. The policy is the example's with the `rate` of
//!   telemetry's rules removed, so the figure is the ruleset's per-packet cost, not the cap.
//! - **latency**: 1000 UDP request/response round trips (32-byte payload) from `telemetry`
//!   to an echo server on 203.0.113.10:443, after 50 unmeasured ones; same uncapped policy.
//! - **flood**: every task of the example (not PID 1) blasts for `FLOOD_SECS`, all on one
//!   CPU (`taskset`), at random addresses of 198.51.100.0/24 and 203.0.113.0/24 and random
//!   ports, every other packet at the allowed 203.0.113.10:443: `udp` (1200-byte
//!   datagrams), `syn` (non-blocking TCP connects, closed at once: one SYN each) or `both`
//!   (one process of each kind per task). Measured at the sink: the rx counters of its veth
//!   (frames delivered to the sink's stack, Ethernet header included). The policy is the
//!   example's, caps included. Each blaster stops after `FLOOD_SECS` or 50 million sends.

// Bench code: a failed setup is a failed run, reported with its context.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use limpet_net::{Nft, Owner, Ruleset, Runtime, TaskMatch};
use limpet_policy::NetPolicy;
use support::{run, unique, Cgroup2, Netns};

#[path = "../tests/support/mod.rs"]
mod support;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/contain/limpet.toml"
);

/// Used when `examples/contain/limpet.toml` is missing: the same device with a literal
/// address for `api.test`.
const FALLBACK_MANIFEST: &str = r#"
[device]
name = "contain"
version = "0.1.0"
target = "x86_64"

[network]
mode = "static"
address = "192.0.2.10/24"
gateway = "192.0.2.1"

[[task]]
name = "telemetry"
package = "contain"
memory = "8MiB"
cpu = "20%"
syscalls = "network"
network = "allowlist"

[[task.egress]]
host = "203.0.113.10"
ports = [443]
proto = "tcp"
rate = "20kbit/s"

[[task.egress]]
host = "203.0.113.10"
ports = [443]
proto = "udp"
rate = "20kbit/s"

[[task]]
name = "hostile"
package = "contain"
memory = "8MiB"
cpu = "10%"
syscalls = "network"
network = "allowlist"
"#;

/// The example's `api.test`, on the sink.
const API: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const API_PORT: u16 = 443;
/// The allowed task.
const ALLOWED: &str = "telemetry";
/// Upper bound of sends per flood process.
const FLOOD_MAX_SENDS: u64 = 50_000_000;
/// Upper bound of bytes per bulk transfer.
const BULK_MAX_BYTES: u64 = 40_000_000_000;
const RR_COUNT: usize = 1000;
const RR_WARMUP: usize = 50;
const FLEET: f64 = 150_000.0;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--probe") {
        return probe(&args[2..]);
    }
    let phases: Vec<&str> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let on = |p: &str| phases.is_empty() || phases.contains(&p);
    if !rustix::process::geteuid().is_root() {
        println!("the policy bench needs root (network namespaces, nftables, cgroup2)");
        return ExitCode::FAILURE;
    }
    let mut b = Bench::new();
    let mut table = Vec::new();
    if on("throughput") {
        table.extend(b.throughput());
    }
    if on("latency") {
        table.extend(b.latency());
    }
    let allowed_rows = table.len();
    if on("flood") {
        table.extend(b.flood());
    }
    println!();
    print_tables(&b, &table, allowed_rows);
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------
// Namespaces, links, cgroups.

/// A device namespace and its sink, joined by a veth pair.
#[derive(Debug)]
struct Link {
    // Field order: the sink is dropped first, which deletes the veth pair with it.
    sink: Netns,
    dev: Netns,
    sink_if: String,
    /// The sink's TCP listener on 203.0.113.10:443 (never closed during the run).
    tcp: TcpListener,
}

impl Link {
    fn new() -> Link {
        let dev = Netns::new("limpet-bench-");
        let sink = Netns::new("limpet-bench-");
        let (a, b) = (unique("lbd"), unique("lbs"));
        run(
            "ip",
            &[
                "link", "add", "name", &a, "netns", &dev.name, "type", "veth", "peer", "name", &b,
                "netns", &sink.name,
            ],
        );
        dev.ip(&["addr", "add", "192.0.2.10/24", "dev", &a]);
        dev.ip(&["link", "set", &a, "up"]);
        dev.ip(&["route", "add", "default", "via", "192.0.2.1"]);
        for addr in ["192.0.2.1/24", "198.51.100.1/24", "203.0.113.10/24"] {
            sink.ip(&["addr", "add", addr, "dev", &b]);
        }
        sink.ip(&["link", "set", &b, "up"]);
        let tcp = sink.enter(|| TcpListener::bind(SocketAddrV4::new(API, API_PORT)).unwrap());
        tcp.set_nonblocking(true).unwrap();
        Link {
            sink,
            dev,
            sink_if: b,
            tcp,
        }
    }

    /// (bytes, packets) received by the sink's veth.
    fn sink_rx(&self) -> (u64, u64) {
        let out = self
            .sink
            .ip(&["-s", "-j", "link", "show", "dev", &self.sink_if]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let rx = &v[0]["stats64"]["rx"];
        (
            rx["bytes"].as_u64().unwrap(),
            rx["packets"].as_u64().unwrap(),
        )
    }
}

// ---------------------------------------------------------------------------------------
// The bench.

/// A policy condition of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cond {
    /// The `open` link: no table.
    None,
    /// The `limpet` link, tasks matched by cgroup (as limpet-init does).
    Cgroup,
    /// The `limpet` link, tasks matched by uid.
    Uid,
}

impl Cond {
    fn label(self) -> &'static str {
        match self {
            Cond::None => "no policy (unconfined)",
            Cond::Cgroup => "Limpet, cgroup match",
            Cond::Uid => "Limpet, uid match",
        }
    }
}

#[derive(Debug)]
struct Bench {
    policy: NetPolicy,
    uncapped: NetPolicy,
    source: String,
    // Drop order: links (their probes are gone by then), then the cgroup mount.
    limpet: Link,
    open: Link,
    _cg: Cgroup2,
    cgroups: BTreeMap<String, (String, u64)>,
    reps: usize,
    pin_cpu: u64,
    flood_secs: u64,
    bulk_secs: u64,
}

/// One row of the result table: a label, the unit, and per condition the 3 values.
#[derive(Debug)]
struct Row {
    what: String,
    unit: &'static str,
    values: Vec<(Cond, Vec<f64>)>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Bench {
    fn new() -> Bench {
        let (text, source) = match std::fs::read_to_string(EXAMPLE) {
            Ok(t) => (t, "examples/contain/limpet.toml".to_owned()),
            Err(_) => (
                FALLBACK_MANIFEST.to_owned(),
                "the bench's built-in copy (examples/contain/limpet.toml not found)".to_owned(),
            ),
        };
        let m = limpet_manifest::parse("limpet.toml", &text).expect("the manifest parses");
        let policy = limpet_compile::net::compile(&m).expect("the policy compiles");
        let mut uncapped = policy.clone();
        for t in uncapped.tasks.iter_mut().filter(|t| t.name == ALLOWED) {
            for e in &mut t.egress {
                e.rate = None;
                e.packets = None;
            }
        }
        let tasks: Vec<String> = policy.tasks.iter().map(|t| t.name.clone()).collect();
        assert!(tasks.iter().any(|t| t == ALLOWED), "no task {ALLOWED}");
        let mut cg = Cgroup2::mount("limpet-bench-");
        let cgroups: BTreeMap<String, (String, u64)> = tasks
            .iter()
            .map(|t| {
                let (dir, id) = cg.task_dir(t);
                let procs = dir.join("cgroup.procs").to_str().unwrap().to_owned();
                (t.clone(), (procs, id))
            })
            .collect();
        let limpet = Link::new();
        let open = Link::new();
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let b = Bench {
            policy,
            uncapped,
            source,
            limpet,
            open,
            _cg: cg,
            cgroups,
            reps: env_num("REPS", 3) as usize,
            pin_cpu: env_num("PIN_CPU", ncpu - 1),
            flood_secs: env_num("FLOOD_SECS", 5).min(5),
            bulk_secs: env_num("BULK_SECS", 3).min(5),
        };
        println!("# policy: {}", b.source);
        for t in &b.policy.tasks {
            println!(
                "#   task {} uid {}: {} egress rule(s), {} listen rule(s)",
                t.name,
                t.uid,
                t.egress.len(),
                t.listen.len()
            );
        }
        println!(
            "# links: limpet (dev {}, sink {}), open (dev {}, sink {}); flood on CPU {}",
            b.limpet.dev.name, b.limpet.sink.name, b.open.dev.name, b.open.sink.name, b.pin_cpu
        );
        b
    }

    fn link(&self, c: Cond) -> &Link {
        match c {
            Cond::None => &self.open,
            Cond::Cgroup | Cond::Uid => &self.limpet,
        }
    }

    /// Installs `policy` on the limpet link's device, tasks matched as `c` says, and puts
    /// 203.0.113.10 in `api.test`'s set. A fresh install: counters and limits start at 0.
    fn install(&self, policy: &NetPolicy, c: Cond) {
        let mut rt = Runtime::by_uid(policy);
        if c == Cond::Cgroup {
            for (name, m) in rt.tasks.iter_mut() {
                *m = TaskMatch::CgroupV2 {
                    level: 2,
                    id: self.cgroups[name].1,
                };
            }
        }
        let rs = Ruleset::build(policy, &rt).unwrap();
        let set = policy.set_of_name("api.test").map(str::to_owned);
        self.limpet.dev.enter(|| {
            let mut nft = Nft::open().unwrap();
            nft.install(&rs).unwrap();
            if let Some(set) = set {
                nft.add_set_elements(&set, &[(API, Duration::from_secs(3600))])
                    .unwrap();
            }
        });
    }

    fn counters(&self) -> limpet_net::Counters {
        self.limpet
            .dev
            .enter(|| Nft::open().unwrap().counters().unwrap())
    }

    fn uid(&self, task: &str) -> u32 {
        self.policy
            .tasks
            .iter()
            .find(|t| t.name == task)
            .unwrap()
            .uid
    }

    /// Spawns this binary as a probe in `link`'s device namespace, in `task`'s cgroup and
    /// with its uid, optionally pinned to one CPU.
    fn spawn_probe(&self, link: &Link, task: &str, pin: bool, what: &[&str]) -> Child {
        let exe = std::env::current_exe().unwrap();
        let uid = self.uid(task).to_string();
        let cpu = self.pin_cpu.to_string();
        let mut cmd = if pin {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu, "ip"]);
            c
        } else {
            Command::new("ip")
        };
        cmd.args(["netns", "exec", &link.dev.name])
            .arg(exe)
            .args(["--probe", &self.cgroups[task].0, &uid])
            .args(what)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        cmd.spawn().unwrap()
    }

    // ----- a. throughput

    fn throughput(&mut self) -> Vec<Row> {
        println!(
            "\n## a. TCP bulk {ALLOWED} -> {API}:{API_PORT}, {} s per run, uncapped rule",
            self.bulk_secs
        );
        let conds = [Cond::None, Cond::Cgroup, Cond::Uid];
        let mut vals: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for rep in 1..=self.reps {
            for (i, &c) in conds.iter().enumerate() {
                if c != Cond::None {
                    self.install(&self.uncapped, c);
                }
                let l = load();
                let mbs = self.bulk(c);
                let check = if c == Cond::None {
                    String::new()
                } else {
                    let n = self.counters();
                    let acc = n.get(&Owner::Task(ALLOWED.into()), "egress:0");
                    let drop = n.get(&Owner::Device, "output-drop");
                    format!(
                        " (rule task={ALLOWED} egress:0 accepted {} packets, {} bytes; device output-drop {} packets)",
                        acc.packets, acc.bytes, drop.packets
                    )
                };
                println!(
                    "rep {rep} {:<24} {mbs:>9.1} MB/s  load {l}{check}",
                    c.label()
                );
                vals.entry(i).or_default().push(mbs);
            }
        }
        vec![Row {
            what: format!(
                "a. TCP bulk {ALLOWED} → {API}:{API_PORT} ({} s; rule without its rate cap)",
                self.bulk_secs
            ),
            unit: "MB/s",
            values: conds
                .iter()
                .enumerate()
                .map(|(i, &c)| (c, vals[&i].clone()))
                .collect(),
        }]
    }

    /// One bulk transfer; MB/s (10^6 B/s) as counted by the sink's reader.
    fn bulk(&self, c: Cond) -> f64 {
        let link = self.link(c);
        let secs = self.bulk_secs.to_string();
        let max = BULK_MAX_BYTES.to_string();
        let to = format!("{API}:{API_PORT}");
        let mut child = self.spawn_probe(link, ALLOWED, false, &["bulk", &to, &secs, &max]);
        // Accept the probe's connection (bounded wait), then read to EOF.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut s = loop {
            match link.tcp.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("no bulk connection ({}): {e}", c.label());
                }
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let mut start = None;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    start.get_or_insert_with(Instant::now);
                    total += n as u64;
                }
            }
        }
        let secs = start.map_or(1.0, |t| t.elapsed().as_secs_f64());
        drop(s); // the probe waits for this close
        let out = wait_probe(child, Duration::from_secs(10));
        assert!(out.starts_with("sent"), "bulk probe: {out}");
        total as f64 / secs / 1e6
    }

    // ----- b. latency

    fn latency(&mut self) -> Vec<Row> {
        println!(
            "\n## b. UDP request/response {ALLOWED} -> {API}:{API_PORT}, {RR_COUNT} round trips, uncapped rule"
        );
        let conds = [Cond::None, Cond::Cgroup, Cond::Uid];
        let mut med: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        let mut p99: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for rep in 1..=self.reps {
            for (i, &c) in conds.iter().enumerate() {
                if c != Cond::None {
                    self.install(&self.uncapped, c);
                }
                let l = load();
                let (m, p, lost) = self.rr(c);
                println!(
                    "rep {rep} {:<24} median {m:>7.1} µs  p99 {p:>7.1} µs  lost {lost}  load {l}",
                    c.label()
                );
                med.entry(i).or_default().push(m);
                p99.entry(i).or_default().push(p);
            }
        }
        let row = |what: &str, v: &BTreeMap<usize, Vec<f64>>| Row {
            what: what.to_owned(),
            unit: "µs",
            values: conds
                .iter()
                .enumerate()
                .map(|(i, &c)| (c, v[&i].clone()))
                .collect(),
        };
        vec![
            row(
                &format!("b. UDP round trip {ALLOWED} ↔ {API}:{API_PORT}, median of {RR_COUNT}"),
                &med,
            ),
            row(
                &format!("b. UDP round trip {ALLOWED} ↔ {API}:{API_PORT}, p99 of {RR_COUNT}"),
                &p99,
            ),
        ]
    }

    /// One series of round trips: (median µs, p99 µs, lost).
    fn rr(&self, c: Cond) -> (f64, f64, u64) {
        let link = self.link(c);
        let sock = link
            .sink
            .enter(|| UdpSocket::bind(SocketAddrV4::new(API, API_PORT)).unwrap());
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let echo = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(&buf[..n], from);
                    }
                }
            })
        };
        let to = format!("{API}:{API_PORT}");
        let n = RR_COUNT.to_string();
        let w = RR_WARMUP.to_string();
        let child = self.spawn_probe(link, ALLOWED, false, &["rr", &to, &n, &w]);
        let out = wait_probe(child, Duration::from_secs(15));
        stop.store(true, Ordering::Relaxed);
        echo.join().unwrap();
        let f: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(f.first(), Some(&"rtt"), "rr probe: {out}");
        (
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
        )
    }

    // ----- c. flood

    fn flood(&mut self) -> Vec<Row> {
        println!(
            "\n## c. flood: every task, {} s, one CPU ({}), random 198.51.100.0/24 + 203.0.113.0/24 and {API}:{API_PORT}; example policy with its caps",
            self.flood_secs, self.pin_cpu
        );
        let conds = [Cond::None, Cond::Cgroup];
        let mut rows = Vec::new();
        for kind in ["udp", "syn", "both"] {
            let mut bytes: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
            let mut pkts: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
            for rep in 1..=self.reps {
                for (i, &c) in conds.iter().enumerate() {
                    if c != Cond::None {
                        self.install(&self.policy, c);
                    }
                    let l = load();
                    let (b, p, attempts, ok) = self.blast(c, kind);
                    let extra = if c == Cond::None {
                        String::new()
                    } else {
                        let n = self.counters();
                        let drops: Vec<String> = n
                            .task_drops()
                            .iter()
                            .map(|(t, d)| format!("{t} {}", d.packets))
                            .collect();
                        let acc = |r: &str| n.get(&Owner::Task(ALLOWED.into()), r).packets;
                        format!(
                            " | dropped per task: {} | {ALLOWED} tcp accepted {} over-cap {}, udp accepted {} over-cap {}",
                            drops.join(", "),
                            acc("egress:0:accept"),
                            acc("egress:0:rate"),
                            acc("egress:1:accept"),
                            acc("egress:1:rate"),
                        )
                    };
                    println!(
                        "rep {rep} {kind:<4} {:<24} sink {b:>14.0} B/s {p:>10.0} pkt/s | sends tried {attempts:.0}/s ok {ok:.0}/s | load {l}{extra}",
                        c.label()
                    );
                    bytes.entry(i).or_default().push(b);
                    pkts.entry(i).or_default().push(p);
                }
            }
            let what = match kind {
                "udp" => "c. flood, UDP 1200-byte datagrams",
                "syn" => "c. flood, TCP connects (SYNs)",
                _ => "c. flood, UDP and SYN together",
            };
            for (suffix, unit, v) in [("", "B/s", &bytes), (" (packets)", "pkt/s", &pkts)] {
                rows.push(Row {
                    what: format!("{what}{suffix}"),
                    unit,
                    values: conds
                        .iter()
                        .enumerate()
                        .map(|(i, &c)| (c, v[&i].clone()))
                        .collect(),
                });
            }
        }
        rows
    }

    /// One flood: every task blasts at once, pinned to one CPU. Returns the sink's received
    /// (bytes/s, packets/s) and the probes' (sends tried/s, sends accepted by the kernel/s).
    fn blast(&self, c: Cond, kind: &str) -> (f64, f64, f64, f64) {
        let link = self.link(c);
        let kinds: &[&str] = match kind {
            "both" => &["udp", "syn"],
            k => std::slice::from_ref(match k {
                "udp" => &"udp",
                _ => &"syn",
            }),
        };
        let secs = self.flood_secs.to_string();
        let max = FLOOD_MAX_SENDS.to_string();
        let api = format!("{API}:{API_PORT}");
        let (b0, p0) = link.sink_rx();
        let mut children = Vec::new();
        for (i, t) in self.policy.tasks.iter().enumerate() {
            for (j, k) in kinds.iter().enumerate() {
                let seed = (std::process::id() as usize * 131 + i * 17 + j + 1).to_string();
                children.push(self.spawn_probe(
                    link,
                    &t.name,
                    true,
                    &["flood", k, &secs, &max, &api, &seed],
                ));
            }
        }
        let (mut attempts, mut ok, mut elapsed) = (0u64, 0u64, 0f64);
        for ch in children {
            let out = wait_probe(ch, Duration::from_secs(self.flood_secs + 10));
            let f: Vec<&str> = out.split_whitespace().collect();
            assert_eq!(f.first(), Some(&"flood"), "flood probe: {out}");
            attempts += f[1].parse::<u64>().unwrap();
            ok += f[2].parse::<u64>().unwrap();
            elapsed = elapsed.max(f[3].parse::<f64>().unwrap());
        }
        std::thread::sleep(Duration::from_millis(200));
        let (b1, p1) = link.sink_rx();
        (
            (b1 - b0) as f64 / elapsed,
            (p1 - p0) as f64 / elapsed,
            attempts as f64 / elapsed,
            ok as f64 / elapsed,
        )
    }
}

/// Waits for a probe (killed after `limit`) and returns its trimmed stdout.
fn wait_probe(mut child: Child, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("probe did not finish within {limit:?}");
            }
        }
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out.trim().to_owned()
}

// ---------------------------------------------------------------------------------------
// The tables.

fn fmt(v: f64, unit: &str) -> String {
    match unit {
        "MB/s" => format!("{v:.0}"),
        "µs" => format!("{v:.1}"),
        _ => {
            // Thousands separators.
            let s = format!("{:.0}", v.round());
            let mut out = String::new();
            for (i, ch) in s.chars().enumerate() {
                if i > 0 && (s.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(ch);
            }
            out
        }
    }
}

fn bits(bytes_per_s: f64) -> String {
    let b = bytes_per_s * 8.0;
    if b >= 1e12 {
        format!("{:.2} Tbit/s", b / 1e12)
    } else if b >= 1e9 {
        format!("{:.2} Gbit/s", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} Mbit/s", b / 1e6)
    } else {
        format!("{:.1} kbit/s", b / 1e3)
    }
}

fn print_tables(b: &Bench, rows: &[Row], allowed_rows: usize) {
    let cell = |row: &Row, c: Cond| -> String {
        row.values.iter().find(|(k, _)| *k == c).map_or_else(
            || "—".to_owned(),
            |(_, v)| {
                let all: Vec<String> = v.iter().map(|x| fmt(*x, row.unit)).collect();
                format!("**{}** ({})", fmt(median(v), row.unit), all.join(", "))
            },
        )
    };
    let med = |row: &Row, c: Cond| {
        row.values
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, v)| median(v))
    };
    if allowed_rows > 0 {
        println!(
            "Allowed traffic, policy against no policy (median of {} runs, the runs in brackets):",
            b.reps
        );
        println!();
        println!(
            "| measurement | unit | {} | {} | {} | Limpet (cgroup) vs none |",
            Cond::None.label(),
            Cond::Cgroup.label(),
            Cond::Uid.label()
        );
        println!("|---|---|---|---|---|---|");
        for r in &rows[..allowed_rows] {
            let ratio = match (med(r, Cond::Cgroup), med(r, Cond::None)) {
                (Some(l), Some(n)) if n > 0.0 => format!("{:+.1} %", (l / n - 1.0) * 100.0),
                _ => "—".into(),
            };
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                r.what,
                r.unit,
                cell(r, Cond::None),
                cell(r, Cond::Cgroup),
                cell(r, Cond::Uid),
                ratio
            );
        }
        println!();
    }
    let flood = &rows[allowed_rows..];
    if flood.is_empty() {
        return;
    }
    println!(
        "A fully compromised device, measured at the sink (median of {} runs of {} s):",
        b.reps, b.flood_secs
    );
    println!();
    println!(
        "| flood | unit | {} | Limpet (example policy) | Limpet / none |",
        Cond::None.label()
    );
    println!("|---|---|---|---|---|");
    for r in flood {
        let ratio = match (med(r, Cond::Cgroup), med(r, Cond::None)) {
            (Some(l), Some(n)) if n > 0.0 => format!("1 / {:.0}", n / l.max(1e-9)),
            _ => "—".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            r.what,
            r.unit,
            cell(r, Cond::None),
            cell(r, Cond::Cgroup),
            ratio
        );
    }
    // The largest byte rate of each device over the flood kinds, and the fleet.
    let best = |c: Cond| {
        flood
            .iter()
            .filter(|r| r.unit == "B/s")
            .filter_map(|r| med(r, c).map(|v| (v, r.what.clone())))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    if let (Some((l, lw)), Some((n, nw))) = (best(Cond::Cgroup), best(Cond::None)) {
        println!();
        println!(
            "| device | largest egress, one device | × {} devices |",
            fmt(FLEET, "")
        );
        println!("|---|---|---|");
        println!(
            "| Limpet, example policy ({}) | {} B/s = {} | {} B/s = {} |",
            lw.trim_start_matches("c. flood, "),
            fmt(l, ""),
            bits(l),
            fmt(l * FLEET, ""),
            bits(l * FLEET)
        );
        // What the caps allow once their buckets are empty: the sum of every egress rule's
        // byte rate (IP bytes), under the device cap if there is one.
        let caps: Option<u64> = b
            .policy
            .tasks
            .iter()
            .flat_map(|t| &t.egress)
            .map(|e| e.rate.map(|r| r.bytes_per_second))
            .sum();
        let steady = match (caps, b.policy.egress_cap) {
            (Some(c), Some(d)) => Some(c.min(d.bytes_per_second)),
            (None, Some(d)) => Some(d.bytes_per_second),
            (c, None) => c,
        };
        match steady {
            Some(s) => {
                let s = s as f64;
                println!(
                    "| Limpet, steady state of the example's caps (sum of the egress rules' rates, IP bytes) | {} B/s = {} | {} B/s = {} |",
                    fmt(s, ""),
                    bits(s),
                    fmt(s * FLEET, ""),
                    bits(s * FLEET)
                );
            }
            None => println!("| Limpet, steady state | an egress rule has no byte cap | — |"),
        }
        println!(
            "| unconfined Linux, same link, one core ({}) | {} B/s = {} | {} B/s = {} |",
            nw.trim_start_matches("c. flood, "),
            fmt(n, ""),
            bits(n),
            fmt(n * FLEET, ""),
            bits(n * FLEET)
        );
    }
}

// ---------------------------------------------------------------------------------------
// The probe: `--probe <cgroup.procs> <uid> <what> <args..>`; prints one result line.

fn probe(args: &[String]) -> ExitCode {
    let (cgroup, uid, what) = (&args[0], &args[1], &args[2]);
    std::fs::write(cgroup, "0").expect("join the cgroup");
    let uid: u32 = uid.parse().unwrap();
    let u = rustix::process::Uid::from_raw(uid);
    // One thread: setting this thread's ids sets the process's.
    rustix::thread::set_thread_res_uid(u, u, u).expect("setresuid");
    let a = &args[3..];
    match what.as_str() {
        "bulk" => {
            let to: SocketAddrV4 = a[0].parse().unwrap();
            let secs: u64 = a[1].parse().unwrap();
            let max: u64 = a[2].parse().unwrap();
            let mut s = TcpStream::connect_timeout(&to.into(), Duration::from_secs(2))
                .expect("bulk connect");
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let buf = vec![0x5au8; 128 << 10];
            let start = Instant::now();
            let deadline = start + Duration::from_secs(secs);
            let mut sent = 0u64;
            while Instant::now() < deadline && sent < max {
                match s.write(&buf) {
                    Ok(n) => sent += n as u64,
                    Err(_) => break,
                }
            }
            let _ = s.shutdown(std::net::Shutdown::Write);
            // Keep the socket until the sink has read everything and closed: a socket
            // closed with data still queued is orphaned, and `meta skuid` no longer matches
            // it (no file, no credentials), so with uid matching its tail would be dropped.
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 64];
            while matches!(s.read(&mut b), Ok(n) if n > 0) {}
            println!("sent {sent} {:.3}", start.elapsed().as_secs_f64());
        }
        "rr" => {
            let to: SocketAddrV4 = a[0].parse().unwrap();
            let n: usize = a[1].parse().unwrap();
            let warmup: usize = a[2].parse().unwrap();
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.connect(to).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 64];
            let mut rtts = Vec::with_capacity(n);
            let mut lost = 0u64;
            for i in 0..(warmup + n) {
                let msg = (i as u64).to_le_bytes();
                let mut req = [0u8; 32];
                req[..8].copy_from_slice(&msg);
                let t = Instant::now();
                s.send(&req).unwrap();
                let ok = loop {
                    match s.recv(&mut buf) {
                        Ok(32) if buf[..8] == msg => break true,
                        Ok(_) => continue,
                        Err(_) => break false,
                    }
                };
                let d = t.elapsed();
                if i >= warmup {
                    if ok {
                        rtts.push(d.as_secs_f64() * 1e6);
                    } else {
                        lost += 1;
                    }
                }
            }
            rtts.sort_by(f64::total_cmp);
            let pick = |q: f64| rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)];
            println!("rtt {:.1} {:.1} {lost}", pick(0.5), pick(0.99));
        }
        "flood" => {
            let kind = a[0].as_str();
            let secs: u64 = a[1].parse().unwrap();
            let max: u64 = a[2].parse().unwrap();
            let api: SocketAddrV4 = a[3].parse().unwrap();
            let mut x: u64 = a[4].parse::<u64>().unwrap() | 1;
            let mut rnd = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            let payload = [0xa5u8; 1200];
            let start = Instant::now();
            let deadline = start + Duration::from_secs(secs);
            let (mut tried, mut ok) = (0u64, 0u64);
            while tried < max {
                // The clock every 64 sends.
                if tried % 64 == 0 && Instant::now() >= deadline {
                    break;
                }
                let to = if tried % 2 == 0 {
                    api
                } else {
                    let r = rnd();
                    let net = if r & 1 == 0 {
                        [198, 51, 100]
                    } else {
                        [203, 0, 113]
                    };
                    let host = ((r >> 8) % 254 + 1) as u8;
                    let port = ((r >> 16) % 65535 + 1) as u16;
                    SocketAddrV4::new(Ipv4Addr::new(net[0], net[1], net[2], host), port)
                };
                tried += 1;
                let sent = if kind == "udp" {
                    udp.send_to(&payload, to).is_ok()
                } else {
                    syn(to)
                };
                ok += u64::from(sent);
            }
            println!("flood {tried} {ok} {:.3}", start.elapsed().as_secs_f64());
        }
        other => panic!("unknown probe {other}"),
    }
    ExitCode::SUCCESS
}

/// A non-blocking connect, closed at once: one SYN (no RST: the socket is in SYN-SENT).
/// True when the kernel took it (EINPROGRESS).
fn syn(to: SocketAddrV4) -> bool {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let Ok(s) = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    ) else {
        return false;
    };
    matches!(
        rustix::net::connect(&s, &to),
        Err(rustix::io::Errno::INPROGRESS) | Ok(())
    )
}
