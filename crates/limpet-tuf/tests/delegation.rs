#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Delegated targets and hashes: one test per attack, each asserting the exact error (or
//! the exact `NoSuchTarget` a search that must not trust a role ends with), beside the
//! case that succeeds so the test can fail.

mod common;

use common::{fixture, fixture_with, Fixture, T0};
use limpet_tuf::delegation::SuccinctRoles;
use limpet_tuf::keys::{KeyId, RoleKey, Scheme};
use limpet_tuf::metadata::{sign_value, Role};
use limpet_tuf::repo::{
    ConsistentSnapshots, DelegatedPaths, DelegationError, DelegationSpec, MetaDetail, RepoError,
    Termination,
};
use limpet_tuf::{Client, Error};
use serde_json::{json, Value};

/// Delegates `paths` from `from` to a new role `name` (one key, threshold 1).
fn delegate(
    fx: &Fixture,
    from: &str,
    name: &str,
    paths: &[&str],
    termination: Termination,
) -> Vec<KeyId> {
    fx.repo
        .add_delegation(&DelegationSpec {
            name: name.into(),
            delegator: from.into(),
            paths: DelegatedPaths::Patterns(paths.iter().map(|p| (*p).to_owned()).collect()),
            keys: 1,
            scheme: Scheme::Ed25519,
            threshold: 1,
            termination,
        })
        .unwrap()
}

/// Publishes `bytes` as target `target` of delegated role `role` through the writer.
fn add(fx: &Fixture, role: &str, target: &str, bytes: &[u8]) {
    let file = fx.tmp.path().join("payload");
    std::fs::write(&file, bytes).unwrap();
    fx.repo
        .add_delegated_target(role, target, &file, None)
        .unwrap();
}

/// A client with a fresh metadata directory, refreshed.
fn fresh_client(fx: &Fixture) -> Client {
    let _ = std::fs::remove_dir_all(fx.client_dir());
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    client
}

fn download(fx: &Fixture, client: &Client, name: &str) -> Result<Vec<u8>, Error> {
    let mut sink = Vec::new();
    client.fetch_target(&fx.targets_transport(), name, &mut sink)?;
    Ok(sink)
}

/// One entry of a `keys` object: `{id: key}`.
fn keys_object(id: &KeyId, key: Value) -> Value {
    let mut map = serde_json::Map::new();
    map.insert(id.0.clone(), key);
    Value::Object(map)
}

/// Adds `target` (with its real length and sha256) to the targets of metadata file `file`,
/// re-signed with `keys`, without the writer's checks: what an attacker holding those keys
/// can sign.
fn forge_target(fx: &Fixture, file: &str, keys: &[&RoleKey], target: &str, bytes: &[u8]) {
    use sha2::{Digest, Sha256};
    let dest = fx.repo_dir().join("targets").join(target);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, bytes).unwrap();
    let entry =
        json!({"length": bytes.len(), "hashes": {"sha256": hex::encode(Sha256::digest(bytes))}});
    fx.resign_with(file, keys, |s| {
        s["targets"][target] = entry;
    });
}

#[test]
fn delegated_target_is_found_and_downloaded() {
    for (consistent, detail) in [
        (ConsistentSnapshots::Enabled, MetaDetail::LengthAndHashes),
        (ConsistentSnapshots::Disabled, MetaDetail::VersionOnly),
    ] {
        let fx = fixture_with(consistent, detail);
        delegate(&fx, "targets", "team", &["team/*"], Termination::Continue);
        delegate(&fx, "team", "nested", &["team/n*"], Termination::Continue);
        add(&fx, "team", "team/app.img", b"team image");
        add(&fx, "nested", "team/nested.img", b"nested image");
        let client = fresh_client(&fx);
        assert_eq!(
            download(&fx, &client, "team/app.img").unwrap(),
            b"team image"
        );
        assert_eq!(
            download(&fx, &client, "team/nested.img").unwrap(),
            b"nested image"
        );
        // The top-level target is still there, and the delegated roles were persisted under
        // their names.
        assert_eq!(
            download(&fx, &client, "app.img").unwrap(),
            b"limpet image v1"
        );
        assert!(fx.client_dir().join("team.json").exists());
        assert!(fx.client_dir().join("nested.json").exists());
        // A second client session reuses the stored delegated metadata.
        let mut again = fx.client(T0);
        again.refresh().unwrap();
        assert_eq!(again.target("team/nested.img").unwrap().length, 12);
    }
}

