#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! One test per attack, each asserting the exact error variant.

mod common;

use common::{fixture, fixture_with, t0_plus, T0};
use limpet_tuf::client::TIME_FLOOR_FILE;
use limpet_tuf::keys::RoleKey;
use limpet_tuf::metadata::Role;
use limpet_tuf::repo::{ConsistentSnapshots, MetaDetail, RepoError};
use limpet_tuf::{Error, FixedClock, InitOptions, Repository, UnixTime, MAX_LENGTH};
use serde_json::json;

fn download(
    fx: &common::Fixture,
    client: &limpet_tuf::Client,
    name: &str,
) -> Result<Vec<u8>, Error> {
    let mut sink = Vec::new();
    client.fetch_target(&fx.targets_transport(), name, &mut sink)?;
    Ok(sink)
}

#[test]
fn happy_path_with_and_without_consistent_snapshots() {
    for (consistent, detail) in [
        (ConsistentSnapshots::Enabled, MetaDetail::LengthAndHashes),
        (ConsistentSnapshots::Disabled, MetaDetail::VersionOnly),
    ] {
        let fx = fixture_with(consistent, detail);
        let mut client = fx.client(t0_plus(0));
        client.refresh().unwrap();
        let t = client.target("app.img").unwrap();
        assert_eq!(t.custom, Some(json!({"version": "1.0.0"})));
        assert_eq!(
            download(&fx, &client, "app.img").unwrap(),
            b"limpet image v1"
        );
        // A second publish is seen by the same client directory.
        fx.repo
            .add_target_bytes("app.img", b"limpet image v2", None)
            .unwrap();
        let mut client = fx.client(t0_plus(0));
        client.refresh().unwrap();
        assert_eq!(
            download(&fx, &client, "app.img").unwrap(),
            b"limpet image v2"
        );
        // Nothing new: a refresh succeeds from the stored metadata.
        let mut client = fx.client(t0_plus(0));
        client.refresh().unwrap();
        assert!(client.target("app.img").is_ok());
        assert!(matches!(
            client.target("nope"),
            Err(Error::NoSuchTarget { .. })
        ));
    }
}

#[test]
fn target_download_to_dir_is_atomic_and_cached() {
    let fx = fixture();
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    let out = fx.tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let path = client
        .download_target_to_dir(&fx.targets_transport(), "app.img", &out)
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"limpet image v1");
    // Tampered payload on the server: cached file is valid, so no new download happens.
    std::fs::write(fx.repo_dir().join("targets/app.img"), b"evil").unwrap();
    client
        .download_target_to_dir(&fx.targets_transport(), "app.img", &out)
        .unwrap();
    // A damaged cache is replaced only by verified bytes: here the download fails and the
    // directory holds no partial file.
    std::fs::write(&path, b"damaged").unwrap();
    assert!(matches!(
        client.download_target_to_dir(&fx.targets_transport(), "app.img", &out),
        Err(Error::LengthMismatch { .. })
    ));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[test]
fn metadata_signed_by_wrong_key_is_refused() {
    let fx = fixture();
    let wrong = RoleKey::generate();
    fx.resign_with("targets.json", &[&wrong], |_| {});
    let mut client = fx.client(T0);
    let err = client.refresh().unwrap_err();
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, valid: 0, threshold: 1 } if role == "targets"),
        "{err}"
    );
}

#[test]
fn timestamp_signed_by_targets_key_is_refused() {
    let fx = fixture();
    let targets_keys = fx.role_keys(Role::Targets);
    fx.resign_with("timestamp.json", &[&targets_keys[0]], |_| {});
    let err = fx.client(T0).refresh().unwrap_err();
    assert!(matches!(&err, Error::ThresholdNotMet { role, valid: 0, .. } if role == "timestamp"));
}

#[test]
fn altered_payload_is_refused() {
    let fx = fixture();
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    // Same length, other content.
    std::fs::write(fx.repo_dir().join("targets/app.img"), b"limpet image v9").unwrap();
    assert!(matches!(
        download(&fx, &client, "app.img"),
        Err(Error::HashMismatch { path }) if path == "app.img"
    ));
}

#[test]
fn payload_longer_than_declared_is_cut_off() {
    let fx = fixture();
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    std::fs::write(
        fx.repo_dir().join("targets/app.img"),
        vec![b'x'; 10 * 1024 * 1024],
    )
    .unwrap();
    assert!(matches!(
        download(&fx, &client, "app.img"),
        Err(Error::LengthExceeded { max: 15, .. })
    ));
}

