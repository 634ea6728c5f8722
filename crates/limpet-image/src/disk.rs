//! Writing the device's disk image: a GPT with `esp`, `state`, `slot-a`, `slot-b` and
//! `data`.
//!
//! Rules:
//! - 512-byte sectors; every partition starts on a 1 MiB boundary and every size is a
//!   whole number of MiB. The first partition starts at 1 MiB, and 1 MiB is kept at the end
//!   for the backup entry array and header.
//! - Protective MBR in LBA 0; primary header in LBA 1, entry array (128 entries of 128 bytes)
//!   in LBAs 2–33; backup entry array in the 32 sectors before the last, backup header in
//!   the last LBA. Both headers carry CRC32s of themselves and of the array.
//! - GUIDs are derived, not random: the disk GUID from `sha256(seed || "disk")`, each
//!   partition GUID from `sha256(seed || name)`, the first 16 bytes shaped as an RFC 4122
//!   version 4 UUID. Type GUIDs are [`gpt::ESP_TYPE`], [`gpt::STATE_TYPE`],
//!   [`gpt::SLOT_TYPE`], [`gpt::DATA_TYPE`].
//! - `esp` receives the EFI system partition (its size is the partition's) and `slot-a`
//!   the given slot image; everything else is zero. The writer only seeks over zeros, so
//!   `out` must start empty (a new file stays sparse).

