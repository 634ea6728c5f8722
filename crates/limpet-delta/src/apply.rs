//! The device's side: rebuild the new image from the running one and a delta, streaming,
//! in bounded memory.
//!
//! Memory: the body's zstd window (2^[`WINDOW_LOG`]), two decompressed frames of the old
//! image, the new frame being filled, the compressor for it, and 16 KiB buffers. Nothing
//! grows with the image. Output is written in image order, so the sha256 of what was
//! written comes with it.

use limpet_chunk::{ReadAt, WriteAt};
use sha2::{Digest, Sha256};

use crate::format::{Body, Header, Record};
use limpet_image::verity::{TreeBuilder, BLOCK_SIZE, BLOCK_SIZE_U64};

use crate::layout::{compress_into, Segment};
use crate::sparse::Changes;
use crate::{DeltaError, MAGIC, WINDOW_LOG};

/// Bytes handled at once when mixing and copying.
const PIECE: usize = 16 * 1024;

/// What an apply wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Bytes written: the new image's length.
    pub written: u64,
    /// sha256 of the bytes written.
    pub sha256: [u8; 32],
    /// Frames compressed again on this side.
    pub frames: u64,
}

/// Writes the image that `delta` makes from `old` into `out`, from offset 0.
///
/// On error the bytes already written are no image: the caller must not mark them.
pub fn apply<R: ReadAt + ?Sized>(
    delta: &[u8],
    old: &R,
    out: &mut dyn WriteAt,
) -> Result<Applied, DeltaError> {
    let body = delta.strip_prefix(&MAGIC[..]).ok_or(DeltaError::BadMagic)?;
    let mut decoder = zstd::stream::read::Decoder::with_buffer(body).map_err(DeltaError::Zstd)?;
    decoder
        .window_log_max(WINDOW_LOG)
        .map_err(DeltaError::Zstd)?;
    let mut body = Body::new(decoder.single_frame());
    let header = Header::decode(&mut body)?;
    let actual = old.size().map_err(|source| DeltaError::Io {
        what: "old image",
        source,
    })?;
    if actual != header.old_len {
        return Err(DeltaError::WrongOld {
            expected: header.old_len,
            actual,
        });
    }
    let old_segments = crate::layout::scan(old).map_err(|source| DeltaError::Io {
        what: "scanning the old image",
        source,
    })?;
    let old = OldExpanded::new(&old_segments, old);
    let mut sink = NewSink::new(&header.new, out);

    let mut changes = Changes::start(header.changes, &mut body)?;
    let mut d = 0u64; // position in the concatenated mix bytes
    let mut cursor: i64 = 0;
    let mut diff = vec![0u8; PIECE];
    let mut base = vec![0u8; PIECE];
    while let Some(Record { mix, copy, seek }) = body.record()? {
        let remaining = sink.remaining();
        if mix.checked_add(copy).is_none_or(|n| n > remaining) {
            return Err(body.malformed(format!(
                "a record of {mix} + {copy} bytes with {remaining} left to make"
            )));
        }
        let mut left = mix;
        while left > 0 {
            let n = piece(left);
            changes.fill(d, &mut diff[..n], &mut body)?;
            d += n as u64;
            old.read(cursor, &mut base[..n])?;
            for (d, b) in diff[..n].iter_mut().zip(&base[..n]) {
                *d = d.wrapping_add(*b);
            }
            sink.push(&diff[..n])?;
            cursor = cursor.saturating_add(n as i64);
            left -= n as u64;
        }
        let mut left = copy;
        while left > 0 {
            let n = piece(left);
            body.bytes(&mut diff[..n])?;
            sink.push(&diff[..n])?;
            left -= n as u64;
        }
        cursor = cursor
            .checked_add(seek)
            .ok_or_else(|| body.malformed("the old cursor overflows"))?;
    }
    if !changes.all_used() {
        return Err(body.malformed(format!("{} changes announced, fewer used", header.changes)));
    }
    let applied = sink.finish().map_err(|made| {
        body.malformed(format!(
            "the records make {made} of {} expanded bytes",
            sink_total(&header.new)
        ))
    })?;
    if applied.written != header.new_len {
        return Err(DeltaError::Recompress {
            what: "the new image",
            expected: header.new_len,
            actual: applied.written,
        });
    }
    Ok(applied)
}

fn piece(left: u64) -> usize {
    usize::try_from(left).map_or(PIECE, |l| l.min(PIECE))
}

fn sink_total(segments: &[Segment]) -> u64 {
    segments.iter().map(Segment::expanded).sum()
}

/// The old image, expanded, read at any offset through the last frame decompressed.
struct OldExpanded<'a, R: ?Sized> {
    /// (segment, offset in the image, offset in the expansion).
    segments: Vec<(Segment, u64, u64)>,
    len: u64,
    image: &'a R,
    frame: std::cell::RefCell<OldFrame>,
}

