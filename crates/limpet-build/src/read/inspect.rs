//! `limpet inspect`: what a slot holds, from the slot alone.
//!
//! Rules this module keeps: nothing here checks the signature or the hash tree (that is
//! [`verify`](crate::read::verify)'s job), so every field read from the header is as the
//! header claims it; the SBOM attachment is decompressed to at most 64 MiB.
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
    /// The slot could not be found or read.
    #[error(transparent)]
    File(#[from] ImageFileError),
    /// The slot's layout or header does not decode.
    #[error("{path}: not a valid slot")]
    Slot {
        /// The slot's file, for the message.
        path: String,
        /// What is wrong with it.
        source: slot::SlotError,
    },
    /// The squashfs in the slot cannot be listed.
    #[error("{path}: cannot read the squashfs")]
    Squashfs {
        /// The slot's file, for the message.
        path: String,
        /// What is wrong with the squashfs.
        source: squashfs::SquashfsError,
    },
    /// The squashfs has no canonical manifest file.
    #[error("{path}: the squashfs has no {MANIFEST_FILE}")]
    NoManifest {
        /// The slot's file, for the message.
        path: String,
    },
    /// The canonical manifest in the slot does not parse or validate.
    #[error("{path}: the canonical manifest in the slot does not parse:\n{diagnostics}")]
    Manifest {
        /// The slot's file, for the message.
        path: String,
        /// Every problem found in the manifest.
        diagnostics: limpet_manifest::Diagnostics,
    },
    /// The squashfs has no compiled policy file, or it cannot be read.
    #[error("{path}: the squashfs has no readable {POLICY_FILE}")]
    NoPolicy {
        /// The slot's file, for the message.
        path: String,
    },
    /// The compiled policy in the slot is not the policy JSON this version reads.
    #[error("{path}: the compiled policy in the slot does not parse")]
    Policy {
        /// The slot's file, for the message.
        path: String,
        /// What is wrong with the JSON.
        source: limpet_policy::PolicyError,
    },
    /// The SBOM attachment does not decompress or is not JSON.
    #[error("{path}: the SBOM attachment is not zstd-compressed JSON: {reason}")]
    Attachment {
        /// The slot's file, for the message.
        path: String,
        /// What the decompressor or the JSON parser reported.
        reason: String,
    },
}

/// Everything `limpet inspect` reports.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// The slot's file, as [`SlotBytes::path`] gives it.
    pub path: String,
    /// The device name from the signed header.
    pub device: String,
    /// The image version from the signed header.
    pub version: String,
    /// The target (board) name from the signed header.
    pub target: String,
    /// The header format version this build of Limpet reads.
    pub format_version: u32,
    /// The id of the key the header claims to be signed by, hex (not checked here).
    pub key_id: String,
    /// The dm-verity parameters, for `veritysetup`.
    pub verity: VerityFields,
    /// Where each part of the slot lies.
    pub layout: LayoutFields,
    /// What the boot loader starts: the kernel, the initramfs and the command line.
    pub boot: BootFields,
    /// Every file of the squashfs.
    pub files: Vec<FileEntry>,
    /// The tasks of the manifest inside the slot.
    pub tasks: Vec<limpet_manifest::Task>,
    /// The canonical manifest inside the slot, parsed.
    pub manifest: limpet_manifest::Manifest,
    /// The compiled policy inside the slot.
    pub policy: limpet_policy::DevicePolicy,
    /// The SBOM from the attachment, as JSON; left out of the serialized report, which
    /// gives only its component count.
    #[serde(skip)]
    pub sbom: serde_json::Value,
    /// Number of components the SBOM lists.
    pub sbom_components: usize,
}

/// dm-verity parameters, as veritysetup names them.
#[derive(Debug, Serialize)]
pub struct VerityFields {
    /// Offset of the data (the squashfs) in the slot, bytes; always 0.
    pub data_offset: u64,
    /// Size of the data the tree covers, bytes: `data_blocks × data_block_size`.
    pub data_size: u64,
    /// Number of data blocks (`--data-blocks`).
    pub data_blocks: u64,
    /// Offset of the hash tree in the slot, bytes (`--hash-offset`).
    pub hash_offset: u64,
    /// The root hash the header signs, hex.
    pub root_hash: String,
    /// The salt, hex (`--salt`).
    pub salt: String,
    /// Size of a data block, bytes.
    pub data_block_size: u32,
    /// Size of a hash block, bytes.
    pub hash_block_size: u32,
    /// The hash algorithm's name as veritysetup takes it (`sha256`).
    pub hash_algorithm: String,
    /// The veritysetup format (`--format`); always 1.
    pub format: u32,
    /// Whether the tree has a veritysetup superblock; always false (`--no-superblock`).
    pub superblock: bool,
}

/// Where each part of the slot lies.
#[derive(Debug, Serialize)]
pub struct LayoutFields {
    /// Size of the squashfs (its `bytes_used`), bytes; it starts the slot.
    pub squashfs_size: u64,
    /// Size of the dm-verity hash tree, bytes; it starts at the padded end of the squashfs.
    pub tree_size: u64,
    /// Offset of the signed header in the slot, bytes.
    pub header_offset: u64,
    /// Offset of the attachment (the zstd-compressed SBOM) in the slot, bytes.
    pub attachment_offset: u64,
    /// Size of the attachment, bytes.
    pub attachment_size: u64,
    /// Size of the whole slot, bytes, including the initramfs's zero padding.
    pub total_size: u64,
}

/// The boot files the header signs.
#[derive(Debug, Serialize)]
pub struct BootFields {
    /// The kernel image.
    pub kernel: PartFields,
    /// The initramfs holding PID 1.
    pub initramfs: PartFields,
    /// The kernel command line.
    pub cmdline: String,
}

/// Where a part after the header lies, and its signed hash.
#[derive(Debug, Serialize)]
pub struct PartFields {
    /// Offset in the slot, bytes.
    pub offset: u64,
    /// Size, bytes.
    pub size: u64,
    /// sha256, hex.
    pub sha256: String,
}

impl From<limpet_image::header::Part> for PartFields {
    fn from(p: limpet_image::header::Part) -> Self {
        PartFields {
            offset: p.offset,
            size: p.size,
            sha256: hex::encode(p.sha256),
        }
    }
}

/// One file of the squashfs.
#[derive(Debug, Serialize)]
pub struct FileEntry {
    /// The file's path inside the squashfs.
    pub path: String,
    /// Its size, bytes.
    pub size: u64,
    /// Its permission bits, four octal digits.
    pub mode: String,
    /// The sha256 of its contents, hex.
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
        boot: BootFields {
            kernel: header.kernel.into(),
            initramfs: header.initramfs.into(),
            cmdline: header.cmdline.clone(),
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
