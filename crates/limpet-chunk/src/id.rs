//! Chunk identity: the sha256 of the chunk's uncompressed bytes.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// sha256 of a chunk's uncompressed bytes; names the chunk in the store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// The id of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Path of the chunk's file relative to the store root:
    /// `chunks/<first 2 hex>/<64 hex>.zst`.
    pub fn store_path(&self) -> PathBuf {
        let h = self.to_hex();
        Path::new("chunks").join(&h[..2]).join(format!("{h}.zst"))
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_path_fans_out_on_two_hex_digits() {
        let id = ChunkId::of(b"");
        assert_eq!(
            id.store_path(),
            Path::new(
                "chunks/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.zst"
            )
        );
    }
}
