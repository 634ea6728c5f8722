//! The update agent's requests to PID 1, and PID 1's answers.
//!
//! The update agent is a sandboxed task: it cannot open a block device. To install an
//! update it asks PID 1, over the `SOCK_SEQPACKET` socket [`INSTALL_SOCKET`] (owned by the agent's
//! uid, mode 0600), for exactly these operations and nothing else:
//!
//! | request | PID 1 does |
//! |---|---|
//! | [`Request::Status`] | answers the running version, the floor, the failed and pending versions |
//! | [`Request::Begin`] | checks that `version` may be tried (above the floor and every failed version, no trial under the health gate) and fits the inactive slot; drops a staged trial that was never booted |
//! | [`Request::ReadRunning`] | reads up to [`MAX_DATA`] bytes of the running slot (the agent's delta seed) |
//! | [`Request::Write`] | writes up to [`MAX_DATA`] bytes into the inactive slot, inside the length given to `Begin` |
//! | [`Request::Finish`] | verifies the whole written slot (signature with the device's key, every verity block, the attachment), checks its version and root hash against what the agent was told by the signed TUF target, then marks it as the trial in the A/B state |
//! | [`Request::Reboot`] | reboots cleanly, only when a trial is staged |
//! | [`Request::Verified`] | takes the signed time and support end the agent verified from the repository into the device's time record (refused below the floor, or shortening the support window) |
//! | [`Request::Roughtime`] | takes the Roughtime server list the agent verified from the repository (`x-limpet-roughtime`) for PID 1's client, which refuses it unless every address is one the slot lists |
//! | [`Request::SignCheckIn`] | signs a check-in report for the fleet server with the device's identity key, only when it is a report of this device's key (the key never leaves PID 1) |
//! | [`Request::SignRemoteAccess`] | signs a remote-access proof (a relay's challenge or a session's handshake hash, [`remote`]) with the device's identity key under its `remote-access` purpose, and nothing else |
//! | [`Request::DeviceKey`] | answers the device identity's public key (32 bytes in [`Response::Data`]), and nothing else about the device: the remote agent's question on [`REMOTE_SOCKET`] |
//! | [`Request::RemoteSession`] | records a remote-access session's start or end ([`remote::RemoteSession`]) for the next check-in (the remote agent's socket only) |
//! | [`Request::HandOver`] | writes the owner hand-over request for the boot loader (limpet-state's `owner::Request::HandOver`) into the `state` partition's request block; the loader acts on it only when a person at the device confirms it |
//! | [`Request::OwnerMode`] | writes the owner-mode request (enter with a key, or leave) into the same block, for a task the manifest grants `rights = ["owner-request"]` (docs/owner-mode.md); the loader acts on it only when a person at the device confirms it |
//!
//! One request per datagram, one answer per request. Encoding: a tag byte, then the fixed
//! fields big-endian, strings as a u16 length and UTF-8; answers that carry a structure
//! ([`Response::Status`]) carry it as JSON. Decoding is strict: a datagram of the wrong
//! size for its tag is an error, never a panic.

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod remote;

/// Where PID 1 listens (inside the agent's sandbox too: bind-mounted there).
///
/// The path keeps its old name on purpose: a new slot's agent talks to the PID 1 of the
/// initramfs, which an update does not replace, and the path is also in the signed
/// policy.json (a slot built from the same inputs stays byte-identical).
pub const INSTALL_SOCKET: &str = "/run/limpet/update.sock";
/// Where PID 1 listens for the remote agent (owned by its uid, mode 0600, bind-mounted into
/// its sandbox): only [`Request::DeviceKey`] and [`Request::SignRemoteAccess`] are served
/// there.
pub const REMOTE_SOCKET: &str = "/run/limpet/remote.sock";
/// Where PID 1 listens for [`Request::OwnerMode`] from the tasks the manifest grants
/// `owner-request` (bind-mounted into their sandboxes only); nothing else is served there.
pub const OWNER_SOCKET: &str = "/run/limpet/owner.sock";
/// Most data bytes one `ReadRunning`, `Write` or `Data` carries.
pub const MAX_DATA: usize = 60 * 1024;
/// Longest datagram either side sends.
pub const MAX_MESSAGE: usize = MAX_DATA + 64;
/// Longest version string.
pub const MAX_VERSION: usize = 128;

