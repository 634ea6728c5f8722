//! The dm-verity hash tree, as `veritysetup format` writes it with its defaults.
//!
//! Parameters are fixed: hash format 1, sha256, 4096-byte data and hash blocks, a 32-byte
//! salt, and no verity superblock (the parameters live in the signed slot header instead).
//!
//! Rules of the tree (the kernel's `dm-verity-target.c` and cryptsetup's `verity_hash.c`):
//! - The hash of a block is `sha256(salt || block)` (format 1 puts the salt first).
//! - Level 0 holds the hashes of the data blocks, packed 128 to a 4096-byte hash block;
//!   level `i + 1` holds the hashes of the hash blocks of level `i`. Levels are added until
//!   a level fits in one block. The root hash is the hash of that single top block.
//! - On disk the top level comes first and level 0 last; every level starts on a block
//!   boundary, and the unused tail of a level's last block is zero.
//! - With a single data block there are no levels: the tree is empty and the root hash is
//!   the hash of the data block.
//!
//! Levels are numbered as the kernel numbers them: level 0 is the one next to the data.

use alloc::vec;
use alloc::vec::Vec;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Size of a data block and of a hash block, in bytes.
pub const BLOCK_SIZE: usize = 4096;
/// [`BLOCK_SIZE`] as the `u64` that offsets use.
pub const BLOCK_SIZE_U64: u64 = 4096;
/// Size of one sha256 digest.
pub const DIGEST_SIZE: usize = 32;
/// Digests in one hash block.
const HASHES_PER_BLOCK: u64 = (BLOCK_SIZE / DIGEST_SIZE) as u64;

/// The hash algorithm of a verity tree. Only sha256 exists; the enum keeps the header's
/// algorithm field a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// sha256, header id 1.
    Sha256,
}

impl HashAlgorithm {
    /// The id stored in the slot header.
    pub const fn id(self) -> u32 {
        match self {
            HashAlgorithm::Sha256 => 1,
        }
    }

    /// The algorithm with this header id.
    pub const fn from_id(id: u32) -> Option<Self> {
        match id {
            1 => Some(HashAlgorithm::Sha256),
            _ => None,
        }
    }

    /// The name veritysetup uses.
    pub const fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
        }
    }
}

/// Everything needed to check a tree, or to hand it to dm-verity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerityParams {
    /// Data block size in bytes (4096).
    pub data_block_size: u32,
    /// Hash block size in bytes (4096).
    pub hash_block_size: u32,
    /// Number of data blocks covered by the tree.
    pub data_blocks: u64,
    /// Offset of the tree from the start of the device (data offset is 0).
    pub hash_offset: u64,
    /// Hash algorithm.
    pub hash_algorithm: HashAlgorithm,
    /// The salt hashed before every block.
    pub salt: [u8; 32],
    /// The root hash.
    pub root_hash: [u8; 32],
}

/// Why a tree does not match its data or its root hash.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum VerityError {
    /// The parameters are not the ones this module supports.
    #[error("unsupported verity parameters: {what}")]
    Unsupported {
        /// Which parameter.
        what: &'static str,
    },
    /// The data is not `data_blocks` whole blocks.
    #[error("data is {len} bytes, expected {expected} ({data_blocks} blocks)")]
    DataLength {
        /// Actual length.
        len: u64,
        /// Expected length.
        expected: u64,
        /// Data blocks in the parameters.
        data_blocks: u64,
    },
    /// The tree is not the size the parameters imply.
    #[error("hash tree is {len} bytes, expected {expected}")]
    TreeLength {
        /// Actual length.
        len: u64,
        /// Expected length.
        expected: u64,
    },
    /// A hash block does not hash to the digest its parent (or the root hash) holds.
    #[error(
        "hash block {index} of level {level} (tree offset {tree_offset}) does not match its parent"
    )]
    HashBlock {
        /// Level, 0 next to the data.
        level: u32,
        /// Block index within the level.
        index: u64,
        /// Byte offset of the block within the tree.
        tree_offset: u64,
    },
    /// The unused tail of a level's last hash block is not zero.
    #[error(
        "hash block {index} of level {level} (tree offset {tree_offset}) has non-zero padding"
    )]
    HashPadding {
        /// Level, 0 next to the data.
        level: u32,
        /// Block index within the level.
        index: u64,
        /// Byte offset of the block within the tree.
        tree_offset: u64,
    },
    /// A data block does not hash to its digest in level 0 (or to the root hash when there
    /// is a single block).
    #[error("data block {block} (offset {offset}) does not match the hash tree")]
    DataBlock {
        /// Data block index.
        block: u64,
        /// Byte offset of the block in the data.
        offset: u64,
    },
}

