//! Each rule of the module doc, and the bad-time cases of issue 13: an RTC years in the
//! past, one years in the future, a signed time below the floor.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

const DAY: u64 = 86_400;
const YEAR: u64 = 365 * DAY;
/// 2030-01-01T00:00:00Z: when the slot under test was built.
const BUILT: WallTime = WallTime::from_secs(1_893_456_000);

fn at(days: u64) -> WallTime {
    BUILT.saturating_add(Uptime::from_days(days))
}

/// A slot built at `BUILT`, supported for two years, island mode after 45 days stale.
fn slot() -> SlotLifecycle {
    SlotLifecycle {
        built: BUILT,
        support_until: Some(at(2 * 365)),
        freshness: Some(Uptime::from_days(45)),
    }
}

#[test]
fn errors_name_both_times() {
    let err = TimeError::SignedBelowFloor {
        signed: WallTime::EPOCH,
        floor: BUILT,
    };
    assert_eq!(
        err.to_string(),
        "signed time @0 is below the time floor @1893456000"
    );
}

#[test]
fn the_floor_starts_at_the_build_time_and_rises_with_a_newer_slot() {
    let s = TimeState::factory(&slot());
    assert_eq!((s.floor(), s.earliest()), (BUILT, BUILT));
    let newer = SlotLifecycle {
        built: at(100),
        ..slot()
    };
    assert_eq!(s.boot(&newer).floor(), at(100));
    // A slot built earlier (the committed slot after a rollback) lowers nothing.
    let raised = s.boot(&newer);
    assert_eq!(raised.boot(&slot()).floor(), at(100));
}

#[test]
fn a_fresh_signed_time_raises_the_floor_and_restarts_the_stale_count() {
    let s = TimeState::factory(&slot()).elapse(Uptime::from_days(3));
    assert_eq!(s.since_fresh(), Uptime::from_days(3));
    let (s, fresh) = s.verified(at(10)).unwrap();
    assert_eq!(fresh, Freshness::Fresh);
    assert_eq!(s.floor(), at(10));
    assert_eq!(s.newest_signed(), Some(at(10)));
    assert_eq!(s.since_fresh(), Uptime::ZERO);
}

/// `signed-time-below-floor`: replayed or back-dated metadata is refused by name and
/// changes nothing.
#[test]
fn a_signed_time_below_the_floor_is_refused() {
    let (s, _) = TimeState::factory(&slot()).verified(at(30)).unwrap();
    let s = s.elapse(Uptime::from_days(2));
    assert_eq!(
        s.verified(at(29)),
        Err(TimeError::SignedBelowFloor {
            signed: at(29),
            floor: at(30)
        })
    );
    // Below the build time, on a device that never verified anything, too.
    assert_eq!(
        TimeState::factory(&slot()).verified(WallTime::EPOCH),
        Err(TimeError::SignedBelowFloor {
            signed: WallTime::EPOCH,
            floor: BUILT
        })
    );
}

/// The same timestamp again (nothing published, or an attacker replaying the last one)
/// keeps the device no fresher.
#[test]
fn the_same_signed_time_again_is_not_fresh() {
    let (s, _) = TimeState::factory(&slot()).verified(at(30)).unwrap();
    let s = s.elapse(Uptime::from_days(5));
    let (again, fresh) = s.verified(at(30)).unwrap();
    assert_eq!(fresh, Freshness::Seen);
    assert_eq!(again, s);
    assert_eq!(again.since_fresh(), Uptime::from_days(5));
}

/// A signed time exactly at the floor (the build time) is accepted and fresh.
#[test]
fn a_signed_time_at_the_floor_is_fresh() {
    let (s, fresh) = TimeState::factory(&slot()).verified(BUILT).unwrap();
    assert_eq!((fresh, s.floor()), (Freshness::Fresh, BUILT));
}

/// `rtc-years-in-the-past`: a flat RTC battery (1970) or a clock set years back reads as
/// the earliest time, never below it.
#[test]
fn an_rtc_years_in_the_past_reads_as_the_earliest_time() {
    let s = TimeState::factory(&slot()).elapse(Uptime::from_days(7));
    for rtc in [
        Some(WallTime::EPOCH),
        Some(WallTime::from_secs(BUILT.as_secs() - 3 * YEAR)),
        Some(at(6)),
        None,
    ] {
        assert_eq!(
            s.now(rtc),
            Now {
                time: at(7),
                source: TimeSource::Earliest
            },
            "{rtc:?}"
        );
    }
    // At or above it, the RTC is believed.
    assert_eq!(s.now(Some(at(7))).source, TimeSource::Rtc);
}

