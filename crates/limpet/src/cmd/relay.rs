//! `limpet relay ADDR`: copies stdin to a TCP connection to ADDR and the connection to
//! stdout, until both directions end. QEMU starts one per guest connection to a
//! `limpet run --forward` port (`guestfwd=...-cmd:`), since its own `tcp:` chardev would
//! serve one connection only.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpStream};

/// Arguments of `limpet relay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to connect (loopback only).
    addr: SocketAddrV4,
}

pub fn run(args: Args) -> super::Result {
    if !args.addr.ip().is_loopback() {
        return Err(format!("{}: relays go to loopback only", args.addr).into());
    }
    let stream = TcpStream::connect(args.addr)?;
    let mut upstream = stream.try_clone()?;
    let to_server = std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0
                || upstream
                    .write_all(buf.get(..n).unwrap_or_default())
                    .is_err()
            {
                break;
            }
        }
        let _ = upstream.shutdown(Shutdown::Write);
    });
    let mut downstream = stream;
    let mut stdout = std::io::stdout().lock();
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = downstream.read(&mut buf) {
        if n == 0 || stdout.write_all(buf.get(..n).unwrap_or_default()).is_err() {
            break;
        }
        let _ = stdout.flush();
    }
    let _ = to_server.join();
    Ok(())
}
