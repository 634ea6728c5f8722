//! The repository writer: a static TUF repository on disk, as `limpet publish` makes it.
//!
//! Layout: `DIR/metadata/{root,N.root,timestamp,snapshot,targets}.json` (and, with consistent
//! snapshots, `N.snapshot.json`, `N.targets.json`), targets under `DIR/targets/`. Delegated
//! targets roles ([`Repository::add_delegation`]) add `ROLE.json` (and `N.ROLE.json`).
//!
//! Rules kept here:
//! - Role keys are PEM files in a keys directory (new ones PKCS#8, mode 0600, never
//!   overwritten), or signer commands for keys kept in an HSM or KMS
//!   ([`Repository::with_signers`]). Which key signs what is decided by the key ids the root
//!   lists, not by file names. New keys are Ed25519 unless a [`Scheme`] is asked for.
//! - Root keys are offline: [`Repository::add_target`], [`Repository::remove_target`] and
//!   [`Repository::refresh`] load only targets, snapshot and timestamp keys. Only root
//!   operations ([`Repository::rotate_root`], [`Repository::rotate`],
//!   [`Repository::renew_root`]) need root keys.
//! - Every file is written atomically (temporary file + rename). A publish writes target
//!   files first, then targets, snapshot and timestamp metadata, so a client never sees a
//!   timestamp naming files not yet written; with consistent snapshots (the default) a client
//!   that reads mid-publish still gets a consistent set.
//! - Each timestamp carries its signed issue time ([`ISSUED_FIELD`]) for clients' time floor.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::fsutil;
use crate::keys::{ExternalSigner, KeyError, KeyId, KeyRing, PublicKey, RoleKey, Scheme};
use crate::metadata::{
    self, MetaFile, Role, RoleKeys, RoleMetadata, Root, Snapshot, TargetFile, Targets, Timestamp,
    ISSUED_FIELD, SPEC_VERSION,
};
use crate::time::{Clock, UnixTime};
use crate::transport::check_relative;

mod delegate;

pub use delegate::{DelegatedPaths, DelegationError, DelegationSpec, Termination};

const DAY: u64 = 86_400;

/// What a rotation has a role's new keys sign, to find a failing signer before anything is
/// written.
const SIGNER_PROBE: &[u8] = b"limpet-tuf: can this key sign?";

/// How long each role's metadata stays valid after signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// Root (offline keys): default 365 days.
    pub root: Duration,
    /// Targets: default 90 days.
    pub targets: Duration,
    /// Snapshot: default 7 days.
    pub snapshot: Duration,
    /// Timestamp: default 1 day. Re-sign with [`Repository::refresh`] before it runs out.
    pub timestamp: Duration,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        ExpiryPolicy {
            root: Duration::from_secs(365 * DAY),
            targets: Duration::from_secs(90 * DAY),
            snapshot: Duration::from_secs(7 * DAY),
            timestamp: Duration::from_secs(DAY),
        }
    }
}

/// Whether snapshot and targets metadata and target files are also published under
/// version- and hash-prefixed names (TUF "consistent snapshots").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConsistentSnapshots {
    /// Publish prefixed names too; clients fetch those (safe while a publish is under way).
    #[default]
    Enabled,
    /// Plain names only.
    Disabled,
}

/// What timestamp and snapshot list about the metadata they name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MetaDetail {
    /// Version, length and SHA-256: clients cap and hash-check each metadata download.
    #[default]
    LengthAndHashes,
    /// Version only (smaller metadata, as python-tuf writes by default).
    VersionOnly,
}

/// Options of [`Repository::init`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitOptions {
    /// Number of root keys made (default 3).
    pub root_keys: usize,
    /// Root threshold (default 2).
    pub root_threshold: u64,
    /// Consistent snapshots (default enabled).
    pub consistent_snapshots: ConsistentSnapshots,
    /// The scheme of the keys made (default Ed25519).
    pub key_scheme: Scheme,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            root_keys: 3,
            root_threshold: 2,
            consistent_snapshots: ConsistentSnapshots::Enabled,
            key_scheme: Scheme::Ed25519,
        }
    }
}

