//! PID 1's keeper over a simulated `state` partition: boots, uptime, saves, power cuts and a
//! failing medium.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use limpet_lifecycle::record::RECORD_SIZE;
use limpet_lifecycle::store::COPY_OFFSETS;
use limpet_lifecycle::{
    Freshness, IslandCause, IslandChange, IslandMode, IslandReason, Keeper, KeeperError,
    LifecycleStore, Opened, RoughtimeChange, SlotLifecycle, SupportError, TimeError, TimeSource,
    Uptime, WallTime, SAVE_INTERVAL,
};
use limpet_testkit::power_cut_disk::SimDisk;

const BUILT: WallTime = WallTime::from_secs(1_893_456_000);
const MIN: u64 = 60;

fn at(days: u64) -> WallTime {
    BUILT.saturating_add(Uptime::from_days(days))
}

fn slot() -> SlotLifecycle {
    SlotLifecycle {
        built: BUILT,
        support_until: Some(at(730)),
        freshness: Some(Uptime::from_days(45)),
    }
}

fn secs(s: u64) -> Uptime {
    Uptime::from_secs(s)
}

fn disk() -> SimDisk {
    SimDisk::new(1024 * 1024)
}

/// What the record on `disk` holds.
fn saved(disk: &SimDisk) -> limpet_lifecycle::TimeState {
    LifecycleStore::new(disk.clone())
        .unwrap()
        .load()
        .unwrap()
        .state
}

#[test]
fn a_new_device_starts_at_its_build_time_and_saves_it() {
    let (keeper, opened) = Keeper::open(disk(), slot(), secs(3));
    assert!(matches!(opened, Opened::Blank), "{opened:?}");
    assert!(keeper.persists());
    assert_eq!(keeper.state().floor(), BUILT);
    let disk = keeper.into_device().unwrap();
    assert_eq!(saved(&disk).floor(), BUILT);
    // The saved record carries the credit until the next save.
    assert_eq!(saved(&disk).since_fresh(), SAVE_INTERVAL);
}

/// Saves happen on the schedule, not on every tick, and each one credits the next interval.
#[test]
fn ticks_save_once_per_interval() {
    let (mut keeper, _) = Keeper::open(disk(), slot(), secs(0));
    let written = |k: &Keeper<SimDisk>| k.device().unwrap().bytes_written();
    let before = written(&keeper);
    for s in (MIN..10 * MIN).step_by(usize::try_from(MIN).unwrap()) {
        keeper.tick(secs(s)).unwrap();
    }
    assert_eq!(written(&keeper), before);
    keeper.tick(secs(10 * MIN)).unwrap();
    assert_eq!(written(&keeper), before + RECORD_SIZE as u64);
    assert_eq!(
        saved(keeper.device().unwrap()).since_fresh(),
        secs(10 * MIN).saturating_add(SAVE_INTERVAL)
    );
}

/// The count of uptime without fresh metadata survives reboots and is never below the
/// uptime that really passed, whenever the power goes.
#[test]
fn the_stale_count_survives_power_cuts_at_any_moment() {
    let mut d = disk();
    let mut real = 0u64;
    // 40 boots, each running a different, odd length of time, then losing power.
    for boot in 0..40u64 {
        let (mut keeper, _) = Keeper::open(d, slot(), secs(0));
        let ran = (boot * 97 + 13) % (3 * 600);
        for s in (0..=ran).step_by(7) {
            keeper.tick(secs(s)).unwrap();
        }
        real += ran;
        d = keeper.into_device().unwrap();
        assert!(
            saved(&d).since_fresh() >= secs(real),
            "boot {boot}: saved {} < real {real}",
            saved(&d).since_fresh()
        );
    }
}

/// A stream of ticks reaches island mode by freshness; a fresh signed time lifts it and is
/// saved at once.
#[test]
fn freshness_counts_uptime_and_a_fresh_time_restarts_it() {
    let (mut keeper, _) = Keeper::open(disk(), slot(), secs(0));
    let day = 86_400;
    keeper.tick(secs(44 * day)).unwrap();
    assert_eq!(keeper.island_due(), None);
    keeper.tick(secs(45 * day)).unwrap();
    assert!(matches!(
        keeper.island_due(),
        Some(IslandReason::Stale { .. })
    ));
    assert_eq!(
        keeper.verified(at(46), secs(45 * day + 1)).unwrap(),
        Freshness::Fresh
    );
    assert_eq!(keeper.island_due(), None);
    let d = keeper.into_device().unwrap();
    assert_eq!(saved(&d).floor(), at(46));
    assert_eq!(saved(&d).since_fresh(), SAVE_INTERVAL);
}

