//! Disk image: sgdisk accepts it, `gpt::read` round-trips it (also from the backup), and
//! builds are reproducible.

// Test code: a failed unwrap is a failed test, and offsets fit usize on the test hosts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::fs::File;
use std::io::Cursor;

use common::{have, run, text};
use limpet_image::disk::{self, DiskError, DiskSpec};
use limpet_image::gpt::{self, GptError, HeaderCopy};

const MIB: u64 = 1 << 20;

/// A 1 MiB stand-in for the EFI system partition: a marker at its start, zeros after.
fn esp() -> &'static [u8] {
    static ESP: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ESP.get_or_init(|| {
        let mut e = vec![0u8; MIB as usize];
        e[..8].copy_from_slice(b"FAT-ESP!");
        e
    })
}

fn spec(slot_a: &[u8]) -> DiskSpec<'_> {
    DiskSpec {
        esp: esp(),
        state_size: MIB,
        slot_size: 4 * MIB,
        data_size: 2 * MIB,
        slot_a,
        guid_seed: [42; 32],
    }
}

fn write_file(spec: &DiskSpec, path: &std::path::Path) -> disk::DiskLayout {
    let mut f = File::create(path).unwrap();
    disk::write(spec, &mut f).unwrap()
}

#[test]
fn sgdisk_accepts_the_disk() {
    let slot = common::pseudo_random(300_000, 9);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let layout = write_file(&spec(&slot), &path);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), layout.size);
    assert_eq!(layout.size, (1 + 1 + 1 + 4 + 4 + 2 + 1) * MIB);
    // Zeros were seeked over, not written: the file is sparse where the filesystem allows.
    let allocated =
        std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&path).unwrap()) * 512;
    assert!(
        allocated < layout.size / 2,
        "{allocated} bytes allocated of {}",
        layout.size
    );
    if !have("sgdisk") {
        return;
    }
    let p = path.to_str().unwrap();
    let out = run("sgdisk", &["-v", p]);
    let v = text(&out.stdout);
    assert!(
        out.status.success() && v.contains("No problems found"),
        "{v}{}",
        text(&out.stderr)
    );
    let out = run("sgdisk", &["-p", p]);
    let listing = text(&out.stdout);
    assert!(out.status.success(), "{listing}");
    let names: Vec<&str> = listing
        .lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(
        names,
        ["esp", "state", "slot-a", "slot-b", "data"],
        "{listing}"
    );
    // Type and unique GUIDs as sgdisk shows them.
    for (n, part) in (1..).zip(&layout.partitions) {
        let out = run("sgdisk", &[&format!("-i{n}"), p]);
        let info = text(&out.stdout).to_lowercase();
        assert!(
            info.contains(&gpt::guid_to_string(&part.type_guid)),
            "{info}"
        );
        assert!(info.contains(&gpt::guid_to_string(&part.guid)), "{info}");
        assert!(
            info.contains(&format!("first sector: {} ", part.first_lba)),
            "{info}"
        );
    }
    // The slot landed in slot-a.
    let bytes = std::fs::read(&path).unwrap();
    let a = &layout.partitions[2];
    assert_eq!(
        &bytes[a.offset() as usize..a.offset() as usize + slot.len()],
        &slot[..]
    );
}

#[test]
fn gpt_read_round_trips() {
    let mut c = Cursor::new(Vec::new());
    let layout = disk::write(&spec(b"slot"), &mut c).unwrap();
    let table = gpt::read_table(&mut c).unwrap();
    assert_eq!(table.source, HeaderCopy::Primary);
    assert_eq!(table.disk_guid, layout.disk_guid);
    assert_eq!(table.partitions, layout.partitions);
    let names: Vec<_> = table.partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["esp", "state", "slot-a", "slot-b", "data"]);
    assert_eq!(table.partitions[0].type_guid, gpt::ESP_TYPE);
    assert_eq!(table.partitions[1].type_guid, gpt::STATE_TYPE);
    assert_eq!(table.partitions[2].type_guid, gpt::SLOT_TYPE);
    assert_eq!(table.partitions[3].type_guid, gpt::SLOT_TYPE);
    assert_eq!(table.partitions[4].type_guid, gpt::DATA_TYPE);
    for p in &table.partitions {
        assert_eq!(p.offset() % MIB, 0);
    }
    assert_eq!(table.partitions[2].size(), 4 * MIB);
    let bytes = c.into_inner();
    let esp_at = table.partitions[0].offset() as usize;
    assert_eq!(&bytes[esp_at..esp_at + MIB as usize], esp());
}

