//! The device's update agent: a sandboxed task (not PID 1) that keeps the device on the
//! newest version its vendor publishes.
//!
//! One poll ([`Agent::poll_once`]):
//!
//! 1. Connect to PID 1's install socket and ask for the device's `Status`. A trial under the
//!    health gate or a staged trial means there is nothing to do ([`PollOutcome::Busy`]).
//!    With a fleet server configured, check in first (busy or not): a report signed by
//!    the device's identity in PID 1; the answer's holds are kept ([`fleet`]).
//! 2. Refresh the TUF metadata (limpet-tuf, specification 1.0 section 5) in `STATE/tuf/`,
//!    provisioned from the root shipped in the image on first run. When nothing changed this
//!    fetches the next root's name (absent) and `timestamp.json`; snapshot and targets are
//!    reused from disk.
//! 3. Choose the highest `DEVICE/V/slot.cidx` target whose signed custom names this device
//!    and CPU and whose version is above the running version, the floor and the highest
//!    failed version ([`select`]). When the signed `x-limpet-waves` give it waves, wait
//!    until this device's wave has started and no valid hold applies
//!    ([`fleet::gate`], [`PollOutcome::Waiting`]).
//! 4. Fetch the chunk index through TUF (length- and hash-checked before it is parsed).
//! 5. Plan against the running slot, read through PID 1 (`ReadRunning`), then `Begin`,
//!    assemble (missing chunks fetched from `chunks/`, each capped at its compressed length
//!    and verified before it is written), writing through PID 1 (`Write`).
//! 6. `Finish` with the signed verity root hash: PID 1 verifies the whole slot and marks it
//!    as the trial. Then ask for the reboot as the [`RebootPolicy`] allows.
//!
//! Rules kept here:
//! - The agent never opens a block device; PID 1 checks every request.
//! - Every download goes through limpet-tuf's transports: length-capped, rate-bounded,
//!   hash-checked (metadata and index by TUF, chunks by the signed index).
//! - No TLS: integrity and freshness come from TUF. Egress is the repository host only,
//!   and the fleet server's when one is configured.
//! - The fleet server can only delay: what is installed comes from the verified targets
//!   metadata alone; the server's holds only postpone it, within the signed `max_hold`.
//! - A failed poll stages nothing: PID 1 drops an unfinished install when the connection
//!   closes, and only `Finish` marks a trial.
//! - Never panics; the poll loop ([`schedule`]) logs one line per poll.
//! - After an owner handover ([`owner`]) the trust anchor is the owner's root, in
//!   `STATE/tuf-owner/`; the vendor's root is never used again, not even to recover a
//!   damaged stored root.

#![warn(missing_docs)]

mod agent;
pub mod error;
pub mod fleet;
pub mod net;
pub mod owner;
pub mod pid1;
pub mod schedule;
pub mod select;

pub use agent::{Agent, AgentConfig, Busy, PollOutcome, RebootPolicy, METADATA_DIR};
pub use error::AgentError;