/// What the agent asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The device's update state, answered with [`Response::Status`].
    Status,
    /// Starts an install into the inactive slot, dropping any install not finished.
    Begin {
        /// The version the signed TUF target announces.
        version: String,
        /// Bytes of the slot image that will be written: every `Write` stays inside them.
        length: u64,
    },
    /// Bytes of the running slot (the agent's delta seed), answered with [`Response::Data`].
    ReadRunning {
        /// Where in the running slot to read.
        offset: u64,
        /// How many bytes; PID 1 reads at most [`MAX_DATA`], and none past the slot's end.
        len: u32,
    },
    /// Bytes of the new image, written into the inactive slot.
    Write {
        /// Where in the slot they go.
        offset: u64,
        /// The bytes, at most [`MAX_DATA`].
        data: Vec<u8>,
    },
    /// Ends the install: PID 1 verifies the written slot and stages it as a trial.
    Finish {
        /// The verity root hash that the signed TUF target names for this image.
        root_hash: [u8; 32],
    },
    /// Reboots into the staged trial.
    Reboot,
    /// What the agent verified in the repository's metadata after a refresh: the
    /// timestamp's signed time (`x-limpet-issued`, seconds since the epoch) and the
    /// model's signed end of support (`x-limpet-support-until`, as the first second after
    /// the last day), if targets carries one. PID 1 answers `Ok`, or `Error` when its time
    /// rules refuse either.
    Verified {
        /// The signed time, seconds since 1970-01-01T00:00:00Z.
        signed_time: u64,
        /// The signed end of support, seconds since the epoch; `None` (0 on the wire): no
        /// statement for this model.
        support_until: Option<u64>,
    },
    /// The model's Roughtime server list the agent verified in the repository's targets
    /// metadata (`x-limpet-roughtime`), in the order to ask them. PID 1 answers `Ok` when it
    /// took it (`Error` from a PID 1 that asks no Roughtime server); its client replaces the
    /// slot's list with it only when every address is one the slot lists, and says either
    /// on the console. JSON on the wire.
    Roughtime {
        /// The servers.
        servers: Vec<RoughtimeServer>,
    },
    /// A check-in report for the fleet server (`limpet_fleet_api::report::Report` as JSON,
    /// at most [`MAX_DATA`] bytes), answered with [`Response::Signed`].
    SignCheckIn {
        /// The report's JSON.
        report: Vec<u8>,
    },
    /// A remote-access proof for the remote agent ([`remote::check_message`]: a prefix
    /// and 32 bytes, at most [`remote::MAX_REMOTE_MESSAGE`] on the wire), answered with
    /// [`Response::Signed`].
    SignRemoteAccess {
        /// The bytes to sign.
        message: Vec<u8>,
    },
    /// An owner's request holds against the vendor's handover statement: PID 1
    /// writes "hand the device over to this image key" for the boot loader, which asks the
    /// person at the device at the next boot (docs/end-of-life.md). Answered `Ok`, or
    /// `Error` when the key is not an Ed25519 point or the block cannot be written.
    HandOver {
        /// The owner's Ed25519 image public key.
        key: [u8; 32],
    },
    /// The device identity's public key, answered with [`Response::Data`] of its 32 bytes
    /// (`Error` when the device has no identity).
    DeviceKey,
    /// A remote-access session started or ended: PID 1 keeps the last
    /// [`remote::MAX_SESSIONS`] records for the signed check-in. JSON on the wire, checked
    /// by [`remote::RemoteSession::check`]; answered `Ok`.
    RemoteSession(remote::RemoteSession),
    /// A task granted the `owner-request` right asks the boot loader to enter or leave owner
    /// mode at the next boot (docs/owner-mode.md): PID 1 writes the request block, and the
    /// loader asks the person at the device. Answered `Ok`, or `Error` when the key is not
    /// an Ed25519 point, the asker holds no such right, or the block cannot be written.
    OwnerMode {
        /// Enter with a key, or leave.
        ask: OwnerAsk,
    },
    /// The remote agent asks for a pinhole for a session's direct path: PID 1 verifies the
    /// capability itself (limpet-remote's `pinhole`) and adds the element to the agent's
    /// pinhole set; answered with [`Response::Data`] of the seconds it stays open (8 bytes,
    /// big-endian), or `Error` with the refusal. JSON on the wire, at most [`MAX_DATA`].
    OpenPinhole(remote::PinholeAsk),
    /// The remote agent says a session's direct path is over: PID 1 removes that pinhole
    /// from the set and its count. Answered `Ok`, or `Error` when no such pinhole is open.
    /// JSON on the wire.
    ClosePinhole(remote::PinholeClose),
}

