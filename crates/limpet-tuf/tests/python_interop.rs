#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! python-tuf and limpet-tuf read each other's repositories, with every key type and with
//! delegations: python-tuf (`tuf.ngclient.Updater`) refreshes and downloads from a
//! repository this crate wrote (Ed25519, ECDSA and RSA keys, root rotations that change the
//! key type, Limpet's additions to timestamp and targets, delegated roles as `limpet repo delegate` and `limpet repo add-target` make
//! them), served by limpet-repo's development server; and this crate's client verifies
//! metadata python-tuf and securesystemslib signed with each key type, and reads a
//! repository python-tuf's metadata API wrote with delegations and hash bins. Needs python3
//! with `pip install tuf`.

use std::path::{Path, PathBuf};
use std::process::Command;

use limpet_repo::serve::serve;
use limpet_testkit::python_tuf::require_python_tuf;
use limpet_tuf::delegation::target_path_hash;
use limpet_tuf::keys::{Key, PublicKey, Scheme};
use limpet_tuf::metadata::Role;
use limpet_tuf::repo::{
    ConsistentSnapshots, DelegatedPaths, DelegationSpec, MetaDetail, NewKeys, Termination,
};
use limpet_tuf::transport::{FileTransport, RetrievalPolicy};
use limpet_tuf::{Client, InitOptions, Repository, SystemClock};

/// Extra targets a repository's setup signed, each with its file, for python-tuf to fetch.
type Extra = Vec<(String, PathBuf)>;

fn check(consistent: ConsistentSnapshots, detail: MetaDetail) {
    check_with(
        InitOptions {
            consistent_snapshots: consistent,
            ..InitOptions::default()
        },
        detail,
        |repo, tmp| {
            // Rotations python-tuf must follow: root 1 -> 2 -> 3, new timestamp key.
            repo.rotate_root(3, 2).unwrap();
            repo.rotate(Role::Timestamp).unwrap();
            // A field Limpet adds to targets (a support extension, limpet-repo's
            // `support`), which python-tuf must keep and ignore.
            repo.set_targets_field(
                "x-limpet-support-until",
                serde_json::json!({"thermostat": "2034-12-31"}),
            )
            .unwrap();
            // Delegated roles: "team" by path pattern (two Ed25519 keys, threshold 2,
            // terminating), and "hashed", delegated by "team" by path hash prefix, with an
            // ECDSA key.
            let team_payload = tmp.join("team.bin");
            std::fs::write(&team_payload, b"team payload").unwrap();
            let hashed_payload = tmp.join("hashed.bin");
            std::fs::write(&hashed_payload, b"hashed payload").unwrap();
            repo.add_delegation(&DelegationSpec {
                name: "team".into(),
                delegator: "targets".into(),
                paths: DelegatedPaths::Patterns(vec!["team/*".into(), "team/*/*".into()]),
                keys: 2,
                scheme: Scheme::Ed25519,
                threshold: 2,
                termination: Termination::Terminating,
            })
            .unwrap();
            let hashed_name = "team/h/app.img";
            repo.add_delegation(&DelegationSpec {
                name: "hashed".into(),
                delegator: "team".into(),
                paths: DelegatedPaths::HashPrefixes(vec![
                    target_path_hash(hashed_name)[..2].to_owned()
                ]),
                keys: 1,
                scheme: Scheme::EcdsaP256Sha256,
                threshold: 1,
                termination: Termination::Continue,
            })
            .unwrap();
            repo.add_delegated_target("team", "team/app.img", &team_payload, None)
                .unwrap();
            repo.add_delegated_target("hashed", hashed_name, &hashed_payload, None)
                .unwrap();
            vec![
                ("team/app.img".into(), team_payload),
                (hashed_name.into(), hashed_payload),
            ]
        },
    );
}

