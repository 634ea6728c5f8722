#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Cohort distribution end to end, in process, every part real (docs/cohorts.md): two
//! releases built in three cohorts (slots whose signed command line says
//! `limpet.cohort=K/3`, each cohort's bytes different as a different code layout makes
//! them), published by limpet-repo under `D/V/cohort-K/`, served over HTTP, and installed
//! by the real agent through PID 1's `InstallServer` of a device with an identity. The
//! device fetches exactly its own cohort's delta: what its slot B holds is that cohort's
//! slot, and the requests the relay saw name no other cohort.

mod common;

use common::{agent_config, image_key, release_entries, Device, Relay, TestRepo, DEVICE};
use limpet_agent::{Agent, PollOutcome};
use limpet_repo::serve::serve;
use limpet_repo::{CohortTag, DeltaOutcome, PublishError};
use limpet_testkit::noise::xorshift_bytes;
use limpet_testkit::slot::signed_slot_with_cmdline;

const COHORTS: u32 = 3;

/// A device with the identity made from `seed`, running `running` (1.0.0), polls once
/// through a counting relay: it must stage 2.0.0 by the delta from 1.0.0, fetching no
/// chunk. The device and the requests the relay saw.
fn update_by_delta(
    server: &limpet_repo::serve::Server,
    repo: &TestRepo,
    running: &[u8],
    seed: [u8; 32],
    label: &str,
) -> (Device, String) {
    let relay = Relay::start(server.local_addr());
    let device = Device::with_identity(running, "1.0.0", seed);
    let state = tempfile::tempdir().unwrap();
    let mut agent = Agent::new(agent_config(&relay.url(), repo, &device, state.path()));
    let outcome = agent.poll_once().unwrap();
    assert!(
        matches!(&outcome, PollOutcome::Staged { version, delta_from: Some(from), chunks_fetched: 0, .. }
            if version == "2.0.0" && from == "1.0.0"),
        "{label}: {outcome:?}"
    );
    (device, relay.wire.sent_text())
}

/// The targets the relay saw requested (TUF's consistent names: the hash, then the file).
fn targets_fetched(seen: &str) -> Vec<&str> {
    seen.lines()
        .filter_map(|l| l.strip_prefix("GET /targets/"))
        .collect()
}

/// `version` of the test device as cohort `k` of `n`: a 1 MiB "binary" whose first
/// 64 KiB depend on the cohort (its layout) and whose middle carries `patch` (the release's
/// change), and the cohort in the signed command line.
fn cohort_release(version: &str, patch: &[u8], k: u32, n: u32) -> Vec<u8> {
    let mut binary = xorshift_bytes(0x9e37_79b9_7f4a_7c15, 1 << 20);
    let layout = xorshift_bytes(0x1234_5678 + u64::from(k), 64 << 10);
    binary[..layout.len()].copy_from_slice(&layout);
    let mid = binary.len() / 2;
    binary[mid..mid + patch.len()].copy_from_slice(patch);
    let entries = release_entries(version, binary);
    let cmdline = format!("console=ttyS0 limpet.cohort={k}/{n}");
    signed_slot_with_cmdline(
        &entries,
        DEVICE,
        std::env::consts::ARCH,
        version,
        &image_key(),
        &cmdline,
    )
}

/// The identity seed, among 0.., whose key falls in cohort `k` of [`COHORTS`], and its
/// public key.
fn seed_in(k: u32) -> ([u8; 32], [u8; 32]) {
    (0u8..=255)
        .map(|n| {
            let seed = [n; 32];
            let key = ed25519_dalek::SigningKey::from_bytes(&seed)
                .verifying_key()
                .to_bytes();
            (seed, key)
        })
        .find(|(_, key)| CohortTag::of_device(Some(key), COHORTS).unwrap().index() == k)
        .unwrap()
}

