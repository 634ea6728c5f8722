//! The slot choice on an in-memory disk: a GPT, a state partition written by limpet-state,
//! and two slots in the rig format, attacked one byte at a time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use std::sync::OnceLock;

use ed25519_dalek::{Signer, SigningKey};
use limpet_image::header::HeaderError;
use limpet_image::slot::{self as image_slot, BootFiles, SlotError as ImageError, SlotMeta};
use limpet_state::{FailureReason, Slot, State, TrialPhase, Version};

use super::*;
use crate::disk::mem::MemDisk;

#[derive(Default)]
struct Lines(Vec<String>);

impl Console for Lines {
    fn line(&mut self, args: fmt::Arguments<'_>) {
        self.0.push(args.to_string());
    }
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

/// The vendor's keys only (vendor mode).
fn vendor_keys() -> Keys {
    Keys::vendor_only(key().verifying_key())
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

/// A 4 KiB stand-in for the app's squashfs: its magic and `bytes_used`, which is all the
/// slot format reads of it; the loader checks its bytes against the slot's dm-verity tree.
fn squashfs() -> Vec<u8> {
    let mut sq = vec![0u8; 4096];
    sq[..4].copy_from_slice(b"hsqs");
    sq[40..48].copy_from_slice(&4096u64.to_le_bytes());
    sq
}

/// A whole-image slot (limpet-image's format 2) holding `version`.
fn slot_bytes(version: &str, signer: &SigningKey) -> Vec<u8> {
    image_slot::assemble(
        &squashfs(),
        &SlotMeta {
            device: "hello".into(),
            target: crate::TARGET.into(),
            version: version.into(),
        },
        b"sbom",
        &BootFiles {
            kernel: &[0x4d; 1000],
            initramfs: &[0x07; 500],
            cmdline: "console=ttyS0 quiet",
        },
        signer,
    )
    .unwrap()
}

/// Where the header, the kernel and the initramfs are in every test slot.
struct Offsets {
    header: u64,
    kernel: u64,
    initramfs: u64,
}

fn offsets() -> Offsets {
    let s = slot_bytes("1.0.0", &key());
    let layout = image_slot::open(&s).unwrap().layout;
    Offsets {
        header: layout.header_offset,
        kernel: layout.kernel_offset,
        initramfs: layout.initramfs_offset,
    }
}

/// Offset of the command line in the header (limpet-image's format 2).
const CMDLINE_IN_HEADER: u64 = 408;

/// limpet-image's disk writer: GPT, blank state, slot A holding 1.0.0, empty slot B.
fn base_disk() -> MemDisk {
    crate::disk::mem::written(&slot_bytes("1.0.0", &key()), [5; 32])
}

fn parts() -> Partitions {
    static PARTS: OnceLock<Partitions> = OnceLock::new();
    *PARTS.get_or_init(|| gpt::find_partitions(&mut base_disk()).unwrap())
}

fn put_slot(disk: &mut MemDisk, slot: Slot, version: &str, signer: &SigningKey) {
    let p = *part_of(&parts(), slot);
    let bytes = slot_bytes(version, signer);
    let at = usize::try_from(p.start).unwrap();
    disk.bytes[at..at + bytes.len()].copy_from_slice(&bytes);
}

fn flip(disk: &mut MemDisk, slot: Slot, offset: u64) {
    let p = *part_of(&parts(), slot);
    disk.bytes[usize::try_from(p.start + offset).unwrap()] ^= 0x20;
}

fn put_state(disk: &mut MemDisk, state: &State) {
    store(disk, &parts(), state).unwrap();
}

fn read_state(disk: &mut MemDisk) -> State {
    copies::load_detailed(&mut StateCopies {
        disk,
        part: parts().state,
    })
    .unwrap()
    .state
}

/// A disk with a GPT, slot A holding 1.0.0 and slot B 2.0.0, and no state.
fn disk() -> MemDisk {
    let mut d = base_disk();
    put_slot(&mut d, Slot::B, "2.0.0", &key());
    d
}

fn trial_state(boots: u8) -> State {
    State::factory(v("1.0.0"))
        .mark_trial(Slot::B, v("2.0.0"), boots)
        .unwrap()
}

fn choose_on(d: &mut MemDisk) -> (Result<Booting, Halt>, Vec<String>) {
    let mut lines = Lines::default();
    let r = choose(d, &vendor_keys(), &mut lines);
    (r, lines.0)
}

#[test]
fn the_committed_slot_boots_and_the_boot_is_counted() {
    let mut d = disk();
    put_state(&mut d, &State::factory(v("1.0.0")));
    let (r, lines) = choose_on(&mut d);
    let b = r.unwrap();
    assert_eq!(b.slot, Slot::A);
    assert_eq!(b.verified.kernel, vec![0x4d; 1000]);
    assert_eq!(b.verified.initramfs, vec![0x07; 500]);
    assert_eq!(
        b.cmdline,
        "console=ttyS0 quiet limpet.slot=a limpet.counted=1 limpet.owner=vendor"
    );
    assert_eq!(read_state(&mut d).boot_count(), 1);
    assert!(
        lines.iter().any(|l| l.starts_with("boot 1 counted")),
        "{lines:?}"
    );
}

#[test]
fn a_trial_boots_after_its_boot_is_stored() {
    let mut d = disk();
    put_state(&mut d, &trial_state(3));
    let b = choose_on(&mut d).0.unwrap();
    assert_eq!(b.slot, Slot::B);
    assert!(b
        .cmdline
        .ends_with(" limpet.slot=b limpet.counted=1 limpet.owner=vendor"));
    let t = read_state(&mut d).trial().cloned().unwrap();
    assert_eq!((t.boots_left, t.phase), (2, TrialPhase::Booted));
}

#[test]
fn a_trial_with_one_flipped_byte_is_rolled_back_and_the_committed_slot_boots() {
    let o = offsets();
    for (what, offset) in [
        ("header", o.header + 200),
        ("app", 200),
        ("kernel", o.kernel + 999),
        ("initramfs", o.initramfs),
        ("cmdline", o.header + CMDLINE_IN_HEADER + 3),
    ] {
        let mut d = disk();
        put_state(&mut d, &trial_state(3));
        flip(&mut d, Slot::B, offset);
        let (r, lines) = choose_on(&mut d);
        let b = r.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(b.slot, Slot::A, "{what}");
        let s = read_state(&mut d);
        assert!(s.trial().is_none(), "{what}");
        let f = s.last_failure().unwrap();
        assert_eq!(
            (f.slot, f.reason),
            (Slot::B, FailureReason::VerifyFailed),
            "{what}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("trial slot B refused")),
            "{what}: {lines:?}"
        );
    }
}

#[test]
fn the_exact_refusal_for_each_flipped_part() {
    let key = vendor_keys();
    let o = offsets();
    for (offset, part) in [(o.kernel, "kernel"), (o.initramfs + 1, "initramfs")] {
        let mut d = disk();
        flip(&mut d, Slot::A, offset);
        let err = slot::load(&mut d, &parts().slot_a, &key, None).unwrap_err();
        assert!(
            matches!(err, SlotError::Image { source: ImageError::PartHash { part: p, .. } } if p == part),
            "{part}: {err}"
        );
    }
    // A changed block of the app fails its dm-verity hash before any kernel starts.
    let mut d = disk();
    flip(&mut d, Slot::A, 200);
    let err = slot::load(&mut d, &parts().slot_a, &key, None).unwrap_err();
    assert!(
        matches!(
            err,
            SlotError::Image {
                source: ImageError::Verity { .. }
            }
        ),
        "app: {err}"
    );
    // The command line is signed in the header itself.
    let mut d = disk();
    flip(&mut d, Slot::A, o.header + CMDLINE_IN_HEADER);
    let err = slot::load(&mut d, &parts().slot_a, &key, None).unwrap_err();
    assert!(
        matches!(
            err,
            SlotError::Signature {
                source: HeaderError::BadSignature
            }
        ),
        "{err}"
    );
}

#[test]
fn a_slot_signed_by_another_key_is_refused() {
    let mut d = disk();
    put_slot(&mut d, Slot::B, "2.0.0", &SigningKey::from_bytes(&[3; 32]));
    put_state(&mut d, &trial_state(3));
    let b = choose_on(&mut d).0.unwrap();
    assert_eq!(b.slot, Slot::A);
    let err = slot::load(&mut d, &parts().slot_b, &vendor_keys(), None).unwrap_err();
    assert!(
        matches!(
            err,
            SlotError::Signature {
                source: HeaderError::WrongKey { .. }
            }
        ),
        "{err}"
    );
}

#[test]
fn a_trial_slot_holding_a_version_below_the_floor_is_refused() {
    let mut d = disk();
    // The state says 2.0.0 is on trial, but the vendor-signed slot holds 0.9.0.
    put_slot(&mut d, Slot::B, "0.9.0", &key());
    put_state(&mut d, &trial_state(3));
    let (r, lines) = choose_on(&mut d);
    assert_eq!(r.unwrap().slot, Slot::A);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("version 0.9.0 is below the floor 1.0.0")),
        "{lines:?}"
    );
}

