//! PID 1's owner-request socket ([`limpet_install_api::OWNER_SOCKET`]): how a task the
//! manifest grants `rights = ["owner-request"]` asks the boot loader to enter or leave
//! owner mode (docs/owner-mode.md). The request only asks: the loader acts on it at the
//! next boot, and only when a person at the device types the key's fingerprint.
//!
//! Rules this module keeps:
//! - The right is compiled at build time: PID 1 binds this socket only when the signed
//!   policy names granted tasks, bind-mounts it into their sandboxes only, and serves a
//!   connection only when its peer credentials are one of their uids. Any other peer gets
//!   `Error("uid N holds no owner-request right")` and the connection is closed unread.
//! - Only [`Request::OwnerMode`] is served here; anything else is refused by name, so this
//!   socket opens no slot, signs nothing and reads no state.
//! - An `Enter` key must be an Ed25519 point, or nothing is written.
//! - [`write_request`] writes the 4 KiB request block at `REQUEST_OFFSET` of the `state`
//!   partition in one aligned write and syncs it before answering `Ok`. Power-fail safety
//!   comes from the block's checksum: a torn block fails it, and the loader reports it,
//!   clears it and changes nothing; the A/B record and the time record around it are
//!   never written.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use limpet_install_api::{OwnerAsk, Request, Response, MAX_MESSAGE};
use limpet_state::owner::{Request as OwnerRequest, REQUEST_OFFSET};
use rustix::net::{RecvFlags, SendFlags, SocketFlags};

/// A task granted the right, by uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The task's name (for the console line).
    pub task: String,
    /// The uid it runs as.
    pub uid: u32,
}

/// What PID 1 says on the console after a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// The block was written.
    Written {
        /// The task that asked.
        task: String,
        /// What it asked.
        ask: OwnerAsk,
    },
    /// A request was refused; the text says who and why.
    Refused(String),
}

impl Asked {
    /// PID 1's console line: who asked what (the key by the fingerprint the loader shows),
    /// or why it was refused.
    pub fn console_line(&self) -> String {
        match self {
            Asked::Written { task, ask } => {
                let what = match ask {
                    OwnerAsk::Enter { key } => {
                        format!("enter owner mode with the owner key {}", fingerprint(key))
                    }
                    OwnerAsk::Leave => "leave owner mode".to_owned(),
                };
                format!(
                    "owner request from task {task} written for the boot loader: {what}; \
                     nothing changes unless a person at the device confirms it at the next boot"
                )
            }
            Asked::Refused(why) => format!("owner request refused: {why}"),
        }
    }
}

/// The key's fingerprint as the loader prints it (its measurement, in hex);
/// empty for bytes that are no key (never written: [`write_request`] refuses them).
fn fingerprint(key: &[u8; 32]) -> String {
    VerifyingKey::from_bytes(key)
        .map(|vk| {
            limpet_image::measure::image_key_measurement(&vk)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .unwrap_or_default()
}

/// The listening socket, the granted uids and the open connection.
#[derive(Debug)]
pub struct OwnerServer {
    listener: OwnedFd,
    conn: Option<(OwnedFd, String)>,
    granted: BTreeMap<u32, String>,
    state: PathBuf,
}

impl OwnerServer {
    /// Binds the socket at `path` for the tasks `granted`, writing requests into the
    /// `state` partition. The socket's mode is 0666: only the granted tasks' sandboxes
    /// have it mounted, and the peer's uid is checked on every connection.
    pub fn bind(path: &Path, granted: &[Grant], state: PathBuf) -> Result<Self, String> {
        let listener = crate::socket::listen(path, "owner-request", 0o666, None)?;
        Ok(OwnerServer {
            listener,
            conn: None,
            granted: granted.iter().map(|g| (g.uid, g.task.clone())).collect(),
            state,
        })
    }

    /// The descriptor to poll: the connection when one is open, else the listener.
    pub fn pollable(&self) -> &OwnedFd {
        self.conn.as_ref().map_or(&self.listener, |(c, _)| c)
    }

    /// Called when [`OwnerServer::pollable`] is readable: accepts a connection (refusing
    /// an ungranted peer) or serves one request.
    pub fn ready(&mut self) -> Option<Asked> {
        let Some((conn, task)) = &self.conn else {
            return self.accept();
        };
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = match rustix::net::recv(conn, &mut buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) | Err(_) => {
                self.conn = None;
                return None;
            }
            Ok((n, _)) => n,
        };
        let task = task.clone();
        let (response, asked) = match Request::decode(buf.get(..n).unwrap_or_default()) {
            Ok(Request::OwnerMode { ask }) => match write_request(&self.state, ask) {
                Ok(()) => (Response::Ok, Asked::Written { task, ask }),
                Err(e) => (
                    Response::Error(e.clone()),
                    Asked::Refused(format!("{task}: {e}")),
                ),
            },
            Ok(_) => {
                let e = "this socket serves owner-mode requests only".to_owned();
                (
                    Response::Error(e.clone()),
                    Asked::Refused(format!("{task}: {e}")),
                )
            }
            Err(e) => {
                let e = format!("bad request: {e}");
                (
                    Response::Error(e.clone()),
                    Asked::Refused(format!("{task}: {e}")),
                )
            }
        };
        if let Some((conn, _)) = &self.conn {
            if rustix::net::send(conn, &response.encode(), SendFlags::DONTWAIT).is_err() {
                self.conn = None;
            }
        }
        Some(asked)
    }

    fn accept(&mut self) -> Option<Asked> {
        let conn = rustix::net::accept_with(&self.listener, SocketFlags::CLOEXEC).ok()?;
        let uid = match rustix::net::sockopt::socket_peercred(&conn) {
            Ok(cred) => cred.uid.as_raw(),
            Err(e) => return Some(Asked::Refused(format!("peer credentials: {e}"))),
        };
        if let Some(task) = self.granted.get(&uid) {
            self.conn = Some((conn, task.clone()));
            return None;
        }
        let refusal = format!("uid {uid} holds no owner-request right");
        let _ = rustix::net::send(
            &conn,
            &Response::Error(refusal.clone()).encode(),
            SendFlags::DONTWAIT,
        );
        Some(Asked::Refused(refusal))
    }
}

/// Writes `ask` as the loader's request block into the `state` partition at `state`,
/// synced (module rules). An `Enter` key that is not an Ed25519 point writes nothing.
pub fn write_request(state: &Path, ask: OwnerAsk) -> Result<(), String> {
    let request = match ask {
        OwnerAsk::Enter { key } => {
            if VerifyingKey::from_bytes(&key).is_err() {
                return Err(
                    "owner-mode request refused: the owner's image key is not an Ed25519 \
                     public key"
                        .into(),
                );
            }
            OwnerRequest::Enter { key }
        }
        OwnerAsk::Leave => OwnerRequest::Leave,
    };
    write_block(state, &request)
}

/// Writes `request`'s 4 KiB block at `REQUEST_OFFSET` of `state` and syncs it.
pub(crate) fn write_block(state: &Path, request: &OwnerRequest) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let block = request.block();
    File::options()
        .write(true)
        .open(state)
        .and_then(|f| {
            f.write_all_at(&block, REQUEST_OFFSET)?;
            f.sync_data()
        })
        .map_err(|e| {
            format!(
                "{}: cannot write the owner request at offset {REQUEST_OFFSET}: {e}",
                state.display()
            )
        })
}

#[cfg(test)]
mod tests;
