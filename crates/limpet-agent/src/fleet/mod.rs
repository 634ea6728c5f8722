//! The device's side of the fleet server: check-ins, the holds kept, and the gate a
//! release passes before it is installed.
//!
//! - [`gate`]: pure: a release's wave and the holds decide whether it goes now.
//! - [`report`]: pure: the check-in report from PID 1's status and the agent's last attempt.
//! - [`http`]: the one network call, `POST /api/v1/checkin`.
//! - This module: the agent's fleet files in `STATE/fleet/` and one check-in.
//!
//! Rules kept here:
//! - The fleet server can only delay. It is asked nothing about what to install: the
//!   release comes from the verified TUF targets, and the server's answer is only a list
//!   of holds, each checked against the signed `x-limpet-waves` before it counts.
//! - A failed check-in never fails a poll (an unreachable server is the same power as a
//!   hold: devices update without it); the holds of the last answer are kept and still
//!   checked, and they end by themselves (`max_hold`).
//! - The report is signed by the device's identity in PID 1 (`SignCheckIn`); the agent
//!   never sees the key. A device without an identity does not check in.
//! - Files are replaced whole (a temporary file renamed over the old one); a file that
//!   does not parse reads as absent.

pub mod gate;
pub mod http;
pub mod report;

use std::path::{Path, PathBuf};

use limpet_fleet_api::hold::SignedHold;
use serde::{Deserialize, Serialize};

use self::http::{Answer, FleetUrl};
use self::report::Attempt;

/// Subdirectory of the state directory holding the agent's fleet files.
pub const FLEET_DIR: &str = "fleet";

/// A check-in that failed (logged; the poll goes on).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The fleet URL cannot be used.
    #[error("fleet server URL {url:?}: {why}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The connection failed.
    #[error("fleet server {url}: {what}")]
    Io {
        /// The URL.
        url: String,
        /// The step.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server refused the report.
    #[error("fleet server {url} refused the check-in with {status}: {text}")]
    Refused {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Its text.
        text: String,
    },
    /// The answer is not of the documented form.
    #[error("fleet server {url}: answer {why}")]
    Answer {
        /// The URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// PID 1 gives no identity key or A/B record to report.
    #[error("no check-in: {0}")]
    NoReport(&'static str),
    /// The report could not be made or signed.
    #[error("check-in report")]
    Report(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A fleet file could not be written.
    #[error("{path}: cannot write")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The holds of the last answer and their tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptHolds {
    /// The `ETag` of the answer.
    pub etag: Option<String>,
    /// The holds, as signed.
    pub holds: Vec<SignedHold>,
}

/// The agent's fleet files under `STATE/fleet/`.
#[derive(Debug, Clone)]
pub struct FleetFiles {
    dir: PathBuf,
}

impl FleetFiles {
    /// The files below the agent's state directory.
    pub fn new(state_dir: &Path) -> FleetFiles {
        FleetFiles {
            dir: state_dir.join(FLEET_DIR),
        }
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Option<T> {
        let bytes = std::fs::read(self.dir.join(name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), FleetError> {
        let path = self.dir.join(name);
        let err = |source| FleetError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let tmp = self.dir.join(format!("{name}.tmp"));
        let bytes = serde_json::to_vec(value).map_err(|e| err(std::io::Error::other(e)))?;
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// The holds kept from the last answer.
    pub fn holds(&self) -> KeptHolds {
        self.read("holds.json").unwrap_or_default()
    }

    /// The agent's last install attempt.
    pub fn attempt(&self) -> Option<Attempt> {
        self.read("attempt.json")
    }

    /// Records an install attempt.
    pub fn record(&self, attempt: &Attempt) -> Result<(), FleetError> {
        self.write("attempt.json", attempt)
    }

    fn seq(&self) -> u64 {
        self.read("seq.json").unwrap_or(0)
    }
}

/// What one check-in did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckedIn {
    /// New holds (this many) were taken.
    Holds(usize),
    /// The holds kept are still in force.
    NotModified,
}

/// One check-in: the report from `status` and the files, signed by `sign` (PID 1), sent
/// to `url`; the answer's holds replace the kept ones.
pub fn check_in(
    url: &FleetUrl,
    files: &FleetFiles,
    model: &str,
    status: &limpet_install_api::DeviceStatus,
    now_secs: i64,
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], Box<dyn std::error::Error + Send + Sync>>,
) -> Result<CheckedIn, FleetError> {
    let device = status
        .device_key
        .as_deref()
        .ok_or(FleetError::NoReport("the device has no identity"))?;
    let seq = report::next_seq(files.seq(), now_secs);
    let last = report::last_update(model, files.attempt().as_ref(), status);
    let report = report::report(device, seq, now_secs, status, last)
        .ok_or(FleetError::NoReport("PID 1 gives no A/B record"))?;
    let json = serde_json::to_vec(&report).map_err(|e| FleetError::Report(Box::new(e)))?;
    let signature = sign(&json).map_err(FleetError::Report)?;
    let signed = limpet_fleet_api::report::signed(&report, &signature)
        .map_err(|e| FleetError::Report(Box::new(e)))?;
    let body = serde_json::to_vec(&signed).map_err(|e| FleetError::Report(Box::new(e)))?;
    // The number is spent once sent, whatever the answer: never sent twice.
    files.write("seq.json", &seq)?;
    let kept = files.holds();
    match http::check_in(url, &body, kept.etag.as_deref())? {
        Answer::NotModified => Ok(CheckedIn::NotModified),
        Answer::Holds { holds, etag } => {
            let n = holds.len();
            files.write("holds.json", &KeptHolds { etag, holds })?;
            Ok(CheckedIn::Holds(n))
        }
    }
}