#[test]
fn a_refused_committed_slot_halts() {
    let mut d = disk();
    put_state(&mut d, &State::factory(v("1.0.0")));
    flip(&mut d, Slot::A, offsets().kernel);
    let (r, _) = choose_on(&mut d);
    assert!(matches!(
        r,
        Err(Halt::Committed {
            slot: Slot::A,
            source: SlotError::Image {
                source: ImageError::PartHash { part: "kernel", .. }
            }
        })
    ));
}

#[test]
fn a_trial_out_of_boots_is_rolled_back_before_anything_is_read() {
    let mut d = disk();
    let (spent, _) = trial_state(1).begin_boot();
    put_state(&mut d, &spent);
    let (r, lines) = choose_on(&mut d);
    assert_eq!(r.unwrap().slot, Slot::A);
    let f = read_state(&mut d).last_failure().cloned().unwrap();
    assert_eq!(f.reason, FailureReason::BootCountExhausted);
    assert!(
        lines.iter().any(|l| l.contains("spent its boots")),
        "{lines:?}"
    );
}

#[test]
fn a_trial_whose_boot_cannot_be_recorded_is_not_booted() {
    let mut d = disk();
    put_state(&mut d, &trial_state(3));
    d.fail_writes = true;
    let (r, lines) = choose_on(&mut d);
    assert_eq!(r.unwrap().slot, Slot::A);
    d.fail_writes = false;
    let t = read_state(&mut d).trial().cloned().unwrap();
    assert_eq!((t.boots_left, t.phase), (3, TrialPhase::Staged));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cannot record the trial boot")),
        "{lines:?}"
    );
}

