//! Network namespaces for tests: a lab of namespaces joined by veths and a bridge, named
//! uniquely per test process, torn down by a guard (also when a test panics); code run
//! inside a namespace on a thread of its own; nftables counters read back from a
//! namespace. Addresses are TEST-NET ones only, and nothing here touches the host's
//! own namespace beyond creating and deleting the named ones.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Output, Stdio};

/// Runs `program args`, panicking with its output unless it succeeds.
pub fn must(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ip -n NS ARGS...`.
pub fn ip(ns: &str, args: &str) {
    let mut all = vec!["-n", ns];
    all.extend(args.split_whitespace());
    must("ip", &all);
}

/// Sets the sysctl `key` (dotted, e.g. `net.ipv4.ip_forward`) to `value` inside `ns`:
/// `/proc/sys/net` shows the network namespace of the thread that opens it.
pub fn sysctl(ns: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let value = value.to_owned();
    inside(ns, move || std::fs::write(&path, &value))
        .unwrap_or_else(|e| panic!("sysctl {key} in {ns}: {e}"));
}

/// Loads an nftables ruleset (text, as `nft -f` reads it) into `ns`.
pub fn nft_load(ns: &str, ruleset: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run nft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ruleset.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft -f in {ns} failed:\n{}\n{ruleset}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nft -j ARGS...` in `ns`, parsed; `None` when nft fails (e.g. no such table).
pub fn nft_json(ns: &str, args: &[&str]) -> Option<serde_json::Value> {
    let mut all = vec!["netns", "exec", ns, "nft", "-j"];
    all.extend_from_slice(args);
    let out = Command::new("ip")
        .args(&all)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The rules of `nft -j` output, each with its comment.
pub fn rules(doc: &serde_json::Value) -> Vec<&serde_json::Value> {
    doc["nftables"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i.get("rule")).collect())
        .unwrap_or_default()
}

/// Packets and bytes a rule's `counter` counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl std::ops::Sub for Count {
    type Output = Count;
    fn sub(self, earlier: Count) -> Count {
        Count {
            packets: self.packets - earlier.packets,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

/// Every counter of table `inet <table>` in `ns`, by its rule's comment.
pub fn counters(ns: &str, table: &str) -> BTreeMap<String, Count> {
    let doc = nft_json(ns, &["list", "table", "inet", table])
        .unwrap_or_else(|| panic!("cannot list table inet {table} in {ns}"));
    let mut found = BTreeMap::new();
    for rule in rules(&doc) {
        let Some(comment) = rule["comment"].as_str() else {
            continue;
        };
        let counter = rule["expr"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| e.get("counter"));
        if let Some(c) = counter {
            found.insert(
                comment.to_owned(),
                Count {
                    packets: c["packets"].as_u64().unwrap_or(0),
                    bytes: c["bytes"].as_u64().unwrap_or(0),
                },
            );
        }
    }
    found
}

/// Runs `f` on a new thread whose network namespace is `ns`, and returns its result.
/// Sockets made by `f` live in `ns`; the calling thread is untouched.
pub fn inside<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_inside(ns, f).join().unwrap()
}

/// Like [`inside`], but returns the thread's handle at once.
pub fn spawn_inside<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        enter_net_namespace(&file).unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
}

// The two system calls std does not offer, from the C library the test binary links
// (the command line's crate has no libc or rustix dependency for its tests).
extern "C" {
    fn setns(fd: std::os::raw::c_int, nstype: std::os::raw::c_int) -> std::os::raw::c_int;
    fn kill(pid: i32, signal: std::os::raw::c_int) -> std::os::raw::c_int;
}

/// setns(2) into the network namespace `file` names, for the calling thread only.
fn enter_net_namespace(file: &std::fs::File) -> std::io::Result<()> {
    const CLONE_NEWNET: std::os::raw::c_int = 0x4000_0000;
    // SAFETY: setns takes a file descriptor, which `file` keeps open for the call, and a
    // flag word; it touches no memory of ours. Changing the network namespace of one
    // thread is allowed in a multi-threaded process.
    let ret = unsafe { setns(file.as_raw_fd(), CLONE_NEWNET) };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// SIGKILL to one process, by its pid.
pub fn kill_by_pid(pid: i32) {
    const SIGKILL: std::os::raw::c_int = 9;
    // SAFETY: kill takes two integers and touches no memory of ours.
    let _ = unsafe { kill(pid, SIGKILL) };
}

/// Named network namespaces and the processes started in them, removed on drop: every
/// process still in one of them is killed by its pid first.
#[derive(Debug)]
pub struct Lab {
    /// The namespaces made so far, in order.
    names: Vec<String>,
    /// Processes the test started (e.g. a DNS server), ended by their pid.
    children: Vec<Child>,
}

impl Lab {
    pub fn new() -> Self {
        Lab {
            names: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Adds the namespace `<prefix><pid>-<role>`, its loopback left down, and returns its
    /// name.
    pub fn namespace(&mut self, prefix: &str, role: &str) -> String {
        let name = format!("{prefix}{}-{role}", std::process::id());
        must("ip", &["netns", "add", &name]);
        self.names.push(name.clone());
        name
    }

    /// Keeps `child` to be killed on drop.
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in self.names.iter().rev() {
            // Whatever still runs in the namespace was started by this test (the simulated
            // device's PID 1 and its tasks, a server): end it by its pid.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                let pids = String::from_utf8_lossy(&out.stdout);
                for pid in pids
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    // Never this test process (its main thread stays in the host's namespace,
                    // but be sure), and never a group (pid 0 or negative).
                    if pid > 0 && u32::try_from(pid).ok() != Some(std::process::id()) {
                        kill_by_pid(pid);
                    }
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "delete", name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A TCP server in `ns` on `addr`: of each connection it reads one line (at most 256
/// bytes, 2 s), logs it in `log` and answers `reply` and a newline; it stops when `stop`
/// is set.
pub fn line_server(
    ns: &str,
    addr: &str,
    reply: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let listener = inside(ns, move || std::net::TcpListener::bind(addr).unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                    let mut line = String::new();
                    let _ = BufReader::new((&stream).take(256)).read_line(&mut line);
                    log.lock().unwrap().push(line.trim_end().to_owned());
                    let _ = (&stream).write_all(format!("{reply}\n").as_bytes());
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    });
}

/// The lines `child` writes on its (piped) stderr, as they come, on a channel that a
/// thread of its own fills until the pipe closes.
pub fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let (send, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().expect("the child's stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// The pids of the direct children of process `pid` (every thread's), from
/// `/proc/<pid>/task/<tid>/children`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        found.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    found
}

/// A real LAN for a QEMU guest (`limpet run --net-tap`), and an internet beyond its router,
/// in three namespaces of `lab` (TEST-NET addresses only):
///
/// ```text
///  lan   br0 192.0.2.2/24: the bridge, the LAN host, dnsmasq (DHCP 192.0.2.100-149,
///        │                 router 192.0.2.1, DNS 192.0.2.2)
///        ├─ tap0: the guest's NIC (QEMU runs in this namespace: `ip netns exec lan ...`)
///        └─ l0 ── r0 192.0.2.1/24
///  rtr                        the router (IPv4 forwarding on)
///                  w0 198.51.100.1/24
///                   │
///  inet            i0 198.51.100.2/24: the internet side, default route via the router
/// ```
///
/// Everything goes with the lab: dnsmasq and whatever runs in the namespaces is killed by
/// its pid, the namespaces (and so their links) are deleted.
#[derive(Debug)]
pub struct TapNet {
    /// The LAN's namespace, where QEMU runs and the tap is.
    pub lan: String,
    /// The router's.
    pub router: String,
    /// The internet side's.
    pub inet: String,
    /// dnsmasq's scratch directory (its log, leases and pid file).
    pub dnsmasq_dir: std::path::PathBuf,
}

impl TapNet {
    /// The tap the guest's NIC is on, in [`TapNet::lan`].
    pub const TAP: &'static str = "tap0";
    /// The LAN host (bridge) address.
    pub const LAN_HOST: &'static str = "192.0.2.2";
    /// The internet host's address.
    pub const INET_HOST: &'static str = "198.51.100.2";

    /// Makes the namespaces `<prefix><pid>-lan`, `-rtr` and `-inet`, their links and
    /// addresses, and starts dnsmasq (its files under `scratch`).
    pub fn new(lab: &mut Lab, prefix: &str, scratch: &std::path::Path) -> TapNet {
        let lan = lab.namespace(prefix, "lan");
        let router = lab.namespace(prefix, "rtr");
        let inet = lab.namespace(prefix, "inet");
        for ns in [&lan, &router, &inet] {
            ip(ns, "link set lo up");
        }
        ip(&lan, "link add br0 type bridge");
        ip(&lan, &format!("tuntap add {} mode tap", Self::TAP));
        ip(&lan, &format!("link set {} master br0", Self::TAP));
        ip(
            &lan,
            &format!("link add l0 type veth peer name r0 netns {router}"),
        );
        ip(&lan, "link set l0 master br0");
        ip(&lan, &format!("addr add {}/24 dev br0", Self::LAN_HOST));
        for link in ["br0", Self::TAP, "l0"] {
            ip(&lan, &format!("link set {link} up"));
        }
        ip(
            &router,
            &format!("link add w0 type veth peer name i0 netns {inet}"),
        );
        ip(&router, "addr add 192.0.2.1/24 dev r0");
        ip(&router, "addr add 198.51.100.1/24 dev w0");
        ip(&router, "link set r0 up");
        ip(&router, "link set w0 up");
        sysctl(&router, "net.ipv4.ip_forward", "1");
        ip(&inet, &format!("addr add {}/24 dev i0", Self::INET_HOST));
        ip(&inet, "link set i0 up");
        ip(&inet, "route add default via 198.51.100.1");
        ip(&lan, "route add default via 192.0.2.1");

        let dnsmasq_dir = scratch.to_owned();
        dnsmasq(
            lab,
            &lan,
            &dnsmasq_dir,
            &[
                "--interface=br0",
                "--listen-address=192.0.2.2",
                "--dhcp-range=192.0.2.100,192.0.2.149,255.255.255.0,10m",
                "--dhcp-option=3,192.0.2.1",
                "--dhcp-option=6,192.0.2.2",
                "--log-dhcp",
            ],
        );
        TapNet {
            lan,
            router,
            inet,
            dnsmasq_dir,
        }
    }

    /// dnsmasq's log so far (for a failing test's context).
    pub fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(self.dnsmasq_dir.join("log")).unwrap_or_default()
    }
}

/// Starts dnsmasq in `ns` in the foreground, the lab's to kill: no configuration file,
/// hosts file or upstream servers, bound to the interfaces `args` name (`--interface`,
/// `--listen-address`, ...), authoritative for DHCP, port 53; its pid file, leases and
/// log in `dir` (made empty first).
pub fn dnsmasq(lab: &mut Lab, ns: &str, dir: &std::path::Path, args: &[&str]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "dnsmasq"])
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-hosts",
            "--no-resolv",
            "--user=root",
            "--bind-interfaces",
            "--port=53",
            "--dhcp-authoritative",
        ])
        .args(args)
        .arg(format!("--pid-file={}", dir.join("pid").display()))
        .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
        .arg(format!("--log-facility={}", dir.join("log").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start dnsmasq");
    lab.adopt(child);
}

/// rt1's private key (the `ed25519` Python package's form: the 32-byte seed
/// `limpet-roughtime-test-key-rt1-01` and the public key), whose public half
/// `examples/contain/roughtime.toml` and `island-lan.toml` list as rt1's. A test key, for
/// the tests only.
pub const RT1_PRIVATE: &str =
    "bGltcGV0LXJvdWdodGltZS10ZXN0LWtleS1ydDEtMDHHvPNxZR0iZVJDC6C+pkcu5KUH0ZIy66EdwdW9QwwEdQ==";

/// Fails the test, saying how to get it, unless pyroughtime (`.ci/install-deps`) imports.
pub fn require_pyroughtime() {
    let python = Command::new("python3")
        .args(["-c", "import pyroughtime.pyroughtime"])
        .status()
        .expect("cannot run python3");
    assert!(
        python.success(),
        "pyroughtime is missing: run .ci/install-deps (pip install pyroughtime)"
    );
}

/// Starts a pyroughtime server (PyPI, Roughtime draft 07) in `ns` on `addr:port`, under the
/// long-term private key `private` (base64, the `ed25519` package's form), or under a new
/// one when `None`; returns its public key (base64). The server is the lab's, killed by its
/// pid when the lab drops.
pub fn roughtime_server(
    lab: &mut Lab,
    ns: &str,
    addr: &str,
    port: u16,
    private: Option<&str>,
) -> String {
    const SCRIPT: &str = "import base64, sys, ed25519\n\
from pyroughtime.pyroughtime import RoughtimeServer as S\n\
priv = sys.argv[3].encode() if sys.argv[3] else S.create_key()[0]\n\
publ = ed25519.SigningKey(priv, encoding='base64').get_verifying_key().to_bytes()\n\
cert, dpriv = S.create_delegate_key(priv)\n\
print(base64.b64encode(publ).decode(), flush=True)\n\
S(cert, dpriv).start(sys.argv[1], int(sys.argv[2]))\n";
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", SCRIPT, addr])
        .arg(port.to_string())
        .arg(private.unwrap_or(""))
        // The server stamps its local time; the namespace's is the host's, in UTC.
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot run python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    lab.adopt(child);
    assert!(
        !line.trim().is_empty(),
        "pyroughtime printed no key: is it installed (`.ci/install-deps`)?"
    );
    line.trim().to_owned()
}
