//! Test releases as signed slots (limpet-image's real squashfs writer and slot assembly),
//! and a device's partitions as temporary files in the factory state.
//!
//! Rules kept here: a slot is a pure function of its arguments (fixed squashfs time
//! [`MTIME`], empty attachment `{}`, boot files [`TEST_BOOT`]), so tests that compare sizes and hashes stay stable;
//! helpers panic on failure (test code).
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use limpet_image::slot::{self, BootFiles, SlotMeta};
use limpet_image::squashfs::{self, Entry};
use limpet_state::{State, StateStore, Version};

/// The modification time of every file in a test squashfs.
pub const MTIME: u32 = 1_700_000_000;

/// Size of the `state` partition file [`Partitions::factory`] writes.
pub const STATE_SIZE: usize = 1 << 20;

/// The boot files of every test slot: placeholder bytes (these slots are read, verified
/// and installed, never booted).
pub const TEST_BOOT: BootFiles<'static> = BootFiles {
    kernel: b"test kernel",
    initramfs: b"test initramfs",
    cmdline: "console=ttyS0",
};

/// A signed slot of `device`/`target`/`version` holding `entries`, with the attachment `{}`
/// and [`TEST_BOOT`].
pub fn signed_slot(
    entries: &[Entry],
    device: &str,
    target: &str,
    version: &str,
    key: &SigningKey,
) -> Vec<u8> {
    signed_slot_with_cmdline(entries, device, target, version, key, TEST_BOOT.cmdline)
}

/// As [`signed_slot`], with `cmdline` as the signed kernel command line (a cohort's slot
/// says `limpet.cohort=K/N` there).
pub fn signed_slot_with_cmdline(
    entries: &[Entry],
    device: &str,
    target: &str,
    version: &str,
    key: &SigningKey,
    cmdline: &str,
) -> Vec<u8> {
    let fs = squashfs::build(entries, MTIME).unwrap();
    let meta = SlotMeta {
        device: device.into(),
        target: target.into(),
        version: version.into(),
    };
    let boot = BootFiles {
        cmdline,
        ..TEST_BOOT
    };
    slot::assemble(&fs, &meta, b"{}", &boot, key).unwrap()
}

/// The verity root hash a slot's header names (read without checking the signature).
pub fn root_hash(slot: &[u8]) -> [u8; 32] {
    slot::open(slot).unwrap().header.unverified().root_hash
}

/// A device's `state`, slot A and slot B partitions as files in one directory.
#[derive(Debug, Clone)]
pub struct Partitions {
    /// The `state` partition.
    pub state: PathBuf,
    /// Slot A, the running slot.
    pub slot_a: PathBuf,
    /// Slot B, the inactive slot.
    pub slot_b: PathBuf,
}

impl Partitions {
    /// Writes `dir/state`, `dir/slota` and `dir/slotb` as a device leaves the factory:
    /// slot A holds `running` (padded to `slot_size`) and the state commits it as
    /// `running_version`; slot B is `slot_size` zero bytes.
    pub fn factory(dir: &Path, running: &[u8], running_version: &str, slot_size: u64) -> Self {
        let parts = Partitions {
            state: dir.join("state"),
            slot_a: dir.join("slota"),
            slot_b: dir.join("slotb"),
        };
        let slot_size = usize::try_from(slot_size).unwrap();
        std::fs::write(&parts.state, vec![0u8; STATE_SIZE]).unwrap();
        let mut a = running.to_vec();
        a.resize(slot_size, 0);
        std::fs::write(&parts.slot_a, a).unwrap();
        std::fs::write(&parts.slot_b, vec![0u8; slot_size]).unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .open(&parts.state)
            .unwrap();
        StateStore::new(file)
            .unwrap()
            .store(&State::factory(Version::parse(running_version).unwrap()))
            .unwrap();
        parts
    }

    /// The state the `state` partition holds now.
    pub fn state(&self) -> State {
        StateStore::new(File::open(&self.state).unwrap())
            .unwrap()
            .load()
            .unwrap()
    }
}
