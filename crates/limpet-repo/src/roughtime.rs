//! The Roughtime server list in the repository: a signed statement that replaces the list a
//! device model's slot was built with, without a new image.
//!
//! The statement is a field of the top-level `targets.json`'s `signed` object, signed by the
//! targets keys like the support extension ([`crate::support`]):
//!
//! ```json
//! "x-limpet-roughtime": { "thermostat": [
//!     { "name": "rt1", "address": "192.0.2.10:2002", "key": "<base64 of 32 bytes>" } ] }
//! ```
//!
//! Rules kept here:
//! - Only top-level targets metadata is read ([`RoughtimeList::from_targets`] takes its
//!   `signed` fields): the device has verified it with the targets threshold before.
//! - Every entry is checked as the device checks it: a name, an IPv4 `address:port`, a key
//!   that is an Ed25519 public key (limpet-roughtime's [`Server::new`]). One bad entry
//!   refuses the whole list ([`RoughtimeListError`], naming the model, the entry and what is
//!   wrong), never a list with that entry dropped: a vendor who meant to replace a server's
//!   key must not leave the device asking under the old one.
//! - At most [`MAX_SERVERS`] entries (the list travels to PID 1 in one datagram).
//! - What this statement cannot do: add an address. PID 1's egress policy is compiled at
//!   build time and lets its queries out only to the slot's listed addresses, so the device
//!   takes a signed list only when every address in it is one of the slot's (checked on the
//!   device, where the slot's list is known: limpet-init's `Roughtime::replace`). A new
//!   server address needs a new image. The statement replaces keys and narrows the list.

use limpet_roughtime::Server;
use serde_json::{Map, Value};
use thiserror::Error;

/// The field of `targets.json`'s `signed` object holding the lists.
pub const ROUGHTIME_FIELD: &str = "x-limpet-roughtime";

/// Most servers one list may name.
pub const MAX_SERVERS: usize = 16;

/// One server of a signed list: the policy's type (`[lifecycle] roughtime`), the same JSON.
pub use limpet_policy::RoughtimeServer as RoughtimeEntry;

/// The signed list for one device model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoughtimeList {
    /// The servers, in the order the device asks them.
    pub servers: Vec<RoughtimeEntry>,
}

/// A list that cannot be read, or that names a server the device could not ask.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RoughtimeListError {
    /// The field is not an object of model names to lists.
    #[error("targets metadata field {ROUGHTIME_FIELD} is not an object of device models to lists")]
    NotAnObject,
    /// The model's entry is not a list of `{name, address, key}` objects.
    #[error(
        "{ROUGHTIME_FIELD} of device {device:?} is not a list of {{name, address, key}}: {reason}"
    )]
    NotAList {
        /// The device model.
        device: String,
        /// What serde said.
        reason: String,
    },
    /// More servers than [`MAX_SERVERS`].
    #[error("{ROUGHTIME_FIELD} of device {device:?} names {count} servers, at most {MAX_SERVERS}")]
    TooMany {
        /// The device model.
        device: String,
        /// How many it names.
        count: usize,
    },
    /// An entry has an empty name, or one used twice.
    #[error("{ROUGHTIME_FIELD} of device {device:?}: server {index} has an empty or repeated name {name:?}")]
    Name {
        /// The device model.
        device: String,
        /// The entry's position, from 0.
        index: usize,
        /// Its name.
        name: String,
    },
    /// An entry's key is not an Ed25519 public key.
    #[error("{ROUGHTIME_FIELD} of device {device:?}: server {name:?}: {reason}")]
    Key {
        /// The device model.
        device: String,
        /// The server's name.
        name: String,
        /// What is wrong with the key (limpet-roughtime's error).
        reason: String,
    },
    /// An entry's address is unspecified (`0.0.0.0`) or port 0.
    #[error("{ROUGHTIME_FIELD} of device {device:?}: server {name:?} has address {address}, which no query can go to")]
    Address {
        /// The device model.
        device: String,
        /// The server's name.
        name: String,
        /// The address.
        address: std::net::SocketAddrV4,
    },
}