/// What [`Request::OwnerMode`] asks the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerAsk {
    /// Enter owner mode with this Ed25519 image public key.
    Enter {
        /// The owner's image key.
        key: [u8; 32],
    },
    /// Leave owner mode (vendor images only).
    Leave,
}

/// A Roughtime server of [`Request::Roughtime`]: the policy's type, the same JSON.
pub use limpet_policy::RoughtimeServer;

/// What PID 1 answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The request was carried out (`Begin`, `Write`, `Reboot`).
    Ok,
    /// The answer to `Status`.
    Status(DeviceStatus),
    /// The bytes a `ReadRunning` asked for.
    Data(Vec<u8>),
    /// `Finish` succeeded: the slot is marked as a trial with this many boots.
    Staged {
        /// The version now staged.
        version: String,
        /// Boots the trial gets before it is rolled back.
        boots: u8,
    },
    /// The request was refused or failed; the text says where and why.
    Error(String),
    /// The signature of a `SignCheckIn` report by the device's identity key.
    Signed {
        /// Ed25519 signature (see `limpet_fleet_api::report` for the bytes signed).
        signature: [u8; 64],
    },
}

/// The A/B record as a check-in reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFacts {
    /// The slot running now: `a` or `b`.
    pub active_slot: String,
    /// The version in the other slot, when the record names one (a trial, or the last
    /// failed version tried there).
    pub other_version: Option<String>,
    /// The last trial that failed: its version and why, as the record keeps it.
    pub last_failure: Option<FailureFacts>,
    /// The record's boot counter.
    pub boot_count: u64,
}

/// The last failed trial, as a check-in reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureFacts {
    /// The version that failed.
    pub version: String,
    /// Why, in words.
    pub reason: String,
    /// The boot counter when it failed.
    pub boot_count: u64,
}

/// The device's update-relevant state, as PID 1 knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// The running slot's version.
    pub running_version: String,
    /// Bytes of the running slot image (its layout's total size): the delta seed.
    pub running_length: u64,
    /// Size of the inactive slot partition.
    pub inactive_capacity: u64,
    /// The anti-rollback floor.
    pub floor: String,
    /// The highest version that ever failed its trial: it and older ones are never tried.
    pub highest_failed: Option<String>,
    /// A trial already staged, or booted and under the health gate.
    // Wire name kept: the agent of a new slot talks to the initramfs' PID 1, which an
    // update does not replace.
    #[serde(rename = "pending_try")]
    pub trial: Option<String>,
    /// Whether the running boot is itself a trial under the health gate (no update until
    /// it is committed or rolled back).
    // Wire name kept: as `trial`'s.
    #[serde(rename = "on_probation")]
    pub on_trial: bool,
    /// The device's time floor (seconds since the epoch): the agent's TUF client refuses
    /// metadata issued below it. Absent from a PID 1 that keeps no time record.
    #[serde(default)]
    pub time_floor: Option<u64>,
    /// The device's earliest time (seconds since the epoch): the floor plus the uptime
    /// counted since it was last raised, raised by a verified Roughtime answer; never ahead
    /// of the true time (docs/end-of-life.md, rule 2). Absent as `time_floor` is.
    #[serde(default)]
    pub earliest_time: Option<u64>,
    /// The end of support the device holds (seconds since the epoch); absent when it has
    /// none, or keeps no time record.
    #[serde(default)]
    pub support_until: Option<u64>,
    /// The device's identity public key, 64 hex digits; absent when the device runs
    /// without an identity (or PID 1 predates it).
    #[serde(default)]
    pub device_key: Option<String>,
    /// The A/B record's facts a fleet check-in reports; absent from an older PID 1.
    /// (Boxed: it keeps the answer enum small.)
    #[serde(default)]
    pub record: Option<Box<RecordFacts>>,
    /// The remote-access sessions PID 1 recorded (the last [`remote::MAX_SESSIONS`]
    /// starts and ends, oldest first), which a check-in reports; empty without `[remote]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_sessions: Vec<remote::RemoteSession>,
    /// The owner mode the boot loader reported (its `limpet.owner=` parameter, which PID 1
    /// parsed): `vendor`, or `owner:KEY`, `handing-over:KEY`, `handed-over:KEY` with KEY the
    /// owner's Ed25519 image key in 64 hex digits. Absent when no Limpet loader reported a
    /// mode (or a malformed one), or from an older PID 1. The agent enrols an owner's root
    /// only when it reads `handing-over` or `handed-over` with the request's key: a person at
    /// the device confirmed it (docs/end-of-life.md).
    #[serde(default)]
    pub owner_mode: Option<String>,
}

