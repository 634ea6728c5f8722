#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::wire::{Header, TYPE_A, TYPE_AAAA, TYPE_CNAME};
use super::*;

const CLIENT: &str = "127.0.0.1:40000";
const UP1: &str = "192.0.2.53:53";
const UP2: &str = "198.51.100.53:53";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn stub_with(limits: Limits, now: Instant) -> Stub {
    Stub::new(
        Config {
            allow: vec![
                DnsName::parse("api.test").unwrap(),
                DnsName::parse("www.test").unwrap(),
            ],
            upstreams: vec![sa(UP1), sa(UP2)],
            limits,
            case: CaseRandomization::Randomize,
        },
        now,
    )
}

fn stub(now: Instant) -> Stub {
    stub_with(Limits::default(), now)
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for l in name.split('.') {
        b.push(u8::try_from(l.len()).unwrap());
        b.extend_from_slice(l.as_bytes());
    }
    b.push(0);
    b
}

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&encode_name(name));
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b
}

struct Rr<'a> {
    owner: &'a str,
    rtype: u16,
    ttl: u32,
    data: Vec<u8>,
}

fn a(owner: &str, ip: [u8; 4], ttl: u32) -> Rr<'_> {
    Rr {
        owner,
        rtype: TYPE_A,
        ttl,
        data: ip.to_vec(),
    }
}

fn cname<'a>(owner: &'a str, target: &str, ttl: u32) -> Rr<'a> {
    Rr {
        owner,
        rtype: TYPE_CNAME,
        ttl,
        data: encode_name(target),
    }
}

