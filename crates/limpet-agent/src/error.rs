//! Why a poll failed. Each variant names the request, target or file involved; the log line
//! prints the whole chain.

use std::path::PathBuf;

/// Why [`crate::Agent::poll_once`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The owner's enrolment cannot be read: updates stop rather than trust the vendor
    /// again.
    #[error(transparent)]
    Owner(#[from] crate::owner::OwnerError),
    /// The update socket could not be used.
    #[error("update socket {path}: {op}")]
    Socket {
        /// The socket.
        path: PathBuf,
        /// The operation or request.
        op: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// PID 1 refused a request or it failed there.
    #[error("PID 1 refused {request}: {reason}")]
    Refused {
        /// The request.
        request: &'static str,
        /// PID 1's text.
        reason: String,
    },
    /// PID 1's answer is not a valid message.
    #[error("PID 1's answer to {request} is not a valid message")]
    Decode {
        /// The request.
        request: &'static str,
        /// The cause.
        #[source]
        source: limpet_install_api::DecodeError,
    },
    /// PID 1 answered with a message that does not answer the request.
    #[error("PID 1 answered {request} with {response}")]
    Unexpected {
        /// The request.
        request: &'static str,
        /// The answer (shortened).
        response: String,
    },
    /// A version in PID 1's status is not a version.
    #[error("PID 1's status field {field} is {text:?}")]
    Status {
        /// The field.
        field: &'static str,
        /// Its text.
        text: String,
        /// Why it is not a version.
        #[source]
        source: limpet_state::VersionError,
    },
    /// The shipped trusted root could not be installed into the metadata directory.
    #[error("provisioning the trusted root from {root} into {dir}")]
    Provision {
        /// The shipped root.json.
        root: PathBuf,
        /// The metadata directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The repository URL cannot be used.
    #[error("repository {url}")]
    Repository {
        /// The base URL.
        url: String,
        /// The cause.
        #[source]
        source: limpet_tuf::Error,
    },
    /// Opening the TUF client or refreshing its metadata failed (every TUF attack ends here
    /// with its own variant of the source).
    #[error("TUF metadata in {dir}")]
    Tuf {
        /// The metadata directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: limpet_tuf::Error,
    },
    /// The signed rollout waves (`x-limpet-waves`) do not validate: nothing is installed
    /// until the targets keys sign a correct field (a malformed field is never read as
    /// "no waves").
    #[error("the rollout waves of the targets metadata")]
    Waves {
        /// The cause.
        #[source]
        source: limpet_fleet_api::waves::WavesError,
    },
    /// The chunk index target could not be fetched and verified.
    #[error("fetching target {target}")]
    FetchIndex {
        /// The target name.
        target: String,
        /// The cause.
        #[source]
        source: limpet_tuf::Error,
    },
    /// The verified index bytes are not a valid chunk index.
    #[error("target {target} is not a valid chunk index")]
    Index {
        /// The target name.
        target: String,
        /// The cause.
        #[source]
        source: limpet_chunk::IndexError,
    },
    /// The index and the signed custom fields describe different slots.
    #[error("target {target}: the index's {field} differs from the signed custom field")]
    IndexMismatch {
        /// The target name.
        target: String,
        /// `slot_length` or `slot_sha256`.
        field: &'static str,
    },
    /// The slot is larger than the inactive slot partition.
    #[error("{version} is {length} bytes, the inactive slot holds {capacity}")]
    DoesNotFit {
        /// The version being installed.
        version: String,
        /// Its slot length.
        length: u64,
        /// The partition's size.
        capacity: u64,
    },
    /// Building the new slot failed (a chunk could not be fetched, or did not verify).
    #[error("assembling {version}")]
    Assemble {
        /// The version being installed.
        version: String,
        /// The cause.
        #[source]
        source: limpet_chunk::AssembleError,
    },
    /// The delta target could not be fetched and verified.
    #[error("cannot fetch the delta {target}")]
    FetchDelta {
        /// The target name.
        target: String,
        /// The cause.
        #[source]
        source: limpet_tuf::Error,
    },
    /// Applying the delta to the running slot failed.
    #[error("cannot apply the delta {target}")]
    Delta {
        /// The target name.
        target: String,
        /// The cause.
        #[source]
        source: limpet_delta::DeltaError,
    },
    /// The delta applied, but not to the slot the repository signed.
    #[error("the delta {target} made {written} bytes with sha256 {sha256}, not the signed slot")]
    DeltaResult {
        /// The target name.
        target: String,
        /// Bytes written.
        written: u64,
        /// Their sha256, hex.
        sha256: String,
    },
}
