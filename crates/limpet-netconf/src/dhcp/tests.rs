#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::wire::tests::Reply;
use super::wire::{opt, MessageType};
use super::*;

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);

fn xid_of(t: &Transmit) -> u32 {
    u32::from_be_bytes(t.bytes[4..8].try_into().unwrap())
}

fn msg_type_of(t: &Transmit) -> u8 {
    let opts = &t.bytes[240..];
    assert_eq!(opts[0], opt::MESSAGE_TYPE);
    opts[2]
}

fn has_option(t: &Transmit, code: u8) -> bool {
    let mut o = &t.bytes[240..];
    while let [c, rest @ ..] = o {
        match *c {
            0 => o = rest,
            255 => return false,
            _ => {
                if *c == code {
                    return true;
                }
                let len = rest[0] as usize;
                o = &rest[1 + len..];
            }
        }
    }
    false
}

fn reply(kind: MessageType, xid: u32, lease_secs: u32) -> Vec<u8> {
    Reply {
        kind: kind as u8,
        xid,
        yiaddr: ADDR,
        mac: MAC,
        options: vec![
            (opt::SERVER_ID, SERVER.octets().to_vec()),
            (opt::SUBNET_MASK, vec![255, 255, 255, 0]),
            (opt::ROUTER, SERVER.octets().to_vec()),
            (opt::DNS, vec![192, 0, 2, 53]),
            (opt::LEASE_TIME, lease_secs.to_be_bytes().to_vec()),
        ],
    }
    .encode()
}

/// Runs DISCOVER/OFFER/REQUEST/ACK and returns the bound client and its lease.
fn bound(now: Instant) -> (Client, Lease) {
    let mut c = Client::new(MAC, now);
    let d = c.poll_transmit(now).unwrap();
    assert_eq!(msg_type_of(&d), 1);
    assert_eq!(d.dst, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67));
    assert!(
        c.poll_transmit(now).is_none(),
        "no second DISCOVER before its delay"
    );
    assert_eq!(
        c.handle(now, &reply(MessageType::Offer, xid_of(&d), 120)),
        None
    );
    assert_eq!(c.state(), StateKind::Requesting);
    let r = c.poll_transmit(now).unwrap();
    assert_eq!(msg_type_of(&r), 3);
    assert!(has_option(&r, opt::SERVER_ID) && has_option(&r, opt::REQUESTED_IP));
    assert_eq!(xid_of(&r), xid_of(&d));
    let Some(Event::Bound(lease)) = c.handle(now, &reply(MessageType::Ack, xid_of(&r), 120)) else {
        panic!("no lease");
    };
    (c, lease)
}

#[test]
fn full_exchange_yields_a_lease_with_the_options() {
    let now = Instant::now();
    let (c, lease) = bound(now);
    assert_eq!(c.state(), StateKind::Bound);
    assert_eq!(lease.addr, "192.0.2.50/24".parse().unwrap());
    assert_eq!(lease.router, Some(SERVER));
    assert_eq!(lease.dns, vec![Ipv4Addr::new(192, 0, 2, 53)]);
    assert_eq!(lease.server, SERVER);
    assert_eq!(lease.lease, Duration::from_secs(120));
    assert_eq!(lease.t1, Duration::from_secs(60));
    assert_eq!(lease.t2, Duration::from_secs(105));
    assert_eq!(c.next_deadline(), now + Duration::from_secs(60));
}

#[test]
fn replies_for_other_transactions_or_clients_are_ignored() {
    let now = Instant::now();
    let mut c = Client::new(MAC, now);
    let d = c.poll_transmit(now).unwrap();
    assert_eq!(
        c.handle(now, &reply(MessageType::Offer, xid_of(&d) ^ 1, 120)),
        None
    );
    assert_eq!(c.state(), StateKind::Selecting);
    let mut other = reply(MessageType::Offer, xid_of(&d), 120);
    other[28] ^= 0xff;
    assert_eq!(c.handle(now, &other), None);
    assert_eq!(c.state(), StateKind::Selecting);
    // An ACK while selecting is not an offer.
    assert_eq!(
        c.handle(now, &reply(MessageType::Ack, xid_of(&d), 120)),
        None
    );
    assert_eq!(c.state(), StateKind::Selecting);
}

