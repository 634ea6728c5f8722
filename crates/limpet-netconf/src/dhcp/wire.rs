//! DHCPv4 message encoding and decoding (RFC 2131 §2, options from RFC 2132).
//!
//! Decoding is strict about bounds and lenient about content: an option that is too short
//! for its type is ignored, never read past. Repeated options are concatenated (RFC 3396).
//! Option overload (option 52) is not supported: the `sname` and `file` fields are not read
//! as options (Off-spec: the options this client needs fit in the options field on every
//! server it meets; honouring overload would only widen the parser).

use std::net::Ipv4Addr;
use std::time::Duration;

/// The magic cookie that starts the options field.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Server port.
pub const SERVER_PORT: u16 = 67;
/// Client port.
pub const CLIENT_PORT: u16 = 68;

/// Fixed part of a BOOTP message before the cookie.
const FIXED_LEN: usize = 236;
/// Minimum BOOTP message length that old relays and servers expect (RFC 1542 §2.1).
const MIN_LEN: usize = 300;
/// Largest message this client accepts; larger datagrams are truncated by the socket.
pub const MAX_LEN: usize = 1500;

const OP_REQUEST: u8 = 1;
const OP_REPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
/// The BROADCAST bit of `flags`: asks the server to broadcast its answer, so that a plain
/// UDP socket receives it before the address is configured.
const FLAG_BROADCAST: u16 = 0x8000;

/// Option codes used here (RFC 2132).
pub mod opt {
    /// Pad.
    pub const PAD: u8 = 0;
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers.
    pub const ROUTER: u8 = 3;
    /// Domain name servers.
    pub const DNS: u8 = 6;
    /// Requested IP address.
    pub const REQUESTED_IP: u8 = 50;
    /// IP address lease time.
    pub const LEASE_TIME: u8 = 51;
    /// DHCP message type.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list.
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    /// Maximum DHCP message size.
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    /// Renewal (T1) time.
    pub const RENEWAL_TIME: u8 = 58;
    /// Rebinding (T2) time.
    pub const REBINDING_TIME: u8 = 59;
    /// Client identifier.
    pub const CLIENT_ID: u8 = 61;
    /// End.
    pub const END: u8 = 255;
}

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// DHCPDISCOVER.
    Discover = 1,
    /// DHCPOFFER.
    Offer = 2,
    /// DHCPREQUEST.
    Request = 3,
    /// DHCPDECLINE.
    Decline = 4,
    /// DHCPACK.
    Ack = 5,
    /// DHCPNAK.
    Nak = 6,
    /// DHCPRELEASE.
    Release = 7,
    /// DHCPINFORM.
    Inform = 8,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            _ => return None,
        })
    }
}

/// A message this client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// DISCOVER or REQUEST.
    pub kind: MessageType,
    /// Transaction id.
    pub xid: u32,
    /// Seconds since the client began this acquisition or renewal.
    pub secs: u16,
    /// `ciaddr`: the client's address in BOUND, RENEWING and REBINDING, else 0.
    pub ciaddr: Ipv4Addr,
    /// Hardware address.
    pub mac: [u8; 6],
    /// Option 50, in SELECTING's REQUEST (and optionally DISCOVER).
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54, in SELECTING's REQUEST only.
    pub server_id: Option<Ipv4Addr>,
}

/// Parameters asked for in option 55.
const PARAMETERS: [u8; 6] = [
    opt::SUBNET_MASK,
    opt::ROUTER,
    opt::DNS,
    opt::LEASE_TIME,
    opt::RENEWAL_TIME,
    opt::REBINDING_TIME,
];

impl Outgoing {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MIN_LEN);
        b.extend_from_slice(&[OP_REQUEST, HTYPE_ETHERNET, 6, 0]);
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&self.secs.to_be_bytes());
        // A server answers a message with ciaddr set by unicast to ciaddr (§4.1), which our
        // socket receives; without it, the broadcast bit makes the answer reachable.
        let flags = if self.ciaddr.is_unspecified() {
            FLAG_BROADCAST
        } else {
            0
        };
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&self.ciaddr.octets());
        b.extend_from_slice(&[0; 12]); // yiaddr, siaddr, giaddr
        b.extend_from_slice(&self.mac);
        b.extend_from_slice(&[0; 10 + 64 + 128]); // chaddr padding, sname, file
        b.extend_from_slice(&MAGIC_COOKIE);
        b.extend_from_slice(&[opt::MESSAGE_TYPE, 1, self.kind as u8]);
        b.extend_from_slice(&[opt::CLIENT_ID, 7, HTYPE_ETHERNET]);
        b.extend_from_slice(&self.mac);
        if let Some(ip) = self.requested_ip {
            b.extend_from_slice(&[opt::REQUESTED_IP, 4]);
            b.extend_from_slice(&ip.octets());
        }
        if let Some(ip) = self.server_id {
            b.extend_from_slice(&[opt::SERVER_ID, 4]);
            b.extend_from_slice(&ip.octets());
        }
        b.extend_from_slice(&[opt::MAX_MESSAGE_SIZE, 2]);
        b.extend_from_slice(&u16::try_from(MAX_LEN).unwrap_or(576).to_be_bytes());
        b.extend_from_slice(&[opt::PARAMETER_REQUEST_LIST, 6]);
        b.extend_from_slice(&PARAMETERS);
        b.push(opt::END);
        if b.len() < MIN_LEN {
            b.resize(MIN_LEN, opt::PAD);
        }
        b
    }
}

