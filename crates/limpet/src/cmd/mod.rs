//! One module per subcommand: its arguments and a `run` that calls the libraries and
//! prints the result.

pub mod build;
pub mod check;
pub mod inspect;
pub mod keys;
pub mod mud;
pub mod new;
pub mod publish;
pub mod relay;
pub mod run;
pub mod serve;
pub mod verify;

/// What every command returns: any error, printed with its whole chain by `main`.
pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;

/// `error: top` followed by one `caused by:` line per source.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = format!("error: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    text
}

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
