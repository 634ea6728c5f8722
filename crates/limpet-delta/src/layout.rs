//! An image's layout: the runs of raw bytes and the zstd frames that can be expanded.
//!
//! [`expand`] walks the image once. At every zstd magic number it tries the frame there: it
//! must declare its content size (at most [`MAX_FRAME`]), decompress to exactly that, and
//! compress again with `zstd::bulk::Compressor` at one level to exactly the same bytes, the
//! call backhand writes squashfs blocks with. Levels tried: the last one found, then 9
//! (limpet's squashfs), 3 (backhand's default) and 19 (limpet's squashfs before). Anything else, including frames a
//! different zstd wrote, stays raw: it then travels as bytes in the delta, never wrong.

use limpet_chunk::ReadAt;

use crate::MAX_FRAME;

/// zstd's frame magic number, little-endian on disk.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Levels tried on a frame after the previous frame's level: limpet's squashfs level,
/// backhand's default, and the level limpet used before.
const LEVELS: [i32; 3] = [9, 3, 19];

/// One run of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Bytes kept as they are.
    Raw {
        /// Length in the image, equal to its expanded length.
        len: u64,
    },
    /// A zstd frame that `zstd::bulk::Compressor::new(level)` reproduces from its content.
    Zstd {
        /// The compression level that reproduces it.
        level: i32,
        /// Length of the frame in the image.
        stored: u64,
        /// Length of its content (at most [`MAX_FRAME`]).
        expanded: u32,
    },
    /// A limpet slot's dm-verity hash tree, rebuilt from the data before it rather than
    /// sent: it is new in every release (its salt hashes the squashfs) and incompressible.
    Verity {
        /// Length of the tree.
        stored: u64,
        /// Data blocks it covers: exactly the image's bytes before it.
        data_blocks: u64,
        /// The salt.
        salt: [u8; 32],
    },
}

impl Segment {
    /// Bytes in the image.
    pub fn stored(&self) -> u64 {
        match *self {
            Segment::Raw { len } => len,
            Segment::Zstd { stored, .. } | Segment::Verity { stored, .. } => stored,
        }
    }

    /// Bytes in the expanded image.
    pub fn expanded(&self) -> u64 {
        match *self {
            Segment::Raw { len } => len,
            Segment::Zstd { expanded, .. } => u64::from(expanded),
            Segment::Verity { .. } => 0,
        }
    }
}

/// An image split into segments, with the expanded image they make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The segments in image order; their stored lengths sum to the image's length.
    pub segments: Vec<Segment>,
    /// Raw runs and frame contents, concatenated.
    pub bytes: Vec<u8>,
}

/// Splits `image` into raw runs, reproducible zstd frames and (for a limpet slot whose
/// tree is what its data and salt make) the verity tree, and expands it.
pub fn expand(image: &[u8]) -> Expanded {
    let Some((data_end, tree_end, segment)) = verity_tree(image) else {
        return expand_run(image);
    };
    let mut expanded = expand_run(&image[..data_end]);
    expanded.segments.push(segment);
    let rest = expand_run(&image[tree_end..]);
    expanded.segments.extend(rest.segments);
    expanded.bytes.extend(rest.bytes);
    expanded
}

/// Where a limpet slot's verity tree lies, when `image` is one and its tree is exactly
/// what its data and salt make: (data end, tree end, segment).
fn verity_tree(image: &[u8]) -> Option<(usize, usize, Segment)> {
    let slot = limpet_image::slot::open(image).ok()?;
    let layout = slot.layout;
    if layout.tree_size == 0 {
        return None;
    }
    let salt = slot.header.unverified().salt;
    let (tree, _) = limpet_image::verity::build_tree(slot.data, salt);
    if tree != slot.tree {
        return None;
    }
    let data_end = usize::try_from(layout.hash_offset).ok()?;
    let tree_end = usize::try_from(layout.hash_offset + layout.tree_size).ok()?;
    Some((
        data_end,
        tree_end,
        Segment::Verity {
            stored: layout.tree_size,
            data_blocks: layout.data_blocks(),
            salt,
        },
    ))
}