/// A datagram that is not a valid message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A datagram of no bytes: it has no tag.
    #[error("empty message")]
    Empty,
    /// A tag that names no message of this kind (a request's tag read as an answer too).
    #[error("unknown message tag {0}")]
    Tag(u8),
    /// The fixed fields of the tag do not fit the datagram's size.
    #[error("message with tag {tag} is {len} bytes, expected {expected}")]
    Length {
        /// The datagram's tag.
        tag: u8,
        /// Its size in bytes, the tag included.
        len: usize,
        /// The size or range its tag takes, as text.
        expected: String,
    },
    /// A version string that is cut short, not UTF-8 or over [`MAX_VERSION`] bytes.
    #[error("version string is not valid UTF-8 or longer than {MAX_VERSION} bytes")]
    Version,
    /// An owner-mode request whose kind is neither enter (1) nor leave (2).
    #[error("owner-mode request of unknown kind {0}: 1 enters, 2 leaves")]
    OwnerAsk(u8),
    /// A `Write` or `Data` carrying more than [`MAX_DATA`] bytes.
    #[error("data of {0} bytes is more than {MAX_DATA}")]
    TooMuchData(usize),
    /// A status answer whose JSON does not parse as a [`DeviceStatus`].
    #[error("status is not valid JSON: {0}")]
    Status(String),
    /// A `Roughtime` request whose JSON does not parse as a list of servers.
    #[error("Roughtime server list is not valid JSON: {0}")]
    Roughtime(String),
    /// A `RemoteSession` request that is not a valid session record.
    #[error("remote session record: {0}")]
    RemoteSession(String),
    /// An `OpenPinhole` or `ClosePinhole` request that is not a valid one.
    #[error("pinhole request: {0}")]
    Pinhole(String),
    /// An error answer whose text is not UTF-8.
    #[error("error text is not valid UTF-8")]
    Text,
}

mod tag {
    pub const STATUS: u8 = 1;
    pub const BEGIN: u8 = 2;
    pub const READ_RUNNING: u8 = 3;
    pub const WRITE: u8 = 4;
    pub const FINISH: u8 = 5;
    pub const REBOOT: u8 = 6;
    pub const VERIFIED: u8 = 7;
    pub const ROUGHTIME: u8 = 8;
    pub const SIGN_CHECK_IN: u8 = 9;
    pub const SIGN_REMOTE_ACCESS: u8 = 10;
    pub const HAND_OVER: u8 = 11;
    pub const DEVICE_KEY: u8 = 14;
    pub const REMOTE_SESSION: u8 = 15;
    pub const OWNER_MODE: u8 = 12;
    /// [`super::OwnerAsk`]'s kinds inside an `OWNER_MODE` request.
    pub const ASK_ENTER: u8 = 1;
    pub const ASK_LEAVE: u8 = 2;
    pub const OPEN_PINHOLE: u8 = 16;
    pub const CLOSE_PINHOLE: u8 = 17;

