//! Remote access through a relay, in network namespaces (docs/remote-access.md): a device
//! behind one NAT, an operator behind another, the relay on the "internet".
//!
//! ```text
//!  device 192.0.2.2 ── devnat (masquerade) 198.51.100.2 ─┐
//!                                                         inet: relay 203.0.113.10:7443
//!  operator 192.0.2.66 ── opnat (masquerade) 198.51.100.6 ┘
//! ```
//!
//! The device runs the real `limpet-remote-agent` (egress limited by nftables to the relay),
//! its key and signatures asked of PID 1's own server of its socket (limpet-install's
//! `remote`: `DeviceKey`, `SignRemoteAccess`; the identity on a temporary data directory,
//! served from this process), and
//! an echo service on its loopback; the
//! relay is `limpet relay serve`; the operator uses `limpet connect` with capabilities from
//! `limpet access grant`. Shown: the operator reaches the declared service through the
//! relay; tcpdump on the relay's namespace sees no plaintext of the session; each refusal
//! end to end (no capability, expired, signed by another key, for another device, an
//! undeclared service, a replayed session, a revoked capability after a forged list was
//! refused); on the direct path, PID 1's gate attacked as a compromised agent would (a
//! valid `direct` capability without its operator's statement of its address, or with a
//! forged or mismatched one, opens nothing); the device listens on nothing but loopback
//! and nothing from the internet reaches it; its egress stayed the relay. Figures for
//! BENCHMARKS.md are printed, never asserted.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use netns::*;

const RELAY: &str = "203.0.113.10:7443";
/// The remote agent's task name (limpet-manifest's `REMOTE_AGENT_TASK`).
const AGENT_TASK: &str = "limpet-remote";
const ECHO: &str = "127.0.0.1:7007";
/// The bound on every wait of this test.
const WAIT: Duration = Duration::from_secs(30);

struct Net {
    lab: Lab,
    inet: String,
    device: String,
    operator: String,
    /// The operator's NAT.
    opnat: String,
    /// The device's NAT.
    devnat: String,
}

fn net() -> Net {
    net_with("lr", true)
}

/// The lab, its namespaces named with `prefix` (one per test: tests run at once); the
/// device's egress is the hand-written table when `egress`, nothing (the test installs the
/// compiled ruleset) otherwise.
fn net_with(prefix: &str, egress: bool) -> Net {
    let mut lab = Lab::new();
    let inet = lab.namespace(prefix, "inet");
    let devnat = lab.namespace(prefix, "devnat");
    let opnat = lab.namespace(prefix, "opnat");
    let device = lab.namespace(prefix, "dev");
    let operator = lab.namespace(prefix, "op");
    for ns in [&inet, &devnat, &opnat, &device, &operator] {
        // IPv4 only (Limpet's ruleset drops IPv6): no router solicitations to count.
        sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1");
        sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1");
        ip(ns, "link set lo up");
    }
    ip(&inet, "addr add 203.0.113.10/32 dev lo");
    sysctl(&inet, "net.ipv4.ip_forward", "1");
    for (nat, inside_ns, wan_net, lan_net) in [
        (
            &devnat,
            &device,
            ("198.51.100.1", "198.51.100.2", "wd"),
            ("192.0.2.1", "192.0.2.2"),
        ),
        (
            &opnat,
            &operator,
            ("198.51.100.5", "198.51.100.6", "wo"),
            ("192.0.2.65", "192.0.2.66"),
        ),
    ] {
        let (inet_addr, wan_addr, inet_if) = wan_net;
        ip(
            &inet,
            &format!("link add {inet_if} type veth peer name wan netns {nat}"),
        );
        ip(&inet, &format!("addr add {inet_addr}/30 dev {inet_if}"));
        ip(&inet, &format!("link set {inet_if} up"));
        ip(nat, &format!("addr add {wan_addr}/30 dev wan"));
        ip(nat, "link set wan up");
        ip(nat, &format!("route add default via {inet_addr}"));
        let (gw, host) = lan_net;
        ip(
            nat,
            &format!("link add lan type veth peer name eth0 netns {inside_ns}"),
        );
        ip(nat, &format!("addr add {gw}/26 dev lan"));
        ip(nat, "link set lan up");
        ip(inside_ns, &format!("addr add {host}/26 dev eth0"));
        ip(inside_ns, "link set eth0 up");
        ip(inside_ns, &format!("route add default via {gw}"));
        sysctl(nat, "net.ipv4.ip_forward", "1");
        // A home router: masquerade outwards (keeping ports where it can), nothing new
        // inwards, to the router itself included (no RST for a port nobody listens on).
        nft_load(
            nat,
            "table ip nat {\n chain post {\n type nat hook postrouting priority 100;\n \
               oifname \"wan\" masquerade\n }\n}\n\
             table inet fw {\n chain routed {\n type filter hook forward priority 0; policy drop;\n \
               ct state established,related accept\n iifname \"lan\" accept\n \
               counter comment \"inbound dropped\"\n }\n \
               chain local {\n type filter hook input priority 0; policy accept;\n \
               iifname \"wan\" ct state new counter drop comment \"new to the router\"\n }\n}\n",
        );
    }
    if !egress {
        return Net {
            lab,
            inet,
            device,
            operator,
            opnat,
            devnat,
        };
    }
    // The device's egress: its relay and nothing else (what its image's policy allows).
    nft_load(
        &device,
        "table inet egress {\n chain out {\n type filter hook output priority 0; policy drop;\n \
           oifname \"lo\" accept\n ct state established,related accept\n \
           ip daddr 203.0.113.10 tcp dport 7443 counter accept comment \"relay\"\n \
           counter drop comment \"dropped\"\n }\n}\n",
    );
    Net {
        lab,
        inet,
        device,
        operator,
        opnat,
        devnat,
    }
}

/// PID 1's server of the remote agent's socket, the code PID 1 runs
/// (`limpet_install::remote::RemoteServer`, bound for this process's uid, polled as PID 1's
/// loop polls it), with an identity made under `data`: it answers `DeviceKey` and signs
/// `SignRemoteAccess`, refusing anything else. Served from a thread of this process for as
/// long as it runs; returns the identity's public key in hex. The sessions the agent
/// reports go into `sessions`, as they go into PID 1's log for the check-in.
fn pid1_signer(data: &Path, socket: &Path, sessions: limpet_install::remote::SessionLog) -> String {
    let root = rustix::process::getuid().as_raw();
    pid1_server(data, socket, sessions, None, root)
}

