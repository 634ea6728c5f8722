//! The vendor's image signing key: an Ed25519 key pair stored as PKCS#8 / SPKI PEM, so
//! that `openssl pkey` can read it too.
//!
//! Rules this module keeps:
//! - the private key file is created with mode 0600 and never overwritten;
//! - the private key is only ever read from its file and used to sign: nothing here
//!   copies it anywhere (the image carries the public key only).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// File name of the private image key inside a key directory.
pub const PRIVATE_KEY_FILE: &str = "image.key";
/// File name of the public image key inside a key directory.
pub const PUBLIC_KEY_FILE: &str = "image.pub";

/// Errors about key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file [`generate`] would write is already there; keys are never overwritten.
    #[error("{path} already exists; refusing to overwrite a key (move it away first)")]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The key directory or a key file could not be created or written.
    #[error("cannot create {path}")]
    Create {
        /// The path being created.
        path: PathBuf,
        /// Why creating it failed.
        source: std::io::Error,
    },
    /// A key file exists but could not be read.
    #[error("cannot read key {path}")]
    Read {
        /// The key file's path.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// There is no private key where the build looks for one.
    #[error("no image signing key at {path}; create one with `limpet keys generate --out {dir}`")]
    Missing {
        /// Where the key was expected.
        path: PathBuf,
        /// The directory `limpet keys generate` should write it to.
        dir: PathBuf,
    },
    /// The private key file is not an Ed25519 key in PKCS#8 PEM.
    #[error("{path} is not an Ed25519 private key in PKCS#8 PEM form: {reason}")]
    BadPrivate {
        /// The key file's path.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },
    /// The public key file is not an Ed25519 key in SPKI PEM.
    #[error("{path} is not an Ed25519 public key in SPKI PEM form: {reason}")]
    BadPublic {
        /// The key file's path.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },
    #[error(
        "private key {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    /// The private key file can be read by its group or others; signing refuses such a key.
    TooOpen {
        /// The key file's path.
        path: PathBuf,
        /// Its permission bits (octal in the message).
        mode: u32,
    },
    /// A key could not be encoded as PEM.
    #[error("cannot encode key: {reason}")]
    Encode {
        /// What the encoder reported.
        reason: String,
    },
}

/// The two files written by [`generate`].
#[derive(Debug)]
pub struct GeneratedKeys {
    /// The private key file (`image.key`, mode 0600).
    pub private: PathBuf,
    /// The public key file (`image.pub`).
    pub public: PathBuf,
    /// The key's id, hex: the first 8 bytes of the sha256 of the public key, as image
    /// headers name it.
    pub key_id: String,
}

/// Makes a new image signing key pair in `dir` (created if missing).
pub fn generate(dir: &Path) -> Result<GeneratedKeys, KeyError> {
    let private = dir.join(PRIVATE_KEY_FILE);
    let public = dir.join(PUBLIC_KEY_FILE);
    for path in [&private, &public] {
        if path.exists() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    fs::create_dir_all(dir).map_err(|source| KeyError::Create {
        path: dir.to_owned(),
        source,
    })?;

    let key = SigningKey::generate(&mut rand_core::OsRng);
    let private_pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| KeyError::Encode {
            reason: e.to_string(),
        })?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(Default::default())
        .map_err(|e| KeyError::Encode {
            reason: e.to_string(),
        })?;

    write_new(&private, private_pem.as_bytes(), 0o600)?;
    write_new(&public, public_pem.as_bytes(), 0o644)?;
    Ok(GeneratedKeys {
        private,
        public,
        key_id: hex::encode(limpet_image::header::key_id(&key.verifying_key())),
    })
}

/// Creates `path` exclusively with `mode` from the start (no window where the private
/// key is readable by others).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let create = |source| KeyError::Create {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(create)?;
    file.write_all(bytes).map_err(create)?;
    file.sync_all().map_err(create)
}

/// Loads the private image key, refusing a file others can read.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().map(Path::to_owned).unwrap_or_default();
            return Err(KeyError::Missing {
                path: path.to_owned(),
                dir,
            });
        }
        Err(source) => {
            return Err(KeyError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let text = fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::BadPrivate {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Loads a public image key (SPKI PEM).
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    VerifyingKey::from_public_key_pem(&text).map_err(|e| KeyError::BadPublic {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Parses a public key from SPKI PEM text.
pub fn parse_public_pem(text: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_public_key_pem(text).map_err(|e| e.to_string())
}

/// The public key in the PEM form the initramfs carries.
pub fn public_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    key.to_public_key_pem(Default::default())
        .map_err(|e| KeyError::Encode {
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generate_writes_0600_private_key_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let keys = generate(dir.path()).unwrap();
        let mode = fs::metadata(&keys.private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let signing = load_signing_key(&keys.private).unwrap();
        let public = load_verifying_key(&keys.public).unwrap();
        assert_eq!(signing.verifying_key(), public);
        assert!(matches!(generate(dir.path()), Err(KeyError::Exists { .. })));
    }

    #[test]
    fn missing_key_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_signing_key(&dir.path().join("image.key")).unwrap_err();
        assert!(err.to_string().contains("limpet keys generate"), "{err}");
    }

    #[test]
    fn world_readable_private_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = generate(dir.path()).unwrap();
        fs::set_permissions(&keys.private, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_signing_key(&keys.private),
            Err(KeyError::TooOpen { .. })
        ));
    }

    #[test]
    fn garbage_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.key");
        write_new(&path, b"not a key", 0o600).unwrap();
        assert!(matches!(
            load_signing_key(&path),
            Err(KeyError::BadPrivate { .. })
        ));
    }
}
