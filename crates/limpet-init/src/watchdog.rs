//! The hardware watchdog, PID 1's side: the loader armed and locked it before the kernel
//! started (`limpet_boot::watchdog`); PID 1 takes it over as soon as its driver is loaded
//! and pets it for as long as its event loop turns. A PID 1 that hangs, or a kernel that
//! stops scheduling it, stops the petting, and the watchdog resets the device.
//!
//! Rules:
//! - The timeout is the signed command line's `limpet.watchdog=` (limpet-image's
//!   `cmdline`; the default when absent, none for `0`), set on the device with
//!   `WDIOC_SETTIMEOUT`: Linux's driver resets it to its own default when it probes.
//! - PID 1 pets it every quarter of the timeout the driver actually took, so a loop turn
//!   delayed by up to three quarters of it is no reset.
//! - The device is opened once and never closed: closing it without the magic `V` leaves
//!   it running anyway, and a locked one cannot be stopped at all. Nothing else on the
//!   device can open it (the kernel allows one opener).
//! - Never fatal: a device without a watchdog, or one that refuses the timeout, runs on
//!   and says so on the console.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use limpet_image::cmdline::{Watchdog as Wanted, WATCHDOG, WATCHDOG_MAX_SECS};

use crate::supervisor::Millis;
use crate::sys;

/// The first watchdog device, which devtmpfs creates when its driver probes.
pub const DEVICE: &str = "dev/watchdog0";

/// Why the watchdog cannot be taken over.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error("cannot open {}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set its timeout to {secs} s")]
    Timeout { secs: u16, source: std::io::Error },
    #[error("cannot pet it")]
    Pet(#[source] std::io::Error),
}

/// The open watchdog and when it is due next.
#[derive(Debug)]
pub struct Watchdog {
    device: File,
    /// The timeout the driver took, in seconds.
    pub timeout: u16,
    /// How often PID 1 pets it.
    pub period: Duration,
    next: Millis,
}

/// What [`take_over`] found.
#[derive(Debug)]
pub enum TakeOver {
    /// Opened, its timeout set, petted once.
    Running(Watchdog),
    /// `limpet.watchdog=0`: the device stays off (unless the loader locked it on, which it
    /// does not do for `0`).
    Off,
    /// No watchdog device: the kernel has no driver for this board's.
    Absent,
}

/// Opens `root`'s watchdog, sets the timeout `cmdline` asks for and pets it once.
pub fn take_over(root: &Path, cmdline: &str, now: Millis) -> Result<TakeOver, WatchdogError> {
    let wanted = Wanted::from_cmdline(cmdline);
    if wanted == Wanted::Invalid {
        console!(
            "{WATCHDOG}= is not a number of seconds from 0 to {WATCHDOG_MAX_SECS}: the default applies"
        );
    }
    let Some(secs) = wanted.secs() else {
        return Ok(TakeOver::Off);
    };
    let path = root.join(DEVICE);
    if !path.exists() {
        return Ok(TakeOver::Absent);
    }
    let device = File::options()
        .write(true)
        .open(&path)
        .map_err(|source| WatchdogError::Open { path, source })?;
    let timeout = sys::watchdog_set_timeout(&device, secs)
        .map_err(|source| WatchdogError::Timeout { secs, source })?;
    let mut watchdog = Watchdog {
        device,
        timeout,
        period: period(timeout),
        next: now,
    };
    watchdog.pet(now)?;
    Ok(TakeOver::Running(watchdog))
}

/// How often a watchdog of `timeout` seconds is petted: a quarter of it, at least 1 s.
pub fn period(timeout: u16) -> Duration {
    Duration::from_millis((u64::from(timeout) * 250).max(1000))
}

impl Watchdog {
    /// When it is due next.
    pub fn due(&self) -> Millis {
        self.next
    }

    /// Pets it if it is due at `now`.
    pub fn pet_if_due(&mut self, now: Millis) -> Result<(), WatchdogError> {
        if now >= self.next {
            self.pet(now)?;
        }
        Ok(())
    }

    /// Pets it now (any write but the magic `V` is a keepalive) and schedules the next.
    fn pet(&mut self, now: Millis) -> Result<(), WatchdogError> {
        self.next = now.plus(self.period);
        self.device.write_all(b"\0").map_err(WatchdogError::Pet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_petted_four_times_per_timeout() {
        assert_eq!(period(60), Duration::from_secs(15));
        assert_eq!(period(2046), Duration::from_millis(511_500));
        // Never busier than once a second.
        assert_eq!(period(1), Duration::from_secs(1));
        assert_eq!(period(3), Duration::from_secs(1));
    }

    #[test]
    fn off_and_absent_open_nothing() {
        let root = tempfile::tempdir().unwrap();
        assert!(matches!(
            take_over(root.path(), "quiet limpet.watchdog=0", Millis(0)),
            Ok(TakeOver::Off)
        ));
        assert!(matches!(
            take_over(root.path(), "quiet", Millis(0)),
            Ok(TakeOver::Absent)
        ));
    }

    #[test]
    fn a_device_that_refuses_the_timeout_is_a_named_error() {
        // A regular file stands in for the device: it opens, but takes no ioctl.
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("dev")).unwrap();
        std::fs::write(root.path().join(DEVICE), b"").unwrap();
        let err = take_over(root.path(), "limpet.watchdog=30", Millis(0)).unwrap_err();
        assert!(
            matches!(err, WatchdogError::Timeout { secs: 30, .. }),
            "{err:?}"
        );
    }
}
