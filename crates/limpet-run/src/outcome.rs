//! How a run ended, the exit code each ending means, and the summary `limpet run --json`
//! prints. The exit codes are part of the command line's contract (README.md): 0, 124
//! (as timeout(1)), 3, 130 (as a shell after a signal).

use serde::Serialize;

/// Exit code when the guest powered off by itself or the `--exit-on` pattern was seen.
pub const EXIT_OK: u8 = 0;
/// Exit code when the guest reported a kernel panic.
pub const EXIT_KERNEL_PANIC: u8 = 3;
/// Exit code when the deadline passed first (as timeout(1)).
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code when QEMU was ended by a signal it reports (Ctrl-C), as a shell would.
pub const EXIT_INTERRUPTED: u8 = 130;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The guest powered off by itself.
    PoweredOff,
    /// A console line contained the `exit_on` pattern; the guest was stopped.
    Matched,
    /// The deadline passed; the guest was stopped.
    Timeout,
    /// The guest printed a kernel panic report.
    KernelPanic,
    /// QEMU was ended by a signal (for example Ctrl-C on the terminal).
    Interrupted,
}

impl Outcome {
    /// The exit code `limpet run` ends with.
    pub const fn exit_code(self) -> u8 {
        match self {
            Outcome::PoweredOff | Outcome::Matched => EXIT_OK,
            Outcome::Timeout => EXIT_TIMEOUT,
            Outcome::KernelPanic => EXIT_KERNEL_PANIC,
            Outcome::Interrupted => EXIT_INTERRUPTED,
        }
    }
}

/// The summary of a run (`limpet run --json`); its field names are that output's format.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// How the run ended.
    pub outcome: Outcome,
    /// The exit code `limpet run` ends with for that outcome ([`Outcome::exit_code`]).
    pub exit_code: u8,
    /// The console line that contained the `exit_on` pattern.
    pub matched_line: Option<String>,
    /// The console line that reported a kernel panic.
    pub panic_line: Option<String>,
    /// Seconds from starting QEMU until it was gone.
    pub seconds: f64,
    /// Console lines seen.
    pub console_lines: u64,
    /// The deadline, if there was one.
    pub timeout_seconds: Option<f64>,
}
