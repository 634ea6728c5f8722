//! Positioned I/O: what the assembler reads seeds from and writes the new payload to.
//!
//! Rules:
//! - A reader knows its own [`ReadAt::size`]; reads never go past it.
//! - A block device reports size 0 through file metadata: wrap it in [`Bounded`] with the
//!   slot's `total_size` from its header, so only the slot's bytes are chunked.
//! - The writer only ever receives verified bytes; on the device it will be a privileged
//!   request to PID 1 that writes the inactive slot partition.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A source of bytes read at absolute offsets.
pub trait ReadAt {
    /// Number of readable bytes.
    fn size(&self) -> io::Result<u64>;

    /// Reads up to `buf.len()` bytes at `offset`; returns how many, 0 at or past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Fills `buf` from `offset`, or fails with [`io::ErrorKind::UnexpectedEof`].
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A sink of bytes written at absolute offsets.
pub trait WriteAt {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for [u8] {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(rest) = self.get(start..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> io::Result<u64> {
        self.as_slice().size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_slice().read_at(buf, offset)
    }
}

impl ReadAt for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
}

impl WriteAt for File {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
}

/// Grows as needed; for tests and host tools. Pre-size it to avoid reallocations.
impl WriteAt for Vec<u8> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start
            .checked_add(buf.len())
            .ok_or_else(|| io::Error::other("write past the address space"))?;
        if self.len() < end {
            self.resize(end, 0);
        }
        self[start..end].copy_from_slice(buf);
        Ok(())
    }
}

/// The first `len` bytes of `inner`: a slot inside a larger partition.
#[derive(Debug)]
pub struct Bounded<R> {
    inner: R,
    len: u64,
}

impl<R: ReadAt> Bounded<R> {
    /// Views the first `len` bytes of `inner`.
    pub fn new(inner: R, len: u64) -> Self {
        Self { inner, len }
    }
}

impl<R: ReadAt> ReadAt for Bounded<R> {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let left = self.len.saturating_sub(offset);
        let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        self.inner.read_at(&mut buf[..n], offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_reads_stop_at_the_end() {
        let data = b"abcdef".to_vec();
        let mut buf = [0u8; 4];
        assert_eq!(data.read_at(&mut buf, 4).unwrap(), 2);
        assert_eq!(&buf[..2], b"ef");
        assert_eq!(data.read_at(&mut buf, 99).unwrap(), 0);
        assert!(data.read_exact_at(&mut buf, 3).is_err());
    }

    #[test]
    fn bounded_hides_the_tail() {
        let b = Bounded::new(b"abcdef".to_vec(), 3);
        let mut buf = [0u8; 6];
        assert_eq!(b.size().unwrap(), 3);
        assert_eq!(b.read_at(&mut buf, 0).unwrap(), 3);
        assert_eq!(b.read_at(&mut buf, 3).unwrap(), 0);
    }

    #[test]
    fn vec_writer_grows() {
        let mut v = Vec::new();
        v.write_all_at(b"xy", 3).unwrap();
        assert_eq!(v, b"\0\0\0xy");
    }
}
