//! [`Keeper`]: what PID 1 holds for the time rules while the device runs: the live
//! [`TimeState`], the slot's facts, and the time record it is saved to, with the saving
//! schedule of rule 5.
//!
//! Rules this module keeps:
//! - Opening it at boot loads the record, raises the floor to the slot's build time and
//!   saves at once; what the record's state was is reported ([`Opened`]), never a panic:
//!   a blank record starts from the slot's build time, a record with no valid copy too (and
//!   is reported as a storage fault), and a medium that cannot be read leaves the keeper in
//!   memory only (it never writes over copies it could not read).
//! - Uptime comes in as readings of a clock that cannot be set (`CLOCK_BOOTTIME` since
//!   boot); a reading below the last one adds nothing.
//! - The record is saved every [`SAVE_INTERVAL`] of uptime, each save crediting the
//!   uptime without fresh metadata until the next one ([`TimeState::checkpoint`]), and at
//!   once after a fresh signed time or an accepted extension, and when PID 1 stops
//!   ([`Keeper::save_now`]). The live state is never credited: the credit exists only on
//!   the disk, where it covers a power cut.
//! - A change of island mode is saved at once ([`Keeper::settle_island`]), and so is an
//!   earliest time raised by a Roughtime answer ([`Keeper::roughtime`]).
//! - A save that fails is returned to the caller, and the live state is kept: the next tick
//!   tries again.

use limpet_state::BlockDevice;
use thiserror::Error;

use crate::island::{IslandChange, IslandMode};
use crate::store::{LifecycleStore, StoreError};
use crate::time::{
    Freshness, IslandReason, Now, RoughtimeChange, SlotLifecycle, SupportError, TimeError,
    TimeState, Uptime, WallTime,
};

/// How much uptime may pass between two saves of the record: at most this much is counted
/// twice after a power cut (never lost), and the record is written 144 times a day.
pub const SAVE_INTERVAL: Uptime = Uptime::from_secs(600);

/// What the record held when the keeper was opened.
#[derive(Debug)]
pub enum Opened {
    /// A valid record, loaded.
    Loaded,
    /// Never written (a new device): started from the slot's build time.
    Blank,
    /// Both copies damaged: the saved floor, the uptime count and accepted extensions are
    /// lost; started from the slot's build time. A storage fault to report.
    Recovered(StoreError),
    /// The medium cannot be read, or is too small: running in memory from the slot's build
    /// time, saving nothing. A storage fault to report.
    InMemory(StoreError),
}