/// Block counts of each level, index 0 = level 0 (next to the data).
fn level_blocks(data_blocks: u64) -> Vec<u64> {
    let mut levels = Vec::new();
    let mut n = data_blocks;
    while n > 1 {
        n = n.div_ceil(HASHES_PER_BLOCK);
        levels.push(n);
    }
    levels
}

/// A level's place in the tree.
#[derive(Debug, Clone, Copy)]
struct Level {
    /// Blocks hashed into this level (data blocks for level 0).
    children: u64,
    /// Hash blocks in this level.
    blocks: u64,
    /// Byte offset of the level in the tree.
    offset: u64,
}

/// Levels with their offsets, index 0 = level 0. Top level first on disk.
fn layout(data_blocks: u64) -> Vec<Level> {
    let counts = level_blocks(data_blocks);
    let mut levels: Vec<Level> = Vec::with_capacity(counts.len());
    let mut children = data_blocks;
    for &blocks in &counts {
        levels.push(Level {
            children,
            blocks,
            offset: 0,
        });
        children = blocks;
    }
    let mut offset = 0u64;
    for level in levels.iter_mut().rev() {
        level.offset = offset;
        offset = offset.saturating_add(level.blocks.saturating_mul(BLOCK_SIZE_U64));
    }
    levels
}

/// Size in bytes of the hash tree for `data_blocks` data blocks (0 for one block).
pub fn tree_size(data_blocks: u64) -> u64 {
    level_blocks(data_blocks).iter().fold(0u64, |acc, b| {
        acc.saturating_add(b.saturating_mul(BLOCK_SIZE_U64))
    })
}

/// Number of hash levels for `data_blocks` data blocks.
pub fn levels(data_blocks: u64) -> u32 {
    // At most 64 / 7 levels exist for a u64 block count.
    u32::try_from(level_blocks(data_blocks).len()).unwrap_or(u32::MAX)
}

/// Hashes `blocks` (whole [`BLOCK_SIZE`] blocks) into `out`, one digest after another.
/// `salted` already holds the salt, so a block costs one clone of a small state and no
/// allocation.
fn hash_blocks_serial(salted: &Sha256, blocks: &[u8], out: &mut [u8]) {
    for (block, digest) in blocks
        .chunks_exact(BLOCK_SIZE)
        .zip(out.chunks_exact_mut(DIGEST_SIZE))
    {
        let mut h = salted.clone();
        h.update(block);
        h.finalize_into(digest.into());
    }
}

/// Threads used to hash level 0. The build machines and most devices have two cores;
/// more threads would only add contention there.
#[cfg(feature = "std")]
const THREADS: usize = 2;
/// Below this many bytes a second thread costs more than it saves.
#[cfg(feature = "std")]
const PARALLEL_MIN: usize = 4 << 20;