    pub const OK: u8 = 0x81;
    pub const STATUS_REPLY: u8 = 0x82;
    pub const DATA: u8 = 0x83;
    pub const STAGED: u8 = 0x84;
    pub const ERROR: u8 = 0x85;
    pub const SIGNED: u8 = 0x86;
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(..8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

fn length_error(tag: u8, len: usize, expected: impl Into<String>) -> DecodeError {
    DecodeError::Length {
        tag,
        len,
        expected: expected.into(),
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let n = bytes.len().min(MAX_VERSION);
    out.extend_from_slice(&u16::try_from(n).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(bytes.get(..n).unwrap_or_default());
}

fn get_str(b: &[u8]) -> Result<(String, &[u8]), DecodeError> {
    let len_bytes = b.get(..2).ok_or(DecodeError::Version)?;
    let n = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    if n > MAX_VERSION {
        return Err(DecodeError::Version);
    }
    let s = b.get(2..2 + n).ok_or(DecodeError::Version)?;
    let s = std::str::from_utf8(s).map_err(|_| DecodeError::Version)?;
    Ok((s.to_owned(), b.get(2 + n..).unwrap_or_default()))
}

impl Request {
    /// The datagram for this request.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Request::Status => out.push(tag::STATUS),
            Request::DeviceKey => out.push(tag::DEVICE_KEY),
            Request::RemoteSession(record) => {
                out.push(tag::REMOTE_SESSION);
                // Serializing strings and numbers cannot fail.
                out.extend_from_slice(&serde_json::to_vec(record).unwrap_or_default());
            }
            Request::Begin { version, length } => {
                out.push(tag::BEGIN);
                out.extend_from_slice(&length.to_be_bytes());
                put_str(&mut out, version);
            }
            Request::ReadRunning { offset, len } => {
                out.push(tag::READ_RUNNING);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
            }
            Request::Write { offset, data } => {
                out.push(tag::WRITE);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(data);
            }
            Request::Finish { root_hash } => {
                out.push(tag::FINISH);
                out.extend_from_slice(root_hash);
            }
            Request::Reboot => out.push(tag::REBOOT),
            Request::Verified {
                signed_time,
                support_until,
            } => {
                out.push(tag::VERIFIED);
                out.extend_from_slice(&signed_time.to_be_bytes());
                out.extend_from_slice(&support_until.unwrap_or(0).to_be_bytes());
            }
            Request::Roughtime { servers } => {
                out.push(tag::ROUGHTIME);
                // Serializing strings and addresses cannot fail.
                out.extend_from_slice(&serde_json::to_vec(servers).unwrap_or_default());
            }
            Request::SignCheckIn { report } => {
                out.push(tag::SIGN_CHECK_IN);
                out.extend_from_slice(report.get(..MAX_DATA.min(report.len())).unwrap_or_default());
            }
            Request::SignRemoteAccess { message } => {
                out.push(tag::SIGN_REMOTE_ACCESS);
                let n = remote::MAX_REMOTE_MESSAGE.min(message.len());
                out.extend_from_slice(message.get(..n).unwrap_or_default());
            }
            Request::HandOver { key } => {
                out.push(tag::HAND_OVER);
                out.extend_from_slice(key);
            }
            Request::OwnerMode { ask } => {
                out.push(tag::OWNER_MODE);
                match ask {
                    OwnerAsk::Enter { key } => {
                        out.push(tag::ASK_ENTER);
                        out.extend_from_slice(key);
                    }
                    OwnerAsk::Leave => out.push(tag::ASK_LEAVE),
                }
            }
            Request::OpenPinhole(ask) => {
                out.push(tag::OPEN_PINHOLE);
                // Serializing strings and numbers cannot fail.
                out.extend_from_slice(&serde_json::to_vec(ask).unwrap_or_default());
            }
            Request::ClosePinhole(close) => {
                out.push(tag::CLOSE_PINHOLE);
                // Serializing an address and a number cannot fail.
                out.extend_from_slice(&serde_json::to_vec(close).unwrap_or_default());
            }
        }
        out
    }

    /// The request's name, for errors and refusals (never its contents).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Begin { .. } => "begin",
            Request::ReadRunning { .. } => "read-running",
            Request::Write { .. } => "write",
            Request::Finish { .. } => "finish",
            Request::Reboot => "reboot",
            Request::Verified { .. } => "verified",
            Request::Roughtime { .. } => "roughtime",
            Request::SignCheckIn { .. } => "sign-check-in",
            Request::SignRemoteAccess { .. } => "sign-remote-access",
            Request::HandOver { .. } => "hand-over",
            Request::DeviceKey => "device-key",
            Request::RemoteSession(_) => "remote-session",
            Request::OwnerMode { .. } => "owner-mode",
            Request::OpenPinhole(_) => "open-pinhole",
            Request::ClosePinhole(_) => "close-pinhole",
        }
    }