/// The frame in hand: its index, its content, the buffer its bytes are read into, and the
/// decompressor, all reused.
struct OldFrame {
    index: Option<usize>,
    content: Vec<u8>,
    stored: Vec<u8>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl<'a, R: ReadAt + ?Sized> OldExpanded<'a, R> {
    fn new(segments: &[Segment], image: &'a R) -> Self {
        let (mut stored, mut expanded) = (0u64, 0u64);
        let segments = segments
            .iter()
            .map(|s| {
                let entry = (*s, stored, expanded);
                stored += s.stored();
                expanded += s.expanded();
                entry
            })
            .collect();
        OldExpanded {
            segments,
            len: expanded,
            image,
            frame: std::cell::RefCell::new(OldFrame {
                index: None,
                content: Vec::new(),
                stored: Vec::new(),
                decompressor: None,
            }),
        }
    }

    /// Fills `buf` from expanded offset `at`; bytes outside the old image read as 0, as
    /// bsdiff's patch rule has it.
    fn read(&self, at: i64, buf: &mut [u8]) -> Result<(), DeltaError> {
        let mut done = 0;
        while done < buf.len() {
            let pos = at.saturating_add(done as i64);
            let Ok(pos) = u64::try_from(pos) else {
                // Before the start: zeros up to offset 0.
                let zeros = usize::try_from(pos.unsigned_abs())
                    .unwrap_or(usize::MAX)
                    .min(buf.len() - done);
                buf[done..done + zeros].fill(0);
                done += zeros;
                continue;
            };
            if pos >= self.len {
                buf[done..].fill(0);
                break;
            }
            let index = self.segments.partition_point(|(_, _, e)| *e <= pos) - 1;
            let (segment, stored_at, expanded_at) = self.segments[index];
            let within = pos - expanded_at;
            let n = usize::try_from(segment.expanded() - within)
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            match segment {
                Segment::Raw { .. } => self
                    .image
                    .read_exact_at(&mut buf[done..done + n], stored_at + within)
                    .map_err(|source| DeltaError::Io {
                        what: "reading the old image",
                        source,
                    })?,
                Segment::Zstd { .. } => {
                    let within = usize::try_from(within).unwrap_or(usize::MAX);
                    let content = self.frame(index, stored_at, segment)?;
                    buf[done..done + n].copy_from_slice(&content[within..within + n]);
                }
                // Nothing of a tree is in the expansion: never the segment of a position.
                Segment::Verity { .. } => {
                    return Err(DeltaError::OldFrame {
                        offset: stored_at,
                        what: "a position in the old verity tree".into(),
                    })
                }
            }
            done += n;
        }
        Ok(())
    }

    /// The content of old frame `index`, decompressed unless it is the one in hand.
    fn frame(
        &self,
        index: usize,
        stored_at: u64,
        segment: Segment,
    ) -> Result<std::cell::Ref<'_, Vec<u8>>, DeltaError> {
        let failed = |what: String| DeltaError::OldFrame {
            offset: stored_at,
            what,
        };
        if self.frame.borrow().index != Some(index) {
            let mut frame = self.frame.borrow_mut();
            let frame = &mut *frame;
            frame.index = None;
            let stored = usize::try_from(segment.stored()).unwrap_or(usize::MAX);
            let expanded = usize::try_from(segment.expanded()).unwrap_or(usize::MAX);
            frame.stored.resize(stored, 0);
            self.image
                .read_exact_at(&mut frame.stored, stored_at)
                .map_err(|e| failed(e.to_string()))?;
            let decompressor = match &mut frame.decompressor {
                Some(d) => d,
                none => {
                    none.insert(zstd::bulk::Decompressor::new().map_err(|e| failed(e.to_string()))?)
                }
            };
            frame.content.clear();
            frame.content.reserve_exact(expanded);
            let got = decompressor
                .decompress_to_buffer(&frame.stored[..], &mut frame.content)
                .map_err(|e| failed(e.to_string()))?;
            if got != expanded {
                return Err(failed(format!(
                    "{got} bytes of content, the delta says {expanded}"
                )));
            }
            frame.index = Some(index);
        }
        Ok(std::cell::Ref::map(self.frame.borrow(), |f| &f.content))
    }
}

/// The new image, filled in expanded order and written in image order.
struct NewSink<'a> {
    segments: &'a [Segment],
    /// Current segment.
    index: usize,
    /// Expanded bytes of the current segment received so far.
    filled: u64,
    /// Image offset of the current segment.
    offset: u64,
    /// Expanded bytes received in all.
    made: u64,
    /// Content of the current frame, and its compressed form (both reused).
    frame: Vec<u8>,
    compressed: Vec<u8>,
    out: &'a mut dyn WriteAt,
    hash: Sha256,
    frames: u64,
    /// The new verity tree's builder, the image offset where its data ends, and the data
    /// block being gathered, while the data before the tree is written.
    tree: Option<(TreeBuilder, u64, Vec<u8>)>,
}

