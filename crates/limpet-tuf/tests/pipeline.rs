#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! HTTP pipelining of the first two downloads of a refresh (N+1.root.json, timestamp.json):
//! one connection when nothing changed, a new root still found, servers that do not pipeline
//! (close after one answer, HTTP/1.0 without Content-Length, ignore the second request), and
//! a pipelined length above the cap refused without a hang.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fixture, T0};
use limpet_repo::serve::serve;
use limpet_testkit::relay::{Relay, Wire};
use limpet_tuf::metadata::Role;
use limpet_tuf::transport::{HttpTransport, RetrievalPolicy, Transport};
use limpet_tuf::{Client, Error, FixedClock};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn client_over_http(fx: &common::Fixture, url: &str, policy: RetrievalPolicy) -> Client {
    let dir = fx.client_dir();
    if !dir.join("root.json").exists() {
        let root = std::fs::read(fx.meta_dir().join("1.root.json")).unwrap();
        Client::init(&dir, &root).unwrap();
    }
    Client::open(
        &dir,
        Box::new(HttpTransport::new(&format!("{url}/metadata"), policy).unwrap()),
        Box::new(FixedClock(T0)),
    )
    .unwrap()
}

/// limpet-testkit's counting relay in front of `upstream`: its URL and its counts.
fn relay(upstream: SocketAddr) -> (String, Arc<Wire>) {
    let relay = Relay::start(upstream);
    (relay.url(), relay.wire)
}

#[test]
fn nothing_new_is_one_connection_under_one_kib() {
    let fx = fixture();
    let server = serve(&fx.repo_dir(), loopback()).unwrap();
    let (url, wire) = relay(server.local_addr());
    let mut client = client_over_http(&fx, &url, RetrievalPolicy::default());
    client.refresh().unwrap();
    // First refresh: 2.root.json (404) and timestamp.json pipelined, then snapshot, targets.
    assert_eq!(wire.take().0, 3);

    let mut client = client_over_http(&fx, &url, RetrievalPolicy::default());
    client.refresh().unwrap();
    let (connections, up, down) = wire.take();
    println!("nothing new: {connections} connection, {up} bytes up, {down} bytes down");
    assert_eq!(connections, 1, "root and timestamp on one connection");
    assert!(up + down < 1024, "{up} bytes up, {down} bytes down");
    assert!(client
        .trusted_targets()
        .unwrap()
        .targets
        .contains_key("app.img"));
}

#[test]
fn a_new_root_is_found_and_the_prefetched_timestamp_checked_against_it() {
    let fx = fixture();
    let server = serve(&fx.repo_dir(), loopback()).unwrap();
    let (url, wire) = relay(server.local_addr());
    client_over_http(&fx, &url, RetrievalPolicy::default())
        .refresh()
        .unwrap();
    wire.take();
    // Root 2 with a new timestamp key; the timestamp is re-signed with it only.
    fx.repo.rotate(Role::Timestamp).unwrap();
    let mut client = client_over_http(&fx, &url, RetrievalPolicy::default());
    client.refresh().unwrap();
    assert_eq!(client.trusted_root().version, 2);
    let on_disk = std::fs::read(fx.client_dir().join("timestamp.json")).unwrap();
    assert_eq!(
        on_disk,
        std::fs::read(fx.meta_dir().join("timestamp.json")).unwrap()
    );
    // 2.root.json + timestamp.json pipelined, then 3.root.json (404), snapshot.json (its
    // local copy was dropped with the rotated key, 5.3.11); targets.json is unchanged.
    assert_eq!(wire.take().0, 3);
}

/// How a test server departs from keep-alive and pipelining.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quirk {
    /// Answers the first request, then closes (the others are never read).
    CloseAfterFirst,
    /// Answers the first request HTTP/1.0-style, without Content-Length, then closes.
    Http10NoLength,
    /// Answers the first request, then holds the connection without reading or answering.
    HoldAfterFirst,
    /// Pipelines, but announces and streams endless bytes for timestamp.json.
    EndlessTimestamp,
}

/// A server for `dir` with a quirk; returns its URL and its count of accepted connections.
fn quirky_server(dir: PathBuf, quirk: Quirk) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind(loopback()).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let dir = dir.clone();
            std::thread::spawn(move || quirky_connection(conn, &dir, quirk));
        }
    });
    (url, count)
}

fn quirky_connection(mut conn: TcpStream, dir: &Path, quirk: Quirk) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut close = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            close |= line.eq_ignore_ascii_case("connection: close\r\n");
            if line == "\r\n" {
                break;
            }
        }
        let target = request_line.split(' ').nth(1).unwrap();
        let body = std::fs::read(dir.join(target.trim_start_matches('/'))).ok();
        let written = match (quirk, body) {
            (Quirk::EndlessTimestamp, Some(_)) if target.ends_with("/timestamp.json") => {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n");
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(10) {
                    if conn.write_all(&[b'x'; 4096]).is_err() {
                        break;
                    }
                }
                return;
            }
            (Quirk::Http10NoLength, Some(body)) => conn
                .write_all(b"HTTP/1.0 200 OK\r\n\r\n")
                .and_then(|()| conn.write_all(&body)),
            (Quirk::Http10NoLength, None) => conn.write_all(b"HTTP/1.0 404 Not Found\r\n\r\n"),
            (_, Some(body)) => conn
                .write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
                )
                .and_then(|()| conn.write_all(&body)),
            (_, None) => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        };
        if written.is_err() || close {
            return;
        }
        match quirk {
            Quirk::CloseAfterFirst | Quirk::Http10NoLength => return,
            Quirk::HoldAfterFirst => {
                std::thread::sleep(Duration::from_secs(3));
                return;
            }
            Quirk::EndlessTimestamp => {}
        }
    }
}

