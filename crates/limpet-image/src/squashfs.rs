//! The slot's squashfs: a flat directory of files, written with backhand.
//!
//! Rules:
//! - zstd compression at level [`ZSTD_LEVEL`], 128 KiB blocks, no compression options
//!   block, no xattrs, duplicate files stored once.
//! - The root directory is 0755 root:root; every file is root:root with the mode given and
//!   the one `mtime` given (the root directory's own mtime is 0: backhand offers no
//!   setter for it). Files are sorted by name.
//! - Only flat names: no `/`, not `.` or `..`, no NUL, unique. [`list`] refuses images
//!   holding anything but files in the root directory.
//! - The image is padded with zeros to 4 KiB, as mksquashfs does; `bytes_used` in the
//!   superblock excludes the padding.

use std::io::{Cursor, Read};

use backhand::compression::{CompressionOptions, Compressor, Zstd};
use backhand::{FilesystemCompressor, FilesystemReader, FilesystemWriter, InnerNode, NodeHeader};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// zstd level of the data blocks. The kernel decompresses every level at the same speed,
/// but a device applying a delta (`limpet-delta`) compresses each changed block again at
/// this level: 9 is the highest whose compression context for a 128 KiB block (1.1 MiB)
/// keeps that within the 2 MiB budget. Level 19 makes slots about 9% smaller and needs
/// 2.8 MiB (`BENCHMARKS.md` section 5).
pub const ZSTD_LEVEL: u32 = 9;

/// Data block size.
pub const BLOCK_SIZE: u32 = 128 * 1024;

/// A file to put in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Flat name: `manifest.toml`, `hello`.
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits (at most 0o7777).
    pub mode: u16,
}

/// A file found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Name.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u16,
    /// sha256 of the contents.
    pub sha256: [u8; 32],
}

/// Why an image cannot be built or read.
#[derive(Debug, Error)]
pub enum SquashfsError {
    /// A name is not a flat file name.
    #[error("invalid squashfs entry name {path:?}: {reason}")]
    Path {
        /// The name.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A name is given twice.
    #[error("squashfs entry {path:?} given twice")]
    Duplicate {
        /// The name.
        path: String,
    },
    /// A mode has bits other than permissions.
    #[error("mode {mode:o} of {path:?} has bits outside 0o7777")]
    Mode {
        /// The name.
        path: String,
        /// The mode.
        mode: u16,
    },
    /// The image holds something other than files in its root.
    #[error("squashfs node {path:?} is not a file in the root directory")]
    NotFlat {
        /// The node's path.
        path: String,
    },
    /// No file has this name.
    #[error("no file {path:?} in the squashfs")]
    NotFound {
        /// The name.
        path: String,
    },
    /// backhand failed.
    #[error("squashfs {action} failed")]
    Backhand {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: backhand::BackhandError,
    },
    /// Reading a file's contents failed.
    #[error("cannot read {path:?} from the squashfs")]
    Read {
        /// The name.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn check_name(path: &str) -> Result<(), SquashfsError> {
    let bad = |reason| SquashfsError::Path {
        path: path.to_owned(),
        reason,
    };
    if path.is_empty() || path == "." || path == ".." {
        return Err(bad("empty, . or .."));
    }
    if path.contains('/') {
        return Err(bad("contains /"));
    }
    if path.contains('\0') {
        return Err(bad("contains NUL"));
    }
    if path.len() > 255 {
        return Err(bad("longer than 255 bytes"));
    }
    Ok(())
}

fn backhand(action: &'static str) -> impl FnOnce(backhand::BackhandError) -> SquashfsError {
    move |source| SquashfsError::Backhand { action, source }
}

/// Builds an image of `entries`, every file with modification time `mtime`.
pub fn build(entries: &[Entry], mtime: u32) -> Result<Vec<u8>, SquashfsError> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for pair in sorted.windows(2) {
        if pair[0].path == pair[1].path {
            return Err(SquashfsError::Duplicate {
                path: pair[0].path.clone(),
            });
        }
    }
    let mut fs = FilesystemWriter::default();
    fs.set_time(mtime);
    fs.set_block_size(BLOCK_SIZE);
    fs.set_only_root_id();
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    fs.set_emit_compression_options(false);
    let compressor = FilesystemCompressor::new(
        Compressor::Zstd,
        Some(CompressionOptions::Zstd(Zstd {
            compression_level: ZSTD_LEVEL,
        })),
    )
    .map_err(backhand("configuration"))?;
    fs.set_compressor(compressor);
    for e in sorted {
        check_name(&e.path)?;
        if e.mode & !0o7777 != 0 {
            return Err(SquashfsError::Mode {
                path: e.path.clone(),
                mode: e.mode,
            });
        }
        let header = NodeHeader {
            permissions: e.mode,
            uid: 0,
            gid: 0,
            mtime,
        };
        fs.push_file(
            Cursor::new(e.data.as_slice()),
            format!("/{}", e.path),
            header,
        )
        .map_err(backhand("adding a file"))?;
    }
    let mut out = Cursor::new(Vec::new());
    fs.write(&mut out).map_err(backhand("writing"))?;
    Ok(out.into_inner())
}

fn reader(image: &[u8]) -> Result<FilesystemReader<'_>, SquashfsError> {
    FilesystemReader::from_reader(Cursor::new(image)).map_err(backhand("opening"))
}

/// Calls `f` with each file's name, mode and contents, in image order.
fn for_each_file(
    image: &[u8],
    mut f: impl FnMut(&str, u16, &mut dyn Read) -> Result<bool, SquashfsError>,
) -> Result<(), SquashfsError> {
    let fs = reader(image)?;
    for node in fs.files() {
        let full = node.fullpath.to_string_lossy();
        let name = full.strip_prefix('/').unwrap_or(&full);
        match &node.inner {
            InnerNode::Dir(_) if name.is_empty() => {}
            InnerNode::File(file) if !name.contains('/') => {
                let mut r = fs.file(file).reader();
                if !f(name, node.header.permissions, &mut r)? {
                    return Ok(());
                }
            }
            _ => {
                return Err(SquashfsError::NotFlat {
                    path: full.into_owned(),
                })
            }
        }
    }
    Ok(())
}

/// Lists the files of a flat image.
pub fn list(image: &[u8]) -> Result<Vec<FileInfo>, SquashfsError> {
    let mut files = Vec::new();
    for_each_file(image, |name, mode, r| {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = r.read(&mut buf).map_err(|source| SquashfsError::Read {
                path: name.to_owned(),
                source,
            })?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        files.push(FileInfo {
            path: name.to_owned(),
            size,
            mode,
            sha256: h.finalize().into(),
        });
        Ok(true)
    })?;
    Ok(files)
}

/// Reads one file of a flat image.
pub fn read_file(image: &[u8], path: &str) -> Result<Vec<u8>, SquashfsError> {
    let mut found = None;
    for_each_file(image, |name, _, r| {
        if name != path {
            return Ok(true);
        }
        let mut data = Vec::new();
        r.read_to_end(&mut data)
            .map_err(|source| SquashfsError::Read {
                path: name.to_owned(),
                source,
            })?;
        found = Some(data);
        Ok(false)
    })?;
    found.ok_or_else(|| SquashfsError::NotFound {
        path: path.to_owned(),
    })
}