/// A response to the upstream query `q` (id and question echoed) with `rcode` and answers.
fn response(q: &[u8], rcode: u8, answers: &[Rr<'_>]) -> Vec<u8> {
    let mut b = q[..2].to_vec();
    b.extend_from_slice(&[0x81, 0x80 | rcode, 0, 1]);
    b.extend_from_slice(&u16::try_from(answers.len()).unwrap().to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(&q[12..]);
    for rr in answers {
        b.extend_from_slice(&encode_name(rr.owner));
        b.extend_from_slice(&rr.rtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&rr.ttl.to_be_bytes());
        b.extend_from_slice(&u16::try_from(rr.data.len()).unwrap().to_be_bytes());
        b.extend_from_slice(&rr.data);
    }
    b
}

fn rcode_of(b: &[u8]) -> u8 {
    Header::parse(b).unwrap().rcode()
}

fn only_reply(actions: &[Action]) -> &[u8] {
    match actions {
        [Action::Reply { to, bytes }] => {
            assert_eq!(*to, sa(CLIENT));
            bytes
        }
        other => panic!("expected one reply, got {other:?}"),
    }
}

fn only_upstream(actions: &[Action]) -> (SocketAddr, Vec<u8>) {
    match actions {
        [Action::SendUpstream { to, bytes }] => (*to, bytes.clone()),
        other => panic!("expected one upstream query, got {other:?}"),
    }
}

/// The A answers of a reply: (address, ttl).
fn answers(b: &[u8]) -> Vec<(Ipv4Addr, u32)> {
    let h = Header::parse(b).unwrap();
    let (_, mut pos) = wire::read_question(b, false).unwrap();
    let mut out = Vec::new();
    for _ in 0..h.ancount {
        assert_eq!(&b[pos..pos + 2], &[0xc0, 0x0c]);
        let ttl = u32::from_be_bytes(b[pos + 6..pos + 10].try_into().unwrap());
        let ip = Ipv4Addr::new(b[pos + 12], b[pos + 13], b[pos + 14], b[pos + 15]);
        out.push((ip, ttl));
        pos += 16;
    }
    assert_eq!(pos, b.len());
    out
}

#[test]
fn names_off_the_allowlist_are_refused_without_upstream_traffic() {
    let now = Instant::now();
    let mut s = stub(now);
    let r = s.on_query(now, sa(CLIENT), &query(1, "evil.test", TYPE_A));
    let b = only_reply(&r);
    assert_eq!(rcode_of(b), Rcode::Refused as u8);
    assert_eq!(&b[..2], &[0, 1]);
    // A suffix or prefix of an allowed name is not allowed.
    for n in ["x.api.test", "api.test.evil", "test"] {
        let r = s.on_query(now, sa(CLIENT), &query(2, n, TYPE_A));
        assert_eq!(rcode_of(only_reply(&r)), Rcode::Refused as u8, "{n}");
    }
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn aaaa_is_empty_noerror_and_other_types_are_refused() {
    let now = Instant::now();
    let mut s = stub(now);
    let r = s.on_query(now, sa(CLIENT), &query(3, "api.test", TYPE_AAAA));
    let b = only_reply(&r);
    assert_eq!(rcode_of(b), 0);
    assert!(answers(b).is_empty());
    for t in [TYPE_CNAME, 16, 255, 15] {
        let r = s.on_query(now, sa(CLIENT), &query(4, "api.test", t));
        assert_eq!(rcode_of(only_reply(&r)), Rcode::Refused as u8);
    }
    let mut chaos = query(5, "api.test", TYPE_A);
    let n = chaos.len();
    chaos[n - 1] = 3;
    assert_eq!(
        rcode_of(only_reply(&s.on_query(now, sa(CLIENT), &chaos))),
        Rcode::Refused as u8
    );
}

#[test]
fn malformed_queries_get_formerr_notimp_or_nothing() {
    let now = Instant::now();
    let mut s = stub(now);
    assert!(s.on_query(now, sa(CLIENT), &[1, 2, 3]).is_empty());
    let mut resp = query(6, "api.test", TYPE_A);
    resp[2] |= 0x80;
    assert!(
        s.on_query(now, sa(CLIENT), &resp).is_empty(),
        "responses are never answered"
    );
    let mut two = query(7, "api.test", TYPE_A);
    two[5] = 2;
    assert_eq!(
        rcode_of(only_reply(&s.on_query(now, sa(CLIENT), &two))),
        Rcode::FormErr as u8
    );
    let q = query(8, "api.test", TYPE_A);
    assert_eq!(
        rcode_of(only_reply(&s.on_query(now, sa(CLIENT), &q[..q.len() - 3]))),
        Rcode::FormErr as u8
    );
    let mut compressed = q[..12].to_vec();
    compressed.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    assert_eq!(
        rcode_of(only_reply(&s.on_query(now, sa(CLIENT), &compressed))),
        Rcode::FormErr as u8
    );
    let mut notify = query(9, "api.test", TYPE_A);
    notify[2] |= 4 << 3;
    assert_eq!(
        rcode_of(only_reply(&s.on_query(now, sa(CLIENT), &notify))),
        Rcode::NotImp as u8
    );
}

#[test]
fn allowed_name_resolves_through_a_cname_chain_resolved_before_reply() {
    let now = Instant::now();
    let mut s = stub(now);
    let (to, q) = only_upstream(&s.on_query(now, sa(CLIENT), &query(0xbeef, "WWW.test", TYPE_A)));
    assert_eq!(to, sa(UP1));
    assert_eq!(
        q[12..].to_ascii_lowercase(),
        [encode_name("www.test"), vec![0, 1, 0, 1]].concat()
    );
    assert_eq!(s.next_deadline(), Some(now + Duration::from_secs(2)));
    // Owner names in other case than asked still match: names compare case-insensitively.
    let owner = format!("{}.TEST", String::from_utf8_lossy(&q[13..16]));
    let resp = response(
        &q,
        0,
        &[
            cname(&owner, "edge.cdn.test", 300),
            cname("edge.cdn.test", "api.test", 120),
            a("api.test", [203, 0, 113, 10], 600),
            a("api.test", [203, 0, 113, 11], 60),
            a("unrelated.test", [198, 51, 100, 1], 600),
        ],
    );
    let acts = s.on_upstream(now, sa(UP1), &resp);
    let [Action::Resolved { name, addrs }, Action::Reply { to, bytes }] = &acts[..] else {
        panic!("{acts:?}");
    };
    assert_eq!(name.as_str(), "www.test");
    let ttl = Duration::from_secs(60);
    assert_eq!(
        addrs,
        &vec![
            (Ipv4Addr::new(203, 0, 113, 10), ttl),
            (Ipv4Addr::new(203, 0, 113, 11), ttl)
        ]
    );
    assert_eq!(*to, sa(CLIENT));
    assert_eq!(&bytes[..2], &[0xbe, 0xef]);
    assert_eq!(
        &bytes[12..22],
        &encode_name("WWW.test")[..],
        "question echoed as the client sent it"
    );
    assert_eq!(
        answers(bytes),
        vec![
            (Ipv4Addr::new(203, 0, 113, 10), 60),
            (Ipv4Addr::new(203, 0, 113, 11), 60)
        ]
    );
    assert_eq!(s.next_deadline(), None);

    // Cached: answered at once with the remaining TTL, nothing upstream.
    let later = now + Duration::from_secs(20);
    let r = s.on_query(later, sa(CLIENT), &query(2, "www.test", TYPE_A));
    assert_eq!(
        answers(only_reply(&r)),
        vec![
            (Ipv4Addr::new(203, 0, 113, 10), 40),
            (Ipv4Addr::new(203, 0, 113, 11), 40)
        ]
    );
    // Expired: asked again.
    let expired = now + Duration::from_secs(61);
    only_upstream(&s.on_query(expired, sa(CLIENT), &query(3, "www.test", TYPE_A)));
}

/// After PID 1 replaces its ruleset (island mode), a cached name is asked upstream again,
/// so its answer is `Resolved` into the new, empty set before the task hears it.
#[test]
fn forgotten_answers_are_asked_again() {
    let now = Instant::now();
    let mut s = stub(now);
    let (_, q) = only_upstream(&s.on_query(now, sa(CLIENT), &query(1, "api.test", TYPE_A)));
    s.on_upstream(
        now,
        sa(UP1),
        &response(&q, 0, &[a("api.test", [203, 0, 113, 10], 600)]),
    );
    only_reply(&s.on_query(now, sa(CLIENT), &query(2, "api.test", TYPE_A)));
    s.forget_answers();
    only_upstream(&s.on_query(now, sa(CLIENT), &query(3, "api.test", TYPE_A)));
}

/// What PID 1 is told and what the client is told.
type Told = (Vec<(Ipv4Addr, Duration)>, Vec<(Ipv4Addr, u32)>);

fn resolve_with_ttl(ttl: u32) -> Told {
    let now = Instant::now();
    let mut s = stub(now);
    let (_, q) = only_upstream(&s.on_query(now, sa(CLIENT), &query(1, "api.test", TYPE_A)));
    let acts = s.on_upstream(
        now,
        sa(UP1),
        &response(&q, 0, &[a("api.test", [203, 0, 113, 10], ttl)]),
    );
    let [Action::Resolved { addrs, .. }, Action::Reply { bytes, .. }] = &acts[..] else {
        panic!("{acts:?}");
    };
    (addrs.clone(), answers(bytes))
}

#[test]
fn ttl_is_clamped_to_five_seconds_and_one_day() {
    let ip = Ipv4Addr::new(203, 0, 113, 10);
    assert_eq!(resolve_with_ttl(0), (vec![(ip, MIN_TTL)], vec![(ip, 5)]));
    assert_eq!(
        resolve_with_ttl(10_000_000),
        (vec![(ip, MAX_TTL)], vec![(ip, 86_400)])
    );
    assert_eq!(
        resolve_with_ttl(0x8000_0001),
        (vec![(ip, MIN_TTL)], vec![(ip, 5)]),
        "RFC 2181: top bit means 0"
    );
    assert_eq!(
        resolve_with_ttl(300),
        (vec![(ip, Duration::from_secs(300))], vec![(ip, 300)])
    );
}

#[test]
fn mismatched_id_source_or_question_is_ignored() {
    let now = Instant::now();
    let mut s = stub(now);
    let (_, q) = only_upstream(&s.on_query(now, sa(CLIENT), &query(1, "api.test", TYPE_A)));
    let good = response(&q, 0, &[a("api.test", [203, 0, 113, 10], 60)]);
    let mut wrong_id = good.clone();
    wrong_id[1] ^= 1;
    assert!(s.on_upstream(now, sa(UP1), &wrong_id).is_empty());
    assert!(
        s.on_upstream(now, sa(UP2), &good).is_empty(),
        "from another upstream"
    );
    assert!(
        s.on_upstream(now, sa("192.0.2.53:5353"), &good).is_empty(),
        "from another port"
    );
    let mut other_case = good.clone();
    other_case[13] ^= 0x20;
    assert!(
        s.on_upstream(now, sa(UP1), &other_case).is_empty(),
        "0x20 case differs"
    );
    let mut not_response = good.clone();
    not_response[2] &= 0x7f;
    assert!(s.on_upstream(now, sa(UP1), &not_response).is_empty());
    // The genuine answer still works afterwards.
    assert!(matches!(
        s.on_upstream(now, sa(UP1), &good)[..],
        [Action::Resolved { .. }, Action::Reply { .. }]
    ));
    // And a replay of it is ignored.
    assert!(s.on_upstream(now, sa(UP1), &good).is_empty());
}

#[test]
fn truncated_or_failing_upstream_moves_to_the_next_one() {
    let now = Instant::now();
    let mut s = stub(now);
    let (_, q) = only_upstream(&s.on_query(now, sa(CLIENT), &query(1, "api.test", TYPE_A)));
    let good = response(&q, 0, &[a("api.test", [203, 0, 113, 10], 60)]);
    let (to, q2) = only_upstream(&s.on_upstream(now, sa(UP1), &good[..good.len() - 2]));
    assert_eq!(to, sa(UP2));
    assert_ne!(&q2[..2], &q[..2], "fresh id");
    let mut tc = response(&q2, 0, &[]);
    tc[2] |= 0x02;
    let (to, q3) = only_upstream(&s.on_upstream(now, sa(UP2), &tc));
    assert_eq!(to, sa(UP1));
    let (to, q4) = only_upstream(&s.on_upstream(now, sa(UP1), &response(&q3, 2, &[])));
    assert_eq!(to, sa(UP2));
    // Fourth attempt was the last.
    let acts = s.on_upstream(now, sa(UP2), &response(&q4, 5, &[]));
    assert_eq!(rcode_of(only_reply(&acts)), Rcode::ServFail as u8);
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn timeouts_retry_across_upstreams_then_fail() {
    let now = Instant::now();
    let mut s = stub(now);
    let (to, _) = only_upstream(&s.on_query(now, sa(CLIENT), &query(1, "api.test", TYPE_A)));
    assert_eq!(to, sa(UP1));
    assert!(s.on_timer(now + Duration::from_secs(1)).is_empty());
    let mut seen = vec![to];
    for _ in 0..3 {
        let t = s.next_deadline().unwrap();
        let (to, _) = only_upstream(&s.on_timer(t));
        seen.push(to);
    }
    assert_eq!(seen, vec![sa(UP1), sa(UP2), sa(UP1), sa(UP2)]);
    let t = s.next_deadline().unwrap();
    assert_eq!(rcode_of(only_reply(&s.on_timer(t))), Rcode::ServFail as u8);
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn nxdomain_is_passed_on_and_nodata_is_empty() {
    let now = Instant::now();
    let mut s = stub(now);
    let (_, q) = only_upstream(&s.on_query(now, sa(CLIENT), &query(1, "api.test", TYPE_A)));
    assert_eq!(
        rcode_of(only_reply(&s.on_upstream(
            now,
            sa(UP1),
            &response(&q, 3, &[])
        ))),
        3
    );
    let (_, q) = only_upstream(&s.on_query(now, sa(CLIENT), &query(2, "api.test", TYPE_A)));
    let r = s.on_upstream(
        now,
        sa(UP1),
        &response(&q, 0, &[cname("api.test", "gone.test", 60)]),
    );
    let b = only_reply(&r);
    assert_eq!(rcode_of(b), 0);
    assert!(answers(b).is_empty());
}

#[test]
fn concurrent_queries_for_one_name_share_one_upstream_query() {
    let now = Instant::now();
    let mut s = stub(now);
    let (_, q) = only_upstream(&s.on_query(now, sa(CLIENT), &query(1, "api.test", TYPE_A)));
    assert!(s
        .on_query(now, sa("127.0.0.2:1000"), &query(2, "api.test", TYPE_A))
        .is_empty());
    assert!(
        s.on_query(now, sa("127.0.0.2:1000"), &query(2, "api.test", TYPE_A))
            .is_empty(),
        "retransmission"
    );
    let acts = s.on_upstream(
        now,
        sa(UP1),
        &response(&q, 0, &[a("api.test", [203, 0, 113, 10], 60)]),
    );
    assert_eq!(acts.len(), 3, "{acts:?}");
    assert!(matches!(acts[0], Action::Resolved { .. }));
}

#[test]
fn upstream_rate_limit_refuses_new_names() {
    let now = Instant::now();
    let limits = Limits {
        upstream: Rate {
            per_second: 1,
            burst: 2,
        },
        ..Limits::default()
    };
    let mut s = Stub::new(
        Config {
            allow: (0..5)
                .map(|i| DnsName::parse(&format!("n{i}.test")).unwrap())
                .collect(),
            upstreams: vec![sa(UP1)],
            limits,
            case: CaseRandomization::Preserve,
        },
        now,
    );
    let mut sent = 0;
    let mut refused = 0;
    for i in 0..5 {
        match &s.on_query(now, sa(CLIENT), &query(i, &format!("n{i}.test"), TYPE_A))[..] {
            [Action::SendUpstream { bytes, .. }] => {
                sent += 1;
                assert_eq!(
                    &bytes[12..],
                    &[encode_name(&format!("n{i}.test")), vec![0, 1, 0, 1]].concat()[..]
                );
            }
            [Action::Reply { bytes, .. }] => {
                assert_eq!(rcode_of(bytes), Rcode::Refused as u8);
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((sent, refused), (2, 3));
}

#[test]
fn per_client_rate_limit_drops_silently() {
    let now = Instant::now();
    let limits = Limits {
        per_client: Rate {
            per_second: 1,
            burst: 3,
        },
        ..Limits::default()
    };
    let mut s = stub_with(limits, now);
    let answered = (0..10)
        .filter(|i| {
            !s.on_query(now, sa(CLIENT), &query(*i, "evil.test", TYPE_A))
                .is_empty()
        })
        .count();
    assert_eq!(answered, 3);
    assert!(
        !s.on_query(now, sa("127.0.0.9:53"), &query(1, "evil.test", TYPE_A))
            .is_empty(),
        "other sources unaffected"
    );
    assert!(!s
        .on_query(
            now + Duration::from_secs(1),
            sa(CLIENT),
            &query(1, "evil.test", TYPE_A)
        )
        .is_empty());
}

#[test]
fn a_query_before_any_upstream_waits_for_one_and_is_asked_then() {
    let now = Instant::now();
    let mut s = stub(now);
    assert!(s.set_upstreams(now, Vec::new()).is_empty());
    // Early in boot: no answer yet, and no failure either.
    assert!(s
        .on_query(now, sa(CLIENT), &query(1, "api.test", TYPE_A))
        .is_empty());
    assert!(
        s.on_query(now, sa(CLIENT), &query(1, "api.test", TYPE_A))
            .is_empty(),
        "a retransmission is not a second waiter"
    );
    assert_eq!(
        s.next_deadline(),
        Some(now + Limits::default().upstream_wait)
    );
    assert!(s.on_timer(now + Duration::from_secs(1)).is_empty());
    // The lease's server arrives: the waiting name is asked at once, and answered.
    let later = now + Duration::from_secs(2);
    let (to, q) = only_upstream(&s.set_upstreams(later, vec![sa(UP2)]));
    assert_eq!(to, sa(UP2));
    let actions = s.on_upstream(
        later,
        sa(UP2),
        &response(&q, 0, &[a("api.test", [203, 0, 113, 10], 60)]),
    );
    assert!(
        matches!(&actions[0], Action::Resolved { addrs, .. } if addrs[0].0 == Ipv4Addr::new(203, 0, 113, 10))
    );
    let reply = only_reply(&actions[1..]);
    assert_eq!(rcode_of(reply), 0);
    assert_eq!(answers(reply), [(Ipv4Addr::new(203, 0, 113, 10), 60)]);
}

#[test]
fn a_query_that_waits_in_vain_gets_servfail_at_the_end_of_the_wait() {
    let now = Instant::now();
    let mut s = stub(now);
    s.set_upstreams(now, Vec::new());
    assert!(s
        .on_query(now, sa(CLIENT), &query(7, "api.test", TYPE_A))
        .is_empty());
    let wait = Limits::default().upstream_wait;
    assert!(s.on_timer(now + wait - Duration::from_millis(1)).is_empty());
    assert_eq!(rcode_of(only_reply(&s.on_timer(now + wait))), 2);
    assert_eq!(s.next_deadline(), None);
    // Upstreams known again: a new query goes upstream at once.
    s.set_upstreams(now + wait, vec![sa(UP2)]);
    assert_eq!(
        only_upstream(&s.on_query(now + wait, sa(CLIENT), &query(8, "api.test", TYPE_A))).0,
        sa(UP2)
    );
}

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

fn mutate(rng: &mut XorShift, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    match rng.below(4) {
        0 => {
            let len = rng.below(600);
            b = (0..len).map(|_| rng.byte()).collect();
        }
        1 => {
            let cut = rng.below(b.len() + 1);
            b.truncate(cut);
        }
        _ => {
            for _ in 0..=rng.below(6) {
                if b.is_empty() {
                    break;
                }
                let i = rng.below(b.len());
                b[i] = match rng.below(3) {
                    0 => rng.byte(),
                    1 => 0xc0 | (rng.byte() & 0x3f),
                    _ => b[i].wrapping_add(1),
                };
            }
        }
    }
    b
}

#[test]
fn hundred_thousand_random_and_mutated_packets_never_panic() {
    let now = Instant::now();
    let limits = Limits {
        per_client: Rate {
            per_second: 1_000_000,
            burst: 1_000_000,
        },
        upstream: Rate {
            per_second: 1_000_000,
            burst: 1_000_000,
        },
        ..Limits::default()
    };
    let mut s = stub_with(limits, now);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let good_query = query(1, "api.test", TYPE_A);
    for i in 0..50_000u32 {
        let pkt = mutate(&mut rng, &good_query);
        let client = SocketAddr::from(([127, 0, 0, u8::try_from(i % 200).unwrap() + 1], 4000));
        for act in s.on_query(now, client, &pkt) {
            if let Action::Reply { bytes, .. } = act {
                assert!(bytes.len() <= wire::MAX_UDP_REPLY);
            }
        }
    }
    for _ in 0..50_000u32 {
        // Keep a query in flight so that mutated responses reach the parser.
        if s.next_deadline().is_none() {
            let _ = s.on_query(now, sa(CLIENT), &query(1, "api.test", TYPE_A));
        }
        let Some((id, p)) = s.pending.iter().next() else {
            continue;
        };
        let q = wire::build_query(*id, &p.asked.name);
        let base = response(
            &q,
            0,
            &[
                cname("api.test", "x.test", 5),
                a("x.test", [203, 0, 113, 1], 5),
            ],
        );
        let pkt = mutate(&mut rng, &base);
        let to = p.to;
        let _ = s.on_upstream(now, to, &pkt);
        if rng.below(64) == 0 {
            let _ = s.on_timer(now + Duration::from_secs(3));
        }
    }
}