/// [`expand`] for a run with no tree in it.
fn expand_run(image: &[u8]) -> Expanded {
    let mut segments = Vec::new();
    let mut bytes = Vec::with_capacity(image.len().saturating_mul(2));
    let mut raw_start = 0;
    let mut at = 0;
    let mut last_level = LEVELS[0];
    while let Some(found) = find_magic(image, at) {
        match reproduce(&image[found..], last_level) {
            Some((level, stored, content)) => {
                if found > raw_start {
                    segments.push(Segment::Raw {
                        len: (found - raw_start) as u64,
                    });
                    bytes.extend_from_slice(&image[raw_start..found]);
                }
                segments.push(Segment::Zstd {
                    level,
                    stored: stored as u64,
                    expanded: u32::try_from(content.len()).unwrap_or(u32::MAX),
                });
                bytes.extend_from_slice(&content);
                last_level = level;
                at = found + stored;
                raw_start = at;
            }
            None => at = found + 1,
        }
    }
    if image.len() > raw_start {
        segments.push(Segment::Raw {
            len: (image.len() - raw_start) as u64,
        });
        bytes.extend_from_slice(&image[raw_start..]);
    }
    Expanded { segments, bytes }
}

/// The next zstd magic number at or after `from`.
fn find_magic(image: &[u8], from: usize) -> Option<usize> {
    let rest = image.get(from..)?;
    rest.windows(ZSTD_MAGIC.len())
        .position(|w| w == ZSTD_MAGIC)
        .map(|p| p + from)
}

/// The frame at the start of `data`, if one level reproduces it: (level, frame length,
/// content).
fn reproduce(data: &[u8], first_level: i32) -> Option<(i32, usize, Vec<u8>)> {
    let content_len = zstd::zstd_safe::get_frame_content_size(data).ok()??;
    let content_len = usize::try_from(content_len).ok()?;
    if content_len == 0 || content_len > MAX_FRAME {
        return None;
    }
    let stored = zstd::zstd_safe::find_frame_compressed_size(data).ok()?;
    let frame = data.get(..stored)?;
    let content = zstd::bulk::decompress(frame, content_len).ok()?;
    if content.len() != content_len {
        return None;
    }
    std::iter::once(first_level)
        .chain(LEVELS.into_iter().filter(|l| *l != first_level))
        .find(|level| compress(&content, *level).is_some_and(|again| again == frame))
        .map(|level| (level, stored, content))
}

/// Bytes read at once while scanning an old image.
const SCAN_PIECE: usize = 64 * 1024;

/// The segments of an old image as both sides find them, without the delta saying: every
/// zstd frame whose header declares a content size of at most [`MAX_FRAME`] and whose
/// blocks lie inside the image, found from the start, each search going on after the frame
/// found. Nothing is decompressed to decide, so the publisher and the device (reading its
/// running slot in pieces) agree; the level does not matter for reading (0 here).
pub fn scan<R: ReadAt + ?Sized>(image: &R) -> std::io::Result<Vec<Segment>> {
    let len = image.size()?;
    let mut segments = Vec::new();
    let mut raw_start = 0u64;
    let mut at = 0u64;
    let mut piece = vec![0u8; SCAN_PIECE];
    while at + ZSTD_MAGIC.len() as u64 <= len {
        let n = usize::try_from((len - at).min(SCAN_PIECE as u64)).unwrap_or(SCAN_PIECE);
        image.read_exact_at(&mut piece[..n], at)?;
        let Some(found) = find_magic(&piece[..n], 0) else {
            // The last 3 bytes may start a magic number that the next piece completes.
            at += (n - (ZSTD_MAGIC.len() - 1)) as u64;
            continue;
        };
        let start = at + found as u64;
        match frame_at(image, start, len)? {
            Some((stored, expanded)) => {
                if start > raw_start {
                    segments.push(Segment::Raw {
                        len: start - raw_start,
                    });
                }
                segments.push(Segment::Zstd {
                    level: 0,
                    stored,
                    expanded,
                });
                at = start + stored;
                raw_start = at;
            }
            None => at = start + 1,
        }
    }
    if len > raw_start {
        segments.push(Segment::Raw {
            len: len - raw_start,
        });
    }
    Ok(segments)
}

