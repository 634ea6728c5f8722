//! The network of a PID 1 built without one (`LIMPET_INIT_NETWORK=off`, set by `limpet
//! build` for a device whose policy has no network): [`Network`] has no values, so every
//! use of one is unreachable and the compiler leaves the network's code out of the binary.
//!
//! Rule this module keeps: the same interface as `live.rs`, so the runtime reads the same
//! either way; [`Network::start`] is the only function that can be called, and it fails.

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use limpet_net::TaskMatch;
use limpet_policy::NetPolicy;

use super::{NetworkError, NetworkStatus, Source};

/// No network: this type has no values.
#[derive(Debug)]
pub enum Network {}

impl Network {
    /// Always fails with [`NetworkError::NotBuiltIn`]: the device's interfaces stay down.
    pub fn start(
        _policy: &NetPolicy,
        _tasks: BTreeMap<String, TaskMatch>,
    ) -> Result<Network, NetworkError> {
        Err(NetworkError::NotBuiltIn)
    }

    pub fn status(&self) -> &NetworkStatus {
        match *self {}
    }

    pub fn pollables(&self) -> Vec<(Source, BorrowedFd<'_>)> {
        match *self {}
    }

    pub fn is_up(&self) -> bool {
        match *self {}
    }

    pub fn may_come_up(&self) -> bool {
        match *self {}
    }

    pub fn ready(&mut self, _readable: &[Source]) {
        match *self {}
    }

    pub fn next_deadline(&self) -> Instant {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_with_a_network_starts_none() {
        let policy: NetPolicy = serde_json::from_value(serde_json::json!({
            "tasks": [],
            "egress_cap": null,
            "addressing": { "kind": "dhcp" },
            "dns_upstream": [],
            "dns_stub": "127.0.0.53:53",
            "names": [],
            "links": { "interfaces": ["eth0"], "static_address": null }
        }))
        .unwrap();
        let started = Network::start(&policy, BTreeMap::new());
        assert!(matches!(started, Err(NetworkError::NotBuiltIn)));
    }
}
