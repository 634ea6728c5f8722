//! The fleet server at fleet size (issue 15, Benchmarks): check-ins per second on SQLite and
//! on PostgreSQL with a simulated fleet of DEVICES devices (100,000 by default), the
//! dashboard's page time at that size, and the server's memory.
//!
//! Bounded and loopback only: the fleet is loaded straight through the store API
//! (`Store::check_in` of verified signed reports, no HTTP: loading 100,000 devices over HTTP
//! takes too long on a 2-core machine), then the real server runs as a child process (this
//! binary again, `LIMPET_FLEET_BENCH_SERVE=URL`) and a fixed number of signed check-ins
//! and page loads are sent to it from CLIENTS threads; then it is stopped by its PID and
//! its VmHWM and VmRSS are read. PostgreSQL is a server of its own in a temporary
//! directory (tests/common). Every answer is checked; a wrong one ends the bench.
//!
//! Run: `benches/fleet.sh` (or `cargo bench -p limpet-fleet --bench fleet`); knobs in the
//! environment: DEVICES, UNCHANGED (304 check-ins), CHANGED (state-changing check-ins on
//! the rolled-out release), PAGES (loads of each page), CLIENTS, ENGINES (`sqlite,postgres`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::request;
use common::*;
use ed25519_dalek::SigningKey;
use limpet_fleet::auth;
use limpet_fleet::halt::RawThresholds;
use limpet_fleet::report::{self, Outcome};
use limpet_fleet::rollout::{CreateRollout, Fleet};
use limpet_fleet::store::Store;

const SERVE_ENV: &str = "LIMPET_FLEET_BENCH_SERVE";
const OPERATOR_PASSWORD: &str = "a long benchmark password";

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
        .unwrap_or(default)
}

fn now() -> i64 {
    (limpet_fleet::server::system_clock())()
}

