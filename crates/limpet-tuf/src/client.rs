//! The client: TUF specification 1.0.34, section 5 "Detailed client workflow", step by step.
//!
//! One method per step, named and commented with its number. Deviations are marked
//! `Off-spec:` with the reason.
//!
//! Rules kept here:
//! - Every metadata file is stored as the exact bytes received, under its non-versioned name
//!   (`root.json`, `timestamp.json`, …; a delegated role's name escaped as
//!   [`local_target_file_name`] escapes it, plus `.json`) in the metadata directory, by atomic
//!   rename.
//! - Local copies count as trusted only if they verify against the trusted root; a copy that
//!   does not (keys rotated, file damaged) is ignored.
//! - Trusted time is `max(clock, floor)`. The floor is the newest signed issue time verified
//!   (timestamp metadata field [`ISSUED_FIELD`](crate::metadata::ISSUED_FIELD)), capped at the
//!   trusted root's expiry so a stolen timestamp key alone cannot push it past what the offline
//!   root keys signed. It is persisted in [`TIME_FLOOR_FILE`] and never goes backwards, so a
//!   device whose clock resets to 1970 still rejects metadata that expired before the floor.
//!   The caller may raise the floor further with a floor of its own ([`Client::with_time_floor`]:
//!   the device's, which also counts the build time of its signed slot).
//! - A new timestamp whose signed issue time is below the floor is refused
//!   ([`Error::IssuedBelowFloor`]): it was signed before something already trusted. A
//!   timestamp without the field is not checked (plain TUF repositories have none); it then
//!   raises nothing and gives no [`Client::signed_time`].
//! - Downloads are capped at [`Limits`] or at the length the parent role lists, whichever is
//!   smaller, and hash-checked when the parent lists hashes (see [`crate::transport`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::delegation::{search, Delegation};
use crate::error::Error;
use crate::fsutil;
use crate::metadata::{
    parse, MetaFile, Role, RoleMetadata, Root, Snapshot, TargetFile, Targets, Timestamp, Unverified,
};
use crate::time::{Clock, UnixTime};
use crate::transport::{
    check_bytes, fetch_metadata, fetch_metadata_file_name, fetch_target, verify_local_target,
    Transport, VerifiedTarget,
};
use crate::verify::verify_threshold;

/// File in the metadata directory holding the trusted time floor (`YYYY-MM-DDTHH:MM:SSZ`).
pub const TIME_FLOOR_FILE: &str = "trusted-time-floor";

/// Download caps for metadata whose length is not listed by a parent role, and the most root
/// versions one update may walk through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// W of step 5.3.3: bytes of one root file.
    pub root_max: u64,
    /// X of step 5.4.1: bytes of timestamp.json.
    pub timestamp_max: u64,
    /// Y of step 5.5.1: bytes of snapshot.json when timestamp lists no length.
    pub snapshot_max: u64,
    /// Z of step 5.6.1: bytes of targets.json when snapshot lists no length.
    pub targets_max: u64,
    /// Y of step 5.3.3: root versions fetched in one update.
    pub max_root_rotations: u64,
}

impl Default for Limits {
    /// python-tuf's defaults: 512 000, 16 384, 2 000 000, 5 000 000 bytes; 256 root versions.
    fn default() -> Self {
        Limits {
            root_max: 512_000,
            timestamp_max: 16_384,
            snapshot_max: 2_000_000,
            targets_max: 5_000_000,
            max_root_rotations: 256,
        }
    }
}

/// A TUF client over one metadata directory and one repository transport.
#[derive(Debug)]
pub struct Client {
    dir: PathBuf,
    transport: Box<dyn Transport>,
    clock: Box<dyn Clock>,
    limits: Limits,
    root: Root,
    timestamp: Option<Timestamp>,
    snapshot: Option<Snapshot>,
    /// Set only by a successful refresh in this session.
    targets: Option<Targets>,
    /// The fixed update start time of the last refresh (5.1), which delegated roles loaded
    /// later are checked against.
    started: Option<UnixTime>,
    /// Delegated targets roles loaded since the last refresh, as received (unverified: each
    /// use verifies them again against the delegating role it is reached through).
    delegated: RefCell<BTreeMap<String, Unverified<Targets>>>,
    floor: Option<UnixTime>,
}

