//! Keys: the public key object of TUF metadata, key ids, and the keys that sign (private key
//! PEM files, or signer commands for keys kept in an HSM or KMS).
//!
//! Rules kept here:
//! - A key id is the hex SHA-256 of the canonical JSON of `{keytype, scheme, keyval}`, as
//!   securesystemslib computes it.
//! - The schemes, their key and signature encodings are [`public`]'s; a key object of a
//!   keytype/scheme pair not implemented there parses (so a root naming it loads) but never
//!   counts toward a threshold. [`metadata::parse`](crate::metadata::parse) refuses a root
//!   whose key of an implemented pair is malformed or names the scheme of another key type.
//! - Every signature made here is verified with the key's public half before it is used.
//! - Private key files are created mode 0600 and never overwritten; a directory's `*.pem`
//!   files that hold a public key are skipped.

pub mod external;
mod private;
pub mod public;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical::to_canonical;
use crate::fsutil;

pub use external::{ExternalSigner, SignerCommandError};
use private::Secret;
pub use private::{PrivateKeyError, NEW_RSA_BITS};
pub use public::{KeyMaterial, PublicKey, PublicKeyError, Scheme, SignatureError};

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
    /// The public key: hex for Ed25519, a SubjectPublicKeyInfo PEM for ECDSA and RSA.
    pub public: String,
    /// Fields this crate does not interpret, kept for re-serialisation.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A public key object as it appears in root metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Key {
    /// `"ed25519"`, `"ecdsa"` (or the legacy `"ecdsa-sha2-nistp256"`) or `"rsa"` for keys
    /// this crate can use.
    pub keytype: String,
    /// `"ed25519"`, `"ecdsa-sha2-nistp256"` or `"rsassa-pss-sha256"` for keys this crate can
    /// use.
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

    /// The verifying key this key object describes ([`public`]'s rules).
    pub fn public_key(&self) -> Result<PublicKey, PublicKeyError> {
        PublicKey::from_key(self)
    }

    /// Checks the hex signature `sig` over `msg` with this key.
    pub fn verify(&self, msg: &[u8], sig: &str) -> Result<(), SignatureError> {
        let public = self.public_key()?;
        let bytes = hex::decode(sig).map_err(|_| SignatureError::Hex)?;
        public.verify(msg, &bytes)
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
    /// A file that is not a private key this crate can sign with.
    #[error("{path}: not a usable private key")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: PrivateKeyError,
    },
    /// A public key file (of a signer command's key) that cannot be used.
    #[error("{path}: not a usable public key")]
    PublicKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: PublicKeyError,
    },
    /// Saving a key whose private half is not here (a signer command's).
    #[error("{path}: a signer command's key has no private key to save")]
    NoPrivateKey {
        /// The file it was to be saved in.
        path: PathBuf,
    },
    /// A new key of this scheme could not be made.
    #[error("making a new {scheme} key")]
    Generate {
        /// The scheme.
        scheme: Scheme,
        /// The cause.
        #[source]
        source: PrivateKeyError,
    },
}

/// Why a signature could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// A private key on the host failed to sign.
    #[error("key {keyid}: signing")]
    Local {
        /// The key.
        keyid: KeyId,
        /// The cause.
        #[source]
        source: PrivateKeyError,
    },
    /// A signer command failed.
    #[error("key {keyid}: signer command {command:?}")]
    Command {
        /// The key.
        keyid: KeyId,
        /// The command line.
        command: String,
        /// What went wrong.
        #[source]
        source: SignerCommandError,
    },
    /// The signature made does not verify with the key's public half (a signer command that
    /// signs with another key or another encoding; see [`external`]).
    #[error("key {keyid}: the signature {by} made does not verify with its public key")]
    DoesNotVerify {
        /// The key.
        keyid: KeyId,
        /// Who signed: `its private key`, or `signer command "..."`.
        by: String,
        /// Why it does not verify.
        #[source]
        source: SignatureError,
    },
}

enum SignerKind {
    Local(Secret),
    External(ExternalSigner),
}

/// A key that can sign: a private key on the host (any [`Scheme`]) or a signer command,
/// with its public key object and key id.
pub struct RoleKey {
    signer: SignerKind,
    public: PublicKey,
    key: Key,
    id: KeyId,
}

impl fmt::Debug for RoleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleKey")
            .field("id", &self.id)
            .field("scheme", &self.public.scheme())
            .finish_non_exhaustive()
    }
}

