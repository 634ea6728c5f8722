//! Which release this PID 1 belongs to: the initramfs's release file (limpet-image's
//! `release`, written by `limpet build`), read once at start for the first console line.
//!
//! The binary carries no release of its own, so it is the same bytes in every release
//! built from the same Limpet source (a slot's delta then skips it). The file is inside
//! the initramfs the slot's signature covers. A missing or malformed file is said on the
//! console with its reason and the boot goes on: the release is what PID 1 calls itself,
//! nothing decides on it (the slot's signed header is what the update path and the
//! status report read).

use std::io::Read;
use std::path::{Path, PathBuf};

use limpet_image::release::{Release, ReleaseError, INITRAMFS_PATH, MAX_LEN};

/// Why the release is unknown.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseFileError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a release", path.display())]
    Parse { path: PathBuf, source: ReleaseError },
}

/// The release the initramfs under `root` names.
pub fn read(root: &Path) -> Result<Release, ReleaseFileError> {
    let path = root.join(INITRAMFS_PATH);
    let read_err = |source| ReleaseFileError::Read {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(read_err)?;
    // One byte more than the longest release, so a longer file is refused, not cut.
    let mut bytes = Vec::with_capacity(MAX_LEN + 1);
    file.take(MAX_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    Release::parse(&bytes).map_err(|source| ReleaseFileError::Parse { path, source })
}

/// PID 1's first console line: its own version and the release, or why the release is
/// unknown.
pub fn starting_line(version: &str, release: &Result<Release, ReleaseFileError>) -> String {
    match release {
        Ok(release) => format!("limpet-init {version} of release {release} starting"),
        Err(e) => format!(
            "limpet-init {version} starting; its release is unknown: {}",
            crate::console::chain(e)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(bytes: Option<&[u8]>) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        if let Some(bytes) = bytes {
            let path = root.path().join(INITRAMFS_PATH);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        root
    }

    #[test]
    fn the_release_file_names_the_release_on_the_first_line() {
        let root = root_with(Some(b"hello 0.2.0 (aarch64)\n"));
        let release = read(root.path());
        assert_eq!(
            starting_line("0.1.0", &release),
            "limpet-init 0.1.0 of release hello 0.2.0 (aarch64) starting"
        );
    }

    #[test]
    fn a_missing_long_or_bad_file_is_said_with_its_reason() {
        let missing = root_with(None);
        let line = starting_line("0.1.0", &read(missing.path()));
        assert!(
            line.starts_with("limpet-init 0.1.0 starting; its release is unknown: cannot read ")
                && line.contains("etc/limpet/release: No such file or directory"),
            "{line}"
        );

        let long = root_with(Some(&[b'a'; 4096]));
        let release = read(long.path());
        assert!(
            matches!(
                release,
                Err(ReleaseFileError::Parse {
                    source: ReleaseError::TooLong { len },
                    ..
                }) if len == MAX_LEN + 1
            ),
            "{release:?}"
        );

        let bad = root_with(Some(b"hello 0.2.0 (riscv64)\n"));
        let line = starting_line("0.1.0", &read(bad.path()));
        assert!(
            line.ends_with("etc/limpet/release is not a release: unknown target \"riscv64\""),
            "{line}"
        );

        // A directory where the file should be: a read error, not a panic.
        let dir = root_with(None);
        std::fs::create_dir_all(dir.path().join(INITRAMFS_PATH)).unwrap();
        assert!(matches!(
            read(dir.path()),
            Err(ReleaseFileError::Read { .. })
        ));
    }
}
