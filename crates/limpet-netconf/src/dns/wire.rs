//! DNS message parsing and building (RFC 1035 §4), by hand with strict bounds.
//!
//! Only what the stub needs: the header, one question, and the answer section's A and
//! CNAME records. Authority and additional sections are never read, so nothing in them
//! (glue, EDNS options) can influence an answer. Compression pointers must point strictly
//! backwards, which rules out loops; on top of that a name may follow at most
//! [`MAX_POINTERS`] pointers.

use std::net::Ipv4Addr;

/// Header length.
pub const HEADER_LEN: usize = 12;
/// Most compression pointers followed in one name.
pub const MAX_POINTERS: usize = 16;
/// Longest name in wire form (RFC 1035 §2.3.4).
pub const MAX_WIRE_NAME: usize = 255;
/// Largest UDP reply without EDNS (RFC 1035 §4.2.1).
pub const MAX_UDP_REPLY: usize = 512;
/// Most answer records read from a response.
pub const MAX_ANSWERS_READ: usize = 64;
/// Most CNAME hops followed from the question's name.
pub const MAX_CNAME_HOPS: usize = 8;

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type CNAME.
pub const TYPE_CNAME: u16 = 5;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Class IN.
pub const CLASS_IN: u16 = 1;

const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;

/// Response codes (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// No error.
    NoError = 0,
    /// Format error.
    FormErr = 1,
    /// Server failure.
    ServFail = 2,
    /// Name error (the name does not exist).
    NxDomain = 3,
    /// Not implemented.
    NotImp = 4,
    /// Refused.
    Refused = 5,
}

/// A message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Id.
    pub id: u16,
    /// Flags word (QR, opcode, AA, TC, RD, RA, Z, RCODE).
    pub flags: u16,
    /// Question count.
    pub qdcount: u16,
    /// Answer count.
    pub ancount: u16,
    /// Authority count.
    pub nscount: u16,
    /// Additional count.
    pub arcount: u16,
}

impl Header {
    /// Reads the header, or `None` if the message is shorter than 12 bytes.
    pub fn parse(b: &[u8]) -> Option<Self> {
        Some(Self {
            id: be16(b, 0)?,
            flags: be16(b, 2)?,
            qdcount: be16(b, 4)?,
            ancount: be16(b, 6)?,
            nscount: be16(b, 8)?,
            arcount: be16(b, 10)?,
        })
    }

    /// QR: this is a response.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }

    /// OPCODE.
    pub fn opcode(&self) -> u8 {
        u8::try_from((self.flags >> 11) & 0xf).unwrap_or(0xf)
    }

    /// RD: recursion desired.
    pub fn recursion_desired(&self) -> bool {
        self.flags & FLAG_RD != 0
    }

    /// TC: truncated.
    pub fn truncated(&self) -> bool {
        self.flags & FLAG_TC != 0
    }

    /// RCODE.
    pub fn rcode(&self) -> u8 {
        u8::try_from(self.flags & 0xf).unwrap_or(0xf)
    }
}

/// Why a message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A field runs past the end of the message.
    #[error("message truncated at offset {offset}")]
    Truncated {
        /// Where reading stopped.
        offset: usize,
    },
    /// A name is malformed: reserved label type, over-long, or a pointer that does not
    /// point strictly backwards.
    #[error("malformed name at offset {offset}")]
    BadName {
        /// Where the name starts.
        offset: usize,
    },
}

/// A question as it appeared on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name in uncompressed wire form, case as received.
    pub name: Vec<u8>,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
}

impl Question {
    /// The question's bytes (name, type, class) as they go into a message.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.name.clone();
        b.extend_from_slice(&self.qtype.to_be_bytes());
        b.extend_from_slice(&self.qclass.to_be_bytes());
        b
    }
}

/// Reads a name starting at `start`; returns it uncompressed (case preserved) and the
/// offset after it in the message. With `compression` false, pointers are refused.
pub fn read_name(
    msg: &[u8],
    start: usize,
    compression: bool,
) -> Result<(Vec<u8>, usize), WireError> {
    let bad = WireError::BadName { offset: start };
    let mut out = Vec::new();
    let mut pos = start;
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated { offset: pos })?;
        match len & 0xc0 {
            0x00 => {
                let n = usize::from(len);
                if n == 0 {
                    out.push(0);
                    if out.len() > MAX_WIRE_NAME {
                        return Err(bad);
                    }
                    return Ok((out, end.unwrap_or(pos + 1)));
                }
                let label = msg
                    .get(pos + 1..pos + 1 + n)
                    .ok_or(WireError::Truncated { offset: pos })?;
                out.push(len);
                out.extend_from_slice(label);
                if out.len() > MAX_WIRE_NAME {
                    return Err(bad);
                }
                pos += 1 + n;
            }
            0xc0 if compression => {
                let low = *msg
                    .get(pos + 1)
                    .ok_or(WireError::Truncated { offset: pos })?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                jumps += 1;
                if target >= pos || jumps > MAX_POINTERS {
                    return Err(bad);
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err(bad),
        }
    }
}

