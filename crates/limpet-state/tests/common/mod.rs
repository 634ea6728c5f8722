//! Helpers shared by the integration tests: versions and a simulated state partition.

// Each test binary uses a different subset of these helpers; test code may panic.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use limpet_state::store::MIN_PARTITION_LEN;
use limpet_state::{Slot, State, StateStore, Version};
use limpet_testkit::power_cut_disk::SimDisk;

/// A version from text the test knows is valid.
pub fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

/// A blank simulated `state` partition of the smallest allowed size.
pub fn blank_disk() -> SimDisk {
    SimDisk::new(usize::try_from(MIN_PARTITION_LEN).unwrap())
}

/// A store on a blank simulated partition.
pub fn blank_store() -> StateStore<SimDisk> {
    StateStore::new(blank_disk()).unwrap()
}

/// Two different states: the factory state and one with a trial, a failure and boots.
pub fn two_states() -> (State, State) {
    let old = State::factory(v("1.0.0"));
    let (new, _) = old.mark_trial(Slot::B, v("2.0.0"), 3).unwrap().begin_boot();
    let new = new
        .roll_back(limpet_state::FailureReason::Unhealthy)
        .unwrap();
    let new = new.mark_trial(Slot::B, v("2.0.1"), 2).unwrap();
    (old, new)
}
