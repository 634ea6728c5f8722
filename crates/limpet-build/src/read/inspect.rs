//! `limpet inspect`: what a slot holds, from the slot alone.
//!
//! The verity fields use the names and units `veritysetup` takes, so a slot can be
//! checked with no help from Limpet:
//! `veritysetup verify --no-superblock --data-blocks=<data_size/data_block_size>
//!  --hash-offset=<hash_offset> --salt=<salt> slot.img slot.img <root_hash>`.

use limpet_image::{slot, squashfs};
use serde::Serialize;

use crate::outputs::{MANIFEST_FILE, POLICY_FILE};
use crate::read::image_file::{ImageFileError, SlotBytes};

/// Largest SBOM attachment we agree to decompress.
const MAX_ATTACHMENT_JSON: usize = 64 * 1024 * 1024;

/// Errors inspecting a slot.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    File(#[from] ImageFileError),
    #[error("{path}: not a valid slot")]
    Slot {
        path: String,
        source: slot::SlotError,
    },
    #[error("{path}: cannot read the squashfs")]
    Squashfs {
        path: String,
        source: squashfs::SquashfsError,
    },
    #[error("{path}: the squashfs has no {MANIFEST_FILE}")]
    NoManifest { path: String },
    #[error("{path}: the canonical manifest in the slot does not parse:\n{diagnostics}")]
    Manifest {
        path: String,
        diagnostics: limpet_manifest::Diagnostics,
    },
    #[error("{path}: the squashfs has no readable {POLICY_FILE}")]
    NoPolicy { path: String },
    #[error("{path}: the compiled policy in the slot does not parse")]
    Policy {
        path: String,
        source: limpet_policy::PolicyError,
    },
    #[error("{path}: the SBOM attachment is not zstd-compressed JSON: {reason}")]
    Attachment { path: String, reason: String },
}

/// Everything `limpet inspect` reports.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub path: String,
    pub device: String,
    pub version: String,
    pub target: String,
    pub format_version: u32,
    pub key_id: String,
    pub verity: VerityFields,
    pub layout: LayoutFields,
    pub files: Vec<FileEntry>,
    pub tasks: Vec<limpet_manifest::Task>,
    pub manifest: limpet_manifest::Manifest,
    pub policy: limpet_policy::DevicePolicy,
    #[serde(skip)]
    pub sbom: serde_json::Value,
    pub sbom_components: usize,
}

/// dm-verity parameters, as veritysetup names them.
#[derive(Debug, Serialize)]
pub struct VerityFields {
    pub data_offset: u64,
    pub data_size: u64,
    pub data_blocks: u64,
    pub hash_offset: u64,
    pub root_hash: String,
    pub salt: String,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub hash_algorithm: String,
    pub format: u32,
    pub superblock: bool,
}

/// Where each part of the slot lies.
#[derive(Debug, Serialize)]
pub struct LayoutFields {
    pub squashfs_size: u64,
    pub tree_size: u64,
    pub header_offset: u64,
    pub attachment_offset: u64,
    pub attachment_size: u64,
    pub total_size: u64,
}

/// One file of the squashfs.
#[derive(Debug, Serialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub mode: String,
    pub sha256: String,
}

/// Reads what a slot holds. Nothing here checks the signature: that is `verify`'s job.
pub fn inspect(slot_bytes: &SlotBytes) -> Result<Inspection, InspectError> {
    let path = slot_bytes.path.display().to_string();
    let opened = slot::open(&slot_bytes.bytes).map_err(|source| InspectError::Slot {
        path: path.clone(),
        source,
    })?;
    let header = opened.header.unverified();
    let layout = &opened.layout;
    let squashfs_len = usize::try_from(layout.squashfs_size).unwrap_or(usize::MAX);
    let squashfs_image = opened.data.get(..squashfs_len).unwrap_or(opened.data);
    let files = squashfs::list(squashfs_image).map_err(|source| InspectError::Squashfs {
        path: path.clone(),
        source,
    })?;
    let manifest_text = squashfs::read_file(squashfs_image, MANIFEST_FILE)
        .map_err(|_| InspectError::NoManifest { path: path.clone() })?;
    let manifest_text = String::from_utf8_lossy(&manifest_text);
    let manifest = limpet_manifest::parse(&format!("{path}:/{MANIFEST_FILE}"), &manifest_text)
        .map_err(|diagnostics| InspectError::Manifest {
            path: path.clone(),
            diagnostics,
        })?;
    let policy_bytes = squashfs::read_file(squashfs_image, POLICY_FILE)
        .map_err(|_| InspectError::NoPolicy { path: path.clone() })?;
    let policy = limpet_policy::DevicePolicy::from_json(&policy_bytes).map_err(|source| {
        InspectError::Policy {
            path: path.clone(),
            source,
        }
    })?;
    let sbom = decode_attachment(opened.attachment).map_err(|reason| InspectError::Attachment {
        path: path.clone(),
        reason,
    })?;
    let v = header.verity_params();
    Ok(Inspection {
        device: header.device.clone(),
        version: header.version.clone(),
        target: header.target.to_string(),
        format_version: limpet_image::header::FORMAT_VERSION,
        key_id: hex::encode(header.key_id),
        verity: VerityFields {
            data_offset: 0,
            data_size: v.data_blocks * u64::from(v.data_block_size),
            data_blocks: v.data_blocks,
            hash_offset: v.hash_offset,
            root_hash: hex::encode(v.root_hash),
            salt: hex::encode(v.salt),
            data_block_size: v.data_block_size,
            hash_block_size: v.hash_block_size,
            hash_algorithm: v.hash_algorithm.name().to_owned(),
            format: 1,
            superblock: false,
        },
        layout: LayoutFields {
            squashfs_size: layout.squashfs_size,
            tree_size: layout.tree_size,
            header_offset: layout.header_offset,
            attachment_offset: layout.attachment_offset,
            attachment_size: layout.attachment_size,
            total_size: layout.total_size,
        },
        files: files
            .into_iter()
            .map(|f| FileEntry {
                path: f.path,
                size: f.size,
                mode: format!("{:04o}", f.mode),
                sha256: hex::encode(f.sha256),
            })
            .collect(),
        tasks: manifest.tasks.clone(),
        sbom_components: sbom["components"].as_array().map_or(0, Vec::len),
        sbom,
        manifest,
        policy,
        path,
    })
}

/// The SBOM JSON from the slot's attachment.
pub fn decode_attachment(attachment: &[u8]) -> Result<serde_json::Value, String> {
    let json =
        zstd::bulk::decompress(attachment, MAX_ATTACHMENT_JSON).map_err(|e| e.to_string())?;
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}
