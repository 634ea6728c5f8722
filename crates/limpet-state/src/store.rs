//! [`StateStore`]: the state partition on a [`BlockDevice`], as two alternately written
//! copies of the record.
//!
//! The layout and the reading and writing rules are [`crate::copies`]'s (the `no_std`
//! core the UEFI boot loader shares): this module only reads and writes the copies at
//! their partition offsets, checks the partition's size and flushes through the device.
//!
//! # What the caller does with an error (limpet-init)
//!
//! - [`StateError::Blank`]: the state was never written (a disk provisioned without
//!   `limpet build`'s state). Boot slot A if its header verifies, and store
//!   [`crate::State::factory`] with that header's version.
//! - [`StateError::NoValidCopy`]: both copies are damaged; the floor and the trial are lost.
//!   Verify both slot headers, boot the one with the highest valid version, store a state
//!   with it committed (its version becomes the floor), and report the storage fault.
//! - [`StateError::Read`]: the medium fails; boot as for `NoValidCopy` but do not write.

use std::io;

use crate::copies::{self, Copies};
use crate::device::BlockDevice;
use crate::machine::State;
use crate::record::RECORD_SIZE;

pub use crate::copies::{CopyId, COPY_OFFSETS, MIN_PARTITION_LEN};

/// What a read of one copy found.
pub type CopyStatus = copies::CopyStatus<io::Error>;

/// The result of [`StateStore::load_detailed`].
pub type Loaded = copies::Loaded<io::Error>;

/// Why the state cannot be loaded or stored.
pub type StateError = copies::StoreError<io::Error>;

/// The state partition on a [`BlockDevice`].
#[derive(Debug)]
pub struct StateStore<D> {
    dev: D,
}

impl<D: BlockDevice> StateStore<D> {
    /// The store on `dev`, which must hold at least [`MIN_PARTITION_LEN`] bytes.
    pub fn new(dev: D) -> Result<Self, StateError> {
        let len = dev.len().map_err(|source| StateError::Size { source })?;
        copies::check_len(len)?;
        Ok(StateStore { dev })
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// The device, mutably (tests use it to restore a simulated disk's power).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    /// The device, giving up the store.
    pub fn into_inner(self) -> D {
        self.dev
    }

    /// The newest valid state (reading rules in [`crate::copies`]).
    pub fn load(&mut self) -> Result<State, StateError> {
        self.load_detailed().map(|l| l.state)
    }

    /// The newest valid state, with where it came from and what the other copy holds.
    pub fn load_detailed(&mut self) -> Result<Loaded, StateError> {
        copies::load_detailed(&mut OnDevice(&mut self.dev))
    }

    /// Writes `state` as the newest record (writing rules in [`crate::copies`]) and returns
    /// the sequence number it was written with.
    pub fn store(&mut self, state: &State) -> Result<u64, StateError> {
        copies::store(&mut OnDevice(&mut self.dev), state)
    }
}

/// The two copies at their offsets on a block device.
struct OnDevice<'a, D>(&'a mut D);

impl<D: BlockDevice> Copies for OnDevice<'_, D> {
    type Error = io::Error;

    fn read_copy(&mut self, copy: CopyId, buf: &mut [u8; RECORD_SIZE]) -> io::Result<()> {
        self.0.read_at(copy.offset(), buf)
    }

    fn write_copy(&mut self, copy: CopyId, bytes: &[u8; RECORD_SIZE]) -> io::Result<()> {
        self.0.write_at(copy.offset(), bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
