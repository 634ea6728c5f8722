#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Publishing real slots (limpet-image) into a real TUF repository (limpet-tuf), and what a
//! publish refuses.

use std::path::Path;

use ed25519_dalek::SigningKey;
use limpet_image::squashfs::Entry;
use limpet_repo::target::{chunk_path, SlotTarget};
use limpet_repo::{init_repo, publish, DeltaOutcome, InitOutcome, PublishError};
use limpet_testkit::noise::xorshift_bytes;
use limpet_testkit::slot::{root_hash, signed_slot};
use limpet_tuf::SystemClock;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[5; 32])
}

fn slot_file(dir: &Path, version: &str, signer: &SigningKey) -> std::path::PathBuf {
    let entries = vec![Entry {
        path: "task".into(),
        data: format!("task of {version}").repeat(3000).into_bytes(),
        mode: 0o755,
    }];
    write_slot(dir, version, &entries, signer)
}

/// A signed slot of the `pump` device holding `entries`, written to `dir/VERSION.img`.
fn write_slot(
    dir: &Path,
    version: &str,
    entries: &[Entry],
    signer: &SigningKey,
) -> std::path::PathBuf {
    let bytes = signed_slot(entries, "pump", "aarch64", version, signer);
    let path = dir.join(format!("{version}.img"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn publish_writes_chunks_and_two_signed_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, keys) = (tmp.path().join("repo"), tmp.path().join("keys"));
    let created = init_repo(&repo, &keys).unwrap();
    assert_eq!(
        created,
        InitOutcome::Created {
            trusted_root: repo.join("metadata/1.root.json")
        }
    );
    assert!(matches!(
        init_repo(&repo, &keys).unwrap(),
        InitOutcome::Existing { .. }
    ));
    // 3 root keys, threshold 2; one key per other role.
    let root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("metadata/root.json")).unwrap()).unwrap();
    assert_eq!(root["signed"]["roles"]["root"]["threshold"], 2);
    assert_eq!(
        root["signed"]["roles"]["root"]["keyids"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let file = slot_file(tmp.path(), "1.2.0", &key());
    let p = publish(&file, &repo, &keys, &key().verifying_key()).unwrap();
    assert_eq!(p.slot_target, "pump/1.2.0/slot.img");
    assert_eq!(p.index_target, "pump/1.2.0/slot.cidx");
    assert_eq!(p.chunks_written, p.chunks);

    // What the targets metadata says is what the slot is.
    let tuf = limpet_tuf::Repository::open(&repo, &keys, Box::new(SystemClock)).unwrap();
    let targets = tuf.targets().unwrap();
    let index_entry = &targets.targets["pump/1.2.0/slot.cidx"];
    let signed =
        SlotTarget::from_index_custom(&p.index_target, index_entry.custom.as_ref()).unwrap();
    assert_eq!(signed, p.slot);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(signed.verity_root, root_hash(&bytes));
    assert_eq!(signed.slot_length, bytes.len() as u64);
    assert_eq!(signed.target, "aarch64");
    assert_eq!(
        targets.targets["pump/1.2.0/slot.img"]
            .custom
            .as_ref()
            .unwrap()["limpet"]["version"],
        "1.2.0"
    );
    let index = limpet_chunk::Index::from_bytes(
        &std::fs::read(repo.join("targets/pump/1.2.0/slot.cidx")).unwrap(),
    )
    .unwrap();
    for c in index.chunks() {
        assert!(repo.join(chunk_path(&c.id.to_hex())).is_file());
    }

    // Refresh re-signs snapshot and timestamp only.
    let before = tuf.targets().unwrap().version;
    limpet_repo::refresh(&repo, &keys).unwrap();
    assert_eq!(tuf.targets().unwrap().version, before);
}

#[test]
fn publish_refuses_repeats_foreign_slots_and_trailing_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, keys) = (tmp.path().join("repo"), tmp.path().join("keys"));
    init_repo(&repo, &keys).unwrap();
    let vk = key().verifying_key();
    publish(&slot_file(tmp.path(), "1.0.0", &key()), &repo, &keys, &vk).unwrap();

    // The same version again, also as a rebuild with other build metadata.
    let e = publish(&slot_file(tmp.path(), "1.0.0", &key()), &repo, &keys, &vk).unwrap_err();
    assert!(
        matches!(e, PublishError::Exists { ref existing, .. } if existing.starts_with("pump/1.0.0/")),
        "{e:?}"
    );
    let e = publish(
        &slot_file(tmp.path(), "1.0.0+rebuild", &key()),
        &repo,
        &keys,
        &vk,
    )
    .unwrap_err();
    assert!(matches!(e, PublishError::Exists { .. }), "{e:?}");

    // A slot signed by another key.
    let other = SigningKey::from_bytes(&[6; 32]);
    let e = publish(&slot_file(tmp.path(), "2.0.0", &other), &repo, &keys, &vk).unwrap_err();
    assert!(matches!(e, PublishError::Verify { .. }), "{e:?}");

    // A file longer than its slot.
    let padded = slot_file(tmp.path(), "3.0.0", &key());
    let mut bytes = std::fs::read(&padded).unwrap();
    bytes.extend_from_slice(&[0; 4096]);
    std::fs::write(&padded, bytes).unwrap();
    let e = publish(&padded, &repo, &keys, &vk).unwrap_err();
    assert!(matches!(e, PublishError::Length { .. }), "{e:?}");

    // Nothing of the refused versions reached the targets.
    let tuf = limpet_tuf::Repository::open(&repo, &keys, Box::new(SystemClock)).unwrap();
    let names: Vec<String> = tuf.targets().unwrap().targets.into_keys().collect();
    assert_eq!(names, ["pump/1.0.0/slot.cidx", "pump/1.0.0/slot.img"]);
}

