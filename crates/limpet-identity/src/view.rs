//! What the status file (`system.identity`) and `limpet inspect` show of an identity:
//! its class, public key and fingerprint, never a secret. The wire names are kept: tools on
//! and off the device read them.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::key::{Class, Fingerprint, Identity};

/// An identity's public facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityView {
    /// How the private key is kept.
    pub class: Class,
    /// The Ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// SHA-256 of the public key, 64 hex digits.
    pub fingerprint: String,
}

impl IdentityView {
    /// The view of `public`, kept as `class`.
    pub fn of(class: Class, public: &VerifyingKey) -> IdentityView {
        IdentityView {
            class,
            public_key: hex::encode(public.as_bytes()),
            fingerprint: Fingerprint::of(public).to_string(),
        }
    }

    /// The view of `identity`.
    pub fn of_identity(identity: &Identity) -> IdentityView {
        IdentityView::of(identity.class(), &identity.public_key())
    }

    /// One line for people: `fingerprint F (class C), public key K`.
    pub fn line(&self) -> String {
        format!(
            "fingerprint {} ({}), public key {}",
            self.fingerprint, self.class, self.public_key
        )
    }
}

/// The identity as PID 1 found it at boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IdentityStatus {
    /// Loaded from the file of an earlier boot.
    Loaded(IdentityView),
    /// Made at this boot (first boot, or the first after a wipe).
    Created(IdentityView),
    /// None in use: the file is damaged or unreadable, or none could be made; the error
    /// says which and where.
    Refused {
        /// The error chain.
        error: String,
    },
}

impl IdentityStatus {
    /// The identity's public facts, when there is one.
    pub fn view(&self) -> Option<&IdentityView> {
        match self {
            IdentityStatus::Loaded(v) | IdentityStatus::Created(v) => Some(v),
            IdentityStatus::Refused { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_keeps_its_wire_names() {
        let id = Identity::from_seed(&[1; 32], Class::Software);
        let view = IdentityView::of_identity(&id);
        let json = serde_json::to_value(IdentityStatus::Created(view.clone())).unwrap();
        assert_eq!(json["state"], "created", "{json}");
        assert_eq!(json["class"], "software", "{json}");
        assert_eq!(json["public_key"], hex::encode(id.public_key().as_bytes()));
        assert_eq!(json["fingerprint"], id.fingerprint().to_string());
        let back: IdentityStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back.view(), Some(&view));
        let refused = serde_json::to_value(IdentityStatus::Refused { error: "x".into() }).unwrap();
        assert_eq!(
            refused,
            serde_json::json!({"state": "refused", "error": "x"})
        );
    }
}
