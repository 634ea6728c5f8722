//! The HTTP API and the dashboard over loopback: signed check-ins and their answers, the
//! operator login, rollouts that halt themselves, the dashboard's pages and controls.
//! The main flow runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;

use common::server::{login, Server, PASSWORD};
use common::*;
use limpet_fleet::auth;
use limpet_fleet::report::Outcome;
use serde_json::{json, Value};

#[test]
fn checkins_are_verified_and_an_unchanged_device_gets_304() {
    let db = Sqlite::new();
    let server = Server::start(&db.url());
    let k = &devices_of_wave(0, 1)[0];
    let first = server.checkin(&body(k, &report(k, 1, Outcome::None)), None);
    assert_eq!(first.status, 200, "{}", first.text());
    let tag = first.header("etag").unwrap().to_owned();
    assert_eq!(first.json()["holds"], json!([]));
    assert_eq!(first.json()["hold_key"], json!(device_hex(&hold_key())));
    // Unchanged device, nothing new to hear: 304 and an empty body.
    let again = server.checkin(&body(k, &report(k, 2, Outcome::None)), Some(&tag));
    assert_eq!((again.status, again.body.len()), (304, 0));
    // ...but it was stored: sequence 2 is now a replay.
    let replay = server.checkin(&body(k, &report(k, 2, Outcome::None)), Some(&tag));
    assert_eq!(replay.status, 409);
    assert!(replay.json()["error"]
        .as_str()
        .unwrap()
        .contains("is a replay: sequence 2 is not above the stored 2"));
    // Forged: signed by another key.
    let other = &devices_of_wave(1, 1)[0];
    let forged = server.checkin(&body(other, &report(k, 3, Outcome::None)), None);
    assert_eq!(forged.status, 403);
    assert!(forged.json()["error"]
        .as_str()
        .unwrap()
        .contains("signature that does not verify"));
    // Malformed, and too large.
    let bad = server.checkin(b"{\"report\": {\"device\": 5}, \"signature\": \"\"}", None);
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("malformed check-in report: device"));
    // Larger than a report may be (16 KiB), within what the server reads (64 KiB); a body
    // over that gets 413 from the body limit before any parsing.
    let large = server.checkin(&vec![b' '; 20 * 1024], None);
    assert_eq!(large.status, 400);
    assert_eq!(
        large.json()["error"],
        json!("malformed check-in report: body: 20480 bytes, more than 16384")
    );
    // Nothing of the refused ones was stored: sequence 3 is still fresh.
    assert_eq!(
        server
            .checkin(&body(k, &report(k, 3, Outcome::None)), None)
            .status,
        200
    );
}

