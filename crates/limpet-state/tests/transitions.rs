//! The state machine: the full update story, and invariants over random operation
//! sequences, each state also surviving a round trip through the simulated disk.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{blank_store, v};
use limpet_state::{
    BootKind, FailureReason, Slot, State, StateStore, TransitionError, TrialPhase, Version,
};
use limpet_testkit::noise::Rng;
use limpet_testkit::power_cut_disk::SimDisk;

/// Runs `begin_boot`, stores the result first (as limpet-init does), and checks the store.
fn boot(s: &State, store: &mut StateStore<SimDisk>) -> (State, Slot, BootKind) {
    let (next, choice) = s.begin_boot();
    store.store(&next).unwrap();
    assert_eq!(store.load().unwrap(), next);
    (next, choice.slot, choice.kind)
}

/// `update-story`: a trial that never commits rolls back after its boots; the failed version
/// is not retried; a newer one commits and raises the floor; the old slot cannot be
/// tried below it.
#[test]
fn full_update_story() {
    let mut store = blank_store();
    let s = State::factory(v("1.0.0"));
    store.store(&s).unwrap();

    let s = s.mark_trial(Slot::B, v("2.0.0"), 3).unwrap();
    let (s, slot, kind) = boot(&s, &mut store);
    assert_eq!(
        (slot, kind),
        (
            Slot::B,
            BootKind::Trial {
                boots_left_after: 2
            }
        )
    );
    let (s, slot, kind) = boot(&s, &mut store);
    assert_eq!(
        (slot, kind),
        (
            Slot::B,
            BootKind::Trial {
                boots_left_after: 1
            }
        )
    );
    let (s, slot, kind) = boot(&s, &mut store);
    assert_eq!(
        (slot, kind),
        (
            Slot::B,
            BootKind::Trial {
                boots_left_after: 0
            }
        )
    );

    // The 4th boot: no boots left, roll back to A.
    let (s, choice) = s.begin_boot();
    store.store(&s).unwrap();
    assert_eq!(choice.slot, Slot::A);
    assert_eq!(choice.kind, BootKind::Committed);
    let failure = choice.rolled_back.unwrap();
    assert_eq!(failure.reason, FailureReason::BootCountExhausted);
    assert_eq!((failure.slot, &failure.version), (Slot::B, &v("2.0.0")));
    assert_eq!(failure.boot_count, 4);
    assert_eq!(s.last_failure(), Some(&failure));
    assert!(s.trial().is_none());
    assert_eq!(s.committed_slot(), Slot::A);
    assert_eq!(s.boot_count(), 4);

    // The failed version is not retried.
    assert_eq!(
        s.mark_trial(Slot::B, v("2.0.0"), 3),
        Err(TransitionError::FailedBefore {
            version: v("2.0.0"),
            failed: v("2.0.0")
        })
    );

    // A newer one is.
    let s = s.mark_trial(Slot::B, v("2.1.0"), 3).unwrap();
    store.store(&s).unwrap();
    let (s, slot, kind) = boot(&s, &mut store);
    assert_eq!(
        (slot, kind),
        (
            Slot::B,
            BootKind::Trial {
                boots_left_after: 2
            }
        )
    );
    let s = s.commit().unwrap();
    store.store(&s).unwrap();
    assert_eq!(s.floor(), &v("2.1.0"));
    assert_eq!(s.committed_slot(), Slot::B);
    assert_eq!(s.committed_version(), &v("2.1.0"));
    assert_eq!(s.other_slot(), Slot::A);
    assert!(s.trial().is_none());

    // Below the floor: refused.
    assert_eq!(
        s.mark_trial(Slot::A, v("2.0.5"), 3),
        Err(TransitionError::NotAboveFloor {
            version: v("2.0.5"),
            floor: v("2.1.0")
        })
    );
    // Booting now picks the committed B.
    let (_, slot, kind) = boot(&s, &mut store);
    assert_eq!((slot, kind), (Slot::B, BootKind::Committed));
    assert_eq!(store.load().unwrap().boot_count(), 6);
}