fn check_expiry(role: &str, expires: UnixTime, now: UnixTime) -> Result<(), Error> {
    // "MUST be higher than the fixed update start time".
    if expires <= now {
        return Err(Error::Expired {
            role: role.to_owned(),
            expires,
            now,
        });
    }
    Ok(())
}

fn meta_entry<'a>(
    listed_in: &'static str,
    meta: &'a std::collections::BTreeMap<String, MetaFile>,
    name: &str,
) -> Result<&'a MetaFile, Error> {
    meta.get(name).ok_or_else(|| Error::MissingMeta {
        listed_in,
        name: name.to_owned(),
    })
}

/// The set of public keys (and threshold) of a role, to see whether it was rotated.
fn role_key_set(root: &Root, role: Role) -> (BTreeSet<String>, u64) {
    match root.roles.get(role.name()) {
        Some(rk) => (
            rk.keyids
                .iter()
                .filter_map(|id| root.keys.get(id))
                .map(|k| format!("{}:{}:{}", k.keytype, k.scheme, k.keyval.public))
                .collect(),
            rk.threshold,
        ),
        None => (BTreeSet::new(), 0),
    }
}

/// A file name for a target inside a flat local directory: every byte but unreserved URL
/// characters percent-encoded (so `/` cannot make subdirectories and `..` cannot escape).
pub fn local_target_file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The repository file name of a delegated role's metadata: `NAME.json`, or
/// `VERSION.NAME.json` with consistent snapshots. It may hold any character, `/` included
/// (fetched with [`Transport::fetch_file_name`]).
fn delegated_metadata_name(name: &str, version: u64, consistent: bool) -> String {
    if consistent {
        format!("{version}.{name}.json")
    } else {
        format!("{name}.json")
    }
}

/// Parses root metadata and checks that it is signed by its own root threshold: what the
/// client trusts at step 5.2, and what `limpet build` checks before shipping a root.
pub fn verify_root(bytes: &[u8]) -> Result<Root, Error> {
    let root = parse::<Root>("root.json", bytes)?;
    verify_threshold(
        "root",
        &root.signed.keys,
        root.signed.role_keys(Role::Root)?,
        &root.canonical,
        &root.signatures,
    )?;
    Ok(root.signed)
}

impl Client {
    /// Provisions `metadata_dir` with an out-of-band trusted root (the bytes shipped in the
    /// image). No network access. Replaces any existing root: provisioning only.
    pub fn init(metadata_dir: &Path, root_json: &[u8]) -> Result<(), Error> {
        std::fs::create_dir_all(metadata_dir)
            .map_err(|e| Error::io(format!("{}: create", metadata_dir.display()), e))?;
        let path = metadata_dir.join(Role::Root.file_name());
        fsutil::atomic_write(&path, root_json, 0o644)
            .map_err(|e| Error::io(format!("{}: write", path.display()), e))
    }

    /// Opens a client on `metadata_dir` (which must hold a trusted `root.json`), fetching
    /// metadata through `transport` and reading time from `clock`. Performs step 5.2.
    pub fn open(
        metadata_dir: &Path,
        transport: Box<dyn Transport>,
        clock: Box<dyn Clock>,
    ) -> Result<Self, Error> {
        let floor = Self::load_time_floor(metadata_dir)?;
        let root = Self::step_5_2_load_trusted_root(metadata_dir)?;
        Ok(Client {
            dir: metadata_dir.to_owned(),
            transport,
            clock,
            limits: Limits::default(),
            root,
            timestamp: None,
            snapshot: None,
            targets: None,
            started: None,
            delegated: RefCell::new(BTreeMap::new()),
            floor,
        })
    }

    /// Replaces the download caps.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The root trusted now: the stored one after [`Client::open`], the newest verified one
    /// after [`Client::refresh`].
    pub fn trusted_root(&self) -> &Root {
        &self.root
    }

    /// The trusted timestamp after a refresh.
    pub fn trusted_timestamp(&self) -> Option<&Timestamp> {
        self.timestamp.as_ref()
    }