/// The keys a rotation gives a role.
#[derive(Clone, Debug)]
pub enum NewKeys {
    /// `count` new keys of `scheme`, saved in the keys directory.
    Generate {
        /// Their scheme.
        scheme: Scheme,
        /// How many.
        count: usize,
    },
    /// These public keys, whose private halves are in the keys directory or behind a signer
    /// command ([`Repository::with_signers`]).
    Given(Vec<PublicKey>),
}

impl NewKeys {
    /// How many distinct keys (a key given twice is one).
    fn count(&self) -> usize {
        match self {
            NewKeys::Generate { count, .. } => *count,
            NewKeys::Given(keys) => keys
                .iter()
                .map(PublicKey::material)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
        }
    }
}

/// Why a repository operation (init, open, publish, refresh, key rotation) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// A statement to sign with the root keys whose `_type` is a TUF role's.
    #[error("a statement of _type {type_:?} could be taken for TUF metadata: not signed")]
    NotAStatement {
        /// Its `_type`.
        type_: String,
    },
    /// A key file problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Metadata could not be read, parsed or signed.
    #[error(transparent)]
    Metadata(#[from] Error),
    /// File I/O in the repository.
    #[error("{path}: repository I/O")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `init` on a directory that already holds a repository.
    #[error("{path}: a repository already exists here")]
    Exists {
        /// Its root.json.
        path: PathBuf,
    },
    /// Too few private keys of a role in the keys directory.
    #[error(
        "{role}: {have} private key(s) available in the keys directory, threshold is {threshold}"
    )]
    MissingKeys {
        /// The role.
        role: Role,
        /// Keys found.
        have: u64,
        /// Keys required.
        threshold: u64,
    },
    /// A threshold that no set of the role's keys can meet, or zero.
    #[error("threshold {threshold} is impossible with {keys} key(s)")]
    BadThreshold {
        /// Threshold asked.
        threshold: u64,
        /// Keys.
        keys: usize,
    },
    /// A target name that could escape the targets directory.
    #[error("target name {name:?}: {reason}")]
    BadTargetName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Removing a target that is not listed.
    #[error("target {name:?} is not in targets.json")]
    NoSuchTarget {
        /// The name.
        name: String,
    },
    /// Root keys are rotated with [`Repository::rotate_root`].
    #[error("use rotate_root to rotate root keys")]
    RootRotation,
    /// A signer command's public key cannot be written as a key object.
    #[error("signer command {command:?}: its public key")]
    SignerKey {
        /// The command.
        command: String,
        /// What is wrong with the key.
        #[source]
        source: Box<crate::keys::PublicKeyError>,
    },
    /// A public key given for a rotation cannot be written as a key object.
    #[error("a key given for the rotation")]
    GivenKey {
        /// What is wrong with it.
        #[source]
        source: Box<crate::keys::PublicKeyError>,
    },
    /// A delegated role could not be made or used.
    #[error(transparent)]
    Delegation(#[from] DelegationError),
    /// A field added to targets metadata would replace one of TUF's own.
    #[error("targets field {key:?} is TUF's own, not an addition")]
    ReservedField {
        /// The field name.
        key: String,
    },
}

