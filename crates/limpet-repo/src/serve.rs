//! A small static HTTP/1.1 file server for the update repository in development
//! (`limpet serve`) and in tests. Vendor side: the device's update agent does not link it.
//!
//! Rules kept here:
//! - GET and HEAD only; one thread per connection. Requests on a connection are answered in
//!   order (pipelined or not) until the client sends `Connection: close` (or speaks
//!   HTTP/1.0), closes, sends a request that cannot be delimited, or is idle for 5 s.
//!   Every response has a `Content-Length` (404s too); one the server
//!   closes after says `Connection: close`. No other headers.
//! - Paths are percent-decoded and must stay inside the served directory (no `..`, no
//!   absolute paths, no symlink following is attempted beyond what the OS does).
//! - Not for production: no TLS, no connection limits. Slow or stalled servers, for the
//!   clients' slow-retrieval tests, are limpet-testkit's relays in front of this one.

use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use limpet_tuf::transport::check_relative;

/// How long a connection may wait for (each read of) its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bounds on a request's head: its first line, and all of it.
const MAX_REQUEST_LINE: u64 = 8192;
const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("binding {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The bound socket's address could not be read.
    #[error("reading the address bound for {addr}")]
    LocalAddr {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running server; stops when [`Server::shutdown`] is called or the handle is dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Blocks until the server stops (for `limpet serve`).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_now();
        }
    }
}

/// Serves `dir` over HTTP on `addr` (port 0 picks a free port).
pub fn serve(dir: &Path, addr: SocketAddr) -> Result<Server, ServeError> {
    let listener = TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::LocalAddr { addr, source })?;
    let stop = Arc::new(AtomicBool::new(false));
    let dir = dir.to_owned();
    let stop2 = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = conn else { continue };
            let dir = dir.clone();
            std::thread::spawn(move || {
                if let Err(e) = handle(stream, &dir) {
                    tracing::debug!(error = %e, "serve: connection ended");
                }
            });
        }
    });
    Ok(Server {
        addr,
        stop,
        thread: Some(thread),
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One parsed request.
struct Request {
    method: String,
    target: String,
    /// The client asked to close after this request, or the request cannot be delimited.
    close: bool,
}

/// Reads the next request head; `None` at a clean end of the connection (EOF or idle).
fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut request_line = String::new();
    match reader
        .by_ref()
        .take(MAX_REQUEST_LINE)
        .read_line(&mut request_line)
    {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let version = parts.next().unwrap_or("");
    // HTTP/1.0 is answered with a close; so is a request that cannot be delimited (a line
    // without its end, a head too long, a body).
    let mut close = !request_line.ends_with('\n') || version != "HTTP/1.1";
    let mut total = request_line.len();
    loop {
        let mut line = String::new();
        let n = reader
            .by_ref()
            .take(MAX_REQUEST_LINE)
            .read_line(&mut line)?;
        total += n;
        if n == 0 || !line.ends_with('\n') || total > MAX_REQUEST_HEAD {
            close = true;
            break;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            close |= value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"));
        } else if (name.eq_ignore_ascii_case("content-length") && value != "0")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            close = true;
        }
    }
    Ok(Some(Request {
        method,
        target,
        close,
    }))
}

fn head(out: &mut impl Write, status: &str, length: u64, close: bool) -> std::io::Result<()> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: {length}\r\n{connection}\r\n"
    )
}

fn handle(stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    // Each response is sent when flushed, not held back for the previous one's ACK.
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = BufWriter::new(stream);
    while let Some(request) = read_request(&mut reader)? {
        respond(&mut out, dir, &request)?;
        out.flush()?;
        if request.close {
            break;
        }
    }
    Ok(())
}

fn respond(out: &mut impl Write, dir: &Path, request: &Request) -> std::io::Result<()> {
    let close = request.close;
    let method = request.method.as_str();
    if method != "GET" && method != "HEAD" {
        return head(out, "405 Method Not Allowed", 0, close);
    }
    let path = request.target.split(['?', '#']).next().unwrap_or("");
    let Some(decoded) = percent_decode(path.trim_start_matches('/')) else {
        return head(out, "400 Bad Request", 0, close);
    };
    if check_relative(&decoded).is_err() {
        return head(out, "404 Not Found", 0, close);
    }
    let full: PathBuf = dir.join(&decoded);
    let opened = std::fs::File::open(&full).and_then(|f| f.metadata().map(|m| (f, m)));
    let Ok((file, meta)) = opened else {
        return head(out, "404 Not Found", 0, close);
    };
    if !meta.is_file() {
        return head(out, "404 Not Found", 0, close);
    }
    head(out, "200 OK", meta.len(), close)?;
    if method == "HEAD" {
        return Ok(());
    }
    // Exactly Content-Length bytes, even if the file grows meanwhile, so the next response
    // on the connection starts where the client expects it.
    let mut file = Read::take(file, meta.len());
    let sent = std::io::copy(&mut file, out)?;
    if sent < meta.len() {
        // The client would wait for the missing bytes: end the connection.
        return Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "file shrank while it was sent",
        ));
    }
    Ok(())
}
