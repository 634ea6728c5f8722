//! `contain first-try`: a task allowed `api.test` on TCP 443 that asks for the name once
//! and connects once, as a plain client would at start-up, with no retry loop to hide a
//! device that started it before its network was up. Used with `dhcp.toml` by
//! crates/limpet/tests/first_lookup.rs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::Duration;

use crate::dns::{self, Answer};
use crate::net::io_name;

const NAME: &str = "api.test";
const PORT: u16 = 443;
/// The device's DNS stub (PID 1).
const STUB: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 53), 53));
/// How long the one query waits for its answer: a stub that is still waiting for its
/// upstream servers may take a few seconds, which a resolver's usual timeout covers.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

pub fn run() -> ! {
    match first_try() {
        Ok((api, reply)) => {
            println!("first-try: done: connected to {NAME} ({api}) on the first try: {reply}");
        }
        Err(why) => println!("first-try: done: FAILED on the first try: {why}"),
    }
    crate::idle()
}

/// One lookup, one connection, one line each way.
fn first_try() -> Result<(SocketAddrV4, String), String> {
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {}", io_name(&e)))?;
    let addr = match dns::query(&socket, STUB, NAME, ANSWER_WAIT) {
        Ok(Answer::Addresses(addrs, _)) => match addrs.first() {
            Some(a) => *a,
            None => return Err(format!("lookup of {NAME}: no address")),
        },
        Ok(Answer::Rcode(rcode)) => return Err(format!("lookup of {NAME}: {rcode}")),
        Err(e) => return Err(format!("lookup of {NAME}: {}", io_name(&e))),
    };
    println!("first-try: {NAME} is {addr}");
    let api = SocketAddrV4::new(addr, PORT);
    let stream = TcpStream::connect_timeout(&api.into(), Duration::from_secs(5))
        .map_err(|e| format!("connect to {api}: {}", io_name(&e)))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| io_name(&e))?;
    (&stream)
        .write_all(b"hello from first-try\n")
        .map_err(|e| format!("send: {}", io_name(&e)))?;
    let mut reply = String::new();
    BufReader::new((&stream).take(256))
        .read_line(&mut reply)
        .map_err(|e| format!("reply: {}", io_name(&e)))?;
    Ok((api, reply.trim_end().to_owned()))
}
