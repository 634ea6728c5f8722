//! Roughtime's tag-value messages (IETF draft 07, section 5): a count of tags, the offsets
//! of every value after the first, the tags (four bytes, read as little-endian `u32` and
//! strictly increasing), then the values, each a multiple of four bytes. A message on the
//! wire may carry the `ROUGHTIM` header: eight magic bytes and the message's length.
//!
//! Rules this module keeps:
//! - Parsing never panics and never reads out of bounds: every count, offset and length is
//!   checked against the bytes there are, and offsets must not go backwards.
//! - A message with a tag twice or out of order is refused: two readers could otherwise
//!   disagree about which value counts.

use crate::Error;

/// The eight bytes a framed message starts with: "ROUGHTIM".
pub const MAGIC: [u8; 8] = *b"ROUGHTIM";

/// A tag: four ASCII bytes, `NUL`-padded ("SIG\0"), ordered as a little-endian `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag(pub [u8; 4]);

#[allow(missing_docs)] // The protocol's own names (draft 07, section 5.2).
impl Tag {
    pub const VER: Tag = Tag(*b"VER\0");
    pub const NONC: Tag = Tag(*b"NONC");
    pub const PAD: Tag = Tag(*b"PAD\0");
    pub const SIG: Tag = Tag(*b"SIG\0");
    pub const SREP: Tag = Tag(*b"SREP");
    pub const CERT: Tag = Tag(*b"CERT");
    pub const DELE: Tag = Tag(*b"DELE");
    pub const PUBK: Tag = Tag(*b"PUBK");
    pub const MINT: Tag = Tag(*b"MINT");
    pub const MAXT: Tag = Tag(*b"MAXT");
    pub const ROOT: Tag = Tag(*b"ROOT");
    pub const MIDP: Tag = Tag(*b"MIDP");
    pub const RADI: Tag = Tag(*b"RADI");
    pub const INDX: Tag = Tag(*b"INDX");
    pub const PATH: Tag = Tag(*b"PATH");

    fn order(self) -> u32 {
        u32::from_le_bytes(self.0)
    }

    /// The tag as text, `NUL`s left out, for error messages.
    pub fn name(self) -> String {
        self.0
            .iter()
            .filter(|b| **b != 0)
            .map(|b| char::from(*b))
            .collect()
    }
}

/// A parsed message: its tags and values, borrowed from the bytes it was read from.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    fields: Vec<(Tag, &'a [u8])>,
}

impl<'a> Message<'a> {
    /// Reads a message, with or without the `ROUGHTIM` header; `what` names it in errors.
    pub fn parse(bytes: &'a [u8], what: &'static str) -> Result<Self, Error> {
        let bad = |reason: String| Error::Malformed { what, reason };
        let body = match bytes.strip_prefix(&MAGIC[..]) {
            Some(rest) => {
                let (len, body) = split_u32(rest).ok_or_else(|| bad("header cut short".into()))?;
                if usize::try_from(len).ok() != Some(body.len()) {
                    return Err(bad(format!(
                        "header says {len} bytes, {} follow",
                        body.len()
                    )));
                }
                body
            }
            None => bytes,
        };
        if !body.len().is_multiple_of(4) {
            return Err(bad(format!("{} bytes, not a multiple of 4", body.len())));
        }
        let (count, _) = split_u32(body).ok_or_else(|| bad("no tag count".into()))?;
        let count = usize::try_from(count).map_err(|_| bad("tag count too large".into()))?;
        // 4 (count) + 4 per offset after the first + 4 per tag.
        let header = count
            .checked_mul(8)
            .filter(|h| *h <= body.len())
            .ok_or_else(|| bad(format!("{count} tags do not fit in {} bytes", body.len())))?;
        if count == 0 {
            return Ok(Message { fields: Vec::new() });
        }
        let word = |i: usize| {
            let at = 4 * i;
            u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]])
        };
        let values = &body[header..];
        let mut fields = Vec::with_capacity(count);
        let mut start = 0usize;
        let mut previous: Option<Tag> = None;
        for i in 0..count {
            let end = if i + 1 == count {
                values.len()
            } else {
                usize::try_from(word(1 + i)).unwrap_or(usize::MAX)
            };
            if end < start || end > values.len() || !end.is_multiple_of(4) {
                return Err(bad(format!(
                    "value {i} ends at {end}, outside {start}..={}",
                    values.len()
                )));
            }
            let tag = Tag(word(count + i).to_le_bytes());
            if let Some(p) = previous {
                if tag.order() <= p.order() {
                    return Err(bad(format!(
                        "tag {} after {}: tags must be unique and increasing",
                        tag.name(),
                        p.name()
                    )));
                }
            }
            previous = Some(tag);
            fields.push((tag, &values[start..end]));
            start = end;
        }
        Ok(Message { fields })
    }

    /// The value of `tag`, if the message has it.
    pub fn get(&self, tag: Tag) -> Option<&'a [u8]> {
        self.fields.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }

    /// The value of `tag`, which the message must have; `what` names the message.
    pub fn require(&self, tag: Tag, what: &'static str) -> Result<&'a [u8], Error> {
        self.get(tag).ok_or(Error::Missing {
            what,
            tag: tag.name(),
        })
    }
}

