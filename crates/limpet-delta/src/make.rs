//! The publisher's side: expand both images, bsdiff them, compress, and check the result by
//! applying it.

use std::io::Write;

use crate::format::Header;
use crate::layout::{expand, expand_old, scan, Segment};
use crate::sparse::{encode_group, Change, GROUP};
use crate::{apply, DeltaError, MAGIC, WINDOW_LOG};

/// zstd level of the delta's body.
const BODY_LEVEL: i32 = 22;

/// A delta and what went into it.
#[derive(Debug, Clone)]
pub struct Made {
    /// The delta file.
    pub delta: Vec<u8>,
    /// Frames of the old image that were expanded.
    pub old_frames: usize,
    /// Frames of the new image that were expanded (the device recompresses these).
    pub new_frames: usize,
    /// Length of the new image expanded.
    pub new_expanded: u64,
}

/// Makes the delta that turns `old` into `new`, and checks it: applying it to `old` must
/// give `new` byte for byte, with this process's zstd.
pub fn make(old: &[u8], new: &[u8]) -> Result<Made, DeltaError> {
    // The old side as the device will find it; the new side with what it can rebuild.
    let old_segments = scan(old).map_err(|source| DeltaError::Io {
        what: "scanning the old image",
        source,
    })?;
    let old_bytes = expand_old(old, &old_segments)
        .map_err(|(offset, what)| DeltaError::OldFrame { offset, what })?;
    let new_expanded = expand(new);
    let mut header = Header {
        old_len: old.len() as u64,
        new_len: new.len() as u64,
        new: new_expanded.segments.clone(),
        changes: 0,
    };
    let mut patch = Vec::new();
    bsdiff::diff(&old_bytes, &new_expanded.bytes, &mut patch).map_err(|source| DeltaError::Io {
        what: "bsdiff",
        source,
    })?;
    let records = parse_bsdiff(&patch)?;
    let changes: Vec<Change> = records
        .iter()
        .flat_map(|r| r.mix.iter())
        .enumerate()
        .filter(|(_, v)| **v != 0)
        .map(|(pos, v)| (pos as u64, *v))
        .collect();
    header.changes = changes.len() as u64;

    let mut body = Vec::new();
    header.encode(&mut body);
    // Groups go where the reader loads them: the first after the header, each next one
    // after the record whose mix bytes use up the one before (see `sparse`).
    let mut groups = changes.chunks(GROUP);
    let mut next = 0;
    let mut loaded_until = 0; // changes[..loaded_until] are in the body
    if let Some(group) = groups.next() {
        next = encode_group(group, next, &mut body)?;
        loaded_until = group.len();
    }
    let mut d = 0u64; // position in D of the record's first mix byte
    let mut used = 0; // changes used so far
    for record in &records {
        body.extend((record.mix.len() as u64).to_le_bytes());
        body.extend((record.copy.len() as u64).to_le_bytes());
        body.extend(record.seek);
        let end = d + record.mix.len() as u64;
        while used < changes.len() && changes[used].0 < end {
            used += 1;
            if used == loaded_until {
                if let Some(group) = groups.next() {
                    next = encode_group(group, next, &mut body)?;
                    loaded_until += group.len();
                }
            }
        }
        body.extend_from_slice(record.copy);
        d = end;
    }

    let mut delta = MAGIC.to_vec();
    let mut encoder =
        zstd::stream::write::Encoder::new(&mut delta, BODY_LEVEL).map_err(DeltaError::Zstd)?;
    encoder
        .set_pledged_src_size(Some(body.len() as u64))
        .map_err(DeltaError::Zstd)?;
    encoder.window_log(WINDOW_LOG).map_err(DeltaError::Zstd)?;
    encoder.include_checksum(true).map_err(DeltaError::Zstd)?;
    encoder.write_all(&body).map_err(DeltaError::Zstd)?;
    encoder.finish().map_err(DeltaError::Zstd)?;

    let mut check = Vec::with_capacity(new.len());
    let applied = apply(&delta, old, &mut check)?;
    if check != new {
        return Err(DeltaError::Malformed {
            offset: 0,
            what: format!(
                "applying the new delta gave {} bytes that differ from the new image",
                applied.written
            ),
        });
    }
    let frames = |s: &[Segment]| {
        s.iter()
            .filter(|s| matches!(s, Segment::Zstd { .. }))
            .count()
    };
    Ok(Made {
        old_frames: frames(&old_segments),
        new_frames: frames(&header.new),
        new_expanded: new_expanded.bytes.len() as u64,
        delta,
    })
}

/// One record of bsdiff's output: its mix bytes, its copied bytes, and its seek field as
/// written (sign and magnitude, kept as is).
struct BsdiffRecord<'a> {
    mix: &'a [u8],
    copy: &'a [u8],
    seek: [u8; 8],
}

/// Splits the `bsdiff` crate's output (records of mix, copy, seek followed by the mix and
/// copy bytes) into records.
fn parse_bsdiff(patch: &[u8]) -> Result<Vec<BsdiffRecord<'_>>, DeltaError> {
    let bad = |what: &str| DeltaError::Malformed {
        offset: 0,
        what: format!("bsdiff's output: {what}"),
    };
    let mut records = Vec::new();
    let mut rest = patch;
    while !rest.is_empty() {
        let (head, tail) = rest
            .split_at_checked(24)
            .ok_or_else(|| bad("a cut record"))?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&head[i * 8..i * 8 + 8]);
            w
        };
        let len = |w: [u8; 8]| usize::try_from(u64::from_le_bytes(w)).map_err(|_| bad("a length"));
        let (mix_len, copy_len) = (len(word(0))?, len(word(1))?);
        let (mix, tail) = tail
            .split_at_checked(mix_len)
            .ok_or_else(|| bad("cut mix bytes"))?;
        let (copy, tail) = tail
            .split_at_checked(copy_len)
            .ok_or_else(|| bad("cut copy bytes"))?;
        records.push(BsdiffRecord {
            mix,
            copy,
            seek: word(2),
        });
        rest = tail;
    }
    Ok(records)
}
