//! rtnetlink message encoding and decoding, by hand and without I/O. Layouts follow
//! `linux/netlink.h`, `linux/rtnetlink.h`, `linux/if_link.h` and `linux/if_addr.h`; all
//! integers are in host byte order except addresses, which are in network order.
//!
//! Decoding never trusts a length field: every slice is bounds-checked and a malformed
//! message is an error, never a panic.

use std::net::Ipv4Addr;

/// `NLMSG_ERROR`: an error or, with error 0, an acknowledgement.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// `RTM_NEWLINK`.
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_GETLINK`.
pub const RTM_GETLINK: u16 = 18;
/// `RTM_NEWADDR`.
pub const RTM_NEWADDR: u16 = 20;
/// `RTM_DELADDR`.
pub const RTM_DELADDR: u16 = 21;
/// `RTM_GETADDR`.
pub const RTM_GETADDR: u16 = 22;
/// `RTM_NEWROUTE`.
pub const RTM_NEWROUTE: u16 = 24;
/// `RTM_DELROUTE`.
pub const RTM_DELROUTE: u16 = 25;

/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_REPLACE`.
pub const NLM_F_REPLACE: u16 = 0x100;
/// `NLM_F_CREATE`.
pub const NLM_F_CREATE: u16 = 0x400;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const IFF_UP: u32 = 0x1;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_CACHEINFO: u16 = 6;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = 254;
/// `RTPROT_DHCP`: marks routes this crate installs from a lease.
const RTPROT_DHCP: u8 = 16;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_HOST: u8 = 254;
const RTN_UNICAST: u8 = 1;

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const RTMSG_LEN: usize = 12;

/// Why a message from the kernel could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A length field points outside the datagram.
    #[error("netlink message truncated at offset {offset}")]
    Truncated {
        /// Byte offset of the field that did not fit.
        offset: usize,
    },
}

/// One request being built: a header followed by a fixed struct and attributes.
#[derive(Debug)]
pub struct Request {
    buf: Vec<u8>,
}

impl Request {
    /// Starts a request of `msg_type` with `flags` and sequence number `seq`.
    pub fn new(msg_type: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in `finish`
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        Self { buf }
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Appends one attribute, padded to 4 bytes.
    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self
    }

    /// Patches the length and returns the datagram.
    pub fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut m = [0u8; IFINFOMSG_LEN];
    m[0] = AF_UNSPEC;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn ifaddrmsg(prefix: u8, scope: u8, index: u32) -> [u8; IFADDRMSG_LEN] {
    let mut m = [0u8; IFADDRMSG_LEN];
    m[0] = AF_INET;
    m[1] = prefix;
    m[3] = scope;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

/// `RTM_GETLINK` for the interface called `name` (the kernel looks it up by `IFLA_IFNAME`).
pub fn get_link_by_name(seq: u32, name: &str) -> Vec<u8> {
    let mut name_z = name.as_bytes().to_vec();
    name_z.push(0);
    // With NLM_F_ACK the kernel follows the answer with an acknowledgement.
    let mut r = Request::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
    r.bytes(&ifinfomsg(0, 0, 0)).attr(IFLA_IFNAME, &name_z);
    r.finish()
}

/// `RTM_NEWLINK` setting `IFF_UP` on interface `index`.
pub fn set_link_up(seq: u32, index: u32) -> Vec<u8> {
    let mut r = Request::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
    r.bytes(&ifinfomsg(index, IFF_UP, IFF_UP));
    r.finish()
}

/// Valid and preferred lifetimes of an address, in seconds (`IFA_CACHEINFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Seconds until the kernel removes the address.
    pub valid: u32,
    /// Seconds until the address is deprecated for new connections.
    pub preferred: u32,
}

/// `RTM_NEWADDR` (create or replace) of `addr/prefix` with `broadcast` on `index`.
pub fn new_address(
    seq: u32,
    index: u32,
    addr: Ipv4Addr,
    prefix: u8,
    broadcast: Option<Ipv4Addr>,
    lifetimes: Option<Lifetimes>,
) -> Vec<u8> {
    let scope = if addr.is_loopback() {
        RT_SCOPE_HOST
    } else {
        RT_SCOPE_UNIVERSE
    };
    let mut r = Request::new(
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        seq,
    );
    r.bytes(&ifaddrmsg(prefix, scope, index))
        .attr(IFA_LOCAL, &addr.octets())
        .attr(IFA_ADDRESS, &addr.octets());
    if let Some(b) = broadcast {
        r.attr(IFA_BROADCAST, &b.octets());
    }
    if let Some(l) = lifetimes {
        let mut ci = [0u8; 16];
        ci[0..4].copy_from_slice(&l.preferred.to_ne_bytes());
        ci[4..8].copy_from_slice(&l.valid.to_ne_bytes());
        r.attr(IFA_CACHEINFO, &ci);
    }
    r.finish()
}

/// `RTM_DELADDR` of `addr/prefix` on `index`.
pub fn del_address(seq: u32, index: u32, addr: Ipv4Addr, prefix: u8) -> Vec<u8> {
    let mut r = Request::new(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq);
    r.bytes(&ifaddrmsg(prefix, 0, index))
        .attr(IFA_LOCAL, &addr.octets())
        .attr(IFA_ADDRESS, &addr.octets());
    r.finish()
}

/// `RTM_GETADDR` dump of all IPv4 addresses (filtered by index on decode).
pub fn dump_addresses(seq: u32) -> Vec<u8> {
    let mut r = Request::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq);
    r.bytes(&ifaddrmsg(0, 0, 0));
    r.finish()
}

