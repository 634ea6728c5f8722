//! PID 1's listening sockets for its agents: `SOCK_SEQPACKET`, non-blocking, owned by one
//! agent's uid and gid with mode 0600, and a connection kept only when its peer's uid is
//! that agent's.
//!
//! Rules this module keeps: the socket file's owner and mode and the peer's credentials
//! are both checked, so a mistake in either alone opens nothing; a stale socket file at
//! the path is replaced.

use std::os::fd::OwnedFd;
use std::path::Path;

use limpet_install_api::Response;
use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

/// Binds and listens at `path` for `uid`/`gid`; `what` names the socket in the error.
pub(crate) fn listen(path: &Path, uid: u32, gid: u32, what: &str) -> Result<OwnedFd, String> {
    use std::os::unix::fs::PermissionsExt;
    let err = |step: &str, e: &dyn std::fmt::Display| {
        format!("{what} socket {}: {step}: {e}", path.display())
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err("create its directory", &e))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| err("socket", &e))?;
    let addr = SocketAddrUnix::new(path).map_err(|e| err("address", &e))?;
    rustix::net::bind(&listener, &addr).map_err(|e| err("bind", &e))?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| err("chown", &e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err("chmod", &e))?;
    rustix::net::listen(&listener, 1).map_err(|e| err("listen", &e))?;
    Ok(listener)
}

/// Accepts one connection, kept only when its peer is `uid`; any other peer is answered
/// `Error(refusal)` and closed.
pub(crate) fn accept(listener: &OwnedFd, uid: u32, refusal: &str) -> Option<OwnedFd> {
    let conn = rustix::net::accept_with(listener, SocketFlags::CLOEXEC).ok()?;
    match rustix::net::sockopt::socket_peercred(&conn) {
        Ok(cred) if cred.uid.as_raw() == uid => Some(conn),
        _ => {
            let answer = Response::Error(refusal.to_owned()).encode();
            let _ = rustix::net::send(&conn, &answer, SendFlags::DONTWAIT);
            None
        }
    }
}
