//! Authenticode signatures on PE images (the boot loader, the EFI-stub kernel) with the
//! vendor's db key, made by `sbsign` and checked by `sbverify` against the db
//! certificate before the signed bytes are used.
//!
//! An image that already carries signatures (Debian's kernel is signed by Debian) keeps
//! them and gets the vendor's beside them: the firmware starts an image when any of its
//! signatures chains to db, and the vendor's db holds only the vendor's certificate.

use std::fs;
use std::path::{Path, PathBuf};

use super::keys::KeyPair;
use super::tool::{SBSIGN, SBVERIFY};
use super::ToolError;

/// Why an image could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A temporary file could not be written or read.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `sbsign` or `sbverify` failed or is missing.
    #[error("signing the {what} for Secure Boot")]
    Tool {
        /// What was being signed.
        what: String,
        /// Why.
        source: ToolError,
    },
}

/// Signs the PE image `image` (named `what` in errors) with the db key pair, in the
/// scratch directory `work`; returns the signed image after `sbverify` accepted it.
pub fn sign_pe(image: &[u8], what: &str, db: &KeyPair, work: &Path) -> Result<Vec<u8>, SignError> {
    let name: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let unsigned = work.join(format!("{name}.unsigned"));
    let signed = work.join(format!("{name}.signed"));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SignError::Io { path, source }
    };
    let tool = |source| SignError::Tool {
        what: what.to_owned(),
        source,
    };
    fs::write(&unsigned, image).map_err(io(&unsigned))?;
    SBSIGN
        .run([
            "--key".as_ref(),
            db.key.as_os_str(),
            "--cert".as_ref(),
            db.cert.as_os_str(),
            "--output".as_ref(),
            signed.as_os_str(),
            unsigned.as_os_str(),
        ])
        .map_err(tool)?;
    SBVERIFY
        .run(["--cert".as_ref(), db.cert.as_os_str(), signed.as_os_str()])
        .map_err(tool)?;
    let bytes = fs::read(&signed).map_err(io(&signed))?;
    let _ = fs::remove_file(&unsigned);
    let _ = fs::remove_file(&signed);
    Ok(bytes)
}
