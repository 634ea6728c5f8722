//! The agent's side of PID 1's install socket ([`limpet_install_api`]): one connection per
//! poll, one request and one answer at a time.
//!
//! - [`RunningSlot`] is the delta seed: a [`ReadAt`] over `ReadRunning` requests, bounded
//!   to the running slot's length and cached one [`MAX_DATA`] piece at a time.
//! - [`InactiveSlot`] is where the new slot goes: a [`WriteAt`] that splits every write into
//!   `Write` requests of at most [`MAX_DATA`] bytes. PID 1 checks each against the length
//!   announced by `Begin`, and verifies the whole slot on `Finish`.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use limpet_chunk::{ReadAt, WriteAt};
use limpet_install_api::{DeviceStatus, Request, Response, MAX_DATA, MAX_MESSAGE};
use rustix::net::{
    sockopt, AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

use crate::error::AgentError;

/// How long one answer may take. `Finish` verifies a whole slot in PID 1 (seconds for a
/// large slot on a slow device); anything longer means PID 1 is not answering.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// An open connection to PID 1's install socket.
#[derive(Debug)]
pub struct Pid1 {
    fd: OwnedFd,
    path: PathBuf,
}

fn name(request: &Request) -> &'static str {
    match request {
        Request::Status => "status",
        Request::Begin { .. } => "begin",
        Request::ReadRunning { .. } => "read-running",
        Request::Write { .. } => "write",
        Request::Finish { .. } => "finish",
        Request::Reboot => "reboot",
        Request::Verified { .. } => "verified",
        Request::Roughtime { .. } => "roughtime",
        Request::SignCheckIn { .. } => "sign-check-in",
        Request::SignRemoteAccess { .. } => "sign-remote-access",
        Request::HandOver { .. } => "hand-over",
        Request::OwnerMode { .. } => "owner-mode",
    }
}

impl Pid1 {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, AgentError> {
        let err = |op: &'static str| {
            move |e: rustix::io::Errno| AgentError::Socket {
                path: path.to_owned(),
                op,
                source: e.into(),
            }
        };
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(err("socket"))?;
        let addr = SocketAddrUnix::new(path).map_err(err("address"))?;
        rustix::net::connect(&fd, &addr).map_err(err("connect"))?;
        for which in [sockopt::Timeout::Recv, sockopt::Timeout::Send] {
            sockopt::set_socket_timeout(&fd, which, Some(ANSWER_TIMEOUT))
                .map_err(err("set timeout"))?;
        }
        Ok(Pid1 {
            fd,
            path: path.to_owned(),
        })
    }

    /// Sends one request and returns PID 1's answer; an `Error` answer is
    /// [`AgentError::Refused`].
    pub fn ask(&self, request: &Request) -> Result<Response, AgentError> {
        let what = name(request);
        let err = |op: &'static str| {
            move |e: rustix::io::Errno| AgentError::Socket {
                path: self.path.clone(),
                op,
                source: e.into(),
            }
        };
        rustix::net::send(&self.fd, &request.encode(), SendFlags::NOSIGNAL).map_err(err(what))?;
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (n, _) = rustix::net::recv(&self.fd, &mut buf, RecvFlags::empty())
            .map_err(err("receive answer"))?;
        if n == 0 {
            return Err(AgentError::Socket {
                path: self.path.clone(),
                op: what,
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "PID 1 closed the socket"),
            });
        }
        match Response::decode(buf.get(..n).unwrap_or_default()) {
            Ok(Response::Error(reason)) => Err(AgentError::Refused {
                request: what,
                reason,
            }),
            Ok(r) => Ok(r),
            Err(source) => Err(AgentError::Decode {
                request: what,
                source,
            }),
        }
    }

    fn unexpected(request: &'static str, response: &Response) -> AgentError {
        AgentError::Unexpected {
            request,
            response: format!("{response:?}").chars().take(200).collect(),
        }
    }

    /// `Status`: the running version and length, the inactive slot's capacity, the floor,
    /// the highest failed version, a pending trial and whether this boot is
    /// one under the health gate, as PID 1 knows them.
    pub fn status(&self) -> Result<DeviceStatus, AgentError> {
        match self.ask(&Request::Status)? {
            Response::Status(s) => Ok(s),
            other => Err(Self::unexpected("status", &other)),
        }
    }

    /// `Begin`: PID 1 checks the version may be tried and fits the inactive slot.
    pub fn begin(&self, version: &str, length: u64) -> Result<(), AgentError> {
        let request = Request::Begin {
            version: version.to_owned(),
            length,
        };
        match self.ask(&request)? {
            Response::Ok => Ok(()),
            other => Err(Self::unexpected("begin", &other)),
        }
    }

    /// `Finish`: PID 1 verifies the written slot against `root_hash` and marks it as the trial.
    /// Returns the boots the trial gets.
    pub fn finish(&self, version: &str, root_hash: [u8; 32]) -> Result<u8, AgentError> {
        match self.ask(&Request::Finish { root_hash })? {
            Response::Staged { version: v, boots } if v == version => Ok(boots),
            other => Err(Self::unexpected("finish", &other)),
        }
    }

    /// `Verified`: the signed time and end of support this refresh verified, for PID 1's
    /// time record (seconds since the epoch).
    pub fn verified(&self, signed_time: u64, support_until: Option<u64>) -> Result<(), AgentError> {
        let request = Request::Verified {
            signed_time,
            support_until,
        };
        match self.ask(&request)? {
            Response::Ok => Ok(()),
            other => Err(Self::unexpected("verified", &other)),
        }
    }

    /// `Roughtime`: the model's Roughtime server list this refresh verified, for PID 1's
    /// client (which checks the addresses against the slot's and says what it did).
    pub fn roughtime(
        &self,
        servers: Vec<limpet_install_api::RoughtimeServer>,
    ) -> Result<(), AgentError> {
        match self.ask(&Request::Roughtime { servers })? {
            Response::Ok => Ok(()),
            other => Err(Self::unexpected("roughtime", &other)),
        }
    }

    /// `SignCheckIn`: the device's identity signs a check-in report (its JSON); PID 1 keeps
    /// the key and signs only reports of its own key.
    pub fn sign_check_in(&self, report: &[u8]) -> Result<[u8; 64], AgentError> {
        let request = Request::SignCheckIn {
            report: report.to_vec(),
        };
        match self.ask(&request)? {
            Response::Signed { signature } => Ok(signature),
            other => Err(Self::unexpected("sign-check-in", &other)),
        }
    }

    /// `HandOver`: PID 1 writes the hand-over request to `key` for the boot loader, which
    /// asks the person at the device at the next boot.
    pub fn hand_over(&self, key: [u8; 32]) -> Result<(), AgentError> {
        match self.ask(&Request::HandOver { key })? {
            Response::Ok => Ok(()),
            other => Err(Self::unexpected("hand-over", &other)),
        }
    }

    /// `Reboot`: only honoured when a trial is staged.
    pub fn reboot(&self) -> Result<(), AgentError> {
        match self.ask(&Request::Reboot)? {
            Response::Ok => Ok(()),
            other => Err(Self::unexpected("reboot", &other)),
        }
    }
}

