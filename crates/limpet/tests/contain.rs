//! Contain: a device whose tasks are fully compromised cannot be used as a weapon.
//!
//! `examples/contain` runs with `limpet run --sim --netns` as PID 1 of a network namespace
//! this test builds (root needed, as in CI), in a small network of TEST-NET addresses:
//!
//! ```text
//!  dev  eth0 192.0.2.10 (configured by the device)
//!        │
//!  rt   br0 192.0.2.1 ──── lan  eth0 192.0.2.20 (the LAN neighbour; listens on 22)
//!       i0  203.0.113.1 ── inet eth0 203.0.113.10 api.test (TCP 443 answers a line, UDP 443 sink)
//!                                    203.0.113.20 another host (TCP 22/80/443, UDP 53/123/443)
//!                                    203.0.113.53 dnsmasq: api.test → 203.0.113.10, TTL 5 s
//! ```
//!
//! What the device sends is measured where it arrives: nftables counters in the input
//! chain of `lan` and `inet` count every packet from 192.0.2.10, by destination, port
//! and protocol, and by the source ports the hostile task binds (61000 + 100 × round +
//! attack), so its packets are told apart from the allowed task's. The device's own
//! console says what each task tried; the counters say what got through.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use netns::{counters, inside, ip, line_server, nft_json, nft_load, rules, sysctl, Count, Lab};

const DEVICE: &str = "192.0.2.10";
const NEIGHBOUR: &str = "192.0.2.20";
const API: &str = "203.0.113.10";
const OTHER: &str = "203.0.113.20";
const DNS: &str = "203.0.113.53";
/// The cap of each of the telemetry task's egress rules: 20 kbit/s.
const CAP_BYTES_PER_SECOND: f64 = 2500.0;
/// The console line the run ends on: the test's last request to the web task.
const LAST_LINE: &str = "[web] web: served 8080 to 192.0.2.20: bye";

fn contain_manifest() -> PathBuf {
    repo_root().join("examples/contain/limpet.toml")
}

/// One build of examples/contain, made on first use: the output dir.
fn contain_build() -> &'static PathBuf {
    static BUILD: OnceLock<PathBuf> = OnceLock::new();
    BUILD.get_or_init(|| build_example("contain/limpet.toml", "contain-out"))
}

/// How an attack of the hostile task travels, for its sink counter.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// TCP or UDP from source port 61000 + 100 × round + k.
    Port,
    /// ICMP echo with identifier 61000 + 100 × round + k.
    Echo,
    /// Ephemeral ports: counted by the LAN sink's catch-all only.
    Scan,
}

/// The hostile task's attacks, in its order (k = 1, 2, ...), as its console names them.
const ATTACKS: &[(&str, Via)] = &[
    ("tcp 203.0.113.20:80", Via::Port),
    ("tcp 203.0.113.20:443", Via::Port),
    ("tcp 203.0.113.20:22", Via::Port),
    ("tcp 203.0.113.10:443", Via::Port),
    ("udp 203.0.113.20:53", Via::Port),
    ("udp 203.0.113.20:123", Via::Port),
    ("udp 203.0.113.20:443", Via::Port),
    ("dns 203.0.113.53:53 direct.hostile.test", Via::Port),
    ("dns 127.0.0.53:53 api.test", Via::Port),
    ("icmp echo 203.0.113.10", Via::Echo),
    ("icmp echo 203.0.113.20", Via::Echo),
    ("icmp echo 192.0.2.20", Via::Echo),
    ("scan 192.0.2.20 tcp 1-1000", Via::Scan),
];
const ROUNDS: u16 = 2;

/// One counting rule per hostile attack and round, the same in every sink.
fn attack_rules() -> String {
    let mut text = String::new();
    for round in 1..=ROUNDS {
        for (k, (name, via)) in (1u16..).zip(ATTACKS) {
            let port = 61_000 + 100 * round + k;
            let matches = match via {
                Via::Port => format!("meta l4proto {{ tcp, udp }} th sport {port}"),
                Via::Echo => format!("icmp type echo-request icmp id {port}"),
                Via::Scan => continue,
            };
            text.push_str(&format!(
                "        ip saddr {DEVICE} {matches} counter comment \"round {round}: {name}\"\n"
            ));
        }
    }
    text
}

