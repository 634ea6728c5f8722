//! Authenticode signatures on PE images (the boot loader, the EFI-stub kernel) with the
//! vendor's db key, made by `osslsigncode` and checked by `sbverify` (sbsigntool, an
//! independent implementation) against the db certificate before the signed bytes are
//! used.
//!
//! Rules: the signature's signing time is the build's `SOURCE_DATE_EPOCH`, so the same
//! inputs give the same signed bytes (`sbsign` stamps the current time and cannot be told
//! otherwise); the vendor's signature replaces any the image carried (Debian signs its
//! kernel): on the device only the vendor's db counts.

use std::fs;
use std::path::{Path, PathBuf};

use super::keys::KeyPair;
use super::tool::{OSSLSIGNCODE, SBVERIFY};
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
    /// `osslsigncode` or `sbverify` failed or is missing.
    #[error("signing the {what} for Secure Boot")]
    Tool {
        /// What was being signed.
        what: String,
        /// Why.
        source: ToolError,
    },
}

/// Signs the PE image `image` (named `what` in errors) with the db key pair, with
/// `epoch` (seconds since 1970) as the signing time, in the scratch directory `work`;
/// returns the signed image after `sbverify` accepted it.
pub fn sign_pe(
    image: &[u8],
    what: &str,
    db: &KeyPair,
    epoch: u32,
    work: &Path,
) -> Result<Vec<u8>, SignError> {
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
    let epoch = epoch.to_string();
    OSSLSIGNCODE
        .run([
            "sign".as_ref(),
            "-certs".as_ref(),
            db.cert.as_os_str(),
            "-key".as_ref(),
            db.key.as_os_str(),
            "-h".as_ref(),
            "sha256".as_ref(),
            "-time".as_ref(),
            epoch.as_ref(),
            "-in".as_ref(),
            unsigned.as_os_str(),
            "-out".as_ref(),
            signed.as_os_str(),
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
