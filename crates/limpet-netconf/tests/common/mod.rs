//! Helpers shared by this crate's integration tests: network namespaces, moving the test
//! thread into one, and a dnsmasq child process. Everything created is removed on drop.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where Debian's `dnsmasq-base` installs the binary.
const DNSMASQ_PATHS: &[&str] = &["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"];

/// The dnsmasq binary, or a panic that says which package to install.
pub fn dnsmasq() -> PathBuf {
    DNSMASQ_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("dnsmasq not found (looked in {DNSMASQ_PATHS:?}); install the Debian package `dnsmasq-base`")
        })
}

/// Fails clearly when the test cannot create network namespaces.
pub fn require_root() {
    if !rustix::process::geteuid().is_root() {
        panic!("this test needs root (CAP_NET_ADMIN, CAP_NET_RAW) to create network namespaces");
    }
}

/// Runs `ip` with `args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (package iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -j` output parsed as JSON.
pub fn ip_json(args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    serde_json::from_str(&ip(&full)).expect("ip -j prints JSON")
}

/// A named network namespace (`ip netns`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `lnc-<tag>-<pid>` with its loopback up.
    pub fn new(tag: &str) -> Self {
        let name = format!("lnc-{tag}-{}", std::process::id());
        // A leftover from a killed run of this same pid would make `add` fail.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Moves the calling thread into this namespace (only this thread: setns is per task).
    pub fn enter(&self) {
        let f = File::open(Path::new("/run/netns").join(&self.name)).expect("open netns file");
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&f),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A per-test scratch directory `limpet-netconf-<tag>-<pid>` (created if missing).
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("limpet-netconf-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A dnsmasq running in the foreground inside a namespace, killed on drop. Its log goes
/// to a file, printed when the test fails.
#[derive(Debug)]
pub struct Dnsmasq {
    child: Child,
    pub log: PathBuf,
    dir: PathBuf,
}

impl Dnsmasq {
    /// Starts dnsmasq in `ns` with `args` (after the common ones); its files go in
    /// [`scratch_dir`]`(tag)`, removed on drop.
    pub fn start(ns: &Netns, tag: &str, args: &[String]) -> Self {
        let bin = dnsmasq();
        let dir = scratch_dir(tag);
        let log = dir.join("dnsmasq.log");
        let stderr = File::create(dir.join("stderr")).expect("stderr file");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(bin)
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-hosts",
                "--no-resolv",
                "--user=root",
                "--bind-interfaces",
            ])
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-facility={}", log.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn dnsmasq");
        Self { child, log, dir }
    }

    /// dnsmasq's log and stderr so far.
    pub fn log_text(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default();
        format!("{log}{err}")
    }

    /// Fails if dnsmasq has exited (bad flags, port in use).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("dnsmasq exited with {status}; log:\n{}", self.log_text());
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("dnsmasq log:\n{}", self.log_text());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `fd` is readable or `timeout` passes; true when readable.
pub fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::time::Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(1),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}