fn key(i: usize) -> SigningKey {
    let mut seed = [9u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    SigningKey::from_bytes(&seed)
}

/// Device `i`'s first report: even devices installed RELEASE, odd ones have had no update.
fn first_outcome(i: usize) -> Outcome {
    if i.is_multiple_of(2) {
        Outcome::Installed
    } else {
        Outcome::None
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The child: the real server on a loopback port; prints its address.
fn serve(url: &str) {
    runtime().block_on(async {
        let store = Store::open(url).await.unwrap();
        let fleet = Fleet::new(store, hold_key());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        limpet_fleet::server::serve(
            listener,
            fleet,
            limpet_fleet::server::system_clock(),
            Duration::from_secs(3600),
            auth::CookiePolicy::default(),
        )
        .await
        .unwrap();
    });
}

/// Loads `devices` devices (each one signed report, verified, stored), a rollout of
/// RELEASE and an operator; returns the seconds it took.
fn load(url: &str, devices: usize) -> f64 {
    let start = Instant::now();
    runtime().block_on(async {
        let store = Store::open(url).await.unwrap();
        let fleet = Fleet::new(store.clone(), hold_key());
        fleet
            .create_rollout(
                &CreateRollout {
                    release: RELEASE.into(),
                    waves: waves_field(),
                    thresholds: RawThresholds {
                        max_failure_bp: 5000,
                        min_reports: 10,
                        report_deadline_secs: 86_400,
                    },
                },
                now(),
            )
            .await
            .unwrap();
        store
            .set_operator(
                "ada",
                &auth::hash_password("ada", OPERATOR_PASSWORD).unwrap(),
            )
            .await
            .unwrap();
        let workers = if store.engine() == limpet_fleet::store::Engine::Sqlite {
            1
        } else {
            8
        };
        let mut set = tokio::task::JoinSet::new();
        for w in 0..workers {
            let store = store.clone();
            set.spawn(async move {
                for i in (w..devices).step_by(workers) {
                    let k = key(i);
                    let verified =
                        report::verify(&body(&k, &report(&k, 1, first_outcome(i)))).unwrap();
                    store.check_in(&verified, now()).await.unwrap();
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        store.close().await;
    });
    start.elapsed().as_secs_f64()
}

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(url: &str) -> ServerProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(SERVE_ENV, url)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the server printed {line:?}"));
        ServerProcess { child, addr }
    }

    /// VmHWM and VmRSS, kB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc status"))
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends the bodies from `clients` threads; every answer must have `status`. Returns
/// check-ins per second.
fn send(
    addr: SocketAddr,
    bodies: Vec<Vec<u8>>,
    etag: Option<String>,
    status: u16,
    clients: usize,
) -> f64 {
    let n = bodies.len();
    let bodies = Arc::new(bodies);
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let bodies = bodies.clone();
            let etag = etag.clone();
            std::thread::spawn(move || {
                for b in bodies.iter().skip(c).step_by(clients) {
                    let mut h = vec![("Content-Type", "application/json")];
                    if let Some(t) = &etag {
                        h.push(("If-None-Match", t));
                    }
                    let r = request(addr, "POST", "/api/v1/checkin", &h, b);
                    assert_eq!(r.status, status, "{}", r.text());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Median and largest time of `n` loads of `path`, milliseconds, and the page's size.
fn page_time(addr: SocketAddr, cookie: &str, path: &str, n: usize) -> (f64, f64, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..n {
        let start = Instant::now();
        let r = request(addr, "GET", path, &[("Cookie", cookie)], b"");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        size = r.body.len();
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() - 1], size)
}

fn login(addr: SocketAddr) -> String {
    let r = request(
        addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("name=ada&password={}", OPERATOR_PASSWORD.replace(' ', "+")).as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    r.header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

fn run(engine: &str, url: &str) {
    let devices = knob("DEVICES", 100_000);
    let unchanged = knob("UNCHANGED", 5_000).min(devices / 2);
    let changed = knob("CHANGED", 100).min(devices / 2);
    let pages = knob("PAGES", 10);
    let clients = knob("CLIENTS", 4);
    let load_s = load(url, devices);
    eprintln!("[{engine}] loaded {devices} devices through the store API in {load_s:.1} s");
    let server = ServerProcess::start(url);
    let (hwm_idle, rss_idle) = server.memory();

    // Unchanged devices (even ones, still on their installed release): one signed report
    // with a higher sequence and the ETag of the holds they have, answered 304.
    let probe = key(0);
    let first = request(
        server.addr,
        "POST",
        "/api/v1/checkin",
        &[("Content-Type", "application/json")],
        &body(&probe, &report(&probe, 2, first_outcome(0))),
    );
    assert_eq!(first.status, 200, "{}", first.text());
    let etag = first.header("etag").unwrap().to_owned();
    let bodies: Vec<Vec<u8>> = (1..=unchanged)
        .map(|j| {
            let i = 2 * j;
            let k = key(i);
            body(&k, &report(&k, 2, first_outcome(i)))
        })
        .collect();
    let unchanged_rate = send(server.addr, bodies, Some(etag), 304, clients);
    eprintln!("[{engine}] {unchanged} unchanged check-ins (304): {unchanged_rate:.0}/s");

    // Devices that change state: odd ones (no update yet) report RELEASE installed; each
    // report is stored whole and the rollout's halt rule is evaluated over its devices.
    let bodies: Vec<Vec<u8>> = (0..changed)
        .map(|j| {
            let k = key(2 * j + 1);
            body(&k, &report(&k, 2, Outcome::Installed))
        })
        .collect();
    let changed_rate = send(server.addr, bodies, None, 200, clients);
    eprintln!("[{engine}] {changed} state-changing check-ins (200): {changed_rate:.1}/s");

    let cookie = login(server.addr);
    let (ov_med, ov_max, ov_size) = page_time(server.addr, &cookie, "/", pages);
    let release_path = format!("/releases/{RELEASE}");
    let (rel_med, rel_max, _) = page_time(server.addr, &cookie, &release_path, pages);
    let (js_med, js_max, _) = page_time(server.addr, &cookie, "/api/v1/overview", pages);
    let (hwm, rss) = server.memory();
    println!(
        "| {engine} | {devices} | {load_s:.0} | {unchanged} | {unchanged_rate:.0} | {changed} | {changed_rate:.1} \
         | {ov_med:.0} ({ov_max:.0}), {} KiB | {rel_med:.0} ({rel_max:.0}) | {js_med:.0} ({js_max:.0}) \
         | {rss_idle} / {hwm_idle} | {rss} / {hwm} |",
        ov_size / 1024,
    );
}

fn main() {
    if let Ok(url) = std::env::var(SERVE_ENV) {
        serve(&url);
        return;
    }
    let engines = std::env::var("ENGINES").unwrap_or_else(|_| "sqlite,postgres".into());
    println!(
        "| engine | devices | load s | unchanged check-ins | per s (304) | changed check-ins | per s (stored, rollout evaluated) \
         | overview ms median (max), size | release page ms | overview JSON ms | RSS / HWM kB after start | RSS / HWM kB at end |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---|");
    for engine in engines.split(',') {
        match engine {
            "sqlite" => {
                let db = Sqlite::new();
                run(engine, &db.url());
            }
            "postgres" => {
                let pg = Postgres::start();
                let url = pg.fresh_database();
                run(engine, &url);
            }
            other => panic!("ENGINES: unknown engine {other} (sqlite, postgres)"),
        }
    }
}
