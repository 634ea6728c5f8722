//! The time record under power cuts, corruption and read errors (`torn-time-write`,
//! `flipped-byte`, `both-copies-corrupt`, `blank-partition`, `stale-floor`), and beside the
//! A/B record on one `state` partition.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use limpet_lifecycle::record::{RecordError, RECORD_SIZE};
use limpet_lifecycle::store::{offset, COPY_OFFSETS, MIN_PARTITION_LEN};
use limpet_lifecycle::{
    LifecycleStore, SlotLifecycle, StoreError, SupportError, TimeState, Uptime, WallTime,
};
use limpet_state::frame::FrameError;
use limpet_state::{CopyId, State, StateStore, Version};
use limpet_testkit::power_cut_disk::SimDisk;

const BUILT: WallTime = WallTime::from_secs(1_893_456_000);
/// The state partition `limpet build` makes.
const PARTITION: usize = 1024 * 1024;

fn slot() -> SlotLifecycle {
    SlotLifecycle {
        built: BUILT,
        support_until: Some(WallTime::from_secs(BUILT.as_secs() + 730 * 86_400)),
        freshness: Some(Uptime::from_days(45)),
    }
}

fn at(days: u64) -> WallTime {
    BUILT.saturating_add(Uptime::from_days(days))
}

fn blank_store() -> LifecycleStore<SimDisk> {
    LifecycleStore::new(SimDisk::new(PARTITION)).unwrap()
}

fn pos(copy: CopyId) -> usize {
    usize::try_from(offset(copy)).unwrap()
}

/// An old state (floor raised by a signed time, an extension accepted) and the next one a
/// device would save: a newer signed time, more uptime, a longer extension.
fn two_states() -> (TimeState, TimeState) {
    let old = TimeState::factory(&slot())
        .elapse(Uptime::from_days(3))
        .verified(at(5))
        .unwrap()
        .0
        .extend_support(&slot(), at(1000))
        .unwrap();
    let new = old
        .elapse(Uptime::from_days(2))
        .verified(at(9))
        .unwrap()
        .0
        .extend_support(&slot(), at(1500))
        .unwrap()
        .checkpoint(Uptime::from_secs(600));
    (old, new)
}

/// `torn-time-write`: a power cut at every byte of the record write leaves a record that
/// loads, holding the old state or the new one, never a mix; the floor never goes below the
/// old one; and the device's next write succeeds.
#[test]
fn torn_time_write() {
    let (old, new) = two_states();
    for history in [false, true] {
        let mut s = blank_store();
        if history {
            s.store(&TimeState::factory(&slot())).unwrap();
        }
        s.store(&old).unwrap();
        let target = s.load().unwrap().copy.other();
        let base = s.into_inner();
        let (mut saw_old, mut saw_new) = (0, 0);
        for cut in 0..=RECORD_SIZE as u64 {
            let mut disk = base.clone();
            disk.cut_power_after(cut);
            let mut s = LifecycleStore::new(disk).unwrap();
            assert!(
                s.store(&new).is_err(),
                "cut at {cut}: the flush must not complete"
            );
            s.device_mut().power_on();
            let loaded = s
                .load()
                .unwrap_or_else(|e| panic!("history {history}, cut at {cut}: load failed: {e}"));
            assert!(loaded.state.floor() >= old.floor(), "cut at {cut}");
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
            let next = loaded.state.elapse(Uptime::from_secs(60));
            s.store(&next).unwrap();
            assert_eq!(s.load().unwrap().state, next, "cut at {cut}");
        }
        // Only the complete write (cut at 4096, flush lost) yields the new state.
        assert_eq!((saw_old, saw_new), (RECORD_SIZE, 1), "history {history}");
    }
}

/// The copies alternate, so the next write's cut hits the other copy; same outcome.
#[test]
fn torn_time_write_alternates_copies() {
    let (old, new) = two_states();
    let mut s = blank_store();
    s.store(&old).unwrap();
    s.store(&new).unwrap();
    let newer = new.elapse(Uptime::from_days(1));
    let base = s.into_inner();
    for cut in [
        0, 1, 16, 23, 24, 63, 64, 2048, 4083, 4084, 4091, 4092, 4095, 4096,
    ] {
        let mut disk = base.clone();
        disk.cut_power_after(cut);
        let mut s = LifecycleStore::new(disk).unwrap();
        assert!(s.store(&newer).is_err());
        s.device_mut().power_on();
        let got = s.load().unwrap().state;
        assert!(got == new || got == newer, "cut at {cut}: {got:?}");
    }
}

