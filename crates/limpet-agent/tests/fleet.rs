#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The agent and the fleet server, in process, every part real: releases published with
//! their waves by limpet-repo and served over HTTP, two devices (PID 1's install server on
//! temporary partitions, each with its identity), the real fleet server (limpet-fleet on
//! SQLite, loopback) and, for the compromised server, a server that answers whatever its
//! attacker wants, signed with the real hold key, and the real server whose database the
//! attacker writes directly.
//!
//! What a boot would do (booting the staged trial, the health gate rolling it back) is done
//! here on the A/B record directly; tests/fleet.rs of the `limpet` crate boots it in QEMU.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use common::{agent_config, image_key, release, Device, TestRepo, DEVICE};
use ed25519_dalek::SigningKey;
use limpet_agent::fleet::gate::Gate;
use limpet_agent::{Agent, PollOutcome};
use limpet_fleet::halt::RawThresholds;
use limpet_fleet::rollout::{CreateRollout, Fleet};
use limpet_fleet::store::Store;
use limpet_fleet_api::hold::{sign_hold, Hold, Ignored, Scope};
use limpet_fleet_api::waves::{bucket, RawReleaseWaves, RawWave};
use limpet_repo::serve::serve;
use limpet_repo::waves::WavesSpec;
use limpet_tuf::{FixedClock, UnixTime};

/// The longest hold the signed metadata allows in these tests.
const MAX_HOLD: u64 = 3600;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

fn server_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// An identity seed whose key is in wave `wave` (of two halves) of `release`.
fn seed_in(wave: usize, release: &str) -> [u8; 32] {
    (0u8..=255)
        .map(|i| [i; 32])
        .find(|seed| {
            let key = SigningKey::from_bytes(seed).verifying_key().to_bytes();
            usize::from(bucket(&key, release) >= 5000) == wave
        })
        .unwrap()
}

/// Two waves, half the fleet each: the first started an hour ago, the second starting in
/// half an hour.
fn two_waves(t0: i64, emergency: bool) -> WavesSpec {
    WavesSpec {
        release: RawReleaseWaves {
            emergency,
            waves: vec![
                RawWave {
                    share_bp: 5000,
                    start: UnixTime::from_secs(t0 - 3600).to_string(),
                },
                RawWave {
                    share_bp: 5000,
                    start: UnixTime::from_secs(t0 + 1800).to_string(),
                },
            ],
        },
        hold_keys: Some(vec![hex::encode(server_key().verifying_key().as_bytes())]),
        max_hold_secs: Some(MAX_HOLD),
    }
}

fn publish(repo: &TestRepo, slot: &[u8], waves: &WavesSpec) -> limpet_repo::Published {
    let file = repo.dir.path().join("incoming.img");
    std::fs::write(&file, slot).unwrap();
    limpet_repo::publish_with_waves(
        &file,
        &repo.path(),
        &repo.keys(),
        &image_key().verifying_key(),
        Vec::new(),
        Some(waves),
    )
    .unwrap()
}

/// The device boots its staged trial and the health gate rolls it back (what PID 1 does
/// when a task of the new release crashes).
fn boot_and_roll_back(device: &Device) {
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&device.partitions.state)
        .unwrap();
    let mut store = limpet_state::StateStore::new(file).unwrap();
    let (booted, _) = store.load().unwrap().begin_boot();
    store.store(&booted).unwrap();
    let back = booted
        .roll_back(limpet_state::FailureReason::Unhealthy)
        .unwrap();
    store.store(&back).unwrap();
}

/// The real fleet server on a loopback port, SQLite in a temporary directory, with a
/// rollout of `release` that halts when half of a wave (at least one device) fails.
struct FleetServer {
    url: String,
    /// Its database, `sqlite://PATH`.
    db: String,
    rt: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl FleetServer {
    fn start(release: &str, waves: serde_json::Value) -> FleetServer {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("fleet.db").display());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let addr = rt.block_on(async {
            let fleet = Fleet::new(Store::open(&db).await.unwrap(), server_key());
            let create = CreateRollout {
                release: release.to_owned(),
                waves,
                thresholds: RawThresholds {
                    max_failure_bp: 5000,
                    min_reports: 1,
                    report_deadline_secs: 3600,
                },
            };
            fleet.create_rollout(&create, now()).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(limpet_fleet::server::serve(
                listener,
                fleet,
                limpet_fleet::server::system_clock(),
                Duration::from_secs(3600),
                limpet_fleet::auth::CookiePolicy::PlainHttp,
            ));
            addr
        });
        FleetServer {
            url: format!("http://{addr}"),
            db,
            rt: Some(rt),
            _dir: dir,
        }
    }
}

