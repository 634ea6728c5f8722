//! The dashboard in a real browser: the server on a loopback port with SQLite, a rollout
//! that halts itself through real signed check-ins, then headless Chromium (Debian's
//! `chromium`, driven by Playwright for Python: `tests/browser/dashboard.py`) logs in, sees
//! the halted rollout and its reason, presses Resume and sees it active again.
//!
//! Screenshots of every step: `target/tmp/fleet-dashboard/` (Cargo's CARGO_TARGET_TMPDIR).
//! Needs `python3 -m pip install playwright` and `apt-get install chromium`
//! (.ci/install-deps); no browser is downloaded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use common::server::{login, Server, PASSWORD};
use common::*;
use limpet_fleet::report::Outcome;
use serde_json::json;

/// The start of the halt's reason, as the halt rule words it.
const REASON: &str = "wave 0: 2 of 2 devices failed (2 rolled back";

#[test]
fn an_operator_resumes_a_halted_rollout_in_chromium() {
    let db = Sqlite::new();
    let server = Server::start(&db.url());
    let (cookie, _) = login(&server);
    let create = json!({"release": RELEASE, "waves": waves_field(),
        "thresholds": {"max_failure_bp": 5000, "min_reports": 2, "report_deadline_secs": 600}});
    let created = server.request(
        "POST",
        "/api/v1/rollouts",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        &serde_json::to_vec(&create).unwrap(),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    // Two devices of wave 0 roll back: the second report halts the rollout by itself.
    server.now.store(T0 + 100, Ordering::SeqCst);
    for k in devices_of_wave(0, 2) {
        let r = server.checkin(&body(&k, &report(&k, 1, Outcome::RolledBack)), None);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let holds = server.request("GET", "/api/v1/holds", &[], b"").json();
    assert!(
        holds["holds"][0]["hold"]["reason"]
            .as_str()
            .unwrap()
            .starts_with(REASON),
        "{holds}"
    );

    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-dashboard");
    let _ = std::fs::remove_dir_all(&out);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{}", server.addr))
        .args(["ada", RELEASE, REASON])
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (.ci/install-deps)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    let run = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the browser session failed (screenshots in {}; playwright from PyPI and Debian's chromium \
         are installed by .ci/install-deps):\n{stdout}\n{stderr}",
        out.display()
    );
    assert!(stdout.contains("dashboard: all steps passed"), "{stdout}");
    // The click in the browser resumed the rollout on the server: no hold is in force.
    let holds = server.request("GET", "/api/v1/holds", &[], b"").json();
    assert_eq!(holds["holds"], json!([]));
    for shot in [
        "1-login.png",
        "2-overview-halted.png",
        "3-release-halted.png",
        "4-release-resumed.png",
        "5-overview-resumed.png",
    ] {
        let png = std::fs::read(out.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{shot} is not a PNG");
    }
}
