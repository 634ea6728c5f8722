//! The device's time at boot (limpet-lifecycle; docs/end-of-life.md).
//!
//! Opens the time record in the `state` partition with the signed slot's lifecycle facts
//! (`policy.json`'s `lifecycle`: build time, end of support, freshness), which raises the
//! floor to the slot's build time, and sets the system clock to the earliest time the
//! device can prove when the clock (the RTC the kernel read) is behind it: a clock may move
//! time forward, never below the floor. It moves the recorded island mode to what is due
//! (limpet-lifecycle's rule 8), before any task or interface starts, and says the time
//! state on the console (the floor, the earliest time, the end of support, whether island
//! mode is due) and, on a line of its own at every boot, the island mode. The keeper then goes
//! to the runtime, which ticks it on its own timer and lends it to the install server for
//! the signed times and support ends the update agent verifies.
//!
//! A simulation (`limpet run --sim`) has no state partition: its record is a scratch file
//! of the run ([`open_scratch`]), and the host's clock is never set.
//!
//! Rules this module keeps:
//! - It never stops the boot: a missing lifecycle, a state partition that cannot be opened
//!   or a damaged record is said on the console, and the device boots on.
//! - The clock is only ever moved forward.

use std::fs::File;
use std::path::Path;

use limpet_lifecycle::{Keeper, Opened, SlotLifecycle, TimeSource, Uptime, WallTime};
use limpet_policy::DevicePolicy;

use crate::partitions::DiskPartitions;
use crate::status::TimeStatus;
use crate::sys;

/// The keeper of the time record, with the clock set from it; `None` when the slot carries
/// no lifecycle or the state partition cannot be opened.
pub fn open(root: &Path, disk: &DiskPartitions, policy: &DevicePolicy) -> Option<Keeper<File>> {
    let Some(lifecycle) = &policy.lifecycle else {
        console!("time record: the policy carries no lifecycle; the clock is not checked");
        return None;
    };
    let state = disk.state.node(root);
    let file = match File::options().read(true).write(true).open(&state) {
        Ok(f) => f,
        Err(e) => {
            console!(
                "time record: {}: {e}; the clock is not checked",
                state.display()
            );
            return None;
        }
    };
    Some(start(file, lifecycle, true))
}

/// A simulation's keeper: the record in a new scratch file at `path` (the size of a
/// `state` partition, lost when the run ends); the host's clock is not set.
pub fn open_scratch(path: &Path, policy: &DevicePolicy) -> Option<Keeper<File>> {
    let lifecycle = policy.lifecycle.as_ref()?;
    if let Some(parent) = path.parent() {
        // A failure shows as the open's error below.
        let _ = std::fs::create_dir_all(parent);
    }
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .and_then(|f| f.set_len(SCRATCH_LEN).map(|()| f));
    match file {
        Ok(f) => Some(start(f, lifecycle, false)),
        Err(e) => {
            console!("time record: {}: {e}", path.display());
            None
        }
    }
}

/// The size of a simulation's scratch record: the `state` partition `limpet build` makes.
const SCRATCH_LEN: u64 = 1024 * 1024;

/// Opens the keeper on `file`, sets the clock when `clock` says it may, settles island
/// mode and says the time state.
fn start(file: File, lifecycle: &limpet_policy::LifecyclePolicy, clock: bool) -> Keeper<File> {
    let uptime = Uptime::from_secs(sys::boottime_ms() / 1000);
    let (keeper, opened) = Keeper::open(file, SlotLifecycle::from(lifecycle), uptime);
    match &opened {
        Opened::Loaded | Opened::Blank => {}
        Opened::Recovered(e) => console!(
            "time record damaged ({}): started again from the slot's build time",
            crate::console::chain(e)
        ),
        Opened::InMemory(e) => console!(
            "time record unreadable ({}): kept in memory only",
            crate::console::chain(e)
        ),
    }
    if clock {
        set_clock(&keeper);
    }
    // Island mode as recorded, moved to what is due now before any task or interface
    // starts: the mode this boot runs in.
    let mut keeper = keeper;
    let settled = keeper.settle_island(Uptime::from_secs(sys::boottime_ms() / 1000));
    if let Err(e) = settled.saved {
        console!("island mode not saved: {}", crate::console::chain(&e));
    }
    let status = TimeStatus::of(&keeper);
    console!("{}", status.line());
    console!("{}", status.island.line());
    keeper
}

/// Sets the clock to the earliest time when it reads earlier (rule 3): at boot, and after
/// a Roughtime answer raised the earliest time.
pub fn set_clock(keeper: &Keeper<File>) {
    let rtc = WallTime::from_secs(sys::realtime_secs());
    let now = keeper.now(Some(rtc));
    if now.source != TimeSource::Earliest || now.time == rtc {
        return;
    }
    match sys::set_realtime_secs(now.time.as_secs()) {
        Ok(()) => console!(
            "clock {rtc} was behind the time floor: set to {} (seconds since 1970)",
            now.time
        ),
        Err(e) => console!("clock {rtc} is behind the time floor {}: {e}", now.time),
    }
}
