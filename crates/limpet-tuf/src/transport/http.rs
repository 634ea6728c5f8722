//! A small blocking HTTP/1.1 client over `std::net::TcpStream`, for the device.
//!
//! Rules kept here:
//! - GET only, no redirects, no chunked bodies, no content codings, headers capped at 16 KiB.
//! - A [`fetch`](Transport::fetch) is one request on its own connection, `Connection: close`.
//!   A [`prefetch`](Transport::prefetch) pipelines its requests on one connection, written at
//!   once (`Connection: keep-alive` on all but the last, `Connection: close` on the last), and
//!   reads the responses in order, each body whole into memory. A pipelined response without
//!   `Content-Length` or with an unexpected status, a length above the cap, or any failure
//!   ends the pipeline: what it did not get is fetched one request per connection, as usual.
//! - A `Content-Length` above the cap is refused before the body is read; a body is never
//!   read past `Content-Length` nor past the cap.
//! - Connect and every read are bounded by the policy's stall time and the overall deadline
//!   (in a pipeline, each response's deadline runs from the end of the one before).
//! - No TLS: integrity and freshness come from TUF metadata, not from the channel. (Privacy
//!   of what a device downloads is not provided.)

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{check_relative, Download, RetrievalPolicy, Transport};
use crate::error::Error;

const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Fetches repository paths below an `http://host[:port]/prefix` base URL.
#[derive(Clone, Debug)]
pub struct HttpTransport {
    host: String,
    port: u16,
    prefix: String,
    policy: RetrievalPolicy,
    /// What the last prefetch got, until fetched (shared by clones).
    stash: Stash,
}

/// A connection's read side, shared by the bodies read from it in turn (pipelining).
type Conn = Arc<Mutex<BufReader<TcpStream>>>;

fn lock(conn: &Conn) -> MutexGuard<'_, BufReader<TcpStream>> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Prefetched outcomes by path, each taken by at most one fetch.
#[derive(Clone, Default)]
struct Stash(Arc<Mutex<HashMap<String, Prefetched>>>);

/// The outcome of one pipelined request, and the cap it was asked with.
struct Prefetched {
    max_len: u64,
    result: Result<Vec<u8>, Error>,
}

impl std::fmt::Debug for Stash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.map().keys()).finish()
    }
}

impl Stash {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Prefetched>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the outcome stashed for `path`, as a fetch capped at `max_len` would see it;
    /// `None` if there is none, or only a refusal under a smaller cap than `max_len`.
    fn take(&self, path: &str, max_len: u64) -> Option<Result<Vec<u8>, Error>> {
        let entry = self.map().remove(path)?;
        let too_long = || Error::LengthExceeded {
            path: path.to_owned(),
            max: max_len,
        };
        match entry.result {
            Ok(bytes) if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max_len => {
                Some(Err(too_long()))
            }
            Err(Error::LengthExceeded { .. }) if max_len > entry.max_len => None,
            Err(Error::LengthExceeded { .. }) => Some(Err(too_long())),
            result => Some(result),
        }
    }
}