fn check_with(
    opts: InitOptions,
    detail: MetaDetail,
    setup: impl FnOnce(&Repository, &Path) -> Extra,
) {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = Repository::init(
        &repo_dir,
        &tmp.path().join("keys"),
        opts,
        Box::new(SystemClock),
    )
    .unwrap()
    .with_meta_detail(detail);
    let payload = tmp.path().join("payload.bin");
    std::fs::write(&payload, vec![42u8; 100_000]).unwrap();
    let custom = serde_json::json!({"version": "1.2.3", "verity_root": "ab".repeat(32), "chunk_index": "app.idx"});
    repo.add_target("images/app-1.2.3.img", &payload, Some(custom))
        .unwrap();
    let extra = setup(&repo, tmp.path());
    repo.refresh().unwrap();

    let server = serve(&repo_dir, "127.0.0.1:0".parse().unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/ngclient_check.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(format!("{}/metadata", server.url()))
        .arg(format!("{}/targets", server.url()))
        .arg(repo_dir.join("metadata/1.root.json"))
        .arg(tmp.path().join("python"))
        .arg("images/app-1.2.3.img")
        .arg(&payload);
    for (name, file) in &extra {
        cmd.arg(name).arg(file);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python-tuf failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1.2.3"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1 + extra.len(), "{stdout}");
    server.shutdown();
}

#[test]
fn python_tuf_reads_consistent_repository() {
    require_python_tuf();
    check(ConsistentSnapshots::Enabled, MetaDetail::LengthAndHashes);
}

#[test]
fn python_tuf_reads_plain_repository() {
    require_python_tuf();
    check(ConsistentSnapshots::Disabled, MetaDetail::VersionOnly);
}

#[test]
fn python_tuf_reads_an_ecdsa_repository_and_a_rotation_to_rsa() {
    require_python_crypto();
    check_with(
        InitOptions {
            key_scheme: Scheme::EcdsaP256Sha256,
            ..InitOptions::default()
        },
        MetaDetail::LengthAndHashes,
        |repo, _| {
            // ECDSA root 1 -> RSA root 2 (signed by both thresholds); an RSA timestamp key.
            let scheme = Scheme::RsaPssSha256;
            repo.rotate_root_to(NewKeys::Generate { scheme, count: 2 }, 2)
                .unwrap();
            repo.rotate_to(Role::Timestamp, NewKeys::Generate { scheme, count: 1 }, 1)
                .unwrap();
            Vec::new()
        },
    );
}

#[test]
fn python_tuf_reads_an_rsa_repository_and_a_rotation_from_ed25519_to_ecdsa() {
    require_python_crypto();
    check_with(
        InitOptions {
            key_scheme: Scheme::RsaPssSha256,
            ..InitOptions::default()
        },
        MetaDetail::VersionOnly,
        |repo, _| {
            let ed = Scheme::Ed25519;
            let ec = Scheme::EcdsaP256Sha256;
            repo.rotate_root_to(
                NewKeys::Generate {
                    scheme: ed,
                    count: 3,
                },
                2,
            )
            .unwrap();
            repo.rotate_root_to(
                NewKeys::Generate {
                    scheme: ec,
                    count: 3,
                },
                2,
            )
            .unwrap();
            repo.rotate_to(
                Role::Targets,
                NewKeys::Generate {
                    scheme: ec,
                    count: 1,
                },
                1,
            )
            .unwrap();
            Vec::new()
        },
    );
}

/// Fails the test unless python-tuf can check and make ECDSA and RSA signatures
/// (securesystemslib's `crypto` extra).
fn require_python_crypto() {
    require_python_tuf();
    let ok = Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python-tuf cannot check ECDSA or RSA signatures: run `python3 -m pip install 'securesystemslib[crypto]'`"
    );
}

/// Runs tests/python/make_repo.py: a repository python-tuf signed, root 1 on Ed25519 keys,
/// root 2 and every role on `keytype` keys. Returns its directory and what it printed.
fn python_repository(keytype: &str, legacy: bool) -> (tempfile::TempDir, serde_json::Value) {
    let tmp = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/make_repo.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(tmp.path().join("repo")).arg(keytype);
    if legacy {
        cmd.arg("LEGACY");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "make_repo.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = serde_json::from_slice(&out.stdout).unwrap();
    (tmp, printed)
}

/// limpet-tuf's client walks python-tuf's root rotation to `keytype` keys, verifies every
/// role, downloads the target, and computes the key ids and key objects securesystemslib
/// does.
fn limpet_reads_python(keytype: &str, legacy: bool, scheme: Scheme) {
    let (tmp, printed) = python_repository(keytype, legacy);
    for role in ["root", "timestamp", "snapshot", "targets"] {
        let entry = &printed["keys"][role];
        let key: Key = serde_json::from_value(entry["key"].clone()).unwrap();
        assert_eq!(key.key_id().0, entry["keyid"].as_str().unwrap(), "{role}");
        let public = PublicKey::from_key(&key).unwrap();
        assert_eq!(public.scheme(), scheme);
        // The key object this crate writes for the same key is securesystemslib's, byte for
        // byte (the legacy keytype aside, which it never writes).
        let written = public.to_key().unwrap();
        assert_eq!(written.keyval, key.keyval, "{role}");
        if !legacy {
            assert_eq!(written, key, "{role}");
        }
    }
    let repo = tmp.path().join("repo");
    let client_dir = tmp.path().join("client");
    Client::init(
        &client_dir,
        &std::fs::read(repo.join("metadata/1.root.json")).unwrap(),
    )
    .unwrap();
    let mut client = Client::open(
        &client_dir,
        Box::new(FileTransport::new(
            repo.join("metadata"),
            RetrievalPolicy::default(),
        )),
        Box::new(SystemClock),
    )
    .unwrap();
    client.refresh().unwrap();
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(client_dir.join("root.json")).unwrap()).unwrap();
    assert_eq!(stored["signed"]["version"], 2);
    let mut sink = Vec::new();
    client
        .fetch_target(
            &FileTransport::new(repo.join("targets"), RetrievalPolicy::default()),
            "file.txt",
            &mut sink,
        )
        .unwrap();
    assert_eq!(sink, printed["payload"].as_str().unwrap().as_bytes());
}

#[test]
fn limpet_verifies_python_tuf_ecdsa_metadata() {
    require_python_crypto();
    // ECDSA signatures are randomised and half of OpenSSL's have a high S: several
    // signatures per run (root, targets, snapshot, timestamp).
    limpet_reads_python("ecdsa", false, Scheme::EcdsaP256Sha256);
}

#[test]
fn limpet_verifies_python_tuf_ecdsa_metadata_with_the_legacy_keytype() {
    require_python_crypto();
    limpet_reads_python("ecdsa", true, Scheme::EcdsaP256Sha256);
}

#[test]
fn limpet_verifies_python_tuf_rsa_metadata() {
    require_python_crypto();
    limpet_reads_python("rsa", false, Scheme::RsaPssSha256);
}

#[test]
fn limpet_verifies_python_tuf_ed25519_metadata() {
    require_python_crypto();
    limpet_reads_python("ed25519", false, Scheme::Ed25519);
}

#[test]
fn python_tuf_repository_with_delegations_and_hash_bins_is_read() {
    require_python_tuf();
    let signs = Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        signs,
        "python-tuf cannot sign: run `python3 -m pip install 'securesystemslib[crypto]'`"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("repo");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/make_delegated_repo.py");
    let made = Command::new("python3")
        .arg(script)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "python-tuf failed:\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let contents: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&made.stdout).unwrap();
    assert_eq!(contents.len(), 3);
    let dir = tmp.path().join("client");
    Client::init(
        &dir,
        &std::fs::read(out.join("metadata/1.root.json")).unwrap(),
    )
    .unwrap();
    let policy = RetrievalPolicy::default();
    let mut client = Client::open(
        &dir,
        Box::new(FileTransport::new(out.join("metadata"), policy)),
        Box::new(SystemClock),
    )
    .unwrap();
    client.refresh().unwrap();
    let targets = FileTransport::new(out.join("targets"), policy);
    for (name, content) in &contents {
        let mut got = Vec::new();
        client.fetch_target(&targets, name, &mut got).unwrap();
        assert_eq!(got, content.as_bytes(), "{name}");
    }
    // A name the hash bins are delegated but no bin lists.
    assert!(matches!(
        client.target("binned/three.txt"),
        Err(limpet_tuf::Error::NoSuchTarget { .. })
    ));
}
