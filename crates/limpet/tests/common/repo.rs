//! An update repository for the update tests: made with `limpet repo init`, published to
//! with `limpet publish`, served on loopback with `limpet serve`, and reached by a guest on
//! QEMU's restricted user network through `limpet run --forward 80=...`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::*;

/// The repository as the guest sees it (`limpet run --forward 80=...`).
pub const REPOSITORY: &str = "http://10.0.2.100:80/";

/// A process the test started (`limpet serve`, a device's QEMU), ended by its PID when
/// dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A repository and the keys that sign it, its first root (what a device ships) and the
/// vendor's image key.
#[derive(Clone)]
pub struct Fixture {
    pub repo: PathBuf,
    pub tuf_keys: PathBuf,
    pub image_pub: PathBuf,
    pub root: PathBuf,
    pub key_id: String,
}

/// The repository `scratch()/<name>` with its keys beside it, and the image key in
/// `scratch()/keys` that every test build signs with.
pub fn fixture(name: &str) -> Fixture {
    let (_, image_pub) = keys_in(&scratch().join("keys"));
    let repo = scratch().join(name);
    let tuf_keys = scratch().join(format!("{name}-tuf-keys"));
    let (root, key_id) = tuf_repo(&repo, &tuf_keys);
    Fixture {
        repo,
        tuf_keys,
        image_pub,
        root,
        key_id,
    }
}

impl Fixture {
    /// The manifest's `[update]` table for this repository: a poll a minute, a 5 s health
    /// gate and two trial boots.
    pub fn update_table(&self) -> String {
        format!(
            "\n[update]\nrepository = \"{REPOSITORY}\"\nkeys = [{{ id = \"{}\" }}]\nroot = \"{}\"\npoll = \"1m\"\nhealth = \"5s\"\ntry_boots = 2\n",
            self.key_id,
            self.root.display()
        )
    }

    /// The same keys with a copy of this repository as it is now at `scratch()/<name>`, so
    /// that tests of one binary publish independently.
    pub fn copied(&self, name: &str) -> Fixture {
        let repo = scratch().join(name);
        copy_dir(&self.repo, &repo);
        Fixture {
            repo,
            ..self.clone()
        }
    }

    /// `limpet publish` of the build output `out`.
    pub fn publish(&self, out: &Path) {
        self.publish_report(out);
    }

    /// As [`Fixture::publish`]; what it printed (its targets, chunks and whether it made a
    /// delta, and why not), for a test's failure message.
    pub fn publish_report(&self, out: &Path) -> String {
        stdout(&run(
            limpet()
                .arg("publish")
                .arg(out)
                .arg("--repo")
                .arg(&self.repo)
                .arg("--keys")
                .arg(&self.tuf_keys)
                .arg("--image-key")
                .arg(&self.image_pub),
            true,
        ))
    }

    /// `limpet serve` of the repository on a free loopback port: the server and the port.
    pub fn serve(&self) -> (KillOnDrop, u16) {
        // A free loopback port: bound, read, released, then given to the server.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_limpet"))
            .arg("serve")
            .arg(&self.repo)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = KillOnDrop(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (server, port);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("limpet serve did not listen on {port}");
    }
}

/// One boot of the device in `dir` through its chain on the user network with the
/// repository on `port` forwarded, keeping its disk writes, until it powers off or reboots
/// by itself (QEMU runs with `-no-reboot`), pressing the power button once `until` appears.
/// The boot must end cleanly; returns the console.
pub fn boot_with_repo(dir: &Path, port: u16, until: Option<&str>, deadline_secs: &str) -> String {
    match until {
        Some(until) => boot_with_repo_args(dir, port, &["--powerdown-on", until], deadline_secs),
        None => boot_with_repo_args(dir, port, &[], deadline_secs),
    }
}

/// [`boot_with_repo`] with `args` added to `limpet run` (`--powerdown-on`, `--type-on`, …).
pub fn boot_with_repo_args(dir: &Path, port: u16, args: &[&str], deadline_secs: &str) -> String {
    let out = run(
        limpet()
            .arg("run")
            .arg(dir)
            .args(["--json", "--persist", "--timeout", deadline_secs])
            .arg("--user-net")
            .args(["--forward", &format!("80=127.0.0.1:{port}")])
            .args(args),
        true,
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let console = stderr(&out);
    // The boot times of commits and rollbacks, for BENCHMARKS.md.
    for line in console.lines().filter(|l| l.contains("(boottime ")) {
        eprintln!("timing: {line}");
    }
    assert_eq!(summary["exit_code"], 0, "{summary}\n{console}");
    console
}

/// The agent's line for the poll that staged a trial.
pub fn staged_line(console: &str) -> String {
    console
        .lines()
        .find(|l| l.starts_with("[limpet-update] ") && l.contains(" staged "))
        .unwrap_or_else(|| panic!("the agent logged no staged poll:\n{console}"))
        .to_owned()
}

/// A copy of directory `from` (a repository) as `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// How long [`Booted::wait_for`] waits for one console line on a loaded 2-core machine.
pub const LINE_WAIT: std::time::Duration = std::time::Duration::from_secs(420);

/// A running `limpet run --json` whose console (its stderr) the test reads line by line,
/// ended by its PID when dropped.
pub struct Booted {
    pub child: KillOnDrop,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every console line read so far.
    pub console: Vec<String>,
}

impl Booted {
    /// Starts `cmd` (a `limpet run --json ...`, or a wrapper that execs one) with its
    /// stdout and stderr piped.
    pub fn spawn(cmd: &mut Command) -> Booted {
        use std::io::BufRead;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Booted {
            child: KillOnDrop(child),
            lines,
            console: Vec::new(),
        }
    }

    /// Reads the console until a line contains `what` (at most [`LINE_WAIT`]); returns
    /// that line.
    pub fn wait_for(&mut self, what: &str) -> String {
        self.wait_for_all(&[what]);
        self.console.last().cloned().unwrap_or_default()
    }

    /// Reads the console until each of `all` has been in some line, in any order (at most
    /// [`LINE_WAIT`] in all).
    pub fn wait_for_all(&mut self, all: &[&str]) {
        let deadline = std::time::Instant::now() + LINE_WAIT;
        let mut left: Vec<&str> = all.to_vec();
        while !left.is_empty() {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(wait) {
                Ok(line) => {
                    left.retain(|w| !line.contains(w));
                    self.console.push(line);
                }
                Err(_) => panic!(
                    "no console line with {left:?} in time:\n{}",
                    self.console.join("\n")
                ),
            }
        }
    }

    /// Reads what is left of the console, until 5 s pass without a line.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(5)) {
            self.console.push(line);
        }
    }

    /// Waits for the run to end (after its power-down) and returns the whole console,
    /// asserting a clean shutdown.
    pub fn finish(mut self) -> String {
        let status = self.child.0.wait().unwrap();
        self.drain();
        let console = self.console.join("\n");
        assert!(status.success(), "limpet run: {status}\n{console}");
        assert!(
            console.contains("limpet-init: all tasks stopped, filesystems unmounted"),
            "a clean shutdown:\n{console}"
        );
        console
    }
}
