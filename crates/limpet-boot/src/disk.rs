//! The disk seam: [`Disk`], the boot disk as bytes; [`Part`], a partition of it; and
//! [`StateCopies`], the `state` partition as limpet-state's two record copies.
//!
//! Rules:
//! - Every access is bounds-checked against its partition before it reaches the disk: a
//!   hostile GPT or header cannot make the loader read or write outside the partition it
//!   names.
//! - Only the state partition is ever written, and only through limpet-state's two-copy
//!   rules ([`limpet_state::copies`]); a write is followed by [`Disk::flush`].

use core::fmt;

use limpet_image::io::{IoError, ReadAt};
use limpet_state::copies::Copies;
use limpet_state::record::RECORD_SIZE;
use limpet_state::CopyId;

/// The boot disk, byte-addressed (the UEFI implementation reads whole blocks through the
/// firmware's BlockIO and copies out the bytes asked for).
pub trait Disk {
    /// The medium's error.
    type Error: fmt::Debug + fmt::Display;

    /// The size of a logical block (GPT's LBA size).
    fn block_size(&self) -> u32;

    /// The disk's size in bytes.
    fn len(&self) -> u64;

    /// True when the disk holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from byte `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Writes `data` at byte `offset` (block-aligned offset and length).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error>;

    /// Makes every completed write durable (the firmware's `FlushBlocks`).
    fn flush(&mut self) -> Result<(), Self::Error>;
}

/// A partition found in the GPT: its name and its byte range on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// GPT partition name (`state`, `slot-a`, `slot-b`).
    pub name: &'static str,
    /// First byte on the disk.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// An access outside its partition, or a failing disk.
#[derive(Debug, thiserror::Error)]
pub enum PartError<E> {
    /// `offset + len` is outside the partition.
    #[error("{len} bytes at {offset} are outside partition {part} ({size} bytes)")]
    Outside {
        /// The partition.
        part: &'static str,
        /// Offset in the partition.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// The partition's size.
        size: u64,
    },
    /// The disk failed.
    #[error("disk error in partition {part} at offset {offset}: {source}")]
    Disk {
        /// The partition.
        part: &'static str,
        /// Offset in the partition.
        offset: u64,
        /// The medium's error (shown inline: the firmware's errors have no chain).
        source: E,
    },
}

impl Part {
    /// The disk offset of `offset..offset + len` in this partition, after checking it fits.
    pub fn map<E>(&self, offset: u64, len: u64) -> Result<u64, PartError<E>> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(self.start + offset),
            _ => Err(PartError::Outside {
                part: self.name,
                offset,
                len,
                size: self.len,
            }),
        }
    }

    /// Reads `buf.len()` bytes at `offset` of this partition.
    pub fn read<D: Disk>(
        &self,
        disk: &mut D,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), PartError<D::Error>> {
        let at = self.map(offset, buf.len() as u64)?;
        disk.read_at(at, buf).map_err(|source| PartError::Disk {
            part: self.name,
            offset,
            source,
        })
    }
}

/// The whole disk as limpet-image's [`ReadAt`] (for its GPT reader).
#[derive(Debug)]
pub struct WholeDisk<'a, D>(pub &'a mut D);

impl<D: Disk> ReadAt for WholeDisk<'_, D> {
    fn size(&mut self) -> Result<u64, IoError> {
        Ok(self.0.len())
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        // limpet-image's no_std error holds a static text: the firmware's status is lost
        // here, the failing offset is not (limpet-image's error names it).
        self.0
            .read_at(offset, buf)
            .map_err(|_| IoError::other("the disk's block read failed"))
    }
}

/// One partition as limpet-image's [`ReadAt`] (for its slot reader): offsets are the
/// partition's, every access is bounds-checked by [`Part::read`].
#[derive(Debug)]
pub struct PartReader<'a, D> {
    /// The boot disk.
    pub disk: &'a mut D,
    /// The partition.
    pub part: Part,
}

impl<D: Disk> ReadAt for PartReader<'_, D> {
    fn size(&mut self) -> Result<u64, IoError> {
        Ok(self.part.len)
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.part.read(self.disk, offset, buf).map_err(|e| match e {
            PartError::Outside { .. } => IoError::other("read outside the partition"),
            PartError::Disk { .. } => IoError::other("the disk's block read failed"),
        })
    }
}

