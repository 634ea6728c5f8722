//! `limpet verify`: checks a slot against the vendor's public key, independently of the
//! build that made it.
//!
//! The checks, in order, each stopping at the first failure with what is wrong:
//! 1. the header decodes and its signature is by the given key;
//! 2. every dm-verity hash block and every data block hashes to the signed root;
//! 3. the attachment (SBOM) matches the hash in the header;
//! 4. the squashfs parses and every file in it decompresses;
//! 5. it holds exactly the canonical manifest, the compiled policy and the binaries of the
//!    manifest's tasks; the manifest names the same device, version and target as the
//!    signed header, and the policy covers exactly the manifest's tasks; the slot's
//!    initramfs names that same release in its release file (limpet-image `release`);
//! 6. for an output directory: `disk.img`'s `slot-a` holds the same slot, and the
//!    initramfs carries the same public key.

use std::collections::BTreeSet;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use limpet_image::release::Release;
use limpet_image::{cpio, slot, squashfs};

use crate::outputs::{INITRAMFS, INITRAMFS_PUBLIC_KEY, MANIFEST_FILE, POLICY_FILE};
use crate::project::keys;
use crate::read::image_file::{self, ImageFileError, SlotBytes};
use crate::read::inspect::{self, InspectError};

/// Why a slot failed verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The slot, or the disk image beside it, could not be found or read.
    #[error(transparent)]
    File(#[from] ImageFileError),
    /// Check 1, 2 or 3 failed: the signature, the dm-verity tree or the attachment.
    #[error("{path}: verification failed")]
    Slot {
        /// The slot's file, for the message.
        path: String,
        /// Which check failed and how.
        source: slot::SlotError,
    },
    /// Check 4 failed: a file in the squashfs does not decompress.
    #[error("{path}: squashfs file `{file}` cannot be read")]
    SquashfsFile {
        /// The slot's file, for the message.
        path: String,
        /// The file inside the squashfs.
        file: String,
        /// Why it cannot be read.
        source: squashfs::SquashfsError,
    },
    /// The canonical manifest or the policy inside the slot cannot be read (check 5).
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error(
        "{path}: the squashfs holds {found:?}, but the manifest declares exactly {expected:?}"
    )]
    /// Check 5 failed: the squashfs holds other files than the manifest declares.
    Contents {
        /// The slot's file, for the message.
        path: String,
        /// The files the squashfs holds, sorted.
        found: Vec<String>,
        /// The files the manifest declares (manifest, policy, the tasks' binaries), sorted.
        expected: Vec<String>,
    },
    /// Check 5 failed: the signed header and the manifest inside disagree on device,
    /// version or target.
    #[error("{path}: the signed header says {header}, the manifest inside says {manifest}")]
    HeaderMismatch {
        /// The slot's file, for the message.
        path: String,
        /// Device, version and target as the header gives them.
        header: String,
        /// Device, version and target as the manifest gives them.
        manifest: String,
    },
    /// Check 5 failed: the slot's initramfs has no release file, one that does not parse,
    /// or one naming another release than the signed header.
    #[error("{path}: the initramfs's {file} {problem}; the signed header says {header}")]
    InitramfsRelease {
        /// The slot's file, for the message.
        path: String,
        /// The release file's path in the initramfs.
        file: &'static str,
        /// What is wrong with it.
        problem: String,
        /// Device, version and target as the header gives them.
        header: String,
    },
    /// Check 5 failed: the compiled policy covers other tasks than the manifest declares.
    #[error("{path}: the policy covers tasks {policy:?}, the manifest declares {manifest:?}")]
    PolicyMismatch {
        /// The slot's file, for the message.
        path: String,
        /// The tasks the policy has rules for.
        policy: Vec<String>,
        /// The tasks the manifest declares.
        manifest: Vec<String>,
    },
    /// Check 6 failed: `disk.img`'s `slot-a` does not hold the same bytes as the slot.
    #[error("{disk}: partition slot-a differs from {slot}")]
    DiskMismatch {
        /// The disk image's path.
        disk: String,
        /// The slot image's path.
        slot: String,
    },
    /// Check 5 or 6: the initramfs could not be read or decompressed.
    #[error("{path}: cannot read the initramfs")]
    Initramfs {
        /// The initramfs's path.
        path: String,
        /// Why reading or decompressing it failed.
        source: std::io::Error,
    },
    /// Check 6 failed: the initramfs carries no public key, or one that does not parse.
    #[error("{path}: the initramfs carries no {INITRAMFS_PUBLIC_KEY}")]
    InitramfsKey {
        /// The initramfs's path.
        path: String,
    },
    /// Check 6 failed: the initramfs carries a public key other than the verifying key.
    #[error("{path}: the initramfs carries key id {found}, not the verifying key {expected}")]
    InitramfsKeyMismatch {
        /// The initramfs's path.
        path: String,
        /// The id of the key the initramfs carries, hex.
        found: String,
        /// The id of the key verification used, hex.
        expected: String,
    },
}

