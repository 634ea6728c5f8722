//! An error and its sources as text: the one place that walks
//! [`std::error::Error::source`].
//!
//! Errors across Limpet are `thiserror` enums whose messages do not repeat their source:
//! the cause is a `#[source]`, so a message is only complete with its chain. Every program
//! prints errors through this crate: PID 1 and the update agent on one console line
//! ([`one_line`]), the command line as `error:` and `caused by:` lines ([`caused_by`]).
//!
//! Why a crate of its own: its users are on both sides of the host/device boundary (PID 1,
//! the device's update agent and installer, the host's command line) and share no other
//! crate that could hold it without one side linking what it must not (PID 1 must not
//! link the host's manifest or build crates; the command line has no reason to link the
//! device's wire types). It has no dependencies and stays that way.
//!
//! Rules: the chain is printed outermost first; nothing is added to or dropped from any
//! message.

#![warn(missing_docs)]

use std::error::Error;

/// `err` followed by each of its sources, outermost first.
pub fn sources<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&e| e.source())
}

/// An error and its sources, `: `-separated, on one line (console and log lines).
pub fn one_line(err: &(dyn Error + 'static)) -> String {
    sources(err)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// `error: <err>` followed by one `  caused by: <source>` line per source (the command
/// line's report on stderr).
pub fn caused_by(err: &(dyn Error + 'static)) -> String {
    let mut lines = sources(err);
    let mut text = format!(
        "error: {}",
        lines.next().map(ToString::to_string).unwrap_or_default()
    );
    for cause in lines {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    fn three() -> Layer {
        Layer(
            "boot failed",
            Some(Box::new(Layer(
                "slot-a refused",
                Some(Box::new(Layer("bad signature", None))),
            ))),
        )
    }

    #[test]
    fn one_line_joins_every_source() {
        assert_eq!(
            one_line(&three()),
            "boot failed: slot-a refused: bad signature"
        );
        assert_eq!(one_line(&Layer("alone", None)), "alone");
    }

    #[test]
    fn caused_by_gives_one_line_per_source() {
        assert_eq!(
            caused_by(&three()),
            "error: boot failed\n  caused by: slot-a refused\n  caused by: bad signature"
        );
    }
}