/// The internet sink: what arrives from the device, by destination.
fn inet_sink() -> String {
    format!(
        "table inet sink {{
    chain input {{
        type filter hook input priority 0; policy accept;
        ip saddr {DEVICE} ip daddr {API} tcp dport 443 counter comment \"api tcp/443\"
        ip saddr {DEVICE} ip daddr {API} tcp dport 443 tcp flags & (syn | ack) == syn counter comment \"api tcp/443 connects\"
        ip saddr {DEVICE} ip daddr {API} udp dport 443 counter comment \"api udp/443\"
        ip saddr {DEVICE} ip daddr {API} tcp dport != 443 counter comment \"api other tcp ports\"
        ip saddr {DEVICE} ip daddr {API} udp dport != 443 counter comment \"api other udp ports\"
        ip saddr {DEVICE} ip daddr {API} meta l4proto != {{ tcp, udp, icmp }} counter comment \"api other protocols\"
        ip saddr {DEVICE} ip daddr {OTHER} counter comment \"anything to {OTHER}\"
        ip saddr {DEVICE} ip daddr {OTHER} tcp dport 443 tcp sport 32768-60999 counter comment \"{OTHER}:443 from ephemeral ports\"
        ip saddr {DEVICE} ip daddr {DNS} meta l4proto {{ tcp, udp }} th dport 53 counter comment \"dns server port 53\"
        ip saddr {DEVICE} ip daddr {DNS} meta l4proto {{ tcp, udp }} th dport != 53 counter comment \"dns server other ports\"
        ip saddr {DEVICE} ip daddr {DNS} meta l4proto != {{ tcp, udp, icmp }} counter comment \"dns server other protocols\"
        ip saddr {DEVICE} icmp type echo-request counter comment \"icmp echo requests\"
        ip saddr {DEVICE} meta l4proto {{ tcp, udp }} th sport 61000-61999 counter comment \"hostile source ports\"
{}    }}
}}
",
        attack_rules()
    )
}

/// The LAN neighbour's sink: the device may send it nothing but replies of its listener.
fn lan_sink() -> String {
    format!(
        "table inet sink {{
    chain input {{
        type filter hook input priority 0; policy accept;
        ip saddr {DEVICE} tcp sport != 8080 counter comment \"device tcp, not from its listener\"
        ip saddr {DEVICE} meta l4proto != {{ tcp, icmp }} counter comment \"device other protocols\"
        ip saddr {DEVICE} icmp type echo-request counter comment \"icmp echo requests\"
        ip saddr {DEVICE} tcp sport 8080 counter comment \"replies from the listener\"
        ip saddr {DEVICE} tcp dport 1-1000 counter comment \"scan range\"
{}    }}
}}
",
        attack_rules()
    )
}

/// The test network, its servers, and the DNS server's log.
struct Network {
    dev: String,
    lan: String,
    inet: String,
    stop: Arc<AtomicBool>,
    dns_log: Arc<Mutex<Vec<String>>>,
    /// Bytes api.test's TCP server received in whole connections.
    api_requests: Arc<Mutex<Vec<String>>>,
    // Last: dropped after everything that uses its namespaces.
    lab: Lab,
}

