//! PID 1's Roughtime client (docs/end-of-life.md#roughtime): it asks the servers of the
//! slot's `[lifecycle] roughtime` over UDP, and hands each answer, checked by
//! limpet-roughtime, to the runtime, which gives its lower bound to the time record
//! (limpet-lifecycle's rule 9) and says what it did.
//!
//! Rules this module keeps:
//! - It never blocks: one query is in flight at a time, on a non-blocking UDP socket the
//!   loop polls ([`Roughtime::pollable`]); its timers are deadlines the loop sleeps until
//!   ([`Roughtime::deadline`]).
//! - Each query carries a nonce of its own, drawn from `getrandom`; a retry resends the same
//!   1024-byte request at most [`TRIES`] times, [`TRY_TIMEOUT`] apart; then the next server
//!   is asked.
//! - A round asks every listed server once, in the manifest's order. The first round starts
//!   once the network is up; each next one [`ROUND_INTERVAL`] after its last server was
//!   first asked. A request that cannot
//!   be sent is tried again after [`UNSENT_RETRY`].
//! - Only an answer from the address asked, checked against this query's nonce and the
//!   listed key, is a time; anything else on the socket is dropped, and the query waits on.
//! - A key that is not an Ed25519 key (the build checks it, so only a damaged policy has
//!   one) leaves that server out, said once at start.
//! - The slot's list is the starting point. A list the agent verified in the repository's
//!   signed metadata ([`Roughtime::replace`]) replaces it only when every address in it is
//!   one the slot lists (the egress policy, compiled at build time, lets queries out to
//!   those alone) and every key is an Ed25519 key; otherwise the whole list is refused and
//!   the one in use kept. It lives in memory: each boot starts from the slot's list until
//!   the agent's first refresh sends the signed one again.
//!
//! The client is linked only into a PID 1 whose slot lists Roughtime servers: `limpet
//! build` leaves the `roughtime` feature off otherwise, which gives this module
//! `roughtime/off.rs`, whose [`Roughtime`] has no values, so the client and limpet-roughtime's
//! checks are not in that binary.

// Built without the client, PID 1 makes no outcome; it keeps one definition for both.
#![cfg_attr(not(feature = "roughtime"), allow(dead_code))]

use std::time::Duration;

use limpet_roughtime::Verified;

#[cfg(feature = "roughtime")]
mod live;
#[cfg(feature = "roughtime")]
pub use live::Roughtime;
#[cfg(not(feature = "roughtime"))]
mod off;
#[cfg(not(feature = "roughtime"))]
pub use off::Roughtime;

/// How long one try waits for its answer.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times one request is sent before the next server is asked.
pub const TRIES: u32 = 3;
/// After a request that could not be sent (no address yet, no route), the same server is
/// asked again after this long.
pub const UNSENT_RETRY: Duration = Duration::from_secs(30);
/// From the first request to a round's last server to the start of the next round.
pub const ROUND_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// What became of a query, for the runtime to act on and say.
#[derive(Debug)]
pub enum Outcome {
    /// A listed server's answer that passed every check.
    Verified(Verified),
    /// An answer that failed a check, with the exact error.
    Refused {
        /// The server's name.
        server: String,
        /// Why.
        error: limpet_roughtime::Error,
    },
    /// No answer after [`TRIES`] tries.
    NoAnswer {
        /// The server's name.
        server: String,
    },
    /// The query could not be sent (no socket, no route).
    Unsent {
        /// The server's name.
        server: String,
        /// Why.
        error: std::io::Error,
    },
}

/// Why a signed list was refused (the one in use is kept).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplaceError {
    /// An address the slot does not list: no egress rule lets a query out to it.
    #[error("server {name} at {address}: the slot lists no Roughtime server at that address, and only those have an egress rule (a new address needs a new image)")]
    NotInSlot {
        /// The server's name.
        name: String,
        /// Its address.
        address: std::net::SocketAddrV4,
    },
    /// A key that is not an Ed25519 key.
    #[error("server {name}: {reason}")]
    Key {
        /// The server's name.
        name: String,
        /// What limpet-roughtime said.
        reason: String,
    },
}

/// What [`Roughtime::replace`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Replaced {
    /// The list is the one already in use: nothing changed.
    Unchanged,
    /// The client now asks these servers (their names, in order).
    Now(Vec<String>),
}
