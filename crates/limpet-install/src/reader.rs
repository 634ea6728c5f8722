//! `Read + Seek` over a [`BlockDevice`], for the slot reader of limpet-image.

use std::io::{self, Read, Seek, SeekFrom};

use limpet_state::BlockDevice;

/// Reads a block device as a stream, bounded by its size.
#[derive(Debug)]
pub struct BlockReader<D> {
    dev: D,
    pos: u64,
    len: u64,
}

impl<D: BlockDevice> BlockReader<D> {
    /// Starts at offset 0; the device's size is read once, here.
    pub fn new(dev: D) -> io::Result<Self> {
        let len = dev.len()?;
        Ok(BlockReader { dev, pos: 0, len })
    }
}

impl<D: BlockDevice> Read for BlockReader<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let Some(dst) = buf.get_mut(..n) else {
            return Ok(0);
        };
        if n == 0 {
            return Ok(0);
        }
        self.dev.read_at(self.pos, dst)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<D: BlockDevice> Seek for BlockReader<D> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the device",
            )),
        }
    }
}
