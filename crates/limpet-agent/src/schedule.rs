//! The poll loop: one poll, one log line, a jittered sleep, forever.
//!
//! Rules kept here:
//! - Every sleep is the interval ±10 % ([`JITTER_PERCENT`]), drawn from the OS's random
//!   source, so a fleet that booted together does not poll together. If the OS has no
//!   randomness to give, the sleep is the plain interval (never a panic).
//! - After a failed poll the next one comes sooner ([`FIRST_RETRY`], doubling on each
//!   further failure, never beyond the interval), so a device that booted before its network
//!   does not wait a whole interval; a failing repository is not hammered either.
//! - One line per poll on stdout (the supervisor prefixes it with the task's name); a line
//!   that cannot be written is dropped, never a reason to stop.

use std::io::Write;
use std::time::Duration;

use rand_core::{OsRng, RngCore};

use crate::agent::Agent;

/// Half-width of the random spread around the interval, in percent.
pub const JITTER_PERCENT: u64 = 10;
/// Delay before the first retry after a failed poll. Short, because the usual first failure
/// is the boot's own: the agent starts before the DHCP lease; the doubling (and the jitter)
/// keeps a fleet from hammering a repository that is down.
pub const FIRST_RETRY: Duration = Duration::from_secs(10);

/// `interval` moved by `random` within ±[`JITTER_PERCENT`] %.
pub fn jittered(interval: Duration, random: u64) -> Duration {
    let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    let span = ms / 100 * JITTER_PERCENT + ms % 100 * JITTER_PERCENT / 100;
    let width = span.saturating_mul(2).saturating_add(1);
    let offset = random % width;
    Duration::from_millis(ms.saturating_sub(span).saturating_add(offset))
}

/// The wait after `failures` consecutive failed polls (0: after a success).
pub fn next_wait(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    FIRST_RETRY.saturating_mul(factor).min(interval)
}

/// Parses `90s`, `30m`, `6h`, `1d` (a positive whole number and one unit).
pub fn parse_interval(text: &str) -> Option<Duration> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(unit_at);
    let n: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(secs).map(Duration::from_secs)
}

/// Writes one line to stdout, ignoring failure.
pub fn log_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// One poll, logged; returns whether it succeeded.
pub fn poll_and_log(agent: &mut Agent) -> bool {
    match agent.poll_once() {
        Ok(outcome) => {
            log_line(&outcome.to_string());
            true
        }
        Err(e) => {
            log_line(&format!(
                "poll failed: {}",
                limpet_error_chain::one_line(&e)
            ));
            false
        }
    }
}

/// Polls forever, every `interval` (jittered).
pub fn run(agent: &mut Agent, interval: Duration) -> ! {
    let mut failures: u32 = 0;
    loop {
        if poll_and_log(agent) {
            failures = 0;
        } else {
            failures = failures.saturating_add(1);
        }
        let mut random = [0u8; 8];
        let wait = match OsRng.try_fill_bytes(&mut random) {
            Ok(()) => jittered(next_wait(interval, failures), u64::from_le_bytes(random)),
            Err(_) => next_wait(interval, failures),
        };
        std::thread::sleep(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let i = Duration::from_secs(6 * 3600);
        assert_eq!(jittered(i, 0), Duration::from_secs(6 * 3600 * 9 / 10));
        let top = jittered(i, 2 * 2_160_000);
        assert_eq!(top, Duration::from_secs(6 * 3600 * 11 / 10));
        for r in [1u64, 12345, u64::MAX, 987_654_321_012] {
            let d = jittered(i, r);
            assert!(d >= i * 9 / 10 && d <= i * 11 / 10, "{d:?}");
        }
        assert_eq!(jittered(Duration::ZERO, 7), Duration::ZERO);
    }

    #[test]
    fn failures_retry_sooner_then_back_off() {
        let i = Duration::from_secs(3600);
        assert_eq!(next_wait(i, 0), i);
        assert_eq!(next_wait(i, 1), Duration::from_secs(10));
        assert_eq!(next_wait(i, 3), Duration::from_secs(40));
        assert_eq!(next_wait(i, 10), i);
        assert_eq!(next_wait(i, u32::MAX), i);
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("6h"), Some(Duration::from_secs(21_600)));
        assert_eq!(parse_interval("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_interval("2d"), Some(Duration::from_secs(172_800)));
        for bad in [
            "",
            "h",
            "0h",
            "6",
            "6x",
            "-1h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_interval(bad), None, "{bad}");
        }
    }
}
