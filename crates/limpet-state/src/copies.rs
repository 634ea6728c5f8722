//! The two-copy rules of the state partition, over any medium: which copy to read, which
//! to write, the new record's bytes. `no_std`: PID 1 ([`crate::StateStore`], over a
//! [`crate::BlockDevice`]) and the UEFI boot loader (over the firmware's BlockIO) both
//! call [`load_detailed`] and [`store`], so the rules exist once.
//!
//! # Layout
//!
//! ```text
//! partition offset   content
//! 0                  copy 0: one record (4096 bytes, format in `crate::record`)
//! 4096               not read or written here (limpet-lifecycle's time record copy 0
//!                    is at 256 KiB)
//! 524288 (512 KiB)   copy 1: one record
//! 528384             not read or written here (time record copy 1 at 768 KiB), to the
//!                    end of the partition (1 MiB from `limpet build`)
//! ```
//!
//! The copies are 512 KiB apart, not adjacent, so that they never share a flash erase
//! block or an eMMC write unit up to 512 KiB (partitions start 1 MiB-aligned): a power cut
//! while the controller programs or erases the block holding one copy cannot damage the
//! other (MLC NAND paired-page corruption, FTL read-modify-write of a whole unit).
//!
//! # Reading ([`load_detailed`])
//!
//! 1. Read and decode both copies; a copy that cannot be read, is blank, or fails any
//!    check of [`crate::record::decode`] is ignored.
//! 2. Return the valid copy with the higher sequence (plain `u64` comparison; copy 0 on a
//!    tie, which the write rule never produces).
//! 3. No valid copy: [`StoreError::Blank`] when both copies are blank (all `0x00` or all
//!    `0xFF`), else [`StoreError::Read`] when a copy could not be read, else
//!    [`StoreError::NoValidCopy`].
//!
//! # Writing ([`store`])
//!
//! 1. Read both copies as above, to find the newest valid one (sequence `n`).
//! 2. Write the new record, sequence `n + 1`, over the *other* copy, then flush. The copy
//!    holding the newest state is never written, so a power cut at any byte of the write
//!    leaves it readable: a load returns the old state (the torn copy fails its checks) or
//!    the new one (the write completed), never a mix.
//! 3. No valid copy and both readable (blank or corrupt): write copy 0 with sequence 1.
//!    A copy that cannot be read while no other copy is valid: refuse
//!    ([`StoreError::Read`]); its unknown sequence could later outrank what is written.
//!
//! Refused too: a state whose version floor is below the newest stored floor
//! ([`StoreError::FloorDrop`], a stale value from a caller), and sequence `u64::MAX + 1`
//! ([`StoreError::SequenceExhausted`]; at one write per second that is 584 billion years
//! away).
//!
//! Consequence of alternation: after a write, the other copy holds the previous state. If
//! the newest copy later rots, a load returns that previous state: consistent, one step old.

use alloc::boxed::Box;
use core::fmt;

use thiserror::Error;

use crate::frame::FrameError;
use crate::machine::State;
use crate::record::{self, Record, RecordError, RECORD_SIZE};
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

/// The medium holding the two copies: what [`load_detailed`] and [`store`] need of it.
pub trait Copies {
    /// The medium's error.
    type Error;

    /// Reads the whole record of `copy` (at partition offset [`CopyId::offset`]).
    fn read_copy(&mut self, copy: CopyId, buf: &mut [u8; RECORD_SIZE]) -> Result<(), Self::Error>;

    /// Writes the whole record of `copy`.
    fn write_copy(&mut self, copy: CopyId, bytes: &[u8; RECORD_SIZE]) -> Result<(), Self::Error>;

    /// Makes every completed write durable (through the medium's write cache).
    fn flush(&mut self) -> Result<(), Self::Error>;
}

impl<C: Copies + ?Sized> Copies for &mut C {
    type Error = C::Error;

    fn read_copy(&mut self, copy: CopyId, buf: &mut [u8; RECORD_SIZE]) -> Result<(), Self::Error> {
        (**self).read_copy(copy, buf)
    }

    fn write_copy(&mut self, copy: CopyId, bytes: &[u8; RECORD_SIZE]) -> Result<(), Self::Error> {
        (**self).write_copy(copy, bytes)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        (**self).flush()
    }
}

/// What a read of one copy found.
#[derive(Debug)]
pub enum CopyStatus<E> {
    /// A valid record.
    Valid {
        /// Its sequence number.
        sequence: u64,
    },
    /// Readable, but not a valid record.
    Invalid(RecordError),
    /// The medium returned an error.
    Unreadable(E),
}

