//! The device identity kept on a disk image's data partition, as `limpet inspect` shows it
//! (docs/identity.md): a device's disk after it has run (`limpet run --persist`), or a
//! disk read out of a device.
//!
//! Rules this module keeps: the disk image is only read, never written (`debugfs` opens it
//! read-only, at the data partition's offset); the file is checked with limpet-identity's
//! own decoder, the code the device uses; only the class, public key and fingerprint are
//! shown, never the secret.

use std::path::{Path, PathBuf};
use std::process::Command;

use limpet_identity::IdentityView;
use serde::Serialize;

/// Errors reading a disk's identity.
#[derive(Debug, thiserror::Error)]
pub enum DiskIdentityError {
    /// The disk image or its partition table could not be read, or it has no `data`
    /// partition.
    #[error(transparent)]
    Disk(#[from] crate::read::disk_state::DiskStateError),
    /// `debugfs` could not be started.
    #[error("cannot run debugfs (install e2fsprogs)")]
    Spawn {
        /// Why starting it failed.
        source: std::io::Error,
    },
    /// `debugfs` could not read the data partition's filesystem.
    #[error("{path}: debugfs cannot read the data partition: {stderr}")]
    Debugfs {
        /// The disk image's path.
        path: PathBuf,
        /// What it wrote on stderr.
        stderr: String,
    },
}

/// What the data partition holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DiskIdentity {
    /// No identity file: the device has not booted from this disk yet, or its data
    /// partition was wiped since.
    Absent,
    /// A valid identity file.
    Present(IdentityView),
    /// A file the device would refuse, and why.
    Damaged {
        /// The decoder's error.
        error: String,
    },
    /// The data partition could not be read (how `limpet inspect` shows a [`read`] error,
    /// so the rest of the image is still shown).
    Unreadable {
        /// The error chain.
        error: String,
    },
}

/// Reads the identity file from the data partition of the disk image at `path`.
pub fn read(path: &Path) -> Result<DiskIdentity, DiskIdentityError> {
    let (_, part) = crate::read::disk_state::open_partition(path, "data")?;
    let file_path = format!(
        "/{}/{}",
        limpet_identity::store::DIR,
        limpet_identity::store::FILE
    );
    // e2fsprogs' `name?offset=N` opens the filesystem inside the disk image, read-only.
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {file_path}"))
        .arg(format!("{}?offset={}", path.display(), part.offset()))
        .output()
        .map_err(|source| DiskIdentityError::Spawn { source })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // debugfs exits 0 even when a command fails; its errors name the path on stderr.
    let failed = stderr
        .lines()
        .find(|l| !l.starts_with("debugfs ") && !l.trim().is_empty());
    match failed {
        Some(line) if line.contains("File not found") && out.stdout.is_empty() => {
            Ok(DiskIdentity::Absent)
        }
        Some(_) => Err(DiskIdentityError::Debugfs {
            path: path.to_owned(),
            stderr: stderr.trim().to_owned(),
        }),
        None if !out.status.success() => Err(DiskIdentityError::Debugfs {
            path: path.to_owned(),
            stderr: stderr.trim().to_owned(),
        }),
        None => Ok(match limpet_identity::store::decode_public(&out.stdout) {
            Ok((class, public)) => DiskIdentity::Present(IdentityView::of(class, &public)),
            Err(e) => DiskIdentity::Damaged {
                error: e.to_string(),
            },
        }),
    }
}
