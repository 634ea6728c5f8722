//! [`StateStore`]: the state partition as two alternately written copies of the record.
//!
//! # Layout
//!
//! ```text
//! partition offset   content
//! 0                  copy 0: one record (4096 bytes, format in `crate::record`)
//! 4096               unused: never read or written
//! 524288 (512 KiB)   copy 1: one record
//! 528384             unused, to the end of the partition (1 MiB from `limpet build`)
//! ```
//!
//! The copies are 512 KiB apart, not adjacent, so that they never share a flash erase
//! block or an eMMC write unit up to 512 KiB (partitions start 1 MiB-aligned): a power cut
//! while the controller programs or erases the block holding one copy cannot damage the
//! other (MLC NAND paired-page corruption, FTL read-modify-write of a whole unit).
//!
//! # Reading ([`StateStore::load`])
//!
//! 1. Read and decode both copies; a copy that cannot be read, is blank, or fails any
//!    check of [`crate::record::decode`] is ignored.
//! 2. Return the valid copy with the higher sequence (plain `u64` comparison; copy 0 on a
//!    tie, which the write rule never produces).
//! 3. No valid copy: [`StateError::Blank`] when both copies are blank (all `0x00` or all
//!    `0xFF`), else [`StateError::Read`] when a copy could not be read, else
//!    [`StateError::NoValidCopy`].
//!
//! # Writing ([`StateStore::store`])
//!
//! 1. Read both copies as above, to find the newest valid one (sequence `n`).
//! 2. Write the new record, sequence `n + 1`, over the *other* copy, then flush. The copy
//!    holding the newest state is never written, so a power cut at any byte of the write
//!    leaves it readable: `load` returns the old state (the torn copy fails its checks) or
//!    the new one (the write completed), never a mix.
//! 3. No valid copy and both readable (blank or corrupt): write copy 0 with sequence 1.
//!    A copy that cannot be read while no other copy is valid: refuse
//!    ([`StateError::Read`]); its unknown sequence could later outrank what is written.
//!
//! Refused too: a state whose version floor is below the newest stored floor
//! ([`StateError::FloorDrop`], a stale value from a caller), and sequence `u64::MAX + 1`
//! ([`StateError::SequenceExhausted`]; at one write per second that is 584 billion years
//! away).
//!
//! Consequence of alternation: after a write, the other copy holds the previous state. If
//! the newest copy later rots, `load` returns that previous state: consistent, one step old.
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

use std::fmt;
use std::io;

use thiserror::Error;

use crate::device::BlockDevice;
use crate::machine::State;
use crate::record::{self, RecordError, RECORD_SIZE};
use crate::version::Version;

/// Partition offsets of the two copies.
pub const COPY_OFFSETS: [u64; 2] = [0, 512 * 1024];

/// Smallest state partition: the second copy must fit.
pub const MIN_PARTITION_LEN: u64 = 512 * 1024 + RECORD_SIZE as u64;

/// One of the two copies of the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyId {
    /// At partition offset 0.
    First,
    /// At partition offset 512 KiB.
    Second,
}

impl CopyId {
    /// Both copies, in order.
    pub const ALL: [CopyId; 2] = [CopyId::First, CopyId::Second];

    /// Partition offset of the copy.
    pub fn offset(self) -> u64 {
        match self {
            CopyId::First => COPY_OFFSETS[0],
            CopyId::Second => COPY_OFFSETS[1],
        }
    }

    /// The other copy.
    pub fn other(self) -> CopyId {
        match self {
            CopyId::First => CopyId::Second,
            CopyId::Second => CopyId::First,
        }
    }
}

impl fmt::Display for CopyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CopyId::First => "0",
            CopyId::Second => "1",
        })
    }
}

/// What a read of one copy found.
#[derive(Debug)]
pub enum CopyStatus {
    /// A valid record.
    Valid {
        /// Its sequence number.
        sequence: u64,
    },
    /// Readable, but not a valid record.
    Invalid(RecordError),
    /// The device returned an error.
    Unreadable(io::Error),
}

/// The result of [`StateStore::load_detailed`].
#[derive(Debug)]
pub struct Loaded {
    /// The newest valid state.
    pub state: State,
    /// Its sequence number.
    pub sequence: u64,
    /// The copy it was read from.
    pub copy: CopyId,
    /// What the other copy holds.
    pub other: CopyStatus,
}

/// Why the state cannot be loaded or stored.
#[derive(Debug, Error)]
pub enum StateError {
    /// Both copies are blank: the state was never written.
    #[error("state partition is blank")]
    Blank,
    /// Both copies are readable and neither is valid.
    #[error("no valid copy of the state (copy 0: {first}; copy 1: {second})")]
    NoValidCopy {
        /// Why copy 0 is invalid.
        first: RecordError,
        /// Why copy 1 is invalid.
        second: RecordError,
    },
    /// The partition is too small for the two copies.
    #[error("state partition is {len} bytes, at least {MIN_PARTITION_LEN} needed")]
    TooSmall {
        /// Its size.
        len: u64,
    },
    /// The partition's size cannot be read.
    #[error("cannot get the size of the state partition")]
    Size {
        /// The device error.
        source: io::Error,
    },
    /// A copy cannot be read (and no valid copy was found).
    #[error("reading state copy {copy} at offset {offset}")]
    Read {
        /// The copy.
        copy: CopyId,
        /// Its partition offset.
        offset: u64,
        /// The device error.
        source: io::Error,
    },
    /// A copy cannot be written.
    #[error("writing state copy {copy} at offset {offset}")]
    Write {
        /// The copy.
        copy: CopyId,
        /// Its partition offset.
        offset: u64,
        /// The device error.
        source: io::Error,
    },
    /// The written copy cannot be made durable.
    #[error("flushing state copy {copy}")]
    Flush {
        /// The copy.
        copy: CopyId,
        /// The device error.
        source: io::Error,
    },
    /// The state to store has a lower floor than the newest stored one (a stale value).
    #[error("refusing to lower the version floor from {stored} to {new}")]
    FloorDrop {
        /// The stored floor.
        stored: Version,
        /// The floor of the state given.
        new: Version,
    },
    /// The newest copy's sequence is `u64::MAX`.
    #[error("state sequence number exhausted")]
    SequenceExhausted,
}

