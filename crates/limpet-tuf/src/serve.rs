//! A small static HTTP/1.1 file server for development (`limpet serve`) and tests.
//!
//! Rules kept here:
//! - GET and HEAD only; one thread per connection; `Connection: close`.
//! - Paths are percent-decoded and must stay inside the served directory (no `..`, no
//!   absolute paths, no symlink following is attempted beyond what the OS does).
//! - Not for production: no TLS, no connection limits. A [`Throttle`] trickles bytes slowly
//!   to exercise the clients' slow-retrieval defence.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::Error;
use crate::transport::check_relative;

/// Send `bytes` bytes, then pause `pause`, repeatedly (slow-retrieval tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    /// Bytes per burst.
    pub bytes: usize,
    /// Pause after each burst.
    pub pause: Duration,
}

/// Server options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServeOptions {
    /// Trickle response bodies.
    pub throttle: Option<Throttle>,
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
pub fn serve(dir: &Path, addr: SocketAddr) -> Result<Server, Error> {
    serve_with(dir, addr, ServeOptions::default())
}

/// As [`serve`], with options.
pub fn serve_with(dir: &Path, addr: SocketAddr, opts: ServeOptions) -> Result<Server, Error> {
    let listener = TcpListener::bind(addr).map_err(|e| Error::io(format!("binding {addr}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io(format!("address of {addr}"), e))?;
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
                if let Err(e) = handle(stream, &dir, opts) {
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

fn respond(stream: &mut TcpStream, status: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

fn handle(mut stream: TcpStream, dir: &Path, opts: ServeOptions) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.by_ref().take(8192).read_line(&mut request_line)?;
    // Drain headers (bounded).
    let mut total = 0usize;
    loop {
        let mut line = String::new();
        let n = reader.by_ref().take(8192).read_line(&mut line)?;
        total += n;
        if n == 0 || line == "\r\n" || line == "\n" || total > 64 * 1024 {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, "405 Method Not Allowed");
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    let Some(decoded) = percent_decode(path.trim_start_matches('/')) else {
        return respond(&mut stream, "400 Bad Request");
    };
    if check_relative(&decoded).is_err() {
        return respond(&mut stream, "404 Not Found");
    }
    let full: PathBuf = dir.join(&decoded);
    let Ok(mut file) = std::fs::File::open(&full) else {
        return respond(&mut stream, "404 Not Found");
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return respond(&mut stream, "404 Not Found");
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        meta.len()
    )?;
    if method == "HEAD" {
        return Ok(());
    }
    match opts.throttle {
        None => {
            std::io::copy(&mut file, &mut stream)?;
        }
        Some(t) => {
            let mut buf = vec![0u8; t.bytes.max(1)];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                stream.write_all(buf.get(..n).unwrap_or_default())?;
                stream.flush()?;
                std::thread::sleep(t.pause);
            }
        }
    }
    stream.flush()
}
