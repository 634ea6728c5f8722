//! The device side: plan an update, then write the new payload from seed chunks and
//! fetched chunks.
//!
//! Rules:
//! - Seeds (the running slot, optionally the other slot) are cut with the index's own
//!   parameters, streaming, in one buffer of `max` bytes. Only chunks the index names are
//!   remembered: memory is O(chunks in the index), not O(seed size).
//! - Only verified bytes are written: a seed chunk is read again and re-hashed before it is
//!   written (a mismatch falls back to fetching it), and a fetched chunk must be at most its
//!   index's compressed length, decompress to exactly its index length, and hash to its id.
//!   A chunk that fails is not written at all, and assembly stops with an error naming the
//!   chunk's position, offset and hashes.
//! - The whole payload is hashed as it is written and checked against the index at the end.
//! - Memory while applying: the index, 16 bytes of plan per chunk, one chunk buffer and one
//!   compressed chunk (each at most `max`, at most 1 MiB), and one zstd decompression
//!   context (about 160 KiB, allocated by libzstd). The `memory` test measures it.

use std::io;

use sha2::{Digest, Sha256};
use thiserror::Error;
use zstd::zstd_safe::{self, DCtx};

use crate::chunker::{to_usize, Chunker};
use crate::id::ChunkId;
use crate::index::Index;
use crate::io::{ReadAt, WriteAt};

/// Where a chunk was found in a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeedLoc {
    seed: u32,
    offset: u64,
}

/// What an update will cost, before anything is downloaded or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Per index chunk: where a seed holds it, if one does.
    locations: Vec<Option<SeedLoc>>,
    /// Index chunks to download.
    pub chunks_to_fetch: usize,
    /// Bytes to download (compressed chunk files).
    pub bytes_to_fetch: u64,
    /// Index chunks copied from a seed.
    pub chunks_from_seeds: usize,
    /// Payload bytes copied from a seed.
    pub bytes_from_seeds: u64,
    /// Seed bytes read to build the plan.
    pub seed_bytes_scanned: u64,
}

impl Plan {
    /// Index chunks that will be copied from seed number `seed`.
    pub fn chunks_from_seed(&self, seed: usize) -> usize {
        self.locations
            .iter()
            .flatten()
            .filter(|l| usize::try_from(l.seed).ok() == Some(seed))
            .count()
    }

    /// Index positions of the chunks to download, in payload order.
    pub fn fetch_positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.locations
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_none())
            .map(|(i, _)| i)
    }
}

/// What [`assemble`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Compressed bytes downloaded.
    pub bytes_fetched: u64,
    /// Chunks downloaded.
    pub chunks_fetched: usize,
    /// Chunks copied from a seed.
    pub chunks_reused: usize,
    /// Payload bytes copied from a seed.
    pub bytes_reused: u64,
    /// Seed chunks whose bytes no longer matched when copied (then downloaded).
    pub seed_mismatches: usize,
    /// Payload bytes written.
    pub bytes_written: u64,
    /// Seed bytes read while planning.
    pub seed_bytes_scanned: u64,
}

