//! The empty data filesystem as a template (docs/owner-mode.md): the non-zero bytes of the
//! build's empty ext4, which PID 1 writes onto a data partition the loader wiped (all
//! zero), so the device has a persistent `/data` again at that very boot without carrying
//! mkfs. The build makes it with mke2fs and puts it in the initramfs at [`INITRAMFS_PATH`],
//! where the slot's signature covers it.
//!
//! Format, all integers little-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `LIMPETFS` |
//! | 8 | 4 | version, 1 |
//! | 12 | 8 | the filesystem's size in bytes (the partition must hold it) |
//! | 20 | 4 | number of runs |
//! | 24 | ... | each run: offset (8), length `n` (4, 1 to [`MAX_RUN`]), `n` bytes |
//! | end - 32 | 32 | SHA-256 of everything before it |
//!
//! Rules this module keeps:
//! - Runs are in increasing order, do not overlap or touch, and end within the
//!   filesystem's size; a template breaking any rule, or whose checksum is wrong, is
//!   refused with the reason.
//! - Applied to an all-zero partition, the runs give exactly the image they were made from.
//! - [`HELD_BACK`] (the first sector of the primary superblock, holding ext4's magic) is
//!   written last and alone ([`Template::runs_except_held_back`], then
//!   [`Template::held_back`]): until that one sector is on the disk, the partition holds
//!   no filesystem a mount would find, and [`is_unformatted`] says to write it again.

use alloc::vec::Vec;
use core::ops::Range;

use sha2::{Digest, Sha256};

/// Where the build puts the template in the initramfs.
pub const INITRAMFS_PATH: &str = "etc/limpet/data-fs.template";
/// The format's magic.
pub const MAGIC: &[u8; 8] = b"LIMPETFS";
/// The only version.
pub const VERSION: u32 = 1;
/// The longest run.
pub const MAX_RUN: u32 = 1 << 20;
/// The bytes written last: the first 512-byte sector of ext4's primary superblock (it
/// starts at byte 1024 and holds the magic at 1080). One sector is written whole or not
/// at all by a disk.
pub const HELD_BACK: Range<u64> = 1024..1536;
/// The start of the partition [`is_unformatted`] looks at.
pub const HEAD: usize = 64 * 1024;
/// Zero bytes inside a run before the encoder starts a new one (a run header costs 12).
const GAP: usize = 32;

/// Why a template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Shorter than its header and checksum, or a run reaches past the end.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// Not a template.
    #[error("bad magic")]
    Magic,
    /// A version this reader does not know.
    #[error("version {0}, this reader knows 1")]
    Version(u32),
    /// The checksum does not match.
    #[error("checksum mismatch: the template is damaged")]
    Checksum,
    /// A run breaks the rules (order, length, bounds).
    #[error("run {index}: {reason}")]
    Run {
        /// Which run, from 0.
        index: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Bytes after the last run.
    #[error("bytes after the last run")]
    Trailing,
}

/// A checked template, borrowing its bytes.
#[derive(Debug, Clone)]
pub struct Template<'a> {
    fs_size: u64,
    /// `(offset, bytes)` of each run, in order.
    runs: Vec<(u64, &'a [u8])>,
}

