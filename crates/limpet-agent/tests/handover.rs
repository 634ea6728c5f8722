#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Owner handover, the TUF side (issue 13 item 4), in process with every part real: the
//! vendor's and the owner's repositories written by limpet-repo and served over HTTP, the
//! statement signed with the vendor's root keys, the agent taking the owner's request
//! against PID 1's time floor (limpet-install's `InstallServer` with a time record).

mod common;

use common::{agent_config, release, release_signed, Device, TestRepo};
use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::SigningKey;
use limpet_agent::owner::{ENROLMENT_FILE, OWNER_METADATA_DIR, REMOTE_REQUEST, REQUEST_FILE};
use limpet_agent::{Agent, AgentError, PollOutcome};
use limpet_lifecycle::WallTime;
use limpet_repo::serve::serve;
use limpet_repo::{HandoverError, OwnerRequest};
use limpet_tuf::UnixTime;

/// 2020-01-01: the build time of the test device's slot, its time floor before it has
/// verified any signed time.
const BUILT: u64 = 1_577_836_800;

fn owner_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The owner's request: `statement`, the owner repository's first root, the owner's key.
fn request(statement: &std::path::Path, owner: &TestRepo) -> OwnerRequest {
    OwnerRequest {
        statement: json(statement),
        root: json(&owner.root()),
        image_key: owner_key()
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap(),
    }
}

fn sign(repo: &TestRepo, day: &str) -> std::path::PathBuf {
    let (path, _) = limpet_repo::sign_handover(
        &repo.path(),
        &repo.keys(),
        common::DEVICE,
        day,
        None,
        Vec::new(),
    )
    .unwrap();
    path
}

/// The statement checked on its own: refused before its date, under a wrong key, for
/// another model, and with no floor; taken once the floor has passed the date.
#[test]
fn the_statement_is_refused_before_its_date_and_under_a_wrong_key() {
    let vendor = TestRepo::new();
    let root = limpet_tuf::client::verify_root(&std::fs::read(vendor.root()).unwrap()).unwrap();
    let path = sign(&vendor, "2030-01-01");
    let bytes = std::fs::read(&path).unwrap();
    let date = UnixTime::parse("2030-01-01T00:00:00Z").unwrap();
    let check = |floor| limpet_repo::verify_handover(&bytes, &root, common::DEVICE, floor);

    let just_before = UnixTime::from_secs(date.as_secs() - 1);
    assert!(matches!(
        check(Some(just_before)),
        Err(HandoverError::NotYet { after, floor }) if after == date && floor == just_before
    ));
    assert!(matches!(check(None), Err(HandoverError::NoFloor)));
    assert_eq!(check(Some(date)).unwrap().after, date);
    assert!(matches!(
        limpet_repo::verify_handover(&bytes, &root, "lamp", Some(date)),
        Err(HandoverError::Device { .. })
    ));

    // Attack: a statement signed by other root keys (anyone can run `limpet repo init`).
    let other = TestRepo::new();
    let forged = std::fs::read(sign(&other, "2000-01-01")).unwrap();
    let err = limpet_repo::verify_handover(&forged, &root, common::DEVICE, Some(date)).unwrap_err();
    assert!(
        matches!(
            &err,
            HandoverError::Signature {
                root_version: 1,
                source: limpet_tuf::Error::ThresholdNotMet { .. }
            }
        ),
        "{err:?}"
    );

    // Attack: the vendor's genuine statement with its date moved earlier.
    let mut moved: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    moved["signed"]["after"] = "2000-01-01T00:00:00Z".into();
    let moved = serde_json::to_vec(&moved).unwrap();
    assert!(matches!(
        limpet_repo::verify_handover(&moved, &root, common::DEVICE, Some(just_before)),
        Err(HandoverError::Signature { .. })
    ));

    // Attack: the root keys asked to sign TUF metadata as a "statement" (a root that
    // would then pass for the vendor's next root): refused before any key signs.
    let tuf = limpet_tuf::Repository::open(
        &vendor.path(),
        &vendor.keys(),
        Box::new(limpet_tuf::SystemClock),
    )
    .unwrap();
    for role in ["root", "timestamp", "snapshot", "targets"] {
        assert!(matches!(
            tuf.sign_with_root_keys(serde_json::json!({"_type": role, "version": 2})),
            Err(limpet_tuf::RepoError::NotAStatement { type_ }) if type_ == role
        ));
    }

    // Attack: TUF metadata signed by the same root keys passed off as a statement.
    assert!(matches!(
        limpet_repo::verify_handover(
            &std::fs::read(vendor.root()).unwrap(),
            &root,
            common::DEVICE,
            Some(date)
        ),
        Err(HandoverError::Content { .. })
    ));
}