    /// Reads a request datagram.
    pub fn decode(b: &[u8]) -> Result<Request, DecodeError> {
        let (&t, rest) = b.split_first().ok_or(DecodeError::Empty)?;
        match t {
            tag::STATUS | tag::REBOOT | tag::DEVICE_KEY => {
                if !rest.is_empty() {
                    return Err(length_error(t, b.len(), "1"));
                }
                Ok(match t {
                    tag::STATUS => Request::Status,
                    tag::REBOOT => Request::Reboot,
                    _ => Request::DeviceKey,
                })
            }
            tag::BEGIN => {
                if rest.len() < 10 {
                    return Err(length_error(t, b.len(), "at least 11"));
                }
                let length = be64(rest);
                let (version, tail) = get_str(rest.get(8..).unwrap_or_default())?;
                if !tail.is_empty() {
                    return Err(length_error(t, b.len(), "11 plus the version"));
                }
                Ok(Request::Begin { version, length })
            }
            tag::READ_RUNNING => {
                if rest.len() != 12 {
                    return Err(length_error(t, b.len(), "13"));
                }
                let offset = be64(rest);
                let l = rest.get(8..12).unwrap_or_default();
                let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]);
                Ok(Request::ReadRunning { offset, len })
            }
            tag::WRITE => {
                if rest.len() < 8 {
                    return Err(length_error(t, b.len(), "at least 9"));
                }
                let data = rest.get(8..).unwrap_or_default();
                if data.len() > MAX_DATA {
                    return Err(DecodeError::TooMuchData(data.len()));
                }
                Ok(Request::Write {
                    offset: be64(rest),
                    data: data.to_vec(),
                })
            }
            tag::FINISH => {
                let root_hash: [u8; 32] = rest
                    .try_into()
                    .map_err(|_| length_error(t, b.len(), "33"))?;
                Ok(Request::Finish { root_hash })
            }
            tag::VERIFIED => {
                if rest.len() != 16 {
                    return Err(length_error(t, b.len(), "17"));
                }
                let support = be64(rest.get(8..).unwrap_or_default());
                Ok(Request::Verified {
                    signed_time: be64(rest),
                    support_until: (support != 0).then_some(support),
                })
            }
            tag::REMOTE_SESSION => serde_json::from_slice::<remote::RemoteSession>(rest)
                .map_err(|e| e.to_string())
                .and_then(|r| r.check().map(|()| r))
                .map(Request::RemoteSession)
                .map_err(DecodeError::RemoteSession),
            tag::ROUGHTIME => serde_json::from_slice(rest)
                .map(|servers| Request::Roughtime { servers })
                .map_err(|e| DecodeError::Roughtime(e.to_string())),
            tag::SIGN_CHECK_IN if rest.len() > MAX_DATA => {
                Err(DecodeError::TooMuchData(rest.len()))
            }
            tag::SIGN_CHECK_IN => Ok(Request::SignCheckIn {
                report: rest.to_vec(),
            }),
            tag::SIGN_REMOTE_ACCESS if rest.len() > remote::MAX_REMOTE_MESSAGE => {
                Err(length_error(
                    t,
                    b.len(),
                    format!("at most {}", 1 + remote::MAX_REMOTE_MESSAGE),
                ))
            }
            tag::SIGN_REMOTE_ACCESS => Ok(Request::SignRemoteAccess {
                message: rest.to_vec(),
            }),
            tag::HAND_OVER => {
                let key: [u8; 32] = rest
                    .try_into()
                    .map_err(|_| length_error(t, b.len(), "33"))?;
                Ok(Request::HandOver { key })
            }
            tag::OWNER_MODE => match rest.split_first() {
                Some((&tag::ASK_ENTER, key)) => {
                    let key: [u8; 32] = key
                        .try_into()
                        .map_err(|_| length_error(t, b.len(), "34 to enter"))?;
                    Ok(Request::OwnerMode {
                        ask: OwnerAsk::Enter { key },
                    })
                }
                Some((&tag::ASK_LEAVE, [])) => Ok(Request::OwnerMode {
                    ask: OwnerAsk::Leave,
                }),
                Some((&tag::ASK_LEAVE, _)) => Err(length_error(t, b.len(), "2 to leave")),
                Some((&kind, _)) => Err(DecodeError::OwnerAsk(kind)),
                None => Err(length_error(t, b.len(), "2 or 34")),
            },
            tag::OPEN_PINHOLE if rest.len() > MAX_DATA => Err(DecodeError::TooMuchData(rest.len())),
            tag::OPEN_PINHOLE => serde_json::from_slice(rest)
                .map(Request::OpenPinhole)
                .map_err(|e| DecodeError::Pinhole(e.to_string())),
            tag::CLOSE_PINHOLE if rest.len() > MAX_DATA => {
                Err(DecodeError::TooMuchData(rest.len()))
            }
            tag::CLOSE_PINHOLE => serde_json::from_slice(rest)
                .map(Request::ClosePinhole)
                .map_err(|e| DecodeError::Pinhole(e.to_string())),
            other => Err(DecodeError::Tag(other)),
        }
    }
}

