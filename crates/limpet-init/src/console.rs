//! Console output of PID 1: one line at a time, never failing (a console that cannot be
//! written to is not a reason to stop booting).

use std::io::Write;

/// Writes `text` and a newline to stdout (the kernel console for PID 1).
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// An error and its sources, `: `-separated, on one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