/// `v` as an index into something of `len` bytes (never past it: the callers compute
/// values within it, and this keeps that true on every pointer width).
fn within(v: u64, len: usize) -> usize {
    usize::try_from(v).map_or(len, |v| v.min(len))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl<'a> Template<'a> {
    /// Checks `bytes` (the rules of the module doc).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, TemplateError> {
        if bytes.len() < 24 + 32 {
            return Err(TemplateError::Truncated("shorter than header and checksum"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if body.get(..8) != Some(&MAGIC[..]) {
            return Err(TemplateError::Magic);
        }
        let version = u32_at(body, 8).ok_or(TemplateError::Truncated("version"))?;
        if version != VERSION {
            return Err(TemplateError::Version(version));
        }
        if Sha256::digest(body).as_slice() != sum {
            return Err(TemplateError::Checksum);
        }
        let fs_size = u64_at(body, 12).ok_or(TemplateError::Truncated("size"))?;
        let count = u32_at(body, 20).ok_or(TemplateError::Truncated("run count"))?;
        let mut at = 24usize;
        let mut end_of_last = 0u64;
        let mut runs = Vec::new();
        for index in 0..count {
            let bad = |reason| TemplateError::Run { index, reason };
            let offset = u64_at(body, at).ok_or(TemplateError::Truncated("run offset"))?;
            let len = u32_at(body, at + 8).ok_or(TemplateError::Truncated("run length"))?;
            if len == 0 || len > MAX_RUN {
                return Err(bad("length 0 or over the maximum"));
            }
            if index > 0 && offset <= end_of_last {
                return Err(bad("not after the run before it"));
            }
            let end = offset
                .checked_add(u64::from(len))
                .filter(|e| *e <= fs_size)
                .ok_or(bad("ends past the filesystem's size"))?;
            let start = at + 12;
            let data = body
                .get(start..start + len as usize)
                .ok_or(TemplateError::Truncated("run bytes"))?;
            runs.push((offset, data));
            end_of_last = end;
            at = start + len as usize;
        }
        if at != body.len() {
            return Err(TemplateError::Trailing);
        }
        Ok(Template { fs_size, runs })
    }

    /// The filesystem's size: the partition must be at least this large.
    pub fn fs_size(&self) -> u64 {
        self.fs_size
    }

    /// The runs, `(offset, bytes)`, with the bytes of [`HELD_BACK`] left out (a run that
    /// covers them comes as its parts before and after).
    pub fn runs_except_held_back(&self) -> Vec<(u64, &'a [u8])> {
        let mut out = Vec::new();
        for &(offset, data) in &self.runs {
            let end = offset + data.len() as u64;
            if end <= HELD_BACK.start || offset >= HELD_BACK.end {
                out.push((offset, data));
                continue;
            }
            if offset < HELD_BACK.start {
                out.push((
                    offset,
                    &data[..within(HELD_BACK.start - offset, data.len())],
                ));
            }
            if end > HELD_BACK.end {
                let from = within(HELD_BACK.end.saturating_sub(offset), data.len());
                out.push((offset + from as u64, &data[from..]));
            }
        }
        out
    }

    /// The 512 bytes of [`HELD_BACK`] as the image has them.
    pub fn held_back(&self) -> [u8; 512] {
        let mut sector = [0u8; 512];
        self.paint(HELD_BACK.start, &mut sector);
        sector
    }

    /// Writes the image's bytes of `[start, start + buf.len())` into `buf` (which the
    /// caller zeroed): what an all-zero partition holds there once the template is applied.
    pub fn paint(&self, start: u64, buf: &mut [u8]) {
        let stop = start + buf.len() as u64;
        for &(offset, data) in &self.runs {
            let end = offset + data.len() as u64;
            if end <= start || offset >= stop {
                continue;
            }
            let from = offset.max(start);
            let to = end.min(stop);
            let src = &data[within(from - offset, data.len())..within(to - offset, data.len())];
            let len = buf.len();
            buf[within(from - start, len)..within(to - start, len)].copy_from_slice(src);
        }
    }
}

/// Whether a data partition whose first bytes are `head` (at least [`HEAD`] of them) holds
/// no filesystem yet and may be written with `template`: its [`HELD_BACK`] sector is all
/// zero, and every other byte of the head is zero or already the template's (a write
/// that a power cut stopped). A partition holding anything else is left alone.
pub fn is_unformatted(head: &[u8], template: &Template<'_>) -> bool {
    let Some(head) = head.get(..HEAD) else {
        return false;
    };
    let held = within(HELD_BACK.start, HEAD)..within(HELD_BACK.end, HEAD);
    if head[held].iter().any(|&b| b != 0) {
        return false;
    }
    let mut image = alloc::vec![0u8; HEAD];
    template.paint(0, &mut image);
    head.iter().zip(&image).all(|(&h, &t)| h == 0 || h == t)
}

/// Makes a template, fed the image in order.
#[derive(Debug, Default)]
pub struct Encoder {
    runs: Vec<(u64, Vec<u8>)>,
    next: u64,
}

impl Encoder {
    /// An encoder at offset 0.
    pub fn new() -> Self {
        Encoder::default()
    }

    /// The image's next bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            if b == 0 {
                continue;
            }
            let at = self.next + i as u64;
            match self.runs.last_mut() {
                Some((offset, data))
                    if at - (*offset + data.len() as u64) <= GAP as u64
                        && data.len() < MAX_RUN as usize =>
                {
                    let fill = within(at - (*offset + data.len() as u64), GAP);
                    if data.len() + fill < MAX_RUN as usize {
                        data.resize(data.len() + fill, 0);
                        data.push(b);
                    } else {
                        self.runs.push((at, alloc::vec![b]));
                    }
                }
                _ => self.runs.push((at, alloc::vec![b])),
            }
        }
        self.next += bytes.len() as u64;
    }

    /// The template of the image pushed, whose size is the bytes pushed.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.next.to_le_bytes());
        // More than u32::MAX runs cannot be written; the count saturates and the reader
        // then refuses the template (bytes after the last run it counts).
        let count = u32::try_from(self.runs.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for (offset, data) in &self.runs {
            out.extend_from_slice(&offset.to_le_bytes());
            // At most MAX_RUN bytes (push never grows a run past it).
            let len = u32::try_from(data.len()).unwrap_or(MAX_RUN);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(data);
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An "image" with bytes in the head, across the held-back sector and far out.
    fn image() -> Vec<u8> {
        let mut img = alloc::vec![0u8; 256 * 1024];
        img[1000..1100].fill(0xaa); // crosses HELD_BACK.start
        img[1080] = 0x53; // "the magic"
        img[1500..1600].fill(0xbb); // crosses HELD_BACK.end
        img[4096..4100].copy_from_slice(b"gdt!");
        img[4140] = 1; // within GAP of the run before: merged
        img[200_000..200_010].fill(7);
        img
    }

    fn encode(img: &[u8]) -> Vec<u8> {
        let mut e = Encoder::new();
        for chunk in img.chunks(4096) {
            e.push(chunk);
        }
        e.finish()
    }

    #[test]
    #[allow(clippy::cast_possible_truncation)] // offsets in a 256 KiB test image
    fn applied_to_zeros_the_runs_give_the_image_back() {
        let img = image();
        let bytes = encode(&img);
        let t = Template::parse(&bytes).unwrap();
        assert_eq!(t.fs_size(), img.len() as u64);
        let mut disk = alloc::vec![0u8; img.len()];
        for (offset, data) in t.runs_except_held_back() {
            let end = offset + data.len() as u64;
            assert!(end <= HELD_BACK.start || offset >= HELD_BACK.end);
            disk[offset as usize..end as usize].copy_from_slice(data);
        }
        // Before the held-back sector: no magic, and still "unformatted".
        assert_eq!(disk[1080], 0);
        assert!(is_unformatted(&disk, &t));
        disk[1024..1536].copy_from_slice(&t.held_back());
        assert_eq!(disk, img);
        assert!(!is_unformatted(&disk, &t));
        // An all-zero head is unformatted; one holding something else is not.
        assert!(is_unformatted(&alloc::vec![0u8; HEAD], &t));
        let mut other = alloc::vec![0u8; HEAD];
        other[9000] = 1;
        assert!(!is_unformatted(&other, &t));
        assert!(!is_unformatted(&[0u8; 100], &t), "too short a head");
    }

    #[test]
    fn a_damaged_or_malformed_template_is_refused() {
        let bytes = encode(&image());
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert_eq!(
            Template::parse(&flipped).unwrap_err(),
            TemplateError::Checksum
        );
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(Template::parse(&magic).unwrap_err(), TemplateError::Magic);
        assert!(matches!(
            Template::parse(&bytes[..40]),
            Err(TemplateError::Truncated(_))
        ));
        // Well checksummed but breaking the rules: a run past the size, runs out of order.
        let reseal = |mut body: Vec<u8>| {
            let sum = Sha256::digest(&body);
            body.extend_from_slice(&sum);
            body
        };
        let body = bytes[..bytes.len() - 32].to_vec();
        let mut small = body.clone();
        small[12..20].copy_from_slice(&100u64.to_le_bytes());
        assert!(matches!(
            Template::parse(&reseal(small)),
            Err(TemplateError::Run {
                index: 0,
                reason: "ends past the filesystem's size"
            })
        ));
        let mut backwards = body.clone();
        // The second run's offset (after the first run's header and bytes) set to 0.
        let first_len = u32_at(&body, 32).unwrap() as usize;
        let second = 24 + 12 + first_len;
        backwards[second..second + 8].copy_from_slice(&0u64.to_le_bytes());
        assert!(matches!(
            Template::parse(&reseal(backwards)),
            Err(TemplateError::Run {
                index: 1,
                reason: "not after the run before it"
            })
        ));
        let mut trailing = body;
        trailing.push(0);
        assert_eq!(
            Template::parse(&reseal(trailing)).unwrap_err(),
            TemplateError::Trailing
        );
    }
}