impl FleetServer {
    /// Runs `statements` on the server's database behind its back, as an attacker with
    /// the database file would.
    fn write_db(&self, statements: &[String]) {
        let rt = self.rt.as_ref().unwrap();
        rt.block_on(async {
            let pool = sqlx::sqlite::SqlitePool::connect(&self.db).await.unwrap();
            for s in statements {
                sqlx::query(s)
                    .execute(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{s}: {e}"));
            }
            pool.close().await;
        });
    }
}

impl Drop for FleetServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The x-limpet-waves field as the repository signed it.
fn signed_waves(repo: &TestRepo) -> serde_json::Value {
    let targets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.path().join("metadata/targets.json")).unwrap())
            .unwrap();
    targets["signed"]["x-limpet-waves"].clone()
}

/// Two devices on 1.0.0; 1.1.0 rolls out in two waves. The wave-0 device installs it, the
/// wave-1 device waits for its wave; the release fails its health gate on the wave-0
/// device, whose next check-in reports the rollback: the server halts the rollout by
/// itself, and the wave-1 device, its wave now open, is held and never fetches 1.1.0.
#[test]
fn a_rollout_goes_wave_by_wave_and_halts_itself() {
    let t0 = now();
    let release_name = format!("{DEVICE}/1.1.0");
    let v1 = release("1.0.0", b"");
    let repo = TestRepo::new();
    repo.publish(&v1);
    let waves = two_waves(t0, false);
    publish(&repo, &release("1.1.0", b"crashes at start"), &waves);
    let http = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let fleet = FleetServer::start(&release_name, signed_waves(&repo));

    let first = Device::with_identity(&v1, "1.0.0", seed_in(0, &release_name));
    let second = Device::with_identity(&v1, "1.0.0", seed_in(1, &release_name));
    let agent = |device: &Device, state: &std::path::Path| {
        let mut c = agent_config(&http.url(), &repo, device, state);
        c.fleet = Some(fleet.url.clone());
        Agent::new(c)
    };
    let (s1, s2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a1 = agent(&first, s1.path());
    let mut a2 = agent(&second, s2.path());

    // Wave 0 is open: the first device installs.
    let outcome = a1.poll_once().unwrap();
    assert!(
        matches!(&outcome, PollOutcome::Staged { version, .. } if version == "1.1.0"),
        "{outcome:?}"
    );
    // Wave 1 starts in half an hour: the second device waits, having fetched no target.
    let outcome = a2.poll_once().unwrap();
    assert_eq!(
        outcome,
        PollOutcome::Waiting {
            version: "1.1.0".into(),
            gate: Gate::Wave {
                wave: 1,
                start: UnixTime::from_secs(t0 + 1800)
            }
        }
    );
    assert!(second.state().trial().is_none());

    // The first device boots 1.1.0 and its health gate rolls it back; its next check-in
    // says so, and the server halts the rollout at once.
    boot_and_roll_back(&first);
    let outcome = a1.poll_once().unwrap();
    assert!(
        matches!(&outcome, PollOutcome::UpToDate { running, .. } if running == "1.0.0"),
        "{outcome:?}"
    );
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s1.path().join("fleet/holds.json")).unwrap())
            .unwrap();
    let hold = &kept["holds"][0]["hold"];
    assert_eq!(hold["release"], release_name.as_str());
    assert!(
        hold["reason"]
            .as_str()
            .unwrap()
            .starts_with("wave 0: 1 of 1 devices failed (1 rolled back"),
        "{hold}"
    );

    // Wave 1 opens (the second device's clock 45 minutes on, wave 1 having started at 30):
    // the server's hold keeps it from fetching 1.1.0, for at most max_hold. The hold was
    // issued at t0 or a second or two later and lasts max_hold (an hour): a clock of
    // exactly t0 + max_hold would find it expired whenever it was issued within t0's
    // second, which made this test fail about one run in two on an idle machine.
    let wave_1_open = t0 + 2700;
    let mut a2 = a2.with_clock(Arc::new(FixedClock(UnixTime::from_secs(wave_1_open))));
    let outcome = a2.poll_once().unwrap();
    let PollOutcome::Waiting {
        version,
        gate: Gate::Held { until, reason },
    } = &outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(version, "1.1.0");
    assert!(reason.contains("rolled back"), "{reason}");
    assert!(until.as_secs() > wave_1_open);
    assert!(until.as_secs() <= wave_1_open + i64::try_from(MAX_HOLD).unwrap());
    assert!(second.state().trial().is_none());
    assert!(second.events(0).is_empty(), "{:?}", second.events(0));
}