/// [`hash_blocks_serial`] on [`THREADS`] threads for large inputs.
#[cfg(feature = "std")]
fn hash_blocks(salted: &Sha256, blocks: &[u8], out: &mut [u8]) {
    let n = blocks.len() / BLOCK_SIZE;
    if blocks.len() < PARALLEL_MIN || n < THREADS {
        hash_blocks_serial(salted, blocks, out);
        return;
    }
    let per_thread = n.div_ceil(THREADS);
    std::thread::scope(|s| {
        let mut data_chunks = blocks.chunks(per_thread * BLOCK_SIZE);
        let mut out_chunks = out.chunks_mut(per_thread * DIGEST_SIZE);
        // The first chunk runs on this thread, the rest on spawned ones.
        let first = (data_chunks.next(), out_chunks.next());
        for (d, o) in data_chunks.zip(out_chunks) {
            s.spawn(move || hash_blocks_serial(salted, d, o));
        }
        if let (Some(d), Some(o)) = first {
            hash_blocks_serial(salted, d, o);
        }
    });
}

/// Without threads (no `std`), the blocks are hashed in order.
#[cfg(not(feature = "std"))]
fn hash_blocks(salted: &Sha256, blocks: &[u8], out: &mut [u8]) {
    hash_blocks_serial(salted, blocks, out);
}

fn salted_hasher(salt: &[u8; 32]) -> Sha256 {
    let mut h = Sha256::new();
    h.update(salt);
    h
}

fn hash_one(salted: &Sha256, block: &[u8]) -> [u8; 32] {
    let mut h = salted.clone();
    h.update(block);
    h.finalize().into()
}

/// Builds the hash tree of `data` and returns it with its root hash.
///
/// `data` should be a whole number of 4096-byte blocks; a partial last block is hashed as
/// if zero-padded (as dm-verity would see a zero-padded device). Empty data is treated as one
/// zero block.
pub fn build_tree(data: &[u8], salt: [u8; 32]) -> (Vec<u8>, [u8; 32]) {
    let salted = salted_hasher(&salt);
    let whole = data.len() / BLOCK_SIZE * BLOCK_SIZE;
    let (full, tail) = data.split_at(whole);
    let mut last = [0u8; BLOCK_SIZE];
    last[..tail.len()].copy_from_slice(tail);
    let data_blocks = (full.len() / BLOCK_SIZE + usize::from(!tail.is_empty())).max(1);
    let data_blocks_u64 = data_blocks as u64;

    let levels = layout(data_blocks_u64);
    let Some(leaf) = levels.first() else {
        // One data block: no tree, the root is the block's hash.
        let block = if full.is_empty() { &last[..] } else { full };
        return (Vec::new(), hash_one(&salted, block));
    };
    // Bounded by the data length: the tree is about 1/127 of it.
    let size = usize::try_from(tree_size(data_blocks_u64)).unwrap_or(usize::MAX);
    let mut tree = vec![0u8; size];

    // Level 0 from the data, in parallel.
    {
        let start = usize::try_from(leaf.offset).unwrap_or(usize::MAX);
        let out = &mut tree[start..start + data_blocks * DIGEST_SIZE];
        let (out_full, out_tail) = out.split_at_mut(full.len() / BLOCK_SIZE * DIGEST_SIZE);
        hash_blocks(&salted, full, out_full);
        if !tail.is_empty() {
            hash_blocks_serial(&salted, &last, out_tail);
        }
    }
    let root = upper_levels(&mut tree, &levels, &salted);
    (tree, root)
}

/// Fills the levels above level 0 (already in `tree`) and returns the root hash.
fn upper_levels(tree: &mut [u8], levels: &[Level], salted: &Sha256) -> [u8; 32] {
    // Upper levels from the level below; they are 1/128 of the work each.
    for pair in levels.windows(2) {
        let (below, this) = (pair[0], pair[1]);
        let b = usize::try_from(below.offset).unwrap_or(usize::MAX);
        let t = usize::try_from(this.offset).unwrap_or(usize::MAX);
        let below_len = usize::try_from(below.blocks).unwrap_or(usize::MAX) * BLOCK_SIZE;
        let children = usize::try_from(this.children).unwrap_or(usize::MAX);
        // The top level is stored before the lower ones, so `t < b`.
        let (head, rest) = tree.split_at_mut(b);
        hash_blocks(
            salted,
            &rest[..below_len],
            &mut head[t..t + children * DIGEST_SIZE],
        );
    }
    let top = levels[levels.len() - 1];
    let t = usize::try_from(top.offset).unwrap_or(usize::MAX);
    hash_one(salted, &tree[t..t + BLOCK_SIZE])
}

