//! `limpet relay serve --listen ADDR`: the remote-access relay (limpet-remote's `relay`).
//!
//! `limpet relay ADDR`: copies stdin to a TCP connection to ADDR and the connection to
//! stdout, until both directions end. QEMU starts one per guest connection to a
//! `limpet run --forward` port (`guestfwd=...-cmd:`), since its own `tcp:` chardev would
//! serve one connection only.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpStream};

/// Arguments of `limpet relay`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Where to connect stdin and stdout (loopback only; what QEMU runs for each
    /// `run --forward` connection).
    addr: Option<SocketAddrV4>,
}

/// `limpet relay` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run a remote-access relay: devices register by their identity key, operators
    /// (`limpet connect`) ask for one, and the relay splices the two end-to-end encrypted
    /// streams without reading them (docs/remote-access.md).
    Serve {
        /// Address to listen on (IP:PORT).
        #[arg(long)]
        listen: SocketAddr,
        /// A revocation list (`limpet access revoke`), read again before each session
        /// request and sent to the device, which takes it only when its access key signed
        /// it and it is newer than the one it holds.
        #[arg(long)]
        revocations: Option<std::path::PathBuf>,
    },
}

pub fn run(args: Args) -> super::Result {
    match (args.command, args.addr) {
        (
            Some(Command::Serve {
                listen,
                revocations,
            }),
            _,
        ) => serve(listen, revocations),
        (None, Some(addr)) => stdio(addr),
        (None, None) => Err("limpet relay: give `serve --listen ADDR` or a loopback ADDR".into()),
    }
}

fn serve(listen: SocketAddr, revocations: Option<std::path::PathBuf>) -> super::Result {
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("relay: cannot listen on {listen}: {e}"))?;
    println!("relay: listening on {}", listener.local_addr()?);
    limpet_remote::relay::serve(
        listener,
        limpet_remote::relay::Limits::default(),
        revocations,
    )?;
    Ok(())
}

fn stdio(addr: SocketAddrV4) -> super::Result {
    if !addr.ip().is_loopback() {
        return Err(format!("{addr}: relays go to loopback only").into());
    }
    let stream = TcpStream::connect(addr)?;
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
