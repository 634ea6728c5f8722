//! The namespace backend (`limpet run --sim`): limpet-init as PID 1 of fresh namespaces
//! on the build host, for a fast loop and for tests that need the host's network
//! namespaces.
//!
//! What the command line does before it starts PID 1:
//! 1. unpack the initramfs into a private scratch root (regular files and directories:
//!    exactly what the kernel would unpack, without device nodes);
//! 2. check the slot against the public key the initramfs carries (signature, whole
//!    dm-verity tree, attachment) — the check the device does before mounting — and unpack
//!    its squashfs files into `<root>/slot`;
//! 3. write the simulation marker (`/etc/limpet/sim`), the only thing that makes
//!    limpet-init take its simulation path;
//! 4. start `unshare --fork --pid --mount --uts --ipc --net --kill-child=SIGTERM` (with
//!    `--netns NAME`: `nsenter --net=/run/netns/NAME` first, and no `--net`), which
//!    bind-mounts the root onto itself (so that it is a mount point, as on a device) and
//!    `chroot`s into it to exec `/init`: new PID, mount, UTS, IPC and network namespaces,
//!    and a SIGTERM (a clean shutdown) to PID 1 when `limpet run` ends.
//!
//! Needs root on the host (namespaces and mounts). The root directory is removed when the
//! run ends.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use limpet_build::keys;
use limpet_build::outputs::{INITRAMFS, INITRAMFS_PUBLIC_KEY, SLOT_IMG};
use limpet_image::{cpio, slot, squashfs};

use crate::error::RunError;
use crate::options::{NamespaceOptions, Watch};
use crate::outcome::RunReport;
use crate::supervise::supervise;

/// The marker limpet-init looks for (see `crates/limpet-init/src/host_namespaces.rs`).
pub const MARKER: &str = "etc/limpet/sim";

/// The Debian package that installs `unshare` and `nsenter`.
const UTIL_LINUX: &str = "util-linux";

/// Errors preparing a simulation.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// The run is not root, which namespaces and mounts need.
    #[error("--sim needs root (namespaces and mounts); run it with sudo")]
    NotRoot,
    /// A file of the image (initramfs or slot) could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file's path.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// A file or directory of the scratch root could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The path being written.
        path: PathBuf,
        /// Why writing it failed.
        source: std::io::Error,
    },
    /// The initramfs is not a cpio archive this crate can unpack.
    #[error("{path}: bad initramfs")]
    Initramfs {
        /// The initramfs's path.
        path: PathBuf,
        /// What is wrong with it.
        source: cpio::CpioError,
    },
    /// The initramfs lacks the public key the slot is checked against, or it is malformed.
    #[error("{path}: the initramfs carries no usable {INITRAMFS_PUBLIC_KEY}")]
    Key {
        /// The initramfs's path.
        path: PathBuf,
    },
    /// The slot fails the device's check against the initramfs's key (signature,
    /// dm-verity tree, attachment).
    #[error("{path}: the slot does not verify against the initramfs's key")]
    Slot {
        /// The slot image's path.
        path: PathBuf,
        /// Which check failed.
        source: slot::SlotError,
    },
    /// The slot's squashfs cannot be read back to unpack its files.
    #[error("{path}: cannot read the squashfs")]
    Squashfs {
        /// The slot image's path.
        path: PathBuf,
        /// What is wrong with the squashfs.
        source: squashfs::SquashfsError,
    },
    /// An archive entry's name could escape the scratch root (absolute,
    /// `..`, or empty), so it is refused.
    #[error("{path}: refusing the entry {entry:?} (not a plain relative path)")]
    Entry {
        /// The archive's path (initramfs or slot).
        path: PathBuf,
        /// The refused entry name.
        entry: String,
    },
}

/// A prepared simulation root, removed on drop.
#[derive(Debug)]
pub struct NamespaceRoot {
    dir: PathBuf,
}

impl NamespaceRoot {
    /// The unpacked root directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The command that starts limpet-init as PID 1 of new namespaces in this root: a new
    /// network namespace too, or, with `netns`, the existing `/run/netns/<netns>` (entered
    /// with `nsenter` first).
    pub fn command(&self, netns: Option<&str>) -> Command {
        let mut cmd = match netns {
            Some(name) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{name}")).arg("unshare");
                c
            }
            None => Command::new("unshare"),
        };
        cmd.args(["--fork", "--pid", "--mount", "--uts", "--ipc"]);
        if netns.is_none() {
            cmd.arg("--net");
        }
        cmd.arg("--kill-child=SIGTERM")
            // In the new mount namespace (private propagation: nothing leaks to the host),
            // the root becomes a mount point, as a device's root is; then chroot into it.
            .args([
                "/bin/sh",
                "-c",
                "mount --bind \"$0\" \"$0\" && exec chroot \"$0\" /init",
            ])
            .arg(&self.dir)
            // PID 1 gets no environment from the host; PATH only lets the shell find its tools.
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        cmd
    }
}