impl Response {
    /// The datagram for this answer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Response::Ok => out.push(tag::OK),
            Response::Status(s) => {
                out.push(tag::STATUS_REPLY);
                // Serializing plain strings, numbers and options cannot fail.
                out.extend_from_slice(&serde_json::to_vec(s).unwrap_or_default());
            }
            Response::Data(d) => {
                out.push(tag::DATA);
                out.extend_from_slice(d.get(..MAX_DATA.min(d.len())).unwrap_or_default());
            }
            Response::Staged { version, boots } => {
                out.push(tag::STAGED);
                out.push(*boots);
                put_str(&mut out, version);
            }
            Response::Error(text) => {
                out.push(tag::ERROR);
                let mut end = text.len().min(MAX_DATA);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                out.extend_from_slice(text.get(..end).unwrap_or_default().as_bytes());
            }
            Response::Signed { signature } => {
                out.push(tag::SIGNED);
                out.extend_from_slice(signature);
            }
        }
        out
    }

    /// Reads an answer datagram.
    pub fn decode(b: &[u8]) -> Result<Response, DecodeError> {
        let (&t, rest) = b.split_first().ok_or(DecodeError::Empty)?;
        match t {
            tag::OK if rest.is_empty() => Ok(Response::Ok),
            tag::OK => Err(length_error(t, b.len(), "1")),
            tag::STATUS_REPLY => serde_json::from_slice(rest)
                .map(Response::Status)
                .map_err(|e| DecodeError::Status(e.to_string())),
            tag::DATA if rest.len() > MAX_DATA => Err(DecodeError::TooMuchData(rest.len())),
            tag::DATA => Ok(Response::Data(rest.to_vec())),
            tag::STAGED => {
                let (&boots, rest) = rest
                    .split_first()
                    .ok_or_else(|| length_error(t, b.len(), "at least 4"))?;
                let (version, tail) = get_str(rest)?;
                if !tail.is_empty() {
                    return Err(length_error(t, b.len(), "4 plus the version"));
                }
                Ok(Response::Staged { version, boots })
            }
            tag::ERROR => std::str::from_utf8(rest)
                .map(|s| Response::Error(s.to_owned()))
                .map_err(|_| DecodeError::Text),
            tag::SIGNED => rest
                .try_into()
                .map(|signature| Response::Signed { signature })
                .map_err(|_| length_error(t, b.len(), "65")),
            other => Err(DecodeError::Tag(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let requests = [
            Request::Status,
            Request::DeviceKey,
            Request::RemoteSession(remote::tests::session(remote::SessionEvent::End)),
            Request::Begin {
                version: "1.2.3-rc.1".into(),
                length: 5 << 30,
            },
            Request::ReadRunning {
                offset: 4096,
                len: 60 * 1024,
            },
            Request::Write {
                offset: u64::MAX - 1,
                data: vec![7; MAX_DATA],
            },
            Request::Finish { root_hash: [9; 32] },
            Request::Reboot,
            Request::Verified {
                signed_time: 1_893_456_000,
                support_until: Some(2_051_222_400),
            },
            Request::Verified {
                signed_time: 1,
                support_until: None,
            },
            Request::Roughtime { servers: vec![] },
            Request::Roughtime {
                servers: vec![RoughtimeServer {
                    name: "rt1".into(),
                    address: "192.0.2.10:2002".parse().unwrap(),
                    key: "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=".into(),
                }],
            },
            Request::SignCheckIn {
                report: br#"{"device":"00"}"#.to_vec(),
            },
            Request::HandOver { key: [4; 32] },
            Request::OwnerMode {
                ask: OwnerAsk::Enter { key: [5; 32] },
            },
            Request::OwnerMode {
                ask: OwnerAsk::Leave,
            },
        ];
        for r in requests {
            assert_eq!(Request::decode(&r.encode()), Ok(r.clone()), "{r:?}");
            assert!(r.encode().len() <= MAX_MESSAGE);
        }
        let responses = [
            Response::Ok,
            Response::Status(DeviceStatus {
                running_version: "1.0.0".into(),
                running_length: 123,
                inactive_capacity: 456,
                floor: "1.0.0".into(),
                highest_failed: Some("1.1.0".into()),
                trial: None,
                on_trial: false,
                time_floor: Some(1_893_456_000),
                earliest_time: Some(1_893_456_600),
                support_until: None,
                device_key: Some("ab".repeat(32)),
                remote_sessions: Vec::new(),
                record: Some(Box::new(RecordFacts {
                    active_slot: "b".into(),
                    other_version: Some("1.1.0".into()),
                    last_failure: Some(FailureFacts {
                        version: "1.1.0".into(),
                        reason: "health check reported failure".into(),
                        boot_count: 4,
                    }),
                    boot_count: 5,
                })),
                owner_mode: Some(format!("handing-over:{}", "cd".repeat(32))),
            }),
            Response::Signed { signature: [7; 64] },
            Response::Data(vec![1, 2, 3]),
            Response::Staged {
                version: "2.0.0".into(),
                boots: 3,
            },
            Response::Error("slot-b: refused".into()),
        ];
        for r in responses {
            assert_eq!(Response::decode(&r.encode()), Ok(r.clone()), "{r:?}");
        }
    }

    /// The status JSON keeps the field names PID 1s already on devices send and read.
    #[test]
    fn status_json_keeps_its_wire_names() {
        let status = DeviceStatus {
            running_version: "1.0.0".into(),
            running_length: 1,
            inactive_capacity: 2,
            floor: "1.0.0".into(),
            highest_failed: None,
            trial: Some("2.0.0".into()),
            on_trial: true,
            time_floor: None,
            earliest_time: None,
            support_until: None,
            device_key: None,
            remote_sessions: Vec::new(),
            record: None,
            owner_mode: None,
        };
        let json = String::from_utf8(serde_json::to_vec(&status).unwrap()).unwrap();
        assert!(
            json.contains(r#""pending_try":"2.0.0","on_probation":true"#),
            "{json}"
        );
        // A PID 1 without a time record (an older one) sends no time fields: they read as
        // none.
        let old = r#"{"running_version":"1.0.0","running_length":1,"inactive_capacity":2,"floor":"1.0.0","highest_failed":null,"pending_try":null,"on_probation":false}"#;
        let read: DeviceStatus = serde_json::from_str(old).unwrap();
        assert_eq!((read.time_floor, read.support_until), (None, None));
        assert_eq!((read.device_key, read.record), (None, None));
    }

    #[test]
    fn bad_datagrams_are_errors_not_panics() {
        assert_eq!(Request::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(Request::decode(&[99]), Err(DecodeError::Tag(99)));
        assert!(matches!(
            Request::decode(&[tag::FINISH, 1, 2]),
            Err(DecodeError::Length { .. })
        ));
        assert_eq!(
            Request::decode(&[tag::HAND_OVER, 1, 2]),
            Err(DecodeError::Length {
                tag: tag::HAND_OVER,
                len: 3,
                expected: "33".into()
            })
        );
        assert_eq!(
            Request::decode(&[tag::OWNER_MODE, tag::ASK_ENTER, 1, 2]),
            Err(DecodeError::Length {
                tag: tag::OWNER_MODE,
                len: 4,
                expected: "34 to enter".into()
            })
        );
        assert_eq!(
            Request::decode(&[tag::OWNER_MODE, tag::ASK_LEAVE, 0]),
            Err(DecodeError::Length {
                tag: tag::OWNER_MODE,
                len: 3,
                expected: "2 to leave".into()
            })
        );
        assert_eq!(
            Request::decode(&[tag::OWNER_MODE, 3]),
            Err(DecodeError::OwnerAsk(3))
        );
        assert!(matches!(
            Request::decode(&[tag::OWNER_MODE]),
            Err(DecodeError::Length { len: 1, .. })
        ));
        assert!(matches!(
            Request::decode(&[tag::VERIFIED, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(DecodeError::Length {
                tag: tag::VERIFIED,
                len: 9,
                ..
            })
        ));
        let mut too_much = vec![tag::WRITE];
        too_much.extend_from_slice(&[0; 8]);
        too_much.extend_from_slice(&vec![0; MAX_DATA + 1]);
        assert_eq!(
            Request::decode(&too_much),
            Err(DecodeError::TooMuchData(MAX_DATA + 1))
        );
        // Every prefix and a simple mutation of every message decodes or errs, never panics.
        let mut x: u32 = 1;
        for msg in [
            Request::Begin {
                version: "1.0.0".into(),
                length: 1,
            }
            .encode(),
            Request::ReadRunning { offset: 1, len: 2 }.encode(),
            Request::Verified {
                signed_time: 5,
                support_until: Some(6),
            }
            .encode(),
            Request::Roughtime {
                servers: vec![RoughtimeServer {
                    name: "rt1".into(),
                    address: "192.0.2.10:2002".parse().unwrap(),
                    key: "k".into(),
                }],
            }
            .encode(),
            Response::Staged {
                version: "1.0.0".into(),
                boots: 1,
            }
            .encode(),
        ] {
            for cut in 0..msg.len() {
                let _ = Request::decode(&msg[..cut]);
                let _ = Response::decode(&msg[..cut]);
            }
            for _ in 0..2000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let mut m = msg.clone();
                let i = (x as usize) % m.len();
                m[i] = (x >> 8).to_le_bytes()[0];
                let _ = Request::decode(&m);
                let _ = Response::decode(&m);
            }
        }
    }
}