/// The state partition on a [`BlockDevice`].
#[derive(Debug)]
pub struct StateStore<D> {
    dev: D,
}

/// Why one copy is not valid.
enum Bad {
    Invalid(RecordError),
    Unreadable(io::Error),
}

/// One copy, read and decoded.
type Scanned = Result<record::Record, Bad>;

/// Which copy is the newest valid one.
enum Newest {
    Found {
        copy: CopyId,
        record: Box<record::Record>,
        other: Scanned,
    },
    NoneValid {
        first: Bad,
        second: Bad,
    },
}

impl<D: BlockDevice> StateStore<D> {
    /// The store on `dev`, which must hold at least [`MIN_PARTITION_LEN`] bytes.
    pub fn new(dev: D) -> Result<Self, StateError> {
        let len = dev.len().map_err(|source| StateError::Size { source })?;
        if len < MIN_PARTITION_LEN {
            return Err(StateError::TooSmall { len });
        }
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

    /// The newest valid state (reading rules in the module doc).
    pub fn load(&mut self) -> Result<State, StateError> {
        self.load_detailed().map(|l| l.state)
    }

    /// The newest valid state, with where it came from and what the other copy holds.
    pub fn load_detailed(&mut self) -> Result<Loaded, StateError> {
        match self.newest() {
            Newest::Found {
                copy,
                record,
                other,
            } => Ok(Loaded {
                state: record.state,
                sequence: record.sequence,
                copy,
                other: match other {
                    Ok(o) => CopyStatus::Valid {
                        sequence: o.sequence,
                    },
                    Err(Bad::Invalid(e)) => CopyStatus::Invalid(e),
                    Err(Bad::Unreadable(e)) => CopyStatus::Unreadable(e),
                },
            }),
            Newest::NoneValid { first, second } => Err(none_valid(first, second)),
        }
    }

    /// Writes `state` as the newest record (writing rules in the module doc) and returns
    /// the sequence number it was written with.
    pub fn store(&mut self, state: &State) -> Result<u64, StateError> {
        let (target, sequence) = match self.newest() {
            Newest::Found { copy, record, .. } => {
                if record.state.floor().is_newer_than(state.floor()) {
                    return Err(StateError::FloorDrop {
                        stored: record.state.floor().clone(),
                        new: state.floor().clone(),
                    });
                }
                let next = record
                    .sequence
                    .checked_add(1)
                    .ok_or(StateError::SequenceExhausted)?;
                (copy.other(), next)
            }
            Newest::NoneValid {
                first: Bad::Unreadable(source),
                ..
            } => return Err(read_error(CopyId::First, source)),
            Newest::NoneValid {
                second: Bad::Unreadable(source),
                ..
            } => return Err(read_error(CopyId::Second, source)),
            Newest::NoneValid { .. } => (CopyId::First, 1),
        };
        let bytes = record::encode(state, sequence);
        let offset = target.offset();
        self.dev
            .write_at(offset, &bytes)
            .map_err(|source| StateError::Write {
                copy: target,
                offset,
                source,
            })?;
        self.dev.flush().map_err(|source| StateError::Flush {
            copy: target,
            source,
        })?;
        Ok(sequence)
    }

    fn scan(&mut self, copy: CopyId) -> Scanned {
        let mut buf = [0u8; RECORD_SIZE];
        self.dev
            .read_at(copy.offset(), &mut buf)
            .map_err(Bad::Unreadable)?;
        record::decode(&buf).map_err(Bad::Invalid)
    }

    /// Reads both copies and picks the valid one with the higher sequence; copy 0 on a tie.
    fn newest(&mut self) -> Newest {
        let first = self.scan(CopyId::First);
        let second = self.scan(CopyId::Second);
        match (first, second) {
            (Ok(a), Ok(b)) if b.sequence > a.sequence => Newest::Found {
                copy: CopyId::Second,
                record: Box::new(b),
                other: Ok(a),
            },
            (Ok(a), other) => Newest::Found {
                copy: CopyId::First,
                record: Box::new(a),
                other,
            },
            (Err(other), Ok(b)) => Newest::Found {
                copy: CopyId::Second,
                record: Box::new(b),
                other: Err(other),
            },
            (Err(first), Err(second)) => Newest::NoneValid { first, second },
        }
    }
}

fn read_error(copy: CopyId, source: io::Error) -> StateError {
    StateError::Read {
        copy,
        offset: copy.offset(),
        source,
    }
}

/// The error when neither copy is valid (reading rule 3).
fn none_valid(first: Bad, second: Bad) -> StateError {
    match (first, second) {
        (Bad::Unreadable(source), _) => read_error(CopyId::First, source),
        (_, Bad::Unreadable(source)) => read_error(CopyId::Second, source),
        (Bad::Invalid(RecordError::Blank), Bad::Invalid(RecordError::Blank)) => StateError::Blank,
        (Bad::Invalid(first), Bad::Invalid(second)) => StateError::NoValidCopy { first, second },
    }
}