#[test]
fn a_second_writer_is_refused_while_the_lock_is_held() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, keys) = (tmp.path().join("repo"), tmp.path().join("keys"));
    init_repo(&repo, &keys).unwrap();
    let slot = slot_file(tmp.path(), "1.0.0", &key());
    let held = limpet_repo::lock(&repo).unwrap();
    let err = publish(&slot, &repo, &keys, &key().verifying_key()).unwrap_err();
    assert!(
        matches!(&err, PublishError::Busy { lock } if *lock == repo.join(".lock")),
        "{err}"
    );
    let err = limpet_repo::refresh(&repo, &keys).unwrap_err();
    assert!(matches!(err, PublishError::Busy { .. }), "{err}");
    // Nothing was published meanwhile.
    let tuf = limpet_tuf::Repository::open(&repo, &keys, Box::new(SystemClock)).unwrap();
    assert!(tuf.targets().unwrap().targets.is_empty());
    drop(held);
    publish(&slot, &repo, &keys, &key().verifying_key()).unwrap();
}

/// A slot whose task is incompressible bytes (stored raw in the squashfs) holding
/// something shaped like a zstd frame that is not one.
fn slot_with_fake_frame(dir: &Path, version: &str) -> std::path::PathBuf {
    let mut data = xorshift_bytes(0x2545_f491_4f6c_dd1d, 200_000);
    // Magic, single segment with a 1-byte content size (64), one last "compressed" block
    // of 10 bytes of garbage.
    let fake = [0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x40, 0x55, 0x00, 0x00];
    data[1000..1000 + fake.len()].copy_from_slice(&fake);
    data[1000 + fake.len()..1000 + fake.len() + 10].fill(0xee);
    let entries = vec![Entry {
        path: "task".into(),
        data,
        mode: 0o755,
    }];
    write_slot(dir, version, &entries, &key())
}

