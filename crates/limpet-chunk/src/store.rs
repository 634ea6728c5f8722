//! The chunk store: static files a plain HTTP server (or a TUF repository's target
//! directory) can serve.
//!
//! Layout: `<store>/chunks/<first 2 hex>/<sha256 hex>.zst`, one zstd-compressed chunk per
//! file, named by the sha256 of its UNCOMPRESSED bytes.
//!
//! Rules:
//! - [`publish`] only writes chunks that are not already present and valid; every write
//!   goes to a temporary file in the target directory, is synced, then renamed into place,
//!   so a reader never sees a half-written chunk.
//! - A chunk file already present is decompressed and re-hashed before it is trusted;
//!   a bad one is replaced.
//! - Publishing needs no earlier version: there is no per-version-pair work.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::chunker::Chunker;
use crate::id::ChunkId;
use crate::index::{ChunkEntry, Index, IndexError, MAX_PAYLOAD_LEN};
use crate::params::ChunkParams;

/// zstd level of the chunk files: publishing is done once, on the host; the device
/// decompresses every level at the same speed and with the same memory.
pub const DEFAULT_LEVEL: i32 = 19;

/// How to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishOptions {
    /// Chunk sizes.
    pub params: ChunkParams,
    /// zstd level of new chunk files.
    pub level: i32,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            params: ChunkParams::DEFAULT,
            level: DEFAULT_LEVEL,
        }
    }
}

/// What [`publish_with`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The payload's index.
    pub index: Index,
    /// Chunk files written (new to the store).
    pub chunks_written: usize,
    /// Bytes of chunk files written.
    pub bytes_written: u64,
}

/// Why publishing failed.
#[derive(Debug, Error)]
pub enum PublishError {
    /// The payload cannot be read.
    #[error("cannot read payload {path}")]
    Payload {
        /// The payload.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The payload is over 4 GiB.
    #[error("payload {path} is {len} bytes, over the 4 GiB limit")]
    TooLarge {
        /// The payload.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// A chunk file cannot be written.
    #[error("cannot write chunk file {path}")]
    Write {
        /// The chunk file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Compressed chunk too large for the index (cannot happen with zstd).
    #[error("chunk at offset {offset} compresses to {len} bytes, over zstd's bound")]
    Compressed {
        /// The chunk's offset.
        offset: u64,
        /// Compressed length.
        len: u64,
    },
    /// The index would be invalid.
    #[error("building the index of {path}")]
    Index {
        /// The payload.
        path: PathBuf,
        /// The cause.
        #[source]
        source: IndexError,
    },
}

/// Publishes `payload` into `store` with the default options; returns its index.
pub fn publish(payload: &Path, store: &Path) -> Result<Index, PublishError> {
    publish_with(payload, store, PublishOptions::default()).map(|p| p.index)
}

/// Publishes `payload` into `store`: writes the chunks the store lacks and returns the
/// payload's index.
pub fn publish_with(
    payload: &Path,
    store: &Path,
    options: PublishOptions,
) -> Result<Published, PublishError> {
    let read_err = |source| PublishError::Payload {
        path: payload.to_owned(),
        source,
    };
    let file = File::open(payload).map_err(read_err)?;
    let len = crate::io::ReadAt::size(&file).map_err(read_err)?;
    if len > MAX_PAYLOAD_LEN {
        return Err(PublishError::TooLarge {
            path: payload.to_owned(),
            len,
        });
    }
    let mut chunker = Chunker::new(&file, options.params).map_err(read_err)?;
    let mut whole = Sha256::new();
    let mut chunks = Vec::new();
    let mut chunks_written = 0;
    let mut bytes_written = 0;
    while let Some((offset, data)) = chunker.next_chunk().map_err(read_err)? {
        whole.update(data);
        let id = ChunkId::of(data);
        let path = store.join(id.store_path());
        let compressed = match existing_len(&path, &id, data.len()) {
            Some(n) => n,
            None => {
                let n = write_chunk(&path, data, options.level)?;
                chunks_written += 1;
                bytes_written += n;
                n
            }
        };
        // A chunk is at most `max` <= 1 MiB long; `Index::new` refuses anything longer.
        let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let compressed_length =
            u32::try_from(compressed).map_err(|_| PublishError::Compressed {
                offset,
                len: compressed,
            })?;
        chunks.push(ChunkEntry {
            offset,
            length,
            compressed_length,
            id,
        });
    }
    let index =
        Index::new(options.params, len, whole.finalize().into(), chunks).map_err(|source| {
            PublishError::Index {
                path: payload.to_owned(),
                source,
            }
        })?;
    Ok(Published {
        index,
        chunks_written,
        bytes_written,
    })
}

/// The length of a valid chunk file already in the store, or `None` to (re)write it.
fn existing_len(path: &Path, id: &ChunkId, len: usize) -> Option<u64> {
    let blob = fs::read(path).ok()?;
    let data = zstd::bulk::decompress(&blob, len).ok()?;
    (data.len() == len && ChunkId::of(&data) == *id).then_some(blob.len() as u64)
}

/// Compresses `data` into `path` atomically; returns the compressed length.
fn write_chunk(path: &Path, data: &[u8], level: i32) -> Result<u64, PublishError> {
    let err = |source| PublishError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .ok_or_else(|| err(io::Error::other("chunk path has no parent")))?;
    fs::create_dir_all(dir).map_err(err)?;
    let blob = zstd::bulk::compress(data, level).map_err(err)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(&blob).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(blob.len() as u64)
}

/// Reads a chunk file from a local store, refusing one longer than `cap` bytes: a fetcher
/// for [`crate::assemble()`] when the store is a directory (tests, `file://` repositories).
pub fn read_chunk(store: &Path, id: &ChunkId, cap: u64) -> io::Result<Vec<u8>> {
    let f = File::open(store.join(id.store_path()))?;
    // One byte over the cap, so the assembler sees an oversized chunk as oversized.
    let limit = cap.saturating_add(1);
    let mut blob = Vec::with_capacity(usize::try_from(limit).map_err(io::Error::other)?);
    f.take(limit).read_to_end(&mut blob)?;
    Ok(blob)
}