#[test]
fn metadata_longer_than_declared_is_cut_off() {
    let fx = fixture_with(ConsistentSnapshots::Disabled, MetaDetail::LengthAndHashes);
    let snapshot = fx.read_json("snapshot.json");
    let declared = snapshot["signed"]["meta"]["targets.json"]["length"]
        .as_u64()
        .unwrap();
    let path = fx.meta_dir().join("targets.json");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[b' '; 4096]);
    std::fs::write(&path, bytes).unwrap();
    let err = fx.client(T0).refresh().unwrap_err();
    assert!(
        matches!(&err, Error::LengthExceeded { path, max } if path == "targets.json" && *max == declared),
        "{err}"
    );
}

#[test]
fn endless_timestamp_is_cut_off_at_the_default_cap() {
    let fx = fixture();
    std::fs::write(fx.meta_dir().join("timestamp.json"), vec![b' '; 100_000]).unwrap();
    assert!(matches!(
        fx.client(T0).refresh(),
        Err(Error::LengthExceeded { max: 16_384, .. })
    ));
}

#[test]
fn replayed_older_timestamp_is_a_rollback() {
    let fx = fixture();
    let old = std::fs::read(fx.meta_dir().join("timestamp.json")).unwrap();
    fx.repo.refresh().unwrap();
    fx.client(T0).refresh().unwrap();
    std::fs::write(fx.meta_dir().join("timestamp.json"), old).unwrap();
    assert!(matches!(
        fx.client(T0).refresh(),
        Err(Error::RollbackAttack { role, trusted: 3, got: 2 }) if role == "timestamp"
    ));
}

#[test]
fn timestamp_listing_older_snapshot_is_a_rollback() {
    let fx = fixture();
    fx.client(T0).refresh().unwrap();
    fx.resign("timestamp.json", Role::Timestamp, |s| {
        s["version"] = json!(s["version"].as_u64().unwrap() + 1);
        s["meta"]["snapshot.json"]["version"] = json!(1);
    });
    assert!(matches!(
        fx.client(T0).refresh(),
        Err(Error::RollbackAttack {
            trusted: 2,
            got: 1,
            ..
        })
    ));
}

#[test]
fn replayed_older_snapshot_is_mix_and_match() {
    let fx = fixture();
    let old_snapshot = std::fs::read(fx.meta_dir().join("snapshot.json")).unwrap();
    fx.repo.add_target_bytes("b.img", b"b", None).unwrap();
    std::fs::write(fx.meta_dir().join("snapshot.json"), old_snapshot).unwrap();
    assert!(matches!(
        fx.client(T0).refresh(),
        Err(Error::MixAndMatch { role, listed_in: "timestamp.json", expected: 3, got: 2 }) if role == "snapshot"
    ));
}

#[test]
fn snapshot_listing_older_targets_is_a_rollback() {
    let fx = fixture();
    fx.client(T0).refresh().unwrap();
    // A properly signed new snapshot that rolls targets back to version 1.
    fx.resign("snapshot.json", Role::Snapshot, |s| {
        s["version"] = json!(3);
        s["meta"]["targets.json"]["version"] = json!(1);
    });
    fx.resign("timestamp.json", Role::Timestamp, |s| {
        s["version"] = json!(3);
        s["meta"]["snapshot.json"]["version"] = json!(3);
    });
    let err = fx.client(T0).refresh().unwrap_err();
    assert!(
        matches!(&err, Error::RollbackAttack { role, trusted: 2, got: 1 } if role == "targets.json listed in snapshot.json"),
        "{err}"
    );
}

#[test]
fn snapshot_dropping_targets_is_a_rollback() {
    let fx = fixture();
    fx.client(T0).refresh().unwrap();
    fx.resign("snapshot.json", Role::Snapshot, |s| {
        s["version"] = json!(3);
        s["meta"] = json!({});
    });
    fx.resign("timestamp.json", Role::Timestamp, |s| {
        s["version"] = json!(3);
        s["meta"]["snapshot.json"]["version"] = json!(3);
    });
    assert!(matches!(
        fx.client(T0).refresh(),
        Err(Error::MetaRemoved { name }) if name == "targets.json"
    ));
}

