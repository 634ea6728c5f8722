#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Each test binary uses only some of the helpers.
#![allow(dead_code)]
//! Helpers shared by the integration tests.

use std::io;
use std::path::Path;

use limpet_chunk::{read_chunk, ChunkId};

pub use limpet_testkit::noise::noise;

/// Compressible "binary-like" bytes: noise over a small alphabet with repeats.
pub fn text(seed: u64, n: usize) -> Vec<u8> {
    noise(seed, n)
        .iter()
        .map(|b| b"abcdefgh  \n;{}01"[usize::from(b & 15)])
        .collect()
}

/// `base` with `insert` put in at `at` (shifting everything after).
pub fn with_insert(base: &[u8], at: usize, insert: &[u8]) -> Vec<u8> {
    let mut v = base[..at].to_vec();
    v.extend_from_slice(insert);
    v.extend_from_slice(&base[at..]);
    v
}

/// A fetcher over a local store that counts the bytes it served.
pub fn store_fetcher<'a>(
    store: &'a Path,
    served: &'a mut u64,
) -> impl FnMut(&ChunkId, u64) -> io::Result<Vec<u8>> + 'a {
    move |id, cap| {
        let b = read_chunk(store, id, cap)?;
        *served += b.len() as u64;
        Ok(b)
    }
}

/// Writes `data` to `dir/name` and returns the path.
pub fn write_payload(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}
