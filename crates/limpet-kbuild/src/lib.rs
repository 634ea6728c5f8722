//! limpet-kbuild: the device's own Linux kernel, built on the host from Debian's
//! `linux-source-6.1` with a configuration derived from the device's manifest
//! (`[kernel] source = "limpet"`).
//!
//! - [`fragment`]: which options the kernel gets and why: the board, what the manifest
//!   needs, the hardening settings, what stays off; everything else off (`allnoconfig`),
//!   no loadable modules.
//! - [`source`]: the source tarball and its pinned package version.
//! - [`build`]: configure, check, compile, cache.
//!
//! Rules this crate keeps:
//! - Every option it asks for has its reason beside it, in one table per concern (here
//!   and in limpet-kconfig); `docs/kernel.md` shows them.
//! - A kernel that lacks a required option is never built: the error names the option.
//! - The same inputs give the same image, and a cached image is reused, never rebuilt.

pub mod build;
pub mod fragment;
pub mod source;

use std::path::PathBuf;

pub use build::{build, Built, Request};
pub use fragment::{lines, Line, Strength};
pub use source::{locate, KernelSource};

/// Errors building the kernel.
#[derive(Debug, thiserror::Error)]
pub enum KbuildError {
    /// The source tarball is not there.
    #[error("cannot read the kernel source {} (install it: apt-get install linux-source-6.1)", path.display())]
    NoSource {
        /// Where it was looked for.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// dpkg does not know the source package.
    #[error(
        "dpkg has no version for linux-source-6.1 (install it: apt-get install linux-source-6.1)"
    )]
    NoPackage,
    /// A program could not be started.
    #[error("cannot run `{program}` (for an aarch64 kernel: apt-get install gcc-aarch64-linux-gnu; and make, flex, bison, bc, libelf-dev, libssl-dev)")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A program failed.
    #[error("{what} failed ({status}); its output is above")]
    Failed {
        /// What ran.
        what: String,
        /// Its exit status.
        status: String,
    },
    /// A file could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The generated `.config` does not parse.
    #[error("the generated kernel config {} does not parse", path.display())]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: limpet_kconfig::ParseError,
    },
    /// Options the device needs did not survive the kernel's own configuration (a
    /// dependency is off or missing on this architecture).
    #[error("the {target} kernel cannot have what the device needs: {}", options.join("; "))]
    Unmet {
        /// The target.
        target: &'static str,
        /// Each option with its wanted value and reason.
        options: Vec<String>,
    },
}
