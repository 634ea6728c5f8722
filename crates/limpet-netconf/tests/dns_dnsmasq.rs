#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The DNS stub driven with real UDP sockets against a real dnsmasq upstream, all inside
//! a private network namespace (so port 53 and 127.0.0.53 are the test's own).

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::{Dnsmasq, Netns};
use limpet_netconf::dns::{Action, CaseRandomization, Config, DnsName, Limits, Stub};

const UPSTREAM: &str = "127.0.0.1:53";
const STUB: &str = "127.0.0.53:53";
const API: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// What one client query produced.
#[derive(Debug)]
struct Outcome {
    rcode: u8,
    answers: Vec<(Ipv4Addr, u32)>,
    /// Upstream queries the stub sent for it.
    upstream_queries: usize,
}

/// The PID 1 side: sockets, and the "address set" filled from `Resolved`.
struct Harness {
    stub: Stub,
    listen: UdpSocket,
    upstream: UdpSocket,
    set: Vec<(String, Ipv4Addr, Duration)>,
}

impl Harness {
    /// Performs actions in order; a reply must never precede the set update it depends on.
    fn perform(&mut self, actions: Vec<Action>, sent: &mut usize) {
        for a in actions {
            match a {
                Action::SendUpstream { to, bytes } => {
                    *sent += 1;
                    self.upstream.send_to(&bytes, to).unwrap();
                }
                Action::Reply { to, bytes } => {
                    self.listen.send_to(&bytes, to).unwrap();
                }
                Action::Resolved { name, addrs } => {
                    for (ip, ttl) in addrs {
                        self.set.push((name.to_string(), ip, ttl));
                    }
                }
            }
        }
    }

    /// Sends `query` from a fresh client socket and runs the stub until the client has
    /// its reply (bounded by 15 s of real time).
    fn ask(&mut self, name: &str, qtype: u16) -> Outcome {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_nonblocking(true).unwrap();
        let id = 0x4242;
        client.send_to(&query(id, name, qtype), STUB).unwrap();
        let mut sent = 0;
        let mut buf = [0u8; 1500];
        let give_up = Instant::now() + Duration::from_secs(15);
        while Instant::now() < give_up {
            if let Ok((n, _)) = client.recv_from(&mut buf) {
                let b = &buf[..n];
                assert_eq!(&b[..2], &id.to_be_bytes(), "reply carries the client's id");
                return Outcome {
                    rcode: b[3] & 0xf,
                    answers: answers(b),
                    upstream_queries: sent,
                };
            }
            while let Ok((n, from)) = self.listen.recv_from(&mut buf) {
                let acts = self.stub.on_query(Instant::now(), from, &buf[..n]);
                self.perform(acts, &mut sent);
            }
            while let Ok((n, from)) = self.upstream.recv_from(&mut buf) {
                let acts = self.stub.on_upstream(Instant::now(), from, &buf[..n]);
                self.perform(acts, &mut sent);
            }
            if self
                .stub
                .next_deadline()
                .is_some_and(|d| d <= Instant::now())
            {
                let acts = self.stub.on_timer(Instant::now());
                self.perform(acts, &mut sent);
            }
            common::wait_readable(self.upstream.as_fd(), Duration::from_millis(5));
        }
        panic!("no reply for {name}");
    }
}

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        b.push(u8::try_from(l.len()).unwrap());
        b.extend_from_slice(l.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b
}

/// A records of a stub reply (its answers are always `c0 0c` + fixed fields).
fn answers(b: &[u8]) -> Vec<(Ipv4Addr, u32)> {
    let an = u16::from_be_bytes([b[6], b[7]]);
    let mut pos = 12;
    while b[pos] != 0 {
        pos += 1 + usize::from(b[pos]);
    }
    pos += 5;
    (0..an)
        .map(|i| {
            let r = pos + usize::from(i) * 16;
            let ttl = u32::from_be_bytes(b[r + 6..r + 10].try_into().unwrap());
            (
                Ipv4Addr::new(b[r + 12], b[r + 13], b[r + 14], b[r + 15]),
                ttl,
            )
        })
        .collect()
}