/// A server's message, decoded and checked for shape (not yet for relevance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// OFFER, ACK or NAK (other types are rejected while decoding).
    pub kind: MessageType,
    /// Transaction id.
    pub xid: u32,
    /// `yiaddr`: the address offered or acknowledged.
    pub yiaddr: Ipv4Addr,
    /// First six bytes of `chaddr`.
    pub chaddr: [u8; 6],
    /// Option 1.
    pub subnet_mask: Option<Ipv4Addr>,
    /// Option 3, first router.
    pub router: Option<Ipv4Addr>,
    /// Option 6, at most [`MAX_DNS`] servers.
    pub dns: Vec<Ipv4Addr>,
    /// Option 51.
    pub lease_time: Option<Duration>,
    /// Option 58.
    pub t1: Option<Duration>,
    /// Option 59.
    pub t2: Option<Duration>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
}

/// Most DNS servers kept from option 6.
pub const MAX_DNS: usize = 4;

/// Why a datagram is not a usable server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the fixed header and cookie.
    #[error("message too short ({len} bytes)")]
    TooShort {
        /// Datagram length.
        len: usize,
    },
    /// Not a BOOTREPLY for Ethernet, or no magic cookie.
    #[error("not a DHCP reply")]
    NotDhcpReply,
    /// An option's length runs past the end of the datagram.
    #[error("option {code} overruns the message")]
    OptionOverrun {
        /// Option code.
        code: u8,
    },
    /// No message type, or one a server does not send to a client.
    #[error("missing or unexpected message type")]
    BadMessageType,
}

/// Decodes a datagram from a server.
pub fn decode(b: &[u8]) -> Result<Incoming, DecodeError> {
    if b.len() < FIXED_LEN + MAGIC_COOKIE.len() {
        return Err(DecodeError::TooShort { len: b.len() });
    }
    let (Some(&op), Some(&htype), Some(&hlen)) = (b.first(), b.get(1), b.get(2)) else {
        return Err(DecodeError::TooShort { len: b.len() });
    };
    if op != OP_REPLY || htype != HTYPE_ETHERNET || hlen != 6 {
        return Err(DecodeError::NotDhcpReply);
    }
    if b.get(FIXED_LEN..FIXED_LEN + 4) != Some(&MAGIC_COOKIE[..]) {
        return Err(DecodeError::NotDhcpReply);
    }
    let xid = be_u32(b, 4).ok_or(DecodeError::TooShort { len: b.len() })?;
    let yiaddr = ip_at(b, 16).ok_or(DecodeError::TooShort { len: b.len() })?;
    let chaddr = b
        .get(28..34)
        .and_then(|s| <[u8; 6]>::try_from(s).ok())
        .ok_or(DecodeError::TooShort { len: b.len() })?;
    let options = collect_options(b.get(FIXED_LEN + 4..).unwrap_or(&[]))?;
    let get = |code: u8| {
        options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    };
    let kind = get(opt::MESSAGE_TYPE)
        .and_then(|v| v.first().copied())
        .and_then(MessageType::from_u8)
        .ok_or(DecodeError::BadMessageType)?;
    if !matches!(
        kind,
        MessageType::Offer | MessageType::Ack | MessageType::Nak
    ) {
        return Err(DecodeError::BadMessageType);
    }
    let first_ip = |code| get(code).and_then(|v| ip_at(v, 0));
    let secs = |code| {
        get(code)
            .and_then(|v| be_u32(v, 0))
            .map(|s| Duration::from_secs(u64::from(s)))
    };
    let dns = get(opt::DNS)
        .map(|v| {
            v.chunks_exact(4)
                .filter_map(|c| ip_at(c, 0))
                .take(MAX_DNS)
                .collect()
        })
        .unwrap_or_default();
    Ok(Incoming {
        kind,
        xid,
        yiaddr,
        chaddr,
        subnet_mask: first_ip(opt::SUBNET_MASK),
        router: first_ip(opt::ROUTER),
        dns,
        lease_time: secs(opt::LEASE_TIME),
        t1: secs(opt::RENEWAL_TIME),
        t2: secs(opt::REBINDING_TIME),
        server_id: first_ip(opt::SERVER_ID),
    })
}

/// Walks the options field; repeated codes are concatenated (RFC 3396).
fn collect_options(mut b: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, DecodeError> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    while let Some((&code, rest)) = b.split_first() {
        match code {
            opt::PAD => b = rest,
            opt::END => break,
            _ => {
                let (&len, rest) = rest
                    .split_first()
                    .ok_or(DecodeError::OptionOverrun { code })?;
                let len = usize::from(len);
                let value = rest.get(..len).ok_or(DecodeError::OptionOverrun { code })?;
                match out.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, v)) => v.extend_from_slice(value),
                    None => out.push((code, value.to_vec())),
                }
                b = rest.get(len..).unwrap_or(&[]);
            }
        }
    }
    Ok(out)
}

