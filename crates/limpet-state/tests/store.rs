//! The state partition under power cuts, corruption and read errors (`torn-state-write`,
//! `flipped-byte`, `both-copies-corrupt`, `blank-partition`, `sequence-at-max`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{blank_disk, blank_store, two_states, v};
use limpet_state::frame::FrameError;
use limpet_state::record::{self, RecordError, RECORD_SIZE};
use limpet_state::store::{CopyStatus, COPY_OFFSETS, MIN_PARTITION_LEN};
use limpet_state::{CopyId, Region, State, StateError, StateStore};
use limpet_testkit::power_cut_disk::SimDisk;

fn offset(copy: CopyId) -> usize {
    usize::try_from(copy.offset()).unwrap()
}

/// A store whose newest copy holds `old`; with `history`, the other copy holds an older
/// valid record too (so the write under test overwrites a valid copy, not a blank one).
fn store_holding(old: &State, history: bool) -> StateStore<SimDisk> {
    let mut s = blank_store();
    if history {
        s.store(&State::factory(v("1.0.0"))).unwrap();
    }
    s.store(old).unwrap();
    s
}

/// `torn-state-write`: a power cut at every byte of the record write leaves `load`
/// returning the old state or the new one, never an error and never a mix.
#[test]
fn torn_state_write() {
    let (old, new) = two_states();
    // Both directions (new record into copy 1, and into copy 0), over a blank copy and
    // over a copy holding an older record.
    for history in [false, true] {
        let base = store_holding(&old, history).into_inner();
        let target = {
            let mut s = StateStore::new(base.clone()).unwrap();
            s.load_detailed().unwrap().copy.other()
        };
        let (mut saw_old, mut saw_new) = (0, 0);
        for cut in 0..=RECORD_SIZE as u64 {
            let mut disk = base.clone();
            disk.cut_power_after(cut);
            let mut s = StateStore::new(disk).unwrap();
            let stored = s.store(&new);
            assert!(stored.is_err(), "cut at {cut}: the flush must not complete");
            s.device_mut().power_on();
            let loaded = s
                .load_detailed()
                .unwrap_or_else(|e| panic!("history {history}, cut at {cut}: load failed: {e}"));
            if loaded.state == old {
                saw_old += 1;
                assert_ne!(loaded.copy, target, "cut at {cut}");
            } else if loaded.state == new {
                saw_new += 1;
                assert_eq!(loaded.copy, target, "cut at {cut}");
            } else {
                panic!("history {history}, cut at {cut}: a mixed state {loaded:?}");
            }
            // After the reboot the device carries on: the next write succeeds and wins.
            let next = loaded.state.begin_boot().0;
            s.store(&next).unwrap();
            assert_eq!(s.load().unwrap(), next, "cut at {cut}");
        }
        // Only the complete write (cut at 4096, flush lost) yields the new state.
        assert_eq!((saw_old, saw_new), (RECORD_SIZE, 1), "history {history}");
    }
}

/// `torn-state-write` over the write after that one too: the copies alternate, so the
/// cut hits copy 0 as well.
#[test]
fn torn_state_write_alternates_copies() {
    let (old, new) = two_states();
    let mut s = store_holding(&old, true);
    let first = s.load_detailed().unwrap().copy;
    s.store(&new).unwrap();
    assert_eq!(s.load_detailed().unwrap().copy, first.other());
    let base = s.into_inner();
    let newer = new.begin_boot().0;
    for cut in [
        0, 1, 15, 16, 23, 24, 2048, 4083, 4084, 4091, 4092, 4095, 4096,
    ] {
        let mut disk = base.clone();
        disk.cut_power_after(cut);
        let mut s = StateStore::new(disk).unwrap();
        assert!(s.store(&newer).is_err());
        s.device_mut().power_on();
        let got = s.load().unwrap();
        assert!(got == new || got == newer, "cut at {cut}: {got:?}");
    }
}

/// `flipped-byte`: a flipped byte anywhere in either copy → the other copy wins.
#[test]
fn flipped_byte_in_either_copy() {
    let (old, new) = two_states();
    let mut s = store_holding(&old, false);
    s.store(&new).unwrap();
    let base = s.into_inner();
    // Copy 0 holds `old` (sequence 1), copy 1 `new` (sequence 2).
    for (copy, survivor) in [(CopyId::First, &new), (CopyId::Second, &old)] {
        for at in (0..RECORD_SIZE).step_by(7).chain([RECORD_SIZE - 1]) {
            let mut disk = base.clone();
            disk.bytes_mut()[offset(copy) + at] ^= 0x20;
            let mut s = StateStore::new(disk).unwrap();
            let loaded = s.load_detailed().unwrap();
            assert_eq!(&loaded.state, survivor, "copy {copy}, byte {at}");
            assert!(
                matches!(loaded.other, CopyStatus::Invalid(_)),
                "copy {copy}, byte {at}: {:?}",
                loaded.other
            );
        }
    }
}

/// `both-copies-corrupt`: NoValidCopy, naming why each copy failed.
#[test]
fn both_copies_corrupt() {
    let (old, new) = two_states();
    let mut s = store_holding(&old, false);
    s.store(&new).unwrap();
    let mut disk = s.into_inner();
    disk.bytes_mut()[offset(CopyId::First) + 100] ^= 1;
    disk.bytes_mut()[offset(CopyId::Second)] = b'X';
    let mut s = StateStore::new(disk).unwrap();
    match s.load() {
        Err(StateError::NoValidCopy { first, second }) => {
            assert!(
                matches!(first, RecordError::Frame(FrameError::Checksum { .. })),
                "{first}"
            );
            assert_eq!(second, RecordError::Frame(FrameError::Magic));
        }
        other => panic!("expected NoValidCopy, got {other:?}"),
    }
    // One copy blank and the other corrupt is corrupt, not blank.
    let mut disk = blank_disk();
    disk.bytes_mut()[offset(CopyId::Second)] = 1;
    let mut s = StateStore::new(disk).unwrap();
    assert!(matches!(s.load(), Err(StateError::NoValidCopy { .. })));
    // Storing over two readable invalid copies starts again at sequence 1 in copy 0.
    assert_eq!(s.store(&old).unwrap(), 1);
    assert_eq!(s.load_detailed().unwrap().copy, CopyId::First);
}

