//! `contain web`: a LAN service. Port 8080 is declared (`scope = "lan"`); 8081 is the
//! same service on a port the manifest does not declare, which must answer nothing.
//! Each connection gets one line, `web: hello`, and is logged as
//! `web: served <port> to <peer address>: <first request line>`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::net::io_name;

const DECLARED: u16 = 8080;
const UNDECLARED: u16 = 8081;

pub fn run() -> ! {
    let undeclared = std::thread::spawn(|| serve(UNDECLARED));
    serve(DECLARED);
    let _ = undeclared.join();
    crate::idle()
}

fn serve(port: u16) {
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            println!("web: cannot listen on {port}: {}", io_name(&e));
            return;
        }
    };
    println!("web: listening on {port}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => answer(port, &stream),
            Err(e) => println!("web: accept on {port}: {}", io_name(&e)),
        }
    }
}

/// Reads the first request line (short, with a deadline), replies, logs.
fn answer(port: u16, stream: &TcpStream) {
    let peer = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "?".into());
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut request = String::new();
    let _ = BufReader::new(stream.take(64)).read_line(&mut request);
    let request: String = request
        .trim_end()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    let mut stream = stream;
    let _ = stream.write_all(b"web: hello\n");
    println!("web: served {port} to {peer}: {request}");
}