/// `signed-time-below-floor` through the keeper: refused by name, nothing saved.
#[test]
fn a_signed_time_below_the_floor_is_refused_and_not_saved() {
    let (mut keeper, _) = Keeper::open(disk(), slot(), secs(0));
    keeper.verified(at(10), secs(1)).unwrap();
    let err = keeper.verified(at(9), secs(2)).unwrap_err();
    assert!(
        matches!(
            err,
            KeeperError::Time(TimeError::SignedBelowFloor { signed, floor })
                if signed == at(9) && floor == at(10)
        ),
        "{err}"
    );
    let d = keeper.into_device().unwrap();
    assert_eq!(saved(&d).floor(), at(10));
}

/// An extension is saved and kept across a reboot into a slot built later with an earlier
/// end of support; a shortening is refused.
#[test]
fn an_accepted_extension_survives_a_reboot() {
    let (mut keeper, _) = Keeper::open(disk(), slot(), secs(0));
    keeper.extend_support(at(2000), secs(5)).unwrap();
    assert!(matches!(
        keeper.extend_support(at(1000), secs(6)),
        Err(KeeperError::Support(SupportError::Shortening { .. }))
    ));
    let v2 = SlotLifecycle {
        built: at(100),
        support_until: Some(at(800)),
        ..slot()
    };
    let (keeper, opened) = Keeper::open(keeper.into_device().unwrap(), v2, secs(0));
    assert!(matches!(opened, Opened::Loaded));
    assert_eq!(keeper.support_until(), Some(at(2000)));
    assert_eq!(keeper.state().floor(), at(100));
}

/// The RTC at boot: behind the floor it is overruled, ahead of it it is believed.
#[test]
fn the_clock_at_boot_never_goes_below_the_saved_floor() {
    let (mut keeper, _) = Keeper::open(disk(), slot(), secs(0));
    keeper.verified(at(300), secs(1)).unwrap();
    let (keeper, _) = Keeper::open(keeper.into_device().unwrap(), slot(), secs(0));
    let now = keeper.now(Some(WallTime::EPOCH));
    assert_eq!((now.time, now.source), (at(300), TimeSource::Earliest));
    assert_eq!(keeper.now(Some(at(301))).source, TimeSource::Rtc);
}

/// Both copies damaged: a fresh start from the build time, reported; the record is written
/// again.
#[test]
fn a_damaged_record_is_reported_and_started_again() {
    let (mut keeper, _) = Keeper::open(disk(), slot(), secs(0));
    keeper.verified(at(50), secs(1)).unwrap();
    keeper.tick(secs(700)).unwrap();
    let mut d = keeper.into_device().unwrap();
    for at in COPY_OFFSETS {
        d.bytes_mut()[usize::try_from(at).unwrap() + 30] ^= 0xFF;
    }
    let (keeper, opened) = Keeper::open(d, slot(), secs(0));
    assert!(matches!(opened, Opened::Recovered(_)), "{opened:?}");
    assert_eq!(keeper.state().floor(), BUILT);
    assert_eq!(saved(&keeper.into_device().unwrap()).floor(), BUILT);
}

/// A medium that cannot be read: the keeper runs in memory and never writes.
#[test]
fn an_unreadable_medium_is_never_written() {
    let mut d = disk();
    d.fail_reads(Some(COPY_OFFSETS[0]..COPY_OFFSETS[0] + 1));
    let (mut keeper, opened) = Keeper::open(d, slot(), secs(0));
    assert!(matches!(opened, Opened::InMemory(_)), "{opened:?}");
    assert!(!keeper.persists());
    keeper.tick(secs(3600)).unwrap();
    keeper.verified(at(5), secs(3601)).unwrap();
    assert_eq!(keeper.state().floor(), at(5));
    assert!(keeper.into_device().is_none());
    // Too small a partition: the same.
    let (keeper, opened) = Keeper::open(SimDisk::new(512 * 1024), slot(), secs(0));
    assert!(matches!(opened, Opened::InMemory(_)));
    assert!(!keeper.persists());
}

/// A save that fails (power lost mid-write) is an error for the caller; the live state is
/// kept and the next tick saves it.
#[test]
fn a_failed_save_is_reported_and_retried() {
    let (mut keeper, _) = Keeper::open(disk(), slot(), secs(0));
    keeper.device_mut().unwrap().cut_power_after(100);
    assert!(matches!(
        keeper.verified(at(20), secs(1)),
        Err(KeeperError::Save(_))
    ));
    assert_eq!(keeper.state().floor(), at(20));
    keeper.device_mut().unwrap().power_on();
    keeper.tick(secs(2)).unwrap();
    assert_eq!(saved(keeper.device().unwrap()).floor(), at(20));
}

