//! Netlink framing: `nlmsghdr`, `nfgenmsg` and `nlattr`, written and read.
//!
//! Rules this module keeps:
//! - Every length is computed from what was written, never passed in: a message or nest is
//!   opened, filled, then closed, and closing writes its length.
//! - Attributes are padded to 4 bytes; the length field excludes the padding (netlink(7)).
//! - Integers in nf_tables attributes are big-endian; register data (`cmp`, set keys) is
//!   written by the caller in the byte order the kernel compares.
//! - Reading never trusts a length: a short or overrunning header ends the walk with
//!   [`WireError`].

use super::consts::{NFNETLINK_V0, NLA_F_NESTED, NLA_TYPE_MASK};

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of `struct nfgenmsg`.
pub const NFGENMSG_LEN: usize = 4;
/// Size of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;

/// Rounds up to netlink's 4-byte alignment.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// A buffer of netlink messages being written.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

/// An open message or nest: where its header starts.
#[derive(Debug, Clone, Copy)]
#[must_use = "close it with end_msg or end_nest"]
pub struct Mark(usize);

impl Writer {
    /// An empty buffer.
    pub fn new() -> Self {
        Writer::default()
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Opens a message: `nlmsghdr` then `nfgenmsg { family, version 0, res_id }`.
    pub fn begin_msg(&mut self, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Mark {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by end_msg
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel is 0
        self.buf.push(family);
        self.buf.push(NFNETLINK_V0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        Mark(start)
    }

    /// Closes a message, writing its length.
    pub fn end_msg(&mut self, m: Mark) {
        self.pad();
        self.set_u32_at(m.0, self.buf.len() - m.0);
    }

    /// One attribute with a raw payload.
    pub fn attr(&mut self, ty: u16, payload: &[u8]) {
        let len = NLA_HDRLEN + payload.len();
        self.put_nla_header(len, ty);
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    /// A NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) {
        let len = NLA_HDRLEN + s.len() + 1;
        self.put_nla_header(len, ty);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    /// A big-endian `u32` attribute.
    pub fn attr_be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    /// A big-endian `u64` attribute.
    pub fn attr_be64(&mut self, ty: u16, v: u64) {
        self.attr(ty, &v.to_be_bytes());
    }

    /// Opens a nested attribute (flagged `NLA_F_NESTED`).
    pub fn begin_nest(&mut self, ty: u16) -> Mark {
        let start = self.buf.len();
        self.put_nla_header(0, ty | NLA_F_NESTED);
        Mark(start)
    }

    /// Closes a nested attribute, writing its length.
    pub fn end_nest(&mut self, m: Mark) {
        let len = self.buf.len() - m.0;
        let Ok(len16) = u16::try_from(len) else {
            // An attribute over 64 KiB cannot be framed; leave 0 so the kernel rejects the
            // message instead of misreading it. Our objects stay far below this.
            return;
        };
        self.buf[m.0..m.0 + 2].copy_from_slice(&len16.to_ne_bytes());
    }

    fn put_nla_header(&mut self, len: usize, ty: u16) {
        let len16 = u16::try_from(len).unwrap_or(0);
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
    }

    fn pad(&mut self) {
        let aligned = align(self.buf.len());
        self.buf.resize(aligned, 0);
    }

    fn set_u32_at(&mut self, at: usize, v: usize) {
        let v = u32::try_from(v).unwrap_or(0);
        self.buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
}

/// A malformed message from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed netlink {what} at byte {offset}")]
pub struct WireError {
    /// What was being read.
    pub what: &'static str,
    /// Where, in the buffer being walked.
    pub offset: usize,
}

/// One received netlink message.
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// Everything after the `nlmsghdr`.
    pub payload: &'a [u8],
}

/// Splits a datagram into netlink messages.
pub fn messages(buf: &[u8]) -> Result<Vec<Msg<'_>>, WireError> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = read_u32_ne(buf, off) as usize;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return Err(WireError {
                what: "message header",
                offset: off,
            });
        }
        out.push(Msg {
            ty: read_u16_ne(buf, off + 4),
            flags: read_u16_ne(buf, off + 6),
            seq: read_u32_ne(buf, off + 8),
            payload: &buf[off + NLMSG_HDRLEN..off + len],
        });
        off += align(len);
    }
    Ok(out)
}

/// Walks the attributes in `buf`, yielding `(type without flags, payload)`.
pub fn attrs(buf: &[u8]) -> Result<Vec<(u16, &[u8])>, WireError> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLA_HDRLEN <= buf.len() {
        let len = usize::from(read_u16_ne(buf, off));
        if len < NLA_HDRLEN || off + len > buf.len() {
            return Err(WireError {
                what: "attribute",
                offset: off,
            });
        }
        let ty = read_u16_ne(buf, off + 2) & NLA_TYPE_MASK;
        out.push((ty, &buf[off + NLA_HDRLEN..off + len]));
        off += align(len);
    }
    Ok(out)
}

/// The first attribute of type `ty`, if any.
pub fn find<'a>(attrs: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    attrs.iter().find(|(t, _)| *t == ty).map(|(_, p)| *p)
}

/// A big-endian `u64` payload.
pub fn be64(p: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(p.get(..8)?.try_into().ok()?))
}

/// A big-endian `u32` payload.
pub fn be32(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}

/// A NUL-terminated string payload.
pub fn string(p: &[u8]) -> Option<&str> {
    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
    std::str::from_utf8(&p[..end]).ok()
}

fn read_u16_ne(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([buf[at], buf[at + 1]])
}

/// Native-endian `u32` at `at`; the caller has checked the bounds.
pub fn read_u32_ne(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_with_nest_and_padding() {
        let mut w = Writer::new();
        let m = w.begin_msg(0x0a00, 0x0005, 7, 1, 0);
        w.attr_str(1, "abc"); // 4 + 4 bytes: exactly aligned
        let n = w.begin_nest(2);
        w.attr(1, &[0xaa]); // 5 bytes, padded to 8
        w.end_nest(n);
        w.end_msg(m);
        let b = w.as_bytes();
        let mut want = Vec::new();
        want.extend_from_slice(&40u32.to_ne_bytes());
        want.extend_from_slice(&0x0a00u16.to_ne_bytes());
        want.extend_from_slice(&5u16.to_ne_bytes());
        want.extend_from_slice(&7u32.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&[1, 0, 0, 0]); // nfgenmsg: inet, v0, res_id 0
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(b"abc\0");
        want.extend_from_slice(&12u16.to_ne_bytes()); // nest: header + 5-byte attr + pad
        want.extend_from_slice(&(2u16 | 0x8000).to_ne_bytes());
        want.extend_from_slice(&5u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(&[0xaa, 0, 0, 0]);
        assert_eq!(b, &want[..]);

        let msgs = messages(b).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].ty, msgs[0].seq), (0x0a00, 7));
        let a = attrs(&msgs[0].payload[NFGENMSG_LEN..]).unwrap();
        assert_eq!(string(find(&a, 1).unwrap()), Some("abc"));
        let inner = attrs(find(&a, 2).unwrap()).unwrap();
        assert_eq!(inner, vec![(1, &[0xaa][..])]);
    }

    #[test]
    fn overrunning_lengths_are_errors() {
        let mut bad = 40u32.to_ne_bytes().to_vec();
        bad.extend_from_slice(&[0; 12]);
        assert!(messages(&bad).is_err());
        assert!(attrs(&[9, 0, 1, 0, 0]).is_err());
        assert!(attrs(&[2, 0, 1, 0]).is_err());
    }
}
