//! The on-disk record: one [`State`] plus its sequence number, in exactly
//! [`RECORD_SIZE`] bytes.
//!
//! # Format (version 1)
//!
//! All integers are little-endian. Offsets are from the start of the record.
//!
//! ```text
//! offset len   field
//! 0      8     magic                "LIMPETST"
//! 8      4     format_version       u32 = 1
//! 12     4     record_size          u32 = 4096
//! 16     8     sequence             u64, +1 on every write
//! 24     8     boot_count           u64, boots since the factory state
//! 32     1     committed_slot       1 = A, 2 = B
//! 33     1     trial_phase          0 = no trial, 1 = staged, 2 = booted
//! 34     1     trial_slot           1 = A, 2 = B; 0 when no trial
//! 35     1     trial_boots_left     u8; 0 when no trial
//! 36     1     failure_reason       0 = no failure; 1 boot count exhausted, 2 health
//!                                   timeout, 3 unhealthy, 4 verify failed, 5 mount failed;
//!                                   other codes are kept as read (a newer writer's)
//! 37     1     failure_slot         1 = A, 2 = B; 0 when no failure
//! 38     2     zero
//! 40     8     failure_boot_count   u64; 0 when no failure
//! 48     64    committed_version    version text, NUL-padded (see below)
//! 112    64    floor_version        version text, NUL-padded
//! 176    64    trial_version        version text, NUL-padded; all zero when no trial
//! 240    64    failure_version      version text, NUL-padded; all zero when no failure
//! 304    64    failed_version       the highest version that failed, NUL-padded; all zero
//!                                   when none failed
//! 368    3716  reserved             written zero, ignored when read
//! 4084   8     sequence_trailer     u64, = sequence
//! 4092   4     crc32                CRC-32 (IEEE 802.3, as zlib and U-Boot's env) of bytes 0..4092
//! ```
//!
//! A version text is semver, 1 to 64 bytes of `[0-9A-Za-z.+-]` (the slot header's rule),
//! followed by NUL bytes to the end of its field.
//!
//! # Validity
//!
//! [`decode`] accepts a record only if, in this order: the magic, format version and record
//! size match; the CRC matches; `sequence_trailer == sequence`; every field is in range,
//! "absent" fields are all zero, version texts are valid; and the state keeps the rules of
//! [`crate::machine`] (committed version not below the floor, a trial not on the committed slot
//! and above the floor). A copy that is all `0x00` (never written) or all `0xFF` (erased
//! flash) is [`RecordError::Blank`].
//!
//! The sequence is stored at both ends so that a write torn anywhere between them (new
//! head, old tail: the new and old sequences of one copy always differ by 2) is rejected
//! without relying on the CRC; the CRC catches the rest (reordered sectors, bit rot).
//!
//! The reserved bytes let a later revision add fields without a new format version: an
//! older reader ignores them (and, when it writes, drops them). A change that an older
//! reader must not misread bumps `format_version`.

use alloc::boxed::Box;
use alloc::string::ToString;

use thiserror::Error;

use crate::machine::{
    Failure, FailureReason, InvariantError, Parts, Slot, State, Trial, TrialPhase,
};
use crate::version::{Version, VersionError, MAX_VERSION_LEN};

/// Size of one record, in bytes.
pub const RECORD_SIZE: usize = 4096;

/// The record's magic.
pub const MAGIC: [u8; 8] = *b"LIMPETST";

/// The format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Byte offsets of the fields (offset, length).
mod field {
    pub const MAGIC: (usize, usize) = (0, 8);
    pub const FORMAT_VERSION: (usize, usize) = (8, 4);
    pub const RECORD_SIZE: (usize, usize) = (12, 4);
    pub const SEQUENCE: (usize, usize) = (16, 8);
    pub const BOOT_COUNT: (usize, usize) = (24, 8);
    pub const COMMITTED_SLOT: usize = 32;
    pub const TRIAL_PHASE: usize = 33;
    pub const TRIAL_SLOT: usize = 34;
    pub const TRIAL_BOOTS_LEFT: usize = 35;
    pub const FAILURE_REASON: usize = 36;
    pub const FAILURE_SLOT: usize = 37;
    pub const ZERO: (usize, usize) = (38, 2);
    pub const FAILURE_BOOT_COUNT: (usize, usize) = (40, 8);
    pub const COMMITTED_VERSION: (usize, usize) = (48, 64);
    pub const FLOOR_VERSION: (usize, usize) = (112, 64);
    pub const TRIAL_VERSION: (usize, usize) = (176, 64);
    pub const FAILURE_VERSION: (usize, usize) = (240, 64);
    pub const FAILED_VERSION: (usize, usize) = (304, 64);
    pub const SEQUENCE_TRAILER: (usize, usize) = (4084, 8);
    pub const CRC: (usize, usize) = (4092, 4);
}

