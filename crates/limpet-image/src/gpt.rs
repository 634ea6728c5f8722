//! Reading a GUID partition table (UEFI 2.10, section 5.3), 512-byte sectors.
//!
//! Rules:
//! - A header is used only if its signature, revision, size, own LBA and CRC32 are right
//!   and its entry array's CRC32 matches. The primary header (LBA 1) is tried first; if it
//!   fails, the backup header (the last LBA of the device) is used.
//! - Entry counts and sizes are bounded ([`MAX_ENTRY_ARRAY`]) before anything is read, so a
//!   hostile header cannot make the reader allocate much.
//! - GUIDs are kept as the 16 bytes stored on disk (the first three fields little-endian);
//!   [`guid_to_string`] gives the usual text form.
//! - Limpet's partition type GUIDs are [`STATE_TYPE`], [`SLOT_TYPE`] and [`DATA_TYPE`]; the
//!   EFI system partition has the standard [`ESP_TYPE`].

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use thiserror::Error;

use crate::io::{IoError, ReadAt};

/// Sector size the table is written and read with.
pub const SECTOR_SIZE: u64 = 512;
/// [`SECTOR_SIZE`] as a buffer length.
pub const SECTOR_BYTES: usize = 512;
/// "EFI PART".
pub const SIGNATURE: [u8; 8] = *b"EFI PART";
/// GPT revision 1.0.
pub const REVISION: u32 = 0x0001_0000;
/// Size of the header fields covered by the header CRC.
pub const HEADER_SIZE: u32 = 92;
/// Upper bound on the entry array a header may describe (the usual array is 16 KiB).
pub const MAX_ENTRY_ARRAY: u64 = 1 << 20;

/// Builds the on-disk bytes of a GUID from its text fields
/// (`d1-d2-d3-d4[0..2]-d4[2..8]`).
pub const fn guid(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

/// Partition type of the `state` partition: `5c0b1e6a-9f43-4d0c-8e55-2a8e1f3c7d01`.
pub const STATE_TYPE: [u8; 16] = guid(
    0x5c0b_1e6a,
    0x9f43,
    0x4d0c,
    [0x8e, 0x55, 0x2a, 0x8e, 0x1f, 0x3c, 0x7d, 0x01],
);
/// Partition type of `slot-a` and `slot-b`: `5c0b1e6a-9f43-4d0c-8e55-2a8e1f3c7d02`.
pub const SLOT_TYPE: [u8; 16] = guid(
    0x5c0b_1e6a,
    0x9f43,
    0x4d0c,
    [0x8e, 0x55, 0x2a, 0x8e, 0x1f, 0x3c, 0x7d, 0x02],
);
/// Partition type of the `data` partition: `5c0b1e6a-9f43-4d0c-8e55-2a8e1f3c7d03`.
pub const DATA_TYPE: [u8; 16] = guid(
    0x5c0b_1e6a,
    0x9f43,
    0x4d0c,
    [0x8e, 0x55, 0x2a, 0x8e, 0x1f, 0x3c, 0x7d, 0x03],
);

/// Partition type of the EFI system partition: `c12a7328-f81f-11d2-ba4b-00a0c93ec93b`.
pub const ESP_TYPE: [u8; 16] = guid(
    0xc12a_7328,
    0xf81f,
    0x11d2,
    [0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b],
);

/// The text form of on-disk GUID bytes, lower case.
pub fn guid_to_string(g: &[u8; 16]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}",
        g[3],
        g[2],
        g[1],
        g[0],
        g[5],
        g[4],
        g[7],
        g[6],
        g[8],
        g[9],
        hex::encode(&g[10..16])
    )
}

/// One used entry of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Name (UTF-16LE on disk, up to 36 code units).
    pub name: String,
    /// Partition type GUID, on-disk bytes.
    pub type_guid: [u8; 16],
    /// Unique partition GUID, on-disk bytes.
    pub guid: [u8; 16],
    /// First sector.
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
}

impl Partition {
    /// Offset of the partition in bytes.
    pub fn offset(&self) -> u64 {
        self.first_lba.saturating_mul(SECTOR_SIZE)
    }

    /// Size of the partition in bytes.
    pub fn size(&self) -> u64 {
        (self
            .last_lba
            .saturating_sub(self.first_lba)
            .saturating_add(1))
        .saturating_mul(SECTOR_SIZE)
    }
}

/// Which header a table was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCopy {
    /// LBA 1.
    Primary,
    /// The last LBA.
    Backup,
}

