//! Shared helpers of the integration tests: a repository in a temporary directory, a client
//! on a local or HTTP transport, and re-signing of tampered metadata with the real keys.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use limpet_tuf::keys::{KeyRing, RoleKey};
use limpet_tuf::metadata::{sign_value, Role};
use limpet_tuf::repo::{ConsistentSnapshots, MetaDetail};
use limpet_tuf::transport::{FileTransport, RetrievalPolicy};
use limpet_tuf::{Client, FixedClock, InitOptions, Repository, UnixTime};
use serde_json::Value;

/// 2030-01-01T00:00:00Z: the time repositories are signed at.
pub const T0: UnixTime = UnixTime::from_secs(1_893_456_000);
/// One day in seconds.
pub const DAY: i64 = 86_400;

/// A repository, its keys and a client metadata directory in one temporary directory.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub repo: Repository,
}

impl Fixture {
    pub fn repo_dir(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.tmp.path().join("keys")
    }
    pub fn meta_dir(&self) -> PathBuf {
        self.repo_dir().join("metadata")
    }
    pub fn client_dir(&self) -> PathBuf {
        self.tmp.path().join("client")
    }

    /// Reopens the writer with its clock at `now`.
    pub fn repo_at(&self, now: UnixTime, detail: MetaDetail) -> Repository {
        Repository::open(
            &self.repo_dir(),
            &self.keys_dir(),
            Box::new(FixedClock(now)),
        )
        .unwrap()
        .with_meta_detail(detail)
    }

    /// A client on the local repository, provisioned with root version 1 (once).
    pub fn client(&self, now: UnixTime) -> Client {
        let dir = self.client_dir();
        if !dir.join("root.json").exists() {
            let root = std::fs::read(self.meta_dir().join("1.root.json")).unwrap();
            Client::init(&dir, &root).unwrap();
        }
        Client::open(
            &dir,
            Box::new(FileTransport::new(
                self.meta_dir(),
                RetrievalPolicy::default(),
            )),
            Box::new(FixedClock(now)),
        )
        .unwrap()
    }

    /// A transport on the targets directory.
    pub fn targets_transport(&self) -> FileTransport {
        FileTransport::new(self.repo_dir().join("targets"), RetrievalPolicy::default())
    }

    /// The metadata file of `name` as JSON.
    pub fn read_json(&self, name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.meta_dir().join(name)).unwrap()).unwrap()
    }

    /// Private keys from the keys directory.
    pub fn ring(&self) -> KeyRing {
        KeyRing::load_dir(&self.keys_dir()).unwrap()
    }

    /// The private keys the current root lists for `role`.
    pub fn role_keys(&self, role: Role) -> Vec<RoleKey> {
        let root = self.read_json("root.json");
        root["signed"]["roles"][role.name()]["keyids"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|id| find_key(&self.keys_dir(), id.as_str().unwrap()))
            .collect()
    }

    /// Applies `edit` to the `signed` object of metadata file `name`, re-signs it with
    /// `keys` and writes it back under `name`. Returns the bytes.
    pub fn resign_with(
        &self,
        name: &str,
        keys: &[&RoleKey],
        edit: impl FnOnce(&mut Value),
    ) -> Vec<u8> {
        let mut doc = self.read_json(name);
        let mut signed = doc["signed"].take();
        edit(&mut signed);
        let bytes = sign_value(signed, keys).unwrap();
        std::fs::write(self.meta_dir().join(name), &bytes).unwrap();
        bytes
    }

    /// As [`Fixture::resign_with`], with the role's real keys.
    pub fn resign(&self, name: &str, role: Role, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let keys = self.role_keys(role);
        let refs: Vec<&RoleKey> = keys.iter().collect();
        self.resign_with(name, &refs, edit)
    }
}

fn find_key(dir: &Path, id: &str) -> Option<RoleKey> {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pem") {
            let key = RoleKey::load(&path).unwrap();
            if key.id().0 == id {
                return Some(key);
            }
        }
    }
    None
}

/// A repository signed at [`T0`] with one target `app.img`, plain names and version-only
/// meta entries (so tampering one file does not first trip a parent's hash).
pub fn fixture() -> Fixture {
    fixture_with(ConsistentSnapshots::Disabled, MetaDetail::VersionOnly)
}

/// A repository signed at [`T0`] with one target `app.img`.
pub fn fixture_with(consistent: ConsistentSnapshots, detail: MetaDetail) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let opts = InitOptions {
        consistent_snapshots: consistent,
        ..InitOptions::default()
    };
    let repo = Repository::init(
        &tmp.path().join("repo"),
        &tmp.path().join("keys"),
        opts,
        Box::new(FixedClock(T0)),
    )
    .unwrap()
    .with_meta_detail(detail);
    repo.add_target_bytes(
        "app.img",
        b"limpet image v1",
        Some(serde_json::json!({"version": "1.0.0"})),
    )
    .unwrap();
    Fixture { tmp, repo }
}

/// `T0` plus `days`.
pub fn t0_plus(days: i64) -> UnixTime {
    UnixTime::from_secs(T0.as_secs() + days * DAY)
}