    /// The trusted snapshot after a refresh.
    pub fn trusted_snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// The trusted targets after a successful refresh in this session.
    pub fn trusted_targets(&self) -> Option<&Targets> {
        self.targets.as_ref()
    }

    /// The persisted trusted time floor, if any.
    pub fn time_floor(&self) -> Option<UnixTime> {
        self.floor
    }

    /// Raises the trusted time floor to `floor` for this client's session (never lowers it).
    /// The device passes its own floor (`limpet-lifecycle`'s), which may be above the one
    /// this client persisted, e.g. the build time of a newly installed slot. Not written to
    /// [`TIME_FLOOR_FILE`]: the caller keeps its own floor.
    pub fn with_time_floor(mut self, floor: UnixTime) -> Self {
        if self.floor.is_none_or(|f| f < floor) {
            self.floor = Some(floor);
        }
        self
    }

    /// The signed time of the trusted timestamp after a refresh: its issue time
    /// ([`ISSUED_FIELD`](crate::metadata::ISSUED_FIELD)) capped at the trusted root's expiry, as
    /// the floor takes it. `None` before a refresh or when the timestamp carries no issue
    /// time. It is not newer on every refresh: an unchanged timestamp gives the same value.
    pub fn signed_time(&self) -> Option<UnixTime> {
        let issued = self.timestamp.as_ref()?.issued()?;
        Some(issued.min(self.root.expires))
    }

    /// Trusted time: the clock, but never below the floor.
    pub fn effective_time(&self) -> UnixTime {
        let now = self.clock.now();
        match self.floor {
            Some(f) if f > now => f,
            _ => now,
        }
    }

    /// Runs steps 5.1 and 5.3 to 5.6: updates root, timestamp, snapshot and targets.
    pub fn refresh(&mut self) -> Result<(), Error> {
        self.targets = None;
        self.delegated.get_mut().clear();
        let now = self.step_5_1_fix_update_start_time();
        self.started = Some(now);
        // The first downloads of 5.3.3 (N+1.root.json, W bytes) and 5.4.1 (timestamp.json,
        // X bytes), asked for together so the transport can get both in one round trip. Each
        // is still checked in its own step, in order: the timestamp against the root 5.3
        // ends with.
        let next_root = format!("{}.root.json", self.root.version.saturating_add(1));
        let first = [
            (next_root.as_str(), self.limits.root_max),
            (Role::Timestamp.file_name(), self.limits.timestamp_max),
        ];
        let skip = usize::from(self.limits.max_root_rotations == 0);
        self.transport
            .prefetch(first.get(skip..).unwrap_or_default());
        self.step_5_3_update_root(now)?;
        self.step_5_4_update_timestamp(now)?;
        self.step_5_5_update_snapshot(now)?;
        self.step_5_6_update_targets(now)?;
        Ok(())
    }

    // ---- 5.1 ------------------------------------------------------------------------------

    /// 5.1: record the fixed update start time.
    /// Off-spec addition: the time is `max(clock, trusted time floor)`, see the module rules.
    fn step_5_1_fix_update_start_time(&self) -> UnixTime {
        self.effective_time()
    }

    // ---- 5.2 ------------------------------------------------------------------------------

    /// 5.2: load the trusted root metadata (its expiry does not matter yet).
    /// Off-spec addition: the root must be signed by its own root threshold (as python-tuf
    /// checks), so a damaged or substituted local file is refused rather than trusted.
    fn step_5_2_load_trusted_root(dir: &Path) -> Result<Root, Error> {
        let path = dir.join(Role::Root.file_name());
        let bytes =
            std::fs::read(&path).map_err(|e| Error::io(format!("{}: read", path.display()), e))?;
        verify_root(&bytes)
    }

    // ---- 5.3 ------------------------------------------------------------------------------

