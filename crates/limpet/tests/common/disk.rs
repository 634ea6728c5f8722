//! A built disk image as the tests change it: its partitions, its A/B state, slots
//! written or composed, bytes flipped.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::scratch;

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use limpet_image::slot::{self, BootFiles, SlotMeta};
use limpet_state::{Region, Slot, State, StateStore, Version};

/// Byte offset and size of partition `name` in a disk image.
pub fn partition(disk: &Path, name: &str) -> (u64, u64) {
    let parts = limpet_image::gpt::read(&mut File::open(disk).unwrap()).unwrap();
    let p = parts.iter().find(|p| p.name == name).unwrap();
    (p.offset(), p.size())
}

/// Writes `bytes` at `offset` of the disk image.
pub fn patch(disk: &Path, offset: u64, bytes: &[u8]) {
    let mut f = File::options().write(true).open(disk).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Flips the lowest bit of the byte at `offset` of partition `name`.
pub fn flip(disk: &Path, name: &str, offset: u64) {
    let (start, _) = partition(disk, name);
    let mut b = [0u8; 1];
    let mut f = File::open(disk).unwrap();
    f.seek(SeekFrom::Start(start + offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    patch(disk, start + offset, &[b[0] ^ 0x01]);
}

/// Writes a slot image into partition `slot-x` of `disk`.
pub fn install_bytes(disk: &Path, slot: Slot, bytes: &[u8]) {
    let (offset, size) = partition(disk, slot.partition_name());
    assert!(bytes.len() as u64 <= size);
    patch(disk, offset, bytes);
}

/// Reads the disk's A/B state and hands it to `look`.
pub fn with_state<T>(disk: &Path, look: impl FnOnce(&State) -> T) -> T {
    let (offset, size) = partition(disk, "state");
    let mut file = File::options().read(true).write(true).open(disk).unwrap();
    let region = Region::new(&mut file, offset, size).unwrap();
    let mut store = StateStore::new(region).unwrap();
    let state = store.load().unwrap();
    look(&state)
}

/// Marks `version` on `slot` as a trial with 3 boots.
pub fn mark_trial(disk: &Path, slot: Slot, version: &str) {
    mark_trial_with(disk, slot, version, 3);
}

/// Marks `version` on `slot` as a trial with `boots` boots.
pub fn mark_trial_with(disk: &Path, slot: Slot, version: &str, boots: u8) {
    let (offset, size) = partition(disk, "state");
    let mut file = File::options().read(true).write(true).open(disk).unwrap();
    let region = Region::new(&mut file, offset, size).unwrap();
    let mut store = StateStore::new(region).unwrap();
    let state = store.load().unwrap();
    let next = state
        .mark_trial(slot, Version::parse(version).unwrap(), boots)
        .unwrap();
    store.store(&next).unwrap();
}

/// The image signing key in `image.key` (PKCS#8 PEM).
pub fn signing_key(path: &Path) -> SigningKey {
    SigningKey::from_pkcs8_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A new slot from the built `slot.img` at `from`: the same app, SBOM and initramfs,
/// `version` instead of its own, `kernel` when given instead of its own, signed with `key`.
pub fn recompose(from: &Path, version: &str, kernel: Option<&[u8]>, key: &SigningKey) -> Vec<u8> {
    recompose_with(from, version, kernel, None, key)
}

/// [`recompose`], with `cmdline` when given instead of the slot's own command line.
pub fn recompose_with(
    from: &Path,
    version: &str,
    kernel: Option<&[u8]>,
    cmdline: Option<&str>,
    key: &SigningKey,
) -> Vec<u8> {
    let bytes = std::fs::read(from).unwrap();
    let opened = slot::open(&bytes).unwrap();
    let h = opened.header.unverified();
    let squashfs = &opened.data[..usize::try_from(h.squashfs_size).unwrap()];
    let meta = SlotMeta {
        device: h.device.clone(),
        target: h.target.to_string(),
        version: version.into(),
    };
    let boot = BootFiles {
        kernel: kernel.unwrap_or(opened.kernel),
        initramfs: opened.initramfs,
        cmdline: cmdline.unwrap_or(&h.cmdline),
    };
    slot::assemble(squashfs, &meta, opened.attachment, &boot, key).unwrap()
}

/// A release made by hand from `from`'s slot, as a vendor might botch one: `version`,
/// signed with the vendor's image key, whose kernel cannot find its init and panics at
/// boot (`rdinit=` is not a parameter a manifest may set).
pub fn panicking_release(from: &Path, version: &str) -> PathBuf {
    let slot_img = from.join("slot.img");
    let bytes = std::fs::read(&slot_img).unwrap();
    let signed = limpet_image::slot::open(&bytes)
        .unwrap()
        .header
        .unverified()
        .cmdline
        .clone();
    let slot = recompose_with(
        &slot_img,
        version,
        None,
        Some(&format!("{signed} rdinit=/no-such-init")),
        &signing_key(&scratch().join("keys/image.key")),
    );
    let path = scratch().join(format!("update-{version}-panics.img"));
    std::fs::write(&path, slot).unwrap();
    path
}