#[test]
fn discover_backs_off_exponentially_with_bounded_jitter() {
    let start = Instant::now();
    let mut c = Client::new(MAC, start);
    let mut now = start;
    let mut last = start;
    let mut gaps = Vec::new();
    for _ in 0..10 {
        assert!(c.poll_transmit(now).is_some());
        gaps.push(now - last);
        last = now;
        now = c.next_deadline();
    }
    for (i, gap) in gaps.iter().enumerate().skip(1) {
        let base = 4u64 << (i - 1).min(4);
        let base = Duration::from_secs(base.min(64));
        assert!(
            *gap >= base - JITTER && *gap <= base + JITTER,
            "gap {i}: {gap:?}"
        );
    }
}

#[test]
fn requesting_gives_up_after_max_requests_and_rediscovers() {
    let start = Instant::now();
    let mut c = Client::new(MAC, start);
    let d = c.poll_transmit(start).unwrap();
    c.handle(start, &reply(MessageType::Offer, xid_of(&d), 120));
    let mut now = start;
    for _ in 0..MAX_REQUESTS {
        let t = c.poll_transmit(now).unwrap();
        assert_eq!(msg_type_of(&t), 3);
        now = c.next_deadline();
    }
    let t = c.poll_transmit(now).unwrap();
    assert_eq!(msg_type_of(&t), 1, "back to DISCOVER");
    assert_ne!(xid_of(&t), xid_of(&d));
}

#[test]
fn renewal_at_t1_is_unicast_and_ack_renews() {
    let now = Instant::now();
    let (mut c, lease) = bound(now);
    assert!(c.poll_transmit(now + Duration::from_secs(59)).is_none());
    let t1 = lease.renew_at();
    let r = c.poll_transmit(t1).unwrap();
    assert_eq!(c.state(), StateKind::Renewing);
    assert_eq!(r.dst, SocketAddrV4::new(SERVER, 67));
    assert_eq!(msg_type_of(&r), 3);
    assert_eq!(&r.bytes[12..16], &ADDR.octets());
    assert!(!has_option(&r, opt::SERVER_ID) && !has_option(&r, opt::REQUESTED_IP));
    // Retransmission: half the time to T2, but at least 60 s, so here at T2 itself.
    assert_eq!(c.next_deadline(), lease.rebind_at());
    let ev = c.handle(t1, &reply(MessageType::Ack, xid_of(&r), 120));
    let Some(Event::Renewed(l)) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(l.acquired, t1);
    assert_eq!(c.state(), StateKind::Bound);
}

#[test]
fn rebinding_at_t2_broadcasts_and_expiry_loses_the_lease() {
    let now = Instant::now();
    let (mut c, lease) = bound(now);
    let r = c.poll_transmit(lease.rebind_at()).unwrap();
    assert_eq!(c.state(), StateKind::Rebinding);
    assert_eq!(r.dst, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67));
    assert_eq!(&r.bytes[12..16], &ADDR.octets());
    assert_eq!(c.next_deadline(), lease.expires_at());
    assert_eq!(
        c.poll_event(lease.expires_at()),
        Some(Event::Lost(lease.clone()))
    );
    assert_eq!(c.state(), StateKind::Init);
    assert!(c.next_deadline() >= lease.expires_at() + RESTART_DELAY);
    assert_eq!(c.poll_event(lease.expires_at()), None);
}