// The version fields hold exactly the longest version text.
const _: () = assert!(field::COMMITTED_VERSION.1 == MAX_VERSION_LEN);

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number.
    pub sequence: u64,
    /// The state it holds.
    pub state: State,
}

/// Why a copy of the record is not valid.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// All `0x00` (never written) or all `0xFF` (erased flash).
    #[error("copy is blank")]
    Blank,
    /// The magic is not `LIMPETST`.
    #[error("bad magic")]
    Magic,
    /// A format this code does not know.
    #[error("unsupported format version {found}")]
    FormatVersion {
        /// The version found.
        found: u32,
    },
    /// The record size field is not [`RECORD_SIZE`].
    #[error("record size field is {found}, expected {RECORD_SIZE}")]
    RecordSize {
        /// The size found.
        found: u32,
    },
    /// The CRC does not match the contents (a torn write or corruption).
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC in the record.
        stored: u32,
        /// CRC of the record's bytes.
        computed: u32,
    },
    /// The sequence at the start and at the end differ (a torn write).
    #[error("sequence {head} at the start differs from {tail} at the end")]
    TornSequence {
        /// Sequence at offset 16.
        head: u64,
        /// Sequence at offset 4084.
        tail: u64,
    },
    /// A field holds a value this format does not allow.
    #[error("field {field} at offset {offset} is invalid: {reason}")]
    Field {
        /// Field name.
        field: &'static str,
        /// Offset in the record.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A version field is not a valid version.
    #[error("field {field} at offset {offset} is not a valid version")]
    Version {
        /// Field name.
        field: &'static str,
        /// Offset in the record.
        offset: usize,
        /// Why (boxed: keeps the error small on the common paths).
        source: Box<VersionError>,
    },
    /// The fields decode but break a rule of the state machine.
    #[error("record breaks a state rule")]
    Invariant {
        /// The rule.
        #[from]
        source: InvariantError,
    },
}

/// True when the bytes are all `0x00` or all `0xFF`.
pub fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0) || bytes.iter().all(|&b| b == 0xFF)
}

/// The CRC of a record: over everything before the CRC field.
fn crc_of(buf: &[u8; RECORD_SIZE]) -> u32 {
    crate::crc::crc32(&buf[..field::CRC.0])
}

/// Encodes `state` with sequence number `sequence`.
pub fn encode(state: &State, sequence: u64) -> [u8; RECORD_SIZE] {
    let p = state.clone().into_parts();
    let mut b = [0u8; RECORD_SIZE];
    put(&mut b, field::MAGIC, &MAGIC);
    put(&mut b, field::FORMAT_VERSION, &FORMAT_VERSION.to_le_bytes());
    // RECORD_SIZE is 4096: it fits a u32.
    put(&mut b, field::RECORD_SIZE, &4096u32.to_le_bytes());
    put(&mut b, field::SEQUENCE, &sequence.to_le_bytes());
    put(&mut b, field::BOOT_COUNT, &p.boot_count.to_le_bytes());
    b[field::COMMITTED_SLOT] = slot_code(p.committed);
    put_version(&mut b, field::COMMITTED_VERSION, &p.committed_version);
    put_version(&mut b, field::FLOOR_VERSION, &p.floor);
    if let Some(t) = &p.trial {
        b[field::TRIAL_PHASE] = match t.phase {
            TrialPhase::Staged => 1,
            TrialPhase::Booted => 2,
        };
        b[field::TRIAL_SLOT] = slot_code(t.slot);
        b[field::TRIAL_BOOTS_LEFT] = t.boots_left;
        put_version(&mut b, field::TRIAL_VERSION, &t.version);
    }
    if let Some(f) = &p.last_failure {
        b[field::FAILURE_REASON] = f.reason.code();
        b[field::FAILURE_SLOT] = slot_code(f.slot);
        put(
            &mut b,
            field::FAILURE_BOOT_COUNT,
            &f.boot_count.to_le_bytes(),
        );
        put_version(&mut b, field::FAILURE_VERSION, &f.version);
    }
    if let Some(v) = &p.highest_failed {
        put_version(&mut b, field::FAILED_VERSION, v);
    }
    put(&mut b, field::SEQUENCE_TRAILER, &sequence.to_le_bytes());
    let crc = crc_of(&b);
    put(&mut b, field::CRC, &crc.to_le_bytes());
    b
}

