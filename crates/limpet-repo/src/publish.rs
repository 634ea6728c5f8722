//! Publishing a built slot into an update repository (vendor side, `limpet publish`).
//!
//! Repository layout (static files; any web server or object store serves them):
//!
//! ```text
//! REPO/metadata/   TUF metadata (limpet-tuf): N.root.json, root.json, timestamp.json,
//!                  snapshot.json, targets.json and their versioned copies
//! REPO/targets/    TUF targets: D/V/slot.img, D/V/slot.cidx, D/V/from-F.delta (and
//!                  hash-prefixed copies); the same under D/V/cohort-K/ for a cohort's slot
//! REPO/chunks/     the chunk store (limpet-chunk): chunks/<2 hex>/<sha256>.zst
//! ```
//!
//! Rules kept here:
//! - A slot is published only if it verifies completely with the image public key given
//!   (signature, every verity block, the attachment), and only if its file is exactly the
//!   slot (no trailing bytes), so the device's seed and the index describe the same bytes.
//! - A version is published once: a version of the same precedence already listed for the
//!   device is refused (semver build metadata does not make a new version). A cohort's slot
//!   (its signed command line says `limpet.cohort=K/N`) is published under `D/V/cohort-K/`:
//!   each cohort of a version once, all with the same `N`, and never beside the version's
//!   non-cohort targets.
//! - A delta from the release before (`F`, the highest version of the device below this
//!   one) is made when that release's `slot.img` is in the repository with its signed
//!   hash, and kept when it is at most [`MAX_DELTA`] bytes and smaller than the chunks
//!   this version added. Devices on `F` fetch it; every other device uses the chunks. Only
//!   `N-1 -> N`: one file per release, made once, served as a static file. A cohort's delta
//!   starts from the same cohort's slot of `F`, or from `F`'s only slot when `F` was not
//!   built in cohorts.
//! - Write order: chunks, then `slot.img`, the delta, then `slot.cidx`. Every file is written
//!   atomically (limpet-chunk and limpet-tuf rename complete files into place), and an agent
//!   only acts on a `slot.cidx`, so it never sees a version whose chunks are not all there.
//! - Root keys are never needed: only targets, snapshot and timestamp keys sign here. Keys
//!   are PEM files in the keys directory (Ed25519, ECDSA P-256 or RSA) or signer commands
//!   for keys kept in an HSM or KMS (`*_with` functions; limpet-tuf's `keys::external`).
//! - A release's waves ([`publish_with_waves`]) are signed before its index target is
//!   added: a device never sees the release without them.
//! - A support extension ([`extend_support`]) never moves a model's end of support earlier
//!   than the one listed.
//! - One writer at a time per repository: `publish`, `refresh`, `extend_support` and
//!   `set_roughtime_servers` hold an exclusive lock
//!   on `REPO/.lock` ([`lock`]) and fail at once, naming it, when another holds it. (An
//!   advisory `flock`: a writer that ignores it, or a repository on a file system without
//!   locks, is not stopped.)

use std::fs::File;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use limpet_state::Version;
use limpet_tuf::keys::{ExternalSigner, Scheme};
use limpet_tuf::metadata::Role;
use limpet_tuf::{InitOptions, RepoError, Repository, SystemClock};

use serde_json::{Map, Value};

use crate::cohort::CohortTag;
use crate::roughtime::{RoughtimeEntry, RoughtimeList, RoughtimeListError, ROUGHTIME_FIELD};
use crate::support::{support_end, SupportError, SupportStatement, SUPPORT_FIELD};
use crate::target::{self, DeltaTarget, SlotTarget, CHUNKS_DIR, MAX_DELTA};

