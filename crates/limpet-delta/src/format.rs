//! The delta's body: header, segment tables and bsdiff records, read and written.

use std::io::{self, Read};

use crate::layout::Segment;
use crate::{DeltaError, MAX_FRAME};

/// Segments in one table at most: a 1 TiB image of 128 KiB blocks has 2^23.
const MAX_SEGMENTS: u32 = 1 << 24;

/// The body's fixed part. The old image's segments are not in it: both sides find them
/// with [`crate::layout::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub old_len: u64,
    pub new_len: u64,
    /// The new image's segments. A frame's `stored` is not sent (0 here): it is whatever
    /// compressing its content again gives, which the final length checks.
    pub new: Vec<Segment>,
    /// Non-zero bytes in the concatenated mix bytes of all records.
    pub changes: u64,
}

impl Header {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend(self.old_len.to_le_bytes());
        out.extend(self.new_len.to_le_bytes());
        out.extend(count(&self.new).to_le_bytes());
        for segment in &self.new {
            let (kind, level, stored, expanded) = match *segment {
                Segment::Raw { len } => (0u8, 0i32, len, 0u32),
                Segment::Zstd {
                    level, expanded, ..
                } => (1, level, 0, expanded),
                Segment::Verity { stored, .. } => (2, 0, stored, 0),
            };
            out.push(kind);
            out.extend(level.to_le_bytes());
            out.extend(stored.to_le_bytes());
            out.extend(expanded.to_le_bytes());
            if let Segment::Verity {
                data_blocks, salt, ..
            } = *segment
            {
                out.extend(data_blocks.to_le_bytes());
                out.extend(salt);
            }
        }
        out.extend(self.changes.to_le_bytes());
    }

    pub fn decode<R: Read>(body: &mut Body<R>) -> Result<Self, DeltaError> {
        let old_len = body.u64()?;
        let new_len = body.u64()?;
        let new_count = body.count()?;
        let new = body.segments(new_count, new_len)?;
        let changes = body.u64()?;
        Ok(Header {
            old_len,
            new_len,
            new,
            changes,
        })
    }
}

fn count(segments: &[Segment]) -> u32 {
    u32::try_from(segments.len()).unwrap_or(u32::MAX)
}

/// One bsdiff record's lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// Bytes added to the old expanded image.
    pub mix: u64,
    /// New bytes copied as they are.
    pub copy: u64,
    /// Move of the old cursor after the record.
    pub seek: i64,
}

/// The decompressed body, read with its offset for error messages.
pub(crate) struct Body<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> Body<R> {
    pub fn new(inner: R) -> Self {
        Body { inner, offset: 0 }
    }

    pub fn malformed(&self, what: impl Into<String>) -> DeltaError {
        DeltaError::Malformed {
            offset: self.offset,
            what: what.into(),
        }
    }

