//! PID 1's listening sockets for its agents and granted tasks: `SOCK_SEQPACKET`,
//! non-blocking; an agent's is owned by its uid and gid with mode 0600, and a connection is
//! kept only when its peer's uid is that agent's (the owner-request socket, shared by the
//! granted tasks, is mode 0666 and checks each peer's uid against its grants instead).
//!
//! Rules this module keeps: the socket file's owner and mode and the peer's credentials
//! are both checked, so a mistake in either alone opens nothing; a stale socket file at
//! the path is replaced.

use std::os::fd::OwnedFd;
use std::path::Path;

use limpet_install_api::Response;
use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

/// Binds and listens at `path` (replacing a stale socket file, its directory made) with
/// `mode` and, when given, that owner; `what` names the socket in the error.
pub(crate) fn listen(
    path: &Path,
    what: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<OwnedFd, String> {
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
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| err("chown", &e))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
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
