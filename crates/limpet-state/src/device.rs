//! The block device seam: [`BlockDevice`], implemented for [`std::fs::File`] (a partition
//! node or an image file), for [`Region`] (a byte range of another device, e.g. the
//! `state` partition of a whole disk found through its GPT). The tests' power-cut disk
//! (limpet-testkit's `SimDisk`) implements it too.

use std::fs::File;
use std::io;

/// Positioned reads and writes on a fixed-size device.
pub trait BlockDevice {
    /// Fills `buf` from `offset`; a short read is an error.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Writes all of `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Makes every completed write durable (through the device's write cache).
    fn flush(&mut self) -> io::Result<()>;

    /// Size of the device in bytes. Fallible: a block device node's size comes from the
    /// kernel (its file metadata says 0), not from its metadata.
    fn len(&self) -> io::Result<u64>;

    /// True when the device holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

impl<D: BlockDevice + ?Sized> BlockDevice for &mut D {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, data)
    }

    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }

    fn len(&self) -> io::Result<u64> {
        (**self).len()
    }
}

#[cfg(unix)]
impl BlockDevice for File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, data, offset)
    }

    /// `fsync`: on a block device node the kernel also flushes the disk's write cache.
    fn flush(&mut self) -> io::Result<()> {
        self.sync_data()
    }

    /// Seeks to the end through a shared handle, then back: works for block device nodes
    /// (whose metadata length is 0) as for regular files, and leaves the file position
    /// as it was.
    fn len(&self) -> io::Result<u64> {
        use std::io::Seek;
        let mut handle = self;
        let position = handle.stream_position()?;
        let end = handle.seek(io::SeekFrom::End(0))?;
        handle.seek(io::SeekFrom::Start(position))?;
        Ok(end)
    }
}

/// The bytes `start..start + len` of another device, seen as a device of its own.
#[derive(Debug)]
pub struct Region<D> {
    inner: D,
    start: u64,
    len: u64,
}

impl<D: BlockDevice> Region<D> {
    /// A region of `inner`; fails when it does not lie inside `inner`.
    pub fn new(inner: D, start: u64, len: u64) -> io::Result<Self> {
        let inner_len = inner.len()?;
        match start.checked_add(len) {
            Some(end) if end <= inner_len => Ok(Region { inner, start, len }),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("region {start}+{len} does not fit a device of {inner_len} bytes"),
            )),
        }
    }

    /// The underlying device.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// `offset` in the underlying device, after checking `offset..offset + n` fits.
    fn map(&self, offset: u64, n: usize) -> io::Result<u64> {
        let fits = u64::try_from(n)
            .ok()
            .and_then(|n| offset.checked_add(n))
            .is_some_and(|end| end <= self.len);
        if !fits {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "access of {n} bytes at {offset} is outside a region of {} bytes",
                    self.len
                ),
            ));
        }
        // start + len fits u64 (checked in `new`) and offset + n <= len.
        Ok(self.start + offset)
    }
}

impl<D: BlockDevice> BlockDevice for Region<D> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let at = self.map(offset, buf.len())?;
        self.inner.read_at(at, buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let at = self.map(offset, data.len())?;
        self.inner.write_at(at, data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }
}
