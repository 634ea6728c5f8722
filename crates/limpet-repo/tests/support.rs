//! The support window's signed extension, from `extend_support` to the device's rules:
//! an extension accepted (`support-extension`), a shortening refused by the publisher and
//! by the device (`support-shortening`), an extension signed by a wrong key refused before
//! it is read (`support-wrong-key`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use limpet_lifecycle::{SlotLifecycle, SupportError, TimeState, Uptime, WallTime};
use limpet_repo::{extend_support, init_repo, PublishError, SupportStatement, SUPPORT_FIELD};
use limpet_tuf::keys::RoleKey;
use limpet_tuf::metadata::{sign_value, Role};
use limpet_tuf::transport::{FileTransport, RetrievalPolicy};
use limpet_tuf::{Client, Error, Repository, SystemClock, UnixTime};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const DEVICE: &str = "thermostat";

struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let f = Fixture { tmp };
        init_repo(&f.repo(), &f.keys()).unwrap();
        f
    }
    fn repo(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }
    fn keys(&self) -> PathBuf {
        self.tmp.path().join("keys")
    }
    fn meta(&self) -> PathBuf {
        self.repo().join("metadata")
    }
    /// The device's client, provisioned with root version 1 once, refreshed.
    fn refreshed_client(&self) -> Result<Client, Error> {
        let dir = self.tmp.path().join("device");
        if !dir.join("root.json").exists() {
            let root = std::fs::read(self.meta().join("1.root.json")).unwrap();
            Client::init(&dir, &root).unwrap();
        }
        let transport = FileTransport::new(self.meta(), RetrievalPolicy::default());
        let mut client = Client::open(&dir, Box::new(transport), Box::new(SystemClock))?;
        client.refresh()?;
        Ok(client)
    }
    /// The statement for the device in the targets the device verified.
    fn statement(&self) -> Option<SupportStatement> {
        let client = self.refreshed_client().unwrap();
        SupportStatement::from_targets(&client.trusted_targets().unwrap().extra, DEVICE).unwrap()
    }
    /// The private key of `role` in the keys directory.
    fn key(&self, role: Role) -> RoleKey {
        let root = Repository::open(&self.repo(), &self.keys(), Box::new(SystemClock))
            .unwrap()
            .root()
            .unwrap();
        let id = root.roles[role.name()].keyids[0].clone();
        std::fs::read_dir(self.keys())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pem"))
            .filter_map(|p| RoleKey::load(&p).ok())
            .find(|k| *k.id() == id)
            .unwrap()
    }
}

/// A device whose slot supports it until 2035-01-01 (last day 2034-12-31).
fn slot() -> SlotLifecycle {
    SlotLifecycle {
        built: secs("2026-01-01T00:00:00Z"),
        support_until: Some(secs("2035-01-01T00:00:00Z")),
        freshness: Some(Uptime::from_days(45)),
    }
}

fn secs(t: &str) -> WallTime {
    WallTime::from_secs(u64::try_from(UnixTime::parse(t).unwrap().as_secs()).unwrap())
}

fn wall(t: UnixTime) -> WallTime {
    WallTime::from_secs(u64::try_from(t.as_secs()).unwrap())
}

/// Re-signs metadata file `name` (and its `N.name` copy) after `edit`, with `key`; returns
/// the new version and bytes.
fn resign(meta: &Path, name: &str, key: &RoleKey, edit: impl FnOnce(&mut Value)) -> (u64, Vec<u8>) {
    let doc: Value = serde_json::from_slice(&std::fs::read(meta.join(name)).unwrap()).unwrap();
    let mut signed = doc["signed"].clone();
    let version = signed["version"].as_u64().unwrap() + 1;
    signed["version"] = json!(version);
    edit(&mut signed);
    let bytes = sign_value(signed, &[key]).unwrap();
    std::fs::write(meta.join(name), &bytes).unwrap();
    if name != "timestamp.json" {
        std::fs::write(meta.join(format!("{version}.{name}")), &bytes).unwrap();
    }
    (version, bytes)
}

/// What snapshot or timestamp lists about `bytes` of `version`.
fn listing(version: u64, bytes: &[u8]) -> Value {
    json!({
        "version": version,
        "length": bytes.len(),
        "hashes": {"sha256": hex::encode(Sha256::digest(bytes))},
    })
}

