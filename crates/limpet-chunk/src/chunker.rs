//! Streaming content-defined chunking over a [`ReadAt`], in one buffer of `max` bytes.
//!
//! Gives exactly the cut points of `fastcdc::v2020::FastCDC` over the whole input: each
//! cut is searched in the next `min(max, remaining)` bytes, which is all FastCDC looks at.

use std::io;

use fastcdc::v2020::{cut, select_masks, Normalization};

use crate::io::ReadAt;
use crate::params::ChunkParams;

/// Yields `(offset, bytes)` for each chunk of a source.
pub(crate) struct Chunker<'a> {
    src: &'a dyn ReadAt,
    size: u64,
    /// Source offset of `buf[0]`.
    pos: u64,
    buf: Vec<u8>,
    /// Valid bytes in `buf`.
    len: usize,
    /// Bytes of `buf` handed out by the last call, dropped at the next.
    consumed: usize,
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
}

impl<'a> Chunker<'a> {
    /// Chunks `src` with `params`.
    pub(crate) fn new(src: &'a dyn ReadAt, params: ChunkParams) -> io::Result<Self> {
        let max = to_usize(params.max())?;
        let (mask_s, mask_l) = select_masks(to_usize(params.avg())?, Normalization::Level1);
        Ok(Self {
            src,
            size: src.size()?,
            pos: 0,
            buf: vec![0; max],
            len: 0,
            consumed: 0,
            min: to_usize(params.min())?,
            avg: to_usize(params.avg())?,
            max,
            mask_s,
            mask_l,
        })
    }

    /// The next chunk, or `None` at the end of the source.
    pub(crate) fn next_chunk(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.len, 0);
            self.len -= self.consumed;
            self.pos += self.consumed as u64;
            self.consumed = 0;
        }
        while self.len < self.max {
            let at = self.pos + self.len as u64;
            if at >= self.size {
                break;
            }
            let room = self.max - self.len;
            let want = usize::try_from(self.size - at).map_or(room, |left| left.min(room));
            let n = self
                .src
                .read_at(&mut self.buf[self.len..self.len + want], at)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("source ends at {at}, before its size {}", self.size),
                ));
            }
            self.len += n;
        }
        if self.len == 0 {
            return Ok(None);
        }
        let (_, n) = cut(
            &self.buf[..self.len],
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        let n = n.clamp(1, self.len);
        self.consumed = n;
        Ok(Some((self.pos, &self.buf[..n])))
    }
}

/// `u32` to `usize`, which cannot fail on the 32- and 64-bit targets Limpet supports.
pub(crate) fn to_usize(v: u32) -> io::Result<usize> {
    usize::try_from(v).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect()
    }

    #[test]
    fn streaming_matches_fastcdc_over_the_whole_input() {
        let d = data(1_000_003);
        let p = ChunkParams::new(1024, 4096, 16384).unwrap();
        let expect: Vec<(u64, usize)> = fastcdc::v2020::FastCDC::new(&d, 1024, 4096, 16384)
            .map(|c| (c.offset as u64, c.length))
            .collect();
        let mut c = Chunker::new(&d, p).unwrap();
        let mut got = Vec::new();
        while let Some((off, bytes)) = c.next_chunk().unwrap() {
            got.push((off, bytes.len()));
        }
        assert_eq!(got, expect);
    }

    #[test]
    fn empty_source_has_no_chunks() {
        let d: Vec<u8> = Vec::new();
        let mut c = Chunker::new(&d, ChunkParams::DEFAULT).unwrap();
        assert!(c.next_chunk().unwrap().is_none());
    }
}
