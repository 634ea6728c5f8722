//! The vendor's project: its manifest file, parsed, and the inputs that make a build
//! reproducible; [`scaffold`] creates a new one (`limpet new`) and [`keys`] its image
//! signing key.
//!
//! Rules this module keeps:
//! - the project directory is the manifest's directory, and the manifest's relative paths
//!   are taken from it;
//! - a manifest is only ever handed on parsed and validated ([`Project::load`]);
//! - the build's one timestamp is `SOURCE_DATE_EPOCH`, else the last commit's time, else
//!   0, and it must fit in 32 bits (squashfs and cpio store u32 times).

pub mod keys;
pub mod scaffold;

use std::path::{Path, PathBuf};
use std::process::Command;

use limpet_manifest::{Diagnostics, Manifest};

/// Errors reading a project.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The manifest file could not be read.
    #[error("cannot read manifest {path}")]
    Read {
        /// The manifest's path.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// The manifest was read but does not parse or validate.
    #[error("{path} has errors:\n{diagnostics}")]
    Invalid {
        /// The manifest's path.
        path: PathBuf,
        /// Every problem found, each with its position in the file.
        diagnostics: Diagnostics,
    },
    /// `SOURCE_DATE_EPOCH` is set but is not a whole number of seconds that fits in 32
    /// bits.
    #[error("SOURCE_DATE_EPOCH={value:?} is not a number of seconds that fits in 32 bits (squashfs and cpio store u32 times)")]
    BadEpoch {
        /// The variable's value.
        value: String,
    },
}

/// A parsed manifest and where it lives.
#[derive(Debug)]
pub struct Project {
    /// The manifest's path, as given.
    pub manifest_path: PathBuf,
    /// The directory holding the manifest (`.` for a bare file name); the project's
    /// relative paths start here.
    pub dir: PathBuf,
    /// The manifest, parsed and validated.
    pub manifest: Manifest,
}

impl Project {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ProjectError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProjectError::Read {
            path: path.to_owned(),
            source,
        })?;
        let manifest =
            limpet_manifest::parse(&path.display().to_string(), &text).map_err(|diagnostics| {
                ProjectError::Invalid {
                    path: path.to_owned(),
                    diagnostics,
                }
            })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(Self {
            manifest_path: path.to_owned(),
            dir,
            manifest,
        })
    }
}

/// Where the build's timestamps come from, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochSource {
    /// `SOURCE_DATE_EPOCH` was set in the environment.
    Environment,
    /// The time of the last commit of the git repository holding the project.
    LastCommit,
    /// Not in a git repository and no SOURCE_DATE_EPOCH: the Unix epoch.
    Zero,
}

/// The one timestamp every file in the image carries: `SOURCE_DATE_EPOCH` if set, else
/// the time of the last commit of the repository holding `dir`, else 0.
pub fn source_date_epoch(dir: &Path) -> Result<(u32, EpochSource), ProjectError> {
    if let Some(value) = std::env::var_os("SOURCE_DATE_EPOCH") {
        let value = value.to_string_lossy().into_owned();
        let secs = value
            .trim()
            .parse::<u32>()
            .map_err(|_| ProjectError::BadEpoch { value })?;
        return Ok((secs, EpochSource::Environment));
    }
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%ct"])
        .output();
    if let Ok(output) = output {
        if output.status.success() {
            if let Ok(secs) = String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse::<u32>()
            {
                return Ok((secs, EpochSource::LastCommit));
            }
        }
    }
    Ok((0, EpochSource::Zero))
}