#[test]
fn writer_refuses_a_target_outside_the_roles_paths() {
    let fx = fixture();
    delegate(&fx, "targets", "team", &["team/*"], Termination::Continue);
    let file = fx.tmp.path().join("payload");
    std::fs::write(&file, b"x").unwrap();
    let err = fx
        .repo
        .add_delegated_target("team", "other/x.img", &file, None)
        .unwrap_err();
    assert!(
        matches!(&err, RepoError::Delegation(DelegationError::NotDelegated { role, target })
            if role == "team" && target == "other/x.img"),
        "{err}"
    );
    // Nor into a role whose own paths cover it when a delegation above it does not.
    delegate(&fx, "team", "wide", &["*/*"], Termination::Continue);
    let err = fx
        .repo
        .add_delegated_target("wide", "other/x.img", &file, None)
        .unwrap_err();
    assert!(
        matches!(&err, RepoError::Delegation(DelegationError::NotDelegated { role, .. })
            if role == "team"),
        "{err}"
    );
    // Nor does it make roles with names that are not file names or are top-level roles.
    for bad in ["../x", "a/b", "snapshot", "1.targets", ""] {
        let err = fx
            .repo
            .add_delegation(&DelegationSpec {
                name: bad.into(),
                delegator: "targets".into(),
                paths: DelegatedPaths::Patterns(vec!["*".into()]),
                keys: 1,
                scheme: Scheme::Ed25519,
                threshold: 1,
                termination: Termination::Continue,
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                RepoError::Delegation(DelegationError::BadRoleName { .. })
            ),
            "{bad}: {err}"
        );
    }
}

#[test]
fn delegated_role_signing_outside_its_paths_is_not_trusted() {
    let fx = fixture();
    let ids = delegate(&fx, "targets", "team", &["team/*"], Termination::Continue);
    let ring = fx.ring();
    let team = ring.get(&ids[0]).unwrap();
    // The team's key signs a target outside "team/*", and one inside.
    forge_target(&fx, "team.json", &[team], "other/evil.img", b"evil");
    forge_target(&fx, "team.json", &[team], "team/ok.img", b"fine");
    let client = fresh_client(&fx);
    assert_eq!(download(&fx, &client, "team/ok.img").unwrap(), b"fine");
    assert!(matches!(
        client.target("other/evil.img"),
        Err(Error::NoSuchTarget { name }) if name == "other/evil.img"
    ));
    // Nor can it shadow a top-level target: targets is searched first, so the metadata
    // found is the top-level one (15 bytes), not the team's (4).
    forge_target(&fx, "team.json", &[team], "app.img", b"evil");
    let client = fresh_client(&fx);
    assert_eq!(client.target("app.img").unwrap().length, 15);
}

#[test]
fn terminating_delegation_is_not_bypassed() {
    for (termination, found) in [
        (Termination::Terminating, false),
        (Termination::Continue, true),
    ] {
        let fx = fixture();
        delegate(&fx, "targets", "first", &["a/*"], termination);
        delegate(&fx, "targets", "second", &["a/*"], Termination::Continue);
        add(&fx, "second", "a/x.img", b"from second");
        let client = fresh_client(&fx);
        if found {
            assert_eq!(download(&fx, &client, "a/x.img").unwrap(), b"from second");
        } else {
            assert!(matches!(
                client.target("a/x.img"),
                Err(Error::NoSuchTarget { .. })
            ));
        }
    }
}

#[test]
fn terminating_delegation_drops_roles_already_queued() {
    // targets -> outer (a/*) -> [inner (a/*, terminating)]; targets -> later (a/*). The
    // terminating delegation met inside outer ends the search: `later` is never consulted.
    let fx = fixture();
    delegate(&fx, "targets", "outer", &["a/*"], Termination::Continue);
    delegate(&fx, "outer", "inner", &["a/*"], Termination::Terminating);
    delegate(&fx, "targets", "later", &["a/*"], Termination::Continue);
    add(&fx, "later", "a/x.img", b"from later");
    let client = fresh_client(&fx);
    assert!(matches!(
        client.target("a/x.img"),
        Err(Error::NoSuchTarget { .. })
    ));
}

