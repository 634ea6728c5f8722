//! A local directory as a repository (development, removable media, tests).
//!
//! Rules kept here:
//! - A path is checked before it is joined to the base ([`check_relative`]): no absolute
//!   path and no `..` can leave the directory.
//! - A missing file is [`Error::NotFound`], as a 404 is over HTTP; a file larger than the
//!   cap is refused before it is read, and reads go through a [`Download`] like any other.

use std::path::PathBuf;
use std::time::Instant;

use super::{check_relative, Download, RetrievalPolicy, Transport};
use crate::error::Error;

/// Serves repository paths from a local directory.
#[derive(Clone, Debug)]
pub struct FileTransport {
    base: PathBuf,
    policy: RetrievalPolicy,
}

impl FileTransport {
    /// A transport rooted at `base`.
    pub fn new(base: impl Into<PathBuf>, policy: RetrievalPolicy) -> Self {
        FileTransport {
            base: base.into(),
            policy,
        }
    }
}

impl Transport for FileTransport {
    fn fetch(&self, path: &str, max_len: u64) -> Result<Download, Error> {
        let started = Instant::now();
        check_relative(path)?;
        let full = self.base.join(path);
        let file = match std::fs::File::open(&full) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(Error::io(format!("{}: open", full.display()), e)),
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("{}: stat", full.display()), e))?
            .len();
        if len > max_len {
            return Err(Error::LengthExceeded {
                path: path.to_owned(),
                max: max_len,
            });
        }
        Ok(Download::new(
            path,
            Box::new(file),
            max_len,
            self.policy,
            started,
        ))
    }
}