/// The time record and the A/B record share the partition and never touch each other:
/// writes of one, torn or whole, leave the other exactly as it was.
#[test]
fn the_ab_record_and_the_time_record_share_the_partition() {
    let v1 = Version::parse("1.0.0").unwrap();
    let mut ab = StateStore::new(SimDisk::new(PARTITION)).unwrap();
    ab.store(&State::factory(v1.clone())).unwrap();
    let mut time = LifecycleStore::new(ab.into_inner()).unwrap();
    let (old, new) = two_states();
    time.store(&old).unwrap();
    let mut ab = StateStore::new(time.into_inner()).unwrap();
    let booted = State::factory(v1).begin_boot().0;
    ab.store(&booted).unwrap();
    let mut time = LifecycleStore::new(ab.into_inner()).unwrap();
    assert_eq!(time.load().unwrap().state, old);
    // A torn time write over every byte leaves the A/B state whole.
    for cut in (0..=RECORD_SIZE as u64).step_by(97) {
        let mut disk = time.device_mut().clone();
        disk.cut_power_after(cut);
        let mut t = LifecycleStore::new(disk).unwrap();
        let _ = t.store(&new);
        let mut disk = t.into_inner();
        disk.power_on();
        assert_eq!(StateStore::new(disk).unwrap().load().unwrap(), booted);
    }
}

#[test]
fn flipped_byte_in_either_copy() {
    let (old, new) = two_states();
    let mut s = blank_store();
    s.store(&old).unwrap();
    s.store(&new).unwrap();
    let base = s.into_inner();
    // Copy 0 holds old, copy 1 new.
    for (copy, survivor) in [(CopyId::First, new), (CopyId::Second, old)] {
        for at in [0, 20, 30, 45, 60, 100, 4090, 4093] {
            let mut disk = base.clone();
            disk.bytes_mut()[pos(copy) + at] ^= 0x10;
            let got = LifecycleStore::new(disk).unwrap().load().unwrap();
            assert_eq!(got.state, survivor, "copy {copy} byte {at}");
        }
    }
}

#[test]
fn both_copies_corrupt_then_a_fresh_start() {
    let (old, _) = two_states();
    let mut s = blank_store();
    s.store(&old).unwrap();
    s.store(&old).unwrap();
    let mut disk = s.into_inner();
    disk.bytes_mut()[pos(CopyId::First) + 30] ^= 1;
    disk.bytes_mut()[pos(CopyId::Second)] = b'X';
    let mut s = LifecycleStore::new(disk).unwrap();
    match s.load() {
        Err(StoreError::NoValidCopy { first, second }) => {
            assert!(
                matches!(first, RecordError::Frame(FrameError::Checksum { .. })),
                "{first}"
            );
            assert_eq!(second, RecordError::Frame(FrameError::Magic));
        }
        other => panic!("{other:?}"),
    }
    // PID 1 then starts from the slot's build time: a write to copy 0, sequence 1.
    assert_eq!(s.store(&TimeState::factory(&slot())).unwrap(), 1);
    assert_eq!(s.load().unwrap().copy, CopyId::First);
}

#[test]
fn blank_partition() {
    let mut s = blank_store();
    assert!(matches!(s.load(), Err(StoreError::Blank)));
    let mut erased = SimDisk::new(PARTITION);
    erased.bytes_mut().fill(0xFF);
    assert!(matches!(
        LifecycleStore::new(erased).unwrap().load(),
        Err(StoreError::Blank)
    ));
    assert_eq!(s.store(&TimeState::factory(&slot())).unwrap(), 1);
    let loaded = s.load().unwrap();
    assert_eq!((loaded.copy, loaded.sequence), (CopyId::First, 1));
}