#[test]
fn delegation_cycle_ends() {
    let fx = fixture();
    let a = delegate(&fx, "targets", "a", &["*"], Termination::Continue);
    let b = delegate(&fx, "a", "b", &["*"], Termination::Continue);
    // b delegates back to a (with a's key): a cycle the writer would not make.
    let ring = fx.ring();
    let b_key = ring.get(&b[0]).unwrap();
    let a_key_obj = fx.read_json("targets.json")["signed"]["delegations"]["keys"][&a[0].0].clone();
    fx.resign_with("b.json", &[b_key], |s| {
        s["delegations"] = json!({
            "keys": keys_object(&a[0], a_key_obj),
            "roles": [{"name": "a", "keyids": [a[0].0.clone()], "threshold": 1,
                        "terminating": false, "paths": ["*"]}],
        });
    });
    let client = fresh_client(&fx);
    assert!(matches!(
        client.target("missing.img"),
        Err(Error::NoSuchTarget { .. })
    ));
    // The writer's own walk ends too.
    add(&fx, "b", "in-b.img", b"b");
    let client = fresh_client(&fx);
    assert_eq!(download(&fx, &client, "in-b.img").unwrap(), b"b");
}

#[test]
fn search_visits_at_most_32_roles() {
    // A chain targets -> r1 -> r2 -> ... -> r32: targets and r1..r31 are 32 roles.
    let fx = fixture();
    let mut from = "targets".to_owned();
    for i in 1..=32 {
        let name = format!("r{i}");
        delegate(&fx, &from, &name, &["*"], Termination::Continue);
        from = name;
    }
    add(&fx, "r31", "deep31.img", b"31");
    add(&fx, "r32", "deep32.img", b"32");
    let client = fresh_client(&fx);
    assert_eq!(download(&fx, &client, "deep31.img").unwrap(), b"31");
    assert!(matches!(
        client.target("deep32.img"),
        Err(Error::NoSuchTarget { .. })
    ));
}

#[test]
fn threshold_met_only_by_keys_of_another_role_is_refused() {
    let fx = fixture();
    delegate(&fx, "targets", "a", &["a/*"], Termination::Continue);
    let b = delegate(&fx, "targets", "b", &["b/*"], Termination::Continue);
    add(&fx, "a", "a/x.img", b"a");
    // Role a's metadata re-signed by b's key, which targets also lists (for b).
    let ring = fx.ring();
    let b_key = ring.get(&b[0]).unwrap();
    fx.resign_with("a.json", &[b_key], |_| {});
    let _ = std::fs::remove_dir_all(fx.client_dir());
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    let err = client.target("a/x.img").unwrap_err();
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, valid: 0, threshold: 1 }
            if role == "a (delegated by targets)"),
        "{err}"
    );
    // Nor do top-level keys count for a delegated role.
    let targets_keys = fx.role_keys(Role::Targets);
    fx.resign_with("a.json", &[&targets_keys[0]], |_| {});
    let _ = std::fs::remove_dir_all(fx.client_dir());
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    assert!(matches!(
        client.target("a/x.img"),
        Err(Error::ThresholdNotMet { valid: 0, .. })
    ));
}

#[test]
fn delegated_metadata_must_be_the_version_snapshot_lists() {
    let fx = fixture();
    let ids = delegate(&fx, "targets", "team", &["team/*"], Termination::Continue);
    add(&fx, "team", "team/x.img", b"x");
    let ring = fx.ring();
    let team = ring.get(&ids[0]).unwrap();
    // An older (or other) version served under the name snapshot lists as version 2.
    fx.resign_with("team.json", &[team], |s| s["version"] = json!(1));
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    assert!(matches!(
        client.target("team/x.img"),
        Err(Error::MixAndMatch { role, expected: 2, got: 1, .. }) if role == "team"
    ));
    // A role snapshot does not list at all.
    fx.resign("snapshot.json", Role::Snapshot, |s| {
        s["meta"].as_object_mut().unwrap().remove("team.json");
    });
    let _ = std::fs::remove_dir_all(fx.client_dir());
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    assert!(matches!(
        client.target("team/x.img"),
        Err(Error::MissingMeta { name, .. }) if name == "team.json"
    ));
}

