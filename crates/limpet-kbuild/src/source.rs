//! The kernel's source: Debian's `linux-source-6.1` package, which installs the source
//! tree of Debian's own 6.1 kernel (with Debian's patches) as one tarball. Its version is
//! pinned by the package and recorded in the build report; its sha256 is part of every
//! cache key.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::KbuildError;

/// The Debian package that holds the source.
pub const PACKAGE: &str = "linux-source-6.1";
/// The tarball the package installs, in `/usr/src`.
pub const TARBALL: &str = "linux-source-6.1.tar.xz";
/// The directory the tarball unpacks to.
pub const TREE: &str = "linux-source-6.1";

/// The located source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSource {
    /// The tarball.
    pub tarball: PathBuf,
    /// The package's version as dpkg knows it (e.g. `6.1.192-3`).
    pub version: String,
    /// The tarball's sha256, hex.
    pub sha256: String,
}

/// Finds the tarball in `usr_src` (`/usr/src` on a real host) and reads the package's
/// version from dpkg.
pub fn locate(usr_src: &Path) -> Result<KernelSource, KbuildError> {
    let tarball = usr_src.join(TARBALL);
    let mut file = std::fs::File::open(&tarball).map_err(|source| KbuildError::NoSource {
        path: tarball.clone(),
        source,
    })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|source| KbuildError::Io {
            path: tarball.clone(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(KernelSource {
        version: package_version()?,
        sha256: hex::encode(hasher.finalize()),
        tarball,
    })
}

/// `dpkg-query -W -f '${Version}' linux-source-6.1`.
fn package_version() -> Result<String, KbuildError> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", PACKAGE])
        .output()
        .map_err(|source| KbuildError::Spawn {
            program: "dpkg-query".into(),
            source,
        })?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || version.is_empty() {
        return Err(KbuildError::NoPackage);
    }
    Ok(version)
}