#[test]
fn expiry_seen_first_by_handle_is_still_reported() {
    let now = Instant::now();
    let (mut c, lease) = bound(now);
    let late = lease.expires_at() + Duration::from_secs(1);
    let ev = c.handle(late, &reply(MessageType::Ack, 1, 120));
    assert_eq!(ev, Some(Event::Lost(lease)));
}

#[test]
fn nak_while_renewing_loses_the_lease() {
    let now = Instant::now();
    let (mut c, lease) = bound(now);
    let r = c.poll_transmit(lease.renew_at()).unwrap();
    let ev = c.handle(lease.renew_at(), &reply(MessageType::Nak, xid_of(&r), 0));
    assert_eq!(ev, Some(Event::Lost(lease)));
    assert_eq!(c.state(), StateKind::Init);
}

#[test]
fn ack_with_another_address_does_not_renew() {
    let now = Instant::now();
    let (mut c, lease) = bound(now);
    let r = c.poll_transmit(lease.renew_at()).unwrap();
    let mut other = reply(MessageType::Ack, xid_of(&r), 120);
    other[19] = 99;
    assert_eq!(c.handle(lease.renew_at(), &other), None);
    assert_eq!(c.state(), StateKind::Renewing);
}

#[test]
fn tiny_and_inconsistent_lease_times_are_sanitised() {
    let now = Instant::now();
    let mut c = Client::new(MAC, now);
    let d = c.poll_transmit(now).unwrap();
    c.handle(now, &reply(MessageType::Offer, xid_of(&d), 0));
    let r = c.poll_transmit(now).unwrap();
    let mut ack = Reply {
        kind: MessageType::Ack as u8,
        xid: xid_of(&r),
        yiaddr: ADDR,
        mac: MAC,
        options: vec![
            (opt::SERVER_ID, SERVER.octets().to_vec()),
            (opt::LEASE_TIME, 0u32.to_be_bytes().to_vec()),
            (opt::RENEWAL_TIME, 500u32.to_be_bytes().to_vec()),
            (opt::REBINDING_TIME, 100u32.to_be_bytes().to_vec()),
        ],
    };
    let Some(Event::Bound(l)) = c.handle(now, &ack.encode()) else {
        panic!()
    };
    assert_eq!(l.lease, MIN_LEASE);
    assert!(l.t1 <= l.t2 && l.t2 <= l.lease);
    assert_eq!(l.addr.prefix_len(), 24, "classful default without a mask");
    // An ACK without a lease time is not a lease.
    ack.options.retain(|(c, _)| *c == opt::SERVER_ID);
    let mut c = Client::new(MAC, now);
    let d = c.poll_transmit(now).unwrap();
    c.handle(now, &reply(MessageType::Offer, xid_of(&d), 0));
    let r = c.poll_transmit(now).unwrap();
    ack.xid = xid_of(&r);
    assert_eq!(c.handle(now, &ack.encode()), None);
}

#[test]
fn random_and_mutated_datagrams_never_panic() {
    let now = Instant::now();
    let mut rng = XorShift(0x1234_5678_9abc_def0);
    let mut c = Client::new(MAC, now);
    let d = c.poll_transmit(now).unwrap();
    let good = reply(MessageType::Offer, xid_of(&d), 120);
    for i in 0..50_000u32 {
        let mut b = if i % 2 == 0 {
            good.clone()
        } else {
            let len = rng.below(700);
            (0..len).map(|_| rng.byte()).collect()
        };
        if !b.is_empty() {
            for _ in 0..rng.below(8) {
                let idx = rng.below(b.len());
                b[idx] = rng.byte();
            }
            if rng.below(4) == 0 {
                let cut = rng.below(b.len() + 1);
                b.truncate(cut);
            }
        }
        let _ = c.handle(now, &b);
        if c.state() != StateKind::Selecting {
            c = Client::new(MAC, now);
            let _ = c.poll_transmit(now);
        }
    }
}

/// A tiny deterministic generator for the fuzz-ish tests.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
}
