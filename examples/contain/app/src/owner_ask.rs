//! `contain owner-ask enter HEXKEY` or `contain owner-ask leave`: asks PID 1, over the
//! owner-request socket a task granted `rights = ["owner-request"]` has in its sandbox,
//! to have the boot loader ask the person at the device at the next boot
//! (docs/owner-mode.md). Prints PID 1's answer, or why the socket could not be reached (a
//! task without the right has no such socket), then idles.

use limpet_install_api::{OwnerAsk, Request, Response, MAX_MESSAGE, OWNER_SOCKET};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType};

pub fn run() -> ! {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let ask = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["leave"] => Some(OwnerAsk::Leave),
        ["enter", hex] => key(hex).map(|key| OwnerAsk::Enter { key }),
        _ => None,
    };
    let Some(ask) = ask else {
        println!("owner-ask: usage: owner-ask enter HEXKEY | owner-ask leave; got {args:?}");
        super::idle();
    };
    match exchange(ask) {
        Ok(Response::Ok) => println!("owner-ask: PID 1 wrote the request"),
        Ok(Response::Error(e)) => println!("owner-ask: PID 1 refused: {e}"),
        Ok(other) => println!("owner-ask: unexpected answer {other:?}"),
        Err(e) => println!("owner-ask: cannot reach {OWNER_SOCKET}: {e}"),
    }
    super::idle()
}

/// 64 hex digits as 32 bytes.
fn key(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn exchange(ask: OwnerAsk) -> Result<Response, String> {
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None)
        .map_err(|e| e.to_string())?;
    let addr = SocketAddrUnix::new(OWNER_SOCKET).map_err(|e| e.to_string())?;
    rustix::net::connect(&fd, &addr).map_err(|e| e.to_string())?;
    rustix::net::send(
        &fd,
        &Request::OwnerMode { ask }.encode(),
        SendFlags::empty(),
    )
    .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let (n, _) = rustix::net::recv(&fd, &mut buf, RecvFlags::empty()).map_err(|e| e.to_string())?;
    Response::decode(buf.get(..n).unwrap_or_default()).map_err(|e| e.to_string())
}
