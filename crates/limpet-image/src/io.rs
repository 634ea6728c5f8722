//! Positioned reads: the one seam between the on-disk format readers ([`crate::gpt`],
//! [`crate::slot`]) and a device.
//!
//! With the `std` feature, [`Io`] adapts any `Read + Seek` (a file, a partition node, a
//! cursor) and [`IoError`] is `std::io::Error`. Without it (the UEFI boot loader), the
//! caller implements [`ReadAt`] over its firmware's block I/O and reports failures as
//! [`IoError::other`] with a static message.

/// A read error from the device.
#[cfg(feature = "std")]
pub type IoError = std::io::Error;

/// A read error from the device: a static description (no `std` here).
#[cfg(not(feature = "std"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoError(&'static str);

#[cfg(not(feature = "std"))]
impl IoError {
    /// An error with this description (the same name as `std::io::Error::other`, so code
    /// that builds either way can call it).
    pub const fn other(what: &'static str) -> Self {
        IoError(what)
    }
}

#[cfg(not(feature = "std"))]
impl core::fmt::Display for IoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(not(feature = "std"))]
impl core::error::Error for IoError {}

/// A device the readers can read at any offset.
pub trait ReadAt {
    /// The device's size in bytes.
    fn size(&mut self) -> Result<u64, IoError>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError>;
}

/// [`ReadAt`] over a `Read + Seek` device.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct Io<'a, T>(pub &'a mut T);

#[cfg(feature = "std")]
impl<T: std::io::Read + std::io::Seek> ReadAt for Io<'_, T> {
    fn size(&mut self) -> Result<u64, IoError> {
        self.0.seek(std::io::SeekFrom::End(0))
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.0.seek(std::io::SeekFrom::Start(offset))?;
        self.0.read_exact(buf)
    }
}
