//! The example device's only task: it logs a line every few seconds, forever (or, with
//! `--fail-at-start`, exits with code 1 at once).
//!
//! It needs nothing but a clock and its stdout, so it runs under the `minimal`
//! syscall profile with no network and no files.

use std::io::Write;
use std::time::{Duration, Instant};

/// How long the task sleeps between two lines.
const PERIOD: Duration = Duration::from_secs(3);

fn main() {
    // `--fail-at-start`: a broken release, for the update rollback tests and demos.
    if std::env::args().any(|a| a == "--fail-at-start") {
        eprintln!("hello: failing at start (--fail-at-start)");
        std::process::exit(1);
    }
    let started = Instant::now();
    let mut stdout = std::io::stdout();
    for beat in 0u64.. {
        // A write error (console gone) is not a reason to crash: the supervisor
        // would only restart us into the same state.
        let _ = writeln!(
            stdout,
            "hello from limpet: beat {beat}, up {}s",
            started.elapsed().as_secs()
        );
        let _ = stdout.flush();
        std::thread::sleep(PERIOD);
    }
}
