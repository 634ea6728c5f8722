//! A small blocking HTTP/1.1 client over `std::net::TcpStream`, for the device.
//!
//! Rules kept here:
//! - GET only, `Connection: close`, no redirects, no chunked bodies, headers capped at 16 KiB.
//! - A `Content-Length` above the cap is refused before the body is read; a body is never
//!   read past `Content-Length` nor past the cap.
//! - Connect and every read are bounded by the policy's stall time and the overall deadline.
//! - No TLS: integrity and freshness come from TUF metadata, not from the channel. (Privacy
//!   of what a device downloads is not provided.)

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpStream, ToSocketAddrs};
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
            let timeout = remaining(&self.policy, started).ok_or_else(|| Error::SlowRetrieval {
                path: path.to_owned(),
                received: 0,
                elapsed_ms: started.elapsed().as_millis(),
                reason: "overall deadline passed while connecting",
            })?;
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
}

/// Time a single blocking operation may take: the stall bound, cut at the deadline.
fn remaining(policy: &RetrievalPolicy, started: Instant) -> Option<Duration> {
    let left = policy.deadline.checked_sub(started.elapsed())?;
    let t = left.min(policy.stall);
    (!t.is_zero()).then_some(t)
}

/// Percent-encodes a repository path for a URL: unreserved characters and `/` stay.
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Transport for HttpTransport {
    fn fetch(&self, path: &str, max_len: u64) -> Result<Download, Error> {
        let started = Instant::now();
        check_relative(path)?;
        let stream = self.connect(path, started)?;
        let set_timeout = |s: &TcpStream| -> Result<(), Error> {
            let t = remaining(&self.policy, started).ok_or_else(|| Error::SlowRetrieval {
                path: path.to_owned(),
                received: 0,
                elapsed_ms: started.elapsed().as_millis(),
                reason: "overall deadline passed",
            })?;
            s.set_read_timeout(Some(t))
                .and_then(|()| s.set_write_timeout(Some(t)))
                .map_err(|e| Error::io(format!("{path}: socket timeout"), e))
        };
        set_timeout(&stream)?;
        let request = format!(
            "GET {}/{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: limpet-tuf\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
            self.prefix,
            encode_path(path),
            self.host_header()
        );
        std::io::Write::write_all(&mut &stream, request.as_bytes())
            .map_err(|e| Error::io(format!("{path}: sending request"), e))?;

        let mut reader = BufReader::new(stream);
        let head = read_head(&mut reader, path, started, &self.policy)?;
        let proto = |reason: String| Error::HttpProtocol {
            path: path.to_owned(),
            reason,
        };
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(proto(format!("status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| proto(format!("status line {status_line:?}")))?;
        match status {
            200 => {}
            403 | 404 | 410 => {
                return Err(Error::NotFound {
                    path: path.to_owned(),
                })
            }
            _ => {
                return Err(Error::HttpStatus {
                    path: path.to_owned(),
                    status,
                })
            }
        }
        let mut content_length = None;
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| proto(format!("header line {line:?}")))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let len: u64 = value
                    .parse()
                    .map_err(|_| proto(format!("Content-Length {value:?}")))?;
                if content_length.is_some_and(|l| l != len) {
                    return Err(proto("conflicting Content-Length headers".into()));
                }
                content_length = Some(len);
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && !value.eq_ignore_ascii_case("identity")
            {
                return Err(proto(format!("unsupported Transfer-Encoding {value:?}")));
            }
        }
        if content_length.is_some_and(|l| l > max_len) {
            return Err(Error::LengthExceeded {
                path: path.to_owned(),
                max: max_len,
            });
        }
        let body = HttpBody {
            reader,
            remaining: content_length,
            started,
            policy: self.policy,
        };
        Ok(Download::new(
            path,
            Box::new(body),
            max_len,
            self.policy,
            started,
        ))
    }
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
                    Error::SlowRetrieval {
                        path: path.to_owned(),
                        received: 0,
                        elapsed_ms: started.elapsed().as_millis(),
                        reason: "response headers stalled",
                    }
                }
                _ => Error::io(format!("{path}: reading response headers"), e),
            })?;
        if started.elapsed() > policy.deadline {
            return Err(Error::SlowRetrieval {
                path: path.to_owned(),
                received: 0,
                elapsed_ms: started.elapsed().as_millis(),
                reason: "overall deadline passed",
            });
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
    reader: BufReader<TcpStream>,
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
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        let n = self.reader.read(buf.get_mut(..want).unwrap_or_default())?;
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
    fn encodes_paths() {
        assert_eq!(encode_path("a b/c%d?.img"), "a%20b/c%25d%3F.img");
    }
}