impl RoughtimeList {
    /// Checks `servers` for `device` as the device will ([module rules](self)).
    pub fn new(device: &str, servers: Vec<RoughtimeEntry>) -> Result<Self, RoughtimeListError> {
        if servers.len() > MAX_SERVERS {
            return Err(RoughtimeListError::TooMany {
                device: device.to_owned(),
                count: servers.len(),
            });
        }
        for (index, s) in servers.iter().enumerate() {
            let repeated = servers.iter().take(index).any(|o| o.name == s.name);
            if s.name.trim().is_empty() || repeated {
                return Err(RoughtimeListError::Name {
                    device: device.to_owned(),
                    index,
                    name: s.name.clone(),
                });
            }
            if s.address.ip().is_unspecified() || s.address.port() == 0 {
                return Err(RoughtimeListError::Address {
                    device: device.to_owned(),
                    name: s.name.clone(),
                    address: s.address,
                });
            }
            Server::new(&s.name, &s.key).map_err(|e| RoughtimeListError::Key {
                device: device.to_owned(),
                name: s.name.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(RoughtimeList { servers })
    }

    /// The list for `device` among the fields of verified top-level targets metadata
    /// (`Targets::extra`); `None` when there is none.
    pub fn from_targets(
        extra: &Map<String, Value>,
        device: &str,
    ) -> Result<Option<Self>, RoughtimeListError> {
        let Some(field) = extra.get(ROUGHTIME_FIELD) else {
            return Ok(None);
        };
        let entries = field.as_object().ok_or(RoughtimeListError::NotAnObject)?;
        let Some(entry) = entries.get(device) else {
            return Ok(None);
        };
        let servers: Vec<RoughtimeEntry> =
            serde_json::from_value(entry.clone()).map_err(|e| RoughtimeListError::NotAList {
                device: device.to_owned(),
                reason: e.to_string(),
            })?;
        RoughtimeList::new(device, servers).map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    /// The Ed25519 base point: a valid public key.
    const KEY: &str = "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";

    fn extra(v: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(ROUGHTIME_FIELD.to_owned(), v);
        m
    }

    #[test]
    fn reads_the_models_list_only() {
        let e = extra(json!({
            "thermostat": [{"name": "rt1", "address": "192.0.2.10:2002", "key": KEY}],
            "other": 5
        }));
        let list = RoughtimeList::from_targets(&e, "thermostat")
            .unwrap()
            .unwrap();
        assert_eq!(list.servers.len(), 1);
        assert_eq!(list.servers[0].address, "192.0.2.10:2002".parse().unwrap());
        assert_eq!(RoughtimeList::from_targets(&e, "lamp").unwrap(), None);
        assert_eq!(
            RoughtimeList::from_targets(&Map::new(), "thermostat").unwrap(),
            None
        );
        let empty = extra(json!({"thermostat": []}));
        assert_eq!(
            RoughtimeList::from_targets(&empty, "thermostat").unwrap(),
            Some(RoughtimeList { servers: vec![] })
        );
    }

    #[test]
    fn a_bad_key_refuses_the_whole_list() {
        let e = extra(json!({"t": [
            {"name": "rt1", "address": "192.0.2.10:2002", "key": KEY},
            {"name": "rt2", "address": "192.0.2.11:2002", "key": "c2hvcnQ="}
        ]}));
        let err = RoughtimeList::from_targets(&e, "t").unwrap_err();
        assert!(
            matches!(&err, RoughtimeListError::Key { name, .. } if name == "rt2"),
            "{err:?}"
        );
        assert_eq!(
            limpet_error_chain::one_line(&err),
            "x-limpet-roughtime of device \"t\": server \"rt2\": Roughtime key of rt2: 5 bytes, an Ed25519 key is 32"
        );
    }

    #[test]
    fn bad_addresses_and_shapes_are_refused() {
        for (list, what) in [
            (
                json!([{"name": "a", "address": "rt.example:2002", "key": KEY}]),
                "a host name",
            ),
            (
                json!([{"name": "a", "address": "[2001:db8::1]:2002", "key": KEY}]),
                "IPv6",
            ),
            (
                json!([{"name": "a", "address": "192.0.2.1", "key": KEY}]),
                "no port",
            ),
            (
                json!([{"name": "a", "address": "192.0.2.1:2002", "key": KEY, "x": 1}]),
                "an unknown field",
            ),
            (json!({"name": "a"}), "not a list"),
        ] {
            let err = RoughtimeList::from_targets(&extra(json!({"t": list})), "t").unwrap_err();
            assert!(
                matches!(err, RoughtimeListError::NotAList { .. }),
                "{what}: {err:?}"
            );
        }
        let err = RoughtimeList::from_targets(
            &extra(json!({"t": [{"name": "a", "address": "0.0.0.0:2002", "key": KEY}]})),
            "t",
        )
        .unwrap_err();
        assert!(matches!(err, RoughtimeListError::Address { .. }), "{err:?}");
        let err = RoughtimeList::from_targets(
            &extra(json!({"t": [
                {"name": "a", "address": "192.0.2.1:2002", "key": KEY},
                {"name": "a", "address": "192.0.2.2:2002", "key": KEY}
            ]})),
            "t",
        )
        .unwrap_err();
        assert!(
            matches!(err, RoughtimeListError::Name { index: 1, .. }),
            "{err:?}"
        );
        assert_eq!(
            RoughtimeList::from_targets(&extra(json!([])), "t"),
            Err(RoughtimeListError::NotAnObject)
        );
        let many: Vec<Value> = (0..=MAX_SERVERS)
            .map(|i| json!({"name": format!("s{i}"), "address": "192.0.2.1:2002", "key": KEY}))
            .collect();
        assert!(matches!(
            RoughtimeList::from_targets(&extra(json!({"t": many})), "t"),
            Err(RoughtimeListError::TooMany { count: 17, .. })
        ));
    }
}
