#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The agent end to end, in process, with every part real: v1 and v2 slots from
//! limpet-image, published and served with limpet-repo, installed
//! through limpet-install's `InstallServer` (PID 1's side) on temporary partitions.

mod common;

use std::time::Duration;

use common::{agent_config, release, Device, Relay, TestRepo, Throttle};
use limpet_agent::{Agent, AgentError, Busy, PollOutcome};
use limpet_chunk::{AssembleError, Index};
use limpet_install::server::Event;
use limpet_repo::serve::serve;
use limpet_repo::DeltaOutcome;
use limpet_tuf::RetrievalPolicy;

/// A v1 device polls a repository holding v1, then an older version, then v2 with one
/// tampered chunk, then v2 intact; then polls again with the trial staged.
#[test]
fn a_device_updates_itself_and_refuses_what_does_not_verify() {
    let v1 = release("1.0.0", b"");
    let v2 = release("2.0.0", b"one changed line");
    let repo = TestRepo::new();
    let p1 = repo.publish(&v1);
    assert_eq!(p1.index_target, "thermo/1.0.0/slot.cidx");
    let server = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let relay = Relay::start(server.local_addr());
    let device = Device::new(&v1, "1.0.0");
    let state_dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::new(agent_config(&relay.url(), &repo, &device, state_dir.path()));

    // Only the running version is published: nothing to do.
    let first = agent.poll_once().unwrap();
    assert!(
        matches!(&first, PollOutcome::UpToDate { running, .. } if running == "1.0.0"),
        "{first:?}"
    );
    relay.wire.take();

    // A version below the floor (and the running version) is ignored.
    repo.publish(&release("0.9.0", b"old"));
    let outcome = agent.poll_once().unwrap();
    assert!(
        matches!(outcome, PollOutcome::UpToDate { .. }),
        "{outcome:?}"
    );
    relay.wire.take();

    // Nothing changed since the last poll: the cost of a check, counted by the agent and on
    // the wire. limpet-tuf asks for the next root (absent: 404), then timestamp.json, and
    // reuses snapshot and targets from disk. It offers both requests to the transport at
    // once (`Transport::prefetch`, HTTP pipelining): one connection, one round trip.
    // `round_trips` counts requests (fetch calls), 2 of them in that one round trip.
    let outcome = agent.poll_once().unwrap();
    let (connections, up, down) = relay.wire.take();
    let PollOutcome::UpToDate {
        bytes_fetched,
        round_trips,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    println!(
        "nothing-changed check: {round_trips} requests on {connections} connections, \
         {bytes_fetched} body bytes; on the wire {up} bytes up, {down} bytes down ({} in all)",
        up + down
    );
    assert_eq!(round_trips, 2);
    assert_eq!(
        connections, 1,
        "root and timestamp are pipelined on one connection"
    );
    assert!(up + down < 1024, "{up} + {down} bytes on the wire");
    let timestamp = std::fs::metadata(repo.path().join("metadata/timestamp.json"))
        .unwrap()
        .len();
    assert_eq!(bytes_fetched, timestamp, "only timestamp.json has a body");
    assert!(timestamp < 1024, "timestamp.json is {timestamp} bytes");

    // v2, with its delta from 1.0.0 and one of the chunks the device must fetch tampered
    // on the server: the delta fails its signed hash, the agent falls back to chunks, and
    // the chunk fails its hash in the signed index.
    let p2 = repo.publish(&v2);
    assert!(p2.chunks_written < p2.chunks, "v2 shares chunks with v1");
    assert!(
        matches!(&p2.delta, DeltaOutcome::Added { from, .. } if from == "1.0.0"),
        "{:?}",
        p2.delta
    );
    let delta_files = tamper_delta(&repo, "2.0.0", "1.0.0");
    let index = Index::from_bytes(
        &std::fs::read(repo.path().join("targets").join(&p2.index_target)).unwrap(),
    )
    .unwrap();
    let v1_index = Index::from_bytes(
        &std::fs::read(repo.path().join("targets").join(&p1.index_target)).unwrap(),
    )
    .unwrap();
    let new_chunk = index
        .chunks()
        .iter()
        .find(|c| {
            c.compressed_length >= c.length && !v1_index.chunks().iter().any(|o| o.id == c.id)
        })
        .expect("v2 has a new, incompressible chunk");
    let chunk_file = repo
        .path()
        .join(limpet_repo::target::chunk_path(&new_chunk.id.to_hex()));
    let good = std::fs::read(&chunk_file).unwrap();
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0x01;
    std::fs::write(&chunk_file, &bad).unwrap();

    let err = agent.poll_once().unwrap_err();
    match &err {
        AgentError::Assemble {
            version,
            source: AssembleError::Hash { expected, .. },
        } => {
            assert_eq!(version, "2.0.0");
            assert_eq!(*expected, new_chunk.id);
        }
        other => panic!("expected a chunk hash mismatch, got {other:?}"),
    }
    assert!(device.state().trial().is_none(), "nothing is staged");
    assert!(!device
        .events(0)
        .iter()
        .any(|e| matches!(e, Event::Staged { .. })));
    relay.wire.take();

    // The chunk repaired (the delta still tampered): v2 is fetched through the chunks (only
    // what v1 lacks), written and staged.
    std::fs::write(&chunk_file, &good).unwrap();
    let outcome = agent.poll_once().unwrap();
    let (connections, up, down) = relay.wire.take();
    assert!(delta_files > 0);
    let PollOutcome::Staged {
        version,
        delta_from: None,
        bytes_fetched,
        round_trips,
        chunks_fetched,
        chunks_reused,
        slot_length,
        reboot_requested,
        ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    println!(
        "v1 -> v2: {bytes_fetched} body bytes in {round_trips} round trips \
         ({chunks_fetched} chunks fetched, {chunks_reused} reused); on the wire {connections} \
         connections, {up} bytes up, {down} bytes down; v2 slot {slot_length} bytes, all its \
         chunks compressed {} bytes, index {} bytes",
        p2.compressed_length, p2.index_length
    );
    assert_eq!(version, "2.0.0");
    assert!(*reboot_requested);
    // Root and timestamp share a connection, and so do the chunks (pipelined).
    assert!(connections + 2 < *round_trips, "{connections} connections");
    assert!(
        *bytes_fetched < p2.compressed_length,
        "fetched {bytes_fetched} of {}",
        p2.compressed_length
    );
    let written = std::fs::read(device.path("slotb")).unwrap();
    assert_eq!(&written[..v2.len()], &v2[..], "slot B holds exactly v2");
    let t = device.state().trial().cloned().unwrap();
    assert_eq!(
        (t.slot, t.version.to_string()),
        (limpet_state::Slot::B, "2.0.0".into())
    );
    // The tampered attempt ended with the connection: nothing was marked for it.
    assert_eq!(
        device.events(2),
        [
            Event::Staged {
                version: "2.0.0".into()
            },
            Event::Reboot
        ]
    );

    // The trial is staged: the agent does not check again, and asks for the reboot again.
    let outcome = agent.poll_once().unwrap();
    assert_eq!(
        outcome,
        PollOutcome::Busy(Busy::TrialStaged {
            version: "2.0.0".into(),
            reboot_requested: true
        })
    );
    assert_eq!(
        relay.wire.take().0,
        0,
        "a busy poll does not touch the network"
    );
}

/// A server that trickles bytes is cut off by the retrieval policy.
#[test]
fn a_trickling_server_is_a_slow_retrieval() {
    let v1 = release("1.0.0", b"");
    let repo = TestRepo::new();
    repo.publish(&v1);
    let server = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let slow = Relay::throttled(
        server.local_addr(),
        Throttle {
            bytes: 16,
            pause: Duration::from_millis(100),
        },
    );
    let device = Device::new(&v1, "1.0.0");
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = agent_config(&slow.url(), &repo, &device, state_dir.path());
    config.retrieval = RetrievalPolicy {
        min_bytes_per_sec: 1024,
        grace: Duration::from_millis(300),
        stall: Duration::from_secs(2),
        deadline: Duration::from_secs(10),
    };
    let err = Agent::new(config).poll_once().unwrap_err();
    assert!(
        matches!(
            &err,
            AgentError::Tuf {
                source: limpet_tuf::Error::SlowRetrieval { path, .. },
                ..
            } if path == "timestamp.json"
        ),
        "{err:?}"
    );
    assert!(device.state().trial().is_none());
}

/// Replaces every stored copy of the delta `D/version/from-from.delta` on the server (the
/// plain name and the hash-prefixed ones, which may be links to one file) with the same
/// bytes, one flipped; returns how many names.
fn tamper_delta(repo: &TestRepo, version: &str, from: &str) -> usize {
    let dir = repo
        .path()
        .join("targets")
        .join(common::DEVICE)
        .join(version);
    let suffix = format!("from-{from}.delta");
    let paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(&suffix))
        .collect();
    let mut bad = std::fs::read(&paths[0]).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    for path in &paths {
        std::fs::write(path, &bad).unwrap();
    }
    paths.len()
}

/// A device on the release before fetches only the delta: metadata and one small file,
/// not the chunks; the slot it writes is v2 byte for byte and PID 1 stages it.
#[test]
fn a_device_on_the_release_before_fetches_only_the_delta() {
    let v1 = release("1.0.0", b"");
    let v2 = release("2.0.0", b"one changed line");
    let repo = TestRepo::new();
    repo.publish(&v1);
    let p2 = repo.publish(&v2);
    let DeltaOutcome::Added { length, frames, .. } = p2.delta.clone() else {
        panic!("{:?}", p2.delta)
    };
    let server = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let relay = Relay::start(server.local_addr());
    let device = Device::new(&v1, "1.0.0");
    let state_dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::new(agent_config(&relay.url(), &repo, &device, state_dir.path()));

    let outcome = agent.poll_once().unwrap();
    let (connections, up, down) = relay.wire.take();
    let PollOutcome::Staged {
        version,
        delta_from,
        bytes_fetched,
        round_trips,
        chunks_fetched,
        ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    println!(
        "v1 -> v2 by delta: {bytes_fetched} body bytes in {round_trips} round trips (delta \
         {length} bytes, {frames} frames rebuilt); on the wire {connections} connections, {up} \
         bytes up, {down} bytes down; the chunk path would fetch new chunks of {} bytes",
        p2.chunk_bytes_written
    );
    assert_eq!(version, "2.0.0");
    assert_eq!(delta_from.as_deref(), Some("1.0.0"));
    assert_eq!(*chunks_fetched, 0);
    assert!(
        length < p2.chunk_bytes_written,
        "delta {length} vs chunks {}",
        p2.chunk_bytes_written
    );
    let written = std::fs::read(device.path("slotb")).unwrap();
    assert_eq!(&written[..v2.len()], &v2[..], "slot B holds exactly v2");
    assert_eq!(
        device.events(0).first(),
        Some(&Event::Staged {
            version: "2.0.0".into()
        })
    );
}

/// A delta that is properly signed but builds another slot (a publisher bug or a stolen
/// targets key): the agent's check against the signed slot hash stops it before PID 1 is
/// asked to mark anything, and the chunks install v2.
#[test]
fn a_signed_delta_that_builds_another_slot_is_not_staged() {
    let v1 = release("1.0.0", b"");
    let v2 = release("2.0.0", b"one changed line");
    let other = release("2.0.0", b"something else!!");
    let repo = TestRepo::new();
    repo.publish(&v1);
    let p2 = repo.publish(&v2);
    let wrong = limpet_delta::make(&v1, &other).unwrap().delta;
    let name = limpet_repo::target::delta_target_name(common::DEVICE, "2.0.0", "1.0.0");
    let custom = limpet_repo::DeltaTarget {
        slot: p2.slot.clone(),
        from: limpet_state::Version::parse("1.0.0").unwrap(),
    }
    .custom();
    limpet_tuf::Repository::open(
        &repo.path(),
        &repo.keys(),
        Box::new(limpet_tuf::SystemClock),
    )
    .unwrap()
    .add_target_bytes(&name, &wrong, Some(custom))
    .unwrap();

    let server = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let device = Device::new(&v1, "1.0.0");
    let state_dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}", server.local_addr());
    let mut agent = Agent::new(agent_config(&url, &repo, &device, state_dir.path()));
    let outcome = agent.poll_once().unwrap();
    assert!(
        matches!(&outcome, PollOutcome::Staged { delta_from: None, version, .. } if version == "2.0.0"),
        "{outcome:?}"
    );
    let written = std::fs::read(device.path("slotb")).unwrap();
    assert_eq!(
        &written[..v2.len()],
        &v2[..],
        "slot B holds v2, not what the delta built"
    );
    assert_eq!(
        device.events(2),
        [
            Event::Staged {
                version: "2.0.0".into()
            },
            Event::Reboot
        ]
    );
}

/// A damaged stored root would end every update: the agent provisions the shipped root
/// again, walks the chain to the repository's current root (here rotated once) and goes on.
#[test]
fn a_damaged_stored_root_is_provisioned_again_from_the_image() {
    let v1 = release("1.0.0", b"");
    let repo = TestRepo::new();
    repo.publish(&v1);
    let server = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let device = Device::new(&v1, "1.0.0");
    let state_dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}", server.local_addr());
    let mut agent = Agent::new(agent_config(&url, &repo, &device, state_dir.path()));
    assert!(matches!(
        agent.poll_once().unwrap(),
        PollOutcome::UpToDate { .. }
    ));

    // The root is rotated (version 2), then the device's stored copy is damaged.
    limpet_tuf::Repository::open(
        &repo.path(),
        &repo.keys(),
        Box::new(limpet_tuf::SystemClock),
    )
    .unwrap()
    .rotate_root(3, 2)
    .unwrap();
    let stored = agent.metadata_dir().join("root.json");
    std::fs::write(&stored, b"{\"signed\": tr").unwrap();

    let outcome = agent.poll_once().unwrap();
    assert!(
        matches!(&outcome, PollOutcome::UpToDate { running, .. } if running == "1.0.0"),
        "{outcome:?}"
    );
    let root = limpet_tuf::client::verify_root(&std::fs::read(&stored).unwrap()).unwrap();
    assert_eq!(root.version, 2, "walked from the shipped root to version 2");
}