/// A table as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The header that was used.
    pub source: HeaderCopy,
    /// Disk GUID, on-disk bytes.
    pub disk_guid: [u8; 16],
    /// Used entries, in table order.
    pub partitions: Vec<Partition>,
}

/// Why a table cannot be read.
#[derive(Debug, Error)]
pub enum GptError {
    /// Reading failed.
    #[error("cannot read the {part} at offset {offset}")]
    Io {
        /// What was read.
        part: &'static str,
        /// Where.
        offset: u64,
        /// The cause.
        #[source]
        source: IoError,
    },
    /// The device is too small to hold a table.
    #[error("device is {len} bytes, too small for a GPT")]
    TooSmall {
        /// Device size.
        len: u64,
    },
    /// A header field is wrong.
    #[error("{copy:?} GPT header at LBA {lba}: {field} is invalid ({reason})")]
    Header {
        /// Which copy.
        copy: HeaderCopy,
        /// The header's LBA.
        lba: u64,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An entry is wrong.
    #[error("{copy:?} GPT entry {index}: {reason}")]
    Entry {
        /// Which copy.
        copy: HeaderCopy,
        /// Entry index.
        index: u32,
        /// What is wrong.
        reason: String,
    },
    /// Neither header is usable.
    #[error("no usable GPT: primary: {primary}; backup: {backup}")]
    NoValidHeader {
        /// Why the primary failed.
        primary: Box<GptError>,
        /// Why the backup failed.
        backup: Box<GptError>,
    },
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        x.copy_from_slice(s);
    }
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        x.copy_from_slice(s);
    }
    u64::from_le_bytes(x)
}

fn guid_at(b: &[u8], at: usize) -> [u8; 16] {
    let mut x = [0u8; 16];
    if let Some(s) = b.get(at..at + 16) {
        x.copy_from_slice(s);
    }
    x
}

/// The header fields this reader uses.
#[derive(Debug, Clone, Copy)]
struct Header {
    disk_guid: [u8; 16],
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
    first_usable: u64,
    last_usable: u64,
}

/// Checks a header sector found at `lba`.
fn parse_header(
    sector: &[u8],
    lba: u64,
    copy: HeaderCopy,
    last_lba: u64,
) -> Result<Header, GptError> {
    let bad = |field, reason: String| GptError::Header {
        copy,
        lba,
        field,
        reason,
    };
    if sector.get(..8) != Some(&SIGNATURE[..]) {
        return Err(bad("signature", "not \"EFI PART\"".into()));
    }
    let revision = u32_at(sector, 8);
    if revision != REVISION {
        return Err(bad("revision", format!("{revision:#x}")));
    }
    let size = u32_at(sector, 12);
    if !(HEADER_SIZE..=512).contains(&size) {
        return Err(bad("header size", size.to_string()));
    }
    let stored_crc = u32_at(sector, 16);
    let mut copy_bytes = sector.get(..size as usize).unwrap_or_default().to_vec();
    copy_bytes[16..20].fill(0);
    let crc = crc32fast::hash(&copy_bytes);
    if crc != stored_crc {
        return Err(bad(
            "header CRC32",
            format!("stored {stored_crc:#010x}, computed {crc:#010x}"),
        ));
    }
    let my_lba = u64_at(sector, 24);
    if my_lba != lba {
        return Err(bad("my LBA", format!("{my_lba}, expected {lba}")));
    }
    let header = Header {
        first_usable: u64_at(sector, 40),
        last_usable: u64_at(sector, 48),
        disk_guid: guid_at(sector, 56),
        entries_lba: u64_at(sector, 72),
        entry_count: u32_at(sector, 80),
        entry_size: u32_at(sector, 84),
        entries_crc: u32_at(sector, 88),
    };
    if header.entry_size < 128 || !header.entry_size.is_multiple_of(128) || header.entry_size > 4096
    {
        return Err(bad("entry size", header.entry_size.to_string()));
    }
    let array = u64::from(header.entry_count) * u64::from(header.entry_size);
    if array > MAX_ENTRY_ARRAY {
        return Err(bad(
            "entry count",
            format!(
                "{} entries of {} bytes",
                header.entry_count, header.entry_size
            ),
        ));
    }
    let array_sectors = array.div_ceil(SECTOR_SIZE);
    if header.entries_lba < 2
        || header
            .entries_lba
            .checked_add(array_sectors)
            .is_none_or(|end| end > last_lba + 1)
    {
        return Err(bad("entry array LBA", header.entries_lba.to_string()));
    }
    if header.first_usable > header.last_usable || header.last_usable > last_lba {
        return Err(bad(
            "usable range",
            format!("{}..={}", header.first_usable, header.last_usable),
        ));
    }
    Ok(header)
}