impl<'a> NewSink<'a> {
    fn new(segments: &'a [Segment], out: &'a mut dyn WriteAt) -> Self {
        NewSink {
            segments,
            index: 0,
            filled: 0,
            offset: 0,
            made: 0,
            frame: Vec::new(),
            compressed: Vec::new(),
            out,
            hash: Sha256::new(),
            frames: 0,
            tree: segments.iter().find_map(|s| match *s {
                Segment::Verity {
                    data_blocks, salt, ..
                } => Some((
                    TreeBuilder::new(salt),
                    data_blocks * BLOCK_SIZE_U64,
                    Vec::with_capacity(BLOCK_SIZE),
                )),
                _ => None,
            }),
        }
    }

    fn remaining(&self) -> u64 {
        sink_total(self.segments) - self.made
    }

    fn write(&mut self, bytes: &[u8], at: u64) -> Result<(), DeltaError> {
        self.out
            .write_all_at(bytes, at)
            .map_err(|source| DeltaError::Io {
                what: "writing the new image",
                source,
            })?;
        self.hash.update(bytes);
        // Bytes before the tree are its data (the decoder checked that they cover it).
        if let Some((builder, data_end, block)) = &mut self.tree {
            if at < *data_end {
                for piece in bytes.chunks(BLOCK_SIZE) {
                    let mut piece = piece;
                    while !piece.is_empty() {
                        let n = (BLOCK_SIZE - block.len()).min(piece.len());
                        block.extend_from_slice(&piece[..n]);
                        piece = &piece[n..];
                        if let Ok(full) = <&[u8; BLOCK_SIZE]>::try_from(&block[..]) {
                            builder.push(full);
                            block.clear();
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the verity tree of the data written so far, when the tree is next.
    fn write_tree(&mut self) -> Result<(), DeltaError> {
        while let Some(&Segment::Verity { stored, .. }) = self.segments.get(self.index) {
            let Some((builder, data_end, _)) = self.tree.take() else {
                return Ok(());
            };
            // The tree covers exactly the data before it: rebuilt frames of another
            // length have moved it.
            if self.offset != data_end {
                return Err(DeltaError::Recompress {
                    what: "the data before the verity tree",
                    expected: data_end,
                    actual: self.offset,
                });
            }
            let (tree, _) = builder.finish();
            if tree.len() as u64 != stored {
                return Err(DeltaError::Recompress {
                    what: "the verity tree",
                    expected: stored,
                    actual: tree.len() as u64,
                });
            }
            self.write(&tree, self.offset)?;
            self.offset += stored;
            self.index += 1;
        }
        Ok(())
    }

    fn push(&mut self, mut data: &[u8]) -> Result<(), DeltaError> {
        while !data.is_empty() {
            let Some(&segment) = self.segments.get(self.index) else {
                return Ok(()); // remaining() keeps callers from getting here
            };
            let want = segment.expanded() - self.filled;
            let n = usize::try_from(want).unwrap_or(usize::MAX).min(data.len());
            let (now, rest) = data.split_at(n);
            match segment {
                Segment::Raw { .. } => self.write(now, self.offset + self.filled)?,
                Segment::Zstd { expanded, .. } => {
                    // Exactly one block: growing by doubling would overshoot it.
                    self.frame
                        .reserve_exact(expanded as usize - self.frame.len());
                    self.frame.extend_from_slice(now);
                }
                // `write_tree` steps over a tree as soon as it is next.
                Segment::Verity { .. } => {
                    return Err(DeltaError::Malformed {
                        offset: self.offset,
                        what: "expanded bytes for a verity tree".into(),
                    })
                }
            }
            self.filled += n as u64;
            self.made += n as u64;
            data = rest;
            if self.filled == segment.expanded() {
                if let Segment::Zstd {
                    level, expanded, ..
                } = segment
                {
                    let mut compressed = std::mem::take(&mut self.compressed);
                    compress_into(&self.frame, level, &mut compressed);
                    if compressed.is_empty() {
                        return Err(DeltaError::Recompress {
                            what: "a frame (zstd failed)",
                            expected: u64::from(expanded),
                            actual: 0,
                        });
                    }
                    self.write(&compressed, self.offset)?;
                    self.offset += compressed.len() as u64;
                    self.compressed = compressed;
                    self.frame.clear();
                    self.frames += 1;
                } else {
                    self.offset += segment.stored();
                }
                self.index += 1;
                self.filled = 0;
                self.write_tree()?;
            }
        }
        Ok(())
    }

    /// The result once every segment is complete; otherwise the expanded bytes made.
    fn finish(self) -> Result<Applied, u64> {
        if self.index < self.segments.len() {
            return Err(self.made);
        }
        Ok(Applied {
            written: self.offset,
            sha256: self.hash.finalize().into(),
            frames: self.frames,
        })
    }
}