/// After each refresh the agent tells PID 1 the signed time and the model's end of support
/// it verified, and PID 1's time record takes them; the device's floor (from the status)
/// makes the agent's TUF client refuse a timestamp issued before it.
#[test]
fn the_agent_reports_the_verified_time_and_support_to_pid1() {
    let v1 = release("1.0.0", b"");
    let repo = TestRepo::new();
    repo.publish(&v1);
    let server = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", server.local_addr());
    let issued = || {
        let text = std::fs::read(repo.path().join("metadata/timestamp.json")).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let t = doc["signed"]["x-limpet-issued"]
            .as_str()
            .unwrap()
            .to_owned();
        u64::try_from(limpet_tuf::UnixTime::parse(&t).unwrap().as_secs()).unwrap()
    };

    let device = Device::new(&v1, "1.0.0");
    let state_dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::new(agent_config(&url, &repo, &device, state_dir.path()));
    agent.poll_once().unwrap();
    let time = device.time();
    assert_eq!(time.floor().as_secs(), issued());
    assert_eq!(time.newest_signed().map(|t| t.as_secs()), Some(issued()));

    limpet_repo::extend_support(
        &repo.path(),
        &repo.keys(),
        common::DEVICE,
        "2101-12-31",
        Vec::new(),
    )
    .unwrap();
    agent.poll_once().unwrap();
    // 2102-01-01T00:00:00Z.
    assert_eq!(
        device.time().parts().support_until.map(|t| t.as_secs()),
        Some(4_165_516_800)
    );
    assert!(device.time().floor().as_secs() >= issued());

    // A device running a slot built after every timestamp of the repository (a clock gone
    // wrong on the publisher, or metadata withheld): the agent refuses them by name.
    let later = Device::built_at(
        &v1,
        "1.0.0",
        limpet_lifecycle::WallTime::from_secs(issued() + 3600),
    );
    let state_dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::new(agent_config(&url, &repo, &later, state_dir.path()));
    let err = agent.poll_once().unwrap_err();
    assert!(
        matches!(
            &err,
            AgentError::Tuf {
                source: limpet_tuf::Error::IssuedBelowFloor { .. },
                ..
            }
        ),
        "{err}"
    );
}