/// Why publishing, initialising or refreshing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The slot image cannot be read.
    #[error("{path}: cannot read the slot image")]
    Read {
        /// The slot image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The slot does not verify with the image key (or is not a slot at all).
    #[error("{path}: the slot does not verify with the image key given")]
    Verify {
        /// The slot image.
        path: PathBuf,
        /// What failed.
        #[source]
        source: limpet_image::slot::SlotError,
    },
    /// The file holds more (or fewer) bytes than the slot its header describes.
    #[error("{path}: file is {file_len} bytes, the slot it holds is {slot_len} bytes")]
    Length {
        /// The slot image.
        path: PathBuf,
        /// Bytes in the file.
        file_len: u64,
        /// The layout's total size.
        slot_len: u64,
    },
    /// The header's version is not a version the device state can hold.
    #[error("{path}: slot version {version:?}")]
    Version {
        /// The slot image.
        path: PathBuf,
        /// The text in the header.
        version: String,
        /// Why.
        #[source]
        source: limpet_state::VersionError,
    },
    /// This version (or one of equal precedence) is already published.
    #[error(
        "{device} {version} is already published as target {existing:?}; publish a higher version"
    )]
    Exists {
        /// Device model.
        device: String,
        /// The version refused.
        version: String,
        /// The target already listed.
        existing: String,
    },
    /// The slot's `limpet.cohort=` is not `K/N` in range.
    #[error("{path}: the slot's command line has a bad limpet.cohort= ({cmdline:?}): cohort K of N, 1 <= K <= N <= 64")]
    Cohort {
        /// The slot image.
        path: PathBuf,
        /// Its signed command line.
        cmdline: String,
    },
    /// The version is published with another number of cohorts, or without cohorts.
    #[error("{device} {version}: this slot is {cohort}, but the version is already published as target {existing:?} ({listed}); every cohort of a release declares the same number")]
    CohortMix {
        /// Device model.
        device: String,
        /// The version refused.
        version: String,
        /// This slot's cohort, or `not built in cohorts`.
        cohort: String,
        /// The target already listed.
        existing: String,
        /// What that target is.
        listed: String,
    },
    /// Writing the chunk store failed.
    #[error("{store}: writing the chunk store")]
    Chunks {
        /// The repository directory.
        store: PathBuf,
        /// The cause.
        #[source]
        source: limpet_chunk::PublishError,
    },
    /// The slot file changed while it was being published (its index was not added).
    #[error("{path}: the slot image changed while it was being published")]
    Changed {
        /// The slot image.
        path: PathBuf,
    },
    /// Another publisher holds the repository's lock.
    #[error("{lock}: another publish, refresh or rotation holds this repository; try again when it is done")]
    Busy {
        /// The lock file.
        lock: PathBuf,
    },
    /// The TUF repository could not be opened, read or signed.
    #[error("{repo}: TUF repository")]
    Repo {
        /// The repository directory.
        repo: PathBuf,
        /// The cause.
        #[source]
        source: RepoError,
    },
    /// A support extension's last day is not a real date `YYYY-MM-DD`.
    #[error("support extension for {device:?}: {last_day:?} is not a date YYYY-MM-DD")]
    SupportDate {
        /// The device model.
        device: String,
        /// The text given.
        last_day: String,
    },
    /// A support extension would end support before the end the repository already lists
    /// (devices that saw that one would refuse it anyway).
    #[error("support extension for {device:?}: {offered} is before {listed}, already published")]
    SupportShortening {
        /// The device model.
        device: String,
        /// The last day listed now.
        listed: String,
        /// The last day given.
        offered: String,
    },
    /// A release's waves cannot be written.
    #[error("{repo}: waves of {release}")]
    Waves {
        /// The repository directory.
        repo: PathBuf,
        /// The release, `model/version`.
        release: String,
        /// The cause.
        #[source]
        source: crate::waves::WavesSpecError,
    },
    /// Waves were given for a release the repository does not list.
    #[error(
        "{repo}: {release} is not published (no target {index_target}); publish it with its waves"
    )]
    NotPublished {
        /// The repository directory.
        repo: PathBuf,
        /// The release.
        release: String,
        /// The index target expected.
        index_target: String,
    },
    /// The repository's support statements cannot be read.
    #[error("{repo}: the support statements in targets.json")]
    Support {
        /// The repository directory.
        repo: PathBuf,
        /// The cause.
        #[source]
        source: crate::support::SupportError,
    },
    /// A handover date that is not a calendar date.
    #[error("handover date {day:?} is not a date YYYY-MM-DD")]
    HandoverDate {
        /// What was given.
        day: String,
    },
    /// The statement file cannot be written.
    #[error("{path}: cannot write the handover statement")]
    WriteStatement {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A Roughtime server list the device would refuse, or the field in `targets.json`
    /// is malformed.
    #[error("{repo}: Roughtime server list")]
    Roughtime {
        /// The repository directory.
        repo: PathBuf,
        /// The cause.
        #[source]
        source: crate::roughtime::RoughtimeListError,
    },
}

