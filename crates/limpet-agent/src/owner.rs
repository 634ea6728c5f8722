//! Owner handover on the device (docs/end-of-life.md#owner-handover): the owner's request
//! checked against the vendor's statement, and the enrolment that makes the owner's root
//! the agent's trust anchor.
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
//!   root shipped in the image) and model; its date against PID 1's time floor, never the
//!   clock; the owner's root as a self-signed TUF root with none of the vendor's root keys;
//!   the image key as Ed25519.
//! - The enrolment is one file, written to a temporary name, synced, renamed into place,
//!   and the directory synced: after a power cut it is there whole or not at all. It is the
//!   only switch: with it the agent trusts the owner's root (in its own metadata
//!   directory, so no vendor metadata is ever read under it), without it the vendor's.
//!   `tuf-owner/` is made from it whenever missing or damaged, so a cut after the rename
//!   but before the first refresh loses nothing.
//! - Before the enrolment is written, the boot loader is asked to hand the device over to
//!   the owner's image key ([`enrol_with`]'s `hand_over`: PID 1 writes the loader's request
//!   block, which the loader acts on only when a person at the device confirms it). A
//!   failure there leaves nothing enrolled and the request in place for the next poll; an
//!   enrolment always follows a written loader request. The loader's confirmation wipes the
//!   data partition and with it this enrolment: the owner gives the request again after
//!   that boot, and the loader drops the repeated hand-over unasked.
//! - Once enrolled, a device is not enrolled again: a second request is refused (the owner
//!   rotates keys through their own repository's root, as TUF does).
//! - An enrolment that no longer parses stops updates with an error naming it; the agent
//!   never falls back to the vendor's root.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use limpet_repo::{HandoverError, OwnerRequest};
use limpet_tuf::metadata::Root;
use limpet_tuf::UnixTime;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where an owner's request is taken from, in the state directory.
pub const REQUEST_FILE: &str = "owner-request.json";
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
    /// PID 1's time floor when the request was taken (seconds since 1970).
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

/// Checks `request` (see the module rules) and writes the enrolment into `state_dir`,
/// without asking the boot loader (the agent uses [`enrol_with`]).
pub fn enrol(
    state_dir: &Path,
    vendor_root: &Root,
    device: &str,
    floor: Option<UnixTime>,
    request: OwnerRequest,
) -> Result<Enrolment, OwnerError> {
    enrol_with(state_dir, vendor_root, device, floor, request, |_| Ok(()))
}

/// [`enrol`], calling `hand_over` with the owner's Ed25519 image key once the request is
/// checked and before the enrolment is written (the agent: PID 1 writes the loader's
/// hand-over request); its error is [`OwnerError::HandOver`] and nothing is enrolled.
pub fn enrol_with(
    state_dir: &Path,
    vendor_root: &Root,
    device: &str,
    floor: Option<UnixTime>,
    request: OwnerRequest,
    hand_over: impl FnOnce([u8; 32]) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
) -> Result<Enrolment, OwnerError> {
    let path = state_dir.join(ENROLMENT_FILE);
    if load(state_dir)?.is_some() {
        return Err(OwnerError::AlreadyEnrolled { path });
    }
    let checked = request
        .check(vendor_root, device, floor)
        .map_err(OwnerError::Refused)?;
    let limpet_tuf::keys::KeyMaterial::Ed25519(key) = checked.image_key.material() else {
        return Err(OwnerError::Refused(HandoverError::ImageKey {
            reason: "not an Ed25519 key".into(),
        }));
    };
    hand_over(key).map_err(|source| OwnerError::HandOver { source })?;
    let enrolment = Enrolment {
        format: 1,
        device: device.to_owned(),
        after: checked.handover.after.as_secs(),
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
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| OwnerError::Request {
            path,
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