/// A refresh with nothing new against `quirk`: succeeds; returns its connections.
fn refresh_twice(quirk: Quirk, policy: RetrievalPolicy) -> u64 {
    let fx = fixture();
    let (url, connections) = quirky_server(fx.repo_dir(), quirk);
    client_over_http(&fx, &url, policy).refresh().unwrap();
    connections.store(0, Ordering::SeqCst);
    let mut client = client_over_http(&fx, &url, policy);
    client.refresh().unwrap();
    assert!(client
        .trusted_targets()
        .unwrap()
        .targets
        .contains_key("app.img"));
    connections.load(Ordering::SeqCst)
}

#[test]
fn a_server_that_closes_after_one_answer_gets_separate_requests() {
    // The 404 of 2.root.json comes from the pipeline, timestamp.json on its own connection.
    assert_eq!(
        refresh_twice(Quirk::CloseAfterFirst, RetrievalPolicy::default()),
        2
    );
}

#[test]
fn a_response_without_content_length_ends_the_pipeline() {
    // The 404 of 2.root.json is kept (its body does not matter), timestamp.json is fetched
    // on its own connection; the bodies of the others end at the close.
    assert_eq!(
        refresh_twice(Quirk::Http10NoLength, RetrievalPolicy::default()),
        2
    );
}

#[test]
fn a_server_that_ignores_the_pipelined_request_costs_one_stall() {
    let policy = RetrievalPolicy {
        stall: Duration::from_millis(500),
        ..RetrievalPolicy::default()
    };
    let started = Instant::now();
    assert_eq!(refresh_twice(Quirk::HoldAfterFirst, policy), 2);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_pipelined_length_above_the_cap_is_refused_without_a_hang() {
    let fx = fixture();
    let (url, connections) = quirky_server(fx.repo_dir(), Quirk::EndlessTimestamp);
    let started = Instant::now();
    let err = client_over_http(&fx, &url, RetrievalPolicy::default())
        .refresh()
        .unwrap_err();
    assert!(
        matches!(&err, Error::LengthExceeded { path, max: 16_384 } if path == "timestamp.json"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The refusal came from the pipeline: timestamp.json was not asked for again.
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[test]
fn prefetched_files_are_served_once_under_the_callers_cap() {
    let fx = fixture();
    let server = serve(&fx.repo_dir().join("targets"), loopback()).unwrap();
    let (url, wire) = relay(server.local_addr());
    let t = HttpTransport::new(&url, RetrievalPolicy::default()).unwrap();
    let read = |t: &HttpTransport, path: &str, max: u64| {
        let mut dl = t.fetch(path, max)?;
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match dl.read_chunk(&mut buf)? {
                0 => return Ok::<_, Error>(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    };

    t.prefetch(&[("missing.img", 10), ("app.img", 100), ("dir/none", 10)]);
    assert_eq!(wire.take().0, 1);
    assert!(matches!(
        read(&t, "missing.img", 10),
        Err(Error::NotFound { .. })
    ));
    // A smaller cap than the prefetch's still applies.
    assert!(matches!(
        read(&t, "app.img", 5),
        Err(Error::LengthExceeded { max: 5, .. })
    ));
    assert!(matches!(
        read(&t, "dir/none", 10),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(wire.take().0, 0, "all three from the pipeline");
    // Each only once: the next fetch goes to the server.
    assert_eq!(read(&t, "app.img", 100).unwrap(), b"limpet image v1");
    assert_eq!(wire.take().0, 1);

    // Announced above the cap: refused for that path, which a larger cap fetches again;
    // the pipeline stops there, so the path after it is fetched on its own.
    t.prefetch(&[("app.img", 5), ("missing.img", 10)]);
    assert!(matches!(
        read(&t, "app.img", 5),
        Err(Error::LengthExceeded { max: 5, .. })
    ));
    assert!(matches!(
        read(&t, "missing.img", 10),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(wire.take().0, 2);
    t.prefetch(&[("app.img", 5)]);
    assert_eq!(read(&t, "app.img", 15).unwrap(), b"limpet image v1");
    assert_eq!(wire.take().0, 2);

    // A new prefetch drops what the last one left.
    t.prefetch(&[("app.img", 100)]);
    t.prefetch(&[("missing.img", 10)]);
    wire.take();
    assert_eq!(read(&t, "app.img", 100).unwrap(), b"limpet image v1");
    assert_eq!(wire.take().0, 1);
}

#[test]
fn a_chunked_404_is_still_not_found() {
    let listener = TcpListener::bind(loopback()).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&connections);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            c.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap();
            let requests = String::from_utf8_lossy(&buf[..n]).matches("GET ").count();
            for _ in 0..requests {
                conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nnot found\r\n0\r\n\r\n",
                )
                .unwrap();
            }
        }
    });
    let t = HttpTransport::new(&url, RetrievalPolicy::default()).unwrap();
    t.prefetch(&[("a", 10), ("b", 10)]);
    // "a" from the pipeline, which ends there (a chunked body); "b" on its own connection.
    for path in ["a", "b"] {
        assert!(matches!(t.fetch(path, 10), Err(Error::NotFound { .. })));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}