impl Drop for NamespaceRoot {
    fn drop(&mut self) {
        // PID 1 may still be stopping its tasks: give it its grace period first.
        std::thread::sleep(std::time::Duration::from_secs(4));
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs the build in `dir` (already checked) as PID 1 of new namespaces, handing each
/// console line to `on_line`.
pub fn run(
    dir: &Path,
    options: &NamespaceOptions,
    watch: &Watch,
    on_line: &mut dyn FnMut(&str),
) -> Result<RunReport, RunError> {
    let root = prepare(dir).map_err(|source| RunError::Namespaces { source })?;
    tracing::info!(
        "simulating {} in {} (new namespaces on this host)",
        dir.display(),
        root.path().display()
    );
    supervise(
        root.command(options.netns.as_deref()),
        watch,
        None,
        None,
        on_line,
    )
    .map_err(|err| err.missing_from(UTIL_LINUX))
}

/// Unpacks and checks the build in `dir` into a new simulation root.
pub fn prepare(dir: &Path) -> Result<NamespaceRoot, NamespaceError> {
    if !rustix::process::geteuid().is_root() {
        return Err(NamespaceError::NotRoot);
    }
    let root = std::env::temp_dir().join(format!("limpet-sim-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    create_dir(&root, 0o755)?;
    let sim = NamespaceRoot { dir: root.clone() };

    let initramfs = dir.join(INITRAMFS);
    let packed = fs::read(&initramfs).map_err(|source| NamespaceError::Read {
        path: initramfs.clone(),
        source,
    })?;
    let raw = cpio::decompress(&packed).map_err(|source| NamespaceError::Initramfs {
        path: initramfs.clone(),
        source,
    })?;
    let entries = cpio::read_entries(&raw).map_err(|source| NamespaceError::Initramfs {
        path: initramfs.clone(),
        source,
    })?;
    for entry in &entries {
        let target = contained(&root, entry.path).ok_or_else(|| NamespaceError::Entry {
            path: initramfs.clone(),
            entry: entry.path.to_owned(),
        })?;
        match entry.mode & 0o170_000 {
            0o040_000 => create_dir(&target, entry.mode & 0o7777)?,
            0o100_000 => write_file(&target, entry.data, entry.mode & 0o7777)?,
            // Device nodes, symlinks: none in a Limpet initramfs; skipped.
            _ => {}
        }
    }

    let pem = cpio::find_file(&raw, INITRAMFS_PUBLIC_KEY).ok_or_else(|| NamespaceError::Key {
        path: initramfs.clone(),
    })?;
    let key =
        keys::parse_public_pem(&String::from_utf8_lossy(pem)).map_err(|_| NamespaceError::Key {
            path: initramfs.clone(),
        })?;
    let slot_path = dir.join(SLOT_IMG);
    let slot_bytes = fs::read(&slot_path).map_err(|source| NamespaceError::Read {
        path: slot_path.clone(),
        source,
    })?;
    let verified = slot::verify(&slot_bytes, &key).map_err(|source| NamespaceError::Slot {
        path: slot_path.clone(),
        source,
    })?;
    let slot_dir = root.join("slot");
    create_dir(&slot_dir, 0o755)?;
    let squashfs_error = |source| NamespaceError::Squashfs {
        path: slot_path.clone(),
        source,
    };
    for file in squashfs::list(verified.squashfs).map_err(squashfs_error)? {
        let data = squashfs::read_file(verified.squashfs, &file.path).map_err(squashfs_error)?;
        let target = contained(&slot_dir, &file.path).ok_or_else(|| NamespaceError::Entry {
            path: slot_path.clone(),
            entry: file.path.clone(),
        })?;
        write_file(&target, &data, u32::from(file.mode))?;
    }
    create_dir(&root.join("data"), 0o755)?;
    write_file(&root.join(MARKER), b"simulation\n", 0o444)?;
    Ok(sim)
}

/// `base/relative`, only for a relative path with no `..`.
fn contained(base: &Path, relative: &str) -> Option<PathBuf> {
    let path = Path::new(relative);
    let clean = path
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    (clean && !relative.is_empty()).then(|| base.join(path))
}

fn create_dir(path: &Path, mode: u32) -> Result<(), NamespaceError> {
    let write = |source| NamespaceError::Write {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(path).map_err(write)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(write)
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), NamespaceError> {
    let write = |source| NamespaceError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(write)?;
    }
    fs::write(path, data).map_err(write)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_unpacked() {
        let base = Path::new("/tmp/root");
        assert_eq!(
            contained(base, "etc/limpet/image.pub"),
            Some(base.join("etc/limpet/image.pub"))
        );
        assert_eq!(contained(base, "../etc/passwd"), None);
        assert_eq!(contained(base, "/etc/passwd"), None);
        assert_eq!(contained(base, "a/./b"), Some(base.join("a/b")));
        assert_eq!(contained(base, ""), None);
    }
}