/// `stale-floor`: a caller holding an old state cannot write the floor, or an accepted
/// extension, back.
#[test]
fn a_stale_state_cannot_lower_what_is_stored() {
    let (_, new) = two_states();
    let mut s = blank_store();
    s.store(&new).unwrap();
    match s.store(&TimeState::factory(&slot())) {
        Err(StoreError::FloorDrop { stored, new: lower }) => {
            assert_eq!((stored, lower), (at(9), BUILT));
        }
        other => panic!("{other:?}"),
    }
    // Same floor, shorter accepted end.
    let same_floor = TimeState::factory(&slot()).verified(at(9)).unwrap().0;
    match s.store(&same_floor) {
        Err(StoreError::SupportDrop { stored, new: None }) => assert_eq!(stored, at(1500)),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.load().unwrap().state, new);
    // The pure rules refuse the shortening before it gets here.
    assert_eq!(
        new.extend_support(&slot(), at(1000)),
        Err(SupportError::Shortening {
            accepted: at(1500),
            offered: at(1000)
        })
    );
}

#[test]
fn read_errors() {
    let (old, _) = two_states();
    let mut s = blank_store();
    s.store(&old).unwrap();
    let mut disk = s.into_inner();
    // The copy holding the record unreadable, the other blank: a read error, and no write.
    disk.fail_reads(Some(COPY_OFFSETS[0]..COPY_OFFSETS[0] + 1));
    let mut s = LifecycleStore::new(disk).unwrap();
    assert!(matches!(
        s.load(),
        Err(StoreError::Read { copy: CopyId::First, offset, .. }) if offset == COPY_OFFSETS[0]
    ));
    assert!(matches!(s.store(&old), Err(StoreError::Read { .. })));
    // The other copy valid: it loads, and a write goes over the unreadable one.
    let mut s = blank_store();
    s.store(&old).unwrap();
    s.store(&old).unwrap();
    let mut disk = s.into_inner();
    disk.fail_reads(Some(COPY_OFFSETS[0]..COPY_OFFSETS[0] + 1));
    let mut s = LifecycleStore::new(disk).unwrap();
    assert_eq!(s.load().unwrap().copy, CopyId::Second);
}

#[test]
fn sequence_at_max() {
    let (old, _) = two_states();
    let mut disk = SimDisk::new(PARTITION);
    let bytes = limpet_lifecycle::record::encode(&old, u64::MAX);
    disk.bytes_mut()[pos(CopyId::First)..pos(CopyId::First) + RECORD_SIZE].copy_from_slice(&bytes);
    let mut s = LifecycleStore::new(disk).unwrap();
    assert_eq!(s.load().unwrap().sequence, u64::MAX);
    assert!(matches!(s.store(&old), Err(StoreError::SequenceExhausted)));
}

#[test]
fn too_small_partition() {
    let len = MIN_PARTITION_LEN - 1;
    assert!(matches!(
        LifecycleStore::new(SimDisk::new(usize::try_from(len).unwrap())),
        Err(StoreError::TooSmall { len: l }) if l == len
    ));
}

/// Rule 9 under a power cut: a cut at every byte of the save of a Roughtime raise leaves the
/// old state or the raised one, never a mix, and the earliest time never below the old one.
#[test]
fn torn_roughtime_write() {
    let (old, _) = two_states();
    let (raised, _) = old.roughtime(at(400));
    assert_eq!(raised.earliest(), at(400));
    let mut s = blank_store();
    s.store(&old).unwrap();
    let base = s.into_inner();
    let (mut saw_old, mut saw_new) = (0, 0);
    for cut in 0..=RECORD_SIZE as u64 {
        let mut disk = base.clone();
        disk.cut_power_after(cut);
        let mut s = LifecycleStore::new(disk).unwrap();
        assert!(s.store(&raised).is_err(), "cut at {cut}");
        s.device_mut().power_on();
        let loaded = s.load().unwrap().state;
        assert!(loaded.earliest() >= old.earliest(), "cut at {cut}");
        if loaded == old {
            saw_old += 1;
        } else if loaded == raised {
            saw_new += 1;
            assert_eq!(loaded.roughtime_raised(), Some(at(400)));
            assert_eq!(loaded.floor(), old.floor(), "the metadata floor stays");
        } else {
            panic!("cut at {cut}: a mixed state {loaded:?}");
        }
    }
    assert_eq!((saw_old, saw_new), (RECORD_SIZE, 1));
}
