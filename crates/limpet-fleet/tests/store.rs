//! The storage suite, the same cases against SQLite (a file in a temporary directory) and a
//! real PostgreSQL server started by the test (Debian's `postgresql`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use limpet_fleet::halt::RawThresholds;
use limpet_fleet::hold::{self, Decision};
use limpet_fleet::report::{Outcome, ReportError};
use limpet_fleet::rollout::{CreateRollout, Fleet, FleetError};
use limpet_fleet::store::{CheckIn, RolloutState, Store, StoreError};
use limpet_fleet::waves::{Waves, WavesField, WAVES_FIELD};
use limpet_tuf::UnixTime;

fn thresholds() -> RawThresholds {
    RawThresholds {
        max_failure_bp: 5000,
        min_reports: 2,
        report_deadline_secs: 600,
    }
}

fn create() -> CreateRollout {
    CreateRollout {
        release: RELEASE.into(),
        waves: waves_field(),
        thresholds: thresholds(),
    }
}

async fn fleet(url: &str) -> Fleet {
    Fleet::new(Store::open(url).await.unwrap(), hold_key())
}

async fn replays_and_forgeries_store_nothing(url: String) {
    let fleet = fleet(&url).await;
    let k = &devices_of_wave(0, 1)[0];
    let r5 = report(k, 5, Outcome::None);
    assert_eq!(
        fleet.check_in(&body(k, &r5), T0).await.unwrap(),
        CheckIn::Changed
    );
    // The same report again, and an older one: replays.
    for seq in [5, 4] {
        let err = fleet
            .check_in(&body(k, &report(k, seq, Outcome::None)), T0 + 1)
            .await
            .unwrap_err();
        assert_eq!(
            err.report_error(),
            Some(&ReportError::Replayed {
                device: device_hex(k),
                seq,
                stored: 5
            })
        );
    }
    // A forged report (signed by another key) of a new device stores no device.
    let other = &devices_of_wave(1, 1)[0];
    let forged = body(other, &report(k, 9, Outcome::None));
    assert!(matches!(
        fleet
            .check_in(&forged, T0)
            .await
            .unwrap_err()
            .report_error(),
        Some(ReportError::Forged { .. })
    ));
    let forged_new = body(k, &report(other, 1, Outcome::None));
    assert!(matches!(
        fleet
            .check_in(&forged_new, T0)
            .await
            .unwrap_err()
            .report_error(),
        Some(ReportError::Forged { .. })
    ));
    assert_eq!(fleet.store.device(&device_hex(other)).await.unwrap(), None);
    // Malformed: nothing.
    assert!(matches!(
        fleet
            .check_in(b"{\"report\":1}", T0)
            .await
            .unwrap_err()
            .report_error(),
        Some(ReportError::Malformed { .. })
    ));
    let d = fleet.store.device(&device_hex(k)).await.unwrap().unwrap();
    assert_eq!((d.last_seq, d.last_seen), (5, T0));
    assert_eq!(
        fleet.store.reports(&device_hex(k), 10).await.unwrap().len(),
        1
    );
    // Unchanged: the device row moves, no new report row; changed: a new row, as signed.
    assert_eq!(
        fleet
            .check_in(&body(k, &report(k, 6, Outcome::None)), T0 + 60)
            .await
            .unwrap(),
        CheckIn::Unchanged
    );
    let changed = report(k, 7, Outcome::Downloaded);
    assert_eq!(
        fleet.check_in(&body(k, &changed), T0 + 120).await.unwrap(),
        CheckIn::Changed
    );
    let reports = fleet.store.reports(&device_hex(k), 10).await.unwrap();
    assert_eq!(
        reports.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![7, 5]
    );
    // What is stored verifies as it was signed.
    let signed = format!(
        "{{\"report\":{},\"signature\":\"{}\"}}",
        reports[0].report, reports[0].signature
    );
    assert_eq!(
        limpet_fleet::report::verify(signed.as_bytes())
            .unwrap()
            .report,
        changed
    );
    let d = fleet.store.device(&device_hex(k)).await.unwrap().unwrap();
    assert_eq!(
        (
            d.last_seq,
            d.last_outcome.as_str(),
            d.last_release.as_deref()
        ),
        (7, "downloaded", Some(RELEASE))
    );
    assert_eq!(
        fleet.store.version_counts().await.unwrap(),
        vec![("1.2.0".to_owned(), 1)]
    );
    // The reports table keeps its own guard: with the device row gone (written to the
    // database directly), a report already stored is still refused as a replay, and the
    // device row is not made again.
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("DELETE FROM devices")
        .execute(&pool)
        .await
        .unwrap();
    let err = fleet
        .check_in(&body(k, &changed), T0 + 200)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.report_error(),
            Some(ReportError::Replayed { seq: 7, .. })
        ),
        "{err}"
    );
    assert_eq!(fleet.store.device(&device_hex(k)).await.unwrap(), None);
    pool.close().await;
    fleet.store.close().await;
}

