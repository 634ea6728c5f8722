//! Audit of a Linux kernel's build configuration (`.config`), on the host.
//!
//! [`KernelConfig::parse`] turns the text of a `.config` into typed options;
//! [`audit`] compares it with the checks of [`checks`] (hardening, attack surface) and with
//! what a validated [`limpet_manifest::Manifest`] needs ([`needs::of`]), and returns an
//! [`Audit`] report.
//!
//! Rules this crate keeps:
//! - Pure: it reads only the text and the manifest it is given; no file or kernel access.
//! - No panic on any input: every malformed line is a [`ParseError`] with its line number.
//! - Every check, with its wanted value, source and reason, is written once, in [`checks`]
//!   (and [`needs`] for the manifest's needs); `docs/kernel.md` is rendered from them.
#![warn(missing_docs)]

pub mod audit;
pub mod checks;
pub mod config;
pub mod needs;

pub use audit::{audit, Audit, Finding, MissingNeeds};
pub use checks::{fragment, Arch, Check, Source, Want};
pub use config::{KernelConfig, ParseError, Value};

#[cfg(test)]
mod docs_tests {
    use super::*;
    use limpet_testkit::docs;

    fn table(checks: &[Check], with_source: bool) -> String {
        let rows = checks.iter().map(|c| {
            let option = match c.renamed {
                Some(other) => format!("`CONFIG_{}` (`CONFIG_{other}` since 6.9)", c.option),
                None => format!("`CONFIG_{}`", c.option),
            };
            let mut row = vec![option, format!("`{}`", c.want.describe())];
            if with_source {
                row.push(c.source.name().to_owned());
            }
            row.push(c.arch.name().to_owned());
            row.push(c.reason.to_owned());
            row
        });
        let headers: &[&str] = if with_source {
            &["option", "wanted", "source", "arch", "why"]
        } else {
            &["option", "wanted", "arch", "why"]
        };
        docs::table(headers, rows)
    }

    #[test]
    fn docs_list_the_checks() {
        let doc = docs::workspace_path("docs/kernel.md");
        let regions = [
            ("kernel-hardening", table(checks::HARDENING, true)),
            ("kernel-attack-surface", table(checks::ATTACK_SURFACE, true)),
            ("kernel-needs-always", table(needs::ALWAYS, false)),
            ("kernel-needs-network", table(needs::NETWORK, false)),
        ];
        for (name, rendered) in regions {
            docs::assert_region(&doc, name, file!(), &rendered);
        }
    }
}
