//! `contain hostile`: a fully compromised task with network access but no egress rule.
//! Each round tries every way out once and prints `hostile: <attack>: <outcome>`, then the
//! task exits with code 1 so the supervisor restarts it: the second round proves the
//! ruleset survives the restart. After [`ROUNDS`] rounds it idles.
//!
//! Every socket of attack `k` in round `r` is bound to source port `61000 + 100 r + k`
//! (ICMP: echo identifier), outside the kernel's ephemeral range, so the sink hosts can
//! count this task's packets apart from the allowed task's.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use crate::dns::{self, Answer};
use crate::net::{self, io_name, Outcome};

const ROUNDS: u32 = 2;
const ROUND_FILE: &str = "/data/hostile/round";
/// How long a single connect or query waits for an answer.
const WAIT: Duration = Duration::from_secs(1);

const API: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const OTHER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
const DNS_OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);
const STUB: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);
const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
/// The name asked of the outside server: seeing it in that server's log would prove the
/// query got out.
const DIRECT_NAME: &str = "direct.hostile.test";
/// Ports scanned on the LAN neighbour, and how many connects are in flight at once (the
/// task may hold 256 descriptors).
const SCAN_PORTS: u16 = 1000;
const SCAN_BATCH: u16 = 200;
/// The scan's whole wait for answers, spread over its batches.
const SCAN_WAIT: Duration = Duration::from_secs(1);

/// One attack: its name on the console and how to try it with a given source port.
enum Attack {
    Tcp(SocketAddrV4),
    Udp(SocketAddrV4),
    Dns(SocketAddrV4, &'static str),
    Ping(Ipv4Addr),
    Scan(Ipv4Addr),
}

fn attacks() -> [Attack; 13] {
    let at = SocketAddrV4::new;
    [
        Attack::Tcp(at(OTHER, 80)),
        Attack::Tcp(at(OTHER, 443)),
        Attack::Tcp(at(OTHER, 22)),
        // The allowed task's host and port: allowed to another task, not to this one.
        Attack::Tcp(at(API, 443)),
        Attack::Udp(at(OTHER, 53)),
        Attack::Udp(at(OTHER, 123)),
        Attack::Udp(at(OTHER, 443)),
        Attack::Dns(at(DNS_OUTSIDE, 53), DIRECT_NAME),
        Attack::Dns(at(STUB, 53), "api.test"),
        Attack::Ping(API),
        Attack::Ping(OTHER),
        Attack::Ping(NEIGHBOUR),
        Attack::Scan(NEIGHBOUR),
    ]
}

pub fn run() -> ! {
    let round = std::fs::read_to_string(ROUND_FILE)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    if round > ROUNDS {
        println!("hostile: {ROUNDS} rounds done, idling");
        crate::idle();
    }
    if let Err(e) = std::fs::write(ROUND_FILE, round.to_string()) {
        println!("hostile: cannot record round {round}: {}", io_name(&e));
    }
    println!("hostile: round {round} start");
    for (k, attack) in (1u16..).zip(attacks()) {
        let port = 61_000 + 100 * u16::try_from(round).unwrap_or(9) + k;
        let (name, outcome) = attack.try_from(port);
        println!("hostile: {name}: {outcome}");
    }
    println!("hostile: round {round} done, exiting with 1");
    std::process::exit(1)
}

impl Attack {
    fn try_from(&self, port: u16) -> (String, Outcome) {
        match *self {
            Attack::Tcp(to) => (format!("tcp {to}"), net::tcp_attempt(port, to, WAIT)),
            Attack::Udp(to) => (
                format!("udp {to}"),
                net::udp_attempt(port, to, b"contain: hostile datagram"),
            ),
            Attack::Dns(to, name) => (format!("dns {to} {name}"), dns_attempt(port, to, name)),
            Attack::Ping(to) => (
                format!("icmp echo {to}"),
                net::ping_attempt(SocketAddrV4::new(to, 0), port, WAIT),
            ),
            Attack::Scan(to) => (format!("scan {to} tcp 1-{SCAN_PORTS}"), scan(to)),
        }
    }
}

/// An A query for `name` sent straight to `to`.
fn dns_attempt(port: u16, to: SocketAddrV4, name: &str) -> Outcome {
    let socket = match UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)) {
        Ok(s) => s,
        Err(e) => return Outcome::Blocked(format!("bind: {}", io_name(&e))),
    };
    match dns::query(&socket, SocketAddr::V4(to), name, WAIT) {
        Ok(Answer::Addresses(addrs, _)) => Outcome::Escaped(format!("answered {addrs:?}")),
        Ok(Answer::Rcode(rcode)) => Outcome::Blocked(format!("answered {rcode}")),
        Err(e) => Outcome::Blocked(io_name(&e)),
    }
}

/// Non-blocking connects to ports 1-1000 of `to`, [`SCAN_BATCH`] at a time, all batches
/// together waiting [`SCAN_WAIT`]; counts the ports that accepted.
fn scan(to: Ipv4Addr) -> Outcome {
    let per_batch = SCAN_WAIT / u32::from(SCAN_PORTS.div_ceil(SCAN_BATCH));
    let mut open = Vec::new();
    let mut refused_locally = 0u32;
    let mut first = 1u16;
    while first <= SCAN_PORTS {
        let last = (first + SCAN_BATCH - 1).min(SCAN_PORTS);
        let started = Instant::now();
        let mut pending = Vec::new();
        for port in first..=last {
            match net::tcp_socket(0) {
                Ok(fd) => match net::start_connect(&fd, SocketAddrV4::new(to, port)) {
                    Ok(()) => pending.push((port, fd)),
                    Err(_) => refused_locally += 1,
                },
                Err(_) => refused_locally += 1,
            }
        }
        let left = per_batch.saturating_sub(started.elapsed());
        std::thread::sleep(left);
        for (port, fd) in &pending {
            if matches!(net::connected_within(fd, Duration::ZERO), Ok(true)) {
                open.push(*port);
            }
        }
        first = last + 1;
    }
    if open.is_empty() {
        Outcome::Blocked(format!(
            "0 of {SCAN_PORTS} connected, {refused_locally} refused locally"
        ))
    } else {
        Outcome::Escaped(format!(
            "{} of {SCAN_PORTS} connected, first {:?}",
            open.len(),
            &open[..open.len().min(10)]
        ))
    }
}
