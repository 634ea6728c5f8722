//! Finding `state`, `slot-a` and `slot-b` in the boot disk's GUID partition table (UEFI
//! 2.10 section 5.3), by partition name.
//!
//! Swap point: limpet-image's GPT reader (`crates/limpet-image/src/gpt.rs`, which also
//! falls back to the backup header) becomes `no_std`; [`find_partitions`] then calls it and
//! this module's reading code goes. Until then this is a minimal reader with the same
//! checks on the primary header.
//!
//! Rules:
//! - The primary header (LBA 1) is used only if its signature, size, own LBA and CRC32 are
//!   right and its entry array's CRC32 matches.
//! - The entry array is bounded ([`MAX_ENTRY_ARRAY`]) before it is read, so a hostile
//!   header cannot make the loader allocate much.
//! - Each partition named must appear exactly once, lie inside the disk, and not be empty;
//!   two partitions of the same name are refused (a second disk image cannot shadow one).

use alloc::vec;

use crate::disk::{Disk, Part};
use crate::le::{le32, le64};

/// "EFI PART".
const SIGNATURE: [u8; 8] = *b"EFI PART";
/// Bytes of the header covered by its CRC.
const HEADER_SIZE: usize = 92;
/// Upper bound on the entry array a header may describe (the usual array is 16 KiB).
pub const MAX_ENTRY_ARRAY: u64 = 1 << 20;
/// Bytes of a partition name (36 UTF-16 code units).
const NAME_BYTES: usize = 72;

/// The three partitions the loader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitions {
    /// `state`.
    pub state: Part,
    /// `slot-a`.
    pub slot_a: Part,
    /// `slot-b`.
    pub slot_b: Part,
}

/// Why the partitions were not found.
#[derive(Debug, thiserror::Error)]
pub enum GptError<E> {
    /// The disk failed.
    #[error("reading the GPT at disk offset {offset}: {source}")]
    Read {
        /// Disk offset.
        offset: u64,
        /// The medium's error.
        source: E,
    },
    /// A header field is wrong.
    #[error("GPT header: {what}")]
    Header {
        /// What is wrong.
        what: &'static str,
    },
    /// The entry array's checksum does not match.
    #[error("GPT partition entry array checksum mismatch")]
    EntriesChecksum,
    /// A partition is missing.
    #[error("no GPT partition named {name}")]
    Missing {
        /// Its name.
        name: &'static str,
    },
    /// A name appears twice.
    #[error("two GPT partitions are named {name}")]
    Duplicate {
        /// Its name.
        name: &'static str,
    },
    /// A partition lies outside the disk or is empty.
    #[error("GPT partition {name} has an invalid extent (LBA {first}..={last})")]
    Extent {
        /// Its name.
        name: &'static str,
        /// First LBA.
        first: u64,
        /// Last LBA (inclusive).
        last: u64,
    },
}

/// Reads the GPT of `disk` and returns the `state`, `slot-a` and `slot-b` partitions.
pub fn find_partitions<D: Disk>(disk: &mut D) -> Result<Partitions, GptError<D::Error>> {
    let block = u64::from(disk.block_size());
    let header_err = |what| GptError::Header { what };
    if !(512..=65536).contains(&block) || !block.is_power_of_two() {
        return Err(header_err("unsupported block size"));
    }
    // Bounded above: these fit a usize on every target.
    let as_len = |n: u64| usize::try_from(n).map_err(|_| GptError::Header { what: "too large" });
    let mut hdr = vec![0u8; as_len(block)?];
    disk.read_at(block, &mut hdr)
        .map_err(|source| GptError::Read {
            offset: block,
            source,
        })?;
    if hdr[..8] != SIGNATURE {
        return Err(header_err("bad signature"));
    }
    let size = le32(&hdr, 12) as usize;
    if !(HEADER_SIZE..=hdr.len()).contains(&size) {
        return Err(header_err("bad header size"));
    }
    let stored_crc = le32(&hdr, 16);
    let mut covered = hdr[..size].to_vec();
    covered[16..20].fill(0);
    if crc32fast::hash(&covered) != stored_crc {
        return Err(header_err("header checksum mismatch"));
    }
    if le64(&hdr, 24) != 1 {
        return Err(header_err("primary header not at LBA 1"));
    }
    let entries_lba = le64(&hdr, 72);
    let count = u64::from(le32(&hdr, 80));
    let entry_size = u64::from(le32(&hdr, 84));
    let entries_crc = le32(&hdr, 88);
    if entry_size < 128 || entry_size % 8 != 0 {
        return Err(header_err("bad entry size"));
    }
    let array_len = count
        .checked_mul(entry_size)
        .filter(|&n| n <= MAX_ENTRY_ARRAY)
        .ok_or(header_err("entry array too large"))?;
    let array_at = entries_lba
        .checked_mul(block)
        .filter(|at| {
            at.checked_add(array_len)
                .is_some_and(|end| end <= disk.len())
        })
        .ok_or(header_err("entry array outside the disk"))?;
    let mut entries = vec![0u8; as_len(array_len)?];
    disk.read_at(array_at, &mut entries)
        .map_err(|source| GptError::Read {
            offset: array_at,
            source,
        })?;
    if crc32fast::hash(&entries) != entries_crc {
        return Err(GptError::EntriesChecksum);
    }
    let disk_blocks = disk.len() / block;
    let entry_len = as_len(entry_size)?;
    let find = |name: &'static str| -> Result<Part, GptError<D::Error>> {
        let mut found = None;
        for entry in entries.chunks_exact(entry_len) {
            if entry[..16].iter().all(|&b| b == 0) || !name_is(&entry[56..56 + NAME_BYTES], name) {
                continue;
            }
            if found.is_some() {
                return Err(GptError::Duplicate { name });
            }
            let (first, last) = (le64(entry, 32), le64(entry, 40));
            if first == 0 || last < first || last >= disk_blocks {
                return Err(GptError::Extent { name, first, last });
            }
            found = Some(Part {
                name,
                start: first * block,
                len: (last - first + 1) * block,
            });
        }
        found.ok_or(GptError::Missing { name })
    };
    Ok(Partitions {
        state: find("state")?,
        slot_a: find("slot-a")?,
        slot_b: find("slot-b")?,
    })
}