use std::io::{Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::gpt::{self, SECTOR_BYTES, SECTOR_SIZE};

/// Partition alignment and size unit.
pub const ALIGN: u64 = 1 << 20;
/// Entries in each entry array.
const ENTRY_COUNT: u32 = 128;
/// Size of one entry.
const ENTRY_SIZE: u32 = 128;
/// Sectors of one entry array.
const ARRAY_SECTORS: u64 = (ENTRY_COUNT as u64 * ENTRY_SIZE as u64) / SECTOR_SIZE;

/// What to put on the disk.
#[derive(Debug, Clone, Copy)]
pub struct DiskSpec<'a> {
    /// The EFI system partition's FAT image ([`crate::esp`]), a whole number of MiB.
    pub esp: &'a [u8],
    /// Size of the `state` partition (1 MiB is enough).
    pub state_size: u64,
    /// Size of each slot partition.
    pub slot_size: u64,
    /// Size of the `data` partition.
    pub data_size: u64,
    /// The slot image written to `slot-a`.
    pub slot_a: &'a [u8],
    /// Seed for the disk and partition GUIDs.
    pub guid_seed: [u8; 32],
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayout {
    /// Total size in bytes.
    pub size: u64,
    /// Disk GUID, on-disk bytes.
    pub disk_guid: [u8; 16],
    /// The five partitions, in table order.
    pub partitions: Vec<gpt::Partition>,
}

/// Why a disk cannot be written.
#[derive(Debug, Error)]
pub enum DiskError {
    /// A partition size is zero or not a whole number of MiB.
    #[error("{partition} size {size} is not a non-zero multiple of 1 MiB")]
    Size {
        /// Partition name.
        partition: &'static str,
        /// The size given.
        size: u64,
    },
    /// The slot image does not fit its partition.
    #[error("slot image is {image} bytes, larger than the slot partition ({slot_size} bytes)")]
    SlotTooLarge {
        /// Image size.
        image: u64,
        /// Partition size.
        slot_size: u64,
    },
    /// The sizes overflow.
    #[error("disk size overflows")]
    Overflow,
    /// Writing failed.
    #[error("cannot write the {part} at offset {offset}")]
    Io {
        /// What was written.
        part: &'static str,
        /// Where.
        offset: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A GUID from `sha256(seed || label)`, shaped as an RFC 4122 version 4 UUID, in on-disk
/// byte order.
pub fn derive_guid(seed: &[u8; 32], label: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(label.as_bytes());
    let d = h.finalize();
    // `t` is in text order (big-endian fields).
    let mut t = [0u8; 16];
    t.copy_from_slice(&d[..16]);
    t[6] = (t[6] & 0x0f) | 0x40;
    t[8] = (t[8] & 0x3f) | 0x80;
    [
        t[3], t[2], t[1], t[0], t[5], t[4], t[7], t[6], t[8], t[9], t[10], t[11], t[12], t[13],
        t[14], t[15],
    ]
}

fn check_size(partition: &'static str, size: u64) -> Result<u64, DiskError> {
    if size == 0 || !size.is_multiple_of(ALIGN) {
        return Err(DiskError::Size { partition, size });
    }
    Ok(size)
}

fn entry(p: &gpt::Partition) -> [u8; ENTRY_SIZE as usize] {
    let mut e = [0u8; ENTRY_SIZE as usize];
    e[0..16].copy_from_slice(&p.type_guid);
    e[16..32].copy_from_slice(&p.guid);
    e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
    e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
    // Attributes (48..56) stay zero.
    for (i, unit) in p.name.encode_utf16().take(36).enumerate() {
        e[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
    }
    e
}

#[allow(clippy::too_many_arguments)]
fn header(
    my_lba: u64,
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: &[u8; 16],
    entries_lba: u64,
    entries_crc: u32,
) -> [u8; SECTOR_BYTES] {
    let mut h = [0u8; SECTOR_BYTES];
    h[0..8].copy_from_slice(&gpt::SIGNATURE);
    h[8..12].copy_from_slice(&gpt::REVISION.to_le_bytes());
    h[12..16].copy_from_slice(&gpt::HEADER_SIZE.to_le_bytes());
    h[24..32].copy_from_slice(&my_lba.to_le_bytes());
    h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
    h[40..48].copy_from_slice(&first_usable.to_le_bytes());
    h[48..56].copy_from_slice(&last_usable.to_le_bytes());
    h[56..72].copy_from_slice(disk_guid);
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
    h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32fast::hash(&h[..gpt::HEADER_SIZE as usize]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

fn protective_mbr(total_sectors: u64) -> [u8; SECTOR_BYTES] {
    let mut m = [0u8; SECTOR_BYTES];
    let p = &mut m[446..462];
    p[0] = 0x00; // not bootable
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    p[4] = 0xee; // GPT protective
    p[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&size.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    m
}

fn write_at(
    out: &mut (impl Write + Seek),
    offset: u64,
    bytes: &[u8],
    part: &'static str,
) -> Result<(), DiskError> {
    out.seek(SeekFrom::Start(offset))
        .and_then(|_| out.write_all(bytes))
        .map_err(|source| DiskError::Io {
            part,
            offset,
            source,
        })
}

/// Computes the layout of `spec` without writing anything.
pub fn layout(spec: &DiskSpec) -> Result<DiskLayout, DiskError> {
    let sizes = [
        (
            "esp",
            gpt::ESP_TYPE,
            check_size("esp", spec.esp.len() as u64)?,
        ),
        (
            "state",
            gpt::STATE_TYPE,
            check_size("state", spec.state_size)?,
        ),
        (
            "slot-a",
            gpt::SLOT_TYPE,
            check_size("slot", spec.slot_size)?,
        ),
        ("slot-b", gpt::SLOT_TYPE, spec.slot_size),
        ("data", gpt::DATA_TYPE, check_size("data", spec.data_size)?),
    ];
    if spec.slot_a.len() as u64 > spec.slot_size {
        return Err(DiskError::SlotTooLarge {
            image: spec.slot_a.len() as u64,
            slot_size: spec.slot_size,
        });
    }
    let mut offset = ALIGN;
    let mut partitions = Vec::with_capacity(sizes.len());
    for (name, type_guid, size) in sizes {
        let end = offset.checked_add(size).ok_or(DiskError::Overflow)?;
        partitions.push(gpt::Partition {
            name: name.to_owned(),
            type_guid,
            guid: derive_guid(&spec.guid_seed, name),
            first_lba: offset / SECTOR_SIZE,
            last_lba: end / SECTOR_SIZE - 1,
        });
        offset = end;
    }
    let size = offset.checked_add(ALIGN).ok_or(DiskError::Overflow)?;
    Ok(DiskLayout {
        size,
        disk_guid: derive_guid(&spec.guid_seed, "disk"),
        partitions,
    })
}

/// Writes the disk image to `out` (which must be empty) and returns its layout.
pub fn write(spec: &DiskSpec, out: &mut (impl Write + Seek)) -> Result<DiskLayout, DiskError> {
    let layout = layout(spec)?;
    let total_sectors = layout.size / SECTOR_SIZE;
    let last_lba = total_sectors - 1;
    let backup_array_lba = last_lba - ARRAY_SECTORS;
    let first_usable = 2 + ARRAY_SECTORS;
    let last_usable = backup_array_lba - 1;

    let mut array = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
    for (p, slot) in layout
        .partitions
        .iter()
        .zip(array.chunks_exact_mut(ENTRY_SIZE as usize))
    {
        slot.copy_from_slice(&entry(p));
    }
    let array_crc = crc32fast::hash(&array);
    let primary = header(
        1,
        last_lba,
        first_usable,
        last_usable,
        &layout.disk_guid,
        2,
        array_crc,
    );
    let backup = header(
        last_lba,
        1,
        first_usable,
        last_usable,
        &layout.disk_guid,
        backup_array_lba,
        array_crc,
    );

    write_at(out, 0, &protective_mbr(total_sectors), "protective MBR")?;
    write_at(out, SECTOR_SIZE, &primary, "primary GPT header")?;
    write_at(out, 2 * SECTOR_SIZE, &array, "primary GPT entries")?;
    if let Some(esp) = gpt::find(&layout.partitions, "esp") {
        write_at(out, esp.offset(), spec.esp, "esp")?;
    }
    if let Some(slot_a) = gpt::find(&layout.partitions, "slot-a") {
        write_at(out, slot_a.offset(), spec.slot_a, "slot-a")?;
    }
    write_at(
        out,
        backup_array_lba * SECTOR_SIZE,
        &array,
        "backup GPT entries",
    )?;
    // The backup header is the last sector, so writing it sets the file length.
    write_at(out, last_lba * SECTOR_SIZE, &backup, "backup GPT header")?;
    out.flush().map_err(|source| DiskError::Io {
        part: "disk image",
        offset: layout.size,
        source,
    })?;
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_is_v4_shaped() {
        let g = gpt::guid_to_string(&derive_guid(&[0; 32], "slot-a"));
        assert_eq!(&g[14..15], "4");
        assert!(matches!(&g[19..20], "8" | "9" | "a" | "b"));
    }
}
