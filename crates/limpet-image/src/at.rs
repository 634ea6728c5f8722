//! Positioned reads, shared by the readers of on-disk formats (GPT, slot header).

use std::io::{Read, Seek, SeekFrom};

/// Reads exactly `buf.len()` bytes at `offset`.
pub(crate) fn read_exact_at(
    dev: &mut (impl Read + Seek),
    offset: u64,
    buf: &mut [u8],
) -> std::io::Result<()> {
    dev.seek(SeekFrom::Start(offset))
        .and_then(|_| dev.read_exact(buf))
}