/// One random operation; refusals are fine, they must leave the state as it was.
fn step(s: &State, rng: &mut Rng, versions: &[Version]) -> State {
    let pick_version = |rng: &mut Rng| {
        versions[usize::try_from(rng.below(versions.len() as u64)).unwrap()].clone()
    };
    let slot = if rng.below(2) == 0 { Slot::A } else { Slot::B };
    let result = match rng.below(6) {
        0 | 1 => {
            let boots = u8::try_from(rng.below(4)).unwrap();
            s.mark_trial(slot, pick_version(rng), boots)
        }
        2 | 3 => {
            let (next, choice) = s.begin_boot();
            match choice.kind {
                BootKind::Committed => assert_eq!(choice.slot, s.committed_slot()),
                BootKind::Trial { boots_left_after } => {
                    let t = s.trial().unwrap();
                    assert_eq!(choice.slot, t.slot);
                    assert_eq!(boots_left_after, t.boots_left - 1);
                }
            }
            assert_eq!(next.boot_count(), s.boot_count() + 1);
            Ok(next)
        }
        4 => s.commit(),
        _ => match rng.below(3) {
            0 => s.cancel_trial(),
            1 => s.roll_back(FailureReason::HealthTimeout),
            _ => s.roll_back(FailureReason::VerifyFailed),
        },
    };
    result.unwrap_or_else(|_| s.clone())
}

fn check_invariants(prev: &State, s: &State) {
    // The floor never decreases.
    assert!(!prev.floor().is_newer_than(s.floor()), "{prev:?} -> {s:?}");
    // The committed version is never below the floor.
    assert!(!s.floor().is_newer_than(s.committed_version()), "{s:?}");
    // The highest failed version never decreases.
    if let Some(f) = prev.highest_failed() {
        assert!(
            !f.is_newer_than(s.highest_failed().unwrap()),
            "{prev:?} -> {s:?}"
        );
    }
    if let Some(t) = s.trial() {
        // A trial is never on the committed slot, and is above the floor and every failure.
        assert_ne!(t.slot, s.committed_slot(), "{s:?}");
        assert!(t.version.is_newer_than(s.floor()), "{s:?}");
        if let Some(f) = s.highest_failed() {
            assert!(t.version.is_newer_than(f), "{s:?}");
        }
        if t.phase == TrialPhase::Staged {
            assert!(t.boots_left > 0, "{s:?}");
        }
    }
    // A commit changes the committed slot only to the previous trial's slot.
    if s.committed_slot() != prev.committed_slot() {
        let t = prev.trial().unwrap();
        assert_eq!((t.slot, t.phase), (s.committed_slot(), TrialPhase::Booted));
        assert_eq!(&t.version, s.committed_version());
    }
}

/// `random-operations`: invariants hold over random sequences, and every state survives
/// the disk.
#[test]
fn random_operation_sequences() {
    let versions: Vec<Version> = [
        "0.9.0",
        "1.0.0",
        "1.0.1-rc.1",
        "1.0.1",
        "1.1.0",
        "1.1.0+rebuild",
        "2.0.0-beta",
        "2.0.0",
        "2.5.0",
        "3.0.0",
    ]
    .iter()
    .map(|t| v(t))
    .collect();
    let (mut commits, mut failures) = (0, 0);
    for seed in 1..=200u64 {
        let mut rng = Rng::new(seed);
        let mut store = blank_store();
        let mut s = State::factory(v("1.0.0"));
        store.store(&s).unwrap();
        for i in 0..100 {
            let next = step(&s, &mut rng, &versions);
            check_invariants(&s, &next);
            commits += usize::from(next.committed_slot() != s.committed_slot());
            failures += usize::from(next.last_failure() != s.last_failure());
            if next != s {
                store
                    .store(&next)
                    .unwrap_or_else(|e| panic!("seed {seed} step {i}: {e}"));
                assert_eq!(store.load().unwrap(), next, "seed {seed} step {i}");
            }
            s = next;
        }
    }
    // The sequences reach the interesting transitions, not only refusals.
    assert!(
        commits > 100 && failures > 100,
        "{commits} commits, {failures} failures"
    );
}