impl HttpTransport {
    /// A transport for `base_url` (`http://host[:port][/prefix]`).
    pub fn new(base_url: &str, policy: RetrievalPolicy) -> Result<Self, Error> {
        let bad = |reason| Error::UnsupportedUrl {
            url: base_url.to_owned(),
            reason,
        };
        let rest = base_url
            .strip_prefix("http://")
            .ok_or_else(|| bad("not an http:// URL"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (
                rest.get(..i).unwrap_or_default(),
                rest.get(i..).unwrap_or_default(),
            ),
            None => (rest, ""),
        };
        if authority.contains('@') || prefix.contains(['?', '#']) {
            return Err(bad("credentials, query or fragment in URL"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("bad IPv6 host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => 80,
                None => return Err(bad("bad authority")),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("bad port"))?),
                None => (authority.to_owned(), 80),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(HttpTransport {
            host,
            port,
            prefix: prefix.trim_end_matches('/').to_owned(),
            policy,
            stash: Stash::default(),
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    fn connect(&self, path: &str, started: Instant) -> Result<TcpStream, Error> {
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| Error::io(format!("resolving {}", self.host), e))?;
        let mut last = None;
        for addr in addrs {
            let timeout = remaining(&self.policy, started)
                .ok_or_else(|| slow(path, started, "overall deadline passed while connecting"))?;
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some((addr, e)),
            }
        }
        Err(match last {
            Some((addr, e)) => Error::io(format!("connecting to {addr}"), e),
            None => Error::io(
                format!("resolving {}", self.host),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
            ),
        })
    }

    /// Bounds the socket's reads and writes by the stall time and the deadline.
    fn set_timeouts(&self, s: &TcpStream, path: &str, started: Instant) -> Result<(), Error> {
        let t = remaining(&self.policy, started)
            .ok_or_else(|| slow(path, started, "overall deadline passed"))?;
        s.set_read_timeout(Some(t))
            .and_then(|()| s.set_write_timeout(Some(t)))
            .map_err(|e| Error::io(format!("{path}: socket timeout"), e))
    }

    /// The request for `url_path` (already percent-encoded): the connection closes after it
    /// if `last`.
    fn request(&self, url_path: &str, last: bool) -> String {
        format!(
            "GET {}/{} HTTP/1.1\r\nHost: {}\r\nConnection: {}\r\n\r\n",
            self.prefix,
            url_path,
            self.host_header(),
            if last { "close" } else { "keep-alive" }
        )
    }

    /// Connects and sends `requests` in one write; `path` names the first, for errors.
    fn send(&self, path: &str, requests: &str, started: Instant) -> Result<Conn, Error> {
        let stream = self.connect(path, started)?;
        self.set_timeouts(&stream, path, started)?;
        std::io::Write::write_all(&mut &stream, requests.as_bytes())
            .map_err(|e| Error::io(format!("{path}: sending request"), e))?;
        Ok(Arc::new(Mutex::new(BufReader::new(stream))))
    }

    /// The next response on `conn`, for `path`, as a download capped at `max_len`.
    fn body(
        &self,
        conn: &Conn,
        path: &str,
        content_length: Option<u64>,
        max_len: u64,
        started: Instant,
    ) -> Download {
        let body = HttpBody {
            conn: Arc::clone(conn),
            remaining: content_length,
            started,
            policy: self.policy,
        };
        Download::new(path, Box::new(body), max_len, self.policy, started)
    }

    /// Reads the next response of a pipeline: what to stash for `path`, and whether the
    /// connection can still be read. `Err`: nothing to stash, the pipeline ends.
    fn read_pipelined(
        &self,
        conn: &Conn,
        path: &str,
        max_len: u64,
        started: Instant,
    ) -> Result<(Result<Vec<u8>, Error>, bool), Error> {
        let head = {
            let mut reader = lock(conn);
            self.set_timeouts(reader.get_ref(), path, started)?;
            read_response_head(&mut reader, path, started, &self.policy)?
        };
        // A status other than found / not found is not stashed: the fetch asks again.
        let status = match check_status(path, head.status) {
            Err(e @ Error::HttpStatus { .. }) => return Err(e),
            status => status,
        };
        // A body that cannot be delimited ends the pipeline (a 404 is still a 404).
        let delimited = head.framing(path).and_then(|f| match f.content_length {
            Some(len) => Ok((len, f.close)),
            None => Err(Error::HttpProtocol {
                path: path.to_owned(),
                reason: "pipelined response without Content-Length".into(),
            }),
        });
        let (len, close) = match delimited {
            Ok(delimited) => delimited,
            Err(e) => {
                return match status {
                    Ok(()) => Err(e),
                    Err(not_found) => Ok((Err(not_found), false)),
                }
            }
        };
        if len > max_len {
            // Without reading the body the next response cannot be found: the pipeline ends.
            let too_long = Err(Error::LengthExceeded {
                path: path.to_owned(),
                max: max_len,
            });
            return Ok((status.and(too_long), false));
        }
        let body = self
            .body(conn, path, Some(len), max_len, started)
            .read_all();
        match (status, body) {
            (Err(not_found), body) => Ok((Err(not_found), body.is_ok() && !close)),
            (Ok(()), Ok(bytes)) => Ok((Ok(bytes), !close)),
            (Ok(()), Err(e @ (Error::SlowRetrieval { .. } | Error::LengthExceeded { .. }))) => {
                Ok((Err(e), false))
            }
            (Ok(()), Err(e)) => Err(e),
        }
    }
}

/// Time a single blocking operation may take: the stall bound, cut at the deadline.
fn remaining(policy: &RetrievalPolicy, started: Instant) -> Option<Duration> {
    let left = policy.deadline.checked_sub(started.elapsed())?;
    let t = left.min(policy.stall);
    (!t.is_zero()).then_some(t)
}

/// A slow retrieval before any body byte arrived.
fn slow(path: &str, started: Instant, reason: &'static str) -> Error {
    Error::SlowRetrieval {
        path: path.to_owned(),
        received: 0,
        elapsed_ms: started.elapsed().as_millis(),
        reason,
    }
}

/// Percent-encodes a repository path for a URL: unreserved characters and `/` stay.
pub(crate) fn encode_path(path: &str) -> String {
    encode(path, true)
}

/// Percent-encodes one file name as one URL path segment: unreserved characters stay, `/`
/// too is encoded (as Python's `urllib.parse.quote(name, "")`).
pub(crate) fn encode_segment(name: &str) -> String {
    encode(name, false)
}

fn encode(path: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl HttpTransport {
    /// GETs `url_path` (percent-encoded), naming it `path` in errors and downloads.
    fn get(&self, path: &str, url_path: &str, max_len: u64) -> Result<Download, Error> {
        let started = Instant::now();
        let conn = self.send(path, &self.request(url_path, true), started)?;
        let head = read_response_head(&mut lock(&conn), path, started, &self.policy)?;
        check_status(path, head.status)?;
        let framing = head.framing(path)?;
        if framing.content_length.is_some_and(|l| l > max_len) {
            return Err(Error::LengthExceeded {
                path: path.to_owned(),
                max: max_len,
            });
        }
        Ok(self.body(&conn, path, framing.content_length, max_len, started))
    }
}

impl Transport for HttpTransport {
    fn fetch(&self, path: &str, max_len: u64) -> Result<Download, Error> {
        check_relative(path)?;
        if let Some(prefetched) = self.stash.take(path, max_len) {
            return prefetched.map(|bytes| {
                let bytes = Box::new(Cursor::new(bytes));
                Download::new(path, bytes, max_len, self.policy, Instant::now())
            });
        }
        self.get(path, &encode_path(path), max_len)
    }

    /// Any name but empty, `.` and `..` (which a URL resolves as directories), as one
    /// segment.
    fn fetch_file_name(&self, name: &str, max_len: u64) -> Result<Download, Error> {
        if name.is_empty() || name == "." || name == ".." {
            return Err(Error::BadPath {
                path: name.to_owned(),
                reason: "empty, . or .. as a file name",
            });
        }
        self.get(name, &encode_segment(name), max_len)
    }

    /// Pipelines the requests on one connection; see the module rules.
    fn prefetch(&self, requests: &[(&str, u64)]) {
        self.stash.map().clear();
        let Some(&(first, _)) = requests.first() else {
            return;
        };
        let repeated = requests
            .iter()
            .enumerate()
            .any(|(i, (p, _))| requests.iter().take(i).any(|(q, _)| q == p));
        if repeated || requests.iter().any(|(p, _)| check_relative(p).is_err()) {
            return;
        }
        let mut started = Instant::now();
        let batch: String = requests
            .iter()
            .enumerate()
            .map(|(i, &(path, _))| self.request(&encode_path(path), i + 1 == requests.len()))
            .collect();
        let conn = match self.send(first, &batch, started) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "prefetch failed, fetching one by one");
                return;
            }
        };
        for &(path, max_len) in requests {
            match self.read_pipelined(&conn, path, max_len, started) {
                Ok((result, more)) => {
                    self.stash
                        .map()
                        .insert(path.to_owned(), Prefetched { max_len, result });
                    if !more {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "prefetch ended, fetching the rest one by one");
                    break;
                }
            }
            started = Instant::now();
        }
    }
}

/// A response head: the status, and the body's framing if it could be checked (it matters
/// only when the body is read, so a 404 is a 404 whatever its headers).
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    framing: Result<Framing, String>,
}

/// How a body is delimited: HTTP/1.x, at most one `Content-Length`, no transfer or content
/// coding but identity.
#[derive(Debug, PartialEq, Eq)]
struct Framing {
    content_length: Option<u64>,
    /// The server closes the connection after this response.
    close: bool,
}

impl Head {
    /// The framing, or why the body cannot be read.
    fn framing(self, path: &str) -> Result<Framing, Error> {
        self.framing.map_err(|reason| Error::HttpProtocol {
            path: path.to_owned(),
            reason,
        })
    }
}

/// What a fetch answers for a status: 200 is the file, 403, 404 and 410 mean it is absent.
fn check_status(path: &str, status: u16) -> Result<(), Error> {
    match status {
        200 => Ok(()),
        403 | 404 | 410 => Err(Error::NotFound {
            path: path.to_owned(),
        }),
        _ => Err(Error::HttpStatus {
            path: path.to_owned(),
            status,
        }),
    }
}

fn read_response_head(
    reader: &mut BufReader<TcpStream>,
    path: &str,
    started: Instant,
    policy: &RetrievalPolicy,
) -> Result<Head, Error> {
    let head = read_head(reader, path, started, policy)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| Error::HttpProtocol {
            path: path.to_owned(),
            reason: format!("status line {status_line:?}"),
        })?;
    Ok(Head {
        status,
        framing: parse_framing(version, lines),
    })
}