    /// 5.3: update the root role.
    fn step_5_3_update_root(&mut self, now: UnixTime) -> Result<(), Error> {
        // 5.3.1: continuity to the newest keys is established by fetching every intermediate
        // root in turn (the loop below).
        let original = self.root.clone();
        let mut fetched: u64 = 0;
        loop {
            // 5.3.2: N is the trusted root's version.
            let n = self.root.version;
            // 5.3.3: try N+1.root.json, at most W bytes; stop after Y versions.
            if fetched >= self.limits.max_root_rotations {
                break;
            }
            let Some(bytes) = self.step_5_3_3_download_next_root(n)? else {
                break;
            };
            // 5.3.4: signed by a threshold of the trusted AND of the new root's keys.
            let new = self.step_5_3_4_check_arbitrary_software(n, &bytes)?;
            // 5.3.5: exactly version N+1.
            Self::step_5_3_5_check_rollback(n, &new)?;
            // 5.3.6: the new root's expiry does not matter yet (checked in 5.3.10).
            // 5.3.7: set the trusted root.
            self.root = new;
            // 5.3.8: persist it as root.json.
            self.persist(Role::Root, &bytes)?;
            fetched += 1;
            // 5.3.9: repeat from 5.3.2.
        }
        self.step_5_3_10_check_freeze(now)?;
        self.step_5_3_11_fast_forward_recovery(&original)?;
        // 5.3.12: consistent snapshots are read from `self.root.consistent_snapshot` wherever
        // a path is built (steps 5.5.1, 5.6.1 and 5.7.3).
        Ok(())
    }