#[test]
fn replayed_older_targets_is_mix_and_match() {
    let fx = fixture();
    let old_targets = std::fs::read(fx.meta_dir().join("targets.json")).unwrap();
    fx.repo.add_target_bytes("b.img", b"b", None).unwrap();
    std::fs::write(fx.meta_dir().join("targets.json"), old_targets).unwrap();
    assert!(matches!(
        fx.client(T0).refresh(),
        Err(Error::MixAndMatch { role, listed_in: "snapshot.json", expected: 3, got: 2 }) if role == "targets"
    ));
}

#[test]
fn mixed_versions_with_hashes_are_caught_by_the_hash() {
    let fx = fixture_with(ConsistentSnapshots::Disabled, MetaDetail::LengthAndHashes);
    let old_targets = std::fs::read(fx.meta_dir().join("targets.json")).unwrap();
    fx.repo.add_target_bytes("b.img", b"b", None).unwrap();
    std::fs::write(fx.meta_dir().join("targets.json"), old_targets).unwrap();
    let err = fx.client(T0).refresh().unwrap_err();
    assert!(
        matches!(&err, Error::HashMismatch { path } | Error::LengthMismatch { path, .. } if path == "targets.json"),
        "{err}"
    );
}

#[test]
fn expired_timestamp_is_a_freeze() {
    let fx = fixture();
    // The timestamp expires one day after T0.
    let err = fx.client(t0_plus(2)).refresh().unwrap_err();
    assert!(
        matches!(&err, Error::Expired { role, expires, now } if role == "timestamp" && *expires == t0_plus(1) && *now == t0_plus(2)),
        "{err}"
    );
}

#[test]
fn expired_root_is_a_freeze() {
    let fx = fixture();
    assert!(matches!(
        fx.client(t0_plus(400)).refresh(),
        Err(Error::Expired { role, .. }) if role == "root"
    ));
}

#[test]
fn root_rotation_chain_is_followed() {
    let fx = fixture();
    assert_eq!(fx.repo.rotate_root(3, 2).unwrap(), 2);
    assert_eq!(fx.repo.rotate_root(5, 3).unwrap(), 3);
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    assert_eq!(client.trusted_root().version, 3);
    let stored = std::fs::read(fx.client_dir().join("root.json")).unwrap();
    assert_eq!(
        stored,
        std::fs::read(fx.meta_dir().join("3.root.json")).unwrap()
    );
}

#[test]
fn root_rotation_with_broken_link_is_refused() {
    let fx = fixture();
    fx.repo.rotate_root(3, 2).unwrap();
    // 2.root.json signed only by the NEW root keys: the link from root 1 is broken.
    let new_keys = fx.role_keys(Role::Root);
    let refs: Vec<&RoleKey> = new_keys.iter().collect();
    fx.resign_with("2.root.json", &refs, |_| {});
    let err = fx.client(T0).refresh().unwrap_err();
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, valid: 0, threshold: 2 } if role.contains("keys of trusted root version 1")),
        "{err}"
    );
}

#[test]
fn root_signed_by_old_keys_only_is_refused() {
    let fx = fixture();
    let old_keys = fx.role_keys(Role::Root);
    fx.repo.rotate_root(3, 2).unwrap();
    let refs: Vec<&RoleKey> = old_keys.iter().collect();
    fx.resign_with("2.root.json", &refs, |_| {});
    let err = fx.client(T0).refresh().unwrap_err();
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, valid: 0, threshold: 2 } if role.contains("its own keys")),
        "{err}"
    );
}

#[test]
fn root_version_jump_is_refused() {
    let fx = fixture();
    let keys = fx.role_keys(Role::Root);
    let refs: Vec<&RoleKey> = keys.iter().collect();
    // A correctly signed root whose file is 2.root.json but which claims version 3.
    let bytes = {
        let mut doc = fx.read_json("root.json");
        let mut signed = doc["signed"].take();
        signed["version"] = json!(3);
        limpet_tuf::metadata::sign_value(signed, &refs).unwrap()
    };
    std::fs::write(fx.meta_dir().join("2.root.json"), bytes).unwrap();
    assert!(matches!(
        fx.client(T0).refresh(),
        Err(Error::RootVersionJump { trusted: 1, got: 3 })
    ));
}