/// A check that passed, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Passed {
    /// The check's short name (`signature`, `verity`, `attachment`, `squashfs`, `contents`,
    /// `disk`, `initramfs`).
    pub check: String,
    /// What was found to be right, in words.
    pub detail: String,
}

/// Verifies `path` (output directory, slot image or disk image) against `key`.
pub fn verify(path: &Path, key: &VerifyingKey) -> Result<Vec<Passed>, VerifyError> {
    let slot_bytes = image_file::load_slot(path)?;
    let mut passed = verify_slot(&slot_bytes, key)?;
    if let Some(disk) = image_file::disk_beside(path) {
        let disk_bytes = std::fs::read(&disk).map_err(|source| ImageFileError::Read {
            path: disk.clone(),
            source,
        })?;
        let in_disk = image_file::slot_from_disk(&disk, &disk_bytes, "slot-a")?;
        if in_disk.bytes != slot_bytes.bytes {
            return Err(VerifyError::DiskMismatch {
                disk: disk.display().to_string(),
                slot: slot_bytes.path.display().to_string(),
            });
        }
        passed.push(Passed {
            check: "disk".into(),
            detail: format!("{} slot-a holds this slot", disk.display()),
        });
    }
    if path.is_dir() {
        let initramfs = path.join(INITRAMFS);
        if initramfs.is_file() {
            passed.push(check_initramfs_key(&initramfs, key)?);
        }
    }
    Ok(passed)
}

