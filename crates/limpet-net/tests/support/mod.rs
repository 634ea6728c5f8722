//! Namespaces, cgroup2 and commands for limpet-net's real-kernel tests and its bench
//! (`tests/kernel.rs`, `benches/policy.rs`): each named and cleaned up by the code that
//! made it.
// Each user takes what it needs.
#![allow(dead_code)]

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// `<prefix><pid>-<n>`: a name no other run or case uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command, panicking with its stderr unless it succeeds; returns its stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A named network namespace with loopback up, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace named `<prefix><pid>-<n>`.
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip ARGS` in the namespace; returns its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Runs `f` on a thread that has entered the namespace: sockets made there stay in it.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = std::fs::File::open(&path).expect("open the namespace");
                rustix::thread::move_into_link_name_space(
                    fd.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("setns");
                f()
            })
            .join()
            .expect("namespace thread")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// cgroup2 mounted on a temporary directory; its task directories removed and the mount
/// undone on drop.
#[derive(Debug)]
pub struct Cgroup2 {
    root: PathBuf,
    parent: PathBuf,
    dirs: Vec<PathBuf>,
}

impl Cgroup2 {
    /// Mounts cgroup2 at `<tmp>/<prefix>cg2-<pid>`, with a parent `<prefix><pid>` for the
    /// task directories (level 2 below the root, as on a device).
    pub fn mount(prefix: &str) -> Cgroup2 {
        let pid = std::process::id();
        let root = std::env::temp_dir().join(format!("{prefix}cg2-{pid}"));
        std::fs::create_dir_all(&root).unwrap();
        run("mount", &["-t", "cgroup2", "none", root.to_str().unwrap()]);
        let parent = root.join(format!("{prefix}{pid}"));
        std::fs::create_dir(&parent).unwrap();
        Cgroup2 {
            root,
            dirs: vec![parent.clone()],
            parent,
        }
    }

    /// Makes `<parent>/<task>` and returns it with its id (the inode number).
    pub fn task_dir(&mut self, task: &str) -> (PathBuf, u64) {
        let dir = self.parent.join(task);
        std::fs::create_dir(&dir).unwrap();
        self.dirs.push(dir.clone());
        let id = rustix::fs::stat(&dir).unwrap().st_ino;
        (dir, id)
    }
}

impl Drop for Cgroup2 {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            // A probe killed a moment ago may still be leaving its cgroup.
            for _ in 0..20 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = Command::new("umount").arg(&self.root).status();
        let _ = std::fs::remove_dir(&self.root);
    }
}