#[test]
fn a_blank_state_boots_slot_a_and_writes_nothing() {
    let mut d = disk();
    let (r, _) = choose_on(&mut d);
    assert_eq!(r.unwrap().slot, Slot::A);
    assert_eq!(d.writes, 0);
}

#[test]
fn an_unreadable_state_falls_to_slot_b_and_is_left_as_evidence() {
    let mut d = disk();
    put_state(&mut d, &State::factory(v("1.0.0")));
    put_state(&mut d, &State::factory(v("1.0.0")));
    // Corrupt both copies.
    let s = usize::try_from(parts().state.start).unwrap();
    d.bytes[s + 100] ^= 1;
    d.bytes[s + 512 * 1024 + 100] ^= 1;
    flip(&mut d, Slot::A, offsets().kernel);
    let before = d.bytes.clone();
    let (r, lines) = choose_on(&mut d);
    assert_eq!(r.unwrap().slot, Slot::B);
    assert!(d.bytes == before, "the loader wrote to the disk");
    assert!(
        lines.iter().any(|l| l.starts_with("state unreadable")),
        "{lines:?}"
    );
}

#[test]
fn nothing_verifies_halts() {
    let mut d = disk();
    flip(&mut d, Slot::A, offsets().kernel);
    flip(&mut d, Slot::B, offsets().kernel);
    let s = usize::try_from(parts().state.start).unwrap();
    d.bytes[s] = 1; // not blank, not valid
    assert!(matches!(choose_on(&mut d).0, Err(Halt::NoSlot { .. })));
}

