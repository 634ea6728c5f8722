//! The device's time at boot in real QEMU (TCG), with the guest's clock (its RTC) set years
//! wrong by `limpet run --rtc-base` (docs/end-of-life.md): PID 1 moves a clock that is
//! behind the time floor up to the earliest time it can prove (the slot's build time plus
//! the uptime it counted), keeps that floor across boots (it never goes back), and a clock
//! years ahead moves nothing it trusts: the floor stays, and support does not end.
//!
//! One device, three `--direct --persist` boots of the same disk, in order.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;

/// Safety net for one TCG boot on a loaded 2-core machine.
const BOOT_DEADLINE_SECS: &str = "300";

/// Once the example's task has said its second line, the test presses the power button and
/// the device shuts down cleanly (saving its time record).
const POWERDOWN_ON: &str = "[hello] hello from limpet: beat 1";

/// The build time of every test build (`common::build`'s `SOURCE_DATE_EPOCH`).
const BUILT: u64 = 1_700_000_000;

/// `support_until = "2040-12-31"`: support ends at 2041-01-01T00:00:00Z.
const SUPPORT_END: u64 = 2_240_611_200;

/// 2001-01-01T00:00:00Z: a clock years behind the build time.
const RTC_PAST: (&str, u64) = ("2001-01-01T00:00:00", 978_307_200);

/// 2055-01-01T00:00:00Z: a clock years ahead, past the end of support.
const RTC_FUTURE: (&str, u64) = ("2055-01-01T00:00:00", 2_682_374_400);

/// Boots `dir` with its RTC at `rtc_base`, its disk writes kept; returns the console.
fn boot(dir: &Path, rtc_base: &str) -> String {
    require_tool("qemu-system-x86_64");
    let out = run(
        limpet()
            .arg("run")
            .arg(dir)
            .args(["--direct", "--persist", "--json"])
            .args(["--timeout", BOOT_DEADLINE_SECS])
            .args(["--powerdown-on", POWERDOWN_ON])
            .args(["--rtc-base", rtc_base]),
        true,
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let console = stderr(&out);
    assert_eq!(summary["exit_code"], 0, "{summary}\n{console}");
    assert!(
        console.contains("limpet-init: all tasks stopped, filesystems unmounted"),
        "a clean shutdown:\n{console}"
    );
    console
}

/// What PID 1 said about the time at boot.
#[derive(Debug)]
struct TimeAtBoot {
    /// `clock @RTC was behind the time floor: set to @SET`: (RTC, SET).
    set: Option<(u64, u64)>,
    floor: u64,
    earliest: u64,
    /// The rest of the line: the end of support and island mode.
    rest: String,
}

/// `@123` at the start of `text`, and what follows it.
fn at(text: &str) -> (u64, &str) {
    let text = text
        .strip_prefix('@')
        .unwrap_or_else(|| panic!("no @ in {text:?}"));
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    (text[..end].parse().unwrap(), &text[end..])
}

fn time_at_boot(console: &str) -> TimeAtBoot {
    let set = console.lines().find_map(|l| {
        let (_, tail) = l.split_once("limpet-init: clock ")?;
        let (rtc, tail) = at(tail);
        let tail = tail.strip_prefix(" was behind the time floor: set to ")?;
        Some((rtc, at(tail).0))
    });
    let line = console
        .lines()
        .find_map(|l| l.split_once("limpet-init: time floor ").map(|(_, t)| t))
        .unwrap_or_else(|| panic!("no time line:\n{console}"));
    let (floor, tail) = at(line);
    let (earliest, rest) = at(tail.strip_prefix(", earliest ").unwrap());
    TimeAtBoot {
        set,
        floor,
        earliest,
        rest: rest.to_owned(),
    }
}

#[test]
fn a_wrong_clock_never_moves_the_time_floor() {
    let dir = hello_release_edited(
        "clock",
        "0.1.0",
        "\n[lifecycle]\nsupport_until = \"2040-12-31\"\n",
        |manifest| manifest,
    );
    let not_due = format!("; support until @{SUPPORT_END} (the slot's); island mode not due");

    // 1. A clock years behind (a flat battery): set forward to the build time and the
    //    uptime since, the earliest time the device can prove.
    let console = boot(&dir, RTC_PAST.0);
    let first = time_at_boot(&console);
    let (rtc, set) = first
        .set
        .unwrap_or_else(|| panic!("the clock was not set:\n{console}"));
    assert!(rtc >= RTC_PAST.1 && rtc < BUILT, "{first:?}");
    assert_eq!(first.floor, BUILT, "{first:?}");
    assert_eq!(set, first.earliest, "{first:?}");
    assert!(first.earliest >= BUILT, "{first:?}");
    assert_eq!(first.rest, not_due, "{first:?}");

    // 2. The same clock again: the record kept the floor and the uptime of the first boot
    //    (saved at its shutdown), so the earliest time went on from there, never back.
    let console = boot(&dir, RTC_PAST.0);
    let second = time_at_boot(&console);
    assert_eq!(second.floor, BUILT, "{second:?}");
    assert!(
        second.earliest > first.earliest,
        "{first:?}\n{second:?}\n{console}"
    );
    assert_eq!(
        second.set.map(|(_, s)| s),
        Some(second.earliest),
        "{second:?}"
    );
    assert!(
        !console.contains("time record damaged") && !console.contains("time record unreadable"),
        "{console}"
    );

    // 3. A clock years ahead, past the end of support: believed for the clock (not set),
    //    but the floor stays and support has not ended.
    let console = boot(&dir, RTC_FUTURE.0);
    let third = time_at_boot(&console);
    assert!(third.set.is_none(), "{third:?}\n{console}");
    assert_eq!(third.floor, BUILT, "not raised by the RTC: {third:?}");
    assert!(
        third.earliest > second.earliest && third.earliest < RTC_FUTURE.1,
        "{third:?}"
    );
    assert_eq!(third.rest, not_due, "{third:?}");
}