/// An attacker's fleet server: answers every check-in with `answer`.
fn hostile_server(answer: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"x\"\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    url
}

fn hold_json(release: &str, issued: i64, secs: i64, key: &SigningKey) -> serde_json::Value {
    let hold = Hold {
        release: release.into(),
        scope: Scope::All,
        issued,
        until: issued + secs,
        reason: "held by an attacker".into(),
    };
    serde_json::to_value(sign_hold(hold, key, u64::MAX).unwrap()).unwrap()
}

/// A repository with 1.0.0 and 1.1.0 (in [`two_waves`] from `t0`), and beside them an
/// unsigned, unlisted 9.9.9 that an attacker copied into its targets: the repository, the
/// 1.0.0 slot and the name of 1.1.0.
fn attacked_repo(t0: i64) -> (TestRepo, Vec<u8>, String) {
    let v1 = release("1.0.0", b"");
    let repo = TestRepo::new();
    repo.publish(&v1);
    let name = format!("{DEVICE}/1.1.0");
    publish(&repo, &release("1.1.0", b"next"), &two_waves(t0, false));
    let rogue = repo.path().join(format!("targets/{DEVICE}/9.9.9"));
    std::fs::create_dir_all(&rogue).unwrap();
    for file in ["slot.cidx", "slot.img"] {
        std::fs::copy(
            repo.path().join(format!("targets/{DEVICE}/1.1.0/{file}")),
            rogue.join(file),
        )
        .unwrap();
    }
    (repo, v1, name)
}

/// A compromised fleet server (its hold key and whatever it answers in the attacker's
/// hands) can only hold: it cannot make a device skip its wave, install a version the TUF
/// metadata does not list, or hold longer than max_hold or an emergency release at all.
#[test]
fn a_compromised_fleet_server_can_only_hold() {
    let t0 = now();
    let (repo, v1, name) = attacked_repo(t0);
    let http = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let device = Device::with_identity(&v1, "1.0.0", seed_in(1, &name));
    let state = tempfile::tempdir().unwrap();
    let poll = |answer: serde_json::Value, clock: i64| {
        let mut c = agent_config(&http.url(), &repo, &device, state.path());
        c.fleet = Some(hostile_server(answer.to_string()));
        Agent::new(c)
            .with_clock(Arc::new(FixedClock(UnixTime::from_secs(clock))))
            .poll_once()
            .unwrap()
    };
    let wave_1 = Gate::Wave {
        wave: 1,
        start: UnixTime::from_secs(t0 + 1800),
    };

    // 1. "Install 9.9.9 now, your wave has started": fields the answer does not have are
    //    not read, the unlisted 9.9.9 is not a candidate, and the device's wave is its own.
    let answer = serde_json::json!({
        "holds": [],
        "install": format!("{DEVICE}/9.9.9"),
        "x-limpet-waves": {"releases": {name.clone(): {"waves": [{"share_bp": 10000, "start": "2000-01-01T00:00:00Z"}]}}},
    });
    assert_eq!(
        poll(answer, now()),
        PollOutcome::Waiting {
            version: "1.1.0".into(),
            gate: wave_1.clone()
        }
    );

    // 2. A hold of a year, signed with the real hold key: honoured for max_hold only.
    let year =
        serde_json::json!({"holds": [hold_json(&name, t0 + 3600, 365 * 86_400, &server_key())]});
    assert_eq!(
        poll(year, t0 + 3600),
        PollOutcome::Waiting {
            version: "1.1.0".into(),
            gate: Gate::Held {
                until: UnixTime::from_secs(t0 + 3600 + i64::try_from(MAX_HOLD).unwrap()),
                reason: "held by an attacker".into()
            }
        }
    );

    // 3. A hold signed with a key the metadata does not list (the attacker's own), and one
    //    altered after signing: ignored, and the device, its wave open, installs 1.1.0
    //    (the highest version the TUF metadata lists; 9.9.9 is not among them).
    let mut altered = hold_json(&name, t0 + 3600, 600, &server_key());
    altered["hold"]["until"] = serde_json::json!(t0 + 3600 + 500);
    let forged = serde_json::json!({"holds": [
        hold_json(&name, t0 + 3600, 600, &SigningKey::from_bytes(&[7; 32])),
        altered,
    ]});
    let outcome = poll(forged, t0 + 3600);
    assert!(
        matches!(&outcome, PollOutcome::Staged { version, .. } if version == "1.1.0"),
        "{outcome:?}"
    );
    assert_eq!(
        device.state().trial().map(|t| t.version.to_string()),
        Some("1.1.0".into())
    );
}