/// Publishes 1.0.0 and 2.0.0 in [`COHORTS`] cohorts; returns the slots, `[version][k-1]`.
fn publish_two_releases(repo: &TestRepo) -> [Vec<Vec<u8>>; 2] {
    let mut out = [Vec::new(), Vec::new()];
    for (i, (version, patch)) in [("1.0.0", &b""[..]), ("2.0.0", b"one changed line")]
        .into_iter()
        .enumerate()
    {
        for k in 1..=COHORTS {
            let slot = cohort_release(version, patch, k, COHORTS);
            let p = repo.publish(&slot);
            assert_eq!(
                p.index_target,
                format!("{DEVICE}/{version}/cohort-{k}/slot.cidx")
            );
            assert_eq!(p.slot.cohort, Some(CohortTag::new(k, COHORTS).unwrap()));
            if version == "2.0.0" {
                // The delta starts from the same cohort's 1.0.0.
                assert!(
                    matches!(&p.delta, DeltaOutcome::Added { target, from, .. }
                        if *target == format!("{DEVICE}/2.0.0/cohort-{k}/from-1.0.0.delta") && from == "1.0.0"),
                    "{:?}",
                    p.delta
                );
            }
            out[i].push(slot);
        }
    }
    out
}

/// Publishes `slot` bytes, returning the publisher's error rather than panicking.
#[allow(clippy::result_large_err)] // the publisher's own error type, as it returns it
fn publish_checked(repo: &TestRepo, slot: &[u8]) -> Result<limpet_repo::Published, PublishError> {
    let file = repo.dir.path().join("incoming.img");
    std::fs::write(&file, slot).unwrap();
    limpet_repo::publish(
        &file,
        &repo.path(),
        &repo.keys(),
        &image_key().verifying_key(),
    )
}

/// A device with identity X in cohort k (here each of the three in turn) fetches cohort k's
/// delta of 2.0.0 (the one target it needs) and nothing of another cohort, and stages
/// exactly cohort k's slot.
#[test]
fn a_device_installs_its_own_cohorts_release_by_its_delta() {
    let repo = TestRepo::new();
    let slots = publish_two_releases(&repo);
    let server = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    for k in 1..=COHORTS {
        let (seed, key) = seed_in(k);
        assert_eq!(
            CohortTag::of_device(Some(&key), COHORTS),
            Ok(CohortTag::new(k, COHORTS).unwrap())
        );
        let running = &slots[0][(k - 1) as usize];
        let (device, seen) = update_by_delta(&server, &repo, running, seed, &format!("cohort {k}"));
        let want = &slots[1][(k - 1) as usize];
        let written = std::fs::read(device.path("slotb")).unwrap();
        assert_eq!(
            &written[..want.len()],
            &want[..],
            "cohort {k}: slot B holds cohort {k}'s 2.0.0"
        );
        // The targets fetched (TUF's consistent names put the hash before the file name):
        // one, the delta of cohort k; nothing of another cohort.
        let targets = targets_fetched(&seen);
        assert_eq!(targets.len(), 1, "cohort {k}: {seen}");
        let prefix = format!("{DEVICE}/2.0.0/cohort-{k}/");
        assert!(
            targets[0].starts_with(&prefix) && targets[0].contains(".from-1.0.0.delta "),
            "cohort {k}: {seen}"
        );
        for other in (1..=COHORTS).filter(|o| *o != k) {
            assert!(
                !seen.contains(&format!("/cohort-{other}/")),
                "cohort {k}: {seen}"
            );
        }
    }
}

