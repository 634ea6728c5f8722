//! The `data` partition's filesystem, made at build time: an empty ext4 that PID 1 mounts
//! `nosuid,nodev,noexec` on `/data`. The device carries no mkfs: a device that formatted
//! its own storage would need one more program that writes raw block devices.
//!
//! Rules this module keeps:
//! - reproducible: the UUID and the directory hash seed are derived from the image, and
//!   every timestamp is SOURCE_DATE_EPOCH (`E2FSPROGS_FAKE_TIME`);
//! - no reserved blocks (no root user writes there), 256-byte inodes, a journal (power
//!   cuts are the normal way a device stops).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors making the filesystem.
#[derive(Debug, thiserror::Error)]
pub enum DataFsError {
    /// `mke2fs` could not be started (e2fsprogs is not installed).
    #[error("cannot run mke2fs (install e2fsprogs)")]
    Spawn {
        /// Why starting it failed.
        source: std::io::Error,
    },
    /// `mke2fs` ended with a failure status.
    #[error("mke2fs failed on {path}: {stderr}")]
    Mkfs {
        /// The file it was formatting.
        path: PathBuf,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// The filesystem's file could not be created or sized.
    #[error("cannot create {path}")]
    Create {
        /// The file's path.
        path: PathBuf,
        /// Why creating or sizing it failed.
        source: std::io::Error,
    },
}

/// Makes an empty ext4 of `size` bytes in the file `path` (created or truncated).
pub fn make(path: &Path, size: u64, uuid: &str, epoch: u32) -> Result<(), DataFsError> {
    let file = std::fs::File::create(path).map_err(|source| DataFsError::Create {
        path: path.to_owned(),
        source,
    })?;
    file.set_len(size).map_err(|source| DataFsError::Create {
        path: path.to_owned(),
        source,
    })?;
    drop(file);
    let output = Command::new("mke2fs")
        .args([
            "-t", "ext4", "-F", "-q", "-L", "data", "-m", "0", "-I", "256", "-b", "4096",
        ])
        .args(["-U", uuid])
        .arg("-E")
        .arg(format!(
            "root_owner=0:0,hash_seed={uuid},lazy_itable_init=0,lazy_journal_init=0,nodiscard"
        ))
        .arg(path)
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .env("MKE2FS_DEVICE_SECTSIZE", "512")
        .output()
        .map_err(|source| DataFsError::Spawn { source })?;
    if !output.status.success() {
        return Err(DataFsError::Mkfs {
            path: path.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_filesystems_from_the_same_inputs_are_identical() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.ext4");
        let b = dir.path().join("b.ext4");
        let uuid = crate::build::ids::uuid_string(&[7; 16]);
        make(&a, 8 * 1024 * 1024, &uuid, 1_700_000_000).unwrap();
        make(&b, 8 * 1024 * 1024, &uuid, 1_700_000_000).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let out = Command::new("dumpe2fs").arg("-h").arg(&a).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&uuid), "{text}");
        assert!(text.contains("Filesystem volume name:   data"), "{text}");
        assert!(text.contains("Reserved block count:     0"), "{text}");
    }

    /// The template PID 1 restores a wiped partition from gives back the very filesystem,
    /// and is a few KiB for the default 64 MiB partition.
    #[test]
    #[allow(clippy::cast_possible_truncation)] // offsets in a test image of a few MiB
    fn the_template_of_the_empty_filesystem_restores_it_exactly() {
        use limpet_image::datafs::{Encoder, Template, HELD_BACK};
        let dir = tempfile::tempdir().unwrap();
        let fs = dir.path().join("fs.ext4");
        let uuid = crate::build::ids::uuid_string(&[9; 16]);
        make(&fs, 64 * 1024 * 1024, &uuid, 1_700_000_000).unwrap();
        let image = std::fs::read(&fs).unwrap();
        let mut encoder = Encoder::new();
        for chunk in image.chunks(64 * 1024) {
            encoder.push(chunk);
        }
        let bytes = encoder.finish();
        assert!(bytes.len() < 8 * 1024, "{} bytes", bytes.len());
        let template = Template::parse(&bytes).unwrap();
        let mut disk = vec![0u8; image.len()];
        for (offset, data) in template.runs_except_held_back() {
            disk[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        }
        // Without the held-back sector there is no ext4 magic (0xEF53 at byte 1080).
        assert_eq!(&disk[1080..1082], &[0, 0]);
        disk[1024..1536].copy_from_slice(&template.held_back());
        assert_eq!(&image[1080..1082], &[0x53, 0xef]);
        assert!(
            disk == image,
            "the restored filesystem differs from mke2fs's"
        );
        assert_eq!(HELD_BACK, 1024..1536);
    }
}