/// [`pid1_signer`], with the direct path's gate when `direct` gives the access key (hex) and
/// the netlink handle on the device's namespace PID 1 adds pinholes with (to the set
/// `pin_limpet-remote`, as PID 1's `pinhole_gate` does).
fn pid1_server(
    data: &Path,
    socket: &Path,
    sessions: limpet_install::remote::SessionLog,
    direct: Option<(String, limpet_net::Nft)>,
    agent_uid: u32,
) -> String {
    use rustix::event::{poll, PollFd, PollFlags};
    let (data, socket) = (data.to_owned(), socket.to_owned());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let identity =
            match limpet_identity::store::open(&data, || Ok(zeroize::Zeroizing::new([42; 32])))
                .unwrap()
            {
                limpet_identity::Opened::Loaded(id) | limpet_identity::Opened::Created(id, _) => id,
            };
        let key = hex::encode(identity.public_key().as_bytes());
        let public = identity.public_key();
        let mut server = limpet_install::remote::RemoteServer::bind(
            &socket,
            agent_uid,
            agent_uid,
            Some(std::sync::Arc::new(identity)),
            sessions,
        )
        .unwrap();
        if let Some((access, nft)) = direct {
            let set = limpet_net::Ruleset::pinhole_set(AGENT_TASK);
            let kernel = Box::new(NftPinholes { nft, set });
            let gate =
                limpet_install::remote::PinholeGate::new(public, &access, None, kernel).unwrap();
            server = server.with_pinholes(gate);
        }
        tx.send(key).unwrap();
        loop {
            let mut fds = [PollFd::new(server.pollable(), PollFlags::IN)];
            if poll(&mut fds, None).is_err() {
                return;
            }
            server.ready();
        }
    });
    rx.recv_timeout(WAIT).unwrap()
}

/// The agent's pinhole set in the device's namespace, changed as PID 1's changes it.
struct NftPinholes {
    nft: limpet_net::Nft,
    set: String,
}

impl limpet_install::remote::PinholeSet for NftPinholes {
    fn add(&mut self, hole: &limpet_install::remote::Pinhole, secs: u64) -> Result<(), String> {
        let ttl = Duration::from_secs(secs);
        self.nft
            .add_pinhole(&self.set, hole.peer, hole.local_port, ttl)
            .map_err(|e| e.to_string())
    }

    fn remove(&mut self, hole: &limpet_install::remote::Pinhole) -> Result<(), String> {
        self.nft
            .remove_pinhole(&self.set, hole.peer, hole.local_port)
            .map_err(|e| e.to_string())
    }
}

/// The agent binary, built here by cargo beside `limpet` (a test build of the workspace
/// does not build another package's binaries, and a leftover one could be stale).
fn agent_binary() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(common::repo_root())
        .args([
            "build",
            "--locked",
            "-p",
            "limpet-remote",
            "--bin",
            "limpet-remote-agent",
        ])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cargo build of limpet-remote-agent: {status}"
    );
    let path = Path::new(env!("CARGO_BIN_EXE_limpet")).with_file_name("limpet-remote-agent");
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// `program args` in `ns`, stdout piped.
fn spawn_in(ns: &str, program: &Path, args: &[&str]) -> Child {
    spawn_in_as(ns, None, program, args)
}

