//! Restoring the data partition's empty filesystem after the loader wiped it (owner mode;
//! docs/owner-mode.md): the slot's initramfs carries the build's empty ext4 as a template
//! of its non-zero bytes ([`limpet_image::datafs`], a few KiB); written onto the all-zero
//! partition it makes exactly that filesystem, which PID 1 then mounts as usual.
//!
//! Rules this module keeps:
//! - Only a partition [`limpet_image::datafs::is_unformatted`] calls unformatted is
//!   written: its superblock's first sector all zero, the rest of its first 64 KiB zero or
//!   already the template's. A partition holding anything else is never touched.
//! - Power-fail safe: every byte but the superblock's first sector is written and
//!   fsynced, then that sector, then fsynced again. A power cut before the end leaves that
//!   sector zero (a disk writes a sector whole or not at all), so the next boot finds the
//!   partition unformatted and writes it again; after it, the filesystem is complete.
//! - A partition smaller than the template's filesystem, a missing or damaged template,
//!   or an I/O error is an error and nothing more is written; the caller falls back to
//!   an in-memory `/data`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use limpet_image::datafs::{self, Template, TemplateError, HEAD, HELD_BACK};

/// Why the empty filesystem was not restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The template is not in the initramfs, or cannot be read.
    #[error("cannot read the template {path}")]
    Template {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The template fails its checks.
    #[error("the template {path} is refused")]
    Damaged {
        /// Its path.
        path: PathBuf,
        /// Which check failed.
        source: TemplateError,
    },
    /// The partition cannot hold the template's filesystem.
    #[error("{device} is {size} bytes, the template's filesystem {needed}")]
    TooSmall {
        /// The partition.
        device: PathBuf,
        /// Its size.
        size: u64,
        /// The filesystem's.
        needed: u64,
    },
    /// Reading, writing or syncing the partition failed.
    #[error("{what} {device}")]
    Device {
        /// What was being done.
        what: &'static str,
        /// The partition.
        device: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// Writes the template at `template` (the initramfs's) onto `device` when the partition is
/// unformatted; returns whether it wrote. See the module rules.
pub fn restore(device: &Path, template: &Path) -> Result<bool, RestoreError> {
    let dev_err = |what| {
        move |source| RestoreError::Device {
            what,
            device: device.to_owned(),
            source,
        }
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .open(device)
        .map_err(dev_err("cannot open"))?;
    let mut head = vec![0u8; HEAD];
    debug_assert_eq!(HELD_BACK, 1024..1536);
    file.read_exact(&mut head).map_err(dev_err("cannot read"))?;
    // (1024..1536, within the 64 KiB read.)
    if head[1024..1536].iter().any(|&b| b != 0) {
        // The usual boot: a filesystem is there (its superblock's first sector).
        return Ok(false);
    }
    let bytes = std::fs::read(template).map_err(|source| RestoreError::Template {
        path: template.to_owned(),
        source,
    })?;
    let parsed = Template::parse(&bytes).map_err(|source| RestoreError::Damaged {
        path: template.to_owned(),
        source,
    })?;
    if !datafs::is_unformatted(&head, &parsed) {
        return Ok(false);
    }
    let size = std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))
        .map_err(dev_err("cannot size"))?;
    if size < parsed.fs_size() {
        return Err(RestoreError::TooSmall {
            device: device.to_owned(),
            size,
            needed: parsed.fs_size(),
        });
    }
    for (offset, data) in parsed.runs_except_held_back() {
        file.write_all_at(data, offset)
            .map_err(dev_err("cannot write"))?;
    }
    file.sync_all().map_err(dev_err("cannot sync"))?;
    file.write_all_at(&parsed.held_back(), HELD_BACK.start)
        .map_err(dev_err("cannot write"))?;
    file.sync_all().map_err(dev_err("cannot sync"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template of a small "filesystem" with bytes in and around the held-back sector.
    fn template() -> (Vec<u8>, Vec<u8>) {
        let mut img = vec![0u8; 128 * 1024];
        img[1024..1100].fill(0x53);
        img[1536..1600].fill(1);
        img[70_000..70_100].fill(2);
        let mut e = datafs::Encoder::new();
        e.push(&img);
        (img, e.finish())
    }

    #[test]
    fn a_wiped_partition_gets_the_filesystem_and_a_formatted_one_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (img, tpl) = template();
        let t = dir.path().join("tpl");
        std::fs::write(&t, &tpl).unwrap();
        let dev = dir.path().join("data");
        std::fs::write(&dev, vec![0u8; 192 * 1024]).unwrap();
        assert!(restore(&dev, &t).unwrap());
        let disk = std::fs::read(&dev).unwrap();
        assert_eq!(&disk[..img.len()], &img[..]);
        assert!(disk[img.len()..].iter().all(|&b| b == 0));
        // Formatted now: a second boot writes nothing.
        assert!(!restore(&dev, &t).unwrap());
        // A partition holding something else in its head is never written.
        let mut other = vec![0u8; 192 * 1024];
        other[8192] = 9;
        std::fs::write(&dev, &other).unwrap();
        assert!(!restore(&dev, &t).unwrap());
        assert_eq!(std::fs::read(&dev).unwrap(), other);
    }

    /// A power cut after the first pass (everything but the held-back sector): the next
    /// boot finds it unformatted and finishes.
    #[test]
    #[allow(clippy::cast_possible_truncation)] // offsets in a test image of a few MiB
    fn an_interrupted_restore_is_done_again() {
        let dir = tempfile::tempdir().unwrap();
        let (img, tpl) = template();
        let t = dir.path().join("tpl");
        std::fs::write(&t, &tpl).unwrap();
        let mut half = vec![0u8; 192 * 1024];
        for (offset, data) in Template::parse(&tpl).unwrap().runs_except_held_back() {
            half[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        }
        let dev = dir.path().join("data");
        std::fs::write(&dev, &half).unwrap();
        assert!(restore(&dev, &t).unwrap());
        assert_eq!(&std::fs::read(&dev).unwrap()[..img.len()], &img[..]);
    }

    #[test]
    fn a_small_partition_or_a_damaged_template_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut tpl) = template();
        let t = dir.path().join("tpl");
        std::fs::write(&t, &tpl).unwrap();
        let dev = dir.path().join("data");
        std::fs::write(&dev, vec![0u8; 100 * 1024]).unwrap();
        let e = restore(&dev, &t).unwrap_err();
        assert!(
            matches!(
                e,
                RestoreError::TooSmall {
                    size: 102_400,
                    needed: 131_072,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(std::fs::read(&dev).unwrap().iter().all(|&b| b == 0));
        tpl[40] ^= 0xff;
        std::fs::write(&t, &tpl).unwrap();
        std::fs::write(&dev, vec![0u8; 192 * 1024]).unwrap();
        let e = restore(&dev, &t).unwrap_err();
        assert!(
            matches!(
                e,
                RestoreError::Damaged {
                    source: TemplateError::Checksum,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(std::fs::read(&dev).unwrap().iter().all(|&b| b == 0));
        let e = restore(&dev, &dir.path().join("absent")).unwrap_err();
        assert!(matches!(e, RestoreError::Template { .. }), "{e:?}");
    }
}