/// An [`AgentError`] as an `io::Error` for the chunk assembler's I/O traits.
fn io_error(e: AgentError) -> io::Error {
    io::Error::other(e)
}

/// The running slot, read through PID 1: the delta seed.
#[derive(Debug)]
pub struct RunningSlot<'a> {
    pid1: &'a Pid1,
    len: u64,
    /// The last piece read: its offset and bytes.
    cache: RefCell<Option<(u64, Vec<u8>)>>,
}

impl<'a> RunningSlot<'a> {
    /// The first `len` bytes of the running slot (its `running_length`).
    pub fn new(pid1: &'a Pid1, len: u64) -> Self {
        RunningSlot {
            pid1,
            len,
            cache: RefCell::new(None),
        }
    }

    fn piece(&self, start: u64) -> io::Result<Vec<u8>> {
        let want = self.len.saturating_sub(start).min(MAX_DATA as u64);
        let len = u32::try_from(want).map_err(io::Error::other)?;
        match self
            .pid1
            .ask(&Request::ReadRunning { offset: start, len })
            .map_err(io_error)?
        {
            Response::Data(d) if d.len() as u64 == want => Ok(d),
            other => Err(io_error(Pid1::unexpected("read-running", &other))),
        }
    }
}

impl ReadAt for RunningSlot<'_> {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let piece = MAX_DATA as u64;
        let start = offset - offset % piece;
        let mut cache = self
            .cache
            .try_borrow_mut()
            .map_err(|_| io::Error::other("running slot cache in use"))?;
        let hit = matches!(&*cache, Some((at, _)) if *at == start);
        if !hit {
            *cache = Some((start, self.piece(start)?));
        }
        let data = cache
            .as_ref()
            .map(|(_, d)| d.as_slice())
            .unwrap_or_default();
        let from = usize::try_from(offset - start).map_err(io::Error::other)?;
        let available = data.get(from..).unwrap_or_default();
        let n = available.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(available.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// The inactive slot, written through PID 1 in `Write` requests.
#[derive(Debug)]
pub struct InactiveSlot<'a> {
    pid1: &'a Pid1,
}

impl<'a> InactiveSlot<'a> {
    /// Writes go to the install `Begin` started on this connection.
    pub fn new(pid1: &'a Pid1) -> Self {
        InactiveSlot { pid1 }
    }
}

impl WriteAt for InactiveSlot<'_> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut at = offset;
        for piece in buf.chunks(MAX_DATA) {
            let request = Request::Write {
                offset: at,
                data: piece.to_vec(),
            };
            match self.pid1.ask(&request).map_err(io_error)? {
                Response::Ok => {}
                other => return Err(io_error(Pid1::unexpected("write", &other))),
            }
            at = at.saturating_add(piece.len() as u64);
        }
        Ok(())
    }
}
