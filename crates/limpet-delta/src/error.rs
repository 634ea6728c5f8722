//! What can go wrong making or applying a delta.

use std::io;

/// A delta could not be made or applied. Nothing written by a failed apply is a slot: the
/// caller must not mark it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// The file does not start with [`crate::MAGIC`].
    #[error("not a limpet delta (bad magic)")]
    BadMagic,
    /// The body is malformed: a length, count or record is out of bounds.
    #[error("malformed delta at body byte {offset}: {what}")]
    Malformed {
        /// Offset in the decompressed body.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The running slot is not the one the delta was made from.
    #[error("the delta is for an old image of {expected} bytes, the running slot has {actual}")]
    WrongOld {
        /// Old length recorded in the delta.
        expected: u64,
        /// The running slot's length.
        actual: u64,
    },
    /// A frame of the old image does not decompress to its recorded content.
    #[error("old image frame at offset {offset}: {what}")]
    OldFrame {
        /// Offset of the frame in the old image.
        offset: u64,
        /// What failed.
        what: String,
    },
    /// The rebuilt image does not have the publisher's layout: recompressing its frames
    /// gave other lengths, so this device's zstd is not the publisher's.
    #[error(
        "{what} came out {actual} bytes where the publisher's is {expected}: this zstd \
         differs from the publisher's"
    )]
    Recompress {
        /// Which part.
        what: &'static str,
        /// The publisher's length (or offset).
        expected: u64,
        /// This device's.
        actual: u64,
    },
    /// zstd failed (corrupt body, window above [`crate::WINDOW_LOG`], ...).
    #[error("zstd: {0}")]
    Zstd(#[source] io::Error),
    /// Reading the old image or writing the new one failed.
    #[error("{what}: {source}")]
    Io {
        /// Which side.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}
