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
    set_clock(&keeper);
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
    Some(keeper)
}

/// Sets the clock to the earliest time when it reads earlier (rule 3).
fn set_clock(keeper: &Keeper<File>) {
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
