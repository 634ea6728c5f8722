//! limpet-roughtime against a real Roughtime server: pyroughtime's (PyPI, IETF draft 07),
//! run in a network namespace this test makes, asked over UDP from another one (TEST-NET
//! addresses only):
//!
//! ```text
//!  dev  d0 192.0.2.2: the client (limpet-roughtime's request and checks)
//!        │ veth
//!  srv  s0 192.0.2.1: pyroughtime on UDP 2002 (key listed) and 2003 (key not listed)
//! ```
//!
//! A fresh answer is trusted and says the host's time; the same answer replayed for a new
//! request is refused; an answer from the server whose key is not listed is refused.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use limpet_roughtime::{request, verify, Error, Server};
use netns::{inside, ip, require_pyroughtime, roughtime_server, Lab};

/// Sends `bytes` to `to` from `ns` and returns the first answer (tries 10 times, 1 s
/// each: the server may still be starting).
fn ask(ns: &str, to: &'static str, bytes: Vec<u8>) -> Vec<u8> {
    inside(ns, move || {
        let socket = UdpSocket::bind("192.0.2.2:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut buf = vec![0u8; 1500];
        for _ in 0..10 {
            socket.send_to(&bytes, to).unwrap();
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                buf.truncate(n);
                return buf;
            }
        }
        panic!("no Roughtime answer from {to}");
    })
}

fn nonce(seed: u8) -> [u8; 32] {
    // Distinct per request; the device draws its nonces from getrandom.
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut n = [seed; 32];
    n[..16].copy_from_slice(&t.to_le_bytes());
    n
}

#[test]
fn a_real_roughtime_server_is_trusted_only_for_fresh_answers_under_its_listed_key() {
    require_pyroughtime();
    let mut lab = Lab::new();
    let srv = lab.namespace("lrt", "srv");
    let dev = lab.namespace("lrt", "dev");
    let veth = format!("lrt{}", std::process::id());
    ip(&srv, &format!("link add s0 type veth peer name {veth}"));
    ip(&srv, &format!("link set {veth} netns {dev}"));
    ip(&dev, &format!("link set {veth} name d0"));
    ip(&srv, "addr add 192.0.2.1/24 dev s0");
    ip(&dev, "addr add 192.0.2.2/24 dev d0");
    for ns in [&srv, &dev] {
        ip(ns, "link set lo up");
    }
    ip(&srv, "link set s0 up");
    ip(&dev, "link set d0 up");

    let listed_key = roughtime_server(&mut lab, &srv, "192.0.2.1", 2002, None);
    let other_key = roughtime_server(&mut lab, &srv, "192.0.2.1", 2003, None);
    let listed = Server::new("rt-listed", &listed_key).unwrap();

    // A fresh answer under the listed key: trusted, and it says the host's time (the
    // server's clock) within the answer's radius and the test's own duration.
    let first = nonce(1);
    let answer = ask(&dev, "192.0.2.1:2002", request(&first));
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let v = verify(&answer, &first, &listed).unwrap();
    let said = v.midpoint_micros / 1_000_000;
    assert!(
        said.abs_diff(before) < 120,
        "the server said {said}, the host {before}"
    );
    assert!(v.earliest_secs() <= said);
    eprintln!(
        "pyroughtime: {} bytes, midpoint {} µs, radius {} µs",
        answer.len(),
        v.midpoint_micros,
        v.radius_micros
    );

    // The same answer replayed for a new request: refused.
    let second = nonce(2);
    let e = verify(&answer, &second, &listed).unwrap_err();
    assert!(matches!(e, Error::NonceMismatch), "{e}");

    // The other server answers well, under a key the device does not list: refused.
    let third = nonce(3);
    let answer = ask(&dev, "192.0.2.1:2003", request(&third));
    let e = verify(&answer, &third, &listed).unwrap_err();
    assert!(matches!(e, Error::UntrustedCertificate { .. }), "{e}");
    // ... and trusted when its own key is the one listed: the refusal was the key's.
    let other = Server::new("rt-other", &other_key).unwrap();
    assert!(verify(&answer, &third, &other).is_ok());
}