impl Network {
    fn new() -> Self {
        let mut lab = Lab::new();
        let dev = lab.namespace("lc", "dev");
        let rt = lab.namespace("lc", "rt");
        let lan = lab.namespace("lc", "lan");
        let inet = lab.namespace("lc", "inet");
        // The device's loopback stays down too: PID 1 brings it up after its policy.
        for ns in [&rt, &lan, &inet] {
            ip(ns, "link set lo up");
        }

        // The router: a bridge for the LAN, a veth to the internet, forwarding on.
        ip(&rt, "link add br0 type bridge");
        ip(&rt, "addr add 192.0.2.1/24 dev br0");
        ip(&rt, "link set br0 up");
        // The device's eth0 stays down and unconfigured: the device brings it up.
        ip(
            &rt,
            &format!("link add d0 type veth peer name eth0 netns {dev}"),
        );
        ip(&rt, "link set d0 master br0 up");
        ip(
            &rt,
            &format!("link add l0 type veth peer name eth0 netns {lan}"),
        );
        ip(&rt, "link set l0 master br0 up");
        ip(
            &rt,
            &format!("link add i0 type veth peer name eth0 netns {inet}"),
        );
        ip(&rt, "addr add 203.0.113.1/24 dev i0");
        ip(&rt, "link set i0 up");
        sysctl(&rt, "net.ipv4.ip_forward", "1");

        ip(&lan, &format!("addr add {NEIGHBOUR}/24 dev eth0"));
        ip(&lan, "link set eth0 up");
        ip(&lan, "route add default via 192.0.2.1");

        for a in [API, OTHER, DNS] {
            ip(&inet, &format!("addr add {a}/24 dev eth0"));
        }
        ip(&inet, "link set eth0 up");
        ip(&inet, "route add default via 203.0.113.1");

        // Unprivileged ICMP echo sockets open to every group in the device's namespace, so
        // that the ruleset, not this sysctl, is what stops the hostile task's pings.
        sysctl(&dev, "net.ipv4.ping_group_range", "0 2147483647");

        nft_load(&lan, &lan_sink());
        nft_load(&inet, &inet_sink());

        let mut net = Network {
            dev,
            lan,
            inet,
            stop: Arc::new(AtomicBool::new(false)),
            dns_log: Arc::new(Mutex::new(Vec::new())),
            api_requests: Arc::new(Mutex::new(Vec::new())),
            lab,
        };
        net.start_servers();
        net.start_dnsmasq();
        net
    }

    fn start_servers(&self) {
        let log = Arc::clone(&self.api_requests);
        self.tcp_server(&self.inet, &format!("{API}:443"), "pong from api.test", log);
        for port in [22, 80, 443] {
            let log = Arc::new(Mutex::new(Vec::new()));
            self.tcp_server(&self.inet, &format!("{OTHER}:{port}"), "got through", log);
        }
        self.udp_sink(&self.inet, &format!("{API}:443"));
        for port in [53, 123, 443] {
            self.udp_sink(&self.inet, &format!("{OTHER}:{port}"));
        }
        // One real service in the scanned range.
        let log = Arc::new(Mutex::new(Vec::new()));
        self.tcp_server(&self.lan, &format!("{NEIGHBOUR}:22"), "got through", log);
    }

    /// [`line_server`] in `ns`, stopped with the network.
    fn tcp_server(&self, ns: &str, addr: &str, reply: &'static str, log: Arc<Mutex<Vec<String>>>) {
        line_server(ns, addr, reply, Arc::clone(&self.stop), log);
    }