#[test]
fn a_delta_that_cannot_be_made_leaves_the_release_published_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, keys) = (tmp.path().join("repo"), tmp.path().join("keys"));
    init_repo(&repo, &keys).unwrap();
    let v1 = slot_with_fake_frame(tmp.path(), "1.0.0");
    let first = publish(&v1, &repo, &keys, &key().verifying_key()).unwrap();
    assert!(
        matches!(&first.delta, DeltaOutcome::Skipped(why) if why.contains("no earlier release")),
        "{:?}",
        first.delta
    );
    let v2 = slot_file(tmp.path(), "2.0.0", &key());
    let second = publish(&v2, &repo, &keys, &key().verifying_key()).unwrap();
    let DeltaOutcome::Skipped(why) = &second.delta else {
        panic!("{:?}", second.delta)
    };
    assert!(
        why.starts_with("no delta from 1.0.0: old image frame at offset"),
        "{why}"
    );
    // The release itself is there.
    let tuf = limpet_tuf::Repository::open(&repo, &keys, Box::new(SystemClock)).unwrap();
    assert!(tuf
        .targets()
        .unwrap()
        .targets
        .contains_key("pump/2.0.0/slot.cidx"));
}

fn waves(shares: &[u32], max_hold_secs: Option<u64>) -> limpet_repo::waves::WavesSpec {
    limpet_repo::waves::WavesSpec {
        release: limpet_fleet_api::waves::RawReleaseWaves {
            emergency: false,
            waves: shares
                .iter()
                .map(|&share_bp| limpet_fleet_api::waves::RawWave {
                    share_bp,
                    start: "2026-12-07T00:00:00Z".into(),
                })
                .collect(),
        },
        hold_keys: Some(vec![hex::encode(key().verifying_key().as_bytes())]),
        max_hold_secs,
    }
}

/// Waves devices would refuse stop a publish before anything is listed; good ones are
/// signed with the release, and `set_waves` changes them only for a published release.
#[test]
fn waves_are_signed_with_their_release_or_not_at_all() {
    use limpet_fleet_api::waves::{HoldPolicy, WavesField};
    let tmp = tempfile::tempdir().unwrap();
    let (repo, keys) = (tmp.path().join("repo"), tmp.path().join("keys"));
    init_repo(&repo, &keys).unwrap();
    let vk = key().verifying_key();
    let slot = slot_file(tmp.path(), "1.0.0", &key());
    // The error, if any (the closure keeps clippy's large-`Err` rule by not returning a
    // `Result`).
    let publish_with = |spec: &limpet_repo::waves::WavesSpec| {
        limpet_repo::publish_with_waves(&slot, &repo, &keys, &vk, Vec::new(), Some(spec)).err()
    };
    let listed = || {
        let tuf = limpet_tuf::Repository::open(&repo, &keys, Box::new(SystemClock)).unwrap();
        tuf.targets().unwrap()
    };
    let e = publish_with(&waves(&[5000], Some(600))).unwrap();
    assert!(
        matches!(&e, PublishError::Waves { release, .. } if release == "pump/1.0.0"),
        "{e:?}"
    );
    assert!(
        limpet_error_chain::one_line(&e).contains("add up to 5000"),
        "{e}"
    );
    assert!(listed().targets.is_empty());
    let e = publish_with(&waves(&[10_000], None)).unwrap();
    assert!(matches!(e, PublishError::Waves { .. }), "{e:?}");

    assert!(publish_with(&waves(&[2000, 8000], Some(600))).is_none());
    let field = WavesField::from_targets(&listed().extra).unwrap().unwrap();
    assert_eq!(field.max_hold_secs, 600);
    assert_eq!(field.releases["pump/1.0.0"].waves().len(), 2);

    let mut emergency = waves(&[10_000], None);
    emergency.release.emergency = true;
    emergency.hold_keys = None;
    let set = limpet_repo::set_waves(&repo, &keys, "pump/1.0.0", &emergency, Vec::new()).unwrap();
    assert_eq!(set.releases["pump/1.0.0"].holds, HoldPolicy::IgnoreHolds);
    assert_eq!((set.max_hold_secs, set.hold_keys.len()), (600, 1));
    let e = limpet_repo::set_waves(&repo, &keys, "pump/2.0.0", &emergency, Vec::new()).unwrap_err();
    assert!(
        matches!(&e, PublishError::NotPublished { index_target, .. } if index_target == "pump/2.0.0/slot.cidx"),
        "{e:?}"
    );
}
