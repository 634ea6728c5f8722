//! Errors of verification, transport and the client workflow: one variant per attack, so a
//! caller (and a test) can tell a freeze from a rollback from a slow mirror.

use crate::keys::{KeyId, PublicKeyError, SignError};
use crate::time::UnixTime;
use crate::MAX_LENGTH;

/// Why a download, a verification or a client update failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository does not have the file (HTTP 403/404/410, or no such local file).
    #[error("{path}: not found on the repository")]
    NotFound {
        /// Path relative to the repository base.
        path: String,
    },
    /// A local or network I/O error.
    #[error("{context}")]
    Io {
        /// What was being done, naming the path or address.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with an unexpected HTTP status.
    #[error("{path}: HTTP status {status}")]
    HttpStatus {
        /// Path requested.
        path: String,
        /// Status code.
        status: u16,
    },
    /// The server's answer is not HTTP/1.x this client understands.
    #[error("{path}: malformed HTTP response: {reason}")]
    HttpProtocol {
        /// Path requested.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The repository URL cannot be used.
    #[error("unsupported repository URL {url:?}: {reason}")]
    UnsupportedUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// A path (target name, file name) that could escape its directory.
    #[error("{path:?}: refused path: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// Endless data attack: more bytes arrived (or were announced) than allowed.
    #[error("{path}: more than the allowed {max} bytes (endless data attack)")]
    LengthExceeded {
        /// Path downloaded.
        path: String,
        /// The cap.
        max: u64,
    },
    /// Fewer bytes than trusted metadata declares.
    #[error("{path}: got {got} bytes, trusted metadata declares {expected}")]
    LengthMismatch {
        /// Path downloaded.
        path: String,
        /// Declared length.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// Slow retrieval attack: the transfer fell below the minimum average rate after the grace
    /// period, stalled, or passed its overall deadline.
    #[error("{path}: slow retrieval: {received} bytes in {elapsed_ms} ms ({reason})")]
    SlowRetrieval {
        /// Path downloaded.
        path: String,
        /// Bytes received so far.
        received: u64,
        /// Milliseconds since the request began.
        elapsed_ms: u128,
        /// Which bound was broken.
        reason: &'static str,
    },
    /// A length field above 4 GiB in metadata.
    #[error("{field}: length {value} is above the limit of {MAX_LENGTH} bytes (4 GiB)")]
    LengthTooLarge {
        /// Which field, e.g. `targets.json: targets["a.img"].length`.
        field: String,
        /// The value found.
        value: u64,
    },
    /// Content does not match the hashes in trusted metadata.
    #[error("{path}: hash does not match the trusted metadata")]
    HashMismatch {
        /// Path downloaded.
        path: String,
    },
    /// Trusted metadata lists no hash algorithm this client can check.
    #[error("{path}: no supported hash algorithm among {algorithm:?}")]
    UnsupportedHash {
        /// Path whose hashes are listed.
        path: String,
        /// The algorithms listed, comma-separated.
        algorithm: String,
    },
    /// A target without any hash cannot be verified.
    #[error("{path}: no hash listed, the content cannot be verified")]
    NoHashes {
        /// The target.
        path: String,
    },
    /// Metadata is not valid JSON of the expected shape.
    #[error("{path}: invalid metadata")]
    Json {
        /// File name.
        path: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Metadata is well-formed JSON but breaks a rule of the specification.
    #[error("{path}: invalid metadata: {reason}")]
    InvalidMetadata {
        /// File name.
        path: String,
        /// Which rule.
        reason: String,
    },
    /// Two signatures with the same key id (section 4.2: key ids MUST be unique there).
    #[error("{path}: key id {keyid} appears more than once in signatures")]
    DuplicateSignature {
        /// File name.
        path: String,
        /// The repeated key id.
        keyid: String,
    },
    /// Arbitrary software attack: too few distinct trusted keys signed the metadata.
    #[error(
        "{role}: {valid} valid signature(s) from distinct trusted keys, threshold is {threshold}"
    )]
    ThresholdNotMet {
        /// The role (for root rotation: which root's keys were counted).
        role: String,
        /// Distinct keys with a valid signature.
        valid: u64,
        /// Required.
        threshold: u64,
    },
    /// A key object of an implemented scheme that cannot be used: malformed, of the wrong
    /// curve or size, or naming the scheme of another key type.
    #[error("{path}: key {keyid}")]
    InvalidKey {
        /// File name.
        path: String,
        /// The key's id.
        keyid: KeyId,
        /// What is wrong with it.
        #[source]
        source: Box<PublicKeyError>,
    },
    /// Signing metadata failed (a signer command, or a signature that does not verify).
    #[error("signing metadata")]
    Sign(#[source] Box<SignError>),
    /// A new root is not exactly one version above the trusted root.
    #[error("root: trusted version is {trusted}, the next root must be exactly one more but is version {got}")]
    RootVersionJump {
        /// Trusted root version N.
        trusted: u64,
        /// Version found in N+1.root.json.
        got: u64,
    },
    /// Rollback attack: a version lower than the trusted one.
    #[error("{role}: rollback attack: trusted version {trusted}, got version {got}")]
    RollbackAttack {
        /// Role or meta entry.
        role: String,
        /// Trusted version.
        trusted: u64,
        /// Offered version.
        got: u64,
    },
    /// Freeze attack: metadata expired at the trusted time.
    #[error("{role}: expired at {expires}, trusted time is {now} (freeze attack)")]
    Expired {
        /// Role.
        role: String,
        /// Expiry in the metadata.
        expires: UnixTime,
        /// Effective trusted time of this update.
        now: UnixTime,
    },
    /// Mix-and-match attack: metadata of a version other than the one its parent lists.
    #[error("{role}: version {got} does not match version {expected} listed in {listed_in} (mix-and-match attack)")]
    MixAndMatch {
        /// Role downloaded.
        role: String,
        /// The role that lists it.
        listed_in: &'static str,
        /// Version listed.
        expected: u64,
        /// Version received.
        got: u64,
    },
    /// A required meta entry is missing.
    #[error("{listed_in} does not list {name}")]
    MissingMeta {
        /// The listing role.
        listed_in: &'static str,
        /// The missing entry.
        name: String,
    },
    /// Rollback attack: snapshot metadata dropped a file the trusted snapshot listed.
    #[error(
        "snapshot.json no longer lists {name}, which the trusted snapshot lists (rollback attack)"
    )]
    MetaRemoved {
        /// The dropped entry.
        name: String,
    },
    /// The target is not in trusted targets metadata.
    #[error("target {name:?} is not listed in the trusted targets metadata")]
    NoSuchTarget {
        /// Target name.
        name: String,
    },
    /// Targets were asked for before a successful refresh in this session.
    #[error("targets metadata has not been refreshed in this session")]
    NotRefreshed,
    /// A new timestamp's signed issue time is below the device's trusted time floor: it was
    /// signed before metadata (or a build) the device already trusts, so it is stale or
    /// back-dated (an attacker holding old metadata, or a timestamp key signing the past).
    #[error("timestamp issued at {issued} is below the trusted time floor {floor}")]
    IssuedBelowFloor {
        /// The timestamp's signed issue time.
        issued: UnixTime,
        /// The floor it fell below.
        floor: UnixTime,
    },
    /// The persisted trusted-time floor cannot be read.
    #[error("{path}: trusted time floor is corrupt")]
    TimeFloorCorrupt {
        /// The floor file.
        path: String,
    },
    /// Writing verified target bytes to the caller's sink failed.
    #[error("{path}: writing to the sink failed")]
    Sink {
        /// Target path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<SignError> for Error {
    fn from(e: SignError) -> Self {
        Error::Sign(Box::new(e))
    }
}

impl Error {
    /// An I/O error with its context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Invalid metadata.
    pub(crate) fn invalid(path: &str, reason: impl Into<String>) -> Self {
        Error::InvalidMetadata {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}