/// Decodes and checks one copy (see the module doc for what is checked).
pub fn decode(b: &[u8; RECORD_SIZE]) -> Result<Record, RecordError> {
    if is_blank(b) {
        return Err(RecordError::Blank);
    }
    if get(b, field::MAGIC) != MAGIC {
        return Err(RecordError::Magic);
    }
    let format = get_u32(b, field::FORMAT_VERSION);
    if format != FORMAT_VERSION {
        return Err(RecordError::FormatVersion { found: format });
    }
    let size = get_u32(b, field::RECORD_SIZE);
    if usize::try_from(size) != Ok(RECORD_SIZE) {
        return Err(RecordError::RecordSize { found: size });
    }
    let stored = get_u32(b, field::CRC);
    let computed = crc_of(b);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    let head = get_u64(b, field::SEQUENCE);
    let tail = get_u64(b, field::SEQUENCE_TRAILER);
    if head != tail {
        return Err(RecordError::TornSequence { head, tail });
    }
    if get(b, field::ZERO).iter().any(|&x| x != 0) {
        return Err(bad("zero", field::ZERO.0, "not zero"));
    }

    let committed = read_slot(b, "committed_slot", field::COMMITTED_SLOT)?;
    let committed_version = read_version(b, "committed_version", field::COMMITTED_VERSION)?.ok_or(
        bad("committed_version", field::COMMITTED_VERSION.0, "empty"),
    )?;
    let floor = read_version(b, "floor_version", field::FLOOR_VERSION)?.ok_or(bad(
        "floor_version",
        field::FLOOR_VERSION.0,
        "empty",
    ))?;
    let trial = read_trial(b)?;
    let last_failure = read_failure(b)?;
    let highest_failed = read_version(b, "failed_version", field::FAILED_VERSION)?;

    let state = Parts {
        committed,
        committed_version,
        floor,
        trial,
        last_failure,
        highest_failed,
        boot_count: get_u64(b, field::BOOT_COUNT),
    }
    .into_state()?;
    Ok(Record {
        sequence: head,
        state,
    })
}

fn read_trial(b: &[u8; RECORD_SIZE]) -> Result<Option<Trial>, RecordError> {
    let phase = match b[field::TRIAL_PHASE] {
        0 => {
            let absent = b[field::TRIAL_SLOT] == 0
                && b[field::TRIAL_BOOTS_LEFT] == 0
                && get(b, field::TRIAL_VERSION).iter().all(|&x| x == 0);
            if !absent {
                return Err(bad(
                    "trial_phase",
                    field::TRIAL_PHASE,
                    "no trial, but trial fields set",
                ));
            }
            return Ok(None);
        }
        1 => TrialPhase::Staged,
        2 => TrialPhase::Booted,
        _ => return Err(bad("trial_phase", field::TRIAL_PHASE, "unknown phase")),
    };
    Ok(Some(Trial {
        slot: read_slot(b, "trial_slot", field::TRIAL_SLOT)?,
        version: read_version(b, "trial_version", field::TRIAL_VERSION)?.ok_or(bad(
            "trial_version",
            field::TRIAL_VERSION.0,
            "empty",
        ))?,
        boots_left: b[field::TRIAL_BOOTS_LEFT],
        phase,
    }))
}

