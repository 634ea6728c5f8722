//! Console output of PID 1: one line at a time, never failing (a console that cannot be
//! written to is not a reason to stop booting).
//!
//! Rules: PID 1's own lines go through [`console!`], which writes the [`PREFIX`] once, so
//! no line repeats or misspells it; task output goes through [`line`] with the task's
//! name in front instead. Errors are printed with their whole chain ([`chain`]). Tests and
//! benches grep these lines: change a line's words only together with them.
//!
//! With [`STAMP_WORD`] on the kernel command line ([`stamp_from`]), every line after it
//! starts with the guest's `CLOCK_BOOTTIME` in the kernel's `printk.time` form
//! (`[    1.234567] `), so PID 1's steps can be read on the guest's own clock beside the
//! kernel's (`benches/boot.sh`'s diagnostic boot). Off by default: nothing else changes.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// What every line PID 1 writes about itself starts with.
pub const PREFIX: &str = "limpet-init: ";

/// The kernel command-line word that stamps every console line with `CLOCK_BOOTTIME`.
pub const STAMP_WORD: &str = "limpet.console_time=1";

/// Whether lines are stamped ([`stamp_from`]).
static STAMPED: AtomicBool = AtomicBool::new(false);

/// Writes `limpet-init: <format>` and a newline to the console.
macro_rules! console {
    ($($arg:tt)*) => {
        $crate::console::prefixed(format_args!($($arg)*))
    };
}

/// Stamps every later line when `cmdline` (the kernel's command line) holds
/// [`STAMP_WORD`].
pub fn stamp_from(cmdline: &str) {
    if cmdline.split_whitespace().any(|w| w == STAMP_WORD) {
        STAMPED.store(true, Ordering::Relaxed);
    }
}

/// Writes `text` and a newline to stdout (the kernel console for PID 1).
pub fn line(text: &str) {
    write_line(format_args!("{text}"));
}

/// Writes [`PREFIX`], `args` and a newline: what [`console!`] expands to.
pub fn prefixed(args: std::fmt::Arguments<'_>) {
    write_line(format_args!("{PREFIX}{args}"));
}

fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = if STAMPED.load(Ordering::Relaxed) {
        writeln!(out, "{}{args}", stamp(crate::sys::boottime_us()))
    } else {
        writeln!(out, "{args}")
    };
    let _ = out.flush();
}

/// `micros` of uptime in the kernel's `printk.time` form: `[    1.234567] `.
fn stamp(micros: u64) -> String {
    format!("[{:5}.{:06}] ", micros / 1_000_000, micros % 1_000_000)
}

/// An error and its sources, `: `-separated, on one line.
pub use limpet_error_chain::one_line as chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_as_the_kernels() {
        assert_eq!(stamp(1_234_567), "[    1.234567] ");
        assert_eq!(stamp(12), "[    0.000012] ");
        assert_eq!(stamp(123_456_000_001), "[123456.000001] ");
    }

    #[test]
    fn only_the_exact_word_stamps() {
        stamp_from("console=ttyS0 limpet.console_time=0 xlimpet.console_time=1");
        assert!(!STAMPED.load(Ordering::Relaxed));
        stamp_from("console=ttyS0 limpet.console_time=1 quiet");
        assert!(STAMPED.load(Ordering::Relaxed));
        STAMPED.store(false, Ordering::Relaxed);
    }
}
