//! The frame every 4096-byte record of the `state` partition shares: magic, format version,
//! record size, the sequence at both ends and a CRC-32 over the rest. The A/B record
//! ([`crate::record`]) and limpet-lifecycle's time record are each a magic and a body in
//! this frame, so the torn-write and corruption checks exist once.
//!
//! ```text
//! offset len   field
//! 0      8     magic                the record kind's, e.g. "LIMPETST"
//! 8      4     format_version       u32, the record kind's
//! 12     4     record_size          u32 = 4096
//! 16     8     sequence             u64, +1 on every write
//! 24     4060  body                 the record kind's fields
//! 4084   8     sequence_trailer     u64, = sequence
//! 4092   4     crc32                CRC-32/ISO-HDLC (zlib's, U-Boot's) of bytes 0..4092
//! ```
//!
//! [`Frame::open`] checks, in this order: blank (all `0x00`, never written, or all `0xFF`,
//! erased flash), magic, format version, record size, CRC, then `sequence_trailer ==
//! sequence`. A write torn between head and tail (new head, old tail: the sequences of one
//! copy differ by 2) fails the trailer check without relying on the CRC; the CRC catches
//! the rest (reordered sectors, bit rot).

use thiserror::Error;

/// Size of one record, in bytes.
pub const RECORD_SIZE: usize = 4096;

/// First byte of the body.
pub const BODY_START: usize = 24;
/// First byte after the body (the sequence trailer).
pub const BODY_END: usize = 4084;

const FORMAT_VERSION: usize = 8;
const SIZE: usize = 12;
const SEQUENCE: usize = 16;
const CRC: usize = 4092;

/// Why bytes are not a well-framed record of a kind.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// All `0x00` (never written) or all `0xFF` (erased flash).
    #[error("copy is blank")]
    Blank,
    /// Another kind's magic, or none.
    #[error("bad magic")]
    Magic,
    /// A format this code does not know.
    #[error("unsupported format version {found}")]
    FormatVersion {
        /// The version found.
        found: u32,
    },
    /// The record size field is not [`RECORD_SIZE`].
    #[error("record size field is {found}, expected {RECORD_SIZE}")]
    RecordSize {
        /// The size found.
        found: u32,
    },
    /// The CRC does not match the contents (a torn write or corruption).
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC in the record.
        stored: u32,
        /// CRC of the record's bytes.
        computed: u32,
    },
    /// The sequence at the start and at the end differ (a torn write).
    #[error("sequence {head} at the start differs from {tail} at the end")]
    TornSequence {
        /// Sequence at offset 16.
        head: u64,
        /// Sequence at offset 4084.
        tail: u64,
    },
}

/// One record kind: its magic and format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The first eight bytes.
    pub magic: [u8; 8],
    /// The format version this code reads and writes.
    pub format_version: u32,
}

/// True when the bytes are all `0x00` or all `0xFF`.
pub fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0) || bytes.iter().all(|&b| b == 0xFF)
}

/// The little-endian `u32` at `offset` of a record (`offset + 4 <= RECORD_SIZE`).
pub fn get_u32(b: &[u8; RECORD_SIZE], offset: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[offset..offset + 4]);
    u32::from_le_bytes(x)
}

/// The little-endian `u64` at `offset` of a record (`offset + 8 <= RECORD_SIZE`).
pub fn get_u64(b: &[u8; RECORD_SIZE], offset: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[offset..offset + 8]);
    u64::from_le_bytes(x)
}

/// Writes `bytes` at `offset`, cut to at most `len` bytes (callers pass fields no longer
/// than their length; the cut keeps this panic-free regardless).
pub fn put(b: &mut [u8; RECORD_SIZE], (offset, len): (usize, usize), bytes: &[u8]) {
    let n = bytes.len().min(len);
    b[offset..offset + n].copy_from_slice(&bytes[..n]);
}

fn crc_of(b: &[u8; RECORD_SIZE]) -> u32 {
    crate::crc::crc32(&b[..CRC])
}

impl Frame {
    /// Writes the frame around the body already in `b`: magic, format version, size,
    /// `sequence` at both ends, and the CRC last.
    pub fn seal(&self, b: &mut [u8; RECORD_SIZE], sequence: u64) {
        put(b, (0, 8), &self.magic);
        put(b, (FORMAT_VERSION, 4), &self.format_version.to_le_bytes());
        // RECORD_SIZE is 4096: it fits a u32.
        put(b, (SIZE, 4), &4096u32.to_le_bytes());
        put(b, (SEQUENCE, 8), &sequence.to_le_bytes());
        put(b, (BODY_END, 8), &sequence.to_le_bytes());
        let crc = crc_of(b);
        put(b, (CRC, 4), &crc.to_le_bytes());
    }

    /// Checks the frame (the order is in the module doc) and returns the sequence.
    pub fn open(&self, b: &[u8; RECORD_SIZE]) -> Result<u64, FrameError> {
        if is_blank(b) {
            return Err(FrameError::Blank);
        }
        if b[..8] != self.magic {
            return Err(FrameError::Magic);
        }
        let format = get_u32(b, FORMAT_VERSION);
        if format != self.format_version {
            return Err(FrameError::FormatVersion { found: format });
        }
        let size = get_u32(b, SIZE);
        if usize::try_from(size) != Ok(RECORD_SIZE) {
            return Err(FrameError::RecordSize { found: size });
        }
        let stored = get_u32(b, CRC);
        let computed = crc_of(b);
        if stored != computed {
            return Err(FrameError::Checksum { stored, computed });
        }
        let head = get_u64(b, SEQUENCE);
        let tail = get_u64(b, BODY_END);
        if head != tail {
            return Err(FrameError::TornSequence { head, tail });
        }
        Ok(head)
    }
}