/// The expansion of an old image from its [`scan`]: raw runs as they are, frames
/// decompressed. Fails with the offset of a frame that does not decompress to its size.
pub fn expand_old(image: &[u8], segments: &[Segment]) -> Result<Vec<u8>, (u64, String)> {
    let mut out = Vec::with_capacity(image.len().saturating_mul(2));
    let mut at = 0usize;
    for segment in segments {
        let stored = usize::try_from(segment.stored()).unwrap_or(usize::MAX);
        let bytes = image
            .get(at..at.saturating_add(stored))
            .ok_or_else(|| (at as u64, "past the end of the image".to_owned()))?;
        match *segment {
            Segment::Zstd { expanded, .. } => {
                let content = zstd::bulk::decompress(bytes, expanded as usize)
                    .map_err(|e| (at as u64, e.to_string()))?;
                if content.len() != expanded as usize {
                    return Err((
                        at as u64,
                        format!("{} bytes, not {expanded}", content.len()),
                    ));
                }
                out.extend(content);
            }
            Segment::Raw { .. } | Segment::Verity { .. } => out.extend_from_slice(bytes),
        }
        at += stored;
    }
    Ok(out)
}

/// The frame at `start` (its magic number already seen): (length, content size) when its
/// header declares a content size of at most [`MAX_FRAME`], uses no dictionary, and its
/// blocks end inside the image. Walks the block headers (RFC 8878 section 3.1).
fn frame_at<R: ReadAt + ?Sized>(
    image: &R,
    start: u64,
    len: u64,
) -> std::io::Result<Option<(u64, u32)>> {
    let mut head = [0u8; 18];
    let n = usize::try_from((len - start).min(head.len() as u64)).unwrap_or(0);
    image.read_exact_at(&mut head[..n], start)?;
    let Some(&descriptor) = head.get(4) else {
        return Ok(None);
    };
    let single_segment = descriptor & 0x20 != 0;
    let checksum = descriptor & 0x04 != 0;
    if descriptor & 0x08 != 0 || descriptor & 0x03 != 0 {
        return Ok(None); // reserved bit, or a dictionary
    }
    let size_bytes = match descriptor >> 6 {
        0 if single_segment => 1,
        0 => return Ok(None), // no content size
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let size_at = 5 + usize::from(!single_segment);
    let Some(field) = head.get(size_at..size_at + size_bytes) else {
        return Ok(None);
    };
    let mut value = [0u8; 8];
    value[..size_bytes].copy_from_slice(field);
    let mut content = u64::from_le_bytes(value);
    if size_bytes == 2 {
        content += 256;
    }
    let Some(expanded) = u32::try_from(content)
        .ok()
        .filter(|c| *c > 0 && *c as usize <= MAX_FRAME)
    else {
        return Ok(None);
    };
    let max_stored = zstd::zstd_safe::compress_bound(MAX_FRAME) as u64;
    let mut at = start + (size_at + size_bytes) as u64;
    loop {
        let mut block = [0u8; 3];
        if at + 3 > len || at - start > max_stored {
            return Ok(None);
        }
        image.read_exact_at(&mut block, at)?;
        let header = u32::from_le_bytes([block[0], block[1], block[2], 0]);
        let last = header & 1 == 1;
        let size = u64::from(header >> 3);
        let body = match (header >> 1) & 3 {
            0 | 2 => size, // raw, compressed
            1 => 1,        // RLE: one byte
            _ => return Ok(None),
        };
        at += 3 + body;
        if last {
            break;
        }
    }
    if checksum {
        at += 4;
    }
    if at > len || at - start > max_stored {
        return Ok(None);
    }
    Ok(Some((at - start, expanded)))
}

/// Compresses one frame the way backhand does.
pub(crate) fn compress(content: &[u8], level: i32) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    compress_into(content, level, &mut out);
    (!out.is_empty()).then_some(out)
}