    /// A UDP socket in `ns` that reads and discards, so no port-unreachable goes back.
    fn udp_sink(&self, ns: &str, addr: &str) {
        let addr: SocketAddr = addr.parse().unwrap();
        let socket = inside(ns, move || UdpSocket::bind(addr).unwrap());
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::clone(&self.stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let _ = socket.recv_from(&mut buf);
            }
        });
    }

    /// dnsmasq on 203.0.113.53 only: api.test is 203.0.113.10 with a TTL of 5 s; every
    /// query logged (to its stderr, kept in `dns_log`).
    fn start_dnsmasq(&mut self) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.inet, "dnsmasq"])
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--port=53",
                "--listen-address=203.0.113.53",
                "--bind-interfaces",
                "--address=/api.test/203.0.113.10",
                "--local-ttl=5",
                "--log-queries",
                "--log-facility=-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start dnsmasq");
        let stderr = child.stderr.take().unwrap();
        self.lab.adopt(child);
        let log = Arc::clone(&self.dns_log);
        let (ready, started) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("started, version") {
                    let _ = ready.send(());
                }
                log.lock().unwrap().push(line);
            }
        });
        started
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("dnsmasq did not start: {:?}", self.dns_log));
    }

    fn dns_log(&self) -> String {
        self.dns_log.lock().unwrap().join("\n")
    }

    /// Counters of both sinks, names prefixed with the sink's role.
    fn sinks(&self) -> BTreeMap<String, Count> {
        let mut all = BTreeMap::new();
        for (role, ns) in [("lan", &self.lan), ("inet", &self.inet)] {
            for (name, count) in counters(ns, "sink") {
                all.insert(format!("{role}: {name}"), count);
            }
        }
        all
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The simulated device: `limpet run --sim --netns`, its console read as it comes.
struct Device {
    child: Child,
    lines: Receiver<(Instant, String)>,
    console: Vec<(Instant, String)>,
}

impl Device {
    fn start(out: &Path, netns: &str) -> Self {
        let mut child = limpet()
            .arg("run")
            .arg(out)
            .args(["--sim", "--netns", netns])
            .args(["--exit-on", LAST_LINE, "--timeout", "400", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run limpet");
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Device {
            child,
            lines,
            console: Vec::new(),
        }
    }

    /// The first console line containing `pattern` (waiting up to `timeout` for it), and
    /// when the test read it.
    fn wait_for(&mut self, pattern: &str, timeout: Duration) -> (Instant, String) {
        self.wait_for_all(&[pattern], timeout)
    }

    /// The first console line containing every one of `patterns`.
    fn wait_for_all(&mut self, patterns: &[&str], timeout: Duration) -> (Instant, String) {
        let matches = |line: &str| patterns.iter().all(|p| line.contains(p));
        let pattern = patterns.join("` and `");
        if let Some(found) = self.console.iter().find(|(_, l)| matches(l)) {
            return found.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(entry) => {
                    let hit = matches(&entry.1);
                    self.console.push(entry.clone());
                    if hit {
                        return entry;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no console line with `{pattern}` within {timeout:?}:\n{}",
                    self.text()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the device ended before a line with `{pattern}`:\n{}",
                    self.text()
                ),
            }
        }
    }

    /// Takes the lines that have arrived without waiting.
    fn drain(&mut self) {
        while let Ok(entry) = self.lines.try_recv() {
            self.console.push(entry);
        }
    }

    fn text(&self) -> String {
        let lines: Vec<&str> = self.console.iter().map(|(_, l)| l.as_str()).collect();
        lines.join("\n")
    }

    /// The index of the first line containing `pattern`.
    fn position(&self, pattern: &str) -> Option<usize> {
        self.console.iter().position(|(_, l)| l.contains(pattern))
    }

    /// Waits for the run to end by itself; returns its JSON summary.
    fn finish(mut self) -> (serde_json::Value, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            self.drain();
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the run did not end after `{LAST_LINE}`:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        while let Ok(entry) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.console.push(entry);
        }
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        assert!(status.success(), "limpet run: {status}\n{}", self.text());
        let summary = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("summary {stdout:?}: {e}\n{}", self.text()));
        (summary, self.text())
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // Only on a failed test: the run is still going. Killed, `limpet run` cannot remove
        // its simulation root (`limpet-sim-<its pid>` in the temporary directory, see
        // limpet-run's namespaces.rs): that is done here. The processes it started in the
        // device's namespace are ended by the network's guard.
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id();
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("limpet-sim-{pid}")));
        }
    }
}

/// One line sent to `addr` from inside `ns` and the first line of the answer; the error
/// kind when there is none within 3 s.
fn ask(ns: &str, addr: &str, request: &'static str) -> Result<String, std::io::ErrorKind> {
    let addr: SocketAddr = addr.parse().unwrap();
    inside(ns, move || {
        let stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.kind())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        (&stream)
            .write_all(format!("{request}\n").as_bytes())
            .map_err(|e| e.kind())?;
        let mut line = String::new();
        BufReader::new((&stream).take(256))
            .read_line(&mut line)
            .map_err(|e| e.kind())?;
        Ok(line.trim_end().to_owned())
    })
}

/// The byte cap and burst of the installed limit on the rule with `comment`, in bytes.
fn installed_cap(dev: &str, comment: &str) -> (f64, f64) {
    let doc = nft_json(dev, &["list", "table", "inet", "limpet"])
        .expect("the device's table inet limpet is not installed");
    let rule = rules(&doc)
        .into_iter()
        .find(|r| r["comment"] == comment)
        .unwrap_or_else(|| panic!("no rule `{comment}` in the device's ruleset:\n{doc:#}"));
    let limit = rule["expr"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e.get("limit"))
        .unwrap_or_else(|| panic!("rule `{comment}` has no limit: {rule}"));
    let scaled = |value: &str, unit: &str| {
        let n = limit[value].as_f64().unwrap();
        let factor = match limit[unit].as_str().unwrap_or("bytes") {
            "bytes" => 1.0,
            "kbytes" => 1024.0,
            "mbytes" => 1024.0 * 1024.0,
            other => panic!("unit {other} in {limit}"),
        };
        n * factor
    };
    assert_eq!(limit["per"], "second", "{limit}");
    assert_eq!(
        limit["inv"], true,
        "the cap must drop what is over it: {limit}"
    );
    (scaled("rate", "rate_unit"), scaled("burst", "burst_unit"))
}

