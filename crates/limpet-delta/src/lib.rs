//! Per-release byte deltas of slot images.
//!
//! A one-line change to a task moves the code after it, and every relative reference across
//! the move changes: half the binary's bytes differ, and after zstd every block of the
//! slot's squashfs past the edit is new. Chunking finds nothing to reuse there. A byte
//! delta (bsdiff) finds it all, but only on uncompressed bytes. So a delta here works on the
//! slot *expanded*: every zstd frame in the image that the publisher can reproduce exactly is
//! replaced by its content ([`layout`]), and a limpet slot's dm-verity tree (new in every
//! release, random) is left out, to be rebuilt. The publisher diffs the two expanded images
//! with bsdiff ([`make`]); the device ([`apply`]) rebuilds the new expanded image from its
//! running slot and the delta, one bsdiff record at a time, compresses each frame again with
//! the same level and hashes the data into a new tree, so the slot it writes is byte for
//! byte the one that was signed.
//!
//! The old image's layout is not in the delta: the publisher and the device find its frames
//! the same way, from their headers alone ([`layout::scan`]). The new image's layout is, but
//! not the frames' compressed lengths: they are what compressing again gives.
//!
//! The file (`LIMPET-DELTA v1`):
//!
//! ```text
//! magic     16 bytes  "LIMPET-DELTA\0\0\0\x01"
//! body      one zstd frame (window at most 2^WINDOW_LOG bytes) holding:
//!   old_len u64, new_len u64, segments u32
//!   segments  of the new image, 17 bytes each: kind u8 (0 raw, 1 zstd, 2 verity tree),
//!             level i32 (0 unless zstd), stored u64 (bytes in the image; 0 for zstd),
//!             expanded u32 (content; 0 unless zstd); a tree adds data_blocks u64 and its
//!             salt (32 bytes), and at most one tree is allowed
//!   changes   u64: how many of the mix bytes below are not zero
//!   group     the first group of changes (see `sparse`)
//!   records   bsdiff's: mix u64, copy u64, seek i64 (sign and magnitude); the next
//!             groups of changes if this record's mix bytes use up the group in hand;
//!             then `copy` new bytes. The record's `mix` bytes (the changes, zero
//!             elsewhere) are added to the old expanded image at the old cursor
//! ```
//!
//! All integers are little-endian. The result is checked three times: the tree must start
//! exactly where the data before it ends and the image must end at `new_len` (else
//! [`DeltaError::Recompress`]: this device's zstd is not the publisher's), the caller
//! compares the whole slot's sha256 with the signed target, and PID 1 verifies the slot. A
//! device that fails falls back to the chunk store.

#![warn(missing_docs)]

mod apply;
mod error;
mod format;
pub mod layout;
mod make;
mod sparse;

pub use apply::{apply, Applied};
pub use error::DeltaError;
pub use make::{make, Made};

/// Largest content of one expanded frame: squashfs's largest block size. Limpet's slots
/// use 128 KiB blocks.
pub const MAX_FRAME: usize = 1 << 20;

/// Window of the body's zstd frame, as a power of two: what the device's decoder holds.
pub const WINDOW_LOG: u32 = 15;

/// The file's first bytes.
pub const MAGIC: [u8; 16] = *b"LIMPET-DELTA\0\0\0\x01";