/// Builds a hash tree from data blocks given one at a time, in order: for a writer that
/// never holds the data whole (a device applying a delta). Holds level 0 (32 bytes per
/// data block) until [`TreeBuilder::finish`].
#[derive(Debug, Clone)]
pub struct TreeBuilder {
    salted: Sha256,
    level0: Vec<u8>,
}

impl TreeBuilder {
    /// A builder for a tree salted with `salt`.
    pub fn new(salt: [u8; 32]) -> Self {
        TreeBuilder {
            salted: salted_hasher(&salt),
            level0: Vec::new(),
        }
    }

    /// Hashes the next data block.
    pub fn push(&mut self, block: &[u8; BLOCK_SIZE]) {
        self.level0.extend(hash_one(&self.salted, block));
    }

    /// Data blocks pushed so far.
    pub fn blocks(&self) -> u64 {
        (self.level0.len() / DIGEST_SIZE) as u64
    }

    /// The tree and root hash of the blocks pushed, as [`build_tree`] makes them from the
    /// same data (no blocks counts as one zero block).
    pub fn finish(mut self) -> (Vec<u8>, [u8; 32]) {
        if self.level0.is_empty() {
            self.push(&[0u8; BLOCK_SIZE]);
        }
        let data_blocks = self.blocks();
        let levels = layout(data_blocks);
        let Some(leaf) = levels.first() else {
            let mut root = [0u8; 32];
            root.copy_from_slice(&self.level0);
            return (Vec::new(), root);
        };
        let size = usize::try_from(tree_size(data_blocks)).unwrap_or(usize::MAX);
        let mut tree = vec![0u8; size];
        let start = usize::try_from(leaf.offset).unwrap_or(usize::MAX);
        tree[start..start + self.level0.len()].copy_from_slice(&self.level0);
        drop(self.level0);
        let root = upper_levels(&mut tree, &levels, &self.salted);
        (tree, root)
    }
}

/// Checks `data` against `tree` and `params.root_hash`, top down as the kernel does, and
/// names the first block that does not match.
///
/// Every hash block is checked against its parent (the top block against the root hash)
/// and for zero padding, then every data block against level 0.
pub fn verify(data: &[u8], tree: &[u8], params: &VerityParams) -> Result<(), VerityError> {
    let checked = CheckedTree::new(tree, params)?;
    let expected_data =
        params
            .data_blocks
            .checked_mul(BLOCK_SIZE_U64)
            .ok_or(VerityError::DataLength {
                len: data.len() as u64,
                expected: u64::MAX,
                data_blocks: params.data_blocks,
            })?;
    if data.len() as u64 != expected_data {
        return Err(VerityError::DataLength {
            len: data.len() as u64,
            expected: expected_data,
            data_blocks: params.data_blocks,
        });
    }
    checked.check_data(0, data)
}

/// A hash tree whose every hash block has been checked against the root hash: data can
/// then be checked against it piece by piece, so a device verifies a slot on disk without
/// holding its data in memory.
#[derive(Debug)]
pub struct CheckedTree<'a> {
    tree: &'a [u8],
    salted: Sha256,
    /// Level 0; none when the data is a single block hashed straight into the root.
    leaf: Option<Level>,
    root_hash: [u8; 32],
    data_blocks: u64,
}

