//! The on-disk record of a [`TimeState`]: exactly [`RECORD_SIZE`] bytes.
//!
//! # Format (version 1)
//!
//! All integers are little-endian. Offsets are from the start of the record.
//!
//! ```text
//! offset len   field
//! 0      8     magic                "LIMPETLC"
//! 8      4     format_version       u32 = 1
//! 12     4     record_size          u32 = 4096
//! 16     8     sequence             u64, +1 on every write
//! 24     8     floor                u64, seconds since 1970-01-01T00:00:00Z
//! 32     8     since_floor          u64, seconds of uptime since the floor was raised
//! 40     8     newest_signed        u64, seconds since the epoch; 0 = none verified yet
//! 48     8     since_fresh          u64, seconds of uptime without fresh signed metadata
//! 56     8     support_until        u64, accepted end of support (seconds since the epoch);
//!                                   0 = no extension accepted
//! 64     4     island               u32: 0 = connected, 1 = island mode (support ended),
//!                                   2 = island mode (no fresh signed metadata)
//! 68     4     reserved             written zero, ignored when read
//! 72     8     island_changed       u64, the earliest time (seconds since the epoch) of the
//!                                   last change of `island`: when island mode began
//!                                   (island 1 or 2) or ended (island 0); 0 = never in it
//! 80     8     roughtime            u64, the lower bound (midpoint − radius, seconds since the
//!                                   epoch) of the last Roughtime answer that raised the
//!                                   earliest time; 0 = none
//! 88     3996  reserved             written zero, ignored when read
//! 4084   8     sequence_trailer     u64, = sequence
//! 4092   4     crc32                CRC-32 (IEEE 802.3, as zlib) of bytes 0..4092
//! ```
//!
//! `island` and `island_changed` were added in reserved bytes without a new format version
//! (the partition's compatibility rule, docs/state.md): a record written before them holds
//! zero there and reads as connected, never in island mode; a PID 1 from before them (after
//! a rollback) ignores them and, when it writes, drops them, which loses nothing it needs:
//! the next PID 1 that knows island mode settles it again from the fields it keeps (rule 8
//! of `time.rs`). `roughtime` was added the same way: the raise itself is kept in
//! `since_floor` (rule 9), which every PID 1 reads, so an older one keeps the earliest time
//! a Roughtime answer gave, and only the note of where it came from is dropped. A new format version would instead have made such a PID 1 refuse the
//! record and start again from its build time: its floor would have gone back.
//!
//! # Validity
//!
//! [`decode`] accepts a record only if, in this order: the magic, format version and record
//! size match; the CRC matches; `sequence_trailer == sequence`; and the fields keep the rules
//! of [`TimeState`] (the newest signed time not above the floor). A copy that is all `0x00`
//! (never written: what `limpet build` leaves) or all `0xFF` (erased flash) is
//! blank ([`FrameError::Blank`]).
//!
//! The frame (magic, format version, size, sequence at both ends, CRC-32 over the rest) is
//! `limpet_state::frame`, the A/B record's, with the same checks in the same order: a torn
//! write (new head, old tail) fails the trailer check without relying on the CRC, and the
//! CRC catches the rest. The magic tells the two records apart.

use limpet_state::frame::{self, put, Frame, FrameError};
use thiserror::Error;

use crate::island::{IslandCause, IslandMode};
use crate::time::{InvariantError, TimeState, TimeStateParts, Uptime, WallTime};

pub use limpet_state::frame::RECORD_SIZE;

/// The record's magic.
pub const MAGIC: [u8; 8] = *b"LIMPETLC";

/// The format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The time record in the state partition's common frame.
const FRAME: Frame = Frame {
    magic: MAGIC,
    format_version: FORMAT_VERSION,
};

