//! `limpet run`: boots a built image and turns what the guest does into an outcome and an
//! exit code.
//!
//! - [`options`]: what a run is asked to do, with the [`Backend`] it runs on and the
//!   options only that backend has;
//! - [`qemu`] (the whole image under TCG), with [`machine`] (the board and firmware for
//!   a target), [`qmp`] (the power button) and [`swtpm`] (a software TPM, `--tpm`);
//! - [`namespaces`]: limpet-init as PID 1 of new namespaces on this host (`--sim`);
//! - [`supervise`] and [`console`]: the program's console as lines, and the exit
//!   conditions, the same for both backends;
//! - [`outcome`]: how a run ended, its exit code and its JSON summary.
//!
//! Rules this crate keeps: a run never modifies the built outputs unless asked
//! ([`DiskWrites::Persist`]); the program it starts is stopped only by its own PID and
//! always waited for; the exit codes are the ones README.md documents.

#![warn(missing_docs)]

pub mod console;
pub mod error;
pub mod machine;
pub mod namespaces;
pub mod options;
pub mod outcome;
pub mod qemu;
pub mod qmp;
pub mod supervise;
pub mod swtpm;

use std::path::Path;

use limpet_build::outputs::{DISK_IMG, FIRMWARE_VARS, INITRAMFS, KERNEL};
use limpet_build::read::image_file;
use limpet_image::header::Target;
use limpet_image::slot;

pub use error::RunError;
pub use machine::{Firmware, Machine};
pub use options::{
    Backend, Cut, DiskWrites, Forward, InvalidRtcBase, InvalidTapName, NamespaceOptions, Network,
    QemuOptions, RtcBase, RunOptions, TapName, Watch, DEFAULT_MEMORY_MIB, FORWARD_ADDRESS,
};
pub use outcome::{Outcome, RunReport, EXIT_INTERRUPTED, EXIT_KERNEL_PANIC, EXIT_OK, EXIT_TIMEOUT};

/// Runs the image in `options.dir` on its backend, handing each console line to
/// `on_line` as it arrives.
pub fn run(options: &RunOptions, on_line: &mut dyn FnMut(&str)) -> Result<RunReport, RunError> {
    let target = check_dir(&options.dir)?;
    if let Backend::Qemu(QemuOptions {
        firmware: Firmware::Uefi,
        ..
    }) = &options.backend
    {
        let path = options.dir.join(FIRMWARE_VARS);
        if !path.is_file() {
            return Err(RunError::MissingFile { path });
        }
    }
    match &options.backend {
        Backend::Qemu(qemu) => qemu::run(&options.dir, target, qemu, &options.watch, on_line),
        Backend::Namespaces(ns) => namespaces::run(&options.dir, ns, &options.watch, on_line),
    }
}

/// Checks that `dir` holds what a run needs, and reads the target from its slot.
pub fn check_dir(dir: &Path) -> Result<Target, RunError> {
    if !dir.is_dir() {
        return Err(RunError::NoDir {
            dir: dir.to_owned(),
        });
    }
    for name in [KERNEL, INITRAMFS, DISK_IMG] {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(RunError::MissingFile { path });
        }
    }
    let slot_bytes = image_file::load_slot(dir).map_err(|source| RunError::Slot {
        dir: dir.to_owned(),
        source,
    })?;
    let opened = slot::open(&slot_bytes.bytes).map_err(|source| RunError::SlotFormat {
        path: slot_bytes.path.clone(),
        source,
    })?;
    Ok(opened.header.unverified().target)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn check_dir_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KERNEL), b"k").unwrap();
        let err = check_dir(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(INITRAMFS), "{text}");
        assert!(text.contains("limpet build"), "{text}");
        let err = check_dir(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(err, RunError::NoDir { .. }));
    }
}