/// `torn-state-write`: power lost at every byte of the loader's state write (spending a
/// trial's boot) leaves a disk that boots: the next boot reads the old state or the new
/// one, and boots a verified slot either way.
#[test]
fn a_power_cut_during_the_loaders_state_write_never_leaves_a_disk_that_boots_nothing() {
    let mut base = disk();
    put_state(&mut base, &trial_state(3));
    let (mut saw_old, mut saw_new) = (0, 0);
    for cut in 0..=limpet_state::record::RECORD_SIZE {
        let mut d = base.clone();
        d.cut_power_after = Some(cut);
        let _ = choose_on(&mut d);
        // Power back: the next boot.
        d.cut_power_after = None;
        let state = read_state(&mut d);
        match state.trial().map(|t| t.boots_left) {
            Some(3) => saw_old += 1,
            Some(2) => saw_new += 1,
            other => panic!("cut at {cut}: trial boots left {other:?}"),
        }
        let (r, _) = choose_on(&mut d);
        let b = r.unwrap_or_else(|e| panic!("cut at {cut}: nothing boots: {e}"));
        assert_eq!(b.slot, Slot::B, "cut at {cut}");
    }
    // Every cut before the last byte tears the write; the last completes it.
    assert_eq!((saw_old, saw_new), (4096, 1));
}

#[test]
fn a_trial_kernel_the_firmware_will_not_start_is_rolled_back() {
    let mut d = disk();
    put_state(&mut d, &trial_state(3));
    let (r, _) = choose_on(&mut d);
    let trial = r.unwrap();
    assert_eq!(trial.slot, Slot::B);
    let mut lines = Lines::default();
    let committed = start_failed(
        &mut d,
        &vendor_keys(),
        trial,
        &"SECURITY_VIOLATION",
        &mut lines,
    )
    .unwrap();
    assert_eq!(committed.slot, Slot::A);
    assert!(
        lines.0[0].starts_with("trial slot B did not start: SECURITY_VIOLATION"),
        "{:?}",
        lines.0
    );
    let s = read_state(&mut d);
    assert!(s.trial().is_none());
    assert_eq!(
        s.last_failure().map(|f| (f.slot, f.reason)),
        Some((Slot::B, FailureReason::VerifyFailed))
    );
    // The committed slot not starting either: halt.
    assert!(matches!(
        start_failed(&mut d, &vendor_keys(), committed, &"LOAD_ERROR", &mut lines),
        Err(Halt::NotStarted { slot: Slot::A, .. })
    ));
}

/// Re-signs slot A's header bytes after `edit`, as a vendor-signed but malformed slot
/// would be (the signature covers bytes 0..1440 of format 2; the key id is unchanged).
fn resign_a(d: &mut MemDisk, edit: impl FnOnce(&mut [u8])) {
    let at = usize::try_from(parts().slot_a.start + offsets().header).unwrap();
    let header = &mut d.bytes[at..at + 4096];
    edit(header);
    let signature = key().sign(&header[..1440]);
    header[1440..1504].copy_from_slice(&signature.to_bytes());
}

#[test]
fn a_vendor_signed_kernel_size_past_the_partition_is_refused_before_any_allocation() {
    let mut d = disk();
    // kernel_size (header offset 320) of 1 TiB: allocating it would end the loader.
    resign_a(&mut d, |h| {
        h[320..328].copy_from_slice(&(1u64 << 40).to_le_bytes())
    });
    let err = slot::load(&mut d, &parts().slot_a, &vendor_keys(), None).unwrap_err();
    assert!(
        matches!(
            err,
            SlotError::Image {
                source: ImageError::Truncated { .. } | ImageError::LayoutMismatch { .. }
            }
        ),
        "{err}"
    );
}

#[test]
fn a_vendor_signed_command_line_with_a_control_byte_is_refused() {
    let mut d = disk();
    // "console=ttyS0 quiet" with its last byte a newline.
    resign_a(&mut d, |h| h[408 + 18] = b'\n');
    let err = slot::load(&mut d, &parts().slot_a, &vendor_keys(), None).unwrap_err();
    assert!(
        matches!(
            err,
            SlotError::Image {
                source: ImageError::Header { .. }
            }
        ),
        "{err}"
    );
}