/// The vendor's metadata failed the owner's root's threshold.
fn vendor_refused(poll: Result<PollOutcome, AgentError>) {
    assert!(
        matches!(
            &poll,
            Err(AgentError::Tuf {
                source: limpet_tuf::Error::ThresholdNotMet { .. },
                ..
            })
        ),
        "{poll:?}"
    );
}

/// The owner request block the boot loader reads in the device's `state` partition.
fn loader_request(device: &Device) -> Option<limpet_state::owner::Request> {
    use limpet_state::owner::{Request, REQUEST_BLOCK, REQUEST_OFFSET};
    let bytes = std::fs::read(&device.partitions.state).unwrap();
    let at = usize::try_from(REQUEST_OFFSET).unwrap();
    let block = bytes.get(at..at + REQUEST_BLOCK)?;
    Request::parse_block(block).unwrap()
}

/// 64 hex digits of `key`'s public half, as PID 1 reports it in `owner_mode`.
fn hex_key(key: &SigningKey) -> String {
    key.verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The parties of a handover: the vendor's repository with v1 and its statement (taking
/// effect on 2024-01-01), the owner's repository with v2 signed by the owner's image key,
/// and the owner's server answering with their request beside it.
struct Parties {
    v1: Vec<u8>,
    vendor: TestRepo,
    statement: std::path::PathBuf,
    owner: TestRepo,
    request_json: Vec<u8>,
    owner_url: String,
    _owner_server: limpet_repo::serve::Server,
}

fn parties() -> Parties {
    let v1 = release("1.0.0", b"");
    let vendor = TestRepo::new();
    vendor.publish(&v1);
    let statement = sign(&vendor, "2024-01-01");
    let owner = TestRepo::new();
    let v2 = release_signed("2.0.0", b"owner", &owner_key());
    owner.publish_signed(&v2, &owner_key());
    let request_json = serde_json::to_vec(&request(&statement, &owner)).unwrap();
    std::fs::write(owner.path().join(REMOTE_REQUEST), &request_json).unwrap();
    let owner_server = serve(&owner.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    Parties {
        v1,
        vendor,
        statement,
        owner,
        request_json,
        owner_url: format!("http://{}", owner_server.local_addr()),
        _owner_server: owner_server,
    }
}

/// Vendor v1 → the date passes on the device's floor (not its clock) → the owner's request
/// asks the boot loader, and moves nothing until a person confirms it → after the
/// confirmation (and the loader's wipe) the request, served at the repository's address by
/// the owner, is enrolled → the owner's v2 from the owner's repository is staged → the
/// vendor's v3 is refused, also after the stored root is damaged.
#[test]
fn after_handover_the_owners_repository_is_followed_and_the_vendors_refused() {
    // The statement takes effect on 2024-01-01 (the device, built 2020-01-01, counts its
    // uptime on the host's boot clock here: years short of it). The owner serves their
    // request beside their repository.
    let Parties {
        v1,
        vendor,
        statement,
        owner,
        request_json,
        owner_url,
        _owner_server,
    } = parties();
    let vendor_server = serve(&vendor.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let vendor_url = format!("http://{}", vendor_server.local_addr());

    // Before the press: the loader reports vendor mode.
    let device = Device::reporting(
        &v1,
        "1.0.0",
        WallTime::from_secs(BUILT),
        &common::image_key(),
        "vendor",
    );
    let state = tempfile::tempdir().unwrap();
    let config = |url: &str, device: &Device, state: &std::path::Path| {
        agent_config(url, &vendor, device, state)
    };

    // The host clock (the device's RTC here) is years past the date, but the device's
    // trusted time is its build time, 2020-01-01, plus the uptime it counted, until it has
    // verified a signed time: the request is refused and left in place.
    std::fs::write(state.path().join(REQUEST_FILE), &request_json).unwrap();
    assert!(device.time().floor().as_secs() < 1_704_067_200);
    let mut agent = Agent::new(config(&vendor_url, &device, state.path()));
    assert!(matches!(
        agent.poll_once().unwrap(),
        PollOutcome::UpToDate { .. }
    ));
    assert!(!state.path().join(ENROLMENT_FILE).exists());
    assert!(state.path().join(REQUEST_FILE).exists());
    assert_eq!(loader_request(&device), None, "the loader is not asked");

    // That refresh raised the floor to the vendor's signed time (today): the next poll
    // finds the request holds and asks the boot loader to hand the device over to the
    // owner's image key. Nothing else moves: no person has confirmed it, so the vendor's
    // repository is still the one trusted.
    assert!(device.time().floor().as_secs() >= 1_704_067_200);
    assert!(matches!(
        agent.poll_once().unwrap(),
        PollOutcome::UpToDate { .. }
    ));
    assert_eq!(
        loader_request(&device),
        Some(limpet_state::owner::Request::HandOver {
            key: owner_key().verifying_key().to_bytes()
        })
    );
    assert!(!state.path().join(ENROLMENT_FILE).exists());

    // Attack: whoever answers at the repository's address (here the owner's server; as
    // well a stranger's) serves a request that holds. Without the press it moves no trust
    // anchor: the vendor's refresh fails there, the request only asks the loader again.
    std::fs::remove_file(state.path().join(REQUEST_FILE)).unwrap();
    let err = Agent::new(config(&owner_url, &device, state.path()))
        .poll_once()
        .unwrap_err();
    assert!(matches!(err, AgentError::Tuf { .. }), "{err:?}");
    assert!(!state.path().join(ENROLMENT_FILE).exists());
    drop(device);

    // The owner typed the code at the console: the loader wiped the data partition (a new,
    // empty state directory) and reports handing over to the owner's key; the time record
    // in the `state` partition, which the wipe keeps, holds a floor past the date. The
    // owner's server answers at the repository's address: the vendor's metadata fails
    // there, the agent takes the request served beside it, enrols, and stages v2 signed by
    // the owner's image key, in one poll.
    let past_date = WallTime::from_secs(1_735_689_600);
    let confirmed = format!("handing-over:{}", hex_key(&owner_key()));
    let device = Device::reporting(&v1, "1.0.0", past_date, &owner_key(), &confirmed);
    let state = tempfile::tempdir().unwrap();
    let mut agent = Agent::new(config(&owner_url, &device, state.path()));
    let outcome = agent.poll_once().unwrap();
    assert!(
        matches!(&outcome, PollOutcome::Staged { version, .. } if version == "2.0.0"),
        "{outcome:?}"
    );
    assert!(state.path().join(ENROLMENT_FILE).exists());
    assert_eq!(
        loader_request(&device),
        None,
        "confirmed: the loader is not asked again"
    );
    let staged = device.state();
    assert_eq!(
        staged.trial().map(|t| t.version.to_string()).as_deref(),
        Some("2.0.0")
    );

    // Attack: a loader handing over to another key than the request's (a request swapped
    // after the press): refused, nothing enrolled.
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let other = format!("handing-over:{}", hex_key(&stranger));
    let dev_other = Device::reporting(&v1, "1.0.0", past_date, &stranger, &other);
    let state_other = tempfile::tempdir().unwrap();
    let err = Agent::new(config(&owner_url, &dev_other, state_other.path()))
        .poll_once()
        .unwrap_err();
    assert!(matches!(err, AgentError::Tuf { .. }), "{err:?}");
    assert!(!state_other.path().join(ENROLMENT_FILE).exists());
    assert!(matches!(
        limpet_agent::owner::take(
            state_other.path(),
            &limpet_tuf::client::verify_root(&std::fs::read(vendor.root()).unwrap()).unwrap(),
            common::DEVICE,
            Some(UnixTime::from_secs(1_735_689_600)),
            request(&statement, &owner),
            Some(&other),
            |_| panic!("the loader is asked nothing"),
        ),
        Err(limpet_agent::owner::OwnerError::OtherKey { confirmed, .. }) if confirmed == hex_key(&stranger)
    ));

    // The vendor publishes v3 with its keys: refused, by name of the threshold.
    let v3 = release("3.0.0", b"vendor");
    vendor.publish(&v3);
    let dev3 = Device::with_key(&v1, "1.0.0", WallTime::from_secs(BUILT), &owner_key());
    let config3 = |url: &str| agent_config(url, &vendor, &dev3, state.path());
    vendor_refused(Agent::new(config3(&vendor_url)).poll_once());

    // Attack: the stored owner root damaged, hoping the agent falls back to the vendor's
    // shipped root. It provisions the enrolled root again; the vendor stays refused.
    std::fs::write(
        state.path().join(OWNER_METADATA_DIR).join("root.json"),
        b"{\"signed\": tr",
    )
    .unwrap();
    vendor_refused(Agent::new(config3(&vendor_url)).poll_once());
    let stored = std::fs::read(state.path().join(OWNER_METADATA_DIR).join("root.json")).unwrap();
    assert_eq!(
        limpet_tuf::client::verify_root(&stored).unwrap().keys,
        limpet_tuf::client::verify_root(&std::fs::read(owner.root()).unwrap())
            .unwrap()
            .keys
    );
    assert!(matches!(
        Agent::new(config3(&owner_url)).poll_once().unwrap(),
        PollOutcome::UpToDate { .. } | PollOutcome::Staged { .. }
    ));

    // A damaged enrolment stops updates by name, never falls back to the vendor.
    std::fs::write(state.path().join(ENROLMENT_FILE), b"{").unwrap();
    let dev4 = Device::with_key(&v1, "1.0.0", WallTime::from_secs(BUILT), &owner_key());
    let config4 = agent_config(&vendor_url, &vendor, &dev4, state.path());
    let err = Agent::new(config4).poll_once().unwrap_err();
    assert!(
        matches!(
            &err,
            AgentError::Owner(limpet_agent::owner::OwnerError::Damaged { .. })
        ),
        "{err:?}"
    );
}

/// A power cut anywhere in the agent's half of the handover leaves one of two consistent
/// devices (docs/end-of-life.md, "The enrolment"): cut while the enrolment's temporary file
/// is written (any prefix of it on the disk, nothing renamed), the device is not enrolled,
/// still refuses the vendor's metadata under nobody's root but the vendor's, and the next
/// poll enrols whole and stages the owner's v2; cut after the rename but before the owner's
/// metadata was provisioned, the next poll provisions it from the enrolment and follows the
/// owner, and the vendor's v3 stays refused. The loader's half (its request block and the
/// wipe) is cut at every write in limpet-boot's
/// `a_power_cut_at_every_write_of_the_hand_over_leaves_a_consistent_mode`.
#[test]
fn a_power_cut_during_the_enrolment_leaves_one_of_two_consistent_devices() {
    // (Every part bound: a part left out is dropped here, and the owner's repository with it.)
    let Parties {
        v1,
        vendor,
        owner: _owner,
        owner_url,
        _owner_server,
        ..
    } = parties();
    let v3 = release("3.0.0", b"vendor");
    vendor.publish(&v3);
    let vendor_server = serve(&vendor.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let vendor_url = format!("http://{}", vendor_server.local_addr());

    // The loader confirmed (handing over to the owner's key) and the floor is past the date.
    let past_date = WallTime::from_secs(1_735_689_600);
    let confirmed = format!("handing-over:{}", hex_key(&owner_key()));
    // Each poll on a device of its own: a staged trial would refuse a second stage.
    let staged_v2 = |state: &std::path::Path| {
        let device = Device::reporting(&v1, "1.0.0", past_date, &owner_key(), &confirmed);
        let outcome = Agent::new(agent_config(&owner_url, &vendor, &device, state))
            .poll_once()
            .unwrap();
        assert!(
            matches!(&outcome, PollOutcome::Staged { version, .. } if version == "2.0.0"),
            "{outcome:?}"
        );
    };

    // An enrolment's fields but the floor, which the device's counted uptime moves on.
    let but_floor = |bytes: &[u8]| {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        v.as_object_mut().unwrap().remove("floor").unwrap();
        v
    };
    // The whole enrolment, as an uninterrupted poll writes it.
    let whole_state = tempfile::tempdir().unwrap();
    staged_v2(whole_state.path());
    let whole = std::fs::read(whole_state.path().join(ENROLMENT_FILE)).unwrap();
    let tmp_name = std::path::Path::new(ENROLMENT_FILE).with_file_name(".enrolment.json.tmp");

    // Cut while the temporary file was written: at its start, inside it, one byte short,
    // and whole but not yet renamed.
    for cut in [0, whole.len() / 3, whole.len() - 1, whole.len()] {
        let state = tempfile::tempdir().unwrap();
        let tmp = state.path().join(&tmp_name);
        std::fs::create_dir_all(tmp.parent().unwrap()).unwrap();
        std::fs::write(&tmp, &whole[..cut]).unwrap();
        // Not enrolled; the next poll takes the request again and enrols whole.
        assert!(!state.path().join(ENROLMENT_FILE).exists(), "cut at {cut}");
        staged_v2(state.path());
        assert_eq!(
            but_floor(&std::fs::read(state.path().join(ENROLMENT_FILE)).unwrap()),
            but_floor(&whole),
            "cut at {cut}: the enrolment is whole"
        );
        assert!(
            !tmp.exists(),
            "cut at {cut}: the temporary file was renamed"
        );
    }

    // Cut after the rename, before the owner's metadata directory was made: the enrolment
    // alone is enough. The vendor's v3 is refused under the owner's root provisioned from
    // it, and the owner's repository is followed.
    let state = tempfile::tempdir().unwrap();
    let enrolment = state.path().join(ENROLMENT_FILE);
    std::fs::create_dir_all(enrolment.parent().unwrap()).unwrap();
    std::fs::write(&enrolment, &whole).unwrap();
    assert!(!state.path().join(OWNER_METADATA_DIR).exists());
    let handed = Device::with_key(&v1, "1.0.0", past_date, &owner_key());
    vendor_refused(
        Agent::new(agent_config(&vendor_url, &vendor, &handed, state.path())).poll_once(),
    );
    assert!(state
        .path()
        .join(OWNER_METADATA_DIR)
        .join("root.json")
        .exists());
    let outcome = Agent::new(agent_config(&owner_url, &vendor, &handed, state.path()))
        .poll_once()
        .unwrap();
    assert!(
        matches!(&outcome, PollOutcome::Staged { version, .. } if version == "2.0.0"),
        "{outcome:?}"
    );
}

/// Requests that must not hand a device over: a statement under other root keys, the
/// vendor's own root passed as the owner's, an image key that is not Ed25519; and a second
/// request once handed over.
#[test]
fn bad_owner_requests_are_refused_and_nothing_is_written() {
    let vendor = TestRepo::new();
    let root = limpet_tuf::client::verify_root(&std::fs::read(vendor.root()).unwrap()).unwrap();
    let owner = TestRepo::new();
    let good = sign(&vendor, "2000-01-01");
    let now = Some(UnixTime::from_secs(i64::try_from(BUILT).unwrap()));
    let state = tempfile::tempdir().unwrap();
    let enrol =
        |r: OwnerRequest| limpet_agent::owner::enrol(state.path(), &root, common::DEVICE, now, r);
    use limpet_agent::owner::OwnerError;

    let other = TestRepo::new();
    let forged = sign(&other, "2000-01-01");
    assert!(matches!(
        enrol(request(&forged, &owner)),
        Err(OwnerError::Refused(HandoverError::Signature { .. }))
    ));
    let mut same = request(&good, &owner);
    same.root = json(&vendor.root());
    assert!(matches!(
        enrol(same),
        Err(OwnerError::Refused(HandoverError::SameRoot))
    ));
    let mut bad_key = request(&good, &owner);
    bad_key.image_key = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into();
    assert!(matches!(
        enrol(bad_key),
        Err(OwnerError::Refused(HandoverError::ImageKey { .. }))
    ));
    let mut unsigned_root = request(&good, &owner);
    unsigned_root.root["signatures"] = serde_json::json!([]);
    assert!(matches!(
        enrol(unsigned_root),
        Err(OwnerError::Refused(HandoverError::OwnerRoot { .. }))
    ));
    assert!(!state.path().join(ENROLMENT_FILE).exists());

    enrol(request(&good, &owner)).unwrap();
    assert!(matches!(
        enrol(request(&good, &TestRepo::new())),
        Err(OwnerError::AlreadyEnrolled { .. })
    ));
}

/// PID 1's status with the time `floor` and `earliest` time it reports.
fn status(floor: Option<u64>, earliest: Option<u64>) -> limpet_install_api::DeviceStatus {
    serde_json::from_value(serde_json::json!({
        "running_version": "1.0.0", "running_length": 4096, "inactive_capacity": 8192,
        "floor": "1.0.0", "on_probation": false,
        "time_floor": floor, "earliest_time": earliest,
    }))
    .unwrap()
}

/// A vendor that stops signing its timestamp before the handover date does not strand its
/// devices: the date is checked against the device's earliest time (its floor plus the
/// uptime it counted since, or a Roughtime raise; never ahead of the true time, never the
/// clock), which passes the date by itself. An older PID 1 that reports only the floor is
/// held to the floor.
#[test]
fn the_date_passes_with_the_devices_counted_time_when_the_vendor_stops_signing() {
    use limpet_agent::owner::{handover_time, take, OwnerError, Taken};
    let vendor = TestRepo::new();
    let root = limpet_tuf::client::verify_root(&std::fs::read(vendor.root()).unwrap()).unwrap();
    let owner = TestRepo::new();
    let statement = sign(&vendor, "2030-01-01");
    let date: u64 = 1_893_456_000;
    // The vendor's last signed time: half a year before the date.
    let last_signed = date - 183 * 86_400;
    let state = tempfile::tempdir().unwrap();
    let try_take = |status: &limpet_install_api::DeviceStatus| {
        let mut asked = None;
        let taken = take(
            state.path(),
            &root,
            common::DEVICE,
            handover_time(status),
            request(&statement, &owner),
            Some("vendor"),
            |key| {
                asked = Some(key);
                Ok(())
            },
        );
        (taken, asked)
    };

    // A second before the date by the counted time: not yet, naming that time.
    let (taken, asked) = try_take(&status(Some(last_signed), Some(date - 1)));
    assert!(
        matches!(
            &taken,
            Err(OwnerError::Refused(HandoverError::NotYet { floor, .. }))
                if floor.as_secs() == i64::try_from(date - 1).unwrap()
        ),
        "{taken:?}"
    );
    assert_eq!(asked, None);
    // An older PID 1 (no earliest time): held to the floor, the vendor's last signed time.
    let (taken, _) = try_take(&status(Some(last_signed), None));
    assert!(
        matches!(&taken, Err(OwnerError::Refused(HandoverError::NotYet { floor, .. }))
            if floor.as_secs() == i64::try_from(last_signed).unwrap()),
        "{taken:?}"
    );
    // No time record at all: no date can be known to have passed.
    let (taken, _) = try_take(&status(None, None));
    assert!(
        matches!(&taken, Err(OwnerError::Refused(HandoverError::NoFloor))),
        "{taken:?}"
    );

    // The device counted its way past the date (the vendor signed nothing since): the
    // request holds and the loader is asked for the owner's key.
    let (taken, asked) = try_take(&status(Some(last_signed), Some(date + 60)));
    let key = owner_key().verifying_key().to_bytes();
    assert!(
        matches!(&taken, Ok(Taken::LoaderAsked { key: k }) if *k == key),
        "{taken:?}"
    );
    assert_eq!(asked, Some(key));
    assert!(!state.path().join(ENROLMENT_FILE).exists());
}