fn repo_err(repo: &Path) -> impl FnOnce(RepoError) -> PublishError + '_ {
    move |source| PublishError::Repo {
        repo: repo.to_owned(),
        source,
    }
}

/// What [`init_repo`] found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// A new repository with new role keys.
    Created {
        /// The root metadata devices must ship (`REPO/metadata/1.root.json`).
        trusted_root: PathBuf,
    },
    /// A repository was already there; nothing was changed.
    Existing {
        /// Its current root (`REPO/metadata/N.root.json`).
        trusted_root: PathBuf,
    },
}

/// What [`publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The signed facts now in the repository.
    pub slot: SlotTarget,
    /// The whole-slot target's name, `D/V/slot.img`.
    pub slot_target: String,
    /// The chunk index target's name, `D/V/slot.cidx`: what devices fetch.
    pub index_target: String,
    /// Chunks in the index.
    pub chunks: usize,
    /// Chunk files new to the store.
    pub chunks_written: usize,
    /// Bytes of those new chunk files.
    pub chunk_bytes_written: u64,
    /// Bytes of every chunk of this version, compressed: a download with no seed.
    pub compressed_length: u64,
    /// Bytes of the chunk index.
    pub index_length: u64,
    /// The root metadata devices must ship: `REPO/metadata/N.root.json` of the current root.
    pub trusted_root: PathBuf,
    /// The delta from the release before, or why there is none.
    pub delta: DeltaOutcome,
}

/// Whether [`publish`] added a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// `D/V/from-F.delta` was added.
    Added {
        /// The target's name.
        target: String,
        /// The release it starts from.
        from: String,
        /// Its length.
        length: u64,
        /// zstd frames the device compresses again.
        frames: usize,
    },
    /// No delta, and why (no release before, its slot missing, too large).
    Skipped(String),
}

/// The lock file, beside `metadata/`, `targets/` and `chunks/`.
pub const LOCK_FILE: &str = ".lock";

/// The repository's write lock, held until dropped.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