fn parse_framing<'a>(
    version: &str,
    headers: impl Iterator<Item = &'a str>,
) -> Result<Framing, String> {
    let mut content_length = None;
    let (mut close, mut keep_alive) = (false, false);
    for line in headers.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len: u64 = value
                .parse()
                .map_err(|_| format!("Content-Length {value:?}"))?;
            if content_length.is_some_and(|l| l != len) {
                return Err("conflicting Content-Length headers".into());
            }
            content_length = Some(len);
        } else if (name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("content-encoding"))
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(format!("unsupported {name} {value:?}"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    Ok(Framing {
        content_length,
        close: close || (version == "HTTP/1.0" && !keep_alive),
    })
}

fn read_head(
    reader: &mut BufReader<TcpStream>,
    path: &str,
    started: Instant,
    policy: &RetrievalPolicy,
) -> Result<String, Error> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take(u64::try_from(MAX_HEADER_BYTES.saturating_sub(head.len())).unwrap_or(0))
            .read_until(b'\n', &mut line)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    slow(path, started, "response headers stalled")
                }
                _ => Error::io(format!("{path}: reading response headers"), e),
            })?;
        if started.elapsed() > policy.deadline {
            return Err(slow(path, started, "overall deadline passed"));
        }
        if n == 0 || !line.ends_with(b"\n") {
            return Err(Error::HttpProtocol {
                path: path.to_owned(),
                reason: "response headers truncated or longer than 16 KiB".into(),
            });
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    String::from_utf8(head).map_err(|_| Error::HttpProtocol {
        path: path.to_owned(),
        reason: "response headers are not UTF-8".into(),
    })
}