/// [`spawn_in`], with the uids `uid` when given (setpriv).
fn spawn_in_as(ns: &str, uid: Option<u32>, program: &Path, args: &[&str]) -> Child {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]);
    if let Some(uid) = uid {
        command.args([
            "setpriv",
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
        ]);
    }
    command
        .arg(program)
        .args(args)
        .env("LIMPET_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The lines of `child`'s stdout, as they come.
fn stdout_lines(child: &mut Child) -> Receiver<String> {
    let (send, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Waits (at most [`WAIT`]) until `n` lines seen contain `needle`.
fn wait_for_count(lines: &Receiver<String>, seen: &mut Vec<String>, needle: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    while seen.iter().filter(|l| l.contains(needle)).count() < n {
        let left = deadline.checked_duration_since(Instant::now());
        match left.map(|left| lines.recv_timeout(left)) {
            Some(Ok(line)) => seen.push(line),
            _ => panic!(
                "fewer than {n} lines with {needle:?} within {WAIT:?}; seen:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// Waits (at most [`WAIT`]) for a line containing `needle`; returns it.
fn wait_for(lines: &Receiver<String>, seen: &mut Vec<String>, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    if let Some(line) = seen.iter().find(|l| l.contains(needle)) {
        return line.clone();
    }
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            Err(_) => break,
        }
    }
    panic!(
        "no line with {needle:?} within {WAIT:?}; seen:\n{}",
        seen.join("\n")
    );
}

/// `limpet access keygen --out DIR/NAME`; returns the public key's hex.
fn keygen(dir: &Path, name: &str) -> String {
    let out = common::run(
        common::limpet()
            .args(["access", "keygen", "--out"])
            .arg(dir.join(name)),
        true,
    );
    assert!(out.status.success());
    std::fs::read_to_string(dir.join(format!("{name}.pub")))
        .unwrap()
        .trim()
        .to_owned()
}

/// `limpet access grant` into DIR/NAME.cap.
/// `limpet access revoke --key DIR/KEY --cap CAP`, the list put at `out` in one rename
/// (the relay reads it at each session request).
fn revoke(dir: &Path, key: &str, cap: &Path, out: &Path) {
    let tmp = out.with_extension("tmp");
    common::run(
        common::limpet()
            .args(["access", "revoke", "--key"])
            .arg(dir.join(key))
            .arg("--cap")
            .arg(cap)
            .arg("--out")
            .arg(&tmp),
        true,
    );
    std::fs::rename(&tmp, out).unwrap();
}

fn grant(
    dir: &Path,
    name: &str,
    key: &str,
    operator: &str,
    subject: &str,
    service: &str,
    life: &str,
) -> PathBuf {
    grant_with(dir, name, key, operator, subject, service, life, &[])
}

/// [`grant`] with more arguments (`--direct`).
#[allow(clippy::too_many_arguments)]
fn grant_with(
    dir: &Path,
    name: &str,
    key: &str,
    operator: &str,
    subject: &str,
    service: &str,
    life: &str,
    more: &[&str],
) -> PathBuf {
    let path = dir.join(format!("{name}.cap"));
    common::run(
        common::limpet()
            .args(["access", "grant", "--key"])
            .arg(dir.join(key))
            .args([
                "--operator",
                operator,
                "--device",
                subject,
                "--service",
                service,
                "--for",
                life,
            ])
            .args(more)
            .arg("--out")
            .arg(&path),
        true,
    );
    path
}

/// A TCP echo server on the device's loopback.
fn echo_server(ns: &str) {
    let listener = inside(ns, || std::net::TcpListener::bind(ECHO).unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // No linger: a socket closed with replies still queued sends them without its
            // owner's uid, which the device's egress here matches by (no cgroup2 in a
            // namespace); the orphan rules judge them by the flow's owner (docs/network.md).
            // Before them a loaded CI run lost 263 KB of a 4 MiB echo and the session hung.
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
}

/// `limpet connect DEVICE --relay RELAY --cap CAP --key KEY` run in the namespace `ns` (the
/// operator's); the caller adds `--service` or `--forward` and the standard streams.
fn connect_command(ns: &str, device: &str, cap: &Path, key: &Path) -> Command {
    let mut command = Command::new("ip");
    command
        .args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_limpet"),
            "connect",
            device,
        ])
        .args(["--relay", RELAY, "--cap"])
        .arg(cap)
        .arg("--key")
        .arg(key);
    command
}

/// One `limpet connect --service SERVICE` with `input` on stdin, from the operator.
fn connect_once(
    ns: &str,
    device: &str,
    cap: &Path,
    key: &Path,
    service: &str,
    input: &[u8],
) -> (bool, String, Vec<u8>) {
    let mut child = connect_command(ns, device, cap, key)
        .args(["--service", service])
        .env("LIMPET_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.stdout,
    )
}

#[test]
fn an_operator_reaches_the_devices_declared_service_through_the_relay_and_nothing_else() {
    let started = Instant::now();
    let Net {
        mut lab,
        inet,
        device,
        operator,
        ..
    } = net();
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let access = keygen(keys.path(), "access");
    let _other_access = keygen(keys.path(), "other-access");
    let op = keygen(keys.path(), "operator");
    let stranger = keygen(keys.path(), "stranger");

    // The relay's revocation list: none yet (the file is written below).
    let revocations = keys.path().join("revocations.json");

    // The capture on the relay's namespace, every interface.
    let pcap = keys.path().join("relay.pcap");
    let mut tcpdump = Command::new("ip")
        .args([
            "netns", "exec", &inet, "tcpdump", "-i", "any", "-U", "-s", "0", "-w",
        ])
        .arg(&pcap)
        .arg("tcp port 7443")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump (.ci/install-deps)");
    let tcpdump_lines = stderr_lines(&mut tcpdump);
    let mut seen_td = Vec::new();
    wait_for(&tcpdump_lines, &mut seen_td, "listening on");

    let mut relay = spawn_in(
        &inet,
        Path::new(env!("CARGO_BIN_EXE_limpet")),
        &[
            "relay",
            "serve",
            "--listen",
            RELAY,
            "--revocations",
            revocations.to_str().unwrap(),
        ],
    );
    let relay_lines = stdout_lines(&mut relay);
    lab.adopt(relay);
    let mut relay_seen = Vec::new();
    wait_for(&relay_lines, &mut relay_seen, "relay: listening on");

    echo_server(&device);
    let signer = data.path().join("remote.sock");
    let sessions = limpet_install::remote::SessionLog::default();
    let pid1_key = pid1_signer(data.path(), &signer, sessions.clone());
    let signer = signer.to_str().unwrap().to_owned();
    let mut agent = spawn_in(
        &device,
        &agent_binary(),
        &[
            "--signer",
            &signer,
            "--relay",
            RELAY,
            "--access-key",
            &access,
            "--service",
            &format!("echo={ECHO}"),
        ],
    );
    let agent_pid = agent.id();
    let agent_lines = stdout_lines(&mut agent);
    lab.adopt(agent);
    let mut agent_seen = Vec::new();
    let identity_line = wait_for(
        &agent_lines,
        &mut agent_seen,
        "limpet-remote-agent: identity ",
    );
    let device_key = identity_line.rsplit(' ').next().unwrap().to_owned();
    // The agent's key is the one PID 1's server answered: it never held the identity.
    assert_eq!(device_key, pid1_key);
    wait_for(&agent_lines, &mut agent_seen, "registered at relay");
    wait_for(
        &relay_lines,
        &mut relay_seen,
        &format!("device {device_key} registered"),
    );

    // The operator reaches the echo service through a forward.
    let good = grant(
        keys.path(),
        "good",
        "access",
        &op,
        &device_key,
        "echo",
        "1h",
    );
    let mut forward = connect_command(&operator, &device_key, &good, &keys.path().join("operator"))
        .args(["--forward", "127.0.0.1:9000=echo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let forward_lines = stdout_lines(&mut forward);
    lab.adopt(forward);
    wait_for(&forward_lines, &mut Vec::new(), "forwards to service echo");
    let canary = format!("plaintext canary {} of the session", std::process::id());
    let (reply, setup) = inside(&operator, {
        let canary = canary.clone();
        move || {
            let t = Instant::now();
            let mut s = TcpStream::connect("127.0.0.1:9000").unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            s.write_all(canary.as_bytes()).unwrap();
            let mut reply = vec![0u8; canary.len()];
            s.read_exact(&mut reply).unwrap();
            (String::from_utf8(reply).unwrap(), t.elapsed())
        }
    });
    assert_eq!(reply, canary);
    let start = wait_for(&agent_lines, &mut agent_seen, "session start: operator");
    assert!(start.contains(&op), "{start}");
    assert!(start.contains("service echo"), "{start}");
    // PID 1 recorded the session's start and, once the operator closed it, its end, with
    // the operator's key and the capability's hash: what the next check-in reports.
    let cap_hash = start
        .split("capability ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .to_owned();
    wait_for(&agent_lines, &mut agent_seen, "session end: operator");
    let deadline = Instant::now() + WAIT;
    let recorded = loop {
        let recorded = sessions.records();
        if recorded.len() >= 2 || Instant::now() > deadline {
            break recorded;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let events: Vec<_> = recorded
        .iter()
        .map(|r| {
            (
                r.event,
                r.operator.as_str(),
                r.capability.as_str(),
                r.service.as_str(),
            )
        })
        .collect();
    {
        use limpet_install_api::remote::SessionEvent::{End, Start};
        assert_eq!(
            events,
            [
                (Start, op.as_str(), cap_hash.as_str(), "echo"),
                (End, op.as_str(), cap_hash.as_str(), "echo")
            ]
        );
    }

    // Throughput through the relay (printed for BENCHMARKS.md, never asserted).
    let bytes = 4 * 1024 * 1024;
    let elapsed = inside(&operator, move || {
        let t = Instant::now();
        let s = TcpStream::connect("127.0.0.1:9000").unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let chunk = vec![0x5au8; 64 * 1024];
            for _ in 0..bytes / chunk.len() {
                w.write_all(&chunk).unwrap();
            }
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        let mut r = &s;
        while got < bytes {
            let n = r.read(&mut buf).unwrap();
            assert!(n > 0, "echo ended after {got} bytes");
            got += n;
        }
        writer.join().unwrap();
        t.elapsed()
    });
    let hwm = std::fs::read_to_string(format!("/proc/{agent_pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    // The agent process is `ip netns exec`, which execs the agent: the same pid.
    eprintln!(
        "remote-access figures: set-up (relay ask, handshake, first echo) {setup:?}; \
         {} MiB echoed through the relay in {elapsed:?} ({:.1} MiB/s each way); device agent {hwm}",
        bytes >> 20,
        (bytes >> 20) as f64 / elapsed.as_secs_f64()
    );

    // Refusals, each end to end and exactly.
    let opkey = keys.path().join("operator");
    let mut expect_refused = |cap: &Path, service: &str, code: u8, text: &str| {
        let (ok, stderr, stdout) =
            connect_once(&operator, &device_key, cap, &opkey, service, b"hello");
        assert!(!ok, "refusal expected ({text}), got success");
        assert!(
            stderr.contains(&format!("refused by the device (code {code}): {text}")),
            "{stderr}"
        );
        assert!(
            stdout.is_empty(),
            "a refused session carried data: {stdout:?}"
        );
        wait_for(
            &agent_lines,
            &mut agent_seen,
            &format!("session refused: operator {op}: {text}"),
        );
    };
    let short = grant(
        keys.path(),
        "short",
        "access",
        &op,
        &device_key,
        "echo",
        "1s",
    );
    let other_key = grant(
        keys.path(),
        "other-key",
        "other-access",
        &op,
        &device_key,
        "echo",
        "1h",
    );
    let other_device = grant(
        keys.path(),
        "other-device",
        "access",
        &op,
        &stranger,
        "echo",
        "1h",
    );
    let undeclared = grant(
        keys.path(),
        "undeclared",
        "access",
        &op,
        &device_key,
        "ssh",
        "1h",
    );
    expect_refused(
        &other_key,
        "echo",
        2,
        "the capability is not signed by this device's access key",
    );
    expect_refused(
        &other_device,
        "echo",
        3,
        "the capability is for another device",
    );
    expect_refused(
        &undeclared,
        "ssh",
        9,
        "service \"ssh\" is not declared by this device's manifest",
    );
    std::thread::sleep(Duration::from_millis(2100));
    expect_refused(&short, "echo", 6, "the capability expired at");
    // A good capability with another operator's key: the session is not its operator's.
    let (ok, stderr, _) = connect_once(
        &operator,
        &device_key,
        &good,
        &keys.path().join("stranger"),
        "echo",
        b"x",
    );
    assert!(!ok);
    assert!(
        stderr.contains("(code 8): the session is not signed by the capability's operator key"),
        "{stderr}"
    );
    // No capability at all (the library's client: the command line always sends one).
    let device_vk = limpet_remote::capability::public_key("device", &device_key).unwrap();
    let op_sk = {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        ed25519_dalek::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&opkey).unwrap())
            .unwrap()
    };
    let none = inside(&operator, move || {
        let mut s = TcpStream::connect(RELAY).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        limpet_remote::relay::ask(&mut s, &device_vk).unwrap();
        limpet_remote::session::operator(s, &device_vk, &op_sk, None, "echo").map(|_| ())
    });
    match none {
        Err(limpet_remote::session::SessionError::Refused { code: 1, message }) => {
            assert_eq!(message, "no capability was presented")
        }
        other => panic!("expected refusal code 1, got {other:?}"),
    }

    // A replay: every byte an operator sent in a granted session, recorded on the way to the
    // relay, sent again to the relay. The device's fresh ephemeral key makes it fail at the
    // first encrypted message.
    let recorded = inside(&operator, {
        let good = std::fs::read(&good).unwrap();
        let opkey = std::fs::read_to_string(&opkey).unwrap();
        move || {
            use ed25519_dalek::pkcs8::DecodePrivateKey;
            let sk = ed25519_dalek::SigningKey::from_pkcs8_pem(&opkey).unwrap();
            let cap = limpet_remote::capability::SignedCapability::from_json(&good).unwrap();
            let stream = TcpStream::connect(RELAY).unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            let mut rec = Recorder(stream, Vec::new());
            limpet_remote::relay::ask(&mut rec.0, &device_vk).unwrap();
            let mut ch =
                limpet_remote::session::operator(&mut rec, &device_vk, &sk, Some(&cap), "echo")
                    .unwrap();
            ch.send(b"replayed words").unwrap();
            assert_eq!(ch.recv().unwrap().unwrap(), b"replayed words");
            drop(ch);
            rec.1
        }
    });
    wait_for(&agent_lines, &mut agent_seen, "session end");
    let replay_answer = inside(&operator, move || {
        let mut s = TcpStream::connect(RELAY).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        limpet_remote::relay::ask(&mut s, &device_vk).unwrap();
        s.write_all(&recorded).unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        all
    });
    wait_for(
        &agent_lines,
        &mut agent_seen,
        "session failed: a message failed to decrypt (not this session's keys)",
    );
    assert!(!replay_answer.windows(14).any(|w| w == b"replayed words"));

    // Revocation before expiry. Attack first: a list revoking `good` signed by another
    // access key, put on the relay. The device refuses the list and `good` still works.
    revoke(keys.path(), "other-access", &good, &revocations);
    let (ok, stderr, stdout) =
        connect_once(&operator, &device_key, &good, &opkey, "echo", b"still");
    assert!(ok, "{stderr}");
    assert_eq!(stdout, b"still");
    wait_for(
        &agent_lines,
        &mut agent_seen,
        "revocation list refused: the revocation list is not signed by this device's access key",
    );
    // The access key's list: the device takes it before the session it precedes, and
    // refuses `good`, hours before its expiry, by name.
    revoke(keys.path(), "access", &good, &revocations);
    let (ok, stderr, stdout) =
        connect_once(&operator, &device_key, &good, &opkey, "echo", b"revoked?");
    assert!(!ok);
    assert!(stdout.is_empty(), "a revoked session carried data");
    assert!(
        stderr.contains("refused by the device (code 12): the capability is revoked (by the access key's list issued at "),
        "{stderr}"
    );
    wait_for(
        &agent_lines,
        &mut agent_seen,
        "taken: 1 capabilities revoked",
    );
    wait_for(
        &agent_lines,
        &mut agent_seen,
        &format!("session refused: operator {op}: the capability is revoked"),
    );

    // Nothing listens on the device but its loopback, and nothing from the internet reaches
    // it even with a route into its LAN.
    let listening = inside(&device, || {
        std::fs::read_to_string("/proc/thread-self/net/tcp").unwrap()
    });
    let mut listeners = 0;
    for line in listening.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) == Some(&"0A") {
            listeners += 1;
            assert!(
                fields[1].starts_with("0100007F:"),
                "a socket listens beyond loopback: {line}"
            );
        }
    }
    assert_eq!(listeners, 1, "only the echo service listens:\n{listening}");
    ip(&inet, "route add 192.0.2.0/26 via 198.51.100.2");
    let reached = inside(&inet, || {
        ["192.0.2.2:7007", "198.51.100.2:7007", "192.0.2.2:22"].map(|a| {
            TcpStream::connect_timeout(&a.parse::<SocketAddr>().unwrap(), Duration::from_secs(2))
                .is_ok()
        })
    });
    assert_eq!(reached, [false, false, false]);
    let egress = counters(&device, "egress");
    assert_eq!(
        egress["dropped"].packets, 0,
        "the device sent beyond its relay: {egress:?}"
    );
    assert!(egress["relay"].packets > 0);

    // The capture: the relay saw the device's key (registration is in the clear) and the
    // session's bytes, never their plaintext.
    std::thread::sleep(Duration::from_millis(300));
    let _ = tcpdump.kill();
    let _ = tcpdump.wait();
    let captured = std::fs::read(&pcap).unwrap();
    let key_bytes = hex::decode(&device_key).unwrap();
    assert!(
        captured.windows(32).any(|w| w == key_bytes.as_slice()),
        "the capture missed the registration"
    );
    assert!(
        captured.len() > bytes,
        "the capture missed the session ({} bytes)",
        captured.len()
    );
    for plain in [
        canary.as_bytes(),
        b"replayed words".as_slice(),
        b"\"services\"",
        op.as_bytes(),
    ] {
        assert!(
            !captured.windows(plain.len()).any(|w| w == plain),
            "plaintext {:?} on the relay's wire",
            String::from_utf8_lossy(plain)
        );
    }
    let op_raw = hex::decode(&op).unwrap();
    assert!(
        !captured.windows(32).any(|w| w == op_raw.as_slice()),
        "the operator key crossed the relay in the clear"
    );
    eprintln!("remote.rs wall time: {:?}", started.elapsed());
}

/// A stream that keeps a copy of what is written to it.
struct Recorder(TcpStream, Vec<u8>);

impl Read for Recorder {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(b)
    }
}

impl Write for Recorder {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(b)?;
        self.1.extend_from_slice(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The compiled egress of a device with `[remote] direct = true` (its manifest through
/// `Manifest::with_remote_agent` and limpet-compile, as `limpet build` compiles it), built
/// by limpet-net and installed in `ns` as PID 1 installs it. The agent's task is matched by
/// this process's uid: the agent runs as it, and so does this test when it plays the
/// compromised agent.
fn install_compiled_egress(ns: &str, access: &str) -> u32 {
    let text = format!(
        "[device]\nname = \"lock\"\nversion = \"1.0.0\"\ntarget = \"x86_64\"\n\n\
         [[task]]\nname = \"echo\"\npackage = \"echo\"\nmemory = \"8MiB\"\ncpu = \"10%\"\n\
         network = \"allowlist\"\n\n\
         [remote]\nrelay = \"{RELAY}\"\naccess_key = \"{access}\"\n\
         services = [{{ name = \"echo\", task = \"echo\", port = 7007 }}]\ndirect = true\n"
    );
    let manifest = limpet_manifest::parse("direct.toml", &text)
        .unwrap()
        .with_remote_agent(access)
        .unwrap();
    let policy = limpet_compile::compile(&manifest).unwrap();
    assert_eq!(
        policy.remote_direct.as_ref().map(|d| d.access_key.as_str()),
        Some(access)
    );
    let net = policy.network.unwrap();
    let pinholes: Vec<(&str, bool)> = net
        .tasks
        .iter()
        .map(|t| (t.name.as_str(), t.pinholes))
        .collect();
    assert_eq!(pinholes, [("echo", false), (AGENT_TASK, true)]);
    let agent_uid = net
        .tasks
        .iter()
        .find(|t| t.name == AGENT_TASK)
        .map(|t| t.uid)
        .unwrap();
    let ruleset = limpet_net::Ruleset::build(&net, &limpet_net::Runtime::by_uid(&net)).unwrap();
    inside(ns, move || {
        limpet_net::Nft::open().unwrap().install(&ruleset).unwrap();
    });
    agent_uid
}

/// [`inside`] `ns`, on a thread whose uids are `uid`: its sockets are that task's for the
/// device's egress (matched by uid here), as the agent's are on a device.
fn inside_as<T: Send + 'static>(ns: &str, uid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    inside(ns, move || {
        // The raw system call: this thread's credentials only, not the process's (libc's).
        let uid = rustix::process::Uid::from_raw(uid);
        rustix::thread::set_thread_res_uid(uid, uid, uid).unwrap();
        f()
    })
}

/// The elements of the agent's pinhole set in `ns`: (peer address, peer port, local port).
fn pinhole_set(ns: &str) -> Vec<(String, u16, u16)> {
    let set = limpet_net::Ruleset::pinhole_set(AGENT_TASK);
    let out = must(
        "ip",
        &[
            "netns", "exec", ns, "nft", "-n", "list", "set", "inet", "limpet", &set,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some(body) = text
        .split_once("elements = {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(body, _)| body.to_owned())
    else {
        return Vec::new();
    };
    body.split(',')
        .map(|e| {
            let words: Vec<&str> = e.split_whitespace().collect();
            assert!(
                words.len() >= 5 && words[1] == "." && words[3] == ".",
                "{text}"
            );
            (
                words[0].to_owned(),
                words[2].parse().unwrap(),
                words[4].parse().unwrap(),
            )
        })
        .collect()
}

/// `limpet connect --service echo` from the operator with `bytes` bytes on stdin, written
/// and read at once; returns its success, its stderr, whether the echo came back whole,
/// and the wall time.
fn echo_through(
    ns: &str,
    device: &str,
    cap: &Path,
    key: &Path,
    bytes: usize,
) -> (bool, String, bool, Duration) {
    let started = Instant::now();
    let mut child = connect_command(ns, device, cap, key)
        .args(["--service", "echo"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a session that hangs is ended (by its pid) after five minutes.
    let pid = child.id().to_string();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = std::sync::Arc::clone(&done);
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            if watch.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").arg(&pid).status();
    });
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk: Vec<u8> = (0..64 * 1024usize).map(pattern).collect();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            if stdin.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
        }
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    let whole = out.stdout.len() == bytes
        && out
            .stdout
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern(i % (64 * 1024)));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        whole,
        started.elapsed(),
    )
}

/// The byte at `i` of [`echo_through`]'s 64 KiB chunk.
fn pattern(i: usize) -> u8 {
    u8::try_from(i % 251).unwrap_or(0)
}

/// The relay's byte counts of the next session that ends: (operator to device, device to
/// operator).
fn relay_session_bytes(lines: &Receiver<String>) -> (u64, u64) {
    let line = wait_for(lines, &mut Vec::new(), "bytes operator to device");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// A TCP echo server in `ns` at `addr` that also keeps every byte it heard.
fn heard_echo(ns: &str, addr: &'static str) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let listener = inside(ns, move || std::net::TcpListener::bind(addr).unwrap());
    let kept = std::sync::Arc::clone(&heard);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let kept = std::sync::Arc::clone(&kept);
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    kept.lock().unwrap().extend_from_slice(&buf[..n]);
                    let _ = stream.write_all(&buf[..n]);
                }
            });
        }
    });
    heard
}

#[test]
fn the_direct_path_is_taken_when_the_nats_keep_ports_and_the_relay_is_the_fallback() {
    let started = Instant::now();
    let Net {
        mut lab,
        inet,
        device,
        operator,
        opnat,
        devnat,
    } = net_with("ld", false);
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let access = keygen(keys.path(), "access");
    let _other_access = keygen(keys.path(), "other-access");
    let op = keygen(keys.path(), "operator");
    let opkey = keys.path().join("operator");
    let agent_uid = install_compiled_egress(&device, &access);

    let mut relay = spawn_in(
        &inet,
        Path::new(env!("CARGO_BIN_EXE_limpet")),
        &["relay", "serve", "--listen", RELAY],
    );
    let relay_lines = stdout_lines(&mut relay);
    lab.adopt(relay);
    wait_for(&relay_lines, &mut Vec::new(), "relay: listening on");

    echo_server(&device);
    let socket = data.path().join("remote.sock");
    let nft = inside(&device, || limpet_net::Nft::open().unwrap());
    let device_key = pid1_server(
        data.path(),
        &socket,
        limpet_install::remote::SessionLog::default(),
        Some((access.clone(), nft)),
        agent_uid,
    );
    // The agent runs as its task's uid, as on a device: it reaches PID 1's socket (its
    // own, mode 0600) through the directory.
    std::fs::set_permissions(
        data.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut agent = spawn_in_as(
        &device,
        Some(agent_uid),
        &agent_binary(),
        &[
            "--signer",
            socket.to_str().unwrap(),
            "--relay",
            RELAY,
            "--access-key",
            &access,
            "--service",
            &format!("echo={ECHO}"),
            "--direct",
        ],
    );
    let agent_lines = stdout_lines(&mut agent);
    lab.adopt(agent);
    let mut agent_seen = Vec::new();
    wait_for(&agent_lines, &mut agent_seen, "registered at relay");
    assert!(pinhole_set(&device).is_empty(), "the set starts empty");

    // 1. Attacks on PID 1's gate, as a compromised agent makes them: on its socket, with
    // the real set in the device's namespace. Each refused exactly; the set unchanged.
    // Made from the agent's uid, the only one PID 1's socket answers.
    let ask_as_agent = limpet_remote::signer::pid1_pinholer(&socket);
    // `key`'s statement (the operator's, or a forger's) that `peer` leads to it, for `cap`.
    let device_public = limpet_remote::capability::public_key("device", &device_key).unwrap();
    let stated = |key: &Path, cap: &Path, peer: &str| {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(key).unwrap())
            .unwrap();
        let cap =
            limpet_remote::capability::SignedCapability::from_json(&std::fs::read(cap).unwrap())
                .unwrap();
        let peer = peer.parse().unwrap();
        limpet_remote::pinhole::PeerStatement::sign(&key, &device_public, cap.hash(), peer).to_hex()
    };
    let want_with = |cap: &Path, statement: Option<String>, peer: &str, local_port: u16| {
        let ask = limpet_install_api::remote::PinholeAsk {
            peer: peer.parse().unwrap(),
            local_port,
            capability: std::fs::read_to_string(cap).unwrap(),
            statement,
            revocations: None,
        };
        let open = std::sync::Arc::clone(&ask_as_agent.open);
        inside_as(&device, agent_uid, move || open(&ask))
    };
    // With the operator's own statement for `peer`.
    let want = |cap: &Path, peer: &str, local_port: u16| {
        want_with(cap, Some(stated(&opkey, cap, peer)), peer, local_port)
    };
    let refused_with = |cap: &Path, statement: Option<String>, peer: &str, says: &str| {
        let before = pinhole_set(&device);
        let e = want_with(cap, statement, peer, 45_000)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("PID 1 refused: pinhole refused: {says}")),
            "{e}"
        );
        assert_eq!(pinhole_set(&device), before, "a refused pinhole was opened");
    };
    let refused = |cap: &Path, peer: &str, says: &str| {
        refused_with(cap, Some(stated(&opkey, cap, peer)), peer, says)
    };
    let direct = grant_with(
        keys.path(),
        "direct",
        "access",
        &op,
        &device_key,
        "echo",
        "1h",
        &["--direct"],
    );
    let relay_only = grant(
        keys.path(),
        "relay-only",
        "access",
        &op,
        &device_key,
        "echo",
        "1h",
    );
    let forged = grant_with(
        keys.path(),
        "forged",
        "other-access",
        &op,
        &device_key,
        "echo",
        "1h",
        &["--direct"],
    );
    let expired = grant_with(
        keys.path(),
        "expired",
        "access",
        &op,
        &device_key,
        "echo",
        "1s",
        &["--direct"],
    );
    refused(
        &forged,
        "203.0.113.20:4000",
        "the capability is not signed by this device's access key",
    );
    refused(
        &relay_only,
        "203.0.113.20:4000",
        "the capability does not grant the direct path",
    );
    std::thread::sleep(Duration::from_millis(2100));
    refused(&expired, "203.0.113.20:4000", "the capability expired at ");
    // A valid direct capability, seen in a session, is not enough: the pinhole leads only
    // where its operator signed. Without the statement, with one signed by another key,
    // and with the operator's real statement (for its own address) asked for another.
    refused_with(
        &direct,
        None,
        "203.0.113.20:4000",
        "no statement of the operator's address was presented",
    );
    refused_with(
        &direct,
        Some(stated(
            &keys.path().join("other-access"),
            &direct,
            "203.0.113.20:4000",
        )),
        "203.0.113.20:4000",
        "the operator's statement is not signed by the capability's operator key",
    );
    refused_with(
        &direct,
        Some(stated(&opkey, &direct, "198.51.100.6:40000")),
        "203.0.113.20:4000",
        "the operator's statement is for peer 198.51.100.6:40000, not 203.0.113.20:4000",
    );
    refused_with(
        &direct,
        Some(stated(&opkey, &relay_only, "203.0.113.20:4000")),
        "203.0.113.20:4000",
        "the operator's statement is for another capability",
    );

    // The agent's egress without a pinhole is the relay only: a server on the internet is
    // not reached (its chain's final drop counts the SYNs).
    ip(&inet, "addr add 203.0.113.20/32 dev lo");
    let heard = heard_echo(&inet, "203.0.113.20:4000");
    let drops = |ns: &str| counters(ns, "limpet")[&format!("task={AGENT_TASK} rule=drop")].packets;
    let unreached = || {
        let dropped = drops(&device);
        let reached = inside_as(&device, agent_uid, || {
            TcpStream::connect_timeout(
                &"203.0.113.20:4000".parse().unwrap(),
                Duration::from_secs(2),
            )
            .map(|_| ())
            .map_err(|e| e.kind())
        });
        assert_eq!(reached, Err(std::io::ErrorKind::TimedOut));
        assert!(
            drops(&device) > dropped,
            "the SYN was not dropped by the agent's chain"
        );
    };
    unreached();

    // A pinhole closes at its timeout: one for a 4-second capability, to that server, from
    // port 45000. Traffic passes; the element leaves the set when the capability's life
    // ends, and the same connection's next bytes are dropped.
    let short = grant_with(
        keys.path(),
        "short",
        "access",
        &op,
        &device_key,
        "echo",
        "4s",
        &["--direct"],
    );
    let secs = want(&short, "203.0.113.20:4000", 45_000).unwrap();
    assert!((1..=4).contains(&secs), "{secs}");
    assert_eq!(
        pinhole_set(&device),
        [("203.0.113.20".to_owned(), 4000, 45_000)]
    );
    let mut through = inside_as(&device, agent_uid, || {
        limpet_remote::direct::punch(
            45_000,
            "203.0.113.20:4000".parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap()
    });
    through.set_read_timeout(Some(WAIT)).unwrap();
    through.write_all(b"before").unwrap();
    let mut back = [0u8; 6];
    through.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"before");
    let deadline = Instant::now() + WAIT;
    while !pinhole_set(&device).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the pinhole outlived its timeout"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let dropped = drops(&device);
    through.write_all(b"after").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while drops(&device) == dropped {
        assert!(
            Instant::now() < deadline,
            "nothing dropped after the pinhole closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !heard.lock().unwrap().windows(5).any(|w| w == b"after"),
        "bytes went through a closed pinhole"
    );
    drop(through);

    // A statement replayed (by a compromised agent, from another local port) opens nothing
    // more while its pinhole is open, though three more places are free. Closed, the
    // pinhole leaves the set; closing it again is refused by name.
    let replayed = "203.0.113.21:4000";
    assert!(want(&direct, replayed, 45_002).is_ok());
    refused(
        &direct,
        replayed,
        &format!("a pinhole for this capability to {replayed} is already open"),
    );
    let close = |local_port: u16| {
        let hole = limpet_install_api::remote::PinholeClose {
            peer: replayed.parse().unwrap(),
            local_port,
        };
        let close = std::sync::Arc::clone(&ask_as_agent.close);
        inside_as(&device, agent_uid, move || close(&hole))
    };
    close(45_002).unwrap();
    assert!(pinhole_set(&device).is_empty());
    let e = close(45_002).unwrap_err().to_string();
    assert!(
        e.contains(&format!("no pinhole is open to {replayed} from port 45002")),
        "{e}"
    );
    // The agent's pinholes close when their sessions end, or at once when the direct path
    // is not taken: the set empties again (bounded wait).
    let emptied = || {
        let deadline = Instant::now() + WAIT;
        while !pinhole_set(&device).is_empty() {
            assert!(Instant::now() < deadline, "a session's pinhole stayed open");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // 2. NATs that keep ports: the direct path. The payload crosses between the two NATs;
    // the relay carries the first session's handshake, proofs and the operator's word only.
    let payload = 1 << 20;
    let (ok, stderr, whole, direct_1m) =
        echo_through(&operator, &device_key, &direct, &opkey, payload);
    assert!(
        ok && whole,
        "direct session failed: {stderr}\ndevice {:?}\ndevnat {:?}\nopnat {:?}",
        counters(&device, "limpet"),
        counters(&devnat, "fw"),
        counters(&opnat, "fw")
    );
    assert!(
        stderr.contains("connect: path: direct to 198.51.100.2:"),
        "{stderr}"
    );
    let (up, down) = relay_session_bytes(&relay_lines);
    assert!(
        up + down < 16 * 1024,
        "the payload went through the relay: {up} + {down} bytes"
    );
    wait_for(
        &agent_lines,
        &mut agent_seen,
        "pinhole opened: 198.51.100.6:",
    );
    let start = wait_for(&agent_lines, &mut agent_seen, "session start: operator");
    assert!(start.contains("path direct to 198.51.100.6:"), "{start}");
    wait_for(
        &agent_lines,
        &mut agent_seen,
        "pinhole closed: 198.51.100.6:",
    );
    emptied();

    // A capability without `direct`: the relay, and no pinhole asked.
    let (ok, stderr, whole, relay_1m) =
        echo_through(&operator, &device_key, &relay_only, &opkey, payload);
    assert!(ok && whole, "{stderr}");
    assert!(stderr.contains("connect: path: relay"), "{stderr}");
    let (up, down) = relay_session_bytes(&relay_lines);
    assert!(
        up >= payload as u64 && down >= payload as u64,
        "{up} {down}"
    );
    assert!(pinhole_set(&device).is_empty());

    // Figures for BENCHMARKS.md (printed, never asserted): set-up (the command's whole run,
    // one byte echoed) and 4 MiB echoed, on each path.
    let (_, _, _, direct_setup) = echo_through(&operator, &device_key, &direct, &opkey, 1);
    relay_session_bytes(&relay_lines);
    let (_, _, _, relay_setup) = echo_through(&operator, &device_key, &relay_only, &opkey, 1);
    relay_session_bytes(&relay_lines);
    let big = 4 << 20;
    let (ok, stderr, whole, direct_big) =
        echo_through(&operator, &device_key, &direct, &opkey, big);
    let ss = |ns: &str| {
        String::from_utf8_lossy(&must("ip", &["netns", "exec", ns, "ss", "-tnio"]).stdout)
            .into_owned()
    };
    assert!(
        ok && whole && stderr.contains("path: direct"),
        "{stderr}\ndevice {:?}\ndevnat {:?}\nopnat {:?}\ndevice sockets\n{}\noperator sockets\n{}",
        counters(&device, "limpet"),
        counters(&devnat, "fw"),
        counters(&opnat, "fw"),
        ss(&device),
        ss(&operator)
    );
    relay_session_bytes(&relay_lines);
    let (ok, stderr, whole, relay_big) =
        echo_through(&operator, &device_key, &relay_only, &opkey, big);
    assert!(ok && whole && stderr.contains("path: relay"), "{stderr}");
    relay_session_bytes(&relay_lines);
    let rate = |t: Duration| (big >> 20) as f64 / t.as_secs_f64();
    eprintln!(
        "direct-path figures: set-up (connect, 1 byte echoed) direct {direct_setup:?}, relay \
         {relay_setup:?}; 1 MiB echoed direct {direct_1m:?}, relay {relay_1m:?}; 4 MiB echoed \
         direct {direct_big:?} ({:.1} MiB/s each way), relay {relay_big:?} ({:.1} MiB/s each way)",
        rate(direct_big),
        rate(relay_big)
    );
    emptied();

    // 3. The operator's NAT randomises ports: its SYN comes from a port the device's NAT has
    // no entry for, and the device's goes to a port the operator's NAT mapped for the relay
    // connection only. The direct attempt fails within its bound; the relay carries it.
    must(
        "ip",
        &[
            "netns", "exec", &opnat, "nft", "flush", "chain", "ip", "nat", "post",
        ],
    );
    must(
        "ip",
        &[
            "netns",
            "exec",
            &opnat,
            "nft",
            "add",
            "rule",
            "ip",
            "nat",
            "post",
            "oifname",
            "wan",
            "masquerade",
            "random",
        ],
    );
    let (ok, stderr, whole, _) = echo_through(&operator, &device_key, &direct, &opkey, payload);
    assert!(ok && whole, "fallback failed: {stderr}");
    assert!(stderr.contains("connect: path: relay"), "{stderr}");
    let (up, down) = relay_session_bytes(&relay_lines);
    assert!(
        up >= payload as u64 && down >= payload as u64,
        "the fallback did not carry the payload: {up} {down}"
    );
    wait_for(&agent_lines, &mut agent_seen, "path relay");
    // PID 1 opened the pinhole (the capability grants it), nothing came through it, and
    // the agent closed it at once: the fourth of the sessions' pinholes, each closed.
    wait_for_count(
        &agent_lines,
        &mut agent_seen,
        "pinhole opened: 198.51.100.6:",
        4,
    );
    wait_for_count(
        &agent_lines,
        &mut agent_seen,
        "pinhole closed: 198.51.100.6:",
        4,
    );
    emptied();

    // 4. At most 4 at a time: the fifth is refused, and the agent's egress is still no
    // wider than the relay and the four peers.
    for i in 0..4u16 {
        let peer = format!("203.0.113.{}:4000", 30 + i);
        assert!(want(&direct, &peer, 45_010 + i).is_ok());
    }
    assert_eq!(pinhole_set(&device).len(), 4);
    refused(
        &direct,
        "192.0.2.202:1000",
        "4 pinholes are open, the most there may be",
    );
    unreached();
    eprintln!("remote.rs direct-path wall time: {:?}", started.elapsed());
}