/// `blank-partition`: all zero (never written) or all 0xFF (erased flash) is Blank.
#[test]
fn blank_partition() {
    let mut s = blank_store();
    assert!(matches!(s.load(), Err(StateError::Blank)));
    let len = usize::try_from(MIN_PARTITION_LEN).unwrap();
    let mut s = StateStore::new(SimDisk::from_bytes(vec![0xFF; len])).unwrap();
    assert!(matches!(s.load(), Err(StateError::Blank)));
    // The first store writes copy 0 with sequence 1; copy 1 stays blank and is ignored.
    let factory = State::factory(v("1.0.0"));
    assert_eq!(s.store(&factory).unwrap(), 1);
    let loaded = s.load_detailed().unwrap();
    assert_eq!(loaded.state, factory);
    assert_eq!((loaded.copy, loaded.sequence), (CopyId::First, 1));
    assert!(matches!(
        loaded.other,
        CopyStatus::Invalid(RecordError::Frame(FrameError::Blank))
    ));
}

/// `sequence-at-max`: MAX beats MAX - 1, and no write goes past MAX.
#[test]
fn sequence_at_max() {
    let (old, new) = two_states();
    let mut disk = blank_disk();
    let o0 = offset(CopyId::First);
    let o1 = offset(CopyId::Second);
    disk.bytes_mut()[o0..o0 + RECORD_SIZE].copy_from_slice(&record::encode(&old, u64::MAX - 2));
    disk.bytes_mut()[o1..o1 + RECORD_SIZE].copy_from_slice(&record::encode(&new, u64::MAX - 1));
    let mut s = StateStore::new(disk).unwrap();
    assert_eq!(s.load().unwrap(), new);
    let newer = new.begin_boot().0;
    assert_eq!(s.store(&newer).unwrap(), u64::MAX);
    let loaded = s.load_detailed().unwrap();
    assert_eq!(loaded.state, newer);
    assert_eq!((loaded.copy, loaded.sequence), (CopyId::First, u64::MAX));
    assert!(matches!(
        s.store(&newer),
        Err(StateError::SequenceExhausted)
    ));
    assert_eq!(s.load().unwrap(), newer);
}

/// A copy that reads with EIO is skipped; with no valid copy, the I/O error is reported,
/// and nothing is written over a copy whose sequence is unknown.
#[test]
fn read_errors() {
    let (old, new) = two_states();
    let mut s = store_holding(&old, false);
    s.store(&new).unwrap();
    let c1 = COPY_OFFSETS[1];
    s.device_mut().fail_reads(Some(c1..c1 + 1));
    let loaded = s.load_detailed().unwrap();
    assert_eq!(loaded.state, old);
    assert!(matches!(loaded.other, CopyStatus::Unreadable(_)));

    // Copy 0 corrupt too: the read error surfaces, and store refuses.
    s.device_mut().bytes_mut()[10] ^= 1;
    match s.load() {
        Err(StateError::Read {
            copy,
            offset,
            source,
        }) => {
            assert_eq!((copy, offset), (CopyId::Second, c1));
            assert_eq!(source.raw_os_error(), Some(5));
        }
        other => panic!("expected Read, got {other:?}"),
    }
    assert!(matches!(
        s.store(&new),
        Err(StateError::Read {
            copy: CopyId::Second,
            ..
        })
    ));
}

/// A stale state (lower floor than the one on disk) is refused.
#[test]
fn floor_cannot_drop_through_store() {
    let factory = State::factory(v("1.0.0"));
    let (booted, _) = factory
        .mark_trial(limpet_state::Slot::B, v("2.0.0"), 1)
        .unwrap()
        .begin_boot();
    let committed = booted.commit().unwrap();
    let mut s = blank_store();
    s.store(&committed).unwrap();
    assert!(matches!(
        s.store(&factory),
        Err(StateError::FloorDrop { .. })
    ));
    assert_eq!(s.load().unwrap(), committed);
}

#[test]
fn too_small_partition() {
    let len = MIN_PARTITION_LEN - 1;
    let disk = SimDisk::new(usize::try_from(len).unwrap());
    assert!(matches!(
        StateStore::new(disk),
        Err(StateError::TooSmall { len: l }) if l == len
    ));
}

/// The state partition inside a whole-disk image file, through `Region` over a `File`.
#[test]
fn region_of_a_file() {
    use std::io::Read;

    let mut file = tempfile::tempfile().unwrap();
    let start = 1024 * 1024;
    let len = 1024 * 1024;
    file.set_len(4 * 1024 * 1024).unwrap();
    let (old, new) = two_states();
    {
        let region = Region::new(&mut file, start, len).unwrap();
        let mut s = StateStore::new(region).unwrap();
        assert!(matches!(s.load(), Err(StateError::Blank)));
        s.store(&old).unwrap();
        s.store(&new).unwrap();
        assert_eq!(s.load().unwrap(), new);
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    let at = usize::try_from(start).unwrap();
    let copy0: &[u8; RECORD_SIZE] = bytes[at..at + RECORD_SIZE].try_into().unwrap();
    assert_eq!(record::decode(copy0).unwrap().state, old);
    assert!(Region::new(&mut file, 4 * 1024 * 1024 - 10, 11).is_err());
}