#[test]
fn root_signed_twice_by_one_key_is_refused() {
    let fx = fixture();
    let keys = fx.role_keys(Role::Root);
    // Root 2 signed twice by the same root key (threshold 2).
    let bytes = {
        let mut doc = fx.read_json("root.json");
        let mut signed = doc["signed"].take();
        signed["version"] = json!(2);
        limpet_tuf::metadata::sign_value(signed, &[&keys[0], &keys[0]]).unwrap()
    };
    std::fs::write(fx.meta_dir().join("2.root.json"), bytes).unwrap();
    // Refused at parsing (spec 4.2: a key id MUST NOT appear twice in `signatures`); the
    // threshold function would not count it twice either (see the `verify` unit tests).
    assert!(matches!(
        fx.client(T0).refresh(),
        Err(Error::DuplicateSignature { path, .. }) if path == "2.root.json"
    ));
}

#[test]
fn threshold_not_met_by_one_key_listed_under_two_key_ids() {
    let fx = fixture();
    let root_keys = fx.role_keys(Role::Root);
    let targets_key = &fx.role_keys(Role::Targets)[0];
    let alias = "0000000000000000000000000000000000000000000000000000000000000000";
    // Root 2 (properly signed) lists the targets key twice, under its id and an alias, with
    // threshold 2: one key must still count once.
    let bytes = {
        let mut doc = fx.read_json("root.json");
        let mut signed = doc["signed"].take();
        signed["version"] = json!(2);
        signed["keys"][alias] = serde_json::to_value(targets_key.key()).unwrap();
        signed["roles"]["targets"] = json!({"keyids": [targets_key.id(), alias], "threshold": 2});
        limpet_tuf::metadata::sign_value(signed, &[&root_keys[0], &root_keys[1]]).unwrap()
    };
    std::fs::write(fx.meta_dir().join("2.root.json"), bytes).unwrap();
    // targets.json signed by that key under both ids.
    let mut doc = fx.read_json("targets.json");
    let signed = doc["signed"].take();
    let canonical = limpet_tuf::canonical::to_canonical(&signed).unwrap();
    let sig = targets_key.sign_hex(&canonical).unwrap();
    let forged = json!({"signatures": [
        {"keyid": targets_key.id(), "sig": sig},
        {"keyid": alias, "sig": sig},
    ], "signed": signed});
    std::fs::write(
        fx.meta_dir().join("targets.json"),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    let err = fx.client(T0).refresh().unwrap_err();
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, valid: 1, threshold: 2 } if role == "targets"),
        "{err}"
    );
}

#[test]
fn lengths_above_4_gib_are_refused_in_every_length_field() {
    for (file, role, pointer) in [
        ("timestamp.json", Role::Timestamp, "/meta/snapshot.json"),
        ("snapshot.json", Role::Snapshot, "/meta/targets.json"),
        ("targets.json", Role::Targets, "/targets/app.img"),
    ] {
        for value in [MAX_LENGTH + 1, u64::MAX] {
            let fx = fixture();
            fx.resign(file, role, |s| {
                s.pointer_mut(pointer).unwrap()["length"] = json!(value);
            });
            let err = fx.client(T0).refresh().unwrap_err();
            assert!(
                matches!(&err, Error::LengthTooLarge { field, value: v } if field.starts_with(file) && *v == value),
                "{file}: {err}"
            );
        }
    }
}

#[test]
fn length_of_exactly_4_gib_is_accepted_by_the_parser() {
    let fx = fixture();
    fx.resign("targets.json", Role::Targets, |s| {
        s["targets"]["app.img"]["length"] = json!(MAX_LENGTH);
    });
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    assert_eq!(client.target("app.img").unwrap().length, MAX_LENGTH);
}

#[test]
fn trusted_time_floor_survives_a_clock_reset() {
    let fx = fixture();
    // A publish at T0+30d; the device sees it with a correct clock: floor = T0+30d.
    let later = t0_plus(30);
    let repo = fx.repo_at(later, MetaDetail::VersionOnly);
    repo.add_target_bytes("app.img", b"limpet image v2", None)
        .unwrap();
    let mut client = fx.client(later);
    client.refresh().unwrap();
    assert_eq!(client.time_floor(), Some(later));
    // The clock resets to 1970. Time is never below the floor.
    let client = fx.client(UnixTime::EPOCH);
    assert_eq!(client.effective_time(), later);
    // A new timestamp (higher version) signed earlier, expiring before the floor, e.g. a
    // stale one withheld by an attacker: accepted with a 1970 clock, refused with the floor.
    let stale = fx.repo_at(T0, MetaDetail::VersionOnly);
    stale.refresh_timestamp().unwrap();
    let mut client = fx.client(UnixTime::EPOCH);
    let err = client.refresh().unwrap_err();
    assert!(
        matches!(&err, Error::Expired { role, now, .. } if role == "timestamp" && *now == later),
        "{err}"
    );
    // The floor did not go backwards.
    let floor = std::fs::read_to_string(fx.client_dir().join(TIME_FLOOR_FILE)).unwrap();
    assert_eq!(floor.trim(), later.to_string());
    // Without the floor file the same device would have accepted it (1970 < expiry).
    std::fs::remove_file(fx.client_dir().join(TIME_FLOOR_FILE)).unwrap();
    fx.client(UnixTime::EPOCH).refresh().unwrap();
}