fn read_failure(b: &[u8; RECORD_SIZE]) -> Result<Option<Failure>, RecordError> {
    let Some(reason) = FailureReason::from_code(b[field::FAILURE_REASON]) else {
        let absent = b[field::FAILURE_SLOT] == 0
            && get_u64(b, field::FAILURE_BOOT_COUNT) == 0
            && get(b, field::FAILURE_VERSION).iter().all(|&x| x == 0);
        if !absent {
            return Err(bad(
                "failure_reason",
                field::FAILURE_REASON,
                "no failure, but failure fields set",
            ));
        }
        return Ok(None);
    };
    Ok(Some(Failure {
        version: read_version(b, "failure_version", field::FAILURE_VERSION)?.ok_or(bad(
            "failure_version",
            field::FAILURE_VERSION.0,
            "empty",
        ))?,
        slot: read_slot(b, "failure_slot", field::FAILURE_SLOT)?,
        reason,
        boot_count: get_u64(b, field::FAILURE_BOOT_COUNT),
    }))
}

fn bad(field: &'static str, offset: usize, reason: &'static str) -> RecordError {
    RecordError::Field {
        field,
        offset,
        reason,
    }
}

fn slot_code(slot: Slot) -> u8 {
    match slot {
        Slot::A => 1,
        Slot::B => 2,
    }
}

fn read_slot(
    b: &[u8; RECORD_SIZE],
    name: &'static str,
    offset: usize,
) -> Result<Slot, RecordError> {
    match b[offset] {
        1 => Ok(Slot::A),
        2 => Ok(Slot::B),
        _ => Err(bad(name, offset, "not a slot (1 = A, 2 = B)")),
    }
}

fn get(b: &[u8; RECORD_SIZE], (offset, len): (usize, usize)) -> &[u8] {
    &b[offset..offset + len]
}

fn get_u32(b: &[u8; RECORD_SIZE], f: (usize, usize)) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(get(b, (f.0, 4)));
    u32::from_le_bytes(x)
}

fn get_u64(b: &[u8; RECORD_SIZE], f: (usize, usize)) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(get(b, (f.0, 8)));
    u64::from_le_bytes(x)
}

fn put(b: &mut [u8; RECORD_SIZE], (offset, len): (usize, usize), bytes: &[u8]) {
    // Fields are written from values that fit them; `min` keeps this panic-free anyway.
    let n = bytes.len().min(len);
    b[offset..offset + n].copy_from_slice(&bytes[..n]);
}

fn put_version(b: &mut [u8; RECORD_SIZE], f: (usize, usize), v: &Version) {
    // A `Version` is at most MAX_VERSION_LEN bytes of text, the field's length.
    put(b, f, v.to_string().as_bytes());
}

