//! Finding `state`, `slot-a`, `slot-b` and `data` in the boot disk's GUID partition table, by
//! partition name, with limpet-image's GPT reader (the one PID 1 and the host tools use:
//! CRC-checked primary header and entry array, the backup header when the primary is
//! damaged, bounded entry arrays).
//!
//! Rules: each partition named must appear exactly once (a second partition of the same
//! name is refused, not shadowed), lie inside the disk, and not be empty.

use alloc::string::String;

use limpet_image::gpt::{self as table, GptError as TableError, SECTOR_SIZE};

use crate::disk::{Disk, Part, WholeDisk};

/// The four partitions the loader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitions {
    /// `state`.
    pub state: Part,
    /// `slot-a`.
    pub slot_a: Part,
    /// `slot-b`.
    pub slot_b: Part,
    /// `data` (only ever written to wipe it, in owner mode's changes).
    pub data: Part,
}

/// Why the partitions were not found.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    /// The table cannot be read (its message carries the cause: the console has one line).
    #[error("GPT: {source}{}", table_cause(source))]
    Table {
        /// Why.
        source: TableError,
    },
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

fn table_cause(e: &TableError) -> String {
    match core::error::Error::source(e) {
        Some(cause) => alloc::format!(": {cause}"),
        None => String::new(),
    }
}

/// Reads the GPT of `disk` and returns the `state`, `slot-a`, `slot-b` and `data` partitions.
pub fn find_partitions<D: Disk>(disk: &mut D) -> Result<Partitions, GptError> {
    let disk_len = disk.len();
    let t =
        table::read_table_at(&mut WholeDisk(disk)).map_err(|source| GptError::Table { source })?;
    let find = |name: &'static str| -> Result<Part, GptError> {
        let mut named = t.partitions.iter().filter(|p| p.name == name);
        let p = named.next().ok_or(GptError::Missing { name })?;
        if named.next().is_some() {
            return Err(GptError::Duplicate { name });
        }
        let (first, last) = (p.first_lba, p.last_lba);
        let extent = last
            .checked_sub(first)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| n.checked_mul(SECTOR_SIZE));
        let start = first.checked_mul(SECTOR_SIZE);
        match (start, extent) {
            (Some(start), Some(len))
                if first > 0 && start.checked_add(len).is_some_and(|end| end <= disk_len) =>
            {
                Ok(Part { name, start, len })
            }
            _ => Err(GptError::Extent { name, first, last }),
        }
    };
    Ok(Partitions {
        state: find("state")?,
        slot_a: find("slot-a")?,
        slot_b: find("slot-b")?,
        data: find("data")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;
    use crate::disk::mem::MemDisk;

    /// limpet-image's disk writer, slot A holding 4 KiB of zeros.
    fn disk() -> MemDisk {
        crate::disk::mem::written(&[0u8; 4096], [1; 32])
    }

    /// Byte offset of entry `i` in the primary entry array (LBA 2).
    fn entry(i: usize) -> usize {
        1024 + i * 128
    }

    /// Rewrites both entry array CRCs and header CRCs after an edit of the primary array.
    fn reseal(d: &mut MemDisk) {
        let array = d.bytes[1024..1024 + 128 * 128].to_vec();
        let crc = crc32fast::hash(&array);
        d.bytes[512 + 88..512 + 92].copy_from_slice(&crc.to_le_bytes());
        d.bytes[512 + 16..512 + 20].fill(0);
        let hcrc = crc32fast::hash(&d.bytes[512..512 + 92]);
        d.bytes[512 + 16..512 + 20].copy_from_slice(&hcrc.to_le_bytes());
    }

    #[test]
    fn finds_the_partitions_by_name() {
        let p = find_partitions(&mut disk()).unwrap();
        assert_eq!(p.state.name, "state");
        assert_eq!(p.state.len, 1 << 20);
        assert_eq!(p.slot_a.len, 2 << 20);
        assert_eq!(p.slot_b.start, p.slot_a.start + (2 << 20));
    }

    #[test]
    fn a_second_partition_of_the_same_name_is_refused() {
        let mut d = disk();
        // Rename `data` (entry 4, after esp, state, slot-a, slot-b) to `slot-a`.
        let name: Vec<u8> = "slot-a".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let at = entry(4) + 56;
        d.bytes[at..at + 72].fill(0);
        d.bytes[at..at + name.len()].copy_from_slice(&name);
        reseal(&mut d);
        assert!(matches!(
            find_partitions(&mut d),
            Err(GptError::Duplicate { name: "slot-a" })
        ));
    }

    #[test]
    fn a_missing_partition_is_named() {
        let mut d = disk();
        let at = entry(3) + 56; // slot-b
        d.bytes[at] = b'X';
        reseal(&mut d);
        assert!(matches!(
            find_partitions(&mut d),
            Err(GptError::Missing { name: "slot-b" })
        ));
    }

    #[test]
    fn a_damaged_table_is_refused_with_its_cause() {
        let mut d = MemDisk {
            bytes: vec![0u8; 1 << 20],
            ..MemDisk::default()
        };
        let err = find_partitions(&mut d).unwrap_err();
        assert!(matches!(err, GptError::Table { .. }), "{err}");
    }
}
