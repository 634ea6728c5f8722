//! Console output of PID 1: one line at a time, never failing (a console that cannot be
//! written to is not a reason to stop booting).
//!
//! Rules: PID 1's own lines go through [`console!`], which writes the [`PREFIX`] once, so
//! no line repeats or misspells it; task output goes through [`line`] with the task's
//! name in front instead. Errors are printed with their whole chain ([`chain`]). Tests and
//! benches grep these lines: change a line's words only together with them.

use std::io::Write;

/// What every line PID 1 writes about itself starts with.
pub const PREFIX: &str = "limpet-init: ";

/// Writes `limpet-init: <format>` and a newline to the console.
macro_rules! console {
    ($($arg:tt)*) => {
        $crate::console::prefixed(format_args!($($arg)*))
    };
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
    let _ = writeln!(out, "{args}");
    let _ = out.flush();
}

/// An error and its sources, `: `-separated, on one line.
pub use limpet_error_chain::one_line as chain;
