#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! python-tuf (`tuf.ngclient.Updater`) refreshes and downloads from a repository this crate
//! wrote, served by limpet-repo's development server. Needs python3 with `pip install tuf`.

use std::path::Path;
use std::process::Command;

use limpet_repo::serve::serve;
use limpet_testkit::python_tuf::require_python_tuf;
use limpet_tuf::repo::{ConsistentSnapshots, MetaDetail};
use limpet_tuf::{InitOptions, Repository, SystemClock};

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
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python-tuf failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1.2.3"), "{stdout}");
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