/// Byte offsets of the body's fields (offset, length).
mod field {
    pub const FLOOR: (usize, usize) = (24, 8);
    pub const SINCE_FLOOR: (usize, usize) = (32, 8);
    pub const NEWEST_SIGNED: (usize, usize) = (40, 8);
    pub const SINCE_FRESH: (usize, usize) = (48, 8);
    pub const SUPPORT_UNTIL: (usize, usize) = (56, 8);
    pub const ISLAND: (usize, usize) = (64, 4);
    pub const ISLAND_CHANGED: (usize, usize) = (72, 8);
    pub const ROUGHTIME: (usize, usize) = (80, 8);
}

/// `island` values.
mod island {
    pub const CONNECTED: u32 = 0;
    pub const SUPPORT_ENDED: u32 = 1;
    pub const STALE: u32 = 2;
}

/// A decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number.
    pub sequence: u64,
    /// The state it holds.
    pub state: TimeState,
}

/// Why a copy of the record is not valid.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Blank, another kind of record, or torn or damaged (the frame's checks).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The `island` field holds no value the format defines.
    #[error("island field is {found}, not 0, 1 or 2")]
    Island {
        /// The value found.
        found: u32,
    },
    /// The fields decode but break a rule of [`TimeState`].
    #[error("record breaks a time rule")]
    Invariant {
        /// The rule.
        #[from]
        source: InvariantError,
    },
}

fn get_u64(b: &[u8; RECORD_SIZE], f: (usize, usize)) -> u64 {
    frame::get_u64(b, f.0)
}

/// An optional time as stored: 0 for none.
fn optional(secs: u64) -> Option<WallTime> {
    (secs != 0).then_some(WallTime::from_secs(secs))
}

/// Encodes `state` with sequence number `sequence`.
pub fn encode(state: &TimeState, sequence: u64) -> [u8; RECORD_SIZE] {
    let p = state.parts();
    let mut b = [0u8; RECORD_SIZE];
    put(&mut b, field::FLOOR, &p.floor.as_secs().to_le_bytes());
    put(
        &mut b,
        field::SINCE_FLOOR,
        &p.since_floor.as_secs().to_le_bytes(),
    );
    let newest = p.newest_signed.map_or(0, WallTime::as_secs);
    put(&mut b, field::NEWEST_SIGNED, &newest.to_le_bytes());
    put(
        &mut b,
        field::SINCE_FRESH,
        &p.since_fresh.as_secs().to_le_bytes(),
    );
    let support = p.support_until.map_or(0, WallTime::as_secs);
    put(&mut b, field::SUPPORT_UNTIL, &support.to_le_bytes());
    let (island, changed) = match p.island {
        IslandMode::Connected => (island::CONNECTED, 0),
        IslandMode::Left { at } => (island::CONNECTED, at.as_secs()),
        IslandMode::Island {
            cause: IslandCause::SupportEnded,
            since,
        } => (island::SUPPORT_ENDED, since.as_secs()),
        IslandMode::Island {
            cause: IslandCause::Stale,
            since,
        } => (island::STALE, since.as_secs()),
    };
    put(&mut b, field::ISLAND, &island.to_le_bytes());
    put(&mut b, field::ISLAND_CHANGED, &changed.to_le_bytes());
    let roughtime = p.roughtime.map_or(0, WallTime::as_secs);
    put(&mut b, field::ROUGHTIME, &roughtime.to_le_bytes());
    FRAME.seal(&mut b, sequence);
    b
}

/// Decodes and checks one copy (see the module doc for what is checked).
pub fn decode(b: &[u8; RECORD_SIZE]) -> Result<Record, RecordError> {
    let sequence = FRAME.open(b)?;
    let island = island_mode(b)?;
    let state = TimeState::from_parts(TimeStateParts {
        floor: WallTime::from_secs(get_u64(b, field::FLOOR)),
        since_floor: Uptime::from_secs(get_u64(b, field::SINCE_FLOOR)),
        newest_signed: optional(get_u64(b, field::NEWEST_SIGNED)),
        since_fresh: Uptime::from_secs(get_u64(b, field::SINCE_FRESH)),
        support_until: optional(get_u64(b, field::SUPPORT_UNTIL)),
        island,
        roughtime: optional(get_u64(b, field::ROUGHTIME)),
    })?;
    Ok(Record { sequence, state })
}