    /// Fills `buf`; the body ending first is malformed.
    pub fn bytes(&mut self, buf: &mut [u8]) -> Result<(), DeltaError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(self.malformed("the body ends early"))
            }
            Err(e) => Err(DeltaError::Zstd(e)),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DeltaError> {
        let mut buf = [0; N];
        self.bytes(&mut buf)?;
        Ok(buf)
    }

    pub fn u64(&mut self) -> Result<u64, DeltaError> {
        self.array().map(u64::from_le_bytes)
    }

    fn count(&mut self) -> Result<u32, DeltaError> {
        let n = u32::from_le_bytes(self.array()?);
        if n > MAX_SEGMENTS {
            return Err(self.malformed(format!("{n} segments (at most {MAX_SEGMENTS})")));
        }
        Ok(n)
    }

    fn segments(&mut self, count: u32, image_len: u64) -> Result<Vec<Segment>, DeltaError> {
        let mut segments = Vec::new();
        // Bytes of raw runs and the tree: the frames' share is known only once rebuilt.
        let mut fixed: u64 = 0;
        let mut trees = 0;
        for _ in 0..count {
            let kind = self.array::<1>()?[0];
            let level = i32::from_le_bytes(self.array()?);
            let stored = u64::from_le_bytes(self.array()?);
            let expanded = u32::from_le_bytes(self.array()?);
            let segment = match kind {
                0 if level == 0 && expanded == 0 && stored > 0 => Segment::Raw { len: stored },
                1 if (1..=22).contains(&level)
                    && stored == 0
                    && expanded > 0
                    && expanded as usize <= MAX_FRAME =>
                {
                    Segment::Zstd {
                        level,
                        stored: 0,
                        expanded,
                    }
                }
                2 if level == 0 && expanded == 0 && trees == 0 => {
                    let data_blocks = u64::from_le_bytes(self.array()?);
                    let salt = self.array()?;
                    // The tree has its size; that it covers exactly the bytes before it is
                    // checked when it is written.
                    if data_blocks < 2 || stored != limpet_image::verity::tree_size(data_blocks) {
                        return Err(self.malformed(format!(
                            "a verity tree of {stored} bytes over {data_blocks} blocks"
                        )));
                    }
                    trees += 1;
                    Segment::Verity {
                        stored,
                        data_blocks,
                        salt,
                    }
                }
                _ => {
                    return Err(self.malformed(format!(
                        "segment: kind {kind}, level {level}, stored {stored}, expanded {expanded}"
                    )))
                }
            };
            fixed = fixed
                .checked_add(segment.stored())
                .filter(|f| *f <= image_len)
                .ok_or_else(|| {
                    self.malformed(format!(
                        "segments of more than the image's {image_len} bytes"
                    ))
                })?;
            segments.push(segment);
        }
        Ok(segments)
    }

    /// The next record, or `None` at the end of the body.
    pub fn record(&mut self) -> Result<Option<Record>, DeltaError> {
        let mut buf = [0u8; 24];
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(None),
                Ok(0) => return Err(self.malformed("a record is cut short")),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DeltaError::Zstd(e)),
            }
        }
        self.offset += 24;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&buf[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        // bsdiff's offtin: sign and magnitude, the sign in the top bit.
        let seek_raw = word(2);
        let magnitude = i64::try_from(seek_raw & !(1 << 63))
            .map_err(|_| self.malformed("seek out of range"))?;
        let seek = if seek_raw >> 63 == 1 {
            -magnitude
        } else {
            magnitude
        };
        Ok(Some(Record {
            mix: word(0),
            copy: word(1),
            seek,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_tables_are_refused() {
        let header = Header {
            old_len: 110,
            new_len: 40,
            new: vec![
                Segment::Raw { len: 10 },
                Segment::Zstd {
                    level: 9,
                    stored: 0,
                    expanded: 4096,
                },
            ],
            changes: 3,
        };
        let mut bytes = Vec::new();
        header.encode(&mut bytes);
        assert_eq!(bytes.len(), 20 + 2 * 17 + 8);
        assert_eq!(Header::decode(&mut Body::new(&bytes[..])).unwrap(), header);

        // Raw runs longer than the image.
        let mut long = header.clone();
        long.new_len = 9;
        let mut bytes = Vec::new();
        long.encode(&mut bytes);
        let err = Header::decode(&mut Body::new(&bytes[..])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed delta at body byte 37: segments of more than the image's 9 bytes"
        );

        // A frame larger than MAX_FRAME.
        let mut big = header;
        big.new[1] = Segment::Zstd {
            level: 9,
            stored: 0,
            expanded: (MAX_FRAME + 1) as u32,
        };
        let mut bytes = Vec::new();
        big.encode(&mut bytes);
        let err = Header::decode(&mut Body::new(&bytes[..])).unwrap_err();
        assert!(
            err.to_string()
                .contains("segment: kind 1, level 9, stored 0, expanded 1048577"),
            "{err}"
        );

        // Cut short.
        let err = Header::decode(&mut Body::new(&bytes[..30])).unwrap_err();
        assert!(err.to_string().contains("the body ends early"), "{err}");
    }
}