/// An emergency release ignores every hold, even valid ones of the real hold key; its
/// waves still apply.
#[test]
fn an_emergency_release_ignores_holds_but_not_its_wave() {
    let t0 = now();
    let v1 = release("1.0.0", b"");
    let repo = TestRepo::new();
    repo.publish(&v1);
    let name = format!("{DEVICE}/1.1.0");
    publish(&repo, &release("1.1.0", b"fix"), &two_waves(t0, true));
    let http = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let device = Device::with_identity(&v1, "1.0.0", seed_in(1, &name));
    let state = tempfile::tempdir().unwrap();
    let hold = serde_json::json!({"holds": [hold_json(&name, t0, 600, &server_key())]});
    let mut c = agent_config(&http.url(), &repo, &device, state.path());
    c.fleet = Some(hostile_server(hold.to_string()));
    let mut agent = Agent::new(c).with_clock(Arc::new(FixedClock(UnixTime::from_secs(now()))));
    assert!(matches!(
        agent.poll_once().unwrap(),
        PollOutcome::Waiting {
            gate: Gate::Wave { wave: 1, .. },
            ..
        }
    ));
    let mut agent = agent.with_clock(Arc::new(FixedClock(UnixTime::from_secs(t0 + 1800))));
    let outcome = agent.poll_once().unwrap();
    assert!(
        matches!(&outcome, PollOutcome::Staged { version, .. } if version == "1.1.0"),
        "{outcome:?}"
    );
}

/// A hold row as an attacker writes it into the `holds` table: `signed` as the statement.
fn hold_row(release: &str, signed: &serde_json::Value) -> String {
    format!(
        "INSERT INTO holds (id, release_name, issued, until_time, statement, lifted) \
         VALUES ('{}', '{release}', {}, {}, '{}', NULL)",
        signed["signature"].as_str().unwrap(),
        signed["hold"]["issued"],
        signed["hold"]["until"],
        signed.to_string().replace('\'', "''")
    )
}