/// True when the UTF-16LE, NUL-padded `field` holds exactly the ASCII `name`.
fn name_is(field: &[u8], name: &str) -> bool {
    let units = field
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    let mut expected = name.bytes().map(u16::from);
    for unit in units {
        match expected.next() {
            Some(e) if e == unit => {}
            Some(_) => return false,
            None => return unit == 0,
        }
    }
    expected.next().is_none()
}

/// Writes a GPT for the tests: each `(name, first_lba, last_lba)` as one entry.
#[cfg(test)]
pub(crate) fn write_test_gpt(disk: &mut [u8], parts: &[(&str, u64, u64)]) {
    let mut entries = vec![0u8; 128 * 128];
    for (i, (name, first, last)) in parts.iter().enumerate() {
        let e = &mut entries[i * 128..(i + 1) * 128];
        e[..16].fill(0x11); // any non-zero type GUID
        e[16..32].fill(u8::try_from(i + 1).unwrap_or(0xff));
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
        for (j, b) in name.bytes().enumerate() {
            e[56 + 2 * j] = b;
        }
    }
    let mut h = vec![0u8; 512];
    h[..8].copy_from_slice(&SIGNATURE);
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&1u64.to_le_bytes());
    h[72..80].copy_from_slice(&2u64.to_le_bytes());
    h[80..84].copy_from_slice(&128u32.to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    h[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
    let crc = crc32fast::hash(&h[..HEADER_SIZE]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    disk[512..1024].copy_from_slice(&h);
    disk[1024..1024 + entries.len()].copy_from_slice(&entries);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::disk::mem::MemDisk;

    fn disk() -> MemDisk {
        let mut bytes = vec![0u8; 4 << 20];
        write_test_gpt(
            &mut bytes,
            &[
                ("esp", 64, 127),
                ("state", 2048, 4095),
                ("slot-a", 4096, 6143),
                ("slot-b", 6144, 8190),
            ],
        );
        MemDisk {
            bytes,
            ..MemDisk::default()
        }
    }

    #[test]
    fn finds_the_partitions_by_name() {
        let p = find_partitions(&mut disk()).unwrap();
        assert_eq!(
            p.state,
            Part {
                name: "state",
                start: 2048 * 512,
                len: 2048 * 512
            }
        );
        assert_eq!(p.slot_a.start, 4096 * 512);
        assert_eq!(p.slot_b.len, 2047 * 512);
    }

    #[test]
    fn names_match_exactly() {
        let mut field = [0u8; NAME_BYTES];
        for (j, b) in "slot-ab".bytes().enumerate() {
            field[2 * j] = b;
        }
        assert!(!name_is(&field, "slot-a"));
        assert!(name_is(&field, "slot-ab"));
        assert!(!name_is(&field, "slot-abc"));
    }

    #[test]
    fn a_flipped_header_byte_is_refused() {
        let mut d = disk();
        d.bytes[512 + 40] ^= 1;
        assert!(matches!(
            find_partitions(&mut d),
            Err(GptError::Header {
                what: "header checksum mismatch"
            })
        ));
    }

    #[test]
    fn a_flipped_entry_byte_is_refused() {
        let mut d = disk();
        d.bytes[1024 + 130] ^= 1;
        assert!(matches!(
            find_partitions(&mut d),
            Err(GptError::EntriesChecksum)
        ));
    }

    #[test]
    fn a_second_partition_of_the_same_name_is_refused() {
        let mut bytes = vec![0u8; 4 << 20];
        write_test_gpt(
            &mut bytes,
            &[
                ("state", 2048, 4095),
                ("slot-a", 4096, 6143),
                ("slot-a", 6144, 8190),
                ("slot-b", 100, 200),
            ],
        );
        let mut d = MemDisk {
            bytes,
            ..MemDisk::default()
        };
        assert!(matches!(
            find_partitions(&mut d),
            Err(GptError::Duplicate { name: "slot-a" })
        ));
    }

    #[test]
    fn a_partition_past_the_disk_end_is_refused() {
        let mut bytes = vec![0u8; 4 << 20];
        write_test_gpt(
            &mut bytes,
            &[
                ("state", 2048, 4095),
                ("slot-a", 4096, 6143),
                ("slot-b", 6144, 9000),
            ],
        );
        let mut d = MemDisk {
            bytes,
            ..MemDisk::default()
        };
        assert!(matches!(
            find_partitions(&mut d),
            Err(GptError::Extent { name: "slot-b", .. })
        ));
    }
}
