//! Owner handover on the device (docs/end-of-life.md#owner-handover): the owner's request
//! checked against the vendor's statement, and the enrolment that makes the owner's root
//! the agent's trust anchor.
//!
//! Where a request comes from: `owner-request.json` ([`REQUEST_FILE`]) in the state
//! directory, taken at every poll; or the same name at the base of the repository the agent
//! polls ([`REMOTE_REQUEST`], at most [`MAX_REQUEST_BYTES`]), asked for only when that
//! repository's metadata did not verify under the vendor's root (after the date, the owner
//! serves their own repository at the device's repository address, their request beside
//! it). The device reaches nothing its allowlist does not already name, and the request is
//! checked in full on the device, so the transport needs no trust.
//!
//! Files, all in the agent's state directory (the data partition):
//!
//! | file | what |
//! |---|---|
//! | `owner-request.json` ([`REQUEST_FILE`]) | an owner's request (limpet-repo's `OwnerRequest`), taken at the next poll |
//! | `owner/enrolment.json` ([`ENROLMENT_FILE`]) | the enrolment: the statement, the owner's root, the owner's image key |
//! | `tuf-owner/` ([`OWNER_METADATA_DIR`]) | the TUF metadata of the owner's repository, provisioned from the enrolment's root |
//! | `tuf/` | the vendor's TUF metadata, left as it was |
//!
//! Rules kept here:
//! - A request is checked in full before anything is written: the statement against the
//!   vendor's trusted root (the newest the device walked to in `tuf/root.json`, else the
//!   root shipped in the image) and model; its date against PID 1's trusted time
//!   ([`handover_time`]: the earliest time, never the clock); the owner's root as a
//!   self-signed TUF root with none of the vendor's root keys; the image key as Ed25519.
//! - The enrolment is one file, written to a temporary name, synced, renamed into place,
//!   and the directory synced: after a power cut it is there whole or not at all. It is the
//!   only switch: with it the agent trusts the owner's root (in its own metadata
//!   directory, so no vendor metadata is ever read under it), without it the vendor's.
//!   `tuf-owner/` is made from it whenever missing or damaged, so a cut after the rename
//!   but before the first refresh loses nothing.
//! - The enrolment waits for a person at the device ([`take`]): while the loader reports
//!   any mode but handing over or handed over (PID 1's `owner_mode`), a request that holds
//!   only asks the boot loader to hand the device over to the owner's image key (PID 1
//!   writes the loader's request block, which the loader acts on only when a person at the
//!   device confirms it), and nothing is written. Once the loader reports handing over (or
//!   handed over) to that very key, the same request is enrolled; to another key, it is
//!   refused. So a request served by whoever answers at the repository's address cannot
//!   move the agent's trust anchor without the press. The loader's confirmation wipes the
//!   data partition; the request is taken again after that boot (from the repository, or
//!   given again), and enrolled.
//! - Once enrolled, a device is not enrolled again: a second request is refused (the owner
//!   rotates keys through their own repository's root, as TUF does).
//! - An enrolment that no longer parses stops updates with an error naming it; the agent
//!   never falls back to the vendor's root.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use limpet_install_api::DeviceStatus;
use limpet_repo::{HandoverError, OwnerRequest};
use limpet_tuf::metadata::Root;
use limpet_tuf::UnixTime;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where an owner's request is taken from, in the state directory.
pub const REQUEST_FILE: &str = "owner-request.json";
/// Where an owner's request is asked for, below the repository's base URL.
pub const REMOTE_REQUEST: &str = "owner-request.json";
/// The largest request fetched from the repository: a statement, a root of a few keys and
/// a PEM key take a few KiB.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// The enrolment, in the state directory.
pub const ENROLMENT_FILE: &str = "owner/enrolment.json";
/// The owner's repository's TUF metadata, in the state directory.
pub const OWNER_METADATA_DIR: &str = "tuf-owner";

/// The enrolment record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// The record's format, 1.
    pub format: u32,
    /// The device model.
    pub device: String,
    /// The handover date of the vendor's statement (seconds since 1970).
    pub after: i64,
    /// PID 1's trusted time when the request was taken ([`handover_time`], seconds since
    /// 1970).
    pub floor: i64,
    /// The request as taken: the statement, the owner's root, the image key.
    pub request: OwnerRequest,
}

impl Enrolment {
    /// The owner's root metadata: the agent's trust anchor.
    pub fn root_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.request.root).unwrap_or_default()
    }
}