/// The real fleet server with its database written directly by an attacker (SQL behind the
/// running server's back): the rollout made active again with its waves changed so that
/// every device is in an open wave, a rollout of an unlisted 9.9.9 inserted, the device's
/// row and a forged report saying it runs 9.9.9, and forged hold rows. The device still
/// waits for its own wave, never sees 9.9.9, and ignores every hold not signed by a key of
/// the signed `hold_keys` (each for the reason asserted), then installs what TUF signs.
#[test]
fn a_fleet_database_written_by_an_attacker_can_only_hold() {
    let t0 = now();
    let (repo, v1, name) = attacked_repo(t0);
    let http = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let fleet = FleetServer::start(&name, signed_waves(&repo));
    let seed = seed_in(1, &name);
    let key = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let device = Device::with_identity(&v1, "1.0.0", seed);
    let state = tempfile::tempdir().unwrap();
    let poll = |clock: i64| {
        let mut c = agent_config(&http.url(), &repo, &device, state.path());
        c.fleet = Some(fleet.url.clone());
        Agent::new(c)
            .with_clock(Arc::new(FixedClock(UnixTime::from_secs(clock))))
            .poll_once()
            .unwrap()
    };
    let wave_1 = PollOutcome::Waiting {
        version: "1.1.0".into(),
        gate: Gate::Wave {
            wave: 1,
            start: UnixTime::from_secs(t0 + 1800),
        },
    };
    // The device checks in (its row exists) and waits for wave 1.
    assert_eq!(poll(now()), wave_1);

    // 1. The rollout active again, counting from the epoch, one wave of the whole fleet
    //    open since 2000; a rollout of the unlisted 9.9.9, open to all; the device's row and
    //    a forged report saying it installed 9.9.9.
    let everyone =
        r#"{"emergency":false,"waves":[{"share_bp":10000,"start":"2000-01-01T00:00:00Z"}]}"#;
    let device_hex = hex::encode(key);
    fleet.write_db(&[
        format!(
            "UPDATE rollouts SET state = 'active', halt_reason = NULL, counted_from = 0, \
             waves = '{everyone}' WHERE release_name = '{name}'"
        ),
        format!(
            "INSERT INTO rollouts (release_name, created, waves, max_hold_secs, max_failure_bp, \
             min_reports, report_deadline_secs, state, halt_reason, counted_from) \
             VALUES ('{DEVICE}/9.9.9', 0, '{everyone}', 3600, 10000, 1, 3600, 'active', NULL, 0)"
        ),
        format!(
            "UPDATE devices SET running = '9.9.9', last_outcome = 'installed', \
             last_release = '{DEVICE}/9.9.9' WHERE device = '{device_hex}'"
        ),
        format!(
            "INSERT INTO reports (device, seq, received, outcome, release_name, reason, report, \
             signature) VALUES ('{device_hex}', 1, {t0}, 'installed', '{DEVICE}/9.9.9', NULL, \
             '{{}}', '{}')",
            "00".repeat(64)
        ),
    ]);
    // The server's answer has no field for any of it: the device's wave is computed from
    // its key and the signed waves, and 9.9.9 is not listed.
    assert_eq!(poll(now()), wave_1);
    assert!(device.state().trial().is_none());
    assert!(device.events(0).is_empty(), "{:?}", device.events(0));

    // 2. Forged hold rows, served by the real server to the device as holds in force:
    //    one signed by the attacker's own key, one of the real hold key altered after
    //    signing (a longer hold), one naming the real hold key but signed by the attacker.
    let attacker = SigningKey::from_bytes(&[7; 32]);
    let own_key = hold_json(&name, t0 - 30, 86_400, &attacker);
    let mut altered = hold_json(&name, t0 - 20, 600, &server_key());
    altered["hold"]["until"] = serde_json::json!(t0 + 86_400);
    let mut misnamed = hold_json(&name, t0 - 10, 86_400, &attacker);
    misnamed["key"] = serde_json::json!(hex::encode(server_key().verifying_key().as_bytes()));
    fleet.write_db(&[
        hold_row(&name, &own_key),
        hold_row(&name, &altered),
        hold_row(&name, &misnamed),
    ]);
    // Wave 1 open by the device's clock: the forged holds are ignored and it installs
    // 1.1.0, the release TUF signs (not the unlisted 9.9.9).
    let outcome = poll(t0 + 3600);
    assert!(
        matches!(&outcome, PollOutcome::Staged { version, .. } if version == "1.1.0"),
        "{outcome:?}"
    );
    assert_eq!(
        device.state().trial().map(|t| t.version.to_string()),
        Some("1.1.0".into())
    );
    // The device received exactly those three holds, and each failed for its reason.
    let kept = limpet_agent::fleet::FleetFiles::new(state.path())
        .holds()
        .holds;
    assert_eq!(
        kept.iter()
            .map(|h| serde_json::to_value(h).unwrap())
            .collect::<Vec<_>>(),
        vec![own_key, altered, misnamed]
    );
    let targets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.path().join("metadata/targets.json")).unwrap())
            .unwrap();
    let signed = targets["signed"].as_object().unwrap();
    let field = limpet_fleet_api::waves::WavesField::from_targets(signed)
        .unwrap()
        .unwrap();
    let decided = limpet_agent::fleet::gate::gate(
        Some(&field),
        &name,
        Some(&key),
        &kept,
        UnixTime::from_secs(t0 + 3600),
    );
    assert_eq!(
        decided.ignored,
        vec![
            (0, Ignored::UnknownKey),
            (1, Ignored::BadSignature),
            (2, Ignored::BadSignature)
        ]
    );
    assert_eq!(decided.gate, Gate::Go { wave: Some(1) });
}