impl<'a> CheckedTree<'a> {
    /// Checks the parameters, the tree's size, and every hash block top down against its
    /// parent (the top block against the root hash) and for zero padding.
    pub fn new(tree: &'a [u8], params: &VerityParams) -> Result<Self, VerityError> {
        if params.data_block_size != 4096 {
            return Err(VerityError::Unsupported {
                what: "data block size",
            });
        }
        if params.hash_block_size != 4096 {
            return Err(VerityError::Unsupported {
                what: "hash block size",
            });
        }
        if params.data_blocks == 0 {
            return Err(VerityError::Unsupported {
                what: "zero data blocks",
            });
        }
        let expected_tree = tree_size(params.data_blocks);
        if tree.len() as u64 != expected_tree {
            return Err(VerityError::TreeLength {
                len: tree.len() as u64,
                expected: expected_tree,
            });
        }
        let salted = salted_hasher(&params.salt);
        let levels = layout(params.data_blocks);
        // Hash levels, top down. Lengths were checked above, so the slicing below stays in
        // bounds; `get` keeps it panic-free regardless.
        for (level_no, level) in levels.iter().enumerate().rev() {
            let level_u32 = u32::try_from(level_no).unwrap_or(u32::MAX);
            let parent = levels.get(level_no + 1).copied();
            for index in 0..level.blocks {
                let tree_offset = level.offset + index * BLOCK_SIZE_U64;
                let at = usize::try_from(tree_offset).unwrap_or(usize::MAX);
                let err = VerityError::HashBlock {
                    level: level_u32,
                    index,
                    tree_offset,
                };
                let block = tree.get(at..at.saturating_add(BLOCK_SIZE)).ok_or(err)?;
                let expected: &[u8] = match parent {
                    None => &params.root_hash,
                    Some(p) => {
                        let d = usize::try_from(p.offset)
                            .unwrap_or(usize::MAX)
                            .saturating_add(
                                usize::try_from(index)
                                    .unwrap_or(usize::MAX)
                                    .saturating_mul(DIGEST_SIZE),
                            );
                        tree.get(d..d.saturating_add(DIGEST_SIZE)).ok_or(err)?
                    }
                };
                if hash_one(&salted, block) != expected {
                    return Err(err);
                }
                // Digests used in this block; the rest must be zero.
                let used = level
                    .children
                    .saturating_sub(index * HASHES_PER_BLOCK)
                    .min(HASHES_PER_BLOCK);
                let used = usize::try_from(used)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(DIGEST_SIZE);
                if block
                    .get(used..)
                    .is_some_and(|pad| pad.iter().any(|&b| b != 0))
                {
                    return Err(VerityError::HashPadding {
                        level: level_u32,
                        index,
                        tree_offset,
                    });
                }
            }
        }
        Ok(CheckedTree {
            tree,
            salted,
            leaf: levels.first().copied(),
            root_hash: params.root_hash,
            data_blocks: params.data_blocks,
        })
    }

