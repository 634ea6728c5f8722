#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The HTTP transport against limpet-repo's development server: normal use, slow retrieval
//! (trickling and stalled servers), endless data announced by Content-Length.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::{fixture, T0};
use limpet_repo::serve::serve;
use limpet_testkit::relay::{Relay, Throttle};
use limpet_tuf::transport::{HttpTransport, RetrievalPolicy, Transport};
use limpet_tuf::{Client, Error, FixedClock};

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn client_over_http(fx: &common::Fixture, url: &str, policy: RetrievalPolicy) -> Client {
    let root = std::fs::read(fx.meta_dir().join("1.root.json")).unwrap();
    Client::init(&fx.client_dir(), &root).unwrap();
    Client::open(
        &fx.client_dir(),
        Box::new(HttpTransport::new(&format!("{url}/metadata"), policy).unwrap()),
        Box::new(FixedClock(T0)),
    )
    .unwrap()
}

#[test]
fn refresh_and_download_over_http() {
    let fx = fixture();
    fx.repo
        .add_target_bytes("dir/with space+plus.img", b"spaced", None)
        .unwrap();
    let server = serve(&fx.repo_dir(), loopback()).unwrap();
    let mut client = client_over_http(&fx, &server.url(), RetrievalPolicy::default());
    client.refresh().unwrap();
    let targets = HttpTransport::new(
        &format!("{}/targets", server.url()),
        RetrievalPolicy::default(),
    )
    .unwrap();
    let mut sink = Vec::new();
    client.fetch_target(&targets, "app.img", &mut sink).unwrap();
    assert_eq!(sink, b"limpet image v1");
    let mut sink = Vec::new();
    client
        .fetch_target(&targets, "dir/with space+plus.img", &mut sink)
        .unwrap();
    assert_eq!(sink, b"spaced");
    assert!(matches!(
        targets.fetch("missing.img", 10),
        Err(Error::NotFound { .. })
    ));
    server.shutdown();
}

#[test]
fn trickling_server_is_a_slow_retrieval() {
    let fx = fixture();
    fx.repo
        .add_target_bytes("big.img", &vec![7u8; 64 * 1024], None)
        .unwrap();
    let fast = serve(&fx.repo_dir(), loopback()).unwrap();
    let policy = RetrievalPolicy {
        min_bytes_per_sec: 64 * 1024,
        grace: Duration::from_millis(300),
        stall: Duration::from_secs(5),
        deadline: Duration::from_secs(20),
    };
    let mut client = client_over_http(&fx, &fast.url(), policy);
    client.refresh().unwrap();
    // 100 bytes every 20 ms: about 5 KB/s, far below the 64 KiB/s minimum.
    let slow = Relay::throttled(
        fast.local_addr(),
        Throttle {
            bytes: 100,
            pause: Duration::from_millis(20),
        },
    );
    let targets = HttpTransport::new(&format!("{}/targets", slow.url()), policy).unwrap();
    let err = client
        .fetch_target(&targets, "big.img", &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(&err, Error::SlowRetrieval { reason, .. } if reason.contains("rate")),
        "{err}"
    );
}

#[test]
fn stalled_server_is_a_slow_retrieval() {
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().take(2) {
            let mut conn = conn.unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            // Headers, then a body that never comes.
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab");
            held.push(conn);
        }
        std::thread::sleep(Duration::from_secs(10));
    });
    let policy = RetrievalPolicy {
        min_bytes_per_sec: 1,
        grace: Duration::from_secs(60),
        stall: Duration::from_millis(300),
        deadline: Duration::from_secs(60),
    };
    let t = HttpTransport::new(&format!("http://{addr}"), policy).unwrap();
    let mut dl = t.fetch("x", 100).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(dl.read_chunk(&mut buf).unwrap(), 2);
    assert!(matches!(
        dl.read_chunk(&mut buf),
        Err(Error::SlowRetrieval {
            reason: "read stalled",
            ..
        })
    ));
    // The overall deadline also bounds a transfer that keeps trickling.
    let policy = RetrievalPolicy {
        deadline: Duration::from_millis(200),
        ..policy
    };
    let t = HttpTransport::new(&format!("http://{addr}"), policy).unwrap();
    let mut dl = t.fetch("x", 100).unwrap();
    let _ = dl.read_chunk(&mut buf);
    std::thread::sleep(Duration::from_millis(250));
    assert!(matches!(
        dl.read_chunk(&mut buf),
        Err(Error::SlowRetrieval { .. })
    ));
}

#[test]
fn announced_length_above_cap_is_refused_before_the_body() {
    let fx = fixture();
    let server = serve(&fx.repo_dir(), loopback()).unwrap();
    let t = HttpTransport::new(
        &format!("{}/targets", server.url()),
        RetrievalPolicy::default(),
    )
    .unwrap();
    assert!(matches!(
        t.fetch("app.img", 5),
        Err(Error::LengthExceeded { max: 5, .. })
    ));
    assert!(t.fetch("app.img", 15).is_ok());
}

#[test]
fn server_refuses_paths_outside_its_directory() {
    let fx = fixture();
    let server = serve(&fx.repo_dir().join("targets"), loopback()).unwrap();
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(b"GET /../metadata/root.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(b"GET /%2E%2E/metadata/root.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}