/// The vendor replaces the model's Roughtime server list in signed targets metadata: the
/// agent verifies it with the rest of the refresh and gives it to PID 1. A list the device
/// would refuse is refused by the publisher; one written into targets.json all the same (a
/// publisher that skipped the check) is not sent to PID 1.
#[test]
fn the_agent_gives_pid1_the_signed_roughtime_list() {
    let v1 = release("1.0.0", b"");
    let repo = TestRepo::new();
    repo.publish(&v1);
    let server = serve(&repo.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", server.local_addr());
    let entry = |name: &str, key: &str| limpet_repo::RoughtimeEntry {
        name: name.to_owned(),
        address: "192.0.2.10:2002".parse().unwrap(),
        key: key.to_owned(),
    };
    const KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    // The publisher refuses a bad key by name, and writes nothing.
    let err = limpet_repo::set_roughtime_servers(
        &repo.path(),
        &repo.keys(),
        common::DEVICE,
        vec![entry("rt1", "c2hvcnQ=")],
        Vec::new(),
    )
    .unwrap_err();
    assert!(
        limpet_error_chain::one_line(&err)
            .ends_with("server \"rt1\": Roughtime key of rt1: 5 bytes, an Ed25519 key is 32"),
        "{err}"
    );

    limpet_repo::set_roughtime_servers(
        &repo.path(),
        &repo.keys(),
        common::DEVICE,
        vec![entry("rt1", KEY)],
        Vec::new(),
    )
    .unwrap();
    let device = Device::new(&v1, "1.0.0");
    let state_dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::new(agent_config(&url, &repo, &device, state_dir.path()));
    agent.poll_once().unwrap();
    let events = device.events(1);
    assert!(
        matches!(
            events.as_slice(),
            [Event::Roughtime { servers }]
                if servers.len() == 1 && servers[0].name == "rt1" && servers[0].key == KEY
        ),
        "{events:?}"
    );

    // Attack: a signed list with a key that is not one (written past the publisher's
    // check): the agent refuses it and PID 1 hears nothing.
    let tuf = limpet_tuf::Repository::open(
        &repo.path(),
        &repo.keys(),
        Box::new(limpet_tuf::SystemClock),
    )
    .unwrap();
    tuf.set_targets_field(
        limpet_repo::ROUGHTIME_FIELD,
        serde_json::json!({ common::DEVICE: [
            {"name": "rt1", "address": "192.0.2.10:2002", "key": "c2hvcnQ="}
        ]}),
    )
    .unwrap();
    agent.poll_once().unwrap();
    assert_eq!(device.events(2).len(), 1, "{:?}", device.events(2));
}