/// Waits until dnsmasq answers on port 53 (bounded).
fn wait_for_dnsmasq(server: &mut Dnsmasq) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 512];
    for _ in 0..50 {
        server.assert_running();
        s.send_to(&query(1, "api.test", 1), UPSTREAM).unwrap();
        if s.recv_from(&mut buf).is_ok() {
            return;
        }
    }
    panic!("dnsmasq did not answer within 10 s:\n{}", server.log_text());
}

#[test]
fn stub_resolves_allowed_names_through_real_dnsmasq() {
    common::require_root();
    common::dnsmasq();
    let ns = Netns::new("dns");
    let mut server = Dnsmasq::start(
        &ns,
        "dns",
        &[
            "--port=53".into(),
            "--listen-address=127.0.0.1".into(),
            "--host-record=api.test,203.0.113.10".into(),
            "--cname=www.test,api.test".into(),
            "--address=/evil.test/203.0.113.66".into(),
            "--local-ttl=3".into(),
            "--log-queries".into(),
        ],
    );
    ns.enter();
    wait_for_dnsmasq(&mut server);

    let listen = UdpSocket::bind(STUB).unwrap();
    listen.set_nonblocking(true).unwrap();
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    upstream.set_nonblocking(true).unwrap();
    let allow = ["api.test", "WWW.test.", "missing.test"]
        .map(|n| DnsName::parse(n).unwrap())
        .to_vec();
    let mut h = Harness {
        stub: Stub::new(
            Config {
                allow,
                upstreams: vec![UPSTREAM.parse::<SocketAddr>().unwrap()],
                limits: Limits::default(),
                case: CaseRandomization::Randomize,
            },
            Instant::now(),
        ),
        listen,
        upstream,
        set: Vec::new(),
    };

    // An allowed name: one upstream query, dnsmasq's 3 s TTL clamped to 5 s, in the set.
    let o = h.ask("api.test", 1);
    assert_eq!((o.rcode, o.upstream_queries), (0, 1), "{o:?}");
    assert_eq!(o.answers, vec![(API, 5)]);
    assert_eq!(
        h.set,
        vec![("api.test".to_string(), API, Duration::from_secs(5))]
    );

    // Cached: no upstream query, TTL counting down.
    let o = h.ask("API.TEST", 1);
    assert_eq!((o.rcode, o.upstream_queries), (0, 0), "{o:?}");
    assert_eq!(o.answers.len(), 1);
    assert!(o.answers[0].1 <= 5);

    // A CNAME chain, followed within the answer.
    let o = h.ask("www.test", 1);
    assert_eq!((o.rcode, o.upstream_queries), (0, 1), "{o:?}");
    assert_eq!(o.answers, vec![(API, 5)]);
    assert_eq!(h.set.last().unwrap().0, "www.test");

    // Not on the allowlist: refused, and dnsmasq never hears of it.
    let o = h.ask("evil.test", 1);
    assert_eq!((o.rcode, o.upstream_queries), (5, 0), "{o:?}");
    assert!(
        !server.log_text().contains("evil.test"),
        "{}",
        server.log_text()
    );

    // AAAA: empty NOERROR, nothing upstream. MX: refused.
    let o = h.ask("api.test", 28);
    assert_eq!((o.rcode, o.answers.len(), o.upstream_queries), (0, 0, 0));
    assert_eq!(h.ask("api.test", 15).rcode, 5);

    // Allowed but unknown upstream: dnsmasq (no upstreams of its own) refuses; the stub
    // retries within its bound and then says SERVFAIL.
    let o = h.ask("missing.test", 1);
    assert!(o.rcode == 2 || o.rcode == 3, "{o:?}");
    assert!(o.upstream_queries <= Limits::default().max_attempts as usize);
    assert_eq!(h.set.len(), 2, "nothing added for failures: {:?}", h.set);
}