#[test]
fn operators_must_log_in_and_writes_need_their_session() {
    let db = Sqlite::new();
    let server = Server::start(&db.url());
    let create = serde_json::to_vec(&json!({"release": RELEASE, "waves": waves_field(),
        "thresholds": {"max_failure_bp": 5000, "min_reports": 2, "report_deadline_secs": 600}}))
    .unwrap();
    let anon = server.request(
        "POST",
        "/api/v1/rollouts",
        &[("Content-Type", "application/json")],
        &create,
    );
    assert_eq!(anon.status, 401);
    assert_eq!(
        server.request("GET", "/api/v1/overview", &[], b"").status,
        401
    );
    let page = server.request("GET", "/", &[], b"");
    assert_eq!(
        (page.status, page.header("location")),
        (303, Some("/login"))
    );
    let wrong = server.request(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"name=ada&password=guess",
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    // Guessing: after 5 failures in 15 minutes even the right password is refused, until
    // the window ends.
    for _ in 0..4 {
        let r = server.request(
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"name=ada&password=guess",
        );
        assert_eq!(r.status, 401);
    }
    let right = format!("name=ada&password={}", PASSWORD.replace(' ', "+"));
    let locked = server.request(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        right.as_bytes(),
    );
    assert_eq!(locked.status, 429);
    assert!(locked.header("set-cookie").is_none());
    assert!(locked
        .text()
        .contains("too many failed logins; try again in 900 s"));
    server.now.store(T0 + 900, Ordering::SeqCst);
    let unknown = server.request(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"name=bob&password=guess",
    );
    assert_eq!(unknown.status, 401);
    let forged_cookie = format!("{}={}", auth::COOKIE, auth::new_token());
    assert_eq!(
        server
            .request("GET", "/", &[("Cookie", &forged_cookie)], b"")
            .status,
        303
    );
    let (cookie, _) = login(&server);
    // A JSON write without its content type (what a cross-site form would send): refused.
    let form = server.request(
        "POST",
        "/api/v1/rollouts",
        &[("Cookie", &cookie), ("Content-Type", "text/plain")],
        &create,
    );
    assert_eq!(form.status, 415);
    let mut bad = serde_json::from_slice::<Value>(&create).unwrap();
    bad["thresholds"]["max_failure_bp"] = json!(0);
    let bad = server.request(
        "POST",
        "/api/v1/rollouts",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        &serde_json::to_vec(&bad).unwrap(),
    );
    assert_eq!(bad.status, 422);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("max_failure_bp 0 is outside 1..=10000"),
        "{}",
        bad.text()
    );
    let ok = server.request(
        "POST",
        "/api/v1/rollouts",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        &create,
    );
    assert_eq!(ok.status, 201, "{}", ok.text());
    let again = server.request(
        "POST",
        "/api/v1/rollouts",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        &create,
    );
    assert_eq!(again.status, 409);
    // Logging out ends the session.
    let (cookie2, csrf2) = login(&server);
    let out = server.request(
        "POST",
        "/logout",
        &[
            ("Cookie", &cookie2),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        format!("csrf={csrf2}").as_bytes(),
    );
    assert_eq!(out.status, 303);
    assert_eq!(
        server
            .request("GET", "/", &[("Cookie", &cookie2)], b"")
            .status,
        303
    );
}

fn halt_and_resume(url: &str) {
    let server = Server::start(url);
    let (cookie, csrf) = login(&server);
    let json_write = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/json"),
    ];
    let create = json!({"release": RELEASE, "waves": waves_field(),
        "thresholds": {"max_failure_bp": 5000, "min_reports": 2, "report_deadline_secs": 600}});
    assert_eq!(
        server
            .request(
                "POST",
                "/api/v1/rollouts",
                &json_write,
                &serde_json::to_vec(&create).unwrap()
            )
            .status,
        201
    );
    // Wave 0 rolls back; wave 1 has not started.
    let wave0 = devices_of_wave(0, 2);
    let wave1 = &devices_of_wave(1, 1)[0];
    let w1 = server.checkin(&body(wave1, &report(wave1, 1, Outcome::None)), None);
    let tag = w1.header("etag").unwrap().to_owned();
    server.now.store(T0 + 100, Ordering::SeqCst);
    for (i, k) in wave0.iter().enumerate() {
        let r = server.checkin(&body(k, &report(k, 1, Outcome::RolledBack)), None);
        assert_eq!(r.status, 200, "{}", r.text());
        let holds = r.json()["holds"].as_array().unwrap().len();
        assert_eq!(holds, i, "the second rollback halts the rollout at once");
    }
    // Wave 1's next check-in gets the hold (its tag no longer matches).
    let r = server.checkin(&body(wave1, &report(wave1, 2, Outcome::None)), Some(&tag));
    assert_eq!(r.status, 200);
    let hold = &r.json()["holds"][0];
    assert_eq!(hold["hold"]["release"], json!(RELEASE));
    assert_eq!(hold["hold"]["scope"], json!({"kind": "all"}));
    assert_eq!(hold["hold"]["until"], json!(T0 + 100 + 86_400));
    assert!(hold["hold"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("wave 0: 2 of 2 devices failed (2 rolled back"));
    let public = server.request("GET", "/api/v1/holds", &[], b"");
    assert_eq!(public.json()["holds"][0], *hold);
    // The dashboard shows it, with its reason and the resume control.
    let overview = server
        .request("GET", "/api/v1/overview", &[("Cookie", &cookie)], b"")
        .json();
    assert_eq!(overview["rollouts"][0]["state"], json!("halted"));
    assert_eq!(overview["rollouts"][0]["waves"][0]["rollbacks"], json!(2));
    let page = server
        .request(
            "GET",
            &format!("/releases/{RELEASE}"),
            &[("Cookie", &cookie)],
            b"",
        )
        .text();
    assert!(
        page.contains("halted: wave 0: 2 of 2 devices failed"),
        "{page}"
    );
    assert!(page.contains("class=\"resume\""));
    let device = server
        .request(
            "GET",
            &format!("/devices/{}", device_hex(&wave0[0])),
            &[("Cookie", &cookie)],
            b"",
        )
        .text();
    assert!(
        device.contains("task app crashed 3 times") && device.contains("rolled-back"),
        "{device}"
    );
    let html_escaped = server
        .request("GET", "/", &[("Cookie", &cookie)], b"")
        .text();
    assert!(html_escaped.contains(&format!("/releases/{RELEASE}")));
    // Resume: a form without the session's CSRF token is refused, with it the holds go.
    let form = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let path = format!("/releases/{RELEASE}/resume");
    assert_eq!(
        server
            .request(
                "POST",
                &path,
                &form,
                b"csrf=00000000000000000000000000000000"
            )
            .status,
        403
    );
    assert_eq!(
        server
            .request("POST", &path, &[form[1]], format!("csrf={csrf}").as_bytes())
            .status,
        303
    );
    assert_eq!(
        server.request("GET", "/api/v1/holds", &[], b"").json()["holds"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let resumed = server.request("POST", &path, &form, format!("csrf={csrf}").as_bytes());
    assert_eq!(
        (resumed.status, resumed.header("location")),
        (303, Some(&*format!("/releases/{RELEASE}")))
    );
    assert_eq!(
        server.request("GET", "/api/v1/holds", &[], b"").json()["holds"],
        json!([])
    );
    // An operator halt over the API, then resume over the API.
    let halt = server.request(
        "POST",
        &format!("/api/v1/rollouts/{RELEASE}/halt"),
        &json_write,
        br#"{"reason": "support calls"}"#,
    );
    assert_eq!((halt.status, &halt.json()["halted"]), (200, &json!(true)));
    let holds = server.request("GET", "/api/v1/holds", &[], b"").json();
    assert_eq!(
        holds["holds"][0]["hold"]["reason"],
        json!("halted by ada: support calls")
    );
    let resume = server.request(
        "POST",
        &format!("/api/v1/rollouts/{RELEASE}/resume"),
        &json_write,
        b"",
    );
    assert_eq!(resume.status, 200);
    let missing = server.request(
        "POST",
        "/api/v1/rollouts/thermostat/9.9/resume",
        &json_write,
        b"",
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn a_failing_wave_halts_and_an_operator_resumes_on_sqlite() {
    let db = Sqlite::new();
    halt_and_resume(&db.url());
}

#[test]
fn a_failing_wave_halts_and_an_operator_resumes_on_postgres() {
    let pg = Postgres::start();
    halt_and_resume(&pg.fresh_database());
}
