//! The vendor's Secure Boot keys: `PK`, `KEK` and `db`, each an RSA-2048 private key
//! (`<name>.key`, PKCS#8 PEM, mode 0600) and a self-signed X.509 certificate
//! (`<name>.crt`, PEM, SHA-256, valid 20 years) in `secureboot/` beside the image key.
//!
//! PK (the platform key) owns the firmware's key store, KEK may change db, and db signs
//! what the firmware may start: Limpet's boot loader and the slot's kernel. A device
//! needs only the certificates; the private keys stay with the vendor (offline; only
//! the db key is used by a build).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::tool::OPENSSL;
use super::ToolError;

/// The directory of the Secure Boot keys inside a key directory.
pub const DIR: &str = "secureboot";
/// The three keys, in the order of the chain (PK owns KEK, KEK owns db).
pub const NAMES: [&str; 3] = ["PK", "KEK", "db"];

/// Errors about the Secure Boot keys.
#[derive(Debug, thiserror::Error)]
pub enum SecureBootKeyError {
    /// A key or certificate is missing.
    #[error("no Secure Boot {what} at {path}; create the keys with `limpet keys generate --if-missing --out {dir}`")]
    Missing {
        /// Which file.
        what: String,
        /// Where it was expected.
        path: PathBuf,
        /// The key directory.
        dir: PathBuf,
    },
    /// A file would be overwritten.
    #[error("{path} already exists; refusing to overwrite a key (move it away first)")]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// A private key is readable by others.
    #[error("Secure Boot key {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file or directory could not be created or read.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `openssl` failed or is missing.
    #[error("making the Secure Boot key {name}")]
    Tool {
        /// Which key.
        name: &'static str,
        /// Why.
        source: ToolError,
    },
}

/// One key pair's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The private key (PEM).
    pub key: PathBuf,
    /// The certificate (PEM).
    pub cert: PathBuf,
}

/// The vendor's three Secure Boot key pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureBootKeys {
    /// The platform key.
    pub pk: KeyPair,
    /// The key exchange key.
    pub kek: KeyPair,
    /// The signature database key: signs the loader and the kernel.
    pub db: KeyPair,
}

fn pair(dir: &Path, name: &str) -> KeyPair {
    KeyPair {
        key: dir.join(format!("{name}.key")),
        cert: dir.join(format!("{name}.crt")),
    }
}

impl SecureBootKeys {
    /// Where the keys of the key directory `keys_dir` are (they may not exist).
    pub fn paths(keys_dir: &Path) -> Self {
        let dir = keys_dir.join(DIR);
        SecureBootKeys {
            pk: pair(&dir, "PK"),
            kek: pair(&dir, "KEK"),
            db: pair(&dir, "db"),
        }
    }

    /// The pairs with their names, in chain order.
    pub fn named(&self) -> [(&'static str, &KeyPair); 3] {
        [("PK", &self.pk), ("KEK", &self.kek), ("db", &self.db)]
    }

    /// Whether every file exists.
    pub fn complete(&self) -> bool {
        self.named()
            .iter()
            .all(|(_, p)| p.key.is_file() && p.cert.is_file())
    }

    /// The keys of `keys_dir`, checked: every certificate exists, and the db private key
    /// (the one a build signs with) exists with mode 0600 or stricter.
    pub fn load(keys_dir: &Path) -> Result<Self, SecureBootKeyError> {
        let keys = Self::paths(keys_dir);
        let missing = |what: String, path: &Path| SecureBootKeyError::Missing {
            what,
            path: path.to_owned(),
            dir: keys_dir.to_owned(),
        };
        for (name, p) in keys.named() {
            if !p.cert.is_file() {
                return Err(missing(format!("{name} certificate"), &p.cert));
            }
        }
        let meta =
            fs::metadata(&keys.db.key).map_err(|_| missing("db key".into(), &keys.db.key))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecureBootKeyError::TooOpen {
                path: keys.db.key.clone(),
                mode,
            });
        }
        Ok(keys)
    }
}

/// Makes the three key pairs in `keys_dir/secureboot/` (created if missing). `vendor`
/// names them in their certificates' subjects (`<vendor> PK`, ...). No file is
/// overwritten; if any exists, nothing is made.
pub fn generate(keys_dir: &Path, vendor: &str) -> Result<SecureBootKeys, SecureBootKeyError> {
    let keys = SecureBootKeys::paths(keys_dir);
    for (_, p) in keys.named() {
        for path in [&p.key, &p.cert] {
            if path.exists() {
                return Err(SecureBootKeyError::Exists { path: path.clone() });
            }
        }
    }
    let dir = keys_dir.join(DIR);
    fs::create_dir_all(&dir).map_err(|source| SecureBootKeyError::Io {
        path: dir.clone(),
        source,
    })?;
    for (name, p) in keys.named() {
        make_pair(name, p, vendor)?;
    }
    Ok(keys)
}

/// One self-signed pair: a new RSA-2048 key written 0600 by openssl into a temporary
/// name, then renamed, so a failed run leaves no half-made key under its final name.
fn make_pair(name: &'static str, p: &KeyPair, vendor: &str) -> Result<(), SecureBootKeyError> {
    let tmp_key = p.key.with_extension("key.tmp");
    let tmp_cert = p.cert.with_extension("crt.tmp");
    let subject = format!("/CN={} Secure Boot {name}/", subject_text(vendor));
    let result = OPENSSL
        .run([
            "req".as_ref(),
            "-new".as_ref(),
            "-x509".as_ref(),
            "-newkey".as_ref(),
            "rsa:2048".as_ref(),
            "-nodes".as_ref(),
            "-sha256".as_ref(),
            "-days".as_ref(),
            "7300".as_ref(),
            "-subj".as_ref(),
            subject.as_ref(),
            "-keyout".as_ref(),
            tmp_key.as_os_str(),
            "-out".as_ref(),
            tmp_cert.as_os_str(),
        ])
        .map_err(|source| SecureBootKeyError::Tool { name, source });
    let finish = result.and_then(|_| {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SecureBootKeyError::Io { path, source }
        };
        fs::set_permissions(&tmp_key, fs::Permissions::from_mode(0o600)).map_err(io(&tmp_key))?;
        fs::rename(&tmp_key, &p.key).map_err(io(&p.key))?;
        fs::rename(&tmp_cert, &p.cert).map_err(io(&p.cert))
    });
    if finish.is_err() {
        let _ = fs::remove_file(&tmp_key);
        let _ = fs::remove_file(&tmp_cert);
    }
    finish
}

/// The vendor name as it may stand in an X.509 subject given to `openssl -subj`: `/`,
/// `=`, `+`, `\` and control characters dropped.
fn subject_text(vendor: &str) -> String {
    vendor
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '/' | '=' | '+' | '\\'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_cannot_inject_fields() {
        assert_eq!(subject_text("Acme/CN=evil+O=x\\"), "AcmeCNevilOx");
    }
}