/// The next save is due one interval after the last; a save at shutdown counts the uptime
/// up to it, so the next boot's earliest time includes the whole of this one, and a failed
/// save makes the next one due at once.
#[test]
fn a_save_at_shutdown_keeps_the_whole_uptime() {
    let (mut keeper, _) = Keeper::open(disk(), slot(), secs(5));
    assert_eq!(keeper.next_save(), secs(5).saturating_add(SAVE_INTERVAL));
    keeper.tick(secs(200)).unwrap();
    assert_eq!(
        saved(keeper.device().unwrap()).earliest(),
        BUILT,
        "no save due yet: the record still holds the boot's state"
    );
    keeper.save_now(secs(300)).unwrap();
    assert_eq!(keeper.next_save(), secs(300).saturating_add(SAVE_INTERVAL));
    let disk = keeper.into_device().unwrap();
    assert_eq!(saved(&disk).earliest(), BUILT.saturating_add(secs(295)));
    // The next boot starts from there.
    let (mut keeper, _) = Keeper::open(disk, slot(), secs(4));
    assert_eq!(keeper.state().earliest(), BUILT.saturating_add(secs(295)));
    keeper.device_mut().unwrap().cut_power_after(0);
    assert!(matches!(
        keeper.save_now(secs(10)),
        Err(KeeperError::Save(_))
    ));
    assert_eq!(keeper.next_save(), secs(10), "due again at once");
}

/// `power-cut-during-island-switch`: the switch into island mode is saved at once and read
/// back at the next boot; a power cut at any byte of that save boots into a consistent
/// mode: either island mode (the new record) or connected with the same inputs, which the
/// next settle turns into island mode again. Never a mix, never the floor lost.
#[test]
fn island_mode_survives_a_reboot_and_a_power_cut_during_the_switch() {
    // Past the end of support by a signed time.
    let (mut keeper, _) = Keeper::open(disk(), slot(), secs(0));
    keeper.verified(at(731), secs(1)).unwrap();
    let base = keeper.into_device().unwrap();
    for cut in (0..=RECORD_SIZE as u64).step_by(97) {
        let (mut keeper, _) = Keeper::open(base.clone(), slot(), secs(0));
        assert_eq!(keeper.island(), IslandMode::Connected);
        keeper.device_mut().unwrap().cut_power_after(cut);
        let settled = keeper.settle_island(secs(2));
        assert!(matches!(
            settled.change,
            Some(IslandChange::Entered(IslandReason::SupportEnded { .. }))
        ));
        assert!(settled.saved.is_err(), "cut at {cut}: the save must fail");
        let mut d = keeper.into_device().unwrap();
        d.power_on();
        let (mut keeper, opened) = Keeper::open(d, slot(), secs(0));
        assert!(matches!(opened, Opened::Loaded), "cut at {cut}: {opened:?}");
        assert_eq!(keeper.state().floor(), at(731), "cut at {cut}");
        // Whatever the record held, the next settle is island mode.
        keeper.settle_island(secs(1)).saved.unwrap();
        assert!(keeper.island().is_island(), "cut at {cut}");
    }
    // Without a cut: saved at once, and the next boot reads it without settling.
    let (mut keeper, _) = Keeper::open(base, slot(), secs(0));
    keeper.settle_island(secs(2)).saved.unwrap();
    let d = keeper.into_device().unwrap();
    assert!(matches!(
        saved(&d).island(),
        IslandMode::Island {
            cause: IslandCause::SupportEnded,
            ..
        }
    ));
    let (mut keeper, _) = Keeper::open(d, slot(), secs(0));
    assert!(keeper.island().is_island());
    // A signed extension lifts it, saved at once.
    keeper.extend_support(at(2000), secs(3)).unwrap();
    let settled = keeper.settle_island(secs(4));
    assert_eq!(settled.change, Some(IslandChange::Left));
    settled.saved.unwrap();
    let d = keeper.into_device().unwrap();
    assert!(matches!(saved(&d).island(), IslandMode::Left { .. }));
}

/// Rule 9 through the keeper: a raise is saved at once and read back at the next boot (the
/// clock at boot runs at it), the metadata floor stays, and a lower answer is not saved.
#[test]
fn a_roughtime_raise_is_saved_at_once_and_survives_a_reboot() {
    let (mut keeper, _) = Keeper::open(disk(), slot(), secs(0));
    let (change, saved_now) = keeper.roughtime(at(500), secs(7));
    saved_now.unwrap();
    assert_eq!(
        change,
        RoughtimeChange::Raised {
            from: BUILT.saturating_add(secs(7)),
            to: at(500)
        }
    );
    assert_eq!(saved(keeper.device().unwrap()).earliest(), at(500));
    let (change, saved_now) = keeper.roughtime(at(400), secs(8));
    saved_now.unwrap();
    assert!(matches!(change, RoughtimeChange::NotAbove { .. }));
    let (keeper, opened) = Keeper::open(keeper.into_device().unwrap(), slot(), secs(0));
    assert!(matches!(opened, Opened::Loaded));
    assert_eq!(keeper.state().floor(), BUILT);
    assert_eq!(keeper.state().roughtime_raised(), Some(at(500)));
    assert!(keeper.state().earliest() >= at(500));
    assert_eq!(
        keeper.now(Some(WallTime::EPOCH)).source,
        TimeSource::Earliest
    );
    // The repository's timestamp signed before the answer is still taken.
    let mut keeper = keeper;
    assert_eq!(keeper.verified(at(499), secs(1)).unwrap(), Freshness::Fresh);
}
