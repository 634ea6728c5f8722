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
//! its signatures asked of a stand-in for PID 1 on the same socket protocol
//! (`SignRemoteAccess`, the identity on a temporary data directory, in this process), and
//! an echo service on its loopback; the
//! relay is `limpet relay serve`; the operator uses `limpet connect` with capabilities from
//! `limpet access grant`. Shown: the operator reaches the declared service through the
//! relay; tcpdump on the relay's namespace sees no plaintext of the session; each refusal
//! end to end (no capability, expired, signed by another key, for another device, an
//! undeclared service, a replayed session); the device listens on nothing but loopback
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
const ECHO: &str = "127.0.0.1:7007";
/// The bound on every wait of this test.
const WAIT: Duration = Duration::from_secs(30);

struct Net {
    lab: Lab,
    inet: String,
    device: String,
    operator: String,
}

fn net() -> Net {
    let mut lab = Lab::new();
    let inet = lab.namespace("lr", "inet");
    let devnat = lab.namespace("lr", "devnat");
    let opnat = lab.namespace("lr", "opnat");
    let device = lab.namespace("lr", "dev");
    let operator = lab.namespace("lr", "op");
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
        // A home router: masquerade outwards, nothing new inwards.
        nft_load(
            nat,
            "table ip nat {\n chain post {\n type nat hook postrouting priority 100;\n \
               oifname \"wan\" masquerade\n }\n}\n\
             table inet fw {\n chain routed {\n type filter hook forward priority 0; policy drop;\n \
               ct state established,related accept\n iifname \"lan\" accept\n \
               counter comment \"inbound dropped\"\n }\n}\n",
        );
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
    }
}

/// A stand-in for PID 1's side of the remote agent's socket: the identity (made under
/// `data`) answers `Status` with its public key and signs `SignRemoteAccess` under the
/// rule PID 1 keeps (`limpet_install_api::remote::check_message`), refusing anything else.
/// Served from a thread of this process for as long as it runs.
fn pid1_signer(data: &Path, socket: &Path) {
    use limpet_install_api::{DeviceStatus, Request, Response, MAX_MESSAGE};
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType};
    let identity =
        match limpet_identity::store::open(data, || Ok(zeroize::Zeroizing::new([42; 32]))).unwrap()
        {
            limpet_identity::Opened::Loaded(id) | limpet_identity::Opened::Created(id, _) => id,
        };
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
    rustix::net::bind(&fd, &SocketAddrUnix::new(socket).unwrap()).unwrap();
    rustix::net::listen(&fd, 8).unwrap();
    let key = identity.public_key();
    std::thread::spawn(move || loop {
        let Ok(conn) = rustix::net::accept(&fd) else {
            return;
        };
        let mut buf = vec![0u8; MAX_MESSAGE];
        let Ok((n, _)) = rustix::net::recv(&conn, &mut buf, RecvFlags::empty()) else {
            continue;
        };
        let answer = match Request::decode(&buf[..n]) {
            Ok(Request::Status) => Response::Status(DeviceStatus {
                running_version: "1.0.0".into(),
                running_length: 0,
                inactive_capacity: 0,
                floor: "1.0.0".into(),
                highest_failed: None,
                trial: None,
                on_trial: false,
                time_floor: None,
                earliest_time: None,
                support_until: None,
                device_key: Some(hex::encode(key.as_bytes())),
                record: None,
                owner_mode: None,
            }),
            Ok(Request::SignRemoteAccess { message }) => {
                match limpet_install_api::remote::check_message(&message) {
                    Ok(()) => Response::Signed {
                        signature: identity
                            .sign(limpet_identity::Purpose::RemoteAccess, &message)
                            .to_bytes(),
                    },
                    Err(e) => Response::Error(e),
                }
            }
            other => Response::Error(format!("not served here: {other:?}")),
        };
        let _ = rustix::net::send(&conn, &answer.encode(), SendFlags::NOSIGNAL);
    });
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
    Command::new("ip")
        .args(["netns", "exec", ns])
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
fn grant(
    dir: &Path,
    name: &str,
    key: &str,
    operator: &str,
    subject: &str,
    service: &str,
    life: &str,
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
                "--out",
            ])
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

/// One `limpet connect --service SERVICE` with `input` on stdin, from the operator.
fn connect_once(
    ns: &str,
    device: &str,
    cap: &Path,
    key: &Path,
    service: &str,
    input: &[u8],
) -> (bool, String, Vec<u8>) {
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_limpet"),
            "connect",
            device,
            "--relay",
            RELAY,
            "--cap",
        ])
        .arg(cap)
        .arg("--key")
        .arg(key)
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
    } = net();
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let access = keygen(keys.path(), "access");
    let _other_access = keygen(keys.path(), "other-access");
    let op = keygen(keys.path(), "operator");
    let stranger = keygen(keys.path(), "stranger");

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
        &["relay", "serve", "--listen", RELAY],
    );
    let relay_lines = stdout_lines(&mut relay);
    lab.adopt(relay);
    let mut relay_seen = Vec::new();
    wait_for(&relay_lines, &mut relay_seen, "relay: listening on");

    echo_server(&device);
    let signer = data.path().join("remote.sock");
    pid1_signer(data.path(), &signer);
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
    let mut forward = Command::new("ip")
        .args([
            "netns",
            "exec",
            &operator,
            env!("CARGO_BIN_EXE_limpet"),
            "connect",
            &device_key,
            "--relay",
            RELAY,
            "--cap",
        ])
        .arg(&good)
        .arg("--key")
        .arg(keys.path().join("operator"))
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