fn rtmsg(dst_len: u8) -> [u8; RTMSG_LEN] {
    let mut m = [0u8; RTMSG_LEN];
    m[0] = AF_INET;
    m[1] = dst_len;
    m[4] = RT_TABLE_MAIN;
    m[5] = RTPROT_DHCP;
    m[6] = RT_SCOPE_UNIVERSE;
    m[7] = RTN_UNICAST;
    m
}

/// `RTM_NEWROUTE` (create or replace) of `0.0.0.0/0 via gateway dev index` in the main table.
pub fn new_default_route(seq: u32, index: u32, gateway: Ipv4Addr) -> Vec<u8> {
    let mut r = Request::new(
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        seq,
    );
    r.bytes(&rtmsg(0))
        .attr(RTA_TABLE, &u32::from(RT_TABLE_MAIN).to_ne_bytes())
        .attr(RTA_GATEWAY, &gateway.octets())
        .attr(RTA_OIF, &index.to_ne_bytes());
    r.finish()
}

/// `RTM_DELROUTE` of the default route through interface `index` in the main table.
pub fn del_default_route(seq: u32, index: u32) -> Vec<u8> {
    let mut r = Request::new(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, seq);
    r.bytes(&rtmsg(0))
        .attr(RTA_TABLE, &u32::from(RT_TABLE_MAIN).to_ne_bytes())
        .attr(RTA_OIF, &index.to_ne_bytes());
    r.finish()
}

/// One decoded message header with its payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub msg_type: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// Everything after the 16-byte header.
    pub payload: &'a [u8],
}

/// Splits a datagram into messages.
pub fn messages(mut buf: &[u8]) -> Result<Vec<Message<'_>>, DecodeError> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    while buf.len() >= NLMSG_HDRLEN {
        let len = usize::try_from(ne_u32(buf, 0)?).unwrap_or(usize::MAX);
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(DecodeError::Truncated { offset });
        }
        out.push(Message {
            msg_type: ne_u16(buf, 4)?,
            seq: ne_u32(buf, 8)?,
            payload: &buf[NLMSG_HDRLEN..len],
        });
        let advance = align4(len).min(buf.len());
        buf = &buf[advance..];
        offset += advance;
    }
    Ok(out)
}

/// The errno of an `NLMSG_ERROR` payload: 0 for an acknowledgement, else positive.
pub fn error_code(payload: &[u8]) -> Result<i32, DecodeError> {
    let raw = ne_u32(payload, 0)?;
    let code = i32::from_ne_bytes(raw.to_ne_bytes());
    Ok(code.saturating_neg())
}

/// What an `RTM_NEWLINK` reply says about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMsg {
    /// Interface index.
    pub index: u32,
    /// `ifi_flags`.
    pub flags: u32,
    /// Hardware address, when it is 6 bytes long (Ethernet).
    pub mac: Option<[u8; 6]>,
}

/// Decodes an `RTM_NEWLINK` payload.
pub fn parse_link(payload: &[u8]) -> Result<LinkMsg, DecodeError> {
    let index = ne_u32(payload, 4)?;
    let flags = ne_u32(payload, 8)?;
    let mut mac = None;
    for (kind, data) in attrs(payload, IFINFOMSG_LEN)? {
        if kind == IFLA_ADDRESS {
            if let Ok(m) = <[u8; 6]>::try_from(data) {
                mac = Some(m);
            }
        }
    }
    Ok(LinkMsg { index, flags, mac })
}