#[test]
fn backup_header_is_used_when_primary_is_damaged() {
    let mut base = Cursor::new(Vec::new());
    let layout = disk::write(&spec(b"slot"), &mut base).unwrap();
    let base = base.into_inner();
    // Header CRC, entry array, signature: each damage alone falls back to the backup.
    for (what, at) in [
        ("header", 512 + 60),
        ("entries", 1024 + 3),
        ("signature", 512),
    ] {
        let mut bytes = base.clone();
        bytes[at] ^= 0xff;
        let mut c = Cursor::new(bytes);
        let table = gpt::read_table(&mut c).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(table.source, HeaderCopy::Backup, "{what}");
        assert_eq!(table.partitions, layout.partitions, "{what}");
    }
    // sgdisk also recovers from the backup.
    if have("sgdisk") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let mut bytes = base.clone();
        bytes[512 + 60] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let out = run("sgdisk", &["-p", path.to_str().unwrap()]);
        let listing = text(&out.stdout) + &text(&out.stderr);
        assert!(listing.contains("slot-b"), "{listing}");
    }
    // Both damaged: a clean error naming both.
    let mut bytes = base.clone();
    bytes[512 + 60] ^= 0xff;
    let last = bytes.len() - 512;
    bytes[last + 60] ^= 0xff;
    match gpt::read(&mut Cursor::new(bytes)) {
        Err(GptError::NoValidHeader { primary, backup }) => {
            assert!(matches!(
                *primary,
                GptError::Header {
                    copy: HeaderCopy::Primary,
                    field: "header CRC32",
                    ..
                }
            ));
            assert!(matches!(
                *backup,
                GptError::Header {
                    copy: HeaderCopy::Backup,
                    field: "header CRC32",
                    ..
                }
            ));
        }
        other => panic!("{other:?}"),
    }
}

/// A header with a valid CRC but a hostile entry count must not make the reader allocate.
#[test]
fn hostile_entry_count_is_refused() {
    let mut c = Cursor::new(Vec::new());
    disk::write(&spec(b"slot"), &mut c).unwrap();
    let mut bytes = c.into_inner();
    let h = &mut bytes[512..1024];
    h[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
    h[16..20].fill(0);
    let crc = crc32fast::hash(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    let table = gpt::read_table(&mut Cursor::new(bytes)).unwrap();
    assert_eq!(table.source, HeaderCopy::Backup);
}

#[test]
fn disk_is_deterministic_and_sparse_friendly() {
    let slot = common::pseudo_random(10_000, 3);
    let mut a = Cursor::new(Vec::new());
    let mut b = Cursor::new(Vec::new());
    disk::write(&spec(&slot), &mut a).unwrap();
    disk::write(&spec(&slot), &mut b).unwrap();
    assert_eq!(a.get_ref(), b.get_ref());
    // Into a file: same bytes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    write_file(&spec(&slot), &path);
    assert_eq!(&std::fs::read(&path).unwrap(), a.get_ref());
    // A different seed changes only GUIDs (and CRCs).
    let mut other = spec(&slot);
    other.guid_seed = [1; 32];
    let mut c = Cursor::new(Vec::new());
    let l = disk::write(&other, &mut c).unwrap();
    assert_ne!(c.get_ref(), a.get_ref());
    assert_eq!(c.get_ref().len(), a.get_ref().len());
    assert_eq!(l.partitions[0].first_lba, 2048);
}

#[test]
fn bad_specs_are_refused() {
    let big = vec![1u8; 4 * MIB as usize + 1];
    let mut c = Cursor::new(Vec::new());
    assert!(matches!(
        disk::write(&spec(&big), &mut c),
        Err(DiskError::SlotTooLarge { image, slot_size }) if image == 4 * MIB + 1 && slot_size == 4 * MIB
    ));
    let mut s = spec(b"x");
    s.data_size = MIB + 512;
    assert!(matches!(
        disk::write(&s, &mut c),
        Err(DiskError::Size {
            partition: "data",
            ..
        })
    ));
    let mut s = spec(b"x");
    s.state_size = 0;
    assert!(matches!(
        disk::write(&s, &mut c),
        Err(DiskError::Size {
            partition: "state",
            ..
        })
    ));
    assert!(c.get_ref().is_empty(), "nothing written on error");
}