/// Replaces targets' delegations by 2^8 hash bins `bin-XX` with one new key, and writes
/// every bin role (version 1, no targets), listed in snapshot. Returns the key.
fn hash_bins(fx: &Fixture) -> (RoleKey, SuccinctRoles) {
    let key = RoleKey::generate();
    let bins = SuccinctRoles {
        keyids: vec![key.id().clone()],
        threshold: 1,
        bit_length: 8,
        name_prefix: "bin".into(),
        extra: serde_json::Map::new(),
    };
    let targets_keys = fx.role_keys(Role::Targets);
    fx.resign_with("targets.json", &[&targets_keys[0]], |s| {
        s["delegations"] = json!({
            "keys": keys_object(key.id(), serde_json::to_value(key.key()).unwrap()),
            "succinct_roles": bins,
        });
    });
    let mut names = Vec::new();
    for name in bins.role_names() {
        let signed = json!({"_type": "targets", "spec_version": "1.0.31", "version": 1,
            "expires": "2031-01-01T00:00:00Z", "targets": {}});
        let bytes = sign_value(signed, &[&key]).unwrap();
        std::fs::write(fx.meta_dir().join(format!("{name}.json")), bytes).unwrap();
        names.push(name);
    }
    fx.resign("snapshot.json", Role::Snapshot, |s| {
        for name in &names {
            s["meta"][format!("{name}.json")] = json!({"version": 1});
        }
    });
    (key, bins)
}

#[test]
fn hash_bin_serves_only_targets_of_its_own_prefix() {
    let fx = fixture();
    let (key, bins) = hash_bins(&fx);
    let target = "bins/a.img";
    let own = bins.role_for_target(target);
    let other = bins.bin_name((bins.bin_for_target(target) + 1) % 256);
    // The right bin lists it: found.
    forge_target(&fx, &format!("{own}.json"), &[&key], target, b"binned");
    let client = fresh_client(&fx);
    assert_eq!(download(&fx, &client, target).unwrap(), b"binned");
    // Only another bin (same keys) lists it: never consulted.
    fx.resign_with(&format!("{own}.json"), &[&key], |s| {
        s["targets"] = json!({})
    });
    forge_target(&fx, &format!("{other}.json"), &[&key], target, b"binned");
    let client = fresh_client(&fx);
    assert!(matches!(
        client.target(target),
        Err(Error::NoSuchTarget { .. })
    ));
}

/// Sets the hashes of `app.img` in targets.json.
fn set_app_hashes(fx: &Fixture, edit: impl FnOnce(&mut Value)) {
    fx.resign("targets.json", Role::Targets, |s| {
        edit(&mut s["targets"]["app.img"]["hashes"]);
    });
}

#[test]
fn every_known_hash_is_checked() {
    use sha2::{Digest, Sha256, Sha384, Sha512};
    let payload = b"limpet image v1";
    // Correct sha512 (and sha384) beside sha256: accepted.
    let fx = fixture();
    set_app_hashes(&fx, |h| {
        h["sha512"] = json!(hex::encode(Sha512::digest(payload)));
        h["sha384"] = json!(hex::encode(Sha384::digest(payload)));
    });
    assert_eq!(
        download(&fx, &fresh_client(&fx), "app.img").unwrap(),
        payload
    );
    // sha512 alone: accepted.
    set_app_hashes(&fx, |h| {
        *h = json!({"sha512": hex::encode(Sha512::digest(payload))});
    });
    assert_eq!(
        download(&fx, &fresh_client(&fx), "app.img").unwrap(),
        payload
    );
    // A wrong sha512 beside the right sha256: refused.
    set_app_hashes(&fx, |h| {
        *h = json!({"sha256": hex::encode(Sha256::digest(payload)),
                    "sha512": hex::encode(Sha512::digest(b"other"))});
    });
    assert!(matches!(
        download(&fx, &fresh_client(&fx), "app.img"),
        Err(Error::HashMismatch { path }) if path == "app.img"
    ));
    // An unknown algorithm beside a right sha256 is not checked; alone it is refused.
    set_app_hashes(&fx, |h| {
        *h = json!({"sha256": hex::encode(Sha256::digest(payload)), "md5": "00"});
    });
    assert_eq!(
        download(&fx, &fresh_client(&fx), "app.img").unwrap(),
        payload
    );
    set_app_hashes(&fx, |h| *h = json!({"blake3": "00"}));
    assert!(matches!(
        download(&fx, &fresh_client(&fx), "app.img"),
        Err(Error::UnsupportedHash { algorithm, .. }) if algorithm == "blake3"
    ));
}