/// Takes the exclusive lock on `REPO/.lock` (creating the file), or fails with
/// [`PublishError::Busy`] when another process holds it.
pub fn lock(repo_dir: &Path) -> Result<RepoLock, PublishError> {
    let path = repo_dir.join(LOCK_FILE);
    let io = |source| PublishError::Repo {
        repo: repo_dir.to_owned(),
        source: RepoError::Io {
            path: path.clone(),
            source,
        },
    };
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(RepoLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(PublishError::Busy { lock: path }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// `REPO/metadata/N.root.json` of the repository's current root: the file a device's image
/// carries as its trusted root (any later root is reached from it by the N+1 chain).
pub fn trusted_root_path(repo_dir: &Path, keys_dir: &Path) -> Result<PathBuf, PublishError> {
    let repo =
        Repository::open(repo_dir, keys_dir, Box::new(SystemClock)).map_err(repo_err(repo_dir))?;
    let root = repo.root().map_err(repo_err(repo_dir))?;
    Ok(repo
        .metadata_dir()
        .join(format!("{}.{}", root.version, Role::Root.file_name())))
}

/// Creates the TUF repository in `repo_dir` and its Ed25519 role keys in `keys_dir` (3 root
/// keys with threshold 2, one key each for targets, snapshot and timestamp), unless a
/// repository is already there. Keep the `root-*.pem` keys offline afterwards: publishing
/// never needs them.
pub fn init_repo(repo_dir: &Path, keys_dir: &Path) -> Result<InitOutcome, PublishError> {
    init_repo_with(repo_dir, keys_dir, Scheme::Ed25519)
}

/// As [`init_repo`], with role keys of `scheme`.
pub fn init_repo_with(
    repo_dir: &Path,
    keys_dir: &Path,
    scheme: Scheme,
) -> Result<InitOutcome, PublishError> {
    let root_json = repo_dir.join("metadata").join(Role::Root.file_name());
    if root_json.exists() {
        return Ok(InitOutcome::Existing {
            trusted_root: trusted_root_path(repo_dir, keys_dir)?,
        });
    }
    let opts = InitOptions {
        root_keys: 3,
        root_threshold: 2,
        key_scheme: scheme,
        ..InitOptions::default()
    };
    Repository::init(repo_dir, keys_dir, opts, Box::new(SystemClock))
        .map_err(repo_err(repo_dir))?;
    let chunks = repo_dir.join(CHUNKS_DIR);
    std::fs::create_dir_all(&chunks).map_err(|source| PublishError::Repo {
        repo: repo_dir.to_owned(),
        source: RepoError::Io {
            path: chunks,
            source,
        },
    })?;
    Ok(InitOutcome::Created {
        trusted_root: trusted_root_path(repo_dir, keys_dir)?,
    })
}

/// Re-signs snapshot and timestamp with fresh expiries (run it well within a day: the
/// timestamp is valid for one). Needs only the snapshot and timestamp keys.
pub fn refresh(repo_dir: &Path, keys_dir: &Path) -> Result<(), PublishError> {
    refresh_with(repo_dir, keys_dir, Vec::new())
}

/// As [`refresh`], with keys `signers` sign for beside the keys directory's.
pub fn refresh_with(
    repo_dir: &Path,
    keys_dir: &Path,
    signers: Vec<ExternalSigner>,
) -> Result<(), PublishError> {
    let _lock = lock(repo_dir)?;
    open(repo_dir, keys_dir, signers)?
        .refresh()
        .map_err(repo_err(repo_dir))
}

/// Extends the support window of device model `device` to `last_day` (`YYYY-MM-DD`, the
/// last day of support, as the manifest's `support_until`): a signed statement in
/// `targets.json` ([`crate::support`]), re-signed with the targets keys, then snapshot and
/// timestamp. Refuses a date before the one already listed for the model.
pub fn extend_support(
    repo_dir: &Path,
    keys_dir: &Path,
    device: &str,
    last_day: &str,
    signers: Vec<ExternalSigner>,
) -> Result<SupportStatement, PublishError> {
    let until = support_end(last_day).ok_or_else(|| PublishError::SupportDate {
        device: device.to_owned(),
        last_day: last_day.to_owned(),
    })?;
    let _lock = lock(repo_dir)?;
    let repo = open(repo_dir, keys_dir, signers)?;
    let targets = repo.targets().map_err(repo_err(repo_dir))?;
    let support_err = |source| PublishError::Support {
        repo: repo_dir.to_owned(),
        source,
    };
    if let Some(listed) =
        SupportStatement::from_targets(&targets.extra, device).map_err(support_err)?
    {
        if until < listed.until {
            return Err(PublishError::SupportShortening {
                device: device.to_owned(),
                listed: listed.last_day,
                offered: last_day.to_owned(),
            });
        }
    }
    let mut entries = match targets.extra.get(SUPPORT_FIELD) {
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(support_err(SupportError::NotAnObject)),
        None => Map::new(),
    };
    entries.insert(device.to_owned(), Value::String(last_day.to_owned()));
    repo.set_targets_field(SUPPORT_FIELD, Value::Object(entries))
        .map_err(repo_err(repo_dir))?;
    Ok(SupportStatement {
        last_day: last_day.to_owned(),
        until,
    })
}

/// Replaces the Roughtime server list of device model `device` with `servers`: a signed
/// statement in `targets.json` ([`crate::roughtime`]), re-signed with the targets keys, then
/// snapshot and timestamp. Refuses a list the device would refuse (a bad key, a bad
/// address, a repeated name). Devices take it only when each address is one their slot
/// lists (its egress rule is compiled into the image).
pub fn set_roughtime_servers(
    repo_dir: &Path,
    keys_dir: &Path,
    device: &str,
    servers: Vec<RoughtimeEntry>,
    signers: Vec<ExternalSigner>,
) -> Result<RoughtimeList, PublishError> {
    let rt_err = |source| PublishError::Roughtime {
        repo: repo_dir.to_owned(),
        source,
    };
    let list = RoughtimeList::new(device, servers).map_err(rt_err)?;
    let _lock = lock(repo_dir)?;
    let repo = open(repo_dir, keys_dir, signers)?;
    let targets = repo.targets().map_err(repo_err(repo_dir))?;
    let mut entries = match targets.extra.get(ROUGHTIME_FIELD) {
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(rt_err(RoughtimeListError::NotAnObject)),
        None => Map::new(),
    };
    let value = serde_json::to_value(&list.servers).map_err(|e| {
        rt_err(RoughtimeListError::NotAList {
            device: device.to_owned(),
            reason: e.to_string(),
        })
    })?;
    entries.insert(device.to_owned(), value);
    repo.set_targets_field(ROUGHTIME_FIELD, Value::Object(entries))
        .map_err(repo_err(repo_dir))?;
    Ok(list)
}

/// Signs the owner handover statement for device model `device` ([`crate::handover`]):
/// from 00:00 UTC of `day` (`YYYY-MM-DD`), a device whose time floor has passed it may take
/// a trust root chosen by its owner. Signed with the root keys of the repository's current
/// root (in `keys_dir` or `signers`), written to `out` (by default
/// `REPO/handover/DEVICE.json`, served with the repository). Returns the file and the
/// statement.
pub fn sign_handover(
    repo_dir: &Path,
    keys_dir: &Path,
    device: &str,
    day: &str,
    out: Option<&Path>,
    signers: Vec<ExternalSigner>,
) -> Result<(PathBuf, crate::Handover), PublishError> {
    let after = crate::handover::day_start(day).ok_or_else(|| PublishError::HandoverDate {
        day: day.to_owned(),
    })?;
    let repo = open(repo_dir, keys_dir, signers)?;
    let bytes = repo
        .sign_with_root_keys(crate::handover::statement(device, after))
        .map_err(repo_err(repo_dir))?;
    let path = out.map_or_else(
        || repo_dir.join("handover").join(format!("{device}.json")),
        Path::to_owned,
    );
    let write = |source| PublishError::WriteStatement {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    std::fs::write(&path, &bytes).map_err(write)?;
    Ok((
        path.clone(),
        crate::Handover {
            device: device.to_owned(),
            after,
        },
    ))
}

/// Writes the rollout waves of the published release `release` (`model/version`) into
/// `targets.json` ([`crate::waves`]), re-signed with the targets keys, then snapshot and
/// timestamp: to move a rollout's start times, or mark the release an emergency one.
pub fn set_waves(
    repo_dir: &Path,
    keys_dir: &Path,
    release: &str,
    spec: &crate::waves::WavesSpec,
    signers: Vec<ExternalSigner>,
) -> Result<limpet_fleet_api::waves::WavesField, PublishError> {
    let _lock = lock(repo_dir)?;
    let repo = open(repo_dir, keys_dir, signers)?;
    let targets = repo.targets().map_err(repo_err(repo_dir))?;
    let index_target = match release.split_once('/') {
        Some((device, version)) => target::index_target_name(device, version),
        None => release.to_owned(),
    };
    let cohort_listed = targets.targets.keys().any(|name| {
        name.strip_prefix(release)
            .and_then(|r| r.strip_prefix("/cohort-"))
            .is_some_and(|r| r.ends_with(&format!("/{}", target::INDEX_FILE)))
    });
    if !targets.targets.contains_key(&index_target) && !cohort_listed {
        return Err(PublishError::NotPublished {
            repo: repo_dir.to_owned(),
            release: release.to_owned(),
            index_target,
        });
    }
    write_waves(&repo, repo_dir, &targets, release, spec)
}

/// Merges, validates and signs one release's waves into `targets.json`.
fn write_waves(
    repo: &Repository,
    repo_dir: &Path,
    targets: &limpet_tuf::metadata::Targets,
    release: &str,
    spec: &crate::waves::WavesSpec,
) -> Result<limpet_fleet_api::waves::WavesField, PublishError> {
    let (value, field) =
        crate::waves::merged_field(&targets.extra, release, spec).map_err(|source| {
            PublishError::Waves {
                repo: repo_dir.to_owned(),
                release: release.to_owned(),
                source,
            }
        })?;
    repo.set_targets_field(limpet_fleet_api::waves::WAVES_FIELD, value)
        .map_err(repo_err(repo_dir))?;
    Ok(field)
}

/// The repository, signing with the keys of `keys_dir` and `signers`.
fn open(
    repo_dir: &Path,
    keys_dir: &Path,
    signers: Vec<ExternalSigner>,
) -> Result<Repository, PublishError> {
    Ok(Repository::open(repo_dir, keys_dir, Box::new(SystemClock))
        .map_err(repo_err(repo_dir))?
        .with_signers(signers))
}

/// The slot image of `path`: the file itself, or `path/slot.img` for a build output
/// directory.
pub fn slot_image_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(target::SLOT_FILE)
    } else {
        path.to_owned()
    }
}

/// Publishes the slot at `slot_or_out` (a slot image or a `limpet build` output directory)
/// into the repository `repo_dir`, signing with the role keys in `keys_dir`. The slot must
/// verify with `image_key`. See the module rules.
pub fn publish(
    slot_or_out: &Path,
    repo_dir: &Path,
    keys_dir: &Path,
    image_key: &VerifyingKey,
) -> Result<Published, PublishError> {
    publish_with(slot_or_out, repo_dir, keys_dir, image_key, Vec::new())
}

/// As [`publish()`], with keys `signers` sign for beside the keys directory's.
pub fn publish_with(
    slot_or_out: &Path,
    repo_dir: &Path,
    keys_dir: &Path,
    image_key: &VerifyingKey,
    signers: Vec<ExternalSigner>,
) -> Result<Published, PublishError> {
    publish_with_waves(slot_or_out, repo_dir, keys_dir, image_key, signers, None)
}

/// As [`publish_with`], writing the release's rollout waves too. They are signed into
/// `targets.json` before the index target is added, so no device ever sees the release
/// without its waves (and waves that devices would refuse stop the publish before then).
pub fn publish_with_waves(
    slot_or_out: &Path,
    repo_dir: &Path,
    keys_dir: &Path,
    image_key: &VerifyingKey,
    signers: Vec<ExternalSigner>,
    waves: Option<&crate::waves::WavesSpec>,
) -> Result<Published, PublishError> {
    let path = slot_image_path(slot_or_out);
    let _lock = lock(repo_dir)?;
    let repo = open(repo_dir, keys_dir, signers)?;

    // 1. The slot: verified completely, exactly its own length.
    let read_err = |source| PublishError::Read {
        path: path.clone(),
        source,
    };
    let mut file = File::open(&path).map_err(read_err)?;
    let file_len = file.metadata().map_err(read_err)?.len();
    let (layout, header) =
        limpet_image::slot::verify_at(&mut file, image_key).map_err(|source| {
            PublishError::Verify {
                path: path.clone(),
                source,
            }
        })?;
    if file_len != layout.total_size {
        return Err(PublishError::Length {
            path,
            file_len,
            slot_len: layout.total_size,
        });
    }
    let version = Version::parse(&header.version).map_err(|source| PublishError::Version {
        path: path.clone(),
        version: header.version.clone(),
        source,
    })?;

    let cohort = match limpet_image::cmdline::CohortParam::from_cmdline(&header.cmdline) {
        limpet_image::cmdline::CohortParam::Absent => None,
        limpet_image::cmdline::CohortParam::Of { index, count } => Some(
            CohortTag::new(index, count).map_err(|_| PublishError::Cohort {
                path: path.clone(),
                cmdline: header.cmdline.clone(),
            })?,
        ),
        limpet_image::cmdline::CohortParam::Invalid => {
            return Err(PublishError::Cohort {
                path: path.clone(),
                cmdline: header.cmdline.clone(),
            })
        }
    };

    // 2. Not published before (this cohort of it, for a cohort's slot).
    let listed = repo.targets().map_err(repo_err(repo_dir))?;
    for (name, file) in &listed.targets {
        let Some(rest) = name
            .strip_prefix(header.device.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let Some((v, inner)) = rest.split_once('/') else {
            continue;
        };
        if !Version::parse(v).is_ok_and(|v| v.precedence(&version).is_eq()) {
            continue;
        }
        let listed_cohort = listed_cohort(inner, file);
        check_not_listed(&header.device, &version, cohort, name, listed_cohort)?;
    }

    // 3. The waves checked before anything is written (they are signed in step 4).
    let release = format!("{}/{version}", header.device);
    if let Some(spec) = waves {
        crate::waves::merged_field(&listed.extra, &release, spec).map_err(|source| {
            PublishError::Waves {
                repo: repo_dir.to_owned(),
                release: release.clone(),
                source,
            }
        })?;
    }

    // 4. Chunks, then the slot, then the waves, then its index (the index makes the
    //    version visible).
    let chunked =
        limpet_chunk::publish_with(&path, repo_dir, limpet_chunk::PublishOptions::default())
            .map_err(|source| PublishError::Chunks {
                store: repo_dir.to_owned(),
                source,
            })?;
    let index = chunked.index;
    let slot = SlotTarget {
        device: header.device.clone(),
        version,
        target: header.target.as_str().to_owned(),
        verity_root: header.root_hash,
        slot_length: file_len,
        slot_sha256: index.payload_sha256(),
        cohort,
    };
    let version_text = slot.version.to_string();
    let slot_target = target::slot_target_name_in(&slot.device, &version_text, cohort);
    let index_target = target::index_target_name_in(&slot.device, &version_text, cohort);
    let added = repo
        .add_target(&slot_target, &path, Some(slot.slot_custom()))
        .map_err(repo_err(repo_dir))?;
    // The file was read three times (verify, chunk, copy): all three must be the same bytes.
    if added.hashes.get("sha256") != Some(&hex::encode(slot.slot_sha256)) {
        return Err(PublishError::Changed { path });
    }
    let delta = add_delta(
        &repo,
        repo_dir,
        &listed,
        &slot,
        &path,
        chunked.bytes_written,
    )?;
    if let Some(spec) = waves {
        let targets = repo.targets().map_err(repo_err(repo_dir))?;
        write_waves(&repo, repo_dir, &targets, &release, spec)?;
    }
    let index_bytes = index.to_bytes();
    repo.add_target_bytes(&index_target, &index_bytes, Some(slot.index_custom()))
        .map_err(repo_err(repo_dir))?;

    Ok(Published {
        chunks: index.chunks().len(),
        chunks_written: chunked.chunks_written,
        chunk_bytes_written: chunked.bytes_written,
        compressed_length: index.compressed_length(),
        index_length: u64::try_from(index_bytes.len()).unwrap_or(u64::MAX),
        trusted_root: trusted_root_path(repo_dir, keys_dir)?,
        slot,
        slot_target,
        index_target,
        delta,
    })
}

/// `dir` when it is a bare version (no `/`).
fn v_only(dir: &str) -> Option<&str> {
    (!dir.contains('/')).then_some(dir)
}

/// The cohort a listed target of a release is of, from the part of its name after
/// `D/V/` and its signed custom: `Ok(None)` for a non-cohort target, `Err(name part)` when
/// it sits in a cohort directory but its custom does not say which (a malformed listing).
fn listed_cohort(
    inner: &str,
    file: &limpet_tuf::metadata::TargetFile,
) -> Result<Option<CohortTag>, String> {
    if !inner.contains('/') {
        return Ok(None);
    }
    let custom = file.custom.as_ref().and_then(|c| c.get(target::CUSTOM_KEY));
    let number = |field: &str| {
        custom
            .and_then(|c| c.get(field))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    match (number("cohort"), number("cohorts")) {
        (Some(k), Some(n)) => CohortTag::new(k, n).map(Some).map_err(|_| inner.to_owned()),
        _ => Err(inner.to_owned()),
    }
}

/// Refuses to publish `cohort` of `version` beside the listed target `name` of the same
/// version (of `listed`): the same cohort (or both not cohorts) is a second publish, and
/// a different number of cohorts, or cohorts beside a non-cohort release, is a mix.
fn check_not_listed(
    device: &str,
    version: &Version,
    cohort: Option<CohortTag>,
    name: &str,
    listed: Result<Option<CohortTag>, String>,
) -> Result<(), PublishError> {
    let exists = || PublishError::Exists {
        device: device.to_owned(),
        version: version.to_string(),
        existing: name.to_owned(),
    };
    let describe =
        |c: Option<CohortTag>| c.map_or("not built in cohorts".to_owned(), |c| c.to_string());
    let mix = |what: String| PublishError::CohortMix {
        device: device.to_owned(),
        version: version.to_string(),
        cohort: describe(cohort),
        existing: name.to_owned(),
        listed: what,
    };
    match (cohort, listed) {
        (None, _) => Err(exists()),
        (Some(_), Err(inner)) => Err(mix(format!("{inner}: no cohort in its custom"))),
        (Some(_), Ok(None)) => Err(mix(describe(None))),
        (Some(c), Ok(Some(l))) if l.count() != c.count() => Err(mix(l.to_string())),
        (Some(c), Ok(Some(l))) if l.index() == c.index() => Err(exists()),
        (Some(_), Ok(Some(_))) => Ok(()),
    }
}

/// Makes and adds the delta from the release before `slot`, when there is one to make and
/// it is worth it (module rules).
fn add_delta(
    repo: &Repository,
    repo_dir: &Path,
    listed: &limpet_tuf::metadata::Targets,
    slot: &SlotTarget,
    new_path: &Path,
    chunk_bytes: u64,
) -> Result<DeltaOutcome, PublishError> {
    let skipped = |why: String| Ok(DeltaOutcome::Skipped(why));
    // The earlier release's slot: of the same cohort, or the release's only one.
    let own_dir = slot.cohort.map(|c| c.dir_name());
    let Some((from, _, from_name)) = listed
        .targets
        .keys()
        .filter_map(|name| {
            let rest = name.strip_prefix(slot.device.as_str())?.strip_prefix('/')?;
            let dir = rest.strip_suffix(target::SLOT_FILE)?.strip_suffix('/')?;
            let (v, same_cohort) = match dir.split_once('/') {
                Some((v, c)) if Some(c) == own_dir.as_deref() => (v, true),
                Some(_) => return None,
                None => (v_only(dir)?, false),
            };
            let v = Version::parse(v).ok()?;
            v.precedence(&slot.version)
                .is_lt()
                .then(|| (v, same_cohort, name.clone()))
        })
        .max_by(|a, b| a.0.precedence(&b.0).then(a.1.cmp(&b.1)))
    else {
        return skipped("no earlier release of this device".into());
    };
    let old_path = repo.targets_dir().join(&from_name);
    let Ok(old) = std::fs::read(&old_path) else {
        return skipped(format!("{} is not in the repository", old_path.display()));
    };
    let signed = listed
        .targets
        .get(&from_name)
        .and_then(|t| t.hashes.get("sha256"));
    let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&old));
    if signed != Some(&actual) {
        return skipped(format!(
            "{} does not match its signed sha256",
            old_path.display()
        ));
    }
    let new = std::fs::read(new_path).map_err(|source| PublishError::Read {
        path: new_path.to_owned(),
        source,
    })?;
    // A delta is an optimisation: when it cannot be made (say the old slot holds bytes that
    // look like a zstd frame and are not one), the release is published without it.
    let made = match limpet_delta::make(&old, &new) {
        Ok(made) => made,
        // (DeltaError's messages carry their causes.)
        Err(e) => return skipped(format!("no delta from {from}: {e}")),
    };
    let length = made.delta.len() as u64;
    if length > MAX_DELTA || length >= chunk_bytes.max(1) {
        return skipped(format!(
            "the delta from {from} is {length} bytes: not smaller than the {chunk_bytes} bytes \
             of new chunks, or over {MAX_DELTA}"
        ));
    }
    let delta = DeltaTarget {
        slot: slot.clone(),
        from,
    };
    let name = delta.name();
    repo.add_target_bytes(&name, &made.delta, Some(delta.custom()))
        .map_err(repo_err(repo_dir))?;
    Ok(DeltaOutcome::Added {
        target: name,
        from: delta.from.to_string(),
        length,
        frames: made.new_frames,
    })
}
