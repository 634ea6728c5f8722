//! Shared by the tests: databases to run against (a SQLite file in a temporary directory, a
//! real PostgreSQL server started here from Debian's `postgresql` package), device keys and
//! signed reports.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod server;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use limpet_fleet::report::{self, AbRecord, AbState, LastUpdate, Outcome, Report, Slot};
use limpet_fleet::waves::{RawReleaseWaves, RawWave, Waves};
use serde_json::{json, Value};

pub const RELEASE: &str = "thermostat/1.3.0";
pub const T0: i64 = 1_800_000_000;

/// A PostgreSQL server of its own: `initdb` and `postgres` in a temporary directory, as an
/// unprivileged user when the tests run as root, on a loopback port; stopped by its PID.
pub struct Postgres {
    child: Child,
    _dir: tempfile::TempDir,
    base: String,
    next: std::sync::atomic::AtomicU32,
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (/usr/lib/postgresql): apt-get install postgresql (.ci/install-deps)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    found.sort();
    found
        .pop()
        .expect("no PostgreSQL with initdb under /usr/lib/postgresql")
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A command run as `nobody` when we are root (initdb and postgres refuse root).
fn unprivileged(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("limpet-fleet-pg")
            .tempdir()
            .unwrap();
        if is_root() {
            let uid = Command::new("id").args(["-u", "nobody"]).output().unwrap();
            let gid = Command::new("id").args(["-g", "nobody"]).output().unwrap();
            let num = |o: std::process::Output| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .unwrap()
            };
            std::os::unix::fs::chown(dir.path(), Some(num(uid)), Some(num(gid))).unwrap();
        }
        let data = dir.path().join("data");
        let out = unprivileged(&bin.join("initdb"))
            .args([
                "-U",
                "fleet",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = unprivileged(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pg = Postgres {
            child,
            _dir: dir,
            base: format!("postgres://fleet@127.0.0.1:{port}"),
            next: 0.into(),
        };
        pg.wait_ready();
        pg
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let isready = pg_bin().join("pg_isready");
        let port = self.base.rsplit(':').next().unwrap().to_owned();
        loop {
            let ok = Command::new(&isready)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "fleet",
                    "-d",
                    "postgres",
                ])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A fresh, empty database's URL.
    pub fn fresh_database(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("fleet_{n}");
        let port = self.base.rsplit(':').next().unwrap().to_owned();
        let out = Command::new(pg_bin().join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "fleet",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "create database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("{}/{name}", self.base)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Fast shutdown (SIGINT) of the postmaster we started, by its PID; it stops its
        // children. SIGKILL would leave them running.
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let _ = self.child.wait();
    }
}

/// A SQLite database in its own temporary directory.
pub struct Sqlite {
    pub dir: tempfile::TempDir,
}

impl Sqlite {
    pub fn new() -> Sqlite {
        Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("fleet.db").display())
    }
}

pub fn hold_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// Two waves of half the fleet each.
pub fn raw_waves() -> RawReleaseWaves {
    RawReleaseWaves {
        emergency: false,
        waves: vec![
            RawWave {
                share_bp: 5000,
                start: "2027-01-15T08:00:00Z".into(),
            },
            RawWave {
                share_bp: 5000,
                start: "2027-01-16T08:00:00Z".into(),
            },
        ],
    }
}

/// The `x-limpet-waves` field naming `hold_key()`.
pub fn waves_field() -> Value {
    json!({
        "hold_keys": [hex::encode(hold_key().verifying_key().as_bytes())],
        "max_hold_secs": 86_400,
        "releases": {RELEASE: raw_waves()},
    })
}

/// `n` device keys of wave `wave` of RELEASE.
pub fn devices_of_wave(wave: usize, n: usize) -> Vec<SigningKey> {
    let waves = Waves::from_raw(RELEASE, &raw_waves()).unwrap();
    (0u32..)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            SigningKey::from_bytes(&seed)
        })
        .filter(|k| waves.wave_of(k.verifying_key().as_bytes(), RELEASE) == wave)
        .take(n)
        .collect()
}

pub fn device_hex(k: &SigningKey) -> String {
    hex::encode(k.verifying_key().as_bytes())
}

/// A report of `outcome` for RELEASE (none: no update yet).
pub fn report(k: &SigningKey, seq: u64, outcome: Outcome) -> Report {
    Report {
        device: device_hex(k),
        seq,
        time: T0,
        running: "1.2.0".into(),
        other: Some("1.1.0".into()),
        ab: AbRecord {
            active: Slot::A,
            state: AbState::Committed,
        },
        last_update: LastUpdate {
            outcome,
            release: (outcome != Outcome::None).then(|| RELEASE.to_owned()),
            reason: (outcome == Outcome::RolledBack).then(|| "task app crashed 3 times".to_owned()),
        },
        boot_count: 1,
        remote_sessions: Vec::new(),
    }
}

/// The signed body of a report.
pub fn body(k: &SigningKey, r: &Report) -> Vec<u8> {
    serde_json::to_vec(&report::sign(r, k).unwrap()).unwrap()
}
