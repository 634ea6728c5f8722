//! Running the external Secure Boot tools with errors that say what to install.

use std::ffi::OsStr;
use std::process::{Command, Output};

/// An external tool that is missing or failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program is not installed.
    #[error("`{program}` is not installed (Debian/PyPI package `{package}`)")]
    Missing {
        /// The program.
        program: &'static str,
        /// The package that installs it.
        package: &'static str,
    },
    /// The program could not be started.
    #[error("cannot run `{program}`")]
    Spawn {
        /// The program.
        program: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The program exited with an error.
    #[error("`{program} {args}` failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: &'static str,
        /// Its arguments, joined.
        args: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The last lines of its standard error.
        stderr: String,
    },
}

/// A tool and the package that installs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

pub(crate) const OPENSSL: Tool = Tool {
    program: "openssl",
    package: "openssl",
};
pub(crate) const OSSLSIGNCODE: Tool = Tool {
    program: "osslsigncode",
    package: "osslsigncode",
};
pub(crate) const SBVERIFY: Tool = Tool {
    program: "sbverify",
    package: "sbsigntool",
};
pub(crate) const VIRT_FW_VARS: Tool = Tool {
    program: "virt-fw-vars",
    package: "virt-firmware",
};

impl Tool {
    /// Runs the tool to completion; a non-zero exit is [`ToolError::Failed`].
    pub fn run<I, S>(self, args: I) -> Result<Output, ToolError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let output = match Command::new(self.program).args(&args).output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ToolError::Missing {
                    program: self.program,
                    package: self.package,
                })
            }
            Err(source) => {
                return Err(ToolError::Spawn {
                    program: self.program,
                    source,
                })
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            return Err(ToolError::Failed {
                program: self.program,
                args: args
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" "),
                status: output.status,
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
            });
        }
        Ok(output)
    }
}