/// The body of a response: stops at `Content-Length`, refreshes the socket timeout before
/// every read so no read outlives the stall bound or the deadline.
struct HttpBody {
    conn: Conn,
    remaining: Option<u64>,
    started: Instant,
    policy: RetrievalPolicy,
}

impl Read for HttpBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = match self.remaining {
            Some(0) => return Ok(0),
            Some(r) => buf.len().min(usize::try_from(r).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        let Some(timeout) = remaining(&self.policy, self.started) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "deadline passed",
            ));
        };
        let mut reader = lock(&self.conn);
        reader.get_ref().set_read_timeout(Some(timeout))?;
        let n = reader.read(buf.get_mut(..want).unwrap_or_default())?;
        if let Some(r) = &mut self.remaining {
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before Content-Length bytes",
                ));
            }
            *r = r.saturating_sub(u64::try_from(n).unwrap_or(u64::MAX));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let p = RetrievalPolicy::default();
        let t = HttpTransport::new("http://localhost:8080/repo/metadata/", p).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.prefix.as_str()),
            ("localhost", 8080, "/repo/metadata")
        );
        let t = HttpTransport::new("http://[::1]:9/x", p).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        let t = HttpTransport::new("http://example.com", p).unwrap();
        assert_eq!((t.port, t.prefix.as_str()), (80, ""));
        assert!(HttpTransport::new("https://example.com", p).is_err());
    }

    #[test]
    fn checks_framing() {
        let framing = |version, headers: &[&str]| parse_framing(version, headers.iter().copied());
        assert_eq!(
            framing("HTTP/1.1", &["Content-Length: 5", "content-length:5"]),
            Ok(Framing {
                content_length: Some(5),
                close: false
            })
        );
        assert_eq!(
            framing("HTTP/1.1", &["Connection: Keep-Alive, close"]),
            Ok(Framing {
                content_length: None,
                close: true
            })
        );
        assert!(framing("HTTP/1.0", &[]).unwrap().close);
        assert!(
            !framing("HTTP/1.0", &["Connection: keep-alive"])
                .unwrap()
                .close
        );
        for bad in [
            &["Content-Length: 5", "Content-Length: 6"][..],
            &["Content-Length: -1"],
            &["Transfer-Encoding: chunked"],
            &["Content-Encoding: gzip"],
            &["no colon"],
        ] {
            assert!(framing("HTTP/1.1", bad).is_err(), "{bad:?}");
        }
        assert!(framing("HTTP/1.1", &["Content-Encoding: identity"]).is_ok());
    }

    #[test]
    fn encodes_paths() {
        assert_eq!(encode_path("a b/c%d?.img"), "a%20b/c%25d%3F.img");
        // As Python's quote(name, ""): the role names of tuf-conformance's quoting tests.
        assert_eq!(
            encode_segment("1./delegatedrole.json"),
            "1.%2Fdelegatedrole.json"
        );
        assert_eq!(
            encode_segment("../delegatedrole.json"),
            "..%2Fdelegatedrole.json"
        );
        assert_eq!(encode_segment("?.json"), "%3F.json");
        assert_eq!(encode_segment("#.json"), "%23.json");
    }
}