fn be_u32(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_be_bytes)
}

fn ip_at(b: &[u8], off: usize) -> Option<Ipv4Addr> {
    be_u32(b, off).map(Ipv4Addr::from)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A server reply for tests, built field by field.
    pub(crate) struct Reply {
        pub kind: u8,
        pub xid: u32,
        pub yiaddr: Ipv4Addr,
        pub mac: [u8; 6],
        pub options: Vec<(u8, Vec<u8>)>,
    }

    impl Reply {
        pub(crate) fn encode(&self) -> Vec<u8> {
            let mut b = vec![OP_REPLY, HTYPE_ETHERNET, 6, 0];
            b.extend_from_slice(&self.xid.to_be_bytes());
            b.extend_from_slice(&[0; 8]);
            b.extend_from_slice(&self.yiaddr.octets());
            b.extend_from_slice(&[0; 8]);
            b.extend_from_slice(&self.mac);
            b.extend_from_slice(&[0; 10 + 64 + 128]);
            b.extend_from_slice(&MAGIC_COOKIE);
            b.extend_from_slice(&[opt::MESSAGE_TYPE, 1, self.kind]);
            for (c, v) in &self.options {
                b.push(*c);
                b.push(u8::try_from(v.len()).unwrap());
                b.extend_from_slice(v);
            }
            b.push(opt::END);
            b
        }
    }

    #[test]
    fn discover_has_the_fields_rfc2131_table5_asks_for() {
        let m = Outgoing {
            kind: MessageType::Discover,
            xid: 0x1234_5678,
            secs: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            mac: [2, 0, 0, 0, 0, 1],
            requested_ip: None,
            server_id: None,
        }
        .encode();
        assert!(m.len() >= MIN_LEN);
        assert_eq!(&m[4..8], &[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(&m[10..12], &[0x80, 0]); // broadcast flag
        assert_eq!(&m[28..34], &[2, 0, 0, 0, 0, 1]);
        let opts = collect_options(&m[240..]).unwrap();
        assert!(opts.contains(&(opt::MESSAGE_TYPE, vec![1])));
        assert!(opts.contains(&(opt::CLIENT_ID, vec![1, 2, 0, 0, 0, 0, 1])));
        assert!(!opts.iter().any(|(c, _)| *c == opt::SERVER_ID));
    }

    #[test]
    fn renewing_request_is_unicast_shaped() {
        let m = Outgoing {
            kind: MessageType::Request,
            xid: 1,
            secs: 0,
            ciaddr: Ipv4Addr::new(192, 0, 2, 50),
            mac: [2, 0, 0, 0, 0, 1],
            requested_ip: None,
            server_id: None,
        }
        .encode();
        assert_eq!(&m[10..12], &[0, 0]);
        assert_eq!(&m[12..16], &[192, 0, 2, 50]);
    }

    #[test]
    fn decodes_an_ack_and_concatenates_split_options() {
        let r = Reply {
            kind: 5,
            xid: 9,
            yiaddr: Ipv4Addr::new(192, 0, 2, 50),
            mac: [2, 0, 0, 0, 0, 1],
            options: vec![
                (opt::SUBNET_MASK, vec![255, 255, 255, 0]),
                (opt::ROUTER, vec![192, 0, 2, 1, 192, 0, 2, 2]),
                (opt::DNS, vec![192, 0, 2, 53]),
                (opt::DNS, vec![192, 0, 2, 54]),
                (opt::LEASE_TIME, 120u32.to_be_bytes().to_vec()),
                (opt::SERVER_ID, vec![192, 0, 2, 1]),
            ],
        };
        let m = decode(&r.encode()).unwrap();
        assert_eq!(m.kind, MessageType::Ack);
        assert_eq!(m.router, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(
            m.dns,
            vec![Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(192, 0, 2, 54)]
        );
        assert_eq!(m.lease_time, Some(Duration::from_secs(120)));
        assert_eq!(m.t1, None);
    }

    #[test]
    fn rejects_requests_short_messages_and_overruns() {
        let mut r = Reply {
            kind: 5,
            xid: 9,
            yiaddr: Ipv4Addr::new(192, 0, 2, 50),
            mac: [2, 0, 0, 0, 0, 1],
            options: vec![],
        }
        .encode();
        for n in 0..r.len() {
            let _ = decode(&r[..n]);
        }
        assert_eq!(decode(&r[..100]), Err(DecodeError::TooShort { len: 100 }));
        let end = r.len() - 1;
        r[end] = opt::LEASE_TIME;
        r.push(40);
        assert_eq!(
            decode(&r),
            Err(DecodeError::OptionOverrun {
                code: opt::LEASE_TIME
            })
        );
        r[0] = OP_REQUEST;
        assert_eq!(decode(&r), Err(DecodeError::NotDhcpReply));
    }
}
