//! The chunk index of one payload, and its binary encoding (format version 1).
//!
//! Rules:
//! - Parsing checks everything before anything is allocated for the chunk list: exact
//!   byte length for the declared count, contiguous offsets from 0, lengths in
//!   `1..=max`, compressed lengths in `1..=zstd_compress_bound(length)`, lengths summing
//!   to the total, and a total of at most [`MAX_PAYLOAD_LEN`] (4 GiB).
//! - An [`Index`] can only be made by parsing or by publishing, so every `Index` in hand
//!   is valid.
//! - The encoding is canonical: `to_bytes(from_bytes(b)) == b`.

use thiserror::Error;

use crate::id::ChunkId;
use crate::params::{ChunkParams, ParamsError};

/// Largest payload an index may describe: 4 GiB.
pub const MAX_PAYLOAD_LEN: u64 = 4 * 1024 * 1024 * 1024;

/// First 8 bytes of an encoded index.
pub const MAGIC: [u8; 8] = *b"LIMPETCX";
/// The only format version.
pub const FORMAT_VERSION: u32 = 1;
/// Chunker code 1: FastCDC 2020, normalization level 1, gear seed 0.
pub const CHUNKER_FASTCDC_2020: u32 = 1;
/// Compression code 1: each chunk file is one or more zstd frames.
pub const COMPRESSION_ZSTD: u32 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 80;
/// Size of one chunk record.
pub const ENTRY_LEN: usize = 48;

/// One chunk of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry {
    /// Offset of the chunk in the payload.
    pub offset: u64,
    /// Uncompressed length.
    pub length: u32,
    /// Length of the chunk's file in the store: the most the device downloads for it.
    pub compressed_length: u32,
    /// sha256 of the uncompressed bytes.
    pub id: ChunkId,
}

/// A validated chunk index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    params: ChunkParams,
    total_length: u64,
    payload_sha256: [u8; 32],
    chunks: Vec<ChunkEntry>,
}

/// Why an index is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IndexError {
    /// Shorter than the header.
    #[error("chunk index is {len} bytes, shorter than its {HEADER_LEN}-byte header")]
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// Wrong magic.
    #[error("not a chunk index (bad magic)")]
    Magic,
    /// Unknown format version.
    #[error("chunk index format version {found} is not supported (only {FORMAT_VERSION})")]
    Version {
        /// Version found.
        found: u32,
    },
    /// Unknown chunker or compression code, or non-zero reserved field.
    #[error("chunk index field {field} has unsupported value {found}")]
    Unsupported {
        /// Field name.
        field: &'static str,
        /// Value found.
        found: u32,
    },
    /// Bad chunk sizes.
    #[error("chunk index parameters")]
    Params(#[source] ParamsError),
    /// Payload over 4 GiB.
    #[error("payload length {total} is over the 4 GiB limit")]
    TotalTooLarge {
        /// Declared length.
        total: u64,
    },
    /// More chunks than a u32 counts (only 1-byte chunks over 4 GiB could do it).
    #[error("chunk index has more than u32::MAX chunks")]
    TooManyChunks,
    /// Byte length does not match the declared chunk count.
    #[error("chunk index of {count} chunks must be {expected} bytes, found {found}")]
    Size {
        /// Declared count.
        count: u32,
        /// Length it implies.
        expected: u64,
        /// Length given.
        found: usize,
    },
    /// A chunk does not start where the previous ended.
    #[error("chunk {index} starts at {found}, expected {expected}")]
    Offset {
        /// Position in the index.
        index: usize,
        /// Where it should start.
        expected: u64,
        /// Where it claims to start.
        found: u64,
    },
    /// A chunk's length is 0 or above `max`.
    #[error("chunk {index} at offset {offset} has length {length}, outside 1..={max}")]
    Length {
        /// Position in the index.
        index: usize,
        /// Its offset.
        offset: u64,
        /// Its length.
        length: u32,
        /// The index's `max`.
        max: u32,
    },
    /// A chunk's compressed length is 0 or above zstd's bound for its length.
    #[error(
        "chunk {index} at offset {offset} has compressed length {compressed}, outside 1..={cap}"
    )]
    CompressedLength {
        /// Position in the index.
        index: usize,
        /// Its offset.
        offset: u64,
        /// Declared compressed length.
        compressed: u32,
        /// zstd's bound for the chunk's length.
        cap: u64,
    },
    /// Chunk lengths do not add up to the total.
    #[error("chunks cover {covered} bytes, payload length is {total}")]
    Coverage {
        /// Sum of lengths.
        covered: u64,
        /// Declared total.
        total: u64,
    },
}