    /// 5.3.3: download N+1.root.json; `None` if the repository has none.
    fn step_5_3_3_download_next_root(&self, n: u64) -> Result<Option<Vec<u8>>, Error> {
        let path = format!("{}.root.json", n.saturating_add(1));
        match fetch_metadata(&*self.transport, &path, self.limits.root_max, None, None) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// 5.3.4: check for an arbitrary software attack.
    fn step_5_3_4_check_arbitrary_software(&self, n: u64, bytes: &[u8]) -> Result<Root, Error> {
        let path = format!("{}.root.json", n.saturating_add(1));
        let new = parse::<Root>(&path, bytes)?;
        verify_threshold(
            &format!(
                "root version {} (keys of trusted root version {n})",
                new.signed.version
            ),
            &self.root.keys,
            self.root.role_keys(Role::Root)?,
            &new.canonical,
            &new.signatures,
        )?;
        verify_threshold(
            &format!("root version {} (its own keys)", new.signed.version),
            &new.signed.keys,
            new.signed.role_keys(Role::Root)?,
            &new.canonical,
            &new.signatures,
        )?;
        Ok(new.signed)
    }

    /// 5.3.5: check for a rollback attack: exactly N+1.
    fn step_5_3_5_check_rollback(n: u64, new: &Root) -> Result<(), Error> {
        if Some(new.version) != n.checked_add(1) {
            return Err(Error::RootVersionJump {
                trusted: n,
                got: new.version,
            });
        }
        Ok(())
    }

    /// 5.3.10: check for a freeze attack on the final root.
    fn step_5_3_10_check_freeze(&self, now: UnixTime) -> Result<(), Error> {
        check_expiry("root", self.root.expires, now)
    }

    /// 5.3.11: if timestamp or snapshot keys were rotated, delete the trusted timestamp and
    /// snapshot (recovery from fast-forward attacks).
    fn step_5_3_11_fast_forward_recovery(&mut self, original: &Root) -> Result<(), Error> {
        let rotated = [Role::Timestamp, Role::Snapshot]
            .into_iter()
            .any(|role| role_key_set(original, role) != role_key_set(&self.root, role));
        if rotated {
            for role in [Role::Timestamp, Role::Snapshot] {
                let path = self.dir.join(role.file_name());
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("{}: remove", path.display()), e)),
                }
            }
            self.timestamp = None;
            self.snapshot = None;
        }
        Ok(())
    }

    // ---- 5.4 ------------------------------------------------------------------------------

    /// 5.4: update the timestamp role.
    fn step_5_4_update_timestamp(&mut self, now: UnixTime) -> Result<(), Error> {
        let trusted = self.load_local::<Timestamp>().map(|(t, _)| t);
        // 5.4.1: download timestamp.json, at most X bytes.
        let bytes = fetch_metadata(
            &*self.transport,
            Role::Timestamp.file_name(),
            self.limits.timestamp_max,
            None,
            None,
        )?;
        let new = parse::<Timestamp>(Role::Timestamp.file_name(), &bytes)?;
        // 5.4.2: check for an arbitrary software attack.
        self.verify_role(Role::Timestamp, &new)?;
        let new_snapshot = meta_entry("timestamp.json", &new.signed.meta, "snapshot.json")?;
        // 5.4.3: check for a rollback attack.
        if let Some(trusted) = trusted {
            // 5.4.3.1: the version must not go down.
            if new.signed.version < trusted.version {
                return Err(Error::RollbackAttack {
                    role: "timestamp".into(),
                    trusted: trusted.version,
                    got: new.signed.version,
                });
            }
            if new.signed.version == trusted.version {
                // Off-spec: the spec ends the update cycle here without error. We keep the
                // trusted timestamp and go on to load the matching trusted snapshot and
                // targets (without downloading them again), so a refresh always leaves
                // targets ready, and the expiry of each is still checked (freeze).
                check_expiry("timestamp", trusted.expires, now)?;
                self.timestamp = Some(trusted);
                return Ok(());
            }
            // 5.4.3.2: the snapshot version it lists must not go down.
            let old_snapshot = meta_entry("timestamp.json", &trusted.meta, "snapshot.json")?;
            if new_snapshot.version < old_snapshot.version {
                return Err(Error::RollbackAttack {
                    role: "snapshot.json listed in timestamp.json".into(),
                    trusted: old_snapshot.version,
                    got: new_snapshot.version,
                });
            }
        }
        // 5.4.4: check for a freeze attack.
        check_expiry("timestamp", new.signed.expires, now)?;
        // Off-spec addition: a signed issue time below the floor is stale or back-dated.
        Self::check_issued(new.signed.issued(), self.floor)?;
        // Off-spec addition: raise the trusted time floor to the signed issue time.
        self.raise_time_floor(new.signed.issued())?;
        // 5.4.5: persist timestamp.json.
        self.persist(Role::Timestamp, &bytes)?;
        self.timestamp = Some(new.signed);
        Ok(())
    }

    // ---- 5.5 ------------------------------------------------------------------------------

    /// 5.5: update the snapshot role.
    fn step_5_5_update_snapshot(&mut self, now: UnixTime) -> Result<(), Error> {
        let timestamp = self.timestamp.as_ref().ok_or(Error::NotRefreshed)?;
        let meta = meta_entry("timestamp.json", &timestamp.meta, "snapshot.json")?.clone();
        let trusted = self.load_local::<Snapshot>();
        if let Some(local) = Self::listed_local(trusted.as_ref(), &meta, now)? {
            self.snapshot = Some(local);
            return Ok(());
        }
        // 5.5.1–5.5.4: download at most the listed length or Y bytes, check the listed hashes,
        // the trusted root's signatures and the listed version.
        let (new, bytes) =
            self.download_listed::<Snapshot>("timestamp.json", &meta, self.limits.snapshot_max)?;
        // 5.5.5: check for a rollback attack against the trusted snapshot.
        if let Some((old, _)) = &trusted {
            for (name, old_meta) in &old.meta {
                let new_meta = new
                    .signed
                    .meta
                    .get(name)
                    .ok_or_else(|| Error::MetaRemoved { name: name.clone() })?;
                if new_meta.version < old_meta.version {
                    return Err(Error::RollbackAttack {
                        role: format!("{name} listed in snapshot.json"),
                        trusted: old_meta.version,
                        got: new_meta.version,
                    });
                }
            }
        }
        // 5.5.6: check for a freeze attack.
        check_expiry("snapshot", new.signed.expires, now)?;
        // 5.5.7: persist snapshot.json.
        self.persist(Role::Snapshot, &bytes)?;
        self.snapshot = Some(new.signed);
        Ok(())
    }

    // ---- 5.6 ------------------------------------------------------------------------------

    /// 5.6: update the targets role.
    fn step_5_6_update_targets(&mut self, now: UnixTime) -> Result<(), Error> {
        let snapshot = self.snapshot.as_ref().ok_or(Error::NotRefreshed)?;
        let meta = meta_entry("snapshot.json", &snapshot.meta, "targets.json")?.clone();
        if let Some(local) = Self::listed_local(self.load_local::<Targets>().as_ref(), &meta, now)?
        {
            self.targets = Some(local);
            return Ok(());
        }
        // 5.6.1–5.6.4: download at most the listed length or Z bytes, check the listed hashes,
        // the trusted root's signatures and the listed version.
        let (new, bytes) =
            self.download_listed::<Targets>("snapshot.json", &meta, self.limits.targets_max)?;
        // 5.6.5: check for a freeze attack.
        check_expiry("targets", new.signed.expires, now)?;
        // 5.6.6: persist targets.json.
        self.persist(Role::Targets, &bytes)?;
        self.targets = Some(new.signed);
        Ok(())
    }

    /// 5.6.7: search for the target's metadata: the top-level targets role, then the
    /// delegated roles in the pre-order depth-first order of 5.6.7.2
    /// ([`crate::delegation::search`]), each loaded and verified by
    /// `step_5_6_7_load_delegated`. A target no visited role lists is
    /// [`Error::NoSuchTarget`].
    pub fn target(&self, name: &str) -> Result<TargetFile, Error> {
        let targets = self.targets.as_ref().ok_or(Error::NotRefreshed)?;
        let now = self.started.ok_or(Error::NotRefreshed)?;
        let found = search(targets, name, &mut |delegation| {
            self.step_5_6_7_load_delegated(delegation, now)
        })?;
        // 5.7.1 / 5.7.2: no metadata about the target: no such target.
        found.ok_or_else(|| Error::NoSuchTarget {
            name: name.to_owned(),
        })
    }

    /// 5.6.7.2: load a delegated targets role the search reaches, by steps 5.6.1 to 5.6.6
    /// applied to it: the version, length and hashes snapshot lists for `NAME.json`, signed
    /// by the threshold of the keys its delegating role lists for it, not expired. A trusted
    /// local copy that is exactly the listed one is used without downloading it. An error
    /// ends the search (5.6.7: "if any metadata ... cannot be downloaded nor validated, end
    /// the search"), reported as itself rather than as no such target.
    fn step_5_6_7_load_delegated(
        &self,
        delegation: &Delegation,
        now: UnixTime,
    ) -> Result<Targets, Error> {
        let snapshot = self.snapshot.as_ref().ok_or(Error::NotRefreshed)?;
        let file = format!("{}.json", delegation.name);
        let meta = meta_entry("snapshot.json", &snapshot.meta, &file)?.clone();
        let check = |role: &Unverified<Targets>| -> Result<(), Error> {
            // 5.6.3: signed by the delegating role's threshold of keys for this role.
            verify_threshold(
                &format!(
                    "{} (delegated by {})",
                    delegation.name, delegation.delegator
                ),
                &delegation.keys,
                &delegation.role_keys,
                &role.canonical,
                &role.signatures,
            )?;
            // 5.6.4: the version listed in snapshot.
            if role.signed.version != meta.version {
                return Err(Error::MixAndMatch {
                    role: delegation.name.clone(),
                    listed_in: "snapshot.json",
                    expected: meta.version,
                    got: role.signed.version,
                });
            }
            // 5.6.5: check for a freeze attack.
            check_expiry(&delegation.name, role.signed.expires, now)
        };
        if let Some(role) = self.delegated.borrow().get(&delegation.name) {
            check(role)?;
            return Ok(role.signed.clone());
        }
        let local = self
            .dir
            .join(format!("{}.json", local_target_file_name(&delegation.name)));
        // Off-spec (as python-tuf): a trusted local copy that is exactly the listed one.
        if let Ok(bytes) = std::fs::read(&local) {
            let role = check_bytes(&file, &bytes, meta.length, meta.hashes.as_ref())
                .and_then(|()| parse::<Targets>(&file, &bytes))
                .and_then(|role| check(&role).map(|()| role));
            if let Ok(role) = role {
                let signed = role.signed.clone();
                self.delegated
                    .borrow_mut()
                    .insert(delegation.name.clone(), role);
                return Ok(signed);
            }
        }
        // 5.6.1: download, at most the listed length or Z bytes.
        let path = delegated_metadata_name(
            &delegation.name,
            meta.version,
            self.root.consistent_snapshot,
        );
        // 5.6.2: the hashes (and length) listed in snapshot are checked inside the fetch.
        let bytes = fetch_metadata_file_name(
            &*self.transport,
            &path,
            self.limits.targets_max,
            meta.length,
            meta.hashes.as_ref(),
        )?;
        let role = parse::<Targets>(&path, &bytes)?;
        check(&role)?;
        // 5.6.6: persist it, under its escaped name.
        fsutil::atomic_write(&local, &bytes, 0o644)
            .map_err(|e| Error::io(format!("{}: write", local.display()), e))?;
        let signed = role.signed.clone();
        self.delegated
            .borrow_mut()
            .insert(delegation.name.clone(), role);
        Ok(signed)
    }

    // ---- 5.7 ------------------------------------------------------------------------------

    /// 5.7: fetch a target into `sink`, at most its listed length, and verify its hashes.
    ///
    /// The sink receives bytes before they are verified: do not use them unless this returns
    /// `Ok` (see [`crate::transport::fetch_target`]).
    pub fn fetch_target(
        &self,
        transport: &dyn Transport,
        name: &str,
        sink: &mut dyn Write,
    ) -> Result<VerifiedTarget, Error> {
        // 5.7.1 / 5.7.2: verify the target against its targets metadata.
        let target = self.target(name)?;
        // 5.7.3: download at most `length` bytes, check the hashes.
        let path = self.target_path(name, &target);
        fetch_target(transport, &path, &target, sink)
    }

    /// 5.7 into a directory: the target lands in `dir` as [`local_target_file_name`], by
    /// atomic rename only after verification. A file already there that matches the trusted
    /// metadata is kept without downloading it again.
    pub fn download_target_to_dir(
        &self,
        transport: &dyn Transport,
        name: &str,
        dir: &Path,
    ) -> Result<PathBuf, Error> {
        let target = self.target(name)?;
        let dest = dir.join(local_target_file_name(name));
        if dest.exists() && verify_local_target(&dest, &target).is_ok() {
            return Ok(dest);
        }
        let tmp = fsutil::temp_path(&dest);
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| Error::io(format!("{}: create", tmp.display()), e))?;
            self.fetch_target(transport, name, &mut file)?;
            file.sync_all()
                .map_err(|e| Error::io(format!("{}: sync", tmp.display()), e))?;
            std::fs::rename(&tmp, &dest)
                .map_err(|e| Error::io(format!("{}: rename", dest.display()), e))?;
            fsutil::sync_dir(&dest).map_err(|e| Error::io(format!("{}: sync", dir.display()), e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| dest)
    }

    /// The repository path of a target: `NAME`, or with consistent snapshots
    /// `DIR/HASH.BASENAME` (SHA-256 preferred).
    fn target_path(&self, name: &str, target: &TargetFile) -> String {
        if !self.root.consistent_snapshot {
            return name.to_owned();
        }
        let hash = target
            .hashes
            .get("sha256")
            .or_else(|| target.hashes.values().next());
        match (hash, name.rsplit_once('/')) {
            (None, _) => name.to_owned(),
            (Some(h), Some((dir, base))) => format!("{dir}/{h}.{base}"),
            (Some(h), None) => format!("{h}.{name}"),
        }
    }

    // ---- helpers --------------------------------------------------------------------------

    /// Off-spec (as python-tuf): the trusted local copy of a role, if it is exactly the one its
    /// parent lists (the version, and the length and hashes when listed), is used without
    /// downloading it again. Its expiry is still checked (freeze).
    fn listed_local<T: RoleMetadata + Clone>(
        trusted: Option<&(T, Vec<u8>)>,
        meta: &MetaFile,
        now: UnixTime,
    ) -> Result<Option<T>, Error> {
        let Some((local, bytes)) = trusted else {
            return Ok(None);
        };
        let file = T::ROLE.file_name();
        if local.version() != meta.version
            || check_bytes(file, bytes, meta.length, meta.hashes.as_ref()).is_err()
        {
            return Ok(None);
        }
        check_expiry(T::ROLE.name(), local.expires(), now)?;
        Ok(Some(local.clone()))
    }

    /// Steps 1–4 of 5.5 and 5.6: download the role its parent (`listed_in`) lists, at most the
    /// listed length or `max` bytes, with the listed hashes checked inside the fetch; then the
    /// trusted root's threshold of signatures (arbitrary software) and the listed version
    /// (mix-and-match). Returns the role and its exact bytes, to persist.
    fn download_listed<T: RoleMetadata>(
        &self,
        listed_in: &'static str,
        meta: &MetaFile,
        max: u64,
    ) -> Result<(Unverified<T>, Vec<u8>), Error> {
        let path = if self.root.consistent_snapshot {
            format!("{}.{}", meta.version, T::ROLE.file_name())
        } else {
            T::ROLE.file_name().to_owned()
        };
        let bytes = fetch_metadata(
            &*self.transport,
            &path,
            max,
            meta.length,
            meta.hashes.as_ref(),
        )?;
        let new = parse::<T>(&path, &bytes)?;
        self.verify_role(T::ROLE, &new)?;
        if new.signed.version() != meta.version {
            return Err(Error::MixAndMatch {
                role: T::ROLE.name().into(),
                listed_in,
                expected: meta.version,
                got: new.signed.version(),
            });
        }
        Ok((new, bytes))
    }

    fn verify_role<T>(&self, role: Role, new: &Unverified<T>) -> Result<(), Error> {
        verify_threshold(
            role.name(),
            &self.root.keys,
            self.root.role_keys(role)?,
            &new.canonical,
            &new.signatures,
        )
        .map(|_| ())
    }

    /// The local copy of a role, if present, well-formed and signed by the trusted root's
    /// keys for it; its bytes too.
    fn load_local<T: RoleMetadata>(&self) -> Option<(T, Vec<u8>)> {
        let path = self.dir.join(T::ROLE.file_name());
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable local metadata");
                return None;
            }
        };
        let checked = parse::<T>(T::ROLE.file_name(), &bytes)
            .and_then(|u| self.verify_role(T::ROLE, &u).map(|()| u));
        match checked {
            Ok(u) => Some((u.signed, bytes)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring local metadata that does not verify");
                None
            }
        }
    }

    fn persist(&self, role: Role, bytes: &[u8]) -> Result<(), Error> {
        let path = self.dir.join(role.file_name());
        fsutil::atomic_write(&path, bytes, 0o644)
            .map_err(|e| Error::io(format!("{}: write", path.display()), e))
    }

    fn load_time_floor(dir: &Path) -> Result<Option<UnixTime>, Error> {
        let path = dir.join(TIME_FLOOR_FILE);
        match std::fs::read_to_string(&path) {
            Ok(s) => UnixTime::parse(s.trim())
                .map(Some)
                .ok_or_else(|| Error::TimeFloorCorrupt {
                    path: path.display().to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("{}: read", path.display()), e)),
        }
    }

    /// Refuses an issue time below the floor.
    fn check_issued(issued: Option<UnixTime>, floor: Option<UnixTime>) -> Result<(), Error> {
        match (issued, floor) {
            (Some(issued), Some(floor)) if issued < floor => {
                Err(Error::IssuedBelowFloor { issued, floor })
            }
            _ => Ok(()),
        }
    }

    /// Raises (never lowers) the persisted floor to `issued`, capped at the root's expiry.
    fn raise_time_floor(&mut self, issued: Option<UnixTime>) -> Result<(), Error> {
        let Some(issued) = issued else {
            return Ok(());
        };
        let candidate = issued.min(self.root.expires);
        if self.floor.is_some_and(|f| f >= candidate) {
            return Ok(());
        }
        let path = self.dir.join(TIME_FLOOR_FILE);
        fsutil::atomic_write(&path, format!("{candidate}\n").as_bytes(), 0o644)
            .map_err(|e| Error::io(format!("{}: write", path.display()), e))?;
        self.floor = Some(candidate);
        Ok(())
    }
}