/// The aarch64 QEMU update's case without QEMU: a release NOT built in cohorts, and a
/// device WITH an identity (every booted device makes one). Its cohort plays no part: the
/// agent takes the plain `D/V/from-F.delta`, fetches that one target and no chunk, and
/// its slot B is 2.0.0. (A cohort rule applied to a plain release, say the key's cohort
/// looked for under `cohort-K/`, would install from chunks here.)
#[test]
fn a_device_with_an_identity_takes_a_plain_releases_delta() {
    let repo = TestRepo::new();
    let v1 = common::release("1.0.0", b"");
    let v2 = common::release("2.0.0", b"one changed line");
    repo.publish(&v1);
    let p2 = repo.publish(&v2);
    assert!(
        matches!(&p2.delta, DeltaOutcome::Added { target, from, .. }
            if target == &format!("{DEVICE}/2.0.0/from-1.0.0.delta") && from == "1.0.0"),
        "{:?}",
        p2.delta
    );
    let server = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    for k in 1..=COHORTS {
        // Identities whose keys fall in each cohort of three: none of them matters.
        let (seed, _) = seed_in(k);
        let (device, seen) =
            update_by_delta(&server, &repo, &v1, seed, &format!("key of cohort {k}"));
        let targets = targets_fetched(&seen);
        assert_eq!(targets.len(), 1, "{seen}");
        assert!(
            targets[0].starts_with(&format!("{DEVICE}/2.0.0/"))
                && targets[0].contains(".from-1.0.0.delta ")
                && !seen.contains("/cohort-"),
            "{seen}"
        );
        let written = std::fs::read(device.path("slotb")).unwrap();
        assert_eq!(&written[..v2.len()], &v2[..], "slot B holds 2.0.0");
    }
}

/// A device without an identity takes cohort 1 (all such devices do). Running another
/// cohort's 1.0.0 (a factory image of cohort 2), it tries cohort 1's delta, whose result
/// is not the signed slot, and installs cohort 1's 2.0.0 from chunks.
#[test]
fn a_device_without_identity_takes_cohort_one() {
    let repo = TestRepo::new();
    let slots = publish_two_releases(&repo);
    let server = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let device = Device::new(&slots[0][1], "1.0.0");
    let state = tempfile::tempdir().unwrap();
    let url = format!("http://{}", server.local_addr());
    let mut agent = Agent::new(agent_config(&url, &repo, &device, state.path()));
    let outcome = agent.poll_once().unwrap();
    assert!(
        matches!(&outcome, PollOutcome::Staged { version, delta_from: None, .. } if version == "2.0.0"),
        "{outcome:?}"
    );
    let written = std::fs::read(device.path("slotb")).unwrap();
    assert_eq!(&written[..slots[1][0].len()], &slots[1][0][..]);
}

/// The publisher keeps a release's cohorts consistent: each cohort once, one count for all,
/// never beside the release's non-cohort targets.
#[test]
fn publishing_refuses_a_cohort_twice_or_a_mix() {
    let repo = TestRepo::new();
    publish_checked(&repo, &cohort_release("1.0.0", b"", 1, 2)).unwrap();
    let e = publish_checked(&repo, &cohort_release("1.0.0", b"", 1, 2)).unwrap_err();
    assert!(
        matches!(&e, PublishError::Exists { existing, .. } if existing.contains("/cohort-1/")),
        "{e}"
    );
    let e = publish_checked(&repo, &cohort_release("1.0.0", b"", 2, 3)).unwrap_err();
    assert!(
        matches!(&e, PublishError::CohortMix { cohort, listed, .. } if cohort == "cohort 2 of 3" && listed == "cohort 1 of 2"),
        "{e}"
    );
    let e = publish_checked(&repo, &common::release("1.0.0", b"")).unwrap_err();
    assert!(matches!(&e, PublishError::Exists { .. }), "{e}");
    // The other cohort of the same count is welcome.
    publish_checked(&repo, &cohort_release("1.0.0", b"", 2, 2)).unwrap();
    // A cohort beside a non-cohort release.
    publish_checked(&repo, &common::release("1.1.0", b"x")).unwrap();
    let e = publish_checked(&repo, &cohort_release("1.1.0", b"x", 1, 2)).unwrap_err();
    assert!(
        matches!(&e, PublishError::CohortMix { listed, .. } if listed == "not built in cohorts"),
        "{e}"
    );
    // A slot whose signed command line has a bad cohort word.
    let bad = signed_slot_with_cmdline(
        &[],
        DEVICE,
        std::env::consts::ARCH,
        "1.2.0",
        &image_key(),
        "console=ttyS0 limpet.cohort=3/2",
    );
    let e = publish_checked(&repo, &bad).unwrap_err();
    assert!(
        matches!(&e, PublishError::Cohort { cmdline, .. } if cmdline.contains("3/2")),
        "{e}"
    );
}
