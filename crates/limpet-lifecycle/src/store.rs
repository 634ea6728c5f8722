//! [`LifecycleStore`]: the [`TimeState`] in the `state` partition, as two alternately
//! written copies of its [`crate::record`], beside the A/B record.
//!
//! # Layout
//!
//! ```text
//! state partition offset   content
//! 0                        A/B record copy 0 (limpet-state)
//! 262144 (256 KiB)         time record copy 0 (4096 bytes)
//! 524288 (512 KiB)         A/B record copy 1 (limpet-state)
//! 786432 (768 KiB)         time record copy 1 (4096 bytes)
//! 790528                   unused, to the end of the partition (1 MiB from `limpet build`)
//! ```
//!
//! The two time copies are 512 KiB apart, as the A/B copies are, so they never share a
//! flash erase block or write unit up to 512 KiB; and each is 256 KiB from every A/B copy,
//! so no unit up to 256 KiB holds a time copy and an A/B copy. The A/B record is never
//! read or written here, and `limpet-state` never touches these offsets (its rules leave
//! them "unused: never read or written").
//!
//! # Reading ([`LifecycleStore::load`]) and writing ([`LifecycleStore::store`])
//!
//! The A/B record's rules (`limpet_state::copies`), over these copies:
//!
//! 1. Read both copies; a copy that cannot be read, is blank or fails a check of
//!    [`crate::record::decode`] is ignored. The valid copy with the higher sequence wins
//!    (copy 0 on a tie). None valid: [`StoreError::Blank`] when both are blank, else
//!    [`StoreError::Read`] when one could not be read, else [`StoreError::NoValidCopy`].
//! 2. A write goes to the copy that does *not* hold the newest record, with its sequence
//!    plus one, then flushes. A power cut at any byte of it leaves the newest record intact:
//!    a load returns the old state or the new one, never a mix, and the floor never goes
//!    back. No valid copy and both readable: copy 0, sequence 1; a copy that cannot be read
//!    while none is valid: refused ([`StoreError::Read`]).
//! 3. Refused too: a state whose floor, or accepted end of support, is below the stored one
//!    ([`StoreError::FloorDrop`], [`StoreError::SupportDrop`]: a stale value from a caller),
//!    and sequence `u64::MAX + 1`.
//!
//! # What the caller does with an error (PID 1)
//!
//! - [`StoreError::Blank`]: never written (a new device, or one provisioned before this
//!   record existed): start from [`TimeState::factory`] and store it.
//! - [`StoreError::NoValidCopy`]: both copies damaged; the saved floor, the uptime count and
//!   accepted extensions are lost. Start from [`TimeState::factory`] (the floor falls back to
//!   the slot's build time), store it, and report the storage fault.
//! - [`StoreError::Read`]: the medium fails; run from [`TimeState::factory`], write nothing.

use std::io;

use limpet_state::frame::FrameError;
use limpet_state::{BlockDevice, CopyId};
use thiserror::Error;

use crate::record::{self, Record, RecordError, RECORD_SIZE};
use crate::time::{TimeState, WallTime};

/// State partition offsets of the two copies of the time record.
pub const COPY_OFFSETS: [u64; 2] = [256 * 1024, 768 * 1024];

/// Smallest state partition holding both copies.
pub const MIN_PARTITION_LEN: u64 = 768 * 1024 + RECORD_SIZE as u64;

/// The partition offset of `copy`.
pub fn offset(copy: CopyId) -> u64 {
    match copy {
        CopyId::First => COPY_OFFSETS[0],
        CopyId::Second => COPY_OFFSETS[1],
    }
}

/// The newest valid record and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// The state.
    pub state: TimeState,
    /// Its sequence number.
    pub sequence: u64,
    /// The copy it was read from.
    pub copy: CopyId,
}

/// Why the time record cannot be loaded or stored.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Both copies are blank: the record was never written.
    #[error("time record is blank")]
    Blank,
    /// Both copies are readable and neither is valid.
    #[error("no valid copy of the time record (copy 0: {first}; copy 1: {second})")]
    NoValidCopy {
        /// Why copy 0 is invalid.
        first: RecordError,
        /// Why copy 1 is invalid.
        second: RecordError,
    },
    /// The partition is too small for the two copies.
    #[error("state partition is {len} bytes, the time record needs {MIN_PARTITION_LEN}")]
    TooSmall {
        /// Its size.
        len: u64,
    },
    /// The partition's size cannot be read.
    #[error("cannot get the size of the state partition")]
    Size {
        /// The device's error.
        source: io::Error,
    },
    /// A copy cannot be read (and no valid copy was found).
    #[error("reading time record copy {copy} at offset {offset}")]
    Read {
        /// The copy.
        copy: CopyId,
        /// Its partition offset.
        offset: u64,
        /// The device's error.
        source: io::Error,
    },
    /// A copy cannot be written.
    #[error("writing time record copy {copy} at offset {offset}")]
    Write {
        /// The copy.
        copy: CopyId,
        /// Its partition offset.
        offset: u64,
        /// The device's error.
        source: io::Error,
    },
    /// The written copy cannot be made durable.
    #[error("flushing time record copy {copy}")]
    Flush {
        /// The copy.
        copy: CopyId,
        /// The device's error.
        source: io::Error,
    },
    /// The state to store has a lower floor than the stored one (a stale value).
    #[error("refusing to lower the time floor from {stored} to {new}")]
    FloorDrop {
        /// The stored floor.
        stored: WallTime,
        /// The floor of the state given.
        new: WallTime,
    },
    /// The state to store has an earlier accepted end of support than the stored one.
    #[error("refusing to lower the accepted end of support from {stored} to {new:?}")]
    SupportDrop {
        /// The stored end.
        stored: WallTime,
        /// The end of the state given.
        new: Option<WallTime>,
    },
    /// The newest copy's sequence is `u64::MAX`.
    #[error("time record sequence number exhausted")]
    SequenceExhausted,
}