/// Refuses a target name that could escape the targets directory.
fn check_target_name(name: &str) -> Result<(), RepoError> {
    check_relative(name).map_err(|e| RepoError::BadTargetName {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A TUF repository on disk and the keys directory that signs it.
#[derive(Debug)]
pub struct Repository {
    dir: PathBuf,
    keys_dir: PathBuf,
    expiry: ExpiryPolicy,
    detail: MetaDetail,
    clock: Box<dyn Clock>,
    signers: Vec<ExternalSigner>,
}

impl Repository {
    /// Creates a repository in `dir` and its keys in `keys_dir`: `opts.root_keys` root keys
    /// with threshold `opts.root_threshold`, one key each for targets, snapshot and timestamp;
    /// root version 1 and empty targets.
    pub fn init(
        dir: &Path,
        keys_dir: &Path,
        opts: InitOptions,
        clock: Box<dyn Clock>,
    ) -> Result<Self, RepoError> {
        let repo = Repository {
            dir: dir.to_owned(),
            keys_dir: keys_dir.to_owned(),
            expiry: ExpiryPolicy::default(),
            detail: MetaDetail::default(),
            clock,
            signers: Vec::new(),
        };
        let root_path = repo.metadata_dir().join(Role::Root.file_name());
        if root_path.exists() {
            return Err(RepoError::Exists { path: root_path });
        }
        if opts.root_threshold == 0
            || u64::try_from(opts.root_keys).unwrap_or(0) < opts.root_threshold
        {
            return Err(RepoError::BadThreshold {
                threshold: opts.root_threshold,
                keys: opts.root_keys,
            });
        }
        for d in [repo.metadata_dir(), repo.targets_dir()] {
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        repo.create_keys_dir()?;
        let mut ring = KeyRing::default();
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for (role, count, threshold) in [
            (Role::Root, opts.root_keys, opts.root_threshold),
            (Role::Targets, 1, 1),
            (Role::Snapshot, 1, 1),
            (Role::Timestamp, 1, 1),
        ] {
            let mut ids = Vec::new();
            for _ in 0..count {
                let key = repo.new_key(role, opts.key_scheme)?;
                keys.insert(key.id().clone(), key.key().clone());
                ids.push(key.id().clone());
                ring.insert(key);
            }
            roles.insert(role.name().to_owned(), role_keys(ids, threshold));
        }
        let root = Root {
            type_: "root".into(),
            spec_version: SPEC_VERSION.into(),
            consistent_snapshot: opts.consistent_snapshots == ConsistentSnapshots::Enabled,
            version: 1,
            expires: repo.expires(repo.expiry.root),
            keys,
            roles,
            extra: Map::new(),
        };
        repo.write_root(&root, &[&root], &ring)?;
        let targets = Targets {
            type_: "targets".into(),
            spec_version: SPEC_VERSION.into(),
            version: 1,
            expires: repo.expires(repo.expiry.targets),
            targets: BTreeMap::new(),
            delegations: None,
            extra: Map::new(),
        };
        repo.publish_targets(&root, &ring, &targets)?;
        Ok(repo)
    }

    /// Opens the repository in `dir`, signing with the keys in `keys_dir` and dating expiries
    /// by `clock`. Fails unless `DIR/metadata/root.json` parses.
    pub fn open(dir: &Path, keys_dir: &Path, clock: Box<dyn Clock>) -> Result<Self, RepoError> {
        let repo = Repository {
            dir: dir.to_owned(),
            keys_dir: keys_dir.to_owned(),
            expiry: ExpiryPolicy::default(),
            detail: MetaDetail::default(),
            clock,
            signers: Vec::new(),
        };
        repo.read_role::<Root>()?;
        Ok(repo)
    }

    /// Replaces the expiry periods used from now on.
    pub fn with_expiry(mut self, expiry: ExpiryPolicy) -> Self {
        self.expiry = expiry;
        self
    }

    /// Adds keys whose signatures commands make (keys kept in an HSM or KMS): they sign
    /// wherever the root lists their key ids, beside the keys directory's.
    pub fn with_signers(mut self, signers: Vec<ExternalSigner>) -> Self {
        self.signers = signers;
        self
    }

    /// Chooses what timestamp and snapshot list about the files they name.
    pub fn with_meta_detail(mut self, detail: MetaDetail) -> Self {
        self.detail = detail;
        self
    }

    /// `DIR/metadata`.
    pub fn metadata_dir(&self) -> PathBuf {
        self.dir.join("metadata")
    }

    /// `DIR/targets`.
    pub fn targets_dir(&self) -> PathBuf {
        self.dir.join("targets")
    }

    /// The current root as `DIR/metadata/root.json` holds it (parsed; signatures are not
    /// checked: the writer reads its own files).
    pub fn root(&self) -> Result<Root, RepoError> {
        self.read_role::<Root>()
    }

    /// The current targets metadata as `DIR/metadata/targets.json` holds it (parsed;
    /// signatures are not checked).
    pub fn targets(&self) -> Result<Targets, RepoError> {
        self.read_role::<Targets>()
    }

    /// Publishes the file at `source` as target `name` (with optional `custom` JSON), then
    /// re-signs targets, snapshot and timestamp. Needs no root key.
    pub fn add_target(
        &self,
        name: &str,
        source: &Path,
        custom: Option<Value>,
    ) -> Result<TargetFile, RepoError> {
        let mut file = std::fs::File::open(source).map_err(io_err(source))?;
        self.add_target_from(name, &mut file, custom)
    }

    /// As [`Repository::add_target`], from bytes in memory.
    pub fn add_target_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        custom: Option<Value>,
    ) -> Result<TargetFile, RepoError> {
        self.add_target_from(name, &mut &*bytes, custom)
    }

    fn add_target_from(
        &self,
        name: &str,
        source: &mut dyn Read,
        custom: Option<Value>,
    ) -> Result<TargetFile, RepoError> {
        check_target_name(name)?;
        let root = self.read_role::<Root>()?;
        let ring = self.ring()?;
        let entry = self.store_target_file(name, source, custom)?;
        let mut targets = self.read_role::<Targets>()?;
        targets.targets.insert(name.to_owned(), entry.clone());
        self.bump(
            &mut targets.version,
            &mut targets.expires,
            self.expiry.targets,
        );
        self.publish_targets(&root, &ring, &targets)?;
        Ok(entry)
    }

    /// Removes target `name` from targets metadata (its file stays for clients mid-update),
    /// then re-signs targets, snapshot and timestamp. Needs no root key.
    pub fn remove_target(&self, name: &str) -> Result<(), RepoError> {
        let root = self.read_role::<Root>()?;
        let ring = self.ring()?;
        let mut targets = self.read_role::<Targets>()?;
        if targets.targets.remove(name).is_none() {
            return Err(RepoError::NoSuchTarget {
                name: name.to_owned(),
            });
        }
        self.bump(
            &mut targets.version,
            &mut targets.expires,
            self.expiry.targets,
        );
        self.publish_targets(&root, &ring, &targets)
    }

    /// Sets field `key` of the top-level targets metadata's `signed` object to `value`
    /// (an addition TUF keeps: python-tuf reads it as an unrecognised field), then re-signs
    /// targets, snapshot and timestamp. A TUF field name (`_type`, `version`, `targets`, ...)
    /// is refused. Needs no root key.
    pub fn set_targets_field(&self, key: &str, value: Value) -> Result<(), RepoError> {
        const TUF_FIELDS: [&str; 6] = [
            "_type",
            "spec_version",
            "version",
            "expires",
            "targets",
            "delegations",
        ];
        if TUF_FIELDS.contains(&key) {
            return Err(RepoError::ReservedField {
                key: key.to_owned(),
            });
        }
        let root = self.read_role::<Root>()?;
        let ring = self.ring()?;
        let mut targets = self.read_role::<Targets>()?;
        targets.extra.insert(key.to_owned(), value);
        self.bump(
            &mut targets.version,
            &mut targets.expires,
            self.expiry.targets,
        );
        self.publish_targets(&root, &ring, &targets)
    }

    /// Re-signs snapshot and timestamp with new versions and expiries (run it well before the
    /// timestamp expires). Needs no root key.
    pub fn refresh(&self) -> Result<(), RepoError> {
        let root = self.read_role::<Root>()?;
        let ring = self.ring()?;
        self.publish_snapshot(&root, &ring, None)
    }

    /// Re-signs the timestamp only. Needs no root key.
    pub fn refresh_timestamp(&self) -> Result<(), RepoError> {
        let root = self.read_role::<Root>()?;
        let ring = self.ring()?;
        self.publish_timestamp(&root, &ring, None)
    }

    /// Writes root N+1 with the same keys and a new expiry, signed by the root threshold.
    pub fn renew_root(&self) -> Result<u64, RepoError> {
        let old = self.read_role::<Root>()?;
        let ring = self.ring()?;
        let mut root = old.clone();
        self.bump(&mut root.version, &mut root.expires, self.expiry.root);
        self.write_root(&root, &[&old], &ring)?;
        Ok(root.version)
    }

    /// Replaces the root keys by `count` new Ed25519 keys with threshold `threshold`: writes
    /// root N+1 signed by a threshold of the old root keys and of the new ones. Returns N+1.
    pub fn rotate_root(&self, count: usize, threshold: u64) -> Result<u64, RepoError> {
        self.rotate_root_to(
            NewKeys::Generate {
                scheme: Scheme::Ed25519,
                count,
            },
            threshold,
        )
    }

    /// Replaces the root keys by `keys` with threshold `threshold` (the key types may
    /// change): writes root N+1 signed by a threshold of the old root keys and of the new
    /// ones. Returns N+1.
    pub fn rotate_root_to(&self, keys: NewKeys, threshold: u64) -> Result<u64, RepoError> {
        check_threshold(&keys, threshold)?;
        let old = self.read_role::<Root>()?;
        let mut ring = self.ring()?;
        // Check the old threshold before making keys, so a failure leaves no new files.
        self.signing_keys(&old, Role::Root, &ring)?;
        let mut root = old.clone();
        let ids = self.add_keys(&mut root, &mut ring, Role::Root, keys)?;
        root.roles
            .insert(Role::Root.name().to_owned(), role_keys(ids, threshold));
        prune_keys(&mut root);
        self.bump(&mut root.version, &mut root.expires, self.expiry.root);
        self.write_root(&root, &[&old, &root], &ring)?;
        Ok(root.version)
    }

    /// Replaces the key of a non-root role by a new Ed25519 key: writes root N+1 (root keys
    /// needed), then re-signs the role and the roles that list it. Returns the new key id.
    pub fn rotate(&self, role: Role) -> Result<KeyId, RepoError> {
        let ids = self.rotate_to(
            role,
            NewKeys::Generate {
                scheme: Scheme::Ed25519,
                count: 1,
            },
            1,
        )?;
        ids.into_iter().next().ok_or(RepoError::BadThreshold {
            threshold: 1,
            keys: 0,
        })
    }

    /// Replaces the keys of a non-root role by `keys` with threshold `threshold`: writes root
    /// N+1 (root keys needed), then re-signs the role and the roles that list it. Returns the
    /// new key ids.
    pub fn rotate_to(
        &self,
        role: Role,
        keys: NewKeys,
        threshold: u64,
    ) -> Result<Vec<KeyId>, RepoError> {
        if role == Role::Root {
            return Err(RepoError::RootRotation);
        }
        check_threshold(&keys, threshold)?;
        let old = self.read_role::<Root>()?;
        let mut ring = self.ring()?;
        self.signing_keys(&old, Role::Root, &ring)?;
        let mut root = old.clone();
        let ids = self.add_keys(&mut root, &mut ring, role, keys)?;
        root.roles
            .insert(role.name().to_owned(), role_keys(ids.clone(), threshold));
        // The role's new threshold must be able to sign before root N+1 names it: a signer
        // command that fails now leaves the repository as it was.
        for key in self.signing_keys(&root, role, &ring)? {
            key.sign_hex(SIGNER_PROBE).map_err(Error::from)?;
        }
        prune_keys(&mut root);
        self.bump(&mut root.version, &mut root.expires, self.expiry.root);
        self.write_root(&root, &[&old], &ring)?;
        match role {
            Role::Targets => {
                let mut targets = self.read_role::<Targets>()?;
                self.bump(
                    &mut targets.version,
                    &mut targets.expires,
                    self.expiry.targets,
                );
                self.publish_targets(&root, &ring, &targets)?;
            }
            Role::Snapshot => self.publish_snapshot(&root, &ring, None)?,
            Role::Timestamp | Role::Root => self.publish_timestamp(&root, &ring, None)?,
        }
        Ok(ids)
    }

    // ---- internals ------------------------------------------------------------------------

    /// Signs `signed`, a statement that is not TUF metadata (its `_type` names no TUF role,
    /// so no client can take it for one), with the root keys of the current root, at least
    /// their threshold. Returns the envelope's bytes (`{"signed": …, "signatures": […]}`).
    /// Limpet's owner handover statement is one (limpet-repo's `handover`).
    pub fn sign_with_root_keys(&self, signed: Value) -> Result<Vec<u8>, RepoError> {
        let role = signed.get("_type").and_then(Value::as_str);
        let roles = [Role::Root, Role::Timestamp, Role::Snapshot, Role::Targets];
        if role.is_some_and(|t| roles.iter().any(|r| r.name() == t)) {
            return Err(RepoError::NotAStatement {
                type_: role.unwrap_or_default().to_owned(),
            });
        }
        let root = self.read_role::<Root>()?;
        let ring = self.ring()?;
        let keys = self.signing_keys(&root, Role::Root, &ring)?;
        Ok(metadata::sign_value(signed, &keys)?)
    }

    fn expires(&self, period: Duration) -> UnixTime {
        self.clock.now().saturating_add(period)
    }

    fn bump(&self, version: &mut u64, expires: &mut UnixTime, period: Duration) {
        *version = version.saturating_add(1);
        *expires = self.expires(period);
    }

    fn ring(&self) -> Result<KeyRing, RepoError> {
        let mut ring = KeyRing::load_dir(&self.keys_dir)?;
        for signer in &self.signers {
            ring.insert(RoleKey::external(signer.clone()).map_err(|source| {
                RepoError::SignerKey {
                    command: signer.command().to_owned(),
                    source: Box::new(source),
                }
            })?);
        }
        Ok(ring)
    }

    /// Puts `keys` into `root.keys` (saving generated ones, adding them to `ring`); returns
    /// their ids.
    fn add_keys(
        &self,
        root: &mut Root,
        ring: &mut KeyRing,
        role: Role,
        keys: NewKeys,
    ) -> Result<Vec<KeyId>, RepoError> {
        let mut ids = Vec::new();
        match keys {
            NewKeys::Generate { scheme, count } => {
                for _ in 0..count {
                    let key = self.new_key(role, scheme)?;
                    root.keys.insert(key.id().clone(), key.key().clone());
                    ids.push(key.id().clone());
                    ring.insert(key);
                }
            }
            NewKeys::Given(publics) => {
                for public in publics {
                    let key = public.to_key().map_err(|source| RepoError::GivenKey {
                        source: Box::new(source),
                    })?;
                    let id = key.key_id();
                    root.keys.insert(id.clone(), key);
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
        Ok(ids)
    }

    fn create_keys_dir(&self) -> Result<(), RepoError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.keys_dir)
            .map_err(io_err(&self.keys_dir))
    }

    fn new_key(&self, role: Role, scheme: Scheme) -> Result<RoleKey, RepoError> {
        self.create_keys_dir()?;
        let key = RoleKey::generate_scheme(scheme)?;
        let short = key.id().0.get(..16).unwrap_or_default().to_owned();
        key.save_new(&self.keys_dir.join(format!("{}-{short}.pem", role.name())))?;
        Ok(key)
    }

    fn read_role<T: RoleMetadata>(&self) -> Result<T, RepoError> {
        let path = self.metadata_dir().join(T::ROLE.file_name());
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        Ok(metadata::parse::<T>(T::ROLE.file_name(), &bytes)?.signed)
    }

    fn read_optional<T: RoleMetadata>(&self) -> Result<Option<T>, RepoError> {
        let path = self.metadata_dir().join(T::ROLE.file_name());
        if !path.exists() {
            return Ok(None);
        }
        self.read_role::<T>().map(Some)
    }

    /// The private keys of `role` in the ring; at least the threshold of them.
    fn signing_keys<'a>(
        &self,
        root: &Root,
        role: Role,
        ring: &'a KeyRing,
    ) -> Result<Vec<&'a RoleKey>, RepoError> {
        let rk = root.role_keys(role)?;
        let keys: Vec<&RoleKey> = rk.keyids.iter().filter_map(|id| ring.get(id)).collect();
        let have = u64::try_from(keys.len()).unwrap_or(u64::MAX);
        if have < rk.threshold {
            return Err(RepoError::MissingKeys {
                role,
                have,
                threshold: rk.threshold,
            });
        }
        Ok(keys)
    }

    fn write_metadata(&self, name: &str, bytes: &[u8]) -> Result<(), RepoError> {
        let path = self.metadata_dir().join(name);
        fsutil::atomic_write(&path, bytes, 0o644).map_err(io_err(&path))
    }

    /// Signs `root` with the root keys of every root in `signers` and writes `N.root.json`
    /// then `root.json`.
    fn write_root(&self, root: &Root, signers: &[&Root], ring: &KeyRing) -> Result<(), RepoError> {
        let mut keys: Vec<&RoleKey> = Vec::new();
        for signer in signers {
            for k in self.signing_keys(signer, Role::Root, ring)? {
                if !keys.iter().any(|have| have.id() == k.id()) {
                    keys.push(k);
                }
            }
        }
        let bytes = metadata::sign(root, &keys)?;
        self.write_metadata(&format!("{}.root.json", root.version), &bytes)?;
        self.write_metadata(Role::Root.file_name(), &bytes)
    }

    /// Signs and writes snapshot or targets (versioned copy first with consistent snapshots).
    /// Returns what the parent role lists about it.
    fn write_role<T: RoleMetadata>(
        &self,
        root: &Root,
        ring: &KeyRing,
        signed: &T,
    ) -> Result<MetaFile, RepoError> {
        let keys = self.signing_keys(root, T::ROLE, ring)?;
        let bytes = metadata::sign(signed, &keys)?;
        if root.consistent_snapshot && T::ROLE != Role::Timestamp {
            self.write_metadata(
                &format!("{}.{}", signed.version(), T::ROLE.file_name()),
                &bytes,
            )?;
        }
        self.write_metadata(T::ROLE.file_name(), &bytes)?;
        Ok(self.meta_for(signed.version(), &bytes))
    }

    /// What snapshot or timestamp lists about metadata `bytes` of `version`.
    fn meta_for(&self, version: u64, bytes: &[u8]) -> MetaFile {
        let (length, hashes) = match self.detail {
            MetaDetail::LengthAndHashes => (
                Some(u64::try_from(bytes.len()).unwrap_or(u64::MAX)),
                Some(BTreeMap::from([(
                    "sha256".to_owned(),
                    hex::encode(Sha256::digest(bytes)),
                )])),
            ),
            MetaDetail::VersionOnly => (None, None),
        };
        MetaFile {
            version,
            length,
            hashes,
            extra: Map::new(),
        }
    }

    /// Writes targets, then a new snapshot listing it, then a new timestamp.
    fn publish_targets(
        &self,
        root: &Root,
        ring: &KeyRing,
        targets: &Targets,
    ) -> Result<(), RepoError> {
        let meta = self.write_role(root, ring, targets)?;
        self.publish_snapshot(root, ring, Some(meta))
    }

    /// Writes a new snapshot version (listing `targets_meta` if given), then a new timestamp.
    fn publish_snapshot(
        &self,
        root: &Root,
        ring: &KeyRing,
        targets_meta: Option<MetaFile>,
    ) -> Result<(), RepoError> {
        let listed = targets_meta.map(|meta| (Role::Targets.file_name().to_owned(), meta));
        self.publish_snapshot_listing(root, ring, listed.into_iter().collect())
    }

    /// Writes a new snapshot version listing `metas` (file name, entry) besides what it
    /// listed before, then a new timestamp.
    fn publish_snapshot_listing(
        &self,
        root: &Root,
        ring: &KeyRing,
        metas: Vec<(String, MetaFile)>,
    ) -> Result<(), RepoError> {
        let mut snapshot = self
            .read_optional::<Snapshot>()?
            .unwrap_or_else(|| Snapshot {
                type_: "snapshot".into(),
                spec_version: SPEC_VERSION.into(),
                version: 0,
                expires: UnixTime::EPOCH,
                meta: BTreeMap::new(),
                extra: Map::new(),
            });
        snapshot.meta.extend(metas);
        self.bump(
            &mut snapshot.version,
            &mut snapshot.expires,
            self.expiry.snapshot,
        );
        let meta = self.write_role(root, ring, &snapshot)?;
        self.publish_timestamp(root, ring, Some(meta))
    }

    /// Writes a new timestamp version (listing `snapshot_meta` if given) with its issue time.
    fn publish_timestamp(
        &self,
        root: &Root,
        ring: &KeyRing,
        snapshot_meta: Option<MetaFile>,
    ) -> Result<(), RepoError> {
        let mut timestamp = self
            .read_optional::<Timestamp>()?
            .unwrap_or_else(|| Timestamp {
                type_: "timestamp".into(),
                spec_version: SPEC_VERSION.into(),
                version: 0,
                expires: UnixTime::EPOCH,
                meta: BTreeMap::new(),
                extra: Map::new(),
            });
        if let Some(meta) = snapshot_meta {
            timestamp
                .meta
                .insert(Role::Snapshot.file_name().to_owned(), meta);
        }
        self.bump(
            &mut timestamp.version,
            &mut timestamp.expires,
            self.expiry.timestamp,
        );
        timestamp.extra.insert(
            ISSUED_FIELD.to_owned(),
            Value::String(self.clock.now().to_string()),
        );
        self.write_role(root, ring, &timestamp)?;
        Ok(())
    }

    /// Copies a target into `targets/NAME` (and `targets/DIR/SHA256.BASE`), atomically,
    /// returning its entry.
    fn store_target_file(
        &self,
        name: &str,
        source: &mut dyn Read,
        custom: Option<Value>,
    ) -> Result<TargetFile, RepoError> {
        let dest = self.targets_dir().join(name);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let tmp = fsutil::temp_path(&dest);
        let copied = (|| -> std::io::Result<(u64, [u8; 32])> {
            let mut out = std::fs::File::create(&tmp)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut total: u64 = 0;
            loop {
                let n = source.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                let chunk = buf.get(..n).unwrap_or_default();
                hasher.update(chunk);
                out.write_all(chunk)?;
                total = total.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
            }
            out.sync_all()?;
            Ok((total, hasher.finalize().into()))
        })();
        let (length, sha256) = match copied {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(RepoError::Io {
                    path: dest,
                    source: e,
                });
            }
        };
        let hash = hex::encode(sha256);
        let base = dest
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hashed = dest.with_file_name(format!("{hash}.{base}"));
        // Content-addressed copy first: a client of the previous metadata never sees it.
        if !hashed.exists() {
            let tmp2 = fsutil::temp_path(&hashed);
            std::fs::hard_link(&tmp, &tmp2)
                .and_then(|()| std::fs::rename(&tmp2, &hashed))
                .map_err(io_err(&hashed))?;
        }
        std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        fsutil::sync_dir(&dest).map_err(io_err(&dest))?;
        Ok(TargetFile {
            length,
            hashes: BTreeMap::from([("sha256".to_owned(), hash)]),
            custom,
            extra: Map::new(),
        })
    }
}

/// Refuses a threshold of 0 or above the number of keys.
fn check_threshold(keys: &NewKeys, threshold: u64) -> Result<(), RepoError> {
    let count = keys.count();
    if threshold == 0 || u64::try_from(count).unwrap_or(0) < threshold {
        return Err(RepoError::BadThreshold {
            threshold,
            keys: count,
        });
    }
    Ok(())
}

fn role_keys(keyids: Vec<KeyId>, threshold: u64) -> RoleKeys {
    RoleKeys {
        keyids,
        threshold,
        extra: Map::new(),
    }
}

/// Drops keys no role lists any more.
fn prune_keys(root: &mut Root) {
    let used: std::collections::BTreeSet<KeyId> = root
        .roles
        .values()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    root.keys.retain(|id, _| used.contains(id));
}