/// Checks 1–5 on one slot.
pub fn verify_slot(slot_bytes: &SlotBytes, key: &VerifyingKey) -> Result<Vec<Passed>, VerifyError> {
    let path = slot_bytes.path.display().to_string();
    let verified = slot::verify(&slot_bytes.bytes, key).map_err(|source| VerifyError::Slot {
        path: path.clone(),
        source,
    })?;
    let header = &verified.header;
    let mut passed = vec![
        Passed {
            check: "signature".into(),
            detail: format!("header signed by key {}", hex::encode(header.key_id)),
        },
        Passed {
            check: "verity".into(),
            detail: format!(
                "{} data blocks and the hash tree match root {}",
                header.data_blocks,
                hex::encode(header.root_hash)
            ),
        },
        Passed {
            check: "attachment".into(),
            detail: "SBOM matches the signed hash".into(),
        },
    ];

    for file in squashfs::list(verified.squashfs).map_err(|source| VerifyError::SquashfsFile {
        path: path.clone(),
        file: "/".into(),
        source,
    })? {
        squashfs::read_file(verified.squashfs, &file.path).map_err(|source| {
            VerifyError::SquashfsFile {
                path: path.clone(),
                file: file.path.clone(),
                source,
            }
        })?;
    }
    passed.push(Passed {
        check: "squashfs".into(),
        detail: "every file decompresses".into(),
    });

    let inspection = inspect::inspect(slot_bytes)?;
    let manifest = &inspection.manifest;
    let expected: BTreeSet<String> = [MANIFEST_FILE.to_owned(), POLICY_FILE.to_owned()]
        .into_iter()
        .chain(manifest.tasks.iter().map(|t| t.binary.as_str().to_owned()))
        .collect();
    let found: BTreeSet<String> = inspection.files.iter().map(|f| f.path.clone()).collect();
    if found != expected {
        return Err(VerifyError::Contents {
            path,
            found: found.into_iter().collect(),
            expected: expected.into_iter().collect(),
        });
    }
    let in_header = format!(
        "{} {} ({})",
        header.device,
        header.version,
        header.target.as_str()
    );
    let in_manifest = format!(
        "{} {} ({})",
        manifest.device.name,
        manifest.device.version,
        manifest.device.target.as_str()
    );
    if in_header != in_manifest {
        return Err(VerifyError::HeaderMismatch {
            path,
            header: in_header,
            manifest: in_manifest,
        });
    }
    let policy_tasks: Vec<String> = inspection
        .policy
        .tasks
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let manifest_tasks: Vec<String> = manifest
        .tasks
        .iter()
        .map(|t| t.name.as_str().to_owned())
        .collect();
    if policy_tasks != manifest_tasks {
        return Err(VerifyError::PolicyMismatch {
            path,
            policy: policy_tasks,
            manifest: manifest_tasks,
        });
    }
    check_initramfs_release(&path, verified.initramfs, &in_header)?;
    passed.push(Passed {
        check: "contents".into(),
        detail: format!(
            "exactly {MANIFEST_FILE}, {POLICY_FILE} and the binaries of {} task(s): {in_manifest}, \
             the initramfs's release too",
            manifest.tasks.len()
        ),
    });
    Ok(passed)
}

/// The release file of the slot's `initramfs` names `in_header`, the signed header's
/// `<device> <version> (<target>)`.
fn check_initramfs_release(
    path: &str,
    initramfs: &[u8],
    in_header: &str,
) -> Result<(), VerifyError> {
    let raw = cpio::decompress(initramfs).map_err(|e| VerifyError::Initramfs {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    let file = limpet_image::release::INITRAMFS_PATH;
    let problem = match cpio::find_file(&raw, file).map(Release::parse) {
        None => "is missing".to_owned(),
        Some(Err(e)) => format!("is not a release: {e}"),
        Some(Ok(release)) if release.to_string() != in_header => format!("says {release}"),
        Some(Ok(_)) => return Ok(()),
    };
    Err(VerifyError::InitramfsRelease {
        path: path.to_owned(),
        file,
        problem,
        header: in_header.to_owned(),
    })
}

fn check_initramfs_key(initramfs: &Path, key: &VerifyingKey) -> Result<Passed, VerifyError> {
    let path = initramfs.display().to_string();
    let bytes = std::fs::read(initramfs).map_err(|source| VerifyError::Initramfs {
        path: path.clone(),
        source,
    })?;
    let raw = cpio::decompress(&bytes).map_err(|e| VerifyError::Initramfs {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    let pem = cpio::find_file(&raw, INITRAMFS_PUBLIC_KEY)
        .ok_or_else(|| VerifyError::InitramfsKey { path: path.clone() })?;
    let carried = keys::parse_public_pem(&String::from_utf8_lossy(pem))
        .map_err(|_| VerifyError::InitramfsKey { path: path.clone() })?;
    let id = |k: &VerifyingKey| hex::encode(limpet_image::header::key_id(k));
    if carried != *key {
        return Err(VerifyError::InitramfsKeyMismatch {
            path,
            found: id(&carried),
            expected: id(key),
        });
    }
    Ok(Passed {
        check: "initramfs".into(),
        detail: format!("carries public key {}", id(key)),
    })
}