#[test]
fn wrong_sha512_of_delegated_metadata_is_refused() {
    use sha2::{Digest, Sha512};
    let fx = fixture_with(ConsistentSnapshots::Disabled, MetaDetail::LengthAndHashes);
    delegate(&fx, "targets", "team", &["team/*"], Termination::Continue);
    add(&fx, "team", "team/x.img", b"x");
    let bytes = std::fs::read(fx.meta_dir().join("team.json")).unwrap();
    fx.resign("snapshot.json", Role::Snapshot, |s| {
        s["meta"]["team.json"]["hashes"]["sha512"] = json!(hex::encode(Sha512::digest(b"no")));
    });
    // Timestamp lists snapshot's length and hashes: re-sign it for the new snapshot.
    let snapshot = std::fs::read(fx.meta_dir().join("snapshot.json")).unwrap();
    fx.resign("timestamp.json", Role::Timestamp, |s| {
        s["meta"]["snapshot.json"]["length"] = json!(snapshot.len());
        s["meta"]["snapshot.json"]["hashes"] =
            json!({"sha256": hex::encode(<sha2::Sha256 as Digest>::digest(&snapshot))});
    });
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    assert!(matches!(
        client.target("team/x.img"),
        Err(Error::HashMismatch { path }) if path == "team.json"
    ));
    // The right sha512 is accepted.
    fx.resign("snapshot.json", Role::Snapshot, |s| {
        s["meta"]["team.json"]["hashes"]["sha512"] = json!(hex::encode(Sha512::digest(&bytes)));
    });
    let snapshot = std::fs::read(fx.meta_dir().join("snapshot.json")).unwrap();
    fx.resign("timestamp.json", Role::Timestamp, |s| {
        s["meta"]["snapshot.json"]["length"] = json!(snapshot.len());
        s["meta"]["snapshot.json"]["hashes"] =
            json!({"sha256": hex::encode(<sha2::Sha256 as Digest>::digest(&snapshot))});
    });
    let _ = std::fs::remove_dir_all(fx.client_dir());
    let mut client = fx.client(T0);
    client.refresh().unwrap();
    assert_eq!(client.target("team/x.img").unwrap().length, 1);
}

#[test]
fn unknown_fields_of_delegated_metadata_are_verified_as_received() {
    let fx = fixture();
    let ids = delegate(&fx, "targets", "team", &["team/*"], Termination::Continue);
    add(&fx, "team", "team/x.img", b"x");
    let ring = fx.ring();
    let team = ring.get(&ids[0]).unwrap();
    // Fields this client does not know, in the role, a target and the delegation: the
    // signature covers them, so they must be kept exactly.
    fx.resign_with("team.json", &[team], |s| {
        s["x-vendor"] = json!({"z": 1, "a": [1, 2]});
        s["targets"]["team/x.img"]["x-note"] = json!("kept");
    });
    let targets_keys = fx.role_keys(Role::Targets);
    fx.resign_with("targets.json", &[&targets_keys[0]], |s| {
        s["delegations"]["roles"][0]["x-team"] = json!("ops");
    });
    let client = fresh_client(&fx);
    let t = client.target("team/x.img").unwrap();
    assert_eq!(t.extra.get("x-note"), Some(&json!("kept")));
}

#[test]
fn role_name_holding_a_slash_is_not_a_path_on_disk() {
    // A role "../escape" delegated "*": over HTTP it is one percent-encoded segment; a
    // directory transport cannot address it and refuses, rather than reading ../escape.json.
    let fx = fixture();
    let key = RoleKey::generate();
    let targets_keys = fx.role_keys(Role::Targets);
    fx.resign_with("targets.json", &[&targets_keys[0]], |s| {
        s["delegations"] = json!({
            "keys": keys_object(key.id(), serde_json::to_value(key.key()).unwrap()),
            "roles": [{"name": "../escape", "keyids": [key.id().0.clone()], "threshold": 1,
                       "terminating": false, "paths": ["*"]}],
        });
    });
    fx.resign("snapshot.json", Role::Snapshot, |s| {
        s["meta"]["../escape.json"] = json!({"version": 1});
    });
    let signed = json!({"_type": "targets", "spec_version": "1.0.31", "version": 1,
        "expires": "2031-01-01T00:00:00Z", "targets": {}});
    std::fs::write(
        fx.repo_dir().join("escape.json"),
        sign_value(signed, &[&key]).unwrap(),
    )
    .unwrap();
    let client = fresh_client(&fx);
    assert!(matches!(
        client.target("x.img"),
        Err(Error::BadPath { path, .. }) if path == "../escape.json"
    ));
}
