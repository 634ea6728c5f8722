//! Network bring-up on the device: links, addresses and routes over rtnetlink, a DHCPv4
//! client, and the DNS stub's protocol logic.
//!
//! - [`link`]: rtnetlink requests, encoded by hand, each bounded in time.
//! - [`dhcp`]: a sans-IO DHCPv4 client state machine (RFC 2131) and the UDP socket that
//!   carries it.
//! - [`dns`]: the sans-IO logic of the allowlisting DNS stub PID 1 serves on
//!   `127.0.0.53:53`.
//!
//! The state machines take the current time as a parameter and never block: PID 1's poll
//! loop owns the sockets and the clock, and asks each machine for its next deadline.

#![warn(missing_docs)]

pub mod dhcp;
pub mod dns;
pub mod link;
mod rand;
mod sys;