/// `rtc-years-in-the-future`: the clock shows it (time may move forward), but the floor
/// does not move, support does not end and a signed time of today is still accepted.
#[test]
fn an_rtc_years_in_the_future_moves_the_clock_but_not_the_floor() {
    let s = TimeState::factory(&slot()).elapse(Uptime::from_days(1));
    let future = at(10 * 365);
    assert_eq!(
        s.now(Some(future)),
        Now {
            time: future,
            source: TimeSource::Rtc
        }
    );
    assert_eq!(s.floor(), BUILT);
    assert_eq!(s.island_due(&slot()), None);
    let (s, fresh) = s.verified(at(1)).unwrap();
    assert_eq!((fresh, s.floor()), (Freshness::Fresh, at(1)));
}

/// Uptime without fresh metadata is counted however the clock moves: a clock forced back
/// (or forward) changes neither the count nor when island mode is due.
#[test]
fn a_clock_set_backwards_cannot_stop_the_stale_count() {
    let mut s = TimeState::factory(&slot());
    let mut due_at = None;
    for day in 1..=50u64 {
        s = s.elapse(Uptime::from_days(1));
        // Every day someone sets the clock back to 1970, or to the build time.
        let _ = s.now(Some(WallTime::EPOCH));
        let _ = s.now(Some(BUILT));
        if due_at.is_none() && s.island_due(&slot()).is_some() {
            due_at = Some(day);
        }
    }
    assert_eq!(due_at, Some(45));
    assert_eq!(
        s.island_due(&slot()),
        Some(IslandReason::Stale {
            since_fresh: Uptime::from_days(50),
            freshness: Uptime::from_days(45)
        })
    );
}

/// Uptime accumulates across boots: the persisted state carries it.
#[test]
fn uptime_accumulates_across_boots() {
    let mut s = TimeState::factory(&slot());
    for _ in 0..46 {
        // Each boot runs a day, saves, and boots again.
        s = s.boot(&slot()).elapse(Uptime::from_days(1));
    }
    assert!(matches!(
        s.island_due(&slot()),
        Some(IslandReason::Stale { .. })
    ));
}

/// Rule 5's advance credit: whenever power is cut before the next save, the state loaded
/// after the reboot counts at least the uptime that really passed.
#[test]
fn the_checkpoint_credit_survives_any_power_cut() {
    let credit = Uptime::from_secs(600);
    let live = TimeState::factory(&slot()).elapse(Uptime::from_secs(12_345));
    let saved = live.checkpoint(credit);
    for ran in [0, 1, 299, 599, 600] {
        let real = live.elapse(Uptime::from_secs(ran));
        assert!(saved.since_fresh() >= real.since_fresh(), "ran {ran}");
        // The earliest time is never credited ahead of the uptime that passed.
        assert!(saved.earliest() <= real.earliest(), "ran {ran}");
    }
}

/// Rule 2: time does not stand still while the device runs; a signed time below the
/// earliest time (but above the floor) keeps the earliest time where it was.
#[test]
fn the_earliest_time_advances_with_uptime_and_never_goes_back() {
    let s = TimeState::factory(&slot()).elapse(Uptime::from_days(10));
    assert_eq!(s.earliest(), at(10));
    let (s, _) = s.verified(at(3)).unwrap();
    assert_eq!((s.floor(), s.earliest()), (at(3), at(10)));
    let (s, _) = s.verified(at(12)).unwrap();
    assert_eq!((s.floor(), s.earliest()), (at(12), at(12)));
    // The RTC being ahead does not advance it.
    let _ = s.now(Some(at(400)));
    assert_eq!(s.earliest(), at(12));
}

#[test]
fn support_ends_when_the_earliest_time_reaches_it() {
    let s = TimeState::factory(&slot());
    let end = at(2 * 365);
    // Two years of uptime alone, no signed time at all: the earliest time reaches the end.
    let ran = s.elapse(end.saturating_since(BUILT));
    assert_eq!(
        ran.island_due(&slot()),
        Some(IslandReason::SupportEnded {
            until: end,
            earliest: end
        })
    );
    let (fresh, _) = s.verified(at(2 * 365 - 1)).unwrap();
    assert_eq!(fresh.island_due(&slot()), None);
    let (past, _) = fresh.verified(end).unwrap();
    assert!(matches!(
        past.island_due(&slot()),
        Some(IslandReason::SupportEnded { .. })
    ));
}

#[test]
fn no_lifecycle_means_no_island_mode() {
    let slot = SlotLifecycle {
        built: BUILT,
        support_until: None,
        freshness: None,
    };
    let s = TimeState::factory(&slot).elapse(Uptime::from_days(100 * 365));
    assert_eq!(s.island_due(&slot), None);
    assert_eq!(s.support_until(&slot), None);
}

