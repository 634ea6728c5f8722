//! The network of a PID 1 built without one (its `network` feature off, as `limpet build`
//! leaves it for a device whose policy has no network): [`Network`] has no values, so
//! every use of one is unreachable and the compiler leaves the network's code out of the
//! binary.
//!
//! The policy's network is left out with it: limpet-policy reads the same variable and
//! refuses a policy that has a network ([`limpet_policy::NO_NETWORK`]), so such a PID 1
//! does not boot it at all, without carrying the code that parses one.
//!
//! Rule this module keeps: the same interface as `live.rs`, so the runtime reads the same
//! either way; [`Network::start`] is the only function that can be called, and it fails.

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use limpet_net::TaskMatch;
use limpet_policy::NetPolicy;

use super::{NetMode, NetworkError, NetworkStatus, Source};

/// No network: this type has no values.
#[derive(Debug)]
pub enum Network {}

impl Network {
    /// Always fails with [`NetworkError::NotBuiltIn`]: the device's interfaces stay down.
    pub fn start(
        _normal: &NetPolicy,
        _island: Option<&NetPolicy>,
        _mode: NetMode,
        _tasks: BTreeMap<String, TaskMatch>,
    ) -> Result<Network, NetworkError> {
        Err(NetworkError::NotBuiltIn)
    }

    pub fn switch(&mut self, _mode: NetMode) -> Result<usize, NetworkError> {
        match *self {}
    }

    pub fn mode(&self) -> NetMode {
        match *self {}
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

    fn net_policy() -> serde_json::Value {
        serde_json::json!({
            "tasks": [],
            "egress_cap": null,
            "addressing": { "kind": "dhcp" },
            "dns_upstream": [],
            "dns_stub": "127.0.0.53:53",
            "names": [],
            "links": { "interfaces": ["eth0"], "static_address": null }
        })
    }

    #[test]
    fn a_policy_with_a_network_starts_none() {
        let policy: NetPolicy = serde_json::from_value(net_policy()).unwrap();
        let started = Network::start(&policy, None, NetMode::Normal, BTreeMap::new());
        assert!(matches!(started, Err(NetworkError::NotBuiltIn)));
    }

    #[test]
    fn a_device_policy_with_a_network_is_refused_unparsed() {
        let task = limpet_testkit::policy::task_json(
            "a",
            "060000000000ff7f",
            serde_json::json!({ "kind": "started" }),
            "always",
        );
        let device = |network: serde_json::Value| {
            let json = serde_json::json!({
                "format": limpet_policy::FORMAT,
                "arch": "x86_64",
                "tasks": [task.clone()],
                "network": network,
            });
            limpet_policy::DevicePolicy::from_json(json.to_string().as_bytes())
        };
        let Err(limpet_policy::PolicyError::Json(e)) = device(net_policy()) else {
            panic!("a policy with a network was read by a PID 1 without one");
        };
        assert!(e.to_string().starts_with(limpet_policy::NO_NETWORK), "{e}");
        // Not even a malformed network is looked into: it is refused the same way.
        let Err(limpet_policy::PolicyError::Json(e)) = device(serde_json::json!({ "x": 1 })) else {
            panic!("a malformed network was read");
        };
        assert!(e.to_string().starts_with(limpet_policy::NO_NETWORK), "{e}");
        // Without one, the policy reads as before.
        let policy = device(serde_json::Value::Null).unwrap();
        assert_eq!(policy.tasks.len(), 1);
        assert!(policy.network.is_none());
    }
}
