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
    /// The image directory does not exist or is not a directory.
    #[error("{dir} is not a directory; run `limpet build` to make one (it holds {KERNEL}, {INITRAMFS}, {DISK_IMG} and {SLOT_IMG})")]
    NoDir {
        /// The path that was given as the image directory.
        dir: PathBuf,
    },
    /// One of the files a run needs (kernel, initramfs, disk image) is not in the image
    /// directory.
    #[error("{path} is missing; run `limpet build` to write it")]
    MissingFile {
        /// The path where the file was expected.
        path: PathBuf,
    },
    /// The slot image in the directory cannot be read, so its target is unknown.
    #[error("cannot read the slot in {dir} to learn its target; run `limpet build` again")]
    Slot {
        /// The image directory that was read.
        dir: PathBuf,
        /// Why reading the slot failed.
        source: ImageFileError,
    },
    /// The slot image was read but is not a well-formed slot.
    #[error("{path}: not a valid slot")]
    SlotFormat {
        /// The slot image's path.
        path: PathBuf,
        /// What is wrong with its format.
        source: slot::SlotError,
    },
    /// The scratch root for `--sim` could not be prepared.
    #[error("cannot prepare the simulation")]
    Namespaces {
        /// Which step of preparing it failed.
        source: NamespaceError,
    },
    /// A scratch file of the run could not be made.
    #[error("cannot make {what}")]
    Io {
        /// What was being made.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A backend option has a value the backend cannot use (for example
    /// `--memory 0`).
    #[error("{option} must be {expected}, got {value}")]
    InvalidOption {
        /// The option's name as the command line spells it.
        option: &'static str,
        /// What the option accepts, in words.
        expected: &'static str,
        /// The value that was given.
        value: String,
    },
    /// A program the backend needs is not installed on the build host.
    #[error("`{program}` is not installed; install it with `apt-get install {package}`")]
    ProgramMissing {
        /// The program's name.
        program: String,
        /// The Debian package that installs it.
        package: &'static str,
    },
    /// A program the backend needs could not be started.
    #[error("cannot start `{program}`")]
    Spawn {
        /// The program's name.
        program: String,
        /// Why starting it failed.
        source: std::io::Error,
    },
    /// The private directory for QEMU's control socket could not be made.
    #[error("cannot make the private directory {path}")]
    TempDir {
        /// The directory's path.
        path: PathBuf,
        /// Why creating it failed.
        source: std::io::Error,
    },
    /// Waiting for a program the run started failed, so it may still be running.
    #[error("cannot wait for `{program}`")]
    Wait {
        /// The program's name.
        program: String,
        /// Why waiting failed.
        source: std::io::Error,
    },
    /// The supervised program (QEMU, or `unshare` for `--sim`) ended with a failure status
    /// and no outcome explains it (no panic line, no interrupt, not stopped by the run).
    #[error("`{program}` failed ({status}){}", stderr_suffix(.stderr))]
    ProgramFailed {
        /// The program's name.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it wrote on stderr, kept to show the reason.
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