/// Reads the question at offset 12; returns it and the offset after it.
pub fn read_question(msg: &[u8], compression: bool) -> Result<(Question, usize), WireError> {
    let (name, pos) = read_name(msg, HEADER_LEN, compression)?;
    let qtype = be16(msg, pos).ok_or(WireError::Truncated { offset: pos })?;
    let qclass = be16(msg, pos + 2).ok_or(WireError::Truncated { offset: pos + 2 })?;
    Ok((
        Question {
            name,
            qtype,
            qclass,
        },
        pos + 4,
    ))
}

/// Builds a query for `name_wire` (type A, class IN) with recursion desired.
pub fn build_query(id: u16, name_wire: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + name_wire.len() + 4);
    header_into(&mut b, id, FLAG_RD, 1, 0);
    b.extend_from_slice(name_wire);
    b.extend_from_slice(&TYPE_A.to_be_bytes());
    b.extend_from_slice(&CLASS_IN.to_be_bytes());
    b
}

/// Builds a reply to a query: `question` echoed as received, `rd` copied, RA set, and one
/// A record per address (owner: the question's name, by pointer), as many as fit in 512
/// bytes. `question: None` builds a header-only reply (FORMERR, NOTIMP).
pub fn build_reply(
    id: u16,
    rd: bool,
    question: Option<&Question>,
    rcode: Rcode,
    answers: &[(Ipv4Addr, u32)],
) -> Vec<u8> {
    let qbytes = question.map(Question::to_bytes).unwrap_or_default();
    let room = MAX_UDP_REPLY.saturating_sub(HEADER_LEN + qbytes.len()) / 16;
    let answers = if question.is_some() {
        answers.get(..answers.len().min(room)).unwrap_or(&[])
    } else {
        &[]
    };
    let mut flags = FLAG_QR | FLAG_RA | rcode as u16;
    if rd {
        flags |= FLAG_RD;
    }
    let ancount = u16::try_from(answers.len()).unwrap_or(0);
    let mut b = Vec::with_capacity(HEADER_LEN + qbytes.len() + answers.len() * 16);
    header_into(&mut b, id, flags, u16::from(question.is_some()), ancount);
    b.extend_from_slice(&qbytes);
    for (addr, ttl) in answers {
        b.extend_from_slice(&[0xc0, 0x0c]); // the question's name, at offset 12
        b.extend_from_slice(&TYPE_A.to_be_bytes());
        b.extend_from_slice(&CLASS_IN.to_be_bytes());
        b.extend_from_slice(&ttl.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&addr.octets());
    }
    b
}

fn header_into(b: &mut Vec<u8>, id: u16, flags: u16, qd: u16, an: u16) {
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&qd.to_be_bytes());
    b.extend_from_slice(&an.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
}

/// What a validated upstream response says about the name asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response code.
    pub rcode: u8,
    /// A records of the name at the end of the CNAME chain, deduplicated.
    pub addrs: Vec<Ipv4Addr>,
    /// Least TTL over the CNAME chain and those A records (seconds, unclamped); `None`
    /// when there are no addresses.
    pub ttl: Option<u32>,
}

/// Why an upstream response is not an answer to our query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The message could not be read.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Not a response, not a standard query, or not exactly one question.
    #[error("not a response to a standard query")]
    NotAResponse,
    /// The question differs from the one asked (possibly only in 0x20 case).
    #[error("question does not match the query")]
    QuestionMismatch,
    /// TC set: the answer did not fit in UDP.
    #[error("response truncated")]
    Truncated,
}