/// `issued-below-floor`: a timestamp key holder (or a stale copy with a higher version)
/// back-dates a new timestamp below the floor the device reached; it is refused by name and
/// leaves the floor and the trusted timestamp as they were.
#[test]
fn timestamp_issued_below_the_floor_is_refused() {
    let fx = fixture();
    let later = t0_plus(30);
    fx.repo_at(later, MetaDetail::VersionOnly)
        .refresh()
        .unwrap();
    let mut client = fx.client(later);
    client.refresh().unwrap();
    assert_eq!(client.signed_time(), Some(later));
    let trusted = std::fs::read(fx.client_dir().join("timestamp.json")).unwrap();
    // Version up, expiry far ahead (no freeze), issue time 29 days before the floor.
    fx.resign("timestamp.json", Role::Timestamp, |signed| {
        signed["version"] = json!(signed["version"].as_u64().unwrap() + 1);
        signed["expires"] = json!(t0_plus(300).to_string());
        signed["x-limpet-issued"] = json!(t0_plus(1).to_string());
    });
    let mut client = fx.client(later);
    let err = client.refresh().unwrap_err();
    assert!(
        matches!(&err, Error::IssuedBelowFloor { issued, floor } if *issued == t0_plus(1) && *floor == later),
        "{err}"
    );
    assert_eq!(client.time_floor(), Some(later));
    assert_eq!(
        std::fs::read(fx.client_dir().join("timestamp.json")).unwrap(),
        trusted
    );
}

/// The device's own floor (e.g. the build time of the slot it runs) counts too: a
/// repository whose timestamp was issued before that is refused, though this client never
/// saw a newer timestamp.
#[test]
fn the_devices_floor_refuses_older_issue_times() {
    let fx = fixture();
    let built = t0_plus(10);
    // The repository serves a timestamp issued at T0, re-signed to expire late, so that
    // only its issue time is wrong.
    fx.resign("timestamp.json", Role::Timestamp, |signed| {
        signed["expires"] = json!(t0_plus(300).to_string());
    });
    let mut client = fx.client(T0).with_time_floor(built);
    assert_eq!(client.effective_time(), built);
    let err = client.refresh().unwrap_err();
    assert!(
        matches!(&err, Error::IssuedBelowFloor { issued, floor } if *issued == T0 && *floor == built),
        "{err}"
    );
    // A lower device floor changes nothing: the same refresh passes without it.
    let mut client = fx.client(T0).with_time_floor(UnixTime::EPOCH);
    client.refresh().unwrap();
    assert_eq!(client.signed_time(), Some(T0));
}

/// The verified signed time is the timestamp's issue time, capped at the root's expiry as the
/// floor is; a timestamp without the field gives none and is not checked against the floor.
#[test]
fn signed_time_is_capped_and_optional() {
    let fx = fixture();
    let root_expires = fx.repo.root().unwrap().expires;
    let beyond = root_expires.saturating_add(std::time::Duration::from_secs(86_400));
    fx.resign("timestamp.json", Role::Timestamp, |signed| {
        signed["x-limpet-issued"] = json!(beyond.to_string());
    });
    let mut client = fx.client(T0);
    assert_eq!(client.signed_time(), None);
    client.refresh().unwrap();
    assert_eq!(client.signed_time(), Some(root_expires));
    assert_eq!(client.time_floor(), Some(root_expires));

    let fx = fixture();
    fx.resign("timestamp.json", Role::Timestamp, |signed| {
        signed.as_object_mut().unwrap().remove("x-limpet-issued");
    });
    let mut client = fx.client(T0).with_time_floor(t0_plus(-1));
    client.refresh().unwrap();
    assert_eq!(client.signed_time(), None);
    assert_eq!(client.time_floor(), Some(t0_plus(-1)));
}

