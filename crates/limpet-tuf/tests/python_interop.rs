#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! python-tuf (`tuf.ngclient.Updater`) refreshes and downloads from a repository this crate
//! wrote (with delegated roles, as `limpet repo delegate` and `limpet repo add-target` make
//! them), served by limpet-repo's development server; and this crate's client reads a
//! repository python-tuf's metadata API wrote, with delegations and hash bins. Needs python3
//! with `pip install tuf`.

use std::path::Path;
use std::process::Command;

use limpet_repo::serve::serve;
use limpet_testkit::python_tuf::require_python_tuf;
use limpet_tuf::delegation::target_path_hash;
use limpet_tuf::repo::{
    ConsistentSnapshots, DelegatedPaths, DelegationSpec, MetaDetail, Termination,
};
use limpet_tuf::transport::{FileTransport, RetrievalPolicy};
use limpet_tuf::{Client, InitOptions, Repository, SystemClock};

fn check(consistent: ConsistentSnapshots, detail: MetaDetail) {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = Repository::init(
        &repo_dir,
        &tmp.path().join("keys"),
        InitOptions {
            consistent_snapshots: consistent,
            ..InitOptions::default()
        },
        Box::new(SystemClock),
    )
    .unwrap()
    .with_meta_detail(detail);
    let payload = tmp.path().join("payload.bin");
    std::fs::write(&payload, vec![42u8; 100_000]).unwrap();
    let custom = serde_json::json!({"version": "1.2.3", "verity_root": "ab".repeat(32), "chunk_index": "app.idx"});
    repo.add_target("images/app-1.2.3.img", &payload, Some(custom))
        .unwrap();
    // Rotations and refreshes python-tuf must follow: root 1 -> 2 -> 3, new timestamp key.
    repo.rotate_root(3, 2).unwrap();
    repo.rotate(limpet_tuf::metadata::Role::Timestamp).unwrap();
    // Delegated roles: "team" by path pattern (two keys, threshold 2, terminating), and
    // "hashed", delegated by "team" by path hash prefix.
    let team_payload = tmp.path().join("team.bin");
    std::fs::write(&team_payload, b"team payload").unwrap();
    let hashed_payload = tmp.path().join("hashed.bin");
    std::fs::write(&hashed_payload, b"hashed payload").unwrap();
    repo.add_delegation(&DelegationSpec {
        name: "team".into(),
        delegator: "targets".into(),
        paths: DelegatedPaths::Patterns(vec!["team/*".into(), "team/*/*".into()]),
        keys: 2,
        threshold: 2,
        termination: Termination::Terminating,
    })
    .unwrap();
    let hashed_name = "team/h/app.img";
    repo.add_delegation(&DelegationSpec {
        name: "hashed".into(),
        delegator: "team".into(),
        paths: DelegatedPaths::HashPrefixes(vec![target_path_hash(hashed_name)[..2].to_owned()]),
        keys: 1,
        threshold: 1,
        termination: Termination::Continue,
    })
    .unwrap();
    repo.add_delegated_target("team", "team/app.img", &team_payload, None)
        .unwrap();
    repo.add_delegated_target("hashed", hashed_name, &hashed_payload, None)
        .unwrap();
    repo.refresh().unwrap();

    let server = serve(&repo_dir, "127.0.0.1:0".parse().unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/ngclient_check.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("{}/metadata", server.url()))
        .arg(format!("{}/targets", server.url()))
        .arg(repo_dir.join("metadata/1.root.json"))
        .arg(tmp.path().join("python"))
        .arg("images/app-1.2.3.img")
        .arg(&payload)
        .arg("team/app.img")
        .arg(&team_payload)
        .arg(hashed_name)
        .arg(&hashed_payload)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python-tuf failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1.2.3"), "{stdout}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
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