fn read_at(
    dev: &mut impl ReadAt,
    offset: u64,
    buf: &mut [u8],
    part: &'static str,
) -> Result<(), GptError> {
    dev.read_exact_at(offset, buf)
        .map_err(|source| GptError::Io {
            part,
            offset,
            source,
        })
}

fn read_copy(
    dev: &mut impl ReadAt,
    lba: u64,
    copy: HeaderCopy,
    last_lba: u64,
) -> Result<Table, GptError> {
    let mut sector = [0u8; SECTOR_BYTES];
    read_at(dev, lba * SECTOR_SIZE, &mut sector, "GPT header")?;
    let h = parse_header(&sector, lba, copy, last_lba)?;
    // Bounded by MAX_ENTRY_ARRAY in parse_header.
    let len = h.entry_count as usize * h.entry_size as usize;
    let mut array = vec![0u8; len];
    read_at(
        dev,
        h.entries_lba * SECTOR_SIZE,
        &mut array,
        "GPT entry array",
    )?;
    let crc = crc32fast::hash(&array);
    if crc != h.entries_crc {
        return Err(GptError::Header {
            copy,
            lba,
            field: "entry array CRC32",
            reason: format!("stored {:#010x}, computed {crc:#010x}", h.entries_crc),
        });
    }
    let mut partitions = Vec::new();
    for (i, e) in array.chunks_exact(h.entry_size as usize).enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let type_guid = guid_at(e, 0);
        if type_guid == [0; 16] {
            continue;
        }
        let bad = |reason: String| GptError::Entry {
            copy,
            index,
            reason,
        };
        let first_lba = u64_at(e, 32);
        let last_lba = u64_at(e, 40);
        if first_lba > last_lba || first_lba < h.first_usable || last_lba > h.last_usable {
            return Err(bad(format!(
                "LBA range {first_lba}..={last_lba} outside the usable range"
            )));
        }
        let units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let name = char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| bad("name is not UTF-16".into()))?;
        partitions.push(Partition {
            name,
            type_guid,
            guid: guid_at(e, 16),
            first_lba,
            last_lba,
        });
    }
    Ok(Table {
        source: copy,
        disk_guid: h.disk_guid,
        partitions,
    })
}

/// Reads the table: the primary header, or the backup if the primary is damaged.
#[cfg(feature = "std")]
pub fn read_table(dev: &mut (impl std::io::Read + std::io::Seek)) -> Result<Table, GptError> {
    read_table_at(&mut crate::io::Io(dev))
}

/// [`read_table`] from any [`ReadAt`] device (the boot loader's block I/O).
pub fn read_table_at(dev: &mut impl ReadAt) -> Result<Table, GptError> {
    let len = dev.size().map_err(|source| GptError::Io {
        part: "device size",
        offset: 0,
        source,
    })?;
    let sectors = len / SECTOR_SIZE;
    if sectors < 3 {
        return Err(GptError::TooSmall { len });
    }
    let last_lba = sectors - 1;
    let primary = match read_copy(dev, 1, HeaderCopy::Primary, last_lba) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    read_copy(dev, last_lba, HeaderCopy::Backup, last_lba).map_err(|backup| {
        GptError::NoValidHeader {
            primary: Box::new(primary),
            backup: Box::new(backup),
        }
    })
}

/// Reads the used partition entries (see [`read_table`]).
#[cfg(feature = "std")]
pub fn read(dev: &mut (impl std::io::Read + std::io::Seek)) -> Result<Vec<Partition>, GptError> {
    read_table(dev).map(|t| t.partitions)
}

/// Finds a partition by name.
pub fn find<'a>(partitions: &'a [Partition], name: &str) -> Option<&'a Partition> {
    partitions.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text() {
        assert_eq!(
            guid_to_string(&SLOT_TYPE),
            "5c0b1e6a-9f43-4d0c-8e55-2a8e1f3c7d02"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let mut dev = std::io::Cursor::new(vec![0u8; 64 * 512]);
        assert!(matches!(
            read(&mut dev),
            Err(GptError::NoValidHeader { .. })
        ));
        let mut tiny = std::io::Cursor::new(vec![0u8; 100]);
        assert!(matches!(read(&mut tiny), Err(GptError::TooSmall { .. })));
    }
}
