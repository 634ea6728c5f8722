//! `contain telemetry`: the task that is allowed `api.test` on TCP and UDP 443, each
//! capped at 20 kbit/s — and then, as if compromised, tries to flood it and to reach an
//! address the name did not resolve to.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dns::{self, Answer};
use crate::net::{self, io_name};

const NAME: &str = "api.test";
const PORT: u16 = 443;
/// The device's DNS stub (PID 1).
const STUB: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 53), 53));
/// An address api.test does not resolve to.
const UNRESOLVED: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 20), PORT);

/// How long each flood lasts, and its attempt budgets.
const FLOOD: Duration = Duration::from_secs(10);
const TCP_ATTEMPTS: u64 = 20_000;
const UDP_DATAGRAMS: u64 = 50_000;
const UDP_PAYLOAD: usize = 1200;
/// Idle time before the flood: the cap's token bucket refills (the allowed flow used it)
/// and the flow's closing packets are gone.
const SETTLE: Duration = Duration::from_secs(3);
/// Time between `flood start` and the first packet, for an observer to read its counters.
const OBSERVER: Duration = Duration::from_secs(1);
/// How long the device keeps an address in its set past the answer's TTL
/// (docs/network.md, "plus 5 s of grace"), and a margin for TTLs rounded to seconds.
const SET_GRACE: Duration = Duration::from_secs(5);
const ROUNDING: Duration = Duration::from_secs(2);
/// How often the name is asked again while flooding, so the address stays in the
/// device's address set across its short TTL (as any client that honours TTLs does).
const REFRESH: Duration = Duration::from_millis(250);

pub fn run() -> ! {
    let (addr, ttl) = resolve_until_answered();
    println!("telemetry: {NAME} is {addr} (ttl {}s)", ttl.as_secs());
    let api = SocketAddrV4::new(addr, PORT);

    match allowed_flow(api) {
        Ok(reply) => println!("telemetry: allowed flow ok: {reply}"),
        Err(e) => println!("telemetry: allowed flow failed: {e}"),
    }

    std::thread::sleep(SETTLE);
    println!("telemetry: flood start");
    std::thread::sleep(OBSERVER);
    let flood = flood(api);
    println!(
        "telemetry: flood took {} ms; refused locally: tcp={} udp={}",
        flood.elapsed.as_millis(),
        flood.tcp_refused,
        flood.udp_refused
    );
    println!(
        "telemetry: flood end tcp={} udp={}",
        flood.tcp_attempts, flood.udp_datagrams
    );

    let outcome = net::tcp_attempt(0, UNRESOLVED, Duration::from_secs(3));
    println!("telemetry: unresolved {UNRESOLVED}: {outcome}");

    // The address as a careless client would keep it: past its TTL without asking again.
    let (asked, ttl) = flood.last_answer.unwrap_or((Instant::now(), ttl));
    let stale_at = asked + ttl + SET_GRACE + ROUNDING;
    if let Some(wait) = stale_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let outcome = net::tcp_attempt(0, api, Duration::from_secs(3));
    println!(
        "telemetry: {api} after its ttl of {}s (+{}s grace) ran out: {outcome}",
        ttl.as_secs(),
        SET_GRACE.as_secs()
    );
    println!("telemetry: done");
    crate::idle()
}

/// Asks the stub until it answers with an address (PID 1 may still be starting it).
fn resolve_until_answered() -> (Ipv4Addr, Duration) {
    let mut attempt = 0u64;
    loop {
        match resolve() {
            Ok(found) => return found,
            Err(e) => {
                if attempt.is_multiple_of(5) {
                    println!("telemetry: cannot resolve {NAME} yet: {e}");
                }
                attempt += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// One A query for api.test to the stub: its first address and TTL.
fn resolve() -> Result<(Ipv4Addr, Duration), String> {
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| io_name(&e))?;
    match dns::query(&socket, STUB, NAME, Duration::from_secs(2)) {
        Ok(Answer::Addresses(addrs, ttl)) => match addrs.first() {
            Some(a) => Ok((*a, ttl)),
            None => Err("no address".into()),
        },
        Ok(Answer::Rcode(name)) => Err(name.into()),
        Err(e) => Err(io_name(&e)),
    }
}

/// One request line and its reply line.
fn allowed_flow(api: SocketAddrV4) -> Result<String, String> {
    let stream = TcpStream::connect_timeout(&api.into(), Duration::from_secs(5))
        .map_err(|e| format!("connect: {}", io_name(&e)))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| io_name(&e))?;
    (&stream)
        .write_all(b"hello from telemetry\n")
        .map_err(|e| format!("send: {}", io_name(&e)))?;
    // At most one short line: a server cannot make the task buffer without end.
    let mut reply = String::new();
    BufReader::new((&stream).take(256))
        .read_line(&mut reply)
        .map_err(|e| format!("reply: {}", io_name(&e)))?;
    Ok(reply.trim_end().to_owned())
}

/// What the flood did.
struct Flood {
    elapsed: Duration,
    tcp_attempts: u64,
    tcp_refused: u64,
    udp_datagrams: u64,
    udp_refused: u64,
    /// When the stub last answered, and the TTL it gave.
    last_answer: Option<(Instant, Duration)>,
}

/// A TCP SYN flood (connects started and abandoned) and a UDP flood at once, each for
/// [`FLOOD`] and at most its attempt budget, paced evenly over the window; meanwhile
/// the name is refreshed every [`REFRESH`].
fn flood(api: SocketAddrV4) -> Flood {
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let refresher = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut last = None;
            while !done.load(Ordering::Relaxed) {
                if let Ok((_, ttl)) = resolve() {
                    last = Some((Instant::now(), ttl));
                }
                std::thread::sleep(REFRESH);
            }
            last
        })
    };
    let udp = std::thread::spawn(move || {
        let Ok(socket) = UdpSocket::bind("0.0.0.0:0") else {
            return (0, 0);
        };
        let payload = [0x55u8; UDP_PAYLOAD];
        let mut refused = 0;
        let mut sent = 0;
        while sent < UDP_DATAGRAMS && start.elapsed() < FLOOD {
            if sent.is_multiple_of(50) {
                net::pace(start, sent, UDP_DATAGRAMS / FLOOD.as_secs());
            }
            if socket.send_to(&payload, api).is_err() {
                refused += 1;
            }
            sent += 1;
        }
        (sent, refused)
    });
    let mut tcp_attempts = 0;
    let mut tcp_refused = 0;
    while tcp_attempts < TCP_ATTEMPTS && start.elapsed() < FLOOD {
        if tcp_attempts.is_multiple_of(20) {
            net::pace(start, tcp_attempts, TCP_ATTEMPTS / FLOOD.as_secs());
        }
        // The SYN leaves (or is refused) inside connect; the socket is dropped at once,
        // so nothing is retransmitted: every attempt is one new SYN.
        let refused = match net::tcp_socket(0) {
            Ok(fd) => net::start_connect(&fd, api).is_err(),
            Err(_) => true,
        };
        tcp_refused += u64::from(refused);
        tcp_attempts += 1;
    }
    let (udp_datagrams, udp_refused) = udp.join().unwrap_or((0, 0));
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let last_answer = refresher.join().unwrap_or(None);
    Flood {
        elapsed,
        tcp_attempts,
        tcp_refused,
        udp_datagrams,
        udp_refused,
        last_answer,
    }
}