#[test]
fn a_signed_extension_moves_the_end_and_is_kept() {
    let s = TimeState::factory(&slot());
    let extended = s.extend_support(&slot(), at(5 * 365)).unwrap();
    assert_eq!(extended.support_until(&slot()), Some(at(5 * 365)));
    // Past the slot's end, within the extension: not due.
    let (later, _) = extended.verified(at(3 * 365)).unwrap();
    assert_eq!(later.island_due(&slot()), None);
    // A newer slot with an earlier end keeps the accepted extension; one with a later end
    // moves it further.
    let v2 = SlotLifecycle {
        built: at(10),
        support_until: Some(at(3 * 365)),
        ..slot()
    };
    assert_eq!(extended.boot(&v2).support_until(&v2), Some(at(5 * 365)));
    let v3 = SlotLifecycle {
        support_until: Some(at(6 * 365)),
        ..v2
    };
    assert_eq!(extended.boot(&v3).support_until(&v3), Some(at(6 * 365)));
}

/// `support-shortening`: an end before the accepted one is refused by name; the same end
/// again changes nothing.
#[test]
fn a_shorter_support_end_is_refused() {
    let extended = TimeState::factory(&slot())
        .extend_support(&slot(), at(5 * 365))
        .unwrap();
    assert_eq!(
        extended.extend_support(&slot(), at(4 * 365)),
        Err(SupportError::Shortening {
            accepted: at(5 * 365),
            offered: at(4 * 365)
        })
    );
    // Below the slot's own end on a device that accepted nothing yet, too.
    assert_eq!(
        TimeState::factory(&slot()).extend_support(&slot(), at(365)),
        Err(SupportError::Shortening {
            accepted: at(2 * 365),
            offered: at(365)
        })
    );
    assert_eq!(extended.extend_support(&slot(), at(5 * 365)), Ok(extended));
}

#[test]
fn an_extension_cannot_give_an_end_to_unlimited_support() {
    let slot = SlotLifecycle {
        support_until: None,
        ..slot()
    };
    assert_eq!(
        TimeState::factory(&slot).extend_support(&slot, at(1)),
        Err(SupportError::NoWindow { offered: at(1) })
    );
}

#[test]
fn parts_that_break_a_rule_are_refused() {
    let parts = TimeStateParts {
        floor: BUILT,
        since_floor: Uptime::ZERO,
        newest_signed: Some(at(1)),
        since_fresh: Uptime::ZERO,
        support_until: None,
        island: IslandMode::Connected,
        roughtime: None,
    };
    assert_eq!(
        TimeState::from_parts(parts),
        Err(InvariantError::SignedAboveFloor {
            signed: at(1),
            floor: BUILT
        })
    );
    let s = TimeState::factory(&slot()).verified(at(4)).unwrap().0;
    assert_eq!(TimeState::from_parts(s.parts()), Ok(s));
    let raised_above = TimeStateParts {
        newest_signed: None,
        roughtime: Some(at(1)),
        ..parts
    };
    assert_eq!(
        TimeState::from_parts(raised_above),
        Err(InvariantError::RoughtimeAboveEarliest {
            raised: at(1),
            earliest: BUILT
        })
    );
}

/// Whatever happens, in any order, the floor, the earliest time and the accepted end never
/// go back, and the newest signed time never passes the floor.
#[test]
fn random_sequences_keep_every_rule() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..200 {
        let mut s = TimeState::factory(&slot());
        for _ in 0..100 {
            let before = s;
            let t = at(next(4 * 365));
            s = match next(6) {
                0 => s.elapse(Uptime::from_secs(next(10 * DAY))),
                5 => s.roughtime(t).0,
                1 => s.verified(t).map(|(s, _)| s).unwrap_or(s),
                2 => s.extend_support(&slot(), t).unwrap_or(s),
                3 => s.boot(&SlotLifecycle { built: t, ..slot() }),
                _ => s.checkpoint(Uptime::from_secs(next(DAY))),
            };
            assert!(s.floor() >= before.floor());
            assert!(s.earliest() >= before.earliest());
            assert!(s.support_until(&slot()) >= before.support_until(&slot()));
            assert_eq!(TimeState::from_parts(s.parts()), Ok(s));
        }
    }
}

#[test]
fn the_slot_lifecycle_comes_from_the_signed_policy() {
    let policy = limpet_policy::LifecyclePolicy {
        built: BUILT.as_secs(),
        support_until: Some(at(2 * 365).as_secs()),
        freshness_secs: Some(45 * DAY),
        roughtime: Vec::new(),
    };
    assert_eq!(SlotLifecycle::from(&policy), slot());
}