async fn rollouts_are_validated_when_created(url: String) {
    let fleet = fleet(&url).await;
    let mut bad = create();
    bad.thresholds.min_reports = 0;
    assert!(matches!(
        fleet.create_rollout(&bad, T0).await,
        Err(FleetError::Thresholds { .. })
    ));
    let mut untrusted = create();
    untrusted.waves["hold_keys"] = serde_json::json!([hex::encode([1u8; 32])]);
    // [1; 32] may not even be a valid point; either way the rollout is refused.
    assert!(fleet.create_rollout(&untrusted, T0).await.is_err());
    let mut other = create();
    other.waves["hold_keys"] = serde_json::json!([device_hex(&devices_of_wave(0, 1)[0])]);
    assert!(matches!(
        fleet.create_rollout(&other, T0).await,
        Err(FleetError::HoldKeyNotTrusted { .. })
    ));
    let mut unlisted = create();
    unlisted.release = "thermostat/9.9.9".into();
    assert!(matches!(
        fleet.create_rollout(&unlisted, T0).await,
        Err(FleetError::NoWaves { .. })
    ));
    let mut shares = create();
    shares.waves["releases"][RELEASE]["waves"][0]["share_bp"] = 4000.into();
    assert!(matches!(
        fleet.create_rollout(&shares, T0).await,
        Err(FleetError::Waves(_))
    ));
    assert!(fleet.store.rollouts().await.unwrap().is_empty());
    fleet.create_rollout(&create(), T0).await.unwrap();
    assert!(matches!(
        fleet.create_rollout(&create(), T0).await,
        Err(FleetError::Store(StoreError::RolloutExists { .. }))
    ));
    fleet.store.close().await;
}

async fn a_failing_wave_halts_the_rollout_with_a_hold_devices_honour(url: String) {
    let fleet = fleet(&url).await;
    fleet.create_rollout(&create(), T0).await.unwrap();
    let wave0 = devices_of_wave(0, 3);
    // One rollback: below min_reports (2).
    fleet
        .check_in(
            &body(&wave0[0], &report(&wave0[0], 1, Outcome::RolledBack)),
            T0 + 10,
        )
        .await
        .unwrap();
    assert_eq!(
        fleet.store.rollout(RELEASE).await.unwrap().unwrap().state,
        RolloutState::Active
    );
    assert!(fleet.store.holds(T0 + 10).await.unwrap().is_empty());
    // A second failure (an install error): 2 of 2, at once halted.
    fleet
        .check_in(
            &body(&wave0[1], &report(&wave0[1], 1, Outcome::InstallError)),
            T0 + 20,
        )
        .await
        .unwrap();
    let rollout = fleet.store.rollout(RELEASE).await.unwrap().unwrap();
    assert_eq!(rollout.state, RolloutState::Halted);
    let reason = rollout.halt_reason.unwrap();
    assert!(
        reason.starts_with("wave 0: 2 of 2 devices failed (1 rolled back, 1 install errors"),
        "{reason}"
    );
    let view = fleet
        .view(
            fleet.store.rollout(RELEASE).await.unwrap().unwrap(),
            T0 + 20,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            view.waves[0].rollbacks,
            view.waves[0].install_errors,
            view.waves[1].counted()
        ),
        (1, 1, 0)
    );
    // The hold: signed, for the whole fleet, max_hold long; a device of wave 1 honours it.
    let (holds, tag) = fleet.holds(T0 + 20).await.unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(
        (holds[0].hold.issued, holds[0].hold.until),
        (T0 + 20, T0 + 20 + 86_400)
    );
    let mut extra = serde_json::Map::new();
    extra.insert(WAVES_FIELD.into(), waves_field());
    let field = WavesField::from_targets(&extra).unwrap().unwrap();
    let waves = Waves::from_raw(RELEASE, &raw_waves()).unwrap();
    let wave1 = &devices_of_wave(1, 1)[0];
    assert_eq!(
        hold::evaluate(
            &holds[0],
            &field,
            &waves,
            RELEASE,
            wave1.verifying_key().as_bytes(),
            UnixTime::from_secs(T0 + 30)
        ),
        Decision::HoldUntil(UnixTime::from_secs(T0 + 20 + 86_400))
    );
    // Halting again does nothing; resuming lifts the hold and counts afresh.
    assert!(!fleet.halt(RELEASE, "again", T0 + 40).await.unwrap());
    fleet.resume(RELEASE, T0 + 50).await.unwrap();
    let (holds, tag2) = fleet.holds(T0 + 50).await.unwrap();
    assert!(holds.is_empty());
    assert_ne!(tag, tag2);
    let rollout = fleet.store.rollout(RELEASE).await.unwrap().unwrap();
    assert_eq!(
        (rollout.state, rollout.counted_from, rollout.halt_reason),
        (RolloutState::Active, T0 + 50, None)
    );
    assert_eq!(fleet.evaluate(RELEASE, T0 + 60).await.unwrap(), None);
    fleet.store.close().await;
}

