//! `contain beacon ADDRESS:PORT [LABEL]`: a task that connects to one address every few
//! seconds, sends `LABEL N` (`beacon N` without a label) and reads one line back, forever,
//! saying each outcome: `beacon N: ok: <reply>`, `beacon N: failed: <why>`, and, for the
//! first success after failures, `beacon N: ok again after K failure(s): <reply>`. Used by
//! crates/limpet/tests/island.rs, where it is the task island mode keeps, and by
//! crates/limpet/tests/kernel.rs, where a second beacon without an egress rule sends its own
//! label; what reaches the far end is counted there, by label.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::net::io_name;

/// Between two attempts.
const PERIOD: Duration = Duration::from_secs(3);
/// How long one attempt may take, connect and reply each.
const WAIT: Duration = Duration::from_secs(3);

pub fn run() -> ! {
    let to: Option<SocketAddr> = std::env::args().nth(2).and_then(|a| a.parse().ok());
    let Some(to) = to else {
        println!("beacon: expected an ADDRESS:PORT argument");
        std::process::exit(2);
    };
    let label = std::env::args()
        .nth(3)
        .unwrap_or_else(|| "beacon".to_owned());
    let mut failures = 0u64;
    for n in 1u64.. {
        match beacon(to, &label, n) {
            Ok(reply) if failures > 0 => {
                println!("beacon {n}: ok again after {failures} failure(s): {reply}");
                failures = 0;
            }
            Ok(reply) => println!("beacon {n}: ok: {reply}"),
            Err(why) => {
                failures += 1;
                println!("beacon {n}: failed: {why}");
            }
        }
        std::thread::sleep(PERIOD);
    }
    crate::idle()
}

fn beacon(to: SocketAddr, label: &str, n: u64) -> Result<String, String> {
    let stream = TcpStream::connect_timeout(&to, WAIT)
        .map_err(|e| format!("connect to {to}: {}", io_name(&e)))?;
    stream
        .set_read_timeout(Some(WAIT))
        .map_err(|e| io_name(&e))?;
    (&stream)
        .write_all(format!("{label} {n}\n").as_bytes())
        .map_err(|e| format!("send: {}", io_name(&e)))?;
    let mut reply = String::new();
    BufReader::new((&stream).take(256))
        .read_line(&mut reply)
        .map_err(|e| format!("reply: {}", io_name(&e)))?;
    if reply.is_empty() {
        return Err("no reply".to_owned());
    }
    Ok(reply.trim_end().to_owned())
}