#[test]
fn island_mode_follows_the_end_of_support_and_an_extension_lifts_it() {
    let s = TimeState::factory(&slot());
    let (s, change) = s.settle_island(&slot());
    assert_eq!((s.island(), change), (IslandMode::Connected, None));
    // A signed time past the end: island mode, stamped with the earliest time.
    let (past, _) = s.verified(at(2 * 365 + 3)).unwrap();
    let (island, change) = past.settle_island(&slot());
    assert!(matches!(
        change,
        Some(IslandChange::Entered(IslandReason::SupportEnded { .. }))
    ));
    assert_eq!(
        island.island(),
        IslandMode::Island {
            cause: crate::IslandCause::SupportEnded,
            since: at(2 * 365 + 3)
        }
    );
    // A clock cannot lift it, only a signed extension.
    let (still, change) = island.elapse(Uptime::from_secs(60)).settle_island(&slot());
    assert_eq!((still.island(), change), (island.island(), None));
    let extended = still.extend_support(&slot(), at(4 * 365)).unwrap();
    let (back, change) = extended.settle_island(&slot());
    assert_eq!(change, Some(IslandChange::Left));
    assert_eq!(
        back.island(),
        IslandMode::Left {
            at: at(2 * 365 + 3).saturating_add(Uptime::from_secs(60))
        }
    );
}

#[test]
fn island_mode_follows_a_stale_repository_and_fresh_metadata_lifts_it() {
    let s = TimeState::factory(&slot()).verified(at(1)).unwrap().0;
    // 45 days of uptime without fresh metadata, the clock set anywhere: island mode.
    let (stale, change) = s.elapse(Uptime::from_days(45)).settle_island(&slot());
    assert!(matches!(
        change,
        Some(IslandChange::Entered(IslandReason::Stale { .. }))
    ));
    assert!(stale.island().is_island());
    // The same timestamp replayed is not fresh: still island mode.
    let (replayed, freshness) = stale.verified(at(1)).unwrap();
    assert_eq!(freshness, Freshness::Seen);
    assert_eq!(replayed.settle_island(&slot()).1, None);
    // A newer one lifts it.
    let (fresh, _) = replayed.verified(at(47)).unwrap();
    let (back, change) = fresh.settle_island(&slot());
    assert_eq!(change, Some(IslandChange::Left));
    assert!(!back.island().is_island());
}

/// Rule 9: a Roughtime answer raises the earliest time (the clock, the end of support) but
/// not the floor that refuses signed metadata.
#[test]
fn a_roughtime_answer_raises_the_earliest_time_but_not_the_metadata_floor() {
    let s = TimeState::factory(&slot()).elapse(Uptime::from_days(1));
    let (r, change) = s.roughtime(at(300));
    assert_eq!(
        change,
        RoughtimeChange::Raised {
            from: at(1),
            to: at(300)
        }
    );
    assert_eq!(r.earliest(), at(300));
    assert_eq!(r.floor(), BUILT);
    assert_eq!(r.roughtime_raised(), Some(at(300)));
    // The clock: an RTC years behind runs at the answer's lower bound.
    assert_eq!(r.now(Some(WallTime::EPOCH)).time, at(300));
    // A timestamp the repository signed a day before the answer is still taken, and fresh.
    let (v, fresh) = r.verified(at(299)).unwrap();
    assert_eq!(fresh, Freshness::Fresh);
    assert_eq!(v.floor(), at(299));
    assert_eq!(v.earliest(), at(300), "the earliest time does not go back");
    // Uptime counts on from the raise.
    assert_eq!(r.elapse(Uptime::from_days(2)).earliest(), at(302));
    // The stale count is not reset: Roughtime is not fresh metadata.
    assert_eq!(r.since_fresh(), Uptime::from_days(1));
}

/// Rule 9: an answer at or below the earliest time changes nothing.
#[test]
fn a_roughtime_answer_below_the_earliest_time_changes_nothing() {
    let s = TimeState::factory(&slot())
        .elapse(Uptime::from_days(10))
        .roughtime(at(20))
        .0;
    for lower in [WallTime::EPOCH, BUILT, at(19), at(20)] {
        let (r, change) = s.roughtime(lower);
        assert_eq!(r, s);
        assert_eq!(
            change,
            RoughtimeChange::NotAbove {
                lower,
                earliest: at(20)
            }
        );
    }
}

/// Rule 9: an answer past the end of support ends it (the earliest time reached it).
#[test]
fn a_roughtime_answer_past_the_end_of_support_makes_island_mode_due() {
    let (r, _) = TimeState::factory(&slot()).roughtime(at(2 * 365));
    assert!(matches!(
        r.island_due(&slot()),
        Some(IslandReason::SupportEnded { .. })
    ));
}