/// The time record on a [`BlockDevice`] holding the `state` partition.
#[derive(Debug)]
pub struct LifecycleStore<D> {
    dev: D,
}

/// One copy, read and decoded.
enum Scanned {
    Valid(Record),
    Invalid(RecordError),
    Unreadable(io::Error),
}

impl<D: BlockDevice> LifecycleStore<D> {
    /// The store on `dev`, which must hold at least [`MIN_PARTITION_LEN`] bytes.
    pub fn new(dev: D) -> Result<Self, StoreError> {
        let len = dev.len().map_err(|source| StoreError::Size { source })?;
        if len < MIN_PARTITION_LEN {
            return Err(StoreError::TooSmall { len });
        }
        Ok(LifecycleStore { dev })
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

    /// The newest valid state (reading rules in the module doc).
    pub fn load(&mut self) -> Result<Loaded, StoreError> {
        match self.newest() {
            Ok((copy, record)) => Ok(Loaded {
                state: record.state,
                sequence: record.sequence,
                copy,
            }),
            Err(e) => Err(e),
        }
    }

    /// Writes `state` as the newest record (writing rules in the module doc) and returns
    /// the sequence number it was written with.
    pub fn store(&mut self, state: &TimeState) -> Result<u64, StoreError> {
        let (target, sequence) = match self.newest() {
            Ok((copy, record)) => {
                check_successor(&record.state, state)?;
                let next = record
                    .sequence
                    .checked_add(1)
                    .ok_or(StoreError::SequenceExhausted)?;
                (copy.other(), next)
            }
            Err(StoreError::Blank | StoreError::NoValidCopy { .. }) => (CopyId::First, 1),
            Err(e) => return Err(e),
        };
        let bytes = record::encode(state, sequence);
        let at = offset(target);
        self.dev
            .write_at(at, &bytes)
            .map_err(|source| StoreError::Write {
                copy: target,
                offset: at,
                source,
            })?;
        self.dev.flush().map_err(|source| StoreError::Flush {
            copy: target,
            source,
        })?;
        Ok(sequence)
    }

    fn scan(&mut self, copy: CopyId) -> Scanned {
        let mut buf = [0u8; RECORD_SIZE];
        if let Err(e) = self.dev.read_at(offset(copy), &mut buf) {
            return Scanned::Unreadable(e);
        }
        match record::decode(&buf) {
            Ok(r) => Scanned::Valid(r),
            Err(e) => Scanned::Invalid(e),
        }
    }

    /// The valid copy with the higher sequence (copy 0 on a tie), or why there is none.
    fn newest(&mut self) -> Result<(CopyId, Record), StoreError> {
        let first = self.scan(CopyId::First);
        let second = self.scan(CopyId::Second);
        let read_error = |copy, source| StoreError::Read {
            copy,
            offset: offset(copy),
            source,
        };
        match (first, second) {
            (Scanned::Valid(a), Scanned::Valid(b)) if b.sequence > a.sequence => {
                Ok((CopyId::Second, b))
            }
            (Scanned::Valid(a), _) => Ok((CopyId::First, a)),
            (_, Scanned::Valid(b)) => Ok((CopyId::Second, b)),
            (Scanned::Unreadable(source), _) => Err(read_error(CopyId::First, source)),
            (_, Scanned::Unreadable(source)) => Err(read_error(CopyId::Second, source)),
            (
                Scanned::Invalid(RecordError::Frame(FrameError::Blank)),
                Scanned::Invalid(RecordError::Frame(FrameError::Blank)),
            ) => Err(StoreError::Blank),
            (Scanned::Invalid(first), Scanned::Invalid(second)) => {
                Err(StoreError::NoValidCopy { first, second })
            }
        }
    }
}

/// Rule 3: neither the floor nor the accepted end of support may go back.
fn check_successor(stored: &TimeState, new: &TimeState) -> Result<(), StoreError> {
    if new.floor() < stored.floor() {
        return Err(StoreError::FloorDrop {
            stored: stored.floor(),
            new: new.floor(),
        });
    }
    let (old_end, new_end) = (stored.parts().support_until, new.parts().support_until);
    if let Some(stored) = old_end {
        if new_end < Some(stored) {
            return Err(StoreError::SupportDrop {
                stored,
                new: new_end,
            });
        }
    }
    Ok(())
}