async fn silence_after_a_download_counts_as_failure(url: String) {
    let fleet = fleet(&url).await;
    fleet.create_rollout(&create(), T0).await.unwrap();
    let wave1 = devices_of_wave(1, 2);
    for k in &wave1 {
        fleet
            .check_in(&body(k, &report(k, 1, Outcome::Downloaded)), T0 + 100)
            .await
            .unwrap();
    }
    // The same download reported again (boot counter moved): still counted from the first.
    let mut again = report(&wave1[0], 2, Outcome::Downloaded);
    again.boot_count = 2;
    fleet
        .check_in(&body(&wave1[0], &again), T0 + 500)
        .await
        .unwrap();
    fleet.tick(T0 + 699).await.unwrap();
    assert_eq!(
        fleet.store.rollout(RELEASE).await.unwrap().unwrap().state,
        RolloutState::Active
    );
    fleet.tick(T0 + 700).await.unwrap();
    let rollout = fleet.store.rollout(RELEASE).await.unwrap().unwrap();
    assert_eq!(rollout.state, RolloutState::Halted);
    assert!(rollout
        .halt_reason
        .unwrap()
        .contains("2 no report within 600 s"));
    // The halt's hold is renewed by the tick once less than half of max_hold is left.
    fleet.tick(T0 + 700 + 40_000).await.unwrap();
    assert_eq!(fleet.store.holds(T0 + 700 + 40_000).await.unwrap().len(), 1);
    fleet.tick(T0 + 700 + 50_000).await.unwrap();
    let holds = fleet.store.holds(T0 + 700 + 50_000).await.unwrap();
    assert_eq!(holds.len(), 2);
    assert_eq!(holds[1].hold.until, T0 + 700 + 50_000 + 86_400);
    fleet.store.close().await;
}

async fn operators_sessions_and_migrations(url: String) {
    let store = Store::open(&url).await.unwrap();
    store.set_operator("ada", "hash1").await.unwrap();
    store.set_operator("ada", "hash2").await.unwrap();
    assert_eq!(
        store.operator_hash("ada").await.unwrap().as_deref(),
        Some("hash2")
    );
    assert_eq!(store.operator_hash("bob").await.unwrap(), None);
    store.create_session("t1", "ada", T0 + 100).await.unwrap();
    assert_eq!(
        store.session("t1", T0).await.unwrap().as_deref(),
        Some("ada")
    );
    assert_eq!(store.session("t1", T0 + 100).await.unwrap(), None);
    store.delete_session("t1").await.unwrap();
    assert_eq!(store.session("t1", T0).await.unwrap(), None);
    store.close().await;
    // Opening again runs no migration twice and keeps the data.
    let again = Store::open(&url).await.unwrap();
    assert_eq!(
        again.operator_hash("ada").await.unwrap().as_deref(),
        Some("hash2")
    );
    again.close().await;
}

macro_rules! suite {
    ($fresh:expr) => {{
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(replays_and_forgeries_store_nothing($fresh));
        rt.block_on(rollouts_are_validated_when_created($fresh));
        rt.block_on(a_failing_wave_halts_the_rollout_with_a_hold_devices_honour(
            $fresh,
        ));
        rt.block_on(silence_after_a_download_counts_as_failure($fresh));
        rt.block_on(operators_sessions_and_migrations($fresh));
    }};
}

#[test]
fn storage_suite_on_sqlite() {
    let dbs: Vec<Sqlite> = (0..5).map(|_| Sqlite::new()).collect();
    let mut urls = dbs.iter().map(Sqlite::url);
    suite!(urls.next().unwrap());
}

#[test]
fn storage_suite_on_postgres() {
    let pg = Postgres::start();
    suite!(pg.fresh_database());
}

#[test]
fn an_unknown_database_url_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(Store::open("mysql://u:secret@db/x"))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Url { url } if !url.contains("secret")),
        "{err}"
    );
}