/// Most bytes zstd may need to store `len` bytes (`ZSTD_COMPRESSBOUND`).
pub fn compress_bound(len: u32) -> u64 {
    let s = u64::from(len);
    let small = if s < 128 * 1024 {
        (128 * 1024 - s) >> 11
    } else {
        0
    };
    s + (s >> 8) + small
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Index {
    /// Builds an index from its parts, with the same checks as [`Index::from_bytes`].
    pub(crate) fn new(
        params: ChunkParams,
        total_length: u64,
        payload_sha256: [u8; 32],
        chunks: Vec<ChunkEntry>,
    ) -> Result<Self, IndexError> {
        if total_length > MAX_PAYLOAD_LEN {
            return Err(IndexError::TotalTooLarge {
                total: total_length,
            });
        }
        if u32::try_from(chunks.len()).is_err() {
            return Err(IndexError::TooManyChunks);
        }
        let mut next = 0u64;
        for (index, c) in chunks.iter().enumerate() {
            check_entry(index, c, next, params)?;
            next = c.offset + u64::from(c.length);
        }
        if next != total_length {
            return Err(IndexError::Coverage {
                covered: next,
                total: total_length,
            });
        }
        Ok(Self {
            params,
            total_length,
            payload_sha256,
            chunks,
        })
    }

    /// Parses and validates an encoded index.
    pub fn from_bytes(b: &[u8]) -> Result<Self, IndexError> {
        if b.len() < HEADER_LEN {
            return Err(IndexError::TooShort { len: b.len() });
        }
        if b[0..8] != MAGIC {
            return Err(IndexError::Magic);
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(IndexError::Version { found: version });
        }
        for (field, at, want) in [
            ("chunker", 12, CHUNKER_FASTCDC_2020),
            ("compression", 28, COMPRESSION_ZSTD),
            ("reserved", 76, 0),
        ] {
            let found = u32_at(b, at);
            if found != want {
                return Err(IndexError::Unsupported { field, found });
            }
        }
        let params = ChunkParams::new(u32_at(b, 16), u32_at(b, 20), u32_at(b, 24))
            .map_err(IndexError::Params)?;
        let total_length = u64_at(b, 32);
        if total_length > MAX_PAYLOAD_LEN {
            return Err(IndexError::TotalTooLarge {
                total: total_length,
            });
        }
        let mut payload_sha256 = [0u8; 32];
        payload_sha256.copy_from_slice(&b[40..72]);
        let count = u32_at(b, 72);
        let expected = HEADER_LEN as u64 + u64::from(count) * ENTRY_LEN as u64;
        if expected != b.len() as u64 {
            return Err(IndexError::Size {
                count,
                expected,
                found: b.len(),
            });
        }
        let chunks = b[HEADER_LEN..]
            .chunks_exact(ENTRY_LEN)
            .map(|e| {
                let mut id = [0u8; 32];
                id.copy_from_slice(&e[16..48]);
                ChunkEntry {
                    offset: u64_at(e, 0),
                    length: u32_at(e, 8),
                    compressed_length: u32_at(e, 12),
                    id: ChunkId(id),
                }
            })
            .collect();
        Self::new(params, total_length, payload_sha256, chunks)
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * self.chunks.len());
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&CHUNKER_FASTCDC_2020.to_le_bytes());
        b.extend_from_slice(&self.params.min().to_le_bytes());
        b.extend_from_slice(&self.params.avg().to_le_bytes());
        b.extend_from_slice(&self.params.max().to_le_bytes());
        b.extend_from_slice(&COMPRESSION_ZSTD.to_le_bytes());
        b.extend_from_slice(&self.total_length.to_le_bytes());
        b.extend_from_slice(&self.payload_sha256);
        // `new` refuses more than u32::MAX chunks, so this never saturates.
        let count = u32::try_from(self.chunks.len()).unwrap_or(u32::MAX);
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for c in &self.chunks {
            b.extend_from_slice(&c.offset.to_le_bytes());
            b.extend_from_slice(&c.length.to_le_bytes());
            b.extend_from_slice(&c.compressed_length.to_le_bytes());
            b.extend_from_slice(&c.id.0);
        }
        b
    }

    /// Chunk sizes the payload was cut with (and the seeds must be cut with).
    pub fn params(&self) -> ChunkParams {
        self.params
    }

    /// Payload length.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// sha256 of the whole payload.
    pub fn payload_sha256(&self) -> [u8; 32] {
        self.payload_sha256
    }

    /// The chunks, in payload order.
    pub fn chunks(&self) -> &[ChunkEntry] {
        &self.chunks
    }

    /// Sum of the chunks' compressed lengths: the download without any seed.
    pub fn compressed_length(&self) -> u64 {
        self.chunks
            .iter()
            .map(|c| u64::from(c.compressed_length))
            .sum()
    }
}

fn check_entry(
    index: usize,
    c: &ChunkEntry,
    expected: u64,
    params: ChunkParams,
) -> Result<(), IndexError> {
    if c.offset != expected {
        return Err(IndexError::Offset {
            index,
            expected,
            found: c.offset,
        });
    }
    if c.length == 0 || c.length > params.max() {
        return Err(IndexError::Length {
            index,
            offset: c.offset,
            length: c.length,
            max: params.max(),
        });
    }
    let cap = compress_bound(c.length);
    if c.compressed_length == 0 || u64::from(c.compressed_length) > cap {
        return Err(IndexError::CompressedLength {
            index,
            offset: c.offset,
            compressed: c.compressed_length,
            cap,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compress_bound_matches_zstd() {
        for n in [0u32, 1, 100, 4096, 65536, 131_072, 1 << 20] {
            let ours = compress_bound(n);
            let theirs = zstd::zstd_safe::compress_bound(usize::try_from(n).unwrap());
            assert_eq!(ours, theirs as u64, "n={n}");
        }
    }

    #[test]
    fn empty_index_round_trips() {
        let i = Index::new(ChunkParams::DEFAULT, 0, [0; 32], Vec::new()).unwrap();
        let b = i.to_bytes();
        assert_eq!(b.len(), HEADER_LEN);
        assert_eq!(Index::from_bytes(&b).unwrap(), i);
    }
}
