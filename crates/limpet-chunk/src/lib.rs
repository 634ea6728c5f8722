//! Content-defined chunk store: a chunk index per payload and a bounded-memory assembler
//! that reuses the running slot's chunks.
//!
//! A payload (a slot image) is cut into chunks by FastCDC; each chunk is stored once,
//! zstd-compressed, under the sha256 of its uncompressed bytes. An update is the payload's
//! chunk index (a TUF target, so its hash is signed) plus whichever chunks the device does
//! not already hold in its running slot (or its other slot). The server does no work per
//! pair of versions: publishing a version only adds the chunks the store lacks.
//!
//! # Store layout
//!
//! ```text
//! <store>/chunks/<first 2 hex of id>/<id: 64 hex>.zst    one zstd-compressed chunk
//! ```
//!
//! `id` = sha256 of the UNCOMPRESSED chunk. Files are written to a temporary name and
//! renamed into place ([`publish`]); a file present is never trusted without re-hashing.
//!
//! # Index format (version 1)
//!
//! Binary, little-endian, canonical (one encoding per index), `80 + 48 × count` bytes:
//!
//! ```text
//! offset len  field
//! 0      8    magic "LIMPETCX"
//! 8      4    format_version     u32 = 1
//! 12     4    chunker            u32 = 1: FastCDC 2020, normalization level 1, gear seed 0
//! 16     4    min_size           u32, >= 64, even
//! 20     4    avg_size           u32, >= 256, even
//! 24     4    max_size           u32, >= 1024, even, <= 1 MiB; min <= avg <= max
//! 28     4    compression        u32 = 1: zstd
//! 32     8    total_length       u64, <= 4 GiB
//! 40     32   payload_sha256     sha256 of the whole payload
//! 72     4    count              u32, number of chunk records
//! 76     4    reserved           u32 = 0
//! 80     48×count chunk records, in payload order:
//!          0  8  offset              u64, = sum of the previous lengths
//!          8  4  length              u32, 1..=max_size
//!          12 4  compressed_length   u32, 1..=ZSTD_COMPRESSBOUND(length): the chunk
//!                                    file's size, and the download cap for it
//!          16 32 sha256              of the uncompressed chunk: its id
//! ```
//!
//! The lengths add up to `total_length`. [`Index::from_bytes`] refuses anything else.
//!
//! # Applying
//!
//! [`plan`] chunks the seeds with the index's parameters and reports what must be
//! downloaded; [`assemble_planned`] (or [`assemble()`], which plans first) writes the payload,
//! copying seed chunks and fetching the others, and writes only verified bytes. See the
//! [`assemble`](mod@assemble) module for its rules and memory bound.

#![warn(missing_docs)]

pub mod assemble;
mod chunker;
pub mod id;
pub mod index;
pub mod io;
pub mod params;
pub mod store;

pub use assemble::{assemble, assemble_planned, plan, AssembleError, Plan, Stats};
pub use id::ChunkId;
pub use index::{ChunkEntry, Index, IndexError, MAX_PAYLOAD_LEN};
pub use io::{Bounded, ReadAt, WriteAt};
pub use params::{ChunkParams, ParamsError, MAX_CHUNK_SIZE};
pub use store::{publish, publish_with, read_chunk, PublishError, PublishOptions, Published};