/// A version field: `None` when all zero.
fn read_version(
    b: &[u8; RECORD_SIZE],
    name: &'static str,
    f: (usize, usize),
) -> Result<Option<Version>, RecordError> {
    let raw = get(b, f);
    let end = raw.iter().position(|&x| x == 0).unwrap_or(raw.len());
    if raw[end..].iter().any(|&x| x != 0) {
        return Err(bad(name, f.0, "bytes after the terminating NUL"));
    }
    if end == 0 {
        return Ok(None);
    }
    let text = core::str::from_utf8(&raw[..end]).map_err(|_| bad(name, f.0, "not UTF-8"))?;
    Version::parse(text)
        .map(Some)
        .map_err(|source| RecordError::Version {
            field: name,
            offset: f.0,
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    /// A state with every field set.
    fn full_state() -> State {
        let s = State::factory(v("1.0.0"));
        let (s, _) = s.mark_trial(Slot::B, v("2.0.0"), 1).unwrap().begin_boot();
        let s = s.roll_back(crate::FailureReason::MountFailed).unwrap();
        s.mark_trial(Slot::B, v("2.1.0-rc.1+build.7"), 5).unwrap()
    }

    #[test]
    fn round_trip() {
        for state in [State::factory(v("1.0.0")), full_state()] {
            let b = encode(&state, 42);
            let r = decode(&b).unwrap();
            assert_eq!(r.sequence, 42);
            assert_eq!(r.state, state);
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let b = encode(&full_state(), 0x0102_0304_0506_0708);
        assert_eq!(&b[0..8], b"LIMPETST");
        assert_eq!(&b[8..12], &1u32.to_le_bytes());
        assert_eq!(&b[12..16], &4096u32.to_le_bytes());
        assert_eq!(&b[16..24], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&b[24..32], &1u64.to_le_bytes(), "boot count");
        assert_eq!(b[32], 1, "committed A");
        assert_eq!(&b[33..36], &[1, 2, 5], "staged trial on B, 5 boots");
        assert_eq!(&b[36..38], &[5, 2], "mount failed on B");
        assert_eq!(&b[40..48], &1u64.to_le_bytes(), "failure boot count");
        assert_eq!(&b[48..54], b"1.0.0\0");
        assert_eq!(&b[112..118], b"1.0.0\0");
        assert_eq!(&b[176..194], b"2.1.0-rc.1+build.7");
        assert_eq!(&b[240..246], b"2.0.0\0");
        assert_eq!(&b[304..310], b"2.0.0\0");
        assert!(b[368..4084].iter().all(|&x| x == 0));
        assert_eq!(&b[4084..4092], &b[16..24]);
        assert_eq!(&b[4092..4096], &crc32fast::hash(&b[..4092]).to_le_bytes());
    }

    #[test]
    fn reserved_bytes_are_ignored() {
        let state = full_state();
        let mut b = encode(&state, 7);
        b[1000] = 0xAB;
        let crc = crc_of(&b);
        b[4092..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&b).unwrap().state, state);
    }

    #[test]
    fn blank_copies() {
        assert_eq!(decode(&[0u8; RECORD_SIZE]), Err(RecordError::Blank));
        assert_eq!(decode(&[0xFFu8; RECORD_SIZE]), Err(RecordError::Blank));
    }

    /// Re-seals a hand-edited record, so the field checks (not the CRC) are what fails.
    fn reseal(b: &mut [u8; RECORD_SIZE]) {
        let crc = crc_of(b);
        b[4092..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn each_check_has_its_error() {
        let good = encode(&full_state(), 9);

        let mut b = good;
        b[0] = b'X';
        assert_eq!(decode(&b), Err(RecordError::Magic));

        let mut b = good;
        b[8] = 2;
        assert_eq!(decode(&b), Err(RecordError::FormatVersion { found: 2 }));

        let mut b = good;
        b[200] ^= 1;
        assert!(matches!(decode(&b), Err(RecordError::Checksum { .. })));

        let mut b = good;
        b[4084] = 8;
        reseal(&mut b);
        assert_eq!(
            decode(&b),
            Err(RecordError::TornSequence { head: 9, tail: 8 })
        );

        let mut b = good;
        b[32] = 3;
        reseal(&mut b);
        assert!(matches!(
            decode(&b),
            Err(RecordError::Field {
                field: "committed_slot",
                ..
            })
        ));

        let mut b = good;
        b[34] = 1; // try on the committed slot A
        reseal(&mut b);
        assert_eq!(
            decode(&b),
            Err(RecordError::Invariant {
                source: InvariantError::TrialOnCommittedSlot
            })
        );

        let mut b = good;
        b[33] = 0; // no try, but the try fields are still set
        reseal(&mut b);
        assert!(matches!(
            decode(&b),
            Err(RecordError::Field {
                field: "trial_phase",
                ..
            })
        ));

        let mut b = good;
        b[112..117].copy_from_slice(b"9.0.0"); // floor above the committed version
        reseal(&mut b);
        assert_eq!(
            decode(&b),
            Err(RecordError::Invariant {
                source: InvariantError::CommittedBelowFloor
            })
        );

        let mut b = good;
        b[48..53].copy_from_slice(b"1.0 x");
        reseal(&mut b);
        assert!(matches!(
            decode(&b),
            Err(RecordError::Version {
                field: "committed_version",
                ..
            })
        ));
    }

    #[test]
    fn unknown_failure_codes_are_kept() {
        let state = full_state();
        let mut b = encode(&state, 3);
        b[36] = 200;
        reseal(&mut b);
        let r = decode(&b).unwrap();
        let reason = r.state.last_failure().unwrap().reason;
        assert_eq!(reason.code(), 200);
        assert_eq!(encode(&r.state, 3), b);
    }
}