/// The `state` partition as limpet-state's two record copies.
#[derive(Debug)]
pub struct StateCopies<'a, D> {
    /// The boot disk.
    pub disk: &'a mut D,
    /// The `state` partition (at least [`limpet_state::copies::MIN_PARTITION_LEN`] bytes,
    /// checked by the caller with [`limpet_state::copies::check_len`]).
    pub part: Part,
}

impl<D: Disk> Copies for StateCopies<'_, D> {
    type Error = PartError<D::Error>;

    fn read_copy(&mut self, copy: CopyId, buf: &mut [u8; RECORD_SIZE]) -> Result<(), Self::Error> {
        self.part.read(self.disk, copy.offset(), buf)
    }

    fn write_copy(&mut self, copy: CopyId, bytes: &[u8; RECORD_SIZE]) -> Result<(), Self::Error> {
        let offset = copy.offset();
        let at = self.part.map(offset, RECORD_SIZE as u64)?;
        self.disk
            .write_at(at, bytes)
            .map_err(|source| PartError::Disk {
                part: self.part.name,
                offset,
                source,
            })
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.disk.flush().map_err(|source| PartError::Disk {
            part: self.part.name,
            offset: 0,
            source,
        })
    }
}

/// An in-memory disk for the unit tests, with failures on demand.
#[cfg(test)]
pub mod mem {
    use alloc::vec::Vec;

    use super::Disk;

    /// A disk as `limpet build` lays it out, written by limpet-image's own disk writer:
    /// 1 MiB ESP, 1 MiB state (blank), two 2 MiB slots with `slot_a` in the first, 1 MiB
    /// data.
    pub fn written(slot_a: &[u8], guid_seed: [u8; 32]) -> MemDisk {
        let mut out = std::io::Cursor::new(Vec::new());
        #[allow(clippy::unwrap_used)] // Test code: the spec is valid.
        limpet_image::disk::write(
            &limpet_image::disk::DiskSpec {
                esp: &[0; 1 << 20],
                state_size: 1 << 20,
                slot_size: 2 << 20,
                data_size: 1 << 20,
                slot_a,
                guid_seed,
            },
            &mut out,
        )
        .unwrap();
        MemDisk {
            bytes: out.into_inner(),
            ..MemDisk::default()
        }
    }

    /// A disk in a `Vec`, 512-byte blocks.
    #[derive(Debug, Clone, Default)]
    pub struct MemDisk {
        /// The bytes.
        pub bytes: Vec<u8>,
        /// When set, every write fails (a read-only or failing medium).
        pub fail_writes: bool,
        /// When set, power is lost after this many more written bytes: the write in
        /// progress stops there (a torn write) and every later write and flush fails.
        pub cut_power_after: Option<usize>,
        /// Writes done.
        pub writes: usize,
        /// Flushes done.
        pub flushes: usize,
    }

    impl Disk for MemDisk {
        type Error = &'static str;

        fn block_size(&self) -> u32 {
            512
        }

        fn len(&self) -> u64 {
            self.bytes.len() as u64
        }

        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
            let start = usize::try_from(offset).map_err(|_| "offset")?;
            let src = self
                .bytes
                .get(start..start + buf.len())
                .ok_or("read past the end")?;
            buf.copy_from_slice(src);
            Ok(())
        }

        fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
            if self.fail_writes {
                return Err("write refused by the test");
            }
            let start = usize::try_from(offset).map_err(|_| "offset")?;
            let dst = self
                .bytes
                .get_mut(start..start + data.len())
                .ok_or("write past the end")?;
            if let Some(left) = self.cut_power_after {
                let n = left.min(data.len());
                dst[..n].copy_from_slice(&data[..n]);
                self.cut_power_after = Some(left - n);
                if n < data.len() {
                    return Err("power cut");
                }
            } else {
                dst.copy_from_slice(data);
            }
            self.writes += 1;
            Ok(())
        }

        fn flush(&mut self) -> Result<(), Self::Error> {
            if self.cut_power_after == Some(0) {
                return Err("power cut");
            }
            self.flushes += 1;
            Ok(())
        }
    }
}
