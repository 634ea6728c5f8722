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
pub use checks::{Arch, Check, Source, Want};
pub use config::{KernelConfig, ParseError, Value};