fn split_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head), rest))
}

/// Writes a message of `fields` (sorted here) without the header.
pub fn encode(fields: &[(Tag, &[u8])]) -> Vec<u8> {
    let mut fields = fields.to_vec();
    fields.sort_by_key(|(t, _)| t.order());
    let count = u32::try_from(fields.len()).unwrap_or(u32::MAX);
    let mut out = count.to_le_bytes().to_vec();
    let mut offset = 0u32;
    for (_, value) in fields.iter().take(fields.len().saturating_sub(1)) {
        offset = offset.saturating_add(u32::try_from(value.len()).unwrap_or(u32::MAX));
        out.extend_from_slice(&offset.to_le_bytes());
    }
    for (tag, _) in &fields {
        out.extend_from_slice(&tag.0);
    }
    for (_, value) in &fields {
        out.extend_from_slice(value);
    }
    out
}

/// `body` framed with the `ROUGHTIM` header.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_message_reads_back_as_written_with_its_tags_sorted() {
        let body = encode(&[(Tag::NONC, &[7; 32]), (Tag::VER, &[1, 0, 0, 0x80])]);
        let framed = frame(&body);
        let m = Message::parse(&framed, "test").unwrap();
        assert_eq!(m.get(Tag::NONC), Some(&[7u8; 32][..]));
        assert_eq!(m.get(Tag::VER), Some(&[1, 0, 0, 0x80][..]));
        assert_eq!(m.get(Tag::SIG), None);
        // Unframed too.
        assert!(Message::parse(&body, "test")
            .unwrap()
            .get(Tag::NONC)
            .is_some());
    }

    #[test]
    fn malformed_messages_are_refused_with_where_and_what() {
        let body = encode(&[(Tag::NONC, &[7; 32]), (Tag::VER, &[1, 0, 0, 0x80])]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "no tag count"),
            (body[..body.len() - 2].to_vec(), "not a multiple of 4"),
            (
                {
                    let mut b = body.clone();
                    b[0] = 200;
                    b
                },
                "200 tags do not fit",
            ),
            // The offset of the second value points past the end.
            (
                {
                    let mut b = body.clone();
                    b[4] = 0xf0;
                    b
                },
                "outside",
            ),
            // The tags swapped: out of order.
            (
                {
                    let mut b = body.clone();
                    b.swap(8, 12);
                    b.swap(9, 13);
                    b.swap(10, 14);
                    b.swap(11, 15);
                    b
                },
                "unique and increasing",
            ),
            (
                {
                    let mut f = frame(&body);
                    f[8] = 1;
                    f
                },
                "header says 1 bytes",
            ),
        ];
        for (bytes, want) in cases {
            let e = Message::parse(&bytes, "test").unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
            assert!(e.contains("test"), "{e}");
        }
    }
}