/// Why an update could not be assembled.
#[derive(Debug, Error)]
pub enum AssembleError {
    /// A seed cannot be read.
    #[error("cannot read seed {seed} at offset {offset}")]
    SeedRead {
        /// Position of the seed in the list.
        seed: usize,
        /// Where.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The plan was made for another index.
    #[error("plan has {plan} chunks, index has {index}")]
    PlanMismatch {
        /// Chunks in the plan.
        plan: usize,
        /// Chunks in the index.
        index: usize,
    },
    /// The fetcher failed.
    #[error("cannot fetch chunk {index} ({id}) at offset {offset}")]
    Fetch {
        /// Position in the index.
        index: usize,
        /// Payload offset.
        offset: u64,
        /// Chunk id.
        id: ChunkId,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The fetched file is longer than the index allows.
    #[error("chunk {index} ({id}) at offset {offset}: fetched {len} bytes, cap is {cap}")]
    TooLarge {
        /// Position in the index.
        index: usize,
        /// Payload offset.
        offset: u64,
        /// Chunk id.
        id: ChunkId,
        /// Bytes received.
        len: u64,
        /// The index's compressed length.
        cap: u64,
    },
    /// The fetched file declares or decodes to another length than the index's.
    #[error(
        "chunk {index} ({id}) at offset {offset}: decompresses to {actual} bytes, expected {expected}"
    )]
    Length {
        /// Position in the index.
        index: usize,
        /// Payload offset.
        offset: u64,
        /// Chunk id.
        id: ChunkId,
        /// The index's length.
        expected: u32,
        /// The length found (declared in the frame, or decoded).
        actual: u64,
    },
    /// The fetched file is not valid zstd (truncated, corrupt).
    #[error("chunk {index} ({id}) at offset {offset}: bad zstd data: {reason}")]
    Decompress {
        /// Position in the index.
        index: usize,
        /// Payload offset.
        offset: u64,
        /// Chunk id.
        id: ChunkId,
        /// zstd's error name.
        reason: &'static str,
    },
    /// The chunk's bytes do not hash to its id: a tampered or corrupt chunk.
    #[error("chunk {index} at offset {offset}: sha256 is {actual}, index says {expected}")]
    Hash {
        /// Position in the index.
        index: usize,
        /// Payload offset.
        offset: u64,
        /// The index's id.
        expected: ChunkId,
        /// The hash of the bytes received.
        actual: ChunkId,
    },
    /// Writing the output failed.
    #[error("cannot write chunk {index} at offset {offset}")]
    Write {
        /// Position in the index.
        index: usize,
        /// Payload offset.
        offset: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The assembled payload's hash differs from the index's (an inconsistent index).
    #[error("assembled payload sha256 is {actual}, index says {expected}")]
    PayloadHash {
        /// The index's payload hash.
        expected: ChunkId,
        /// The hash of what was written.
        actual: ChunkId,
    },
    /// libzstd could not allocate a decompression context.
    #[error("cannot allocate a zstd decompression context")]
    Context,
}

/// Finds which chunks of `index` the seeds hold and what the rest costs to download.
pub fn plan(index: &Index, seeds: &[&dyn ReadAt]) -> Result<Plan, AssembleError> {
    let chunks = index.chunks();
    // Sorted unique ids with the first index position naming them.
    let mut needed: Vec<(ChunkId, usize)> =
        chunks.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    needed.sort_unstable();
    needed.dedup_by(|a, b| a.0 == b.0);
    let mut found: Vec<Option<SeedLoc>> = vec![None; needed.len()];
    let mut missing = needed.len();
    let mut scanned = 0u64;
    for (s, seed) in seeds.iter().enumerate() {
        if missing == 0 {
            break;
        }
        let read_err = |offset| {
            move |source| AssembleError::SeedRead {
                seed: s,
                offset,
                source,
            }
        };
        let mut chunker = Chunker::new(*seed, index.params()).map_err(read_err(0))?;
        let mut at = 0;
        while let Some((offset, data)) = chunker.next_chunk().map_err(read_err(at))? {
            at = offset + data.len() as u64;
            scanned += data.len() as u64;
            let id = ChunkId::of(data);
            if let Ok(k) = needed.binary_search_by(|(n, _)| n.cmp(&id)) {
                if found[k].is_none() {
                    found[k] = Some(SeedLoc {
                        seed: u32::try_from(s).unwrap_or(u32::MAX),
                        offset,
                    });
                    missing -= 1;
                    if missing == 0 {
                        break;
                    }
                }
            }
        }
    }
    let mut p = Plan {
        locations: Vec::with_capacity(chunks.len()),
        chunks_to_fetch: 0,
        bytes_to_fetch: 0,
        chunks_from_seeds: 0,
        bytes_from_seeds: 0,
        seed_bytes_scanned: scanned,
    };
    for c in chunks {
        let loc = needed
            .binary_search_by(|(n, _)| n.cmp(&c.id))
            .ok()
            .and_then(|k| found[k]);
        if loc.is_some() {
            p.chunks_from_seeds += 1;
            p.bytes_from_seeds += u64::from(c.length);
        } else {
            p.chunks_to_fetch += 1;
            p.bytes_to_fetch += u64::from(c.compressed_length);
        }
        p.locations.push(loc);
    }
    Ok(p)
}

/// Plans, then writes the payload of `index` into `out`; see [`assemble_planned`].
pub fn assemble(
    index: &Index,
    seeds: &[&dyn ReadAt],
    fetch: &mut dyn FnMut(&ChunkId, u64) -> io::Result<Vec<u8>>,
    out: &mut dyn WriteAt,
) -> Result<Stats, AssembleError> {
    let p = plan(index, seeds)?;
    assemble_planned(index, &p, seeds, fetch, out)
}

/// Writes the payload of `index` into `out` at offset 0, copying the chunks `plan` found
/// in `seeds` and calling `fetch(id, cap)` for the others; `cap` is the most bytes the
/// fetcher should return (it may return one more so an oversized file is detected).
pub fn assemble_planned(
    index: &Index,
    plan: &Plan,
    seeds: &[&dyn ReadAt],
    fetch: &mut dyn FnMut(&ChunkId, u64) -> io::Result<Vec<u8>>,
    out: &mut dyn WriteAt,
) -> Result<Stats, AssembleError> {
    let chunks = index.chunks();
    if plan.locations.len() != chunks.len() {
        return Err(AssembleError::PlanMismatch {
            plan: plan.locations.len(),
            index: chunks.len(),
        });
    }
    let max = to_usize(index.params().max()).map_err(|source| AssembleError::Write {
        index: 0,
        offset: 0,
        source,
    })?;
    let mut buf = vec![0u8; max];
    let mut dctx = DCtx::try_create().ok_or(AssembleError::Context)?;
    let mut whole = Sha256::new();
    let mut stats = Stats {
        seed_bytes_scanned: plan.seed_bytes_scanned,
        ..Stats::default()
    };
    for (i, (c, loc)) in chunks.iter().zip(&plan.locations).enumerate() {
        let len = to_usize(c.length).map_err(|source| AssembleError::Write {
            index: i,
            offset: c.offset,
            source,
        })?;
        let data = &mut buf[..len];
        let from_seed = match loc.and_then(|l| seeds.get(to_usize(l.seed).ok()?).map(|s| (s, l))) {
            Some((seed, l)) => {
                seed.read_exact_at(data, l.offset)
                    .map_err(|source| AssembleError::SeedRead {
                        seed: to_usize(l.seed).unwrap_or(usize::MAX),
                        offset: l.offset,
                        source,
                    })?;
                ChunkId::of(data) == c.id
            }
            None => false,
        };
        if from_seed {
            stats.chunks_reused += 1;
            stats.bytes_reused += u64::from(c.length);
        } else {
            if loc.is_some() {
                stats.seed_mismatches += 1;
            }
            let fetched = fetch_chunk(i, c, fetch, &mut dctx, data)?;
            stats.chunks_fetched += 1;
            stats.bytes_fetched += fetched;
        }
        out.write_all_at(data, c.offset)
            .map_err(|source| AssembleError::Write {
                index: i,
                offset: c.offset,
                source,
            })?;
        whole.update(&*data);
        stats.bytes_written += u64::from(c.length);
    }
    let actual = ChunkId(whole.finalize().into());
    let expected = ChunkId(index.payload_sha256());
    if actual != expected {
        return Err(AssembleError::PayloadHash { expected, actual });
    }
    Ok(stats)
}

/// Downloads chunk `i` into `data` (exactly its length) and verifies it; returns the
/// compressed bytes received.
fn fetch_chunk(
    i: usize,
    c: &crate::index::ChunkEntry,
    fetch: &mut dyn FnMut(&ChunkId, u64) -> io::Result<Vec<u8>>,
    dctx: &mut DCtx<'_>,
    data: &mut [u8],
) -> Result<u64, AssembleError> {
    let cap = u64::from(c.compressed_length);
    let blob = fetch(&c.id, cap).map_err(|source| AssembleError::Fetch {
        index: i,
        offset: c.offset,
        id: c.id,
        source,
    })?;
    let got = blob.len() as u64;
    if got > cap {
        return Err(AssembleError::TooLarge {
            index: i,
            offset: c.offset,
            id: c.id,
            len: got,
            cap,
        });
    }
    let length_err = |actual| AssembleError::Length {
        index: i,
        offset: c.offset,
        id: c.id,
        expected: c.length,
        actual,
    };
    // A frame that declares another size is refused before decoding anything.
    if let Ok(Some(declared)) = zstd_safe::get_frame_content_size(&blob) {
        if declared != u64::from(c.length) {
            return Err(length_err(declared));
        }
    }
    // `data` is exactly the chunk's length: decoding more fails inside libzstd.
    let n = dctx
        .decompress(data, &blob)
        .map_err(|code| AssembleError::Decompress {
            index: i,
            offset: c.offset,
            id: c.id,
            reason: zstd_safe::get_error_name(code),
        })?;
    if n != data.len() {
        return Err(length_err(n as u64));
    }
    let actual = ChunkId::of(data);
    if actual != c.id {
        return Err(AssembleError::Hash {
            index: i,
            offset: c.offset,
            expected: c.id,
            actual,
        });
    }
    Ok(got)
}