/// Why an event was not taken, or could not be saved.
#[derive(Debug, Error)]
pub enum KeeperError {
    /// A signed time below the floor (rule 4).
    #[error(transparent)]
    Time(#[from] TimeError),
    /// A support end that would shorten the accepted one (rule 6).
    #[error(transparent)]
    Support(#[from] SupportError),
    /// The event was taken, but the record could not be saved.
    #[error("saving the time record")]
    Save(#[source] StoreError),
}

/// What [`Keeper::settle_island`] did.
#[derive(Debug)]
pub struct Settled {
    /// The change of island mode, if any.
    pub change: Option<IslandChange>,
    /// Whether the change was saved (always `Ok` without a change).
    pub saved: Result<(), KeeperError>,
}

/// The live time state of a running device and its record.
#[derive(Debug)]
pub struct Keeper<D> {
    store: Option<LifecycleStore<D>>,
    slot: SlotLifecycle,
    state: TimeState,
    /// The uptime reading the live state has counted up to.
    counted: Uptime,
    /// The uptime reading at which the saved record's credit runs out.
    next_save: Uptime,
}

impl<D: BlockDevice> Keeper<D> {
    /// Opens the record on `dev` (the `state` partition) at boot of a slot with `slot`'s
    /// facts, at uptime reading `uptime`, and saves the state it boots with.
    pub fn open(dev: D, slot: SlotLifecycle, uptime: Uptime) -> (Self, Opened) {
        let factory = TimeState::factory(&slot);
        let (store, state, opened) = match LifecycleStore::new(dev) {
            Err(e) => (None, factory, Opened::InMemory(e)),
            Ok(mut store) => match store.load() {
                Ok(loaded) => (Some(store), loaded.state, Opened::Loaded),
                Err(StoreError::Blank) => (Some(store), factory, Opened::Blank),
                Err(e @ StoreError::NoValidCopy { .. }) => {
                    (Some(store), factory, Opened::Recovered(e))
                }
                Err(e) => (None, factory, Opened::InMemory(e)),
            },
        };
        let mut keeper = Keeper {
            store,
            slot,
            state: state.boot(&slot),
            counted: uptime,
            next_save: uptime,
        };
        // A failed first save is retried by the next tick; the boot goes on.
        let _ = keeper.save(uptime);
        (keeper, opened)
    }

    /// Counts uptime up to the reading `uptime`, and saves when the last save's credit has
    /// run out.
    pub fn tick(&mut self, uptime: Uptime) -> Result<(), KeeperError> {
        self.count(uptime);
        if uptime >= self.next_save {
            self.save(uptime)?;
        }
        Ok(())
    }

    /// Counts uptime up to the reading `uptime` and saves whether due or not: at a clean
    /// shutdown, so that the next boot's earliest time includes all of this one.
    pub fn save_now(&mut self, uptime: Uptime) -> Result<(), KeeperError> {
        self.count(uptime);
        self.save(uptime)
    }

    /// The uptime reading at which the record is due to be saved again (after a failed
    /// save: at once).
    pub fn next_save(&self) -> Uptime {
        self.next_save
    }

    /// A signed time the update agent verified (rule 4), at uptime reading `uptime`; saved
    /// at once when fresh.
    pub fn verified(&mut self, signed: WallTime, uptime: Uptime) -> Result<Freshness, KeeperError> {
        self.count(uptime);
        let (state, freshness) = self.state.verified(signed)?;
        self.state = state;
        if freshness == Freshness::Fresh {
            self.save(uptime)?;
        }
        Ok(freshness)
    }

    /// A signed support extension the update agent verified (rule 6), saved at once when
    /// it moves the end.
    pub fn extend_support(&mut self, offered: WallTime, uptime: Uptime) -> Result<(), KeeperError> {
        self.count(uptime);
        let before = self.state;
        self.state = self.state.extend_support(&self.slot, offered)?;
        if self.state != before {
            self.save(uptime)?;
        }
        Ok(())
    }

    /// A Roughtime answer PID 1 verified, whose lower bound is `lower` (rule 9), at uptime
    /// reading `uptime`; saved at once when it raised the earliest time. The change is
    /// returned with the save's result: the raise holds in memory even when the save fails.
    pub fn roughtime(
        &mut self,
        lower: WallTime,
        uptime: Uptime,
    ) -> (RoughtimeChange, Result<(), KeeperError>) {
        self.count(uptime);
        let (state, change) = self.state.roughtime(lower);
        self.state = state;
        let saved = match change {
            RoughtimeChange::Raised { .. } => self.save(uptime),
            RoughtimeChange::NotAbove { .. } => Ok(()),
        };
        (change, saved)
    }

    /// Rule 3: the time to run at, given the RTC's reading.
    pub fn now(&self, rtc: Option<WallTime>) -> Now {
        self.state.now(rtc)
    }

    /// Rule 6: the end of support, `None` when the slot declares none.
    pub fn support_until(&self) -> Option<WallTime> {
        self.state.support_until(&self.slot)
    }

    /// Rule 7: whether island mode is due, and why.
    pub fn island_due(&self) -> Option<IslandReason> {
        self.state.island_due(&self.slot)
    }

    /// Rule 8: moves the recorded island mode to what is due at uptime reading `uptime`,
    /// and saves at once when it changes, so that the mode a device runs in is the one its
    /// next boot reads (a power cut before the save leaves the old mode, which the next
    /// boot settles again from the same record). The change is returned even when the save
    /// fails: the device switches, and the next tick saves again.
    pub fn settle_island(&mut self, uptime: Uptime) -> Settled {
        self.count(uptime);
        let (state, change) = self.state.settle_island(&self.slot);
        self.state = state;
        let saved = match change {
            Some(_) => self.save(uptime),
            None => Ok(()),
        };
        Settled { change, saved }
    }

    /// Rule 8: the recorded island mode.
    pub fn island(&self) -> IslandMode {
        self.state.island()
    }

    /// The facts of the slot it was opened with.
    pub fn slot(&self) -> &SlotLifecycle {
        &self.slot
    }

    /// The live state.
    pub fn state(&self) -> &TimeState {
        &self.state
    }

    /// Whether the keeper saves to a record (`false`: in memory only, see [`Opened`]).
    pub fn persists(&self) -> bool {
        self.store.is_some()
    }

    /// The keeper's medium, if it saves to one.
    pub fn device(&self) -> Option<&D> {
        self.store.as_ref().map(LifecycleStore::device)
    }

    /// The keeper's medium, mutably (tests use it to restore a simulated disk's power).
    pub fn device_mut(&mut self) -> Option<&mut D> {
        self.store.as_mut().map(LifecycleStore::device_mut)
    }

    /// The keeper's medium, giving up the keeper (tests, and a clean shutdown).
    pub fn into_device(self) -> Option<D> {
        self.store.map(LifecycleStore::into_inner)
    }

    fn count(&mut self, uptime: Uptime) {
        let elapsed = Uptime::from_secs(uptime.as_secs().saturating_sub(self.counted.as_secs()));
        if uptime > self.counted {
            self.counted = uptime;
        }
        self.state = self.state.elapse(elapsed);
    }

    /// Saves the live state with the credit until the next save.
    fn save(&mut self, uptime: Uptime) -> Result<(), KeeperError> {
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        match store.store(&self.state.checkpoint(SAVE_INTERVAL)) {
            Ok(_) => {
                self.next_save = uptime.saturating_add(SAVE_INTERVAL);
                Ok(())
            }
            Err(e) => {
                // Due again at the next tick.
                self.next_save = uptime;
                Err(KeeperError::Save(e))
            }
        }
    }
}
