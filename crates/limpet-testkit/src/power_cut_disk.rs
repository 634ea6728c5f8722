//! [`SimDisk`]: an in-memory [`BlockDevice`] that can lose power mid-write and fail reads,
//! for the power-cut tests of the A/B state (limpet-state) and of installing an update
//! (limpet-install).
//!
//! Power-cut model: after [`SimDisk::cut_power_after`]`(n)`, the next `n` bytes written
//! reach the medium and the write that crosses the limit keeps only its prefix (the rest of
//! its range keeps the old contents). From then on the disk is off: every read, write and
//! flush fails until [`SimDisk::power_on`], which models the reboot. Contents survive.
//!
//! [`SharedDisk`] is one such disk shared by several partitions (`limpet_state::Region`s
//! of it), so they all lose power together, as the partitions of one real disk do.

use std::cell::{Ref, RefCell, RefMut};
use std::io;
use std::ops::Range;
use std::rc::Rc;

use limpet_state::BlockDevice;

/// Linux `EIO`, what a failing disk returns.
const EIO: i32 = 5;

/// An in-memory disk with injectable power cuts and read errors.
#[derive(Debug, Clone)]
pub struct SimDisk {
    data: Vec<u8>,
    /// Bytes that may still be written before the power goes; `None`: no cut planned.
    budget: Option<u64>,
    power: Power,
    failing_reads: Option<Range<u64>>,
    written: u64,
    flushes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    On,
    Off,
}

impl SimDisk {
    /// A disk of `len` zero bytes.
    pub fn new(len: usize) -> SimDisk {
        SimDisk::from_bytes(vec![0; len])
    }

    /// A disk holding `data`.
    pub fn from_bytes(data: Vec<u8>) -> SimDisk {
        SimDisk {
            data,
            budget: None,
            power: Power::On,
            failing_reads: None,
            written: 0,
            flushes: 0,
        }
    }

    /// Cuts the power once `bytes` more bytes have been written.
    pub fn cut_power_after(&mut self, bytes: u64) {
        self.budget = Some(bytes);
    }

    /// Restores power (the reboot): clears the planned cut; contents are kept.
    pub fn power_on(&mut self) {
        self.budget = None;
        self.power = Power::On;
    }

    /// True while the power is cut.
    pub fn is_off(&self) -> bool {
        self.power == Power::Off
    }

    /// Makes reads touching `range` fail with `EIO`; `None` heals the disk.
    pub fn fail_reads(&mut self, range: Option<Range<u64>>) {
        self.failing_reads = range;
    }

    /// The medium's contents.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// The medium's contents, to corrupt by hand.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Bytes written to the medium so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Successful flushes so far.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    fn check_on(&self) -> io::Result<()> {
        match self.power {
            Power::On => Ok(()),
            Power::Off => Err(io::Error::other("simulated disk is powered off")),
        }
    }

    fn range(&self, offset: u64, n: usize) -> io::Result<Range<usize>> {
        let start = usize::try_from(offset).ok();
        match start.and_then(|s| Some(s..s.checked_add(n)?)) {
            Some(r) if r.end <= self.data.len() => Ok(r),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("access of {n} bytes at {offset} is past the end of the disk"),
            )),
        }
    }
}

impl BlockDevice for SimDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check_on()?;
        let r = self.range(offset, buf.len())?;
        if let Some(bad) = &self.failing_reads {
            let (start, end) = (offset, offset.saturating_add(buf.len() as u64));
            if start < bad.end && bad.start < end {
                return Err(io::Error::from_raw_os_error(EIO));
            }
        }
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_on()?;
        let r = self.range(offset, data.len())?;
        let keep = match self.budget {
            None => data.len(),
            Some(b) => usize::try_from(b).map_or(data.len(), |b| b.min(data.len())),
        };
        self.data[r.start..r.start + keep].copy_from_slice(&data[..keep]);
        self.written += keep as u64;
        if let Some(b) = self.budget {
            let left = b.saturating_sub(keep as u64);
            self.budget = Some(left);
            if left == 0 {
                // The power goes at the limit, even when this write just fits: its flush
                // never completes.
                self.power = Power::Off;
            }
        }
        if keep < data.len() {
            return Err(io::Error::other("simulated power cut during write"));
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check_on()?;
        self.flushes += 1;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.len() as u64)
    }
}

/// A [`SimDisk`] shared by handles: clones are the same disk.
#[derive(Debug, Clone)]
pub struct SharedDisk(Rc<RefCell<SimDisk>>);

impl SharedDisk {
    /// Shares `disk`.
    pub fn new(disk: SimDisk) -> SharedDisk {
        SharedDisk(Rc::new(RefCell::new(disk)))
    }

    /// The disk, to inspect (panics while a write through another handle is under way).
    pub fn borrow(&self) -> Ref<'_, SimDisk> {
        self.0.borrow()
    }

    /// The disk, to cut or restore its power or corrupt it.
    pub fn borrow_mut(&self) -> RefMut<'_, SimDisk> {
        self.0.borrow_mut()
    }
}

impl BlockDevice for SharedDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.borrow_mut().read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.borrow_mut().write_at(offset, data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }

    fn len(&self) -> io::Result<u64> {
        self.0.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn torn_write_keeps_a_prefix() {
        let mut d = SimDisk::from_bytes(vec![1; 16]);
        d.cut_power_after(3);
        assert!(d.write_at(4, &[9; 8]).is_err());
        assert_eq!(d.bytes(), &[1, 1, 1, 1, 9, 9, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert!(d.is_off());
        assert!(d.read_at(0, &mut [0; 4]).is_err());
        assert!(d.flush().is_err());
        d.power_on();
        d.write_at(0, &[7]).unwrap();
        assert_eq!(d.bytes()[0], 7);
    }

    #[test]
    fn shared_handles_lose_power_together() {
        let disk = SharedDisk::new(SimDisk::new(64));
        let (mut a, mut b) = (disk.clone(), disk.clone());
        disk.borrow_mut().cut_power_after(4);
        a.write_at(0, &[1; 4]).unwrap();
        assert!(b.read_at(32, &mut [0; 4]).is_err());
        disk.borrow_mut().power_on();
        b.read_at(0, &mut [0; 4]).unwrap();
        assert_eq!(disk.borrow().bytes()[..4], [1; 4]);
    }

    #[test]
    fn read_errors_are_eio() {
        let mut d = SimDisk::new(8192);
        d.fail_reads(Some(4096..4097));
        assert!(d.read_at(0, &mut [0; 4096]).is_ok());
        let e = d.read_at(4000, &mut [0; 200]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(EIO));
        d.fail_reads(None);
        assert!(d.read_at(4000, &mut [0; 200]).is_ok());
    }
}