/// Whether `flags` has `IFF_UP`.
pub fn is_up(flags: u32) -> bool {
    flags & IFF_UP != 0
}

/// What an `RTM_NEWADDR` dump entry says about one IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrMsg {
    /// Interface index.
    pub index: u32,
    /// Prefix length.
    pub prefix: u8,
    /// The local address (`IFA_LOCAL`, else `IFA_ADDRESS`).
    pub addr: Ipv4Addr,
}

/// Decodes an `RTM_NEWADDR` payload; `Ok(None)` for non-IPv4 entries.
pub fn parse_addr(payload: &[u8]) -> Result<Option<AddrMsg>, DecodeError> {
    let family = *payload
        .first()
        .ok_or(DecodeError::Truncated { offset: 0 })?;
    if family != AF_INET {
        return Ok(None);
    }
    let prefix = *payload.get(1).ok_or(DecodeError::Truncated { offset: 1 })?;
    let index = ne_u32(payload, 4)?;
    let (mut local, mut address) = (None, None);
    for (kind, data) in attrs(payload, IFADDRMSG_LEN)? {
        let Ok(octets) = <[u8; 4]>::try_from(data) else {
            continue;
        };
        match kind {
            IFA_LOCAL => local = Some(Ipv4Addr::from(octets)),
            IFA_ADDRESS => address = Some(Ipv4Addr::from(octets)),
            _ => {}
        }
    }
    Ok(local.or(address).map(|addr| AddrMsg {
        index,
        prefix,
        addr,
    }))
}

/// The attributes after a fixed header of `fixed` bytes.
fn attrs(payload: &[u8], fixed: usize) -> Result<Vec<(u16, &[u8])>, DecodeError> {
    let mut out = Vec::new();
    let mut off = align4(fixed);
    while off + 4 <= payload.len() {
        let len = usize::from(ne_u16(payload, off)?);
        let kind = ne_u16(payload, off + 2)? & 0x3fff; // drop NLA_F_NESTED / NET_BYTEORDER
        if len < 4 || off + len > payload.len() {
            return Err(DecodeError::Truncated { offset: off });
        }
        out.push((kind, &payload[off + 4..off + len]));
        off += align4(len);
    }
    Ok(out)
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn ne_u16(b: &[u8], off: usize) -> Result<u16, DecodeError> {
    b.get(off..off + 2)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map(u16::from_ne_bytes)
        .ok_or(DecodeError::Truncated { offset: off })
}

fn ne_u32(b: &[u8], off: usize) -> Result<u32, DecodeError> {
    b.get(off..off + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_ne_bytes)
        .ok_or(DecodeError::Truncated { offset: off })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_length_is_patched_and_padded() {
        let b = get_link_by_name(7, "eth0");
        assert_eq!(b.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        let msgs = messages(&b).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].msg_type, RTM_GETLINK);
        assert_eq!(msgs[0].seq, 7);
    }

    #[test]
    fn new_address_round_trips_through_the_decoder() {
        let b = new_address(
            1,
            3,
            Ipv4Addr::new(192, 0, 2, 50),
            24,
            Some(Ipv4Addr::new(192, 0, 2, 255)),
            None,
        );
        let msgs = messages(&b).unwrap();
        let a = parse_addr(msgs[0].payload).unwrap().unwrap();
        assert_eq!(
            a,
            AddrMsg {
                index: 3,
                prefix: 24,
                addr: Ipv4Addr::new(192, 0, 2, 50)
            }
        );
    }

    #[test]
    fn error_payload_gives_positive_errno() {
        let mut p = (-17i32).to_ne_bytes().to_vec();
        p.extend_from_slice(&[0; 16]);
        assert_eq!(error_code(&p).unwrap(), 17);
        assert!(error_code(&[1, 2]).is_err());
    }

    #[test]
    fn decoder_rejects_lying_lengths_without_panicking() {
        let mut b = set_link_up(1, 2);
        b[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(messages(&b).is_err());
        b[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(messages(&b).is_err());
        // Attribute claiming more than the payload.
        let mut p = vec![2, 24, 0, 0, 1, 0, 0, 0];
        p.extend_from_slice(&200u16.to_ne_bytes());
        p.extend_from_slice(&IFA_LOCAL.to_ne_bytes());
        assert!(parse_addr(&p).is_err());
        for n in 0..p.len() {
            let _ = parse_addr(&p[..n]);
            let _ = parse_link(&p[..n]);
            let _ = messages(&p[..n]);
        }
    }
}
