//! Why an image cannot be run: one enum for the whole crate, each variant naming the
//! directory, file or program at fault and what to do about it.

use std::path::PathBuf;
use std::process::ExitStatus;

use limpet_build::outputs::{DISK_IMG, INITRAMFS, KERNEL, SLOT_IMG};
use limpet_build::read::image_file::ImageFileError;
use limpet_image::slot;

use crate::namespaces::NamespaceError;

/// Why an image cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{dir} is not a directory; run `limpet build` to make one (it holds {KERNEL}, {INITRAMFS}, {DISK_IMG} and {SLOT_IMG})")]
    NoDir { dir: PathBuf },
    #[error("{path} is missing; run `limpet build` to write it")]
    MissingFile { path: PathBuf },
    #[error("cannot read the slot in {dir} to learn its target; run `limpet build` again")]
    Slot {
        dir: PathBuf,
        source: ImageFileError,
    },
    #[error("{path}: not a valid slot")]
    SlotFormat {
        path: PathBuf,
        source: slot::SlotError,
    },
    #[error("cannot prepare the simulation")]
    Namespaces { source: NamespaceError },
    #[error("{option} must be {expected}, got {value}")]
    InvalidOption {
        option: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("`{program}` is not installed; install it with `apt-get install {package}`")]
    ProgramMissing {
        program: String,
        package: &'static str,
    },
    #[error("cannot start `{program}`")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot make the private directory {path}")]
    TempDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot wait for `{program}`")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    #[error("`{program}` failed ({status}){}", stderr_suffix(.stderr))]
    ProgramFailed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
}

impl RunError {
    /// A program that could not be started because it is not installed becomes
    /// [`RunError::ProgramMissing`], naming the Debian `package` that installs it.
    pub(crate) fn missing_from(self, package: &'static str) -> RunError {
        match self {
            RunError::Spawn { program, source }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                RunError::ProgramMissing { program, package }
            }
            other => other,
        }
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        " with nothing on stderr".to_owned()
    } else {
        format!(":\n{stderr}")
    }
}
