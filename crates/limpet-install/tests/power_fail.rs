//! Power-fail safety of the whole update sequence, on a simulated disk that can lose power
//! at any byte written (a torn write keeps a prefix of the block being written):
//! begin → write the inactive slot → finish (verify, mark as a trial) → boot the trial → commit.
//! After a cut at each of more than 1000 points, a simulated boot must pick a slot that
//! verifies completely (signature, every verity block) and holds a whole release, never a
//! half-written one; and the update, simply started again, must then succeed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io;

use ed25519_dalek::SigningKey;
use limpet_image::slot;
use limpet_image::squashfs::Entry;
use limpet_install::{begin, BlockReader};
use limpet_state::{BlockDevice, FailureReason, Region, Slot, State, StateStore, Version};
use limpet_testkit::noise::xorshift_bytes;
use limpet_testkit::power_cut_disk::{SharedDisk, SimDisk};
use limpet_testkit::slot::{root_hash, signed_slot};

const STATE_SIZE: u64 = 1 << 20;
const SLOT_SIZE: u64 = 512 << 10;
const PIECE: usize = 60 * 1024;

/// The simulated disk: the `state` partition, then slot A, then slot B.
struct Device {
    disk: SharedDisk,
}

impl Device {
    fn state(&self) -> Region<SharedDisk> {
        Region::new(self.disk.clone(), 0, STATE_SIZE).unwrap()
    }
    fn slot(&self, s: Slot) -> Region<SharedDisk> {
        let start = match s {
            Slot::A => STATE_SIZE,
            Slot::B => STATE_SIZE + SLOT_SIZE,
        };
        Region::new(self.disk.clone(), start, SLOT_SIZE).unwrap()
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// A release: a small squashfs with a task binary whose bytes depend on the version.
fn release(version: &str, seed: u64) -> (Vec<u8>, [u8; 32]) {
    let binary = xorshift_bytes(seed, 150_000);
    let entries = vec![
        Entry {
            path: "manifest.toml".into(),
            data: format!("[device]\nversion = \"{version}\"\n").into_bytes(),
            mode: 0o644,
        },
        Entry {
            path: "task".into(),
            data: binary,
            mode: 0o755,
        },
    ];
    let bytes = signed_slot(&entries, "sim", "x86_64", version, &key());
    let root = root_hash(&bytes);
    (bytes, root)
}

/// A factory device: v1 on slot A, committed; slot B blank.
fn factory(v1: &[u8]) -> Device {
    let disk = SimDisk::new(usize::try_from(STATE_SIZE + 2 * SLOT_SIZE).unwrap());
    let dev = Device {
        disk: SharedDisk::new(disk),
    };
    dev.slot(Slot::A).write_at(0, v1).unwrap();
    let mut store = StateStore::new(dev.state()).unwrap();
    store
        .store(&State::factory(Version::parse("1.0.0").unwrap()))
        .unwrap();
    dev
}

/// What a boot found.
#[derive(Debug, PartialEq, Eq)]
struct Booted {
    slot: Slot,
    version: String,
    is_trial: bool,
}

/// PID 1's slot choice (limpet-init's slots.rs), with the full verification of the
/// chosen slot standing in for dm-verity. Errors are the power going off.
fn boot(dev: &Device) -> io::Result<Booted> {
    let key = key().verifying_key();
    let mut store = StateStore::new(dev.state()).map_err(io::Error::other)?;
    let state = store.load().map_err(io::Error::other)?;
    let (next, choice) = state.begin_boot();
    store.store(&next).map_err(io::Error::other)?;
    let verify = |slot: Slot| {
        let mut reader = BlockReader::new(dev.slot(slot))?;
        slot::verify_at(&mut reader, &key)
            .map(|(_, h)| h.version)
            .map_err(io::Error::other)
    };
    match verify(choice.slot) {
        Ok(version) => Ok(Booted {
            slot: choice.slot,
            version,
            is_trial: choice.slot != next.committed_slot(),
        }),
        Err(e) if choice.slot == next.committed_slot() => Err(e),
        Err(_) => {
            let rolled = next.roll_back(FailureReason::VerifyFailed).unwrap();
            store.store(&rolled).map_err(io::Error::other)?;
            let committed = rolled.committed_slot();
            Ok(Booted {
                slot: committed,
                version: verify(committed)?,
                is_trial: false,
            })
        }
    }
}

/// The whole update to `v2`, then the boot of the trial and its commit. Stops at the first
/// error (the power going off).
fn update(dev: &Device, image: &[u8], root: &[u8; 32]) -> Result<(), String> {
    let key = key().verifying_key();
    let mut store = StateStore::new(dev.state()).map_err(|e| e.to_string())?;
    let mut target = dev.slot(Slot::B);
    // A state whose other slot is B is the only one this test makes; after a commit of B
    // the update is already done.
    let state = store.load().map_err(|e| e.to_string())?;
    if state.committed_slot() == Slot::B {
        return Ok(());
    }
    // The boot after a cut booted the trial: its health gate commits it.
    if state
        .trial()
        .is_some_and(|t| t.phase == limpet_state::TrialPhase::Booted)
    {
        let committed = state.commit().map_err(|e| e.to_string())?;
        store.store(&committed).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let session =
        begin(&mut store, &target, "2.0.0", image.len() as u64).map_err(|e| e.to_string())?;
    for (i, piece) in image.chunks(PIECE).enumerate() {
        session
            .write(&mut target, (i * PIECE) as u64, piece)
            .map_err(|e| e.to_string())?;
    }
    session
        .finish(&mut store, &mut target, &key, root, 3)
        .map_err(|e| e.to_string())?;
    let booted = boot(dev).map_err(|e| e.to_string())?;
    if !booted.is_trial {
        return Err(format!("the staged trial did not boot: {booted:?}"));
    }
    let state = store.load().map_err(|e| e.to_string())?;
    let committed = state.commit().map_err(|e| e.to_string())?;
    store.store(&committed).map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn the_update_sequence_survives_a_power_cut_at_any_byte() {
    let (v1, _) = release("1.0.0", 1);
    let (v2, root2) = release("2.0.0", 2);

    // A run without a cut: how many bytes the whole sequence writes.
    let dev = factory(&v1);
    let before = dev.disk.borrow().bytes_written();
    update(&dev, &v2, &root2).unwrap();
    let total = dev.disk.borrow().bytes_written() - before;
    assert_eq!(
        boot(&dev).unwrap(),
        Booted {
            slot: Slot::B,
            version: "2.0.0".into(),
            is_trial: false
        }
    );

    // Cut points: 1000 pseudo-random bytes, plus every 61st byte of the state record writes
    // (the places where a torn write matters most), plus the ends.
    let mut cuts: Vec<u64> = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cuts.push(x % total);
    }
    let image_bytes = v2.len() as u64;
    // The state writes happen after the image (finish, boot, commit): the last bytes.
    for k in (image_bytes.saturating_sub(8)..total).step_by(61) {
        cuts.push(k);
    }
    cuts.extend([0, 1, total - 1]);

    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    for &cut in &cuts {
        let dev = factory(&v1);
        dev.disk.borrow_mut().cut_power_after(cut);
        let result = update(&dev, &v2, &root2);
        assert!(
            result.is_err(),
            "cut at {cut} of {total} did not stop the update"
        );
        assert!(dev.disk.borrow().is_off(), "cut at {cut}: {result:?}");

        // Reboot: the chosen slot verifies and is a whole release.
        dev.disk.borrow_mut().power_on();
        let booted = boot(&dev).unwrap_or_else(|e| panic!("cut at {cut}: boot failed: {e}"));
        let expected = match booted.version.as_str() {
            "1.0.0" => &v1,
            "2.0.0" => &v2,
            other => panic!("cut at {cut}: booted version {other}"),
        };
        let mut on_disk = vec![0u8; expected.len()];
        dev.slot(booted.slot).read_at(0, &mut on_disk).unwrap();
        assert!(
            on_disk == *expected,
            "cut at {cut}: slot {} is not a whole release",
            booted.slot
        );
        *outcomes
            .entry(format!("{} trial={}", booted.version, booted.is_trial))
            .or_default() += 1;

        // Starting the update again completes it.
        update(&dev, &v2, &root2).unwrap_or_else(|e| panic!("cut at {cut}: retry: {e}"));
        let last = boot(&dev).unwrap();
        assert_eq!(last.version, "2.0.0", "cut at {cut}");
        assert!(!last.is_trial, "cut at {cut}");
    }
    eprintln!("{} cut points over {total} bytes: {outcomes:?}", cuts.len());
    assert!(cuts.len() >= 1000);
    // Both sides of the commit point were hit.
    assert!(outcomes.keys().any(|k| k.starts_with("1.0.0")));
    assert!(outcomes.keys().any(|k| k.starts_with("2.0.0")));
}