/// The result of [`load_detailed`].
#[derive(Debug)]
pub struct Loaded<E> {
    /// The newest valid state.
    pub state: State,
    /// Its sequence number.
    pub sequence: u64,
    /// The copy it was read from.
    pub copy: CopyId,
    /// What the other copy holds.
    pub other: CopyStatus<E>,
}

/// Why the state cannot be loaded or stored; `E` is the medium's error.
#[derive(Debug, Error)]
pub enum StoreError<E> {
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
        /// The medium's error.
        source: E,
    },
    /// A copy cannot be read (and no valid copy was found).
    #[error("reading state copy {copy} at offset {offset}")]
    Read {
        /// The copy.
        copy: CopyId,
        /// Its partition offset.
        offset: u64,
        /// The medium's error.
        source: E,
    },
    /// A copy cannot be written.
    #[error("writing state copy {copy} at offset {offset}")]
    Write {
        /// The copy.
        copy: CopyId,
        /// Its partition offset.
        offset: u64,
        /// The medium's error.
        source: E,
    },
    /// The written copy cannot be made durable.
    #[error("flushing state copy {copy}")]
    Flush {
        /// The copy.
        copy: CopyId,
        /// The medium's error.
        source: E,
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

/// Checks a partition's size: the second copy must fit.
pub fn check_len<E>(len: u64) -> Result<(), StoreError<E>> {
    if len < MIN_PARTITION_LEN {
        return Err(StoreError::TooSmall { len });
    }
    Ok(())
}

/// The newest valid state, with where it came from and what the other copy holds
/// (reading rules in the module doc).
pub fn load_detailed<C: Copies>(medium: &mut C) -> Result<Loaded<C::Error>, StoreError<C::Error>> {
    match newest(medium) {
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

/// Writes `state` as the newest record (writing rules in the module doc) and returns the
/// sequence number it was written with.
pub fn store<C: Copies>(medium: &mut C, state: &State) -> Result<u64, StoreError<C::Error>> {
    let (target, sequence) = match newest(medium) {
        Newest::Found { copy, record, .. } => {
            if record.state.floor().is_newer_than(state.floor()) {
                return Err(StoreError::FloorDrop {
                    stored: record.state.floor().clone(),
                    new: state.floor().clone(),
                });
            }
            let next = record
                .sequence
                .checked_add(1)
                .ok_or(StoreError::SequenceExhausted)?;
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
    medium
        .write_copy(target, &bytes)
        .map_err(|source| StoreError::Write {
            copy: target,
            offset: target.offset(),
            source,
        })?;
    medium.flush().map_err(|source| StoreError::Flush {
        copy: target,
        source,
    })?;
    Ok(sequence)
}

/// Why one copy is not valid.
enum Bad<E> {
    Invalid(RecordError),
    Unreadable(E),
}

/// One copy, read and decoded.
type Scanned<E> = Result<Record, Bad<E>>;

/// Which copy is the newest valid one.
enum Newest<E> {
    Found {
        copy: CopyId,
        record: Box<Record>,
        other: Scanned<E>,
    },
    NoneValid {
        first: Bad<E>,
        second: Bad<E>,
    },
}

fn scan<C: Copies>(medium: &mut C, copy: CopyId) -> Scanned<C::Error> {
    let mut buf = [0u8; RECORD_SIZE];
    medium.read_copy(copy, &mut buf).map_err(Bad::Unreadable)?;
    record::decode(&buf).map_err(Bad::Invalid)
}

/// Reads both copies and picks the valid one with the higher sequence; copy 0 on a tie.
fn newest<C: Copies>(medium: &mut C) -> Newest<C::Error> {
    let first = scan(medium, CopyId::First);
    let second = scan(medium, CopyId::Second);
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

fn read_error<E>(copy: CopyId, source: E) -> StoreError<E> {
    StoreError::Read {
        copy,
        offset: copy.offset(),
        source,
    }
}

/// The error when neither copy is valid (reading rule 3).
fn none_valid<E>(first: Bad<E>, second: Bad<E>) -> StoreError<E> {
    match (first, second) {
        (Bad::Unreadable(source), _) => read_error(CopyId::First, source),
        (_, Bad::Unreadable(source)) => read_error(CopyId::Second, source),
        (
            Bad::Invalid(RecordError::Frame(FrameError::Blank)),
            Bad::Invalid(RecordError::Frame(FrameError::Blank)),
        ) => StoreError::Blank,
        (Bad::Invalid(first), Bad::Invalid(second)) => StoreError::NoValidCopy { first, second },
    }
}