#[test]
fn a_signed_extension_reaches_the_device_and_moves_its_end() {
    let fx = Fixture::new();
    assert_eq!(fx.statement(), None);
    let made = extend_support(&fx.repo(), &fx.keys(), DEVICE, "2039-12-31", Vec::new()).unwrap();
    assert_eq!(made.until, UnixTime::parse("2040-01-01T00:00:00Z").unwrap());
    let seen = fx.statement().unwrap();
    assert_eq!(seen, made);
    let device = TimeState::factory(&slot())
        .extend_support(&slot(), wall(seen.until))
        .unwrap();
    assert_eq!(
        device.support_until(&slot()),
        Some(secs("2040-01-01T00:00:00Z"))
    );
    // Other models' statements stay as they were.
    extend_support(&fx.repo(), &fx.keys(), "lamp", "2030-06-30", Vec::new()).unwrap();
    assert_eq!(fx.statement(), Some(made));
}

/// `support-shortening`: the publisher refuses an earlier end; an earlier end signed with
/// the real targets key anyway (a mistake, or a stolen key) is refused by the device, which
/// keeps the end it accepted.
#[test]
fn a_shortening_is_refused_by_the_publisher_and_by_the_device() {
    let fx = Fixture::new();
    extend_support(&fx.repo(), &fx.keys(), DEVICE, "2039-12-31", Vec::new()).unwrap();
    let err = extend_support(&fx.repo(), &fx.keys(), DEVICE, "2037-12-31", Vec::new()).unwrap_err();
    assert!(
        matches!(&err, PublishError::SupportShortening { device, listed, offered }
            if device == DEVICE && listed == "2039-12-31" && offered == "2037-12-31"),
        "{err}"
    );
    let accepted = TimeState::factory(&slot())
        .extend_support(&slot(), wall(fx.statement().unwrap().until))
        .unwrap();
    // Written around the publisher's check, signed by the targets key.
    Repository::open(&fx.repo(), &fx.keys(), Box::new(SystemClock))
        .unwrap()
        .set_targets_field(SUPPORT_FIELD, json!({ DEVICE: "2037-12-31" }))
        .unwrap();
    let shorter = fx.statement().unwrap();
    assert_eq!(shorter.last_day, "2037-12-31");
    assert_eq!(
        accepted.extend_support(&slot(), wall(shorter.until)),
        Err(SupportError::Shortening {
            accepted: secs("2040-01-01T00:00:00Z"),
            offered: secs("2038-01-01T00:00:00Z"),
        })
    );
    // Below the slot's own end, on a device that accepted nothing: refused too.
    Repository::open(&fx.repo(), &fx.keys(), Box::new(SystemClock))
        .unwrap()
        .set_targets_field(SUPPORT_FIELD, json!({ DEVICE: "2030-12-31" }))
        .unwrap();
    let below = fx.statement().unwrap();
    assert!(matches!(
        TimeState::factory(&slot()).extend_support(&slot(), wall(below.until)),
        Err(SupportError::Shortening { .. })
    ));
    // The publisher refuses a date that is not one.
    assert!(matches!(
        extend_support(&fx.repo(), &fx.keys(), DEVICE, "2040-02-30", Vec::new()),
        Err(PublishError::SupportDate { .. })
    ));
}

/// `support-wrong-key`: an extension in a targets.json signed by the timestamp key (online,
/// and not the targets role's), with snapshot and timestamp properly re-signed around it, is
/// refused by the threshold check: the device never reads the statement.
#[test]
fn an_extension_signed_by_a_wrong_key_is_refused() {
    let fx = Fixture::new();
    fx.refreshed_client().unwrap();
    let wrong = fx.key(Role::Timestamp);
    let meta = fx.meta();
    let (tv, targets) = resign(&meta, "targets.json", &wrong, |signed| {
        signed[SUPPORT_FIELD] = json!({ DEVICE: "2049-12-31" });
    });
    let (sv, snapshot) = resign(&meta, "snapshot.json", &fx.key(Role::Snapshot), |signed| {
        signed["meta"]["targets.json"] = listing(tv, &targets);
    });
    resign(
        &meta,
        "timestamp.json",
        &fx.key(Role::Timestamp),
        |signed| {
            signed["meta"]["snapshot.json"] = listing(sv, &snapshot);
        },
    );
    let err = fx.refreshed_client().unwrap_err();
    assert!(
        matches!(&err, Error::ThresholdNotMet { role, .. } if role == "targets"),
        "{err}"
    );
    // The same statement in timestamp.json (which the timestamp key does sign) is not a
    // statement: only top-level targets carry them.
    let fx = Fixture::new();
    resign(
        &fx.meta(),
        "timestamp.json",
        &fx.key(Role::Timestamp),
        |signed| {
            signed[SUPPORT_FIELD] = json!({ DEVICE: "2049-12-31" });
        },
    );
    let client = fx.refreshed_client().unwrap();
    assert_eq!(
        SupportStatement::from_targets(&client.trusted_targets().unwrap().extra, DEVICE),
        Ok(None)
    );
}
