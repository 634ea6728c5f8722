//! The mix bytes of bsdiff, stored sparse.
//!
//! bsdiff's mix bytes are the new bytes minus the old ones at the matched place: zero almost
//! everywhere, non-zero where a moved reference changed. bzip2 compresses that stream well,
//! zstd less so; stored as the positions of the non-zero bytes and their values, zstd does
//! better than bzip2 on the whole stream (`BENCHMARKS.md` section 5).
//!
//! The non-zero bytes ("changes") are numbered across all records' mix bytes, `D` below,
//! in order. They travel in groups of at most [`GROUP`]: a count `n` (u32), then the gap
//! before each change (its position in `D` minus the previous one's minus 1; the first gap
//! counts from position 0) as four byte planes, lowest byte first (`n` bytes each), then the
//! `n` values. The first group follows the header; each next group follows, in the body,
//! the record during whose mix bytes the previous group's last change was used. The reader
//! loads it at that same moment, so one zstd stream carries both in order.

use std::io::Read;

use crate::format::Body;
use crate::DeltaError;

/// Changes per group: the device holds one group at once, 5 bytes per change.
pub(crate) const GROUP: usize = 8 * 1024;

/// One non-zero mix byte: its position in `D` and its value.
pub(crate) type Change = (u64, u8);

/// Writes one group; `next` is the lowest position the first change may have (the previous
/// change's + 1). Returns the next `next`.
pub(crate) fn encode_group(
    changes: &[Change],
    mut next: u64,
    out: &mut Vec<u8>,
) -> Result<u64, DeltaError> {
    let mut gaps = Vec::with_capacity(changes.len());
    for &(pos, _) in changes {
        let bad = |what: &str| DeltaError::Malformed {
            offset: 0,
            what: format!("the change at {pos} {what}"),
        };
        let gap = pos
            .checked_sub(next)
            .ok_or_else(|| bad("is not after the previous one"))?;
        let gap = u32::try_from(gap).map_err(|_| bad("is over 4 GiB after the previous one"))?;
        gaps.push(gap);
        next = pos + 1;
    }
    out.extend(
        u32::try_from(changes.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for plane in 0..4 {
        out.extend(gaps.iter().map(|g| g.to_le_bytes()[plane]));
    }
    out.extend(changes.iter().map(|&(_, v)| v));
    Ok(next)
}

/// The reader's side: the group in hand as read (gap planes and values, 5 bytes per
/// change), decoded one change at a time, and the next group loaded from the body as soon
/// as this one is used up.
pub(crate) struct Changes {
    /// Changes announced in the header.
    total: u64,
    /// Changes loaded so far.
    loaded: u64,
    /// The group in hand: four gap planes then the values, `n` bytes each.
    raw: Vec<u8>,
    n: usize,
    /// Index in the group of the next unused change, and its position (if any left).
    at: usize,
    pos: u64,
    /// Position after the last change decoded.
    next: u64,
}

impl Changes {
    /// Loads the first group, if any.
    pub fn start<R: Read>(total: u64, body: &mut Body<R>) -> Result<Self, DeltaError> {
        let mut changes = Changes {
            total,
            loaded: 0,
            raw: Vec::new(),
            n: 0,
            at: 0,
            pos: 0,
            next: 0,
        };
        if total > 0 {
            changes.load(body)?;
        }
        Ok(changes)
    }

    fn load<R: Read>(&mut self, body: &mut Body<R>) -> Result<(), DeltaError> {
        let mut count = [0u8; 4];
        body.bytes(&mut count)?;
        let n = u32::from_le_bytes(count);
        let left = self.total - self.loaded;
        if n == 0 || n as usize > GROUP || u64::from(n) > left {
            return Err(body.malformed(format!(
                "a group of {n} changes ({left} left, at most {GROUP} per group)"
            )));
        }
        self.n = n as usize;
        self.raw.resize(5 * self.n, 0);
        body.bytes(&mut self.raw)?;
        if let Some(zero) = self.raw[4 * self.n..].iter().position(|v| *v == 0) {
            return Err(body.malformed(format!("change {zero} of a group has value 0")));
        }
        self.loaded += u64::from(n);
        self.at = 0;
        self.pos = self.decode(0);
        Ok(())
    }

    /// Position of change `i` of the group, given the one before it ended at `self.next`.
    fn decode(&mut self, i: usize) -> u64 {
        let n = self.n;
        let r = &self.raw;
        let gap = u32::from_le_bytes([r[i], r[n + i], r[2 * n + i], r[3 * n + i]]);
        let pos = self.next + u64::from(gap);
        self.next = pos + 1;
        pos
    }

    /// Fills `buf` with the mix bytes at `D` positions `from..from + buf.len()`. `from` is
    /// where the previous fill ended.
    pub fn fill<R: Read>(
        &mut self,
        from: u64,
        buf: &mut [u8],
        body: &mut Body<R>,
    ) -> Result<(), DeltaError> {
        buf.fill(0);
        let end = from + buf.len() as u64;
        while self.at < self.n && self.pos < end {
            // Positions only grow, so a change is never before `from`.
            let index = usize::try_from(self.pos - from).unwrap_or(usize::MAX);
            buf[index] = self.raw[4 * self.n + self.at];
            self.at += 1;
            if self.at < self.n {
                self.pos = self.decode(self.at);
            } else if self.loaded < self.total {
                self.load(body)?;
            }
        }
        Ok(())
    }

    /// Every announced change was loaded and used.
    pub fn all_used(&self) -> bool {
        self.loaded == self.total && self.at == self.n
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
    use super::*;

    #[test]
    fn groups_round_trip_across_fills() {
        let changes: Vec<Change> = (0..40_000u64)
            .map(|i| (i * 8 + (i % 7), (i % 255) as u8 + 1))
            .collect();
        let mut body = Vec::new();
        let mut next = 0;
        for group in changes.chunks(GROUP) {
            next = encode_group(group, next, &mut body).unwrap();
        }
        let mut reader = Body::new(&body[..]);
        let mut state = Changes::start(changes.len() as u64, &mut reader).unwrap();
        let d_len = changes.last().unwrap().0 + 10;
        let mut d = Vec::new();
        let mut from = 0;
        while from < d_len {
            let mut buf = vec![0u8; 1000.min((d_len - from) as usize)];
            state.fill(from, &mut buf, &mut reader).unwrap();
            d.extend(buf);
            from = d.len() as u64;
        }
        assert!(state.all_used());
        let expected = {
            let mut e = vec![0u8; d_len as usize];
            for (p, v) in &changes {
                e[*p as usize] = *v;
            }
            e
        };
        assert_eq!(d, expected);
    }

    #[test]
    fn a_group_larger_than_announced_is_refused() {
        let mut body = Vec::new();
        encode_group(&[(5, 1), (9, 2)], 0, &mut body).unwrap();
        let Err(err) = Changes::start(1, &mut Body::new(&body[..])) else {
            panic!("accepted");
        };
        assert!(
            err.to_string().contains("a group of 2 changes (1 left"),
            "{err}"
        );
    }
}
