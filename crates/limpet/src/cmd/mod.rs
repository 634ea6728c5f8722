//! One module per subcommand: its arguments and a `run` that calls the libraries and
//! prints the result.

pub mod build;
pub mod check;
pub mod fleet;
pub mod handover;
pub mod inspect;
pub mod keys;
pub mod mud;
pub mod new;
pub mod owner;
pub mod publish;
pub mod relay;
pub mod remote;
pub mod run;
pub mod serve;
pub mod verify;

/// What every command returns: any error, printed with its whole chain by `main`.
pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;

/// `1.2 MiB`-style sizes for reports.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