impl RoleKey {
    /// A new random Ed25519 key from the operating system's generator.
    pub fn generate() -> Self {
        Self::from_ed25519(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// A new random key of `scheme` (RSA: 3072 bits).
    pub fn generate_scheme(scheme: Scheme) -> Result<Self, KeyError> {
        let secret =
            Secret::generate(scheme).map_err(|source| KeyError::Generate { scheme, source })?;
        Self::from_secret(secret).map_err(|source| KeyError::Generate { scheme, source })
    }

    fn from_ed25519(signing: SigningKey) -> Self {
        let public = PublicKey::Ed25519(signing.verifying_key());
        let key = Key::ed25519(&signing.verifying_key());
        let id = key.key_id();
        RoleKey {
            signer: SignerKind::Local(Secret::Ed25519(signing)),
            public,
            key,
            id,
        }
    }

    fn from_secret(secret: Secret) -> Result<Self, PrivateKeyError> {
        if let Secret::Ed25519(k) = secret {
            return Ok(Self::from_ed25519(k));
        }
        let public = secret.public();
        let key = public.to_key()?;
        let id = key.key_id();
        Ok(RoleKey {
            signer: SignerKind::Local(secret),
            public,
            key,
            id,
        })
    }

    /// A key whose signatures `signer`'s command makes.
    pub fn external(signer: ExternalSigner) -> Result<Self, PublicKeyError> {
        let public = signer.public().clone();
        let key = public.to_key()?;
        let id = key.key_id();
        Ok(RoleKey {
            signer: SignerKind::External(signer),
            public,
            key,
            id,
        })
    }

    /// Its public key object, as root metadata lists it.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Its key id: what root metadata and signatures name it by.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// Its scheme.
    pub fn scheme(&self) -> Scheme {
        self.public.scheme()
    }

    /// Signs `msg` (canonical JSON of a `signed` object); returns the hex signature, checked
    /// against the public key before it is returned.
    pub fn sign_hex(&self, msg: &[u8]) -> Result<String, SignError> {
        let bytes = match &self.signer {
            SignerKind::Local(secret) => secret.sign(msg).map_err(|source| SignError::Local {
                keyid: self.id.clone(),
                source,
            })?,
            SignerKind::External(ext) => {
                ext.sign(&self.id, msg)
                    .map_err(|source| SignError::Command {
                        keyid: self.id.clone(),
                        command: ext.command().to_owned(),
                        source,
                    })?
            }
        };
        self.public
            .verify(msg, &bytes)
            .map_err(|source| SignError::DoesNotVerify {
                keyid: self.id.clone(),
                by: match &self.signer {
                    SignerKind::Local(_) => "its private key".into(),
                    SignerKind::External(ext) => format!("signer command {:?}", ext.command()),
                },
                source,
            })?;
        Ok(hex::encode(bytes))
    }

    /// Reads a private key file: PKCS#8 (Ed25519, ECDSA P-256, RSA), SEC1 (P-256) or PKCS#1
    /// (RSA) PEM.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let pem = read_pem(path)?;
        Self::from_pem(path, &pem)
    }

    fn from_pem(path: &Path, pem: &str) -> Result<Self, KeyError> {
        let pem_err = |source| KeyError::Pem {
            path: path.to_owned(),
            source,
        };
        Self::from_secret(Secret::from_pem(pem).map_err(pem_err)?).map_err(pem_err)
    }

    /// Writes this key as a PKCS#8 PEM file, mode 0600. Fails if `path` exists, and for a
    /// signer command's key (its private half is not here).
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        if path.exists() {
            return Err(KeyError::Exists {
                path: path.to_owned(),
            });
        }
        let SignerKind::Local(secret) = &self.signer else {
            return Err(KeyError::NoPrivateKey {
                path: path.to_owned(),
            });
        };
        let pem = secret.to_pkcs8_pem().map_err(|source| KeyError::Pem {
            path: path.to_owned(),
            source,
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

/// Reads a public key file (SubjectPublicKeyInfo PEM of any [`Scheme`]): the key a signer
/// command signs with.
pub fn load_public_key(path: &Path) -> Result<PublicKey, KeyError> {
    let pem = read_pem(path)?;
    PublicKey::from_spki_pem(&pem).map_err(|source| KeyError::PublicKey {
        path: path.to_owned(),
        source,
    })
}

fn read_pem(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })
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
                let pem = read_pem(&path)?;
                // A public key carries no secret and signs nothing: a signer command's key
                // may be kept beside the private keys.
                if pem.trim_start().starts_with("-----BEGIN PUBLIC KEY-----") {
                    continue;
                }
                let key = RoleKey::from_pem(&path, &pem)?;
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