/// Validates a response to the query whose question was `asked` (bytes as sent, 0x20 case
/// included) and extracts the answer. The id is the caller's to check.
pub fn parse_response(msg: &[u8], asked: &Question) -> Result<Answer, ResponseError> {
    let h = Header::parse(msg).ok_or(WireError::Truncated { offset: 0 })?;
    if !h.is_response() || h.opcode() != 0 || h.qdcount != 1 {
        return Err(ResponseError::NotAResponse);
    }
    let (q, mut pos) = read_question(msg, true)?;
    // Byte-exact: with 0x20 randomisation the case is part of what a spoofer must guess.
    if q != *asked {
        return Err(ResponseError::QuestionMismatch);
    }
    if h.truncated() {
        return Err(ResponseError::Truncated);
    }
    let mut cnames: Vec<(Vec<u8>, Vec<u8>, u32)> = Vec::new();
    let mut a_records: Vec<(Vec<u8>, Ipv4Addr, u32)> = Vec::new();
    for _ in 0..usize::from(h.ancount).min(MAX_ANSWERS_READ) {
        let (owner, p) = read_name(msg, pos, true)?;
        let rtype = be16(msg, p).ok_or(WireError::Truncated { offset: p })?;
        let class = be16(msg, p + 2).ok_or(WireError::Truncated { offset: p + 2 })?;
        let ttl_raw = be32(msg, p + 4).ok_or(WireError::Truncated { offset: p + 4 })?;
        let rdlen = usize::from(be16(msg, p + 8).ok_or(WireError::Truncated { offset: p + 8 })?);
        let rdata_at = p + 10;
        let rdata = msg
            .get(rdata_at..rdata_at + rdlen)
            .ok_or(WireError::Truncated { offset: rdata_at })?;
        // RFC 2181 §8: a TTL with the top bit set is treated as zero.
        let ttl = if ttl_raw & 0x8000_0000 != 0 {
            0
        } else {
            ttl_raw
        };
        if class == CLASS_IN {
            match rtype {
                TYPE_A => {
                    if let Ok(o) = <[u8; 4]>::try_from(rdata) {
                        a_records.push((lower(&owner), Ipv4Addr::from(o), ttl));
                    }
                }
                TYPE_CNAME => {
                    let (target, after) = read_name(msg, rdata_at, true)?;
                    if after != rdata_at + rdlen {
                        return Err(WireError::BadName { offset: rdata_at }.into());
                    }
                    cnames.push((lower(&owner), lower(&target), ttl));
                }
                _ => {}
            }
        }
        pos = rdata_at + rdlen;
    }
    let mut current = lower(&asked.name);
    let mut ttl = u32::MAX;
    for _ in 0..MAX_CNAME_HOPS {
        let Some((_, target, t)) = cnames.iter().find(|(owner, _, _)| *owner == current) else {
            break;
        };
        ttl = ttl.min(*t);
        current.clone_from(target);
    }
    let mut addrs = Vec::new();
    for (owner, addr, t) in &a_records {
        if *owner == current {
            ttl = ttl.min(*t);
            if !addrs.contains(addr) {
                addrs.push(*addr);
            }
        }
    }
    let ttl = (!addrs.is_empty()).then_some(ttl);
    Ok(Answer {
        rcode: h.rcode(),
        addrs,
        ttl,
    })
}

fn lower(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    b.get(off..off + 2)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map(u16::from_be_bytes)
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pointers_must_point_backwards() {
        // Header, then a name that is a pointer to itself.
        let mut m = vec![0; 12];
        m.extend_from_slice(&[0xc0, 12]);
        assert_eq!(
            read_name(&m, 12, true),
            Err(WireError::BadName { offset: 12 })
        );
        // A forward pointer.
        let mut m = vec![0; 12];
        m.extend_from_slice(&[0xc0, 14, 0]);
        assert!(read_name(&m, 12, true).is_err());
        // Refused when compression is off.
        let mut m = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01a\x00".to_vec();
        m.extend_from_slice(&[0xc0, 12]);
        assert_eq!(
            read_name(&m, 15, true).unwrap(),
            (b"\x01a\x00".to_vec(), 17)
        );
        assert!(read_name(&m, 15, false).is_err());
    }

    #[test]
    fn over_long_names_are_refused() {
        let mut m = vec![0; 12];
        for _ in 0..5 {
            m.push(63);
            m.extend_from_slice(&[b'a'; 63]);
        }
        m.push(0);
        assert!(matches!(
            read_name(&m, 12, false),
            Err(WireError::BadName { .. })
        ));
    }

    #[test]
    fn reply_fits_in_512_bytes() {
        let q = Question {
            name: DnsNameWire::long(),
            qtype: TYPE_A,
            qclass: CLASS_IN,
        };
        let many: Vec<_> = (0..40)
            .map(|i| (Ipv4Addr::new(203, 0, 113, i), 60))
            .collect();
        let r = build_reply(7, true, Some(&q), Rcode::NoError, &many);
        assert!(r.len() <= MAX_UDP_REPLY);
        let h = Header::parse(&r).unwrap();
        assert!(h.ancount > 0 && usize::from(h.ancount) < 40);
    }

    struct DnsNameWire;
    impl DnsNameWire {
        fn long() -> Vec<u8> {
            let mut n = Vec::new();
            for _ in 0..3 {
                n.push(60);
                n.extend_from_slice(&[b'x'; 60]);
            }
            n.push(0);
            n
        }
    }
}