    /// Checks whole data blocks starting at block `first` against level 0 (or the root
    /// hash when the data is one block), naming the first that does not match.
    pub fn check_data(&self, first: u64, data: &[u8]) -> Result<(), VerityError> {
        let blocks = data.len() as u64 / BLOCK_SIZE_U64;
        let end = first.checked_add(blocks);
        if !data.len().is_multiple_of(BLOCK_SIZE) || end.is_none_or(|e| e > self.data_blocks) {
            return Err(VerityError::DataLength {
                len: data.len() as u64,
                expected: self.data_blocks.saturating_sub(first) * BLOCK_SIZE_U64,
                data_blocks: self.data_blocks,
            });
        }
        let Some(leaf) = self.leaf else {
            if hash_one(&self.salted, data) != self.root_hash {
                return Err(VerityError::DataBlock {
                    block: 0,
                    offset: 0,
                });
            }
            return Ok(());
        };
        // Data blocks against level 0, hashed in parallel into a scratch level.
        let n = usize::try_from(blocks).unwrap_or(usize::MAX);
        let mut computed = vec![0u8; n * DIGEST_SIZE];
        hash_blocks(&self.salted, data, &mut computed);
        let start = usize::try_from(leaf.offset + first * DIGEST_SIZE as u64).unwrap_or(usize::MAX);
        let stored = self
            .tree
            .get(start..start.saturating_add(n * DIGEST_SIZE))
            .ok_or(VerityError::TreeLength {
                len: self.tree.len() as u64,
                expected: tree_size(self.data_blocks),
            })?;
        let bad = computed
            .chunks_exact(DIGEST_SIZE)
            .zip(stored.chunks_exact(DIGEST_SIZE))
            .position(|(c, s)| c != s);
        if let Some(block) = bad {
            let block = first + block as u64;
            return Err(VerityError::DataBlock {
                block,
                offset: block * BLOCK_SIZE_U64,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tree_builder_matches_build_tree() {
        for blocks in [0usize, 1, 2, 127, 128, 129, 300] {
            let data: Vec<u8> = (0..blocks * BLOCK_SIZE)
                .map(|i| (i * 7 % 251).to_le_bytes()[0])
                .collect();
            let salt = [blocks.to_le_bytes()[0]; 32];
            let mut builder = TreeBuilder::new(salt);
            for block in data.chunks_exact(BLOCK_SIZE) {
                builder.push(block.try_into().unwrap());
            }
            assert_eq!(builder.finish(), build_tree(&data, salt), "{blocks} blocks");
        }
    }

    use super::*;

    fn data(blocks: usize) -> Vec<u8> {
        (0..blocks * BLOCK_SIZE)
            .map(|i| (i * 7 + i / 4096).to_le_bytes()[0])
            .collect()
    }

    fn params(data_blocks: u64, salt: [u8; 32], root_hash: [u8; 32]) -> VerityParams {
        VerityParams {
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks,
            hash_offset: data_blocks * 4096,
            hash_algorithm: HashAlgorithm::Sha256,
            salt,
            root_hash,
        }
    }

    #[test]
    fn tree_sizes() {
        assert_eq!(tree_size(1), 0);
        assert_eq!(tree_size(2), 4096);
        assert_eq!(tree_size(128), 4096);
        assert_eq!(tree_size(129), 3 * 4096);
        assert_eq!(tree_size(128 * 128), (128 + 1) * 4096);
        assert_eq!(tree_size(128 * 128 + 1), (129 + 2 + 1) * 4096);
        assert_eq!(levels(1), 0);
        assert_eq!(levels(129), 2);
    }

    #[test]
    fn round_trip_and_corruption() {
        for blocks in [1usize, 2, 127, 128, 129, 300, 1100] {
            let d = data(blocks);
            let salt = [9u8; 32];
            let (tree, root) = build_tree(&d, salt);
            let p = params(blocks as u64, salt, root);
            assert_eq!(verify(&d, &tree, &p), Ok(()));
            let mut bad = d.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(
                verify(&bad, &tree, &p),
                Err(VerityError::DataBlock {
                    block: blocks as u64 - 1,
                    offset: (blocks as u64 - 1) * 4096
                })
            );
            if !tree.is_empty() {
                let mut t = tree.clone();
                t[0] ^= 0x80;
                let top = levels(blocks as u64) - 1;
                assert_eq!(
                    verify(&d, &t, &p),
                    Err(VerityError::HashBlock {
                        level: top,
                        index: 0,
                        tree_offset: 0
                    })
                );
            }
        }
    }

    #[test]
    fn parallel_matches_serial() {
        let d = data(2048 + 5);
        let salted = salted_hasher(&[1; 32]);
        let mut a = vec![0u8; (2048 + 5) * 32];
        let mut b = a.clone();
        hash_blocks(&salted, &d, &mut a);
        hash_blocks_serial(&salted, &d, &mut b);
        assert_eq!(a, b);
    }
}
