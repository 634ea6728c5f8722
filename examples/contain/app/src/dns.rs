//! The smallest DNS client that does the job: one A query over UDP, one answer parsed.
//! No resolver library, so that the task asks exactly the server it names (the device's
//! stub on 127.0.0.53, or — when hostile — a server outside).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a server answered.
#[derive(Debug)]
pub enum Answer {
    /// NOERROR with these A records and the least TTL among them.
    Addresses(Vec<Ipv4Addr>, Duration),
    /// Any other response code, by name.
    Rcode(&'static str),
}

/// Sends an A query for `name` to `server` from `socket` and waits up to `wait` for the
/// matching answer. An I/O error (a refused send, a timeout) is returned as is.
pub fn query(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &str,
    wait: Duration,
) -> std::io::Result<Answer> {
    let id = query_id();
    socket.send_to(&encode_query(id, name), server)?;
    socket.set_read_timeout(Some(wait))?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        // A stray datagram (another source, another id) is skipped, not an answer.
        if from != server {
            continue;
        }
        match parse_answer(id, &buf[..n]) {
            Some(answer) => return Ok(answer),
            None => continue,
        }
    }
}

/// A query id that differs between calls; no randomness is needed here.
fn query_id() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u16::try_from(nanos % 65_521).unwrap_or(1)
}

/// Header (id, RD, one question) and the question `name IN A`.
fn encode_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap_or(63).min(63));
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    q
}

/// The answer to query `id`, or `None` when `msg` is not one (wrong id, not a
/// response, malformed).
fn parse_answer(id: u16, msg: &[u8]) -> Option<Answer> {
    if msg.len() < 12 || msg[..2] != id.to_be_bytes() || msg[2] & 0x80 == 0 {
        return None;
    }
    let rcode = msg[3] & 0x0f;
    if rcode != 0 {
        let name = match rcode {
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            _ => "rcode",
        };
        return Some(Answer::Rcode(name));
    }
    let count = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    let (questions, answers) = (count(4), count(6));
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut addrs = Vec::new();
    let mut ttl = u32::MAX;
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let fixed = msg.get(at..at + 10)?;
        let kind = u16::from_be_bytes([fixed[0], fixed[1]]);
        let record_ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = msg.get(at + 10..at + 10 + len)?;
        if kind == 1 && len == 4 {
            addrs.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
            ttl = ttl.min(record_ttl);
        }
        at += 10 + len;
    }
    let ttl = if addrs.is_empty() { 0 } else { ttl };
    Some(Answer::Addresses(
        addrs,
        Duration::from_secs(u64::from(ttl)),
    ))
}

/// The offset after the name at `at` (labels, ending in the root or a pointer).
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_and_its_answer_round_trip() {
        let q = encode_query(0x1234, "api.test");
        assert_eq!(
            q,
            [
                0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'p', b'i', 4, b't', b'e', b's',
                b't', 0, 0, 1, 0, 1
            ]
        );
        // The answer: the query with QR set, AN=1, and one A record by pointer.
        let mut a = q.clone();
        a[2] |= 0x80;
        a[7] = 1;
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 203, 0, 113, 10]);
        match parse_answer(0x1234, &a) {
            Some(Answer::Addresses(addrs, ttl)) => {
                assert_eq!(addrs, [Ipv4Addr::new(203, 0, 113, 10)]);
                assert_eq!(ttl, Duration::from_secs(5));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_answer(0x1235, &a).is_none(), "another id");
        a[3] = 5;
        assert!(matches!(
            parse_answer(0x1234, &a),
            Some(Answer::Rcode("REFUSED"))
        ));
    }
}