/// Why a request or an enrolment is refused or unreadable.
#[derive(Debug, Error)]
pub enum OwnerError {
    /// The request file cannot be read or parsed.
    #[error("{path}: not an owner request")]
    Request {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The repository's request could not be fetched (other than missing: that is no
    /// request).
    #[error("{url}: cannot fetch the owner request")]
    Fetch {
        /// The request's URL.
        url: String,
        /// Why.
        #[source]
        source: limpet_tuf::Error,
    },
    /// The request does not hold.
    #[error("owner request refused")]
    Refused(#[source] HandoverError),
    /// The device is already handed over.
    #[error("the device is already handed over (since its enrolment in {path})")]
    AlreadyEnrolled {
        /// The enrolment.
        path: PathBuf,
    },
    /// No vendor root to check the statement against.
    #[error("{path}: no trusted vendor root to check the statement against")]
    VendorRoot {
        /// The root file tried last.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The enrolment cannot be written.
    #[error("{path}: cannot write the enrolment")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The loader is handing the device over to another key than the request's.
    #[error("the boot loader hands this device over to the key {confirmed}, not the request's {requested}")]
    OtherKey {
        /// The key the loader reports, in hex.
        confirmed: String,
        /// The request's key, in hex.
        requested: String,
    },
    /// PID 1 did not write the loader's hand-over request: nothing is enrolled.
    #[error("the boot loader's hand-over request was not written; nothing enrolled")]
    HandOver {
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An enrolment that exists but does not parse: updates stop, nothing falls back.
    #[error(
        "{path}: the enrolment is damaged; updates stop (the vendor's root is never trusted again)"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The enrolment in `state_dir`, if the device is handed over.
pub fn load(state_dir: &Path) -> Result<Option<Enrolment>, OwnerError> {
    let path = state_dir.join(ENROLMENT_FILE);
    let damaged = |source: Box<dyn std::error::Error + Send + Sync>| OwnerError::Damaged {
        path: path.clone(),
        source,
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(damaged(Box::new(e))),
    };
    let enrolment: Enrolment = serde_json::from_slice(&bytes).map_err(|e| damaged(Box::new(e)))?;
    if enrolment.format != 1 {
        return Err(damaged(
            format!("format {}, this agent reads 1", enrolment.format).into(),
        ));
    }
    limpet_tuf::client::verify_root(&enrolment.root_bytes()).map_err(|e| damaged(Box::new(e)))?;
    Ok(Some(enrolment))
}

/// The vendor's trusted root: the newest the agent verified (`vendor_dir/root.json`), or
/// the one shipped in the image when that is missing or does not verify.
pub fn vendor_root(vendor_dir: &Path, shipped: &Path) -> Result<Root, OwnerError> {
    let stored = vendor_dir.join("root.json");
    let verified = std::fs::read(&stored)
        .ok()
        .and_then(|b| limpet_tuf::client::verify_root(&b).ok());
    if let Some(root) = verified {
        return Ok(root);
    }
    let err = |source: Box<dyn std::error::Error + Send + Sync>| OwnerError::VendorRoot {
        path: shipped.to_owned(),
        source,
    };
    let bytes = std::fs::read(shipped).map_err(|e| err(Box::new(e)))?;
    limpet_tuf::client::verify_root(&bytes).map_err(|e| err(Box::new(e)))
}

/// The time a statement's date is checked against, from PID 1's status: the device's
/// earliest time (the floor plus the uptime counted since, raised by a verified Roughtime
/// answer; never the clock, never ahead of the true time), or the floor from a PID 1 that
/// does not report it. So a vendor that stops signing its timestamp before the date does
/// not strand its devices: the date passes with the device's own counted time. `None`
/// when PID 1 keeps no time record.
pub fn handover_time(status: &DeviceStatus) -> Option<UnixTime> {
    let latest = match (status.time_floor, status.earliest_time) {
        (Some(floor), Some(earliest)) => Some(floor.max(earliest)),
        (floor, earliest) => floor.or(earliest),
    }?;
    Some(UnixTime::from_secs(
        i64::try_from(latest).unwrap_or(i64::MAX),
    ))
}

/// What [`take`] did with a request that holds.
#[derive(Debug)]
pub enum Taken {
    /// The loader reports the hand-over to the request's key, confirmed: enrolled.
    Enrolled(Enrolment),
    /// Not confirmed yet: the loader was asked (by `ask_loader`) to hand the device over to
    /// this key at its next boot; nothing written.
    LoaderAsked {
        /// The owner's Ed25519 image key.
        key: [u8; 32],
    },
}

/// The key the boot loader hands the device over to, from PID 1's `owner_mode`
/// (`handing-over:KEY` or `handed-over:KEY`); `None` for any other mode or none.
pub fn confirmed_key(owner_mode: Option<&str>) -> Option<String> {
    let (mode, key) = owner_mode?.split_once(':')?;
    matches!(mode, "handing-over" | "handed-over").then(|| key.to_ascii_lowercase())
}

fn hex(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Takes `request` (see the module rules): checked; then enrolled when `owner_mode` (PID
/// 1's report of the loader) is handing over or handed over to its key, refused when to
/// another key, else `ask_loader` is called with the key (the agent: PID 1 writes the
/// loader's hand-over request; its error is [`OwnerError::HandOver`]) and nothing written.
pub fn take(
    state_dir: &Path,
    vendor_root: &Root,
    device: &str,
    floor: Option<UnixTime>,
    request: OwnerRequest,
    owner_mode: Option<&str>,
    ask_loader: impl FnOnce([u8; 32]) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
) -> Result<Taken, OwnerError> {
    let (key, _) = check(state_dir, vendor_root, device, floor, &request)?;
    match confirmed_key(owner_mode) {
        Some(confirmed) if confirmed == hex(&key) => {
            enrol(state_dir, vendor_root, device, floor, request).map(Taken::Enrolled)
        }
        Some(confirmed) => Err(OwnerError::OtherKey {
            confirmed,
            requested: hex(&key),
        }),
        None => {
            ask_loader(key).map_err(|source| OwnerError::HandOver { source })?;
            Ok(Taken::LoaderAsked { key })
        }
    }
}

/// The checks before anything is written (module rules): not enrolled yet, the request
/// holds. The owner's Ed25519 image key and the statement's date.
fn check(
    state_dir: &Path,
    vendor_root: &Root,
    device: &str,
    floor: Option<UnixTime>,
    request: &OwnerRequest,
) -> Result<([u8; 32], UnixTime), OwnerError> {
    if load(state_dir)?.is_some() {
        return Err(OwnerError::AlreadyEnrolled {
            path: state_dir.join(ENROLMENT_FILE),
        });
    }
    let checked = request
        .check(vendor_root, device, floor)
        .map_err(OwnerError::Refused)?;
    match checked.image_key.material() {
        limpet_tuf::keys::KeyMaterial::Ed25519(key) => Ok((key, checked.handover.after)),
        _ => Err(OwnerError::Refused(HandoverError::ImageKey {
            reason: "not an Ed25519 key".into(),
        })),
    }
}

/// Checks `request` (see the module rules) and writes the enrolment into `state_dir`. The
/// loader's confirmation is the caller's to have seen ([`take`] checks it).
pub fn enrol(
    state_dir: &Path,
    vendor_root: &Root,
    device: &str,
    floor: Option<UnixTime>,
    request: OwnerRequest,
) -> Result<Enrolment, OwnerError> {
    let path = state_dir.join(ENROLMENT_FILE);
    let (_, after) = check(state_dir, vendor_root, device, floor, &request)?;
    let enrolment = Enrolment {
        format: 1,
        device: device.to_owned(),
        after: after.as_secs(),
        floor: floor.map_or(0, UnixTime::as_secs),
        request,
    };
    let bytes = serde_json::to_vec_pretty(&enrolment).map_err(|e| OwnerError::Write {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    write_atomically(&path, &bytes).map_err(|source| OwnerError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(enrolment)
}

/// Reads the request file of `state_dir`, if there is one.
pub fn pending_request(state_dir: &Path) -> Result<Option<OwnerRequest>, OwnerError> {
    let path = state_dir.join(REQUEST_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(OwnerError::Request {
                path,
                source: Box::new(e),
            })
        }
    };
    parse_request(&bytes, path).map(Some)
}

/// `bytes` as an owner's request; `from` names where they came from.
pub fn parse_request(bytes: &[u8], from: PathBuf) -> Result<OwnerRequest, OwnerError> {
    serde_json::from_slice(bytes).map_err(|e| OwnerError::Request {
        path: from,
        source: Box::new(e),
    })
}

/// `bytes` into `path`: a temporary file beside it, synced, renamed over it, the directory
/// synced.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".enrolment.json.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}