#[test]
fn an_owner_signed_slot_boots_only_in_owner_mode() {
    let owner = SigningKey::from_bytes(&[4; 32]);
    let mut d = disk();
    put_slot(&mut d, Slot::B, "1.1.0", &owner);
    // Vendor mode: refused for its key.
    let err = slot::load(&mut d, &parts().slot_b, &vendor_keys(), None).unwrap_err();
    assert!(
        matches!(
            err,
            SlotError::Signature {
                source: HeaderError::WrongKey { .. }
            }
        ),
        "{err:?}"
    );
    // Owner mode: the vendor's slot and the owner's both verify, each naming its signer.
    let keys = Keys {
        vendor: Some(key().verifying_key()),
        owner: Some(owner.verifying_key()),
        mode: limpet_state::owner::Mode::Owner,
    };
    let b = slot::load(&mut d, &parts().slot_b, &keys, None).unwrap();
    assert_eq!(b.signer, slot::Signer::Owner);
    let a = slot::load(&mut d, &parts().slot_a, &keys, None).unwrap();
    assert_eq!(a.signer, slot::Signer::Vendor);
    // Handed over: the vendor's slot is refused.
    let handed = Keys {
        vendor: None,
        owner: Some(owner.verifying_key()),
        mode: limpet_state::owner::Mode::HandedOver,
    };
    let err = slot::load(&mut d, &parts().slot_a, &handed, None).unwrap_err();
    assert!(
        matches!(
            err,
            SlotError::Signature {
                source: HeaderError::WrongKey { .. }
            }
        ),
        "{err:?}"
    );
}

/// Handing over: the vendor's key and the owner's, the vendor's for the committed slot
/// only.
fn handing_over_keys(owner: &SigningKey) -> Keys {
    Keys {
        vendor: Some(key().verifying_key()),
        owner: Some(owner.verifying_key()),
        mode: limpet_state::owner::Mode::HandingOver,
    }
}

#[test]
fn handing_over_boots_the_vendors_committed_slot_and_no_vendor_trial() {
    let owner = SigningKey::from_bytes(&[4; 32]);
    let keys = handing_over_keys(&owner);
    // The committed vendor slot still boots, and PID 1 is told the owner's key.
    let mut d = disk();
    put_state(&mut d, &State::factory(v("1.0.0")));
    let mut lines = Lines::default();
    let b = choose(&mut d, &keys, &mut lines).unwrap();
    assert_eq!((b.slot, b.committed), (Slot::A, true));
    assert_eq!(b.verified.signer, slot::Signer::Vendor);
    let hex: String = owner
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| alloc::format!("{b:02x}"))
        .collect();
    assert!(
        b.cmdline
            .ends_with(&alloc::format!(" limpet.owner=handing-over:{hex}")),
        "{}",
        b.cmdline
    );
    // A vendor-signed trial (2.0.0 in slot B) is refused for its key and rolled back.
    let mut d = disk();
    put_state(&mut d, &trial_state(3));
    let mut lines = Lines::default();
    let b = choose(&mut d, &keys, &mut lines).unwrap();
    assert_eq!((b.slot, b.committed), (Slot::A, true));
    assert!(
        lines
            .0
            .iter()
            .any(|l| l.starts_with("trial slot B refused: ") && l.contains("rolling back")),
        "{:?}",
        lines.0
    );
    let failed = read_state(&mut d);
    assert!(failed.trial().is_none());
    // The owner's trial boots, not as the committed slot.
    let mut d = disk();
    put_slot(&mut d, Slot::B, "2.0.0", &owner);
    put_state(&mut d, &trial_state(3));
    let b = choose(&mut d, &keys, &mut Lines::default()).unwrap();
    assert_eq!((b.slot, b.committed), (Slot::B, false));
    assert_eq!(b.verified.signer, slot::Signer::Owner);
    // A blank state (nothing committed): the vendor's slot A is refused, the loader halts.
    let mut d = disk();
    let err = choose(&mut d, &keys, &mut Lines::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Halt::Factory {
                source: SlotError::Signature {
                    source: HeaderError::WrongKey { .. }
                }
            }
        ),
        "{err:?}"
    );
}
