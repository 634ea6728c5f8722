//! Ed25519 keys: the public key object of TUF metadata, key ids, and private role keys as
//! PKCS#8 PEM files.
//!
//! Rules kept here:
//! - A key id is the hex SHA-256 of the canonical JSON of `{keytype, scheme, keyval}`, as
//!   securesystemslib computes it.
//! - Only `keytype` and `scheme` `"ed25519"` with a 32-byte hex `keyval.public` can verify;
//!   other key objects parse (so a root naming them loads) but never count toward a threshold.
//! - Private key files are created mode 0600 and never overwritten.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical::to_canonical;
use crate::fsutil;

/// A key id: in metadata written here, the hex SHA-256 of the key's canonical JSON. Metadata
/// from elsewhere may use any string; verification never trusts the id, only the key it names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `keyval` of a key object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyVal {
    /// Hex public key.
    pub public: String,
    /// Fields this crate does not interpret, kept for re-serialisation.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A public key object as it appears in root metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Key {
    /// `"ed25519"` for keys this crate can use.
    pub keytype: String,
    /// `"ed25519"` for keys this crate can use.
    pub scheme: String,
    /// The key material.
    pub keyval: KeyVal,
    /// Fields this crate does not interpret, kept for re-serialisation.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Key {
    /// The key object of an Ed25519 public key.
    pub fn ed25519(public: &VerifyingKey) -> Self {
        Key {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal {
                public: hex::encode(public.as_bytes()),
                extra: Map::new(),
            },
            extra: Map::new(),
        }
    }

    /// The Ed25519 verifying key, if this is a usable Ed25519 key object.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        if self.keytype != "ed25519" || self.scheme != "ed25519" {
            return None;
        }
        let bytes: [u8; 32] = hex::decode(&self.keyval.public).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    }

    /// The key id securesystemslib computes: hex SHA-256 of the canonical JSON of
    /// `{"keytype", "scheme", "keyval"}`.
    pub fn key_id(&self) -> KeyId {
        let mut obj = Map::new();
        obj.insert("keytype".into(), Value::String(self.keytype.clone()));
        obj.insert("scheme".into(), Value::String(self.scheme.clone()));
        let mut keyval = self.keyval.extra.clone();
        keyval.insert("public".into(), Value::String(self.keyval.public.clone()));
        obj.insert("keyval".into(), Value::Object(keyval));
        // Strings and objects only: canonical form always exists.
        let bytes = to_canonical(&Value::Object(obj)).unwrap_or_default();
        KeyId(hex::encode(Sha256::digest(bytes)))
    }
}

/// Why a private key file could not be read, listed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading, listing or writing a key file failed.
    #[error("{path}: key file I/O")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A key file that would be overwritten.
    #[error("{path}: key file exists, refusing to overwrite it")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file that is not a PKCS#8 PEM Ed25519 private key.
    #[error("{path}: not a PKCS#8 PEM Ed25519 private key")]
    Pem {
        /// The file.
        path: PathBuf,
    },
}

/// A private Ed25519 key with its public key object and key id.
pub struct RoleKey {
    signing: SigningKey,
    key: Key,
    id: KeyId,
}

impl fmt::Debug for RoleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl RoleKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        Self::from_signing(SigningKey::generate(&mut rand_core::OsRng))
    }

    fn from_signing(signing: SigningKey) -> Self {
        let key = Key::ed25519(&signing.verifying_key());
        let id = key.key_id();
        RoleKey { signing, key, id }
    }

    /// Its public key object, as root metadata lists it.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Its key id: what root metadata and signatures name it by.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// Signs `msg` (canonical JSON of a `signed` object); returns the hex signature.
    pub fn sign_hex(&self, msg: &[u8]) -> String {
        hex::encode(self.signing.sign(msg).to_bytes())
    }

    /// Reads a PKCS#8 PEM private key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Pem {
            path: path.to_owned(),
        })?;
        Ok(Self::from_signing(signing))
    }

    /// Writes this key as a PKCS#8 PEM file, mode 0600. Fails if `path` exists.
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        if path.exists() {
            return Err(KeyError::Exists {
                path: path.to_owned(),
            });
        }
        let pem = self
            .signing
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|_| KeyError::Pem {
                path: path.to_owned(),
            })?;
        fsutil::write_new(path, pem.as_bytes(), 0o600).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                KeyError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        })
    }
}

/// All private keys found in a keys directory (`*.pem`), by key id.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: BTreeMap<KeyId, RoleKey>,
}

impl KeyRing {
    /// Loads every `*.pem` file of `dir`. A missing directory is an empty ring.
    pub fn load_dir(dir: &Path) -> Result<Self, KeyError> {
        let mut keys = BTreeMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeyRing { keys }),
            Err(source) => {
                return Err(KeyError::Io {
                    path: dir.to_owned(),
                    source,
                })
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| KeyError::Io {
                path: dir.to_owned(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pem") {
                let key = RoleKey::load(&path)?;
                keys.insert(key.id.clone(), key);
            }
        }
        Ok(KeyRing { keys })
    }

    /// The key with this id, if its private half is here.
    pub fn get(&self, id: &KeyId) -> Option<&RoleKey> {
        self.keys.get(id)
    }

    /// Adds a key (one just made, before it is saved), replacing any with the same id.
    pub fn insert(&mut self, key: RoleKey) {
        self.keys.insert(key.id.clone(), key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_matches_securesystemslib_form() {
        let key = Key::ed25519(
            &VerifyingKey::from_bytes(&[
                215, 90, 152, 1, 130, 177, 10, 183, 213, 75, 254, 211, 201, 100, 7, 58, 14, 225,
                114, 243, 218, 166, 35, 37, 175, 2, 26, 104, 247, 7, 81, 26,
            ])
            .unwrap(),
        );
        let canonical = "{\"keytype\":\"ed25519\",\"keyval\":{\"public\":\"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"},\"scheme\":\"ed25519\"}";
        assert_eq!(
            key.key_id().0,
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
    }

    #[test]
    fn pem_round_trip_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = RoleKey::generate();
        key.save_new(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(RoleKey::load(&path).unwrap().id(), key.id());
        assert!(matches!(
            RoleKey::generate().save_new(&path),
            Err(KeyError::Exists { .. })
        ));
        assert_eq!(RoleKey::load(&path).unwrap().id(), key.id());
    }
}