/// The island mode of a record (zero, from a writer before island mode: connected).
fn island_mode(b: &[u8; RECORD_SIZE]) -> Result<IslandMode, RecordError> {
    let changed = WallTime::from_secs(get_u64(b, field::ISLAND_CHANGED));
    let island = |cause| IslandMode::Island {
        cause,
        since: changed,
    };
    match frame::get_u32(b, field::ISLAND.0) {
        island::CONNECTED if changed == WallTime::EPOCH => Ok(IslandMode::Connected),
        island::CONNECTED => Ok(IslandMode::Left { at: changed }),
        island::SUPPORT_ENDED => Ok(island(IslandCause::SupportEnded)),
        island::STALE => Ok(island(IslandCause::Stale)),
        found => Err(RecordError::Island { found }),
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::time::SlotLifecycle;

    fn state() -> TimeState {
        let slot = SlotLifecycle {
            built: WallTime::from_secs(1_893_456_000),
            support_until: Some(WallTime::from_secs(1_956_528_000)),
            freshness: Some(Uptime::from_days(45)),
        };
        TimeState::factory(&slot)
            .elapse(Uptime::from_secs(1234))
            .verified(WallTime::from_secs(1_893_457_000))
            .unwrap()
            .0
            .elapse(Uptime::from_secs(99))
            .extend_support(&slot, WallTime::from_secs(2_000_000_000))
            .unwrap()
    }

    #[test]
    fn round_trips_at_the_documented_offsets() {
        let s = state();
        let b = encode(&s, 7);
        assert_eq!(&b[0..8], b"LIMPETLC");
        assert_eq!(get_u64(&b, field::FLOOR), 1_893_457_000);
        assert_eq!(get_u64(&b, field::SINCE_FRESH), 99);
        assert_eq!(get_u64(&b, field::SUPPORT_UNTIL), 2_000_000_000);
        assert_eq!(frame::get_u64(&b, 4084), 7);
        assert!(
            b[64..4084].iter().all(|&x| x == 0),
            "connected, never in island mode"
        );
        assert_eq!(
            decode(&b),
            Ok(Record {
                sequence: 7,
                state: s
            })
        );
    }

    #[test]
    fn every_check_names_what_failed() {
        let good = encode(&state(), 3);
        let frame_error = |e| Err(RecordError::Frame(e));
        assert_eq!(decode(&[0u8; RECORD_SIZE]), frame_error(FrameError::Blank));
        assert_eq!(
            decode(&[0xFFu8; RECORD_SIZE]),
            frame_error(FrameError::Blank)
        );
        let mut b = good;
        b[0] = b'X';
        assert_eq!(decode(&b), frame_error(FrameError::Magic));
        let mut b = good;
        b[8] = 2;
        assert_eq!(
            decode(&b),
            frame_error(FrameError::FormatVersion { found: 2 })
        );
        let mut b = good;
        put(&mut b, field::ISLAND, &7u32.to_le_bytes());
        FRAME.seal(&mut b, 3);
        assert_eq!(decode(&b), Err(RecordError::Island { found: 7 }));
        let mut b = good;
        b[100] = 1;
        assert!(matches!(
            decode(&b),
            Err(RecordError::Frame(FrameError::Checksum { .. }))
        ));
        // A head from a newer write over an older tail, resealed by hand: the trailer check.
        let mut b = good;
        put(&mut b, (16, 8), &5u64.to_le_bytes());
        let crc = crc32fast::hash(&b[..4092]);
        put(&mut b, (4092, 4), &crc.to_le_bytes());
        assert_eq!(
            decode(&b),
            frame_error(FrameError::TornSequence { head: 5, tail: 3 })
        );
        // The newest signed time above the floor, resealed: the state's rule.
        let mut b = good;
        put(&mut b, field::NEWEST_SIGNED, &u64::MAX.to_le_bytes());
        FRAME.seal(&mut b, 3);
        assert!(matches!(decode(&b), Err(RecordError::Invariant { .. })));
    }

    #[test]
    fn island_mode_round_trips_at_its_offsets() {
        let slot = SlotLifecycle {
            built: WallTime::from_secs(1_893_456_000),
            support_until: Some(WallTime::from_secs(1_893_456_100)),
            freshness: None,
        };
        let (island, _) = TimeState::factory(&slot)
            .elapse(Uptime::from_secs(100))
            .settle_island(&slot);
        let b = encode(&island, 9);
        assert_eq!(frame::get_u32(&b, 64), 1);
        assert_eq!(get_u64(&b, field::ISLAND_CHANGED), 1_893_456_100);
        assert_eq!(decode(&b).unwrap().state, island);
        let extended = island
            .extend_support(&slot, WallTime::from_secs(1_999_999_999))
            .unwrap()
            .elapse(Uptime::from_secs(5));
        let (left, _) = extended.settle_island(&slot);
        let b = encode(&left, 10);
        assert_eq!(frame::get_u32(&b, 64), 0);
        assert_eq!(get_u64(&b, field::ISLAND_CHANGED), 1_893_456_105);
        assert_eq!(
            decode(&b).unwrap().state.island(),
            IslandMode::Left {
                at: WallTime::from_secs(1_893_456_105)
            }
        );
    }

    /// A record written before island mode (zero in its reserved bytes) reads as connected,
    /// with its floor, count and extension; the bytes still reserved are not read.
    #[test]
    fn a_record_from_before_island_mode_reads_as_connected() {
        let s = state();
        let mut b = encode(&s, 4);
        b[70] = 0xAB;
        b[200] = 0xCD;
        FRAME.seal(&mut b, 4);
        assert_eq!(frame::get_u32(&b, 8), 1);
        assert_eq!(
            decode(&b),
            Ok(Record {
                sequence: 4,
                state: s
            })
        );
    }

    /// A Roughtime raise round-trips at its offset; a PID 1 from before it (which reads the
    /// record with the field zeroed, as it would write it) keeps the raised earliest time.
    #[test]
    fn a_roughtime_raise_round_trips_and_an_older_reader_keeps_the_earliest_time() {
        let raised = WallTime::from_secs(2_100_000_000);
        let (s, _) = state().roughtime(raised);
        let b = encode(&s, 11);
        assert_eq!(get_u64(&b, field::ROUGHTIME), 2_100_000_000);
        assert_eq!(decode(&b).unwrap().state, s);
        let mut old = b;
        put(&mut old, field::ROUGHTIME, &0u64.to_le_bytes());
        FRAME.seal(&mut old, 11);
        let read = decode(&old).unwrap().state;
        assert_eq!(read.earliest(), raised);
        assert_eq!(read.floor(), s.floor());
        assert_eq!(read.roughtime_raised(), None);
        // A raise above the earliest time it claims to have set: refused.
        let mut bad = b;
        put(&mut bad, field::ROUGHTIME, &u64::MAX.to_le_bytes());
        FRAME.seal(&mut bad, 11);
        assert!(matches!(decode(&bad), Err(RecordError::Invariant { .. })));
    }

    /// The A/B record of `limpet-state` is not taken for this one (the magic differs).
    #[test]
    fn the_ab_record_is_not_a_time_record() {
        let ab = limpet_state::record::encode(
            &limpet_state::State::factory(limpet_state::Version::parse("1.0.0").unwrap()),
            1,
        );
        assert_eq!(decode(&ab), Err(RecordError::Frame(FrameError::Magic)));
    }
}
