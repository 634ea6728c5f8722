//! Helpers shared by the integration tests: versions, a simulated state partition, a
//! deterministic pseudo-random generator.

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

/// Two different states: the factory state and one with a try, a failure and boots.
pub fn two_states() -> (State, State) {
    let old = State::factory(v("1.0.0"));
    let (new, _) = old.mark_try(Slot::B, v("2.0.0"), 3).unwrap().begin_boot();
    let new = new
        .roll_back(limpet_state::FailureReason::Unhealthy)
        .unwrap();
    let new = new.mark_try(Slot::B, v("2.0.1"), 2).unwrap();
    (old, new)
}

/// xorshift64*: deterministic, so a failing sequence can be replayed from its seed.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
