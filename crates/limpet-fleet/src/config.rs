//! What `limpet fleet serve` and `limpet fleet operator` run: the database, the hold key
//! file and the listening address, on a tokio runtime of their own.
//!
//! Rules kept here:
//! - The hold key is an Ed25519 PKCS#8 PEM file; when it is missing it is made once, with
//!   mode 0600 and without replacing anything (`create_new`).
//! - The command line stays thin: it parses arguments and calls [`serve`] or
//!   [`set_operator`].

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use thiserror::Error;

use crate::auth::{self, PasswordError};
use crate::rollout::Fleet;
use crate::store::{Store, StoreError};

/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE: &str = "sqlite://fleet.db";

/// A failure to start or run the server.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The hold key file cannot be read or written.
    #[error("hold key {}", path.display())]
    HoldKeyIo {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The hold key file is not an Ed25519 PKCS#8 PEM key.
    #[error("hold key {}: not an Ed25519 private key in PKCS#8 PEM: {problem}", path.display())]
    HoldKeyFormat {
        /// The file.
        path: PathBuf,
        /// What failed.
        problem: String,
    },
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A password that cannot be set.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The runtime or the listener.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Reads the hold key, making it first when `path` does not exist. Returns the key and
/// whether it was made now.
pub fn load_or_create_hold_key(path: &Path) -> Result<(SigningKey, bool), ConfigError> {
    let io = |source| ConfigError::HoldKeyIo {
        path: path.to_owned(),
        source,
    };
    let format = |problem: String| ConfigError::HoldKeyFormat {
        path: path.to_owned(),
        problem,
    };
    match std::fs::read_to_string(path) {
        Ok(pem) => Ok((
            SigningKey::from_pkcs8_pem(&pem).map_err(|e| format(e.to_string()))?,
            false,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate(&mut rand_core::OsRng);
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| format(e.to_string()))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            file.write_all(pem.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok((key, true))
        }
        Err(e) => Err(io(e)),
    }
}

/// What `limpet fleet serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `sqlite://PATH` or `postgres://…`.
    pub database: String,
    /// The hold key file.
    pub hold_key: PathBuf,
    /// Where to listen.
    pub addr: SocketAddr,
    /// How often downloads are checked for their deadline and halted rollouts' holds renewed.
    pub tick: Duration,
    /// Whether the session cookie is `Secure`.
    pub cookies: auth::CookiePolicy,
}

fn runtime() -> Result<tokio::runtime::Runtime, ConfigError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| ConfigError::Io {
            what: "starting the async runtime".into(),
            source,
        })
}

/// Runs the server until it fails; `ready` is called with the bound address and the hold
/// key's public half (hex) once it listens.
pub fn serve(opts: &ServeOptions, ready: impl FnOnce(SocketAddr, &str)) -> Result<(), ConfigError> {
    let (key, _) = load_or_create_hold_key(&opts.hold_key)?;
    runtime()?.block_on(async {
        let store = Store::open(&opts.database).await?;
        let fleet = Fleet::new(store, key);
        let listener = tokio::net::TcpListener::bind(opts.addr)
            .await
            .map_err(|source| ConfigError::Io {
                what: format!("listening on {}", opts.addr),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ConfigError::Io {
            what: "reading the bound address".into(),
            source,
        })?;
        ready(addr, &fleet.hold_public_key());
        crate::server::serve(
            listener,
            fleet,
            crate::server::system_clock(),
            opts.tick,
            opts.cookies,
        )
        .await
        .map_err(|source| ConfigError::Io {
            what: format!("serving on {addr}"),
            source,
        })
    })
}

/// Adds an operator (or sets a new password).
pub fn set_operator(database: &str, name: &str, password: &str) -> Result<(), ConfigError> {
    let hash = auth::hash_password(name, password)?;
    runtime()?.block_on(async {
        let store = Store::open(database).await?;
        store.set_operator(name, &hash).await?;
        store.close().await;
        Ok(())
    })
}