/// The elements of the device's address set for api.test (`n0`: its only name), with
/// the timeout each was added with, in seconds.
fn name_set(dev: &str) -> Vec<(String, u64)> {
    let doc = nft_json(dev, &["list", "set", "inet", "limpet", "n0"])
        .expect("the device has no address set n0 for api.test");
    let set = doc["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|i| i.get("set"))
        .unwrap();
    set["elem"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let e = &e["elem"];
            (
                e["val"].as_str().unwrap_or_default().to_owned(),
                e["timeout"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Samples api.test's address set every 100 ms, to explain a flood that fell short of
/// the cap: while the address is missing (its TTL ran out and the stub has not been asked
/// again yet) the cap is not what stops the packets.
struct SetWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, f64)>>,
}

impl SetWatch {
    fn start(dev: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (dev, done) = (dev.to_owned(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut gaps: Vec<(f64, f64)> = Vec::new();
            let mut gap_from = None;
            while !done.load(Ordering::Relaxed) {
                let t = start.elapsed().as_secs_f64();
                let present = name_set(&dev).iter().any(|(a, _)| a == API);
                match (present, gap_from) {
                    (false, None) => gap_from = Some(t),
                    (true, Some(from)) => {
                        gaps.push((from, t));
                        gap_from = None;
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Some(from) = gap_from {
                gaps.push((from, start.elapsed().as_secs_f64()));
            }
            gaps
        });
        SetWatch { stop, thread }
    }

    /// A sentence for a failure message; empty when the address was always there.
    fn stop(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let gaps = self.thread.join().unwrap();
        if gaps.is_empty() {
            return String::new();
        }
        let spans: Vec<String> = gaps
            .iter()
            .map(|(a, b)| format!("{a:.1}-{b:.1} s"))
            .collect();
        format!(
            "\n(api.test's address was missing from the device's set during the flood, \
             at {} after `flood start`)",
            spans.join(", ")
        )
    }
}

/// Checks that a flood measured at the sink stayed within 10 % of the cap.
///
/// nftables' byte limit is a token bucket that holds `rate × 1 s + burst` bytes
/// (nft_limit: `tokens_max = unit × (rate + burst) / rate`) and starts full — the task
/// waits long enough before flooding for it to refill. Over a flood of `T` seconds the
/// most that can pass is therefore `rate × T + rate × 1 s + burst`, and a flood that keeps
/// the bucket empty gets at least that less one packet. The bucket's content is a one-off,
/// not a rate: it is taken off before dividing by `T`.
fn assert_capped(
    what: &str,
    delivered: Count,
    seconds: f64,
    (rate, burst): (f64, f64),
    missing: &str,
) {
    let bucket = rate + burst;
    let measured = (delivered.bytes as f64 - bucket) / seconds;
    eprintln!(
        "{what}: {} bytes in {} packets over {seconds:.2} s: {measured:.0} B/s after the bucket",
        delivered.bytes, delivered.packets
    );
    assert!(
        (measured - CAP_BYTES_PER_SECOND).abs() <= 0.1 * CAP_BYTES_PER_SECOND,
        "{what}: {} bytes in {} packets over {seconds:.2} s reached the sink: \
         ({} − bucket {bucket}) / {seconds:.2} = {measured:.0} B/s, not within 10% of the \
         cap of {CAP_BYTES_PER_SECOND} B/s{missing}",
        delivered.bytes,
        delivered.packets,
        delivered.bytes,
    );
}

/// `key=<number>` in `line`.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.trim_end_matches(';').parse().ok())
        .unwrap_or_else(|| panic!("no {key}=<n> in {line:?}"))
}

#[test]
fn a_compromised_device_cannot_be_used_as_a_weapon() {
    for tool in ["ip", "nft", "dnsmasq"] {
        require_tool(tool);
    }
    let out = contain_build();
    let net = Network::new();
    let mut device = Device::start(out, &net.dev);
    let minute = Duration::from_secs(60);

    // --- The allowed flow: resolved by the device's stub, connected, answered.
    device.wait_for(
        "[telemetry] telemetry: api.test is 203.0.113.10",
        3 * minute,
    );
    let (_, flow) = device.wait_for("[telemetry] telemetry: allowed flow", minute);
    assert_eq!(
        flow, "[telemetry] telemetry: allowed flow ok: pong from api.test",
        "the allowed flow to api.test:443 failed"
    );
    let requests = net.api_requests.lock().unwrap().clone();
    assert!(
        requests.iter().any(|r| r == "hello from telemetry"),
        "api.test did not get the allowed request: {requests:?}"
    );
    // The answer is in the name's address set, for the TTL dnsmasq gave (5 s) plus the
    // device's grace for the time between answer and connect (docs/network.md: 5 s).
    let set = name_set(&net.dev);
    assert!(
        set.iter().any(|(a, timeout)| a == API && *timeout == 5 + 5),
        "api.test's address set should hold {API} for 5 s (TTL) + 5 s (grace): {set:?}"
    );
    // (The stub randomises the letter case of its queries: compare in lower case.)
    assert!(
        net.dns_log()
            .to_lowercase()
            .contains("query[a] api.test from 192.0.2.10"),
        "the stub did not ask the upstream server:\n{}",
        net.dns_log()
    );

    // --- The flood toward the allowed host: held to the cap at the sink.
    let (seen, _) = device.wait_for("[telemetry] telemetry: flood start", minute);
    let before = net.sinks();
    assert!(
        seen.elapsed() < Duration::from_millis(800),
        "counters read too late for the flood window"
    );
    let watch = SetWatch::start(&net.dev);
    let (_, took) = device.wait_for("[telemetry] telemetry: flood took", minute);
    let (_, end) = device.wait_for("[telemetry] telemetry: flood end", minute);
    let after = net.sinks();
    let missing = watch.stop();
    let seconds = took
        .split("flood took ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|ms| ms.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no duration in {took:?}"))
        / 1000.0;
    let (tcp_attempts, udp_datagrams) = (field(&end, "tcp"), field(&end, "udp"));
    // The flood must be a flood: far more than the cap would let through.
    assert!(
        tcp_attempts as f64 * 60.0 > 10.0 * CAP_BYTES_PER_SECOND * seconds,
        "the TCP flood was too small to test the cap: {end}"
    );
    assert!(
        udp_datagrams as f64 * 1228.0 > 10.0 * CAP_BYTES_PER_SECOND * seconds,
        "the UDP flood was too small to test the cap: {end}"
    );
    let tcp_cap = installed_cap(&net.dev, "task=telemetry rule=egress:0:rate");
    assert_eq!(
        tcp_cap.0, CAP_BYTES_PER_SECOND,
        "the TCP rule's installed cap"
    );
    let udp_cap = installed_cap(&net.dev, "task=telemetry rule=egress:1:rate");
    assert_eq!(
        udp_cap.0, CAP_BYTES_PER_SECOND,
        "the UDP rule's installed cap"
    );
    assert_capped(
        "the TCP SYN flood to api.test:443",
        after["inet: api tcp/443"] - before["inet: api tcp/443"],
        seconds,
        tcp_cap,
        &missing,
    );
    assert_capped(
        "the UDP flood to api.test:443",
        after["inet: api udp/443"] - before["inet: api udp/443"],
        seconds,
        udp_cap,
        &missing,
    );

    // --- An address api.test did not resolve to, on the allowed port: nothing.
    let (_, unresolved) = device.wait_for("[telemetry] telemetry: unresolved", minute);
    assert!(
        unresolved.starts_with("[telemetry] telemetry: unresolved 203.0.113.20:443: blocked ("),
        "an address the name did not resolve to was reached: {unresolved}"
    );
    let packets = net.sinks()["inet: 203.0.113.20:443 from ephemeral ports"].packets;
    assert_eq!(
        packets, 0,
        "{packets} packets to 203.0.113.20:443, an address api.test did not resolve to, arrived"
    );
    // --- The resolved address after its TTL ran out, not asked again: nothing either.
    let (_, stale) = device.wait_for("ran out:", minute);
    assert!(
        stale.starts_with("[telemetry] telemetry: 203.0.113.10:443 after its ttl of ")
            && stale.contains("s grace) ran out: blocked ("),
        "the address stayed allowed past its TTL: {stale}"
    );
    device.wait_for("[telemetry] telemetry: done", minute);
    let set = name_set(&net.dev);
    assert!(
        set.iter().all(|(a, _)| a != API),
        "api.test's address set still holds {API} after its TTL: {set:?}"
    );
    // Counted by SYNs: the flood's abandoned connects still end after it, the device's
    // kernel answering each SYN-ACK api.test retransmits with a reset (158 in one run),
    // which the orphan rules judge by the telemetry task's chain: allowed and capped while
    // the address is in its set.
    let late = net.sinks();
    assert_eq!(
        late["inet: api tcp/443 connects"], after["inet: api tcp/443 connects"],
        "the connect after the TTL reached api.test"
    );

    // --- The hostile task: two rounds, a restart between them.
    device.wait_for("[hostile] hostile: round 2 done", 2 * minute);
    device.wait_for("[hostile] hostile: 2 rounds done, idling", minute);
    let restart = device
        .position("limpet-init: hostile exited (Code(1))")
        .unwrap_or_else(|| panic!("the hostile task was not restarted:\n{}", device.text()));
    let (done1, start2) = (
        device.position("[hostile] hostile: round 1 done").unwrap(),
        device.position("[hostile] hostile: round 2 start").unwrap(),
    );
    assert!(
        done1 < restart && restart < start2,
        "round 2 must run in a restarted task:\n{}",
        device.text()
    );
    for round in 1..=ROUNDS {
        let first = device
            .position(&format!("[hostile] hostile: round {round} start"))
            .unwrap();
        for (name, _) in ATTACKS {
            let prefix = format!("[hostile] hostile: {name}: ");
            let line = device.console[first..]
                .iter()
                .map(|(_, l)| l)
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("round {round}: no outcome of `{name}`"));
            assert!(
                line.starts_with(&format!("{prefix}blocked (")),
                "round {round}: the hostile task got through: {line}"
            );
        }
    }
    // What arrived, per attack and round: nothing.
    let sinks = net.sinks();
    for (name, count) in &sinks {
        if name.contains(": round ") {
            assert_eq!(
                count.packets, 0,
                "hostile attack `{name}` delivered {} packets to the sink",
                count.packets
            );
        }
    }
    const CATCH_ALL: &[(&str, &str)] = &[
        ("inet: anything to 203.0.113.20", "packets to 203.0.113.20"),
        (
            "inet: hostile source ports",
            "packets from the hostile task's source ports",
        ),
        (
            "inet: icmp echo requests",
            "ICMP echo requests to the internet",
        ),
        (
            "lan: icmp echo requests",
            "ICMP echo requests to the LAN neighbour",
        ),
        (
            "inet: api other tcp ports",
            "TCP to api.test other than 443",
        ),
        (
            "inet: api other udp ports",
            "UDP to api.test other than 443",
        ),
        (
            "inet: api other protocols",
            "protocols but TCP, UDP, ICMP to api.test",
        ),
        (
            "inet: dns server other ports",
            "packets to the DNS server's other ports",
        ),
        (
            "inet: dns server other protocols",
            "protocols but TCP, UDP, ICMP to the DNS server",
        ),
        (
            "lan: device tcp, not from its listener",
            "TCP to the LAN neighbour (the scan)",
        ),
        ("lan: scan range", "packets to the scanned ports"),
        (
            "lan: device other protocols",
            "protocols but TCP and ICMP to the LAN neighbour",
        ),
    ];
    for &(counter, what) in CATCH_ALL {
        assert_eq!(
            sinks[counter].packets, 0,
            "{what}: {} packets arrived ({counter})",
            sinks[counter].packets
        );
    }
    // The direct query never reached the DNS server (only the stub's queries did).
    assert!(
        !net.dns_log().to_lowercase().contains("direct.hostile.test"),
        "the hostile task's own DNS query reached the DNS server:\n{}",
        net.dns_log()
    );
    // The ruleset is still in place after the restart and has been dropping its packets.
    let device_counters = counters(&net.dev, "limpet");
    let dropped = device_counters
        .get("task=hostile rule=drop")
        .unwrap_or_else(|| panic!("no hostile drop counter: {device_counters:?}"));
    assert!(
        dropped.packets > 0,
        "the hostile task's chain dropped nothing"
    );

    // --- Ingress: 8080 is declared for the LAN, 8081 is not declared.
    let lan_8080 = format!("{DEVICE}:8080");
    let lan_8081 = format!("{DEVICE}:8081");
    assert_eq!(
        ask(&net.lan, &lan_8080, "hello from the lan"),
        Ok("web: hello".to_owned()),
        "the LAN listener is not reachable from the LAN"
    );
    assert_eq!(
        ask(&net.inet, &lan_8080, "hello from the internet"),
        Err(std::io::ErrorKind::TimedOut),
        "the LAN listener must not answer the internet"
    );
    for ns in [&net.lan, &net.inet] {
        assert_eq!(
            ask(ns, &lan_8081, "hello undeclared"),
            Err(std::io::ErrorKind::TimedOut),
            "the undeclared port 8081 answered from {ns}"
        );
    }
    device.drain();
    assert!(
        !device.text().contains("web: served 8081"),
        "the undeclared port served a request:\n{}",
        device.text()
    );
    assert!(
        !device.text().contains("hello from the internet"),
        "the LAN listener served the internet:\n{}",
        device.text()
    );

    // --- Drops are reported per task on the console, at a bounded rate.
    device.wait_for_all(&["limpet-init: network drops:", " hostile="], 2 * minute);

    // --- The end: the last request ends the run.
    assert_eq!(ask(&net.lan, &lan_8080, "bye"), Ok("web: hello".to_owned()));
    let (summary, console) = device.finish();
    assert_eq!(summary["outcome"], "matched", "{summary}\n{console}");

    // --- Order of events: the ruleset before the first interface, before any task.
    let lines: Vec<&str> = console.lines().collect();
    let at = |pattern: &str| {
        lines
            .iter()
            .position(|l| l.contains(pattern))
            .unwrap_or_else(|| panic!("no `{pattern}` on the console:\n{console}"))
    };
    let policy = at("limpet-init: normal network policy installed:");
    assert!(
        lines[policy].contains("interfaces: lo down, eth0 down"),
        "lo and eth0 must still be down when the policy is installed: {}",
        lines[policy]
    );
    for up in ["limpet-init: lo up", "limpet-init: eth0 up"] {
        assert!(
            policy < at(up),
            "`{up}` came before the network policy was installed:\n{console}"
        );
    }
    let first_task = at("[telemetry]").min(at("[hostile]")).min(at("[web]"));
    assert!(
        policy < first_task,
        "a task ran before the network policy was installed:\n{console}"
    );
    assert!(!console.contains("ESCAPED"), "{console}");
    assert!(!console.contains("cannot start"), "{console}");
}

#[test]
fn the_mud_file_of_the_contain_example_validates() {
    let out = run(
        limpet()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["mud", "--url", "https://example.com/contain/mud.json"])
            .arg("--manifest")
            .arg(contain_manifest()),
        true,
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mud.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");

    // Exactly the declared policy: telemetry's two rules, web's listener and PID 1's DNS to
    // the configured server (static addressing: no DHCP), no ACE for the hostile task,
    // nothing for the undeclared port.
    let mut aces: Vec<String> = doc["ietf-access-control-list:acls"]["acl"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|acl| acl["aces"]["ace"].as_array().unwrap().iter())
        .map(|ace| ace["name"].as_str().unwrap().to_owned())
        .collect();
    aces.sort();
    aces.dedup();
    assert_eq!(
        aces,
        [
            "limpet-init-dns-0-tcp",
            "limpet-init-dns-0-udp",
            "telemetry-0",
            "telemetry-1",
            "web-0"
        ],
        "{doc:#}"
    );
    let text = doc.to_string();
    assert!(
        text.contains("\"ietf-acldns:dst-dnsname\":\"api.test\""),
        "{doc:#}"
    );
    assert!(!text.contains("8081"), "{doc:#}");
}