#[test]
fn corrupt_time_floor_is_an_error() {
    let fx = fixture();
    fx.client(T0).refresh().unwrap();
    std::fs::write(fx.client_dir().join(TIME_FLOOR_FILE), "yesterday").unwrap();
    let err = limpet_tuf::Client::open(
        &fx.client_dir(),
        Box::new(fx.targets_transport()),
        Box::new(FixedClock(T0)),
    )
    .unwrap_err();
    assert!(matches!(err, Error::TimeFloorCorrupt { .. }));
}

#[test]
fn metadata_is_stored_as_the_exact_bytes_received() {
    let fx = fixture();
    // Re-serialise timestamp.json with odd, non-canonical whitespace: signatures still hold.
    let path = fx.meta_dir().join("timestamp.json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let odd = format!(
        "  {{ \"signed\" :\n\t{} ,\r\n \"signatures\":{}   }}\n\n",
        serde_json::to_string_pretty(&doc["signed"]).unwrap(),
        serde_json::to_string(&doc["signatures"]).unwrap()
    );
    std::fs::write(&path, &odd).unwrap();
    fx.client(T0).refresh().unwrap();
    for name in [
        "root.json",
        "timestamp.json",
        "snapshot.json",
        "targets.json",
    ] {
        let served = if name == "root.json" {
            std::fs::read(fx.meta_dir().join("1.root.json")).unwrap()
        } else {
            std::fs::read(fx.meta_dir().join(name)).unwrap()
        };
        assert_eq!(
            std::fs::read(fx.client_dir().join(name)).unwrap(),
            served,
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read(fx.client_dir().join("timestamp.json")).unwrap(),
        odd.as_bytes()
    );
}

#[test]
fn root_keys_stay_offline_for_routine_publishing() {
    let fx = fixture();
    let offline = fx.tmp.path().join("offline");
    std::fs::create_dir(&offline).unwrap();
    for entry in std::fs::read_dir(fx.keys_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("root-")
        {
            std::fs::rename(&path, offline.join(path.file_name().unwrap())).unwrap();
        }
    }
    fx.repo.add_target_bytes("b.img", b"b", None).unwrap();
    fx.repo.refresh().unwrap();
    fx.repo.remove_target("b.img").unwrap();
    assert!(matches!(
        fx.repo.rotate(Role::Timestamp),
        Err(RepoError::MissingKeys {
            role: Role::Root,
            have: 0,
            threshold: 2
        })
    ));
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    assert!(matches!(
        client.target("b.img"),
        Err(Error::NoSuchTarget { .. })
    ));
}

#[test]
fn role_key_rotation_and_fast_forward_recovery() {
    let fx = fixture();
    fx.client(T0).refresh().unwrap();
    for role in [Role::Timestamp, Role::Snapshot, Role::Targets] {
        fx.repo.rotate(role).unwrap();
        let mut client = fx.client(T0);
        client.refresh().unwrap();
        assert!(client.target("app.img").is_ok());
    }
    // A fast-forwarded timestamp signed with a since-rotated key: after rotating the
    // timestamp key again, the client forgets the old timestamp and accepts version 1.
    let fx = fixture();
    fx.resign("timestamp.json", Role::Timestamp, |s| {
        s["version"] = json!(1_000_000)
    });
    fx.client(T0).refresh().unwrap();
    fx.repo.rotate(Role::Timestamp).unwrap();
    fx.resign("timestamp.json", Role::Timestamp, |s| {
        s["version"] = json!(1)
    });
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    assert_eq!(client.trusted_timestamp().unwrap().version, 1);
}

#[test]
fn init_never_overwrites_keys_or_a_repository() {
    let fx = fixture();
    let err = Repository::init(
        &fx.repo_dir(),
        &fx.keys_dir(),
        InitOptions::default(),
        Box::new(FixedClock(T0)),
    )
    .unwrap_err();
    assert!(matches!(err, RepoError::Exists { .. }));
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(fx.keys_dir()).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn bad_target_names_are_refused() {
    let fx = fixture();
    for name in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
        assert!(matches!(
            fx.repo.add_target_bytes(name, b"x", None),
            Err(RepoError::BadTargetName { .. })
        ));
    }
    fx.repo
        .add_target_bytes("dir/sub/c.img", b"c", None)
        .unwrap();
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    assert_eq!(download(&fx, &client, "dir/sub/c.img").unwrap(), b"c");
}