/// [`compress`] into `out`, reusing its allocation; `out` is left empty on failure.
pub(crate) fn compress_into(content: &[u8], level: i32, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(content.len()));
    let done =
        zstd::bulk::Compressor::new(level).and_then(|mut c| c.compress_to_buffer(content, out));
    if done.is_err() {
        out.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
    use super::*;

    fn text(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| b"limpet delta "[(i + usize::from(seed)) % 13] ^ u8::from(i % 97 == 0))
            .collect()
    }

    #[test]
    fn scanning_finds_the_frames_zstd_finds() {
        let mut image = b"head".to_vec();
        let mut expected = vec![Segment::Raw { len: 4 }];
        for (i, level) in [1, 9, 19, 3].into_iter().enumerate() {
            let content = text(3000 + 5000 * i, u8::try_from(i).unwrap());
            let frame = compress(&content, level).unwrap();
            assert_eq!(
                zstd::zstd_safe::find_frame_compressed_size(&frame).unwrap(),
                frame.len()
            );
            expected.push(Segment::Zstd {
                level: 0,
                stored: frame.len() as u64,
                expanded: content.len() as u32,
            });
            image.extend(frame);
        }
        // A magic number with nothing sensible after it, across the end of a scan piece.
        image.resize(SCAN_PIECE - 2, 7);
        image.extend(ZSTD_MAGIC);
        image.extend([0xff; 10]);
        expected.push(Segment::Raw {
            len: (image.len() - expected.iter().map(Segment::stored).sum::<u64>() as usize) as u64,
        });
        assert_eq!(scan(&image[..]).unwrap(), expected);
        // An incompressible block is stored raw inside its frame; still found.
        let noise: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let frame = compress(&noise, 9).unwrap();
        let found = scan(&frame[..]).unwrap();
        assert_eq!(
            found,
            [Segment::Zstd {
                level: 0,
                stored: frame.len() as u64,
                expanded: 70_000
            }]
        );
    }

    #[test]
    fn frames_at_known_levels_expand_and_the_rest_stays_raw() {
        let a = text(5000, 1);
        let b = text(7000, 2);
        let mut image = b"header".to_vec();
        image.extend(compress(&a, 19).unwrap());
        image.extend(compress(&b, 3).unwrap());
        // A frame at a level not tried, and a fake magic number, stay raw.
        let odd = compress(&a, 7).unwrap();
        image.extend(&odd);
        image.extend(ZSTD_MAGIC);
        image.extend(b"tail");

        let expanded = expand(&image);
        assert_eq!(
            expanded.segments[..3],
            [
                Segment::Raw { len: 6 },
                Segment::Zstd {
                    level: 19,
                    stored: compress(&a, 19).unwrap().len() as u64,
                    expanded: 5000
                },
                Segment::Zstd {
                    level: 3,
                    stored: compress(&b, 3).unwrap().len() as u64,
                    expanded: 7000
                },
            ]
        );
        assert_eq!(
            expanded.segments[3],
            Segment::Raw {
                len: (odd.len() + 8) as u64
            }
        );
        let stored: u64 = expanded.segments.iter().map(Segment::stored).sum();
        assert_eq!(stored, image.len() as u64);
        let len: u64 = expanded.segments.iter().map(Segment::expanded).sum();
        assert_eq!(len, expanded.bytes.len() as u64);
        assert_eq!(&expanded.bytes[6..5006], &a[..]);
    }
}
