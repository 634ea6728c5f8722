//! `POST /api/v1/checkin` to the fleet server: a small blocking HTTP/1.1 client over
//! `std::net::TcpStream`, one request per connection.
//!
//! Rules kept here:
//! - Plain HTTP: the report is signed by the device and the holds by the server's hold
//!   key, so TLS would add nothing the device relies on.
//! - Bounded: connect, read and write time out after [`TIMEOUT`]; an answer longer than
//!   [`MAX_ANSWER`] bytes, or listing more than [`MAX_HOLDS`] holds, is refused.
//! - The answer's body ends at its `Content-Length` when it has one (a `304` has none),
//!   not at the connection's close: a relay on the way may keep the connection open
//!   after the server closed its end.
//! - What the answer says is only parsed here; whether a hold counts is decided by
//!   [`super::gate`] against the signed metadata.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use limpet_fleet_api::hold::SignedHold;
use serde::Deserialize;

use super::FleetError;

/// Connect, read and write timeout.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read.
pub const MAX_ANSWER: u64 = 256 * 1024;
/// The most holds one answer may list.
pub const MAX_HOLDS: usize = 64;

/// The fleet server's address: `http://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetUrl {
    url: String,
    host: String,
    port: u16,
    path: String,
}

impl FleetUrl {
    /// Parses the URL the manifest compiled into the agent's command line.
    pub fn parse(url: &str) -> Result<FleetUrl, FleetError> {
        let bad = |why: &str| FleetError::Url {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// is spoken"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("bad port"))?),
            None => (authority, 80),
        };
        if host.is_empty() || port == 0 || authority.contains('@') {
            return Err(bad("no host, port 0 or credentials"));
        }
        if url.contains(['?', '#', ' ']) || url.chars().any(char::is_control) {
            return Err(bad("query, fragment, space or control character"));
        }
        Ok(FleetUrl {
            url: url.trim_end_matches('/').to_owned(),
            host: host.to_owned(),
            port,
            path: match path.trim_end_matches('/') {
                "" => String::new(),
                p => format!("/{p}"),
            },
        })
    }

    /// The URL as given (without a trailing slash).
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

/// The server's answer to a check-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The holds in force (the whole set) and their tag.
    Holds {
        /// The signed holds, as sent.
        holds: Vec<SignedHold>,
        /// The `ETag`, to send back as `If-None-Match`.
        etag: Option<String>,
    },
    /// `304`: the holds named by the tag sent are still the ones in force.
    NotModified,
}

#[derive(Deserialize)]
struct HoldsBody {
    holds: Vec<SignedHold>,
}

/// Sends the signed report `body`; `etag` is the tag of the holds kept.
pub fn check_in(url: &FleetUrl, body: &[u8], etag: Option<&str>) -> Result<Answer, FleetError> {
    let io = |what: &'static str| {
        let url = url.url.clone();
        move |source: std::io::Error| FleetError::Io { url, what, source }
    };
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(io("resolve"))?
        .next()
        .ok_or_else(|| io("resolve")(std::io::Error::other("no address")))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io("connect"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(io("connect"))?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(io("connect"))?;
    let mut head = format!(
        "POST {}/api/v1/checkin HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: limpet-agent\r\n",
        url.path,
        url.host,
        url.port,
        body.len()
    );
    if let Some(tag) = etag.filter(|t| t.bytes().all(|b| (0x21..0x7f).contains(&b))) {
        head.push_str(&format!("If-None-Match: {tag}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(io("send"))?;
    stream.write_all(body).map_err(io("send"))?;
    let mut reader = BufReader::new(stream.take(MAX_ANSWER + 1));
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io("read the answer"))?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| FleetError::Answer {
            url: url.url.clone(),
            why: format!("not an HTTP status line: {:?}", line.trim_end()),
        })?;
    let mut tag = None;
    let mut length: Option<u64> = None;
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(io("read the answer"))?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("etag") {
                tag = Some(value.trim().to_owned());
            }
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse().map_err(|_| FleetError::Answer {
                    url: url.url.clone(),
                    why: format!("Content-Length {:?} is not a number", value.trim()),
                })?);
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(FleetError::Answer {
                    url: url.url.clone(),
                    why: "a chunked answer (the server sends a length)".into(),
                });
            }
        }
    }
    if status == 304 {
        return Ok(Answer::NotModified);
    }
    let mut rest = Vec::new();
    match length {
        Some(n) if n > MAX_ANSWER => {
            return Err(FleetError::Answer {
                url: url.url.clone(),
                why: format!("longer than {MAX_ANSWER} bytes"),
            })
        }
        Some(n) => {
            (&mut reader)
                .take(n)
                .read_to_end(&mut rest)
                .map_err(io("read the answer"))?;
            if rest.len() as u64 != n {
                return Err(FleetError::Answer {
                    url: url.url.clone(),
                    why: format!("cut short: {} of its {n} bytes", rest.len()),
                });
            }
        }
        None => {
            reader
                .read_to_end(&mut rest)
                .map_err(io("read the answer"))?;
        }
    }
    if rest.len() as u64 > MAX_ANSWER {
        return Err(FleetError::Answer {
            url: url.url.clone(),
            why: format!("longer than {MAX_ANSWER} bytes"),
        });
    }
    match status {
        200 => {
            let parsed: HoldsBody =
                serde_json::from_slice(&rest).map_err(|e| FleetError::Answer {
                    url: url.url.clone(),
                    why: format!("holds: {e}"),
                })?;
            if parsed.holds.len() > MAX_HOLDS {
                return Err(FleetError::Answer {
                    url: url.url.clone(),
                    why: format!("{} holds, more than {MAX_HOLDS}", parsed.holds.len()),
                });
            }
            Ok(Answer::Holds {
                holds: parsed.holds,
                etag: tag,
            })
        }
        _ => Err(FleetError::Refused {
            url: url.url.clone(),
            status,
            text: String::from_utf8_lossy(&rest).chars().take(300).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers `answer` and then keeps the connection open until the test
    /// ends: the client must stop at the answer's length, not wait for the close.
    fn open_server(answer: &'static str) -> (FleetUrl, std::sync::mpsc::Sender<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = FleetUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            s.write_all(answer.as_bytes()).unwrap();
            let _ = wait.recv();
        });
        (url, done)
    }

    #[test]
    fn an_answer_ends_at_its_length_on_a_connection_left_open() {
        let (url, _done) = open_server(
            "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nETag: \"t\"\r\n\r\n{\"holds\":[]}",
        );
        assert_eq!(
            check_in(&url, b"{}", None).unwrap(),
            Answer::Holds {
                holds: Vec::new(),
                etag: Some("\"t\"".into())
            }
        );
        let (url, _done) = open_server("HTTP/1.1 304 Not Modified\r\nETag: \"t\"\r\n\r\n");
        assert_eq!(
            check_in(&url, b"{}", Some("\"t\"")).unwrap(),
            Answer::NotModified
        );
        let (url, done) =
            open_server("HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"holds\":[]}");
        drop(done);
        let err = check_in(&url, b"{}", None).unwrap_err().to_string();
        assert!(err.contains("cut short: 12 of its 40 bytes"), "{err}");
    }

    #[test]
    fn fleet_urls() {
        let u = FleetUrl::parse("http://10.0.2.101:8090/fleet/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("10.0.2.101", 8090, "/fleet")
        );
        assert_eq!(u.as_str(), "http://10.0.2.101:8090/fleet");
        let u = FleetUrl::parse("http://fleet.example").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, ""));
        for bad in [
            "https://x",
            "http://",
            "http://a:0",
            "http://u:p@h",
            "http://h/?q",
            "x",
        ] {
            assert!(
                matches!(FleetUrl::parse(bad), Err(FleetError::Url { .. })),
                "{bad}"
            );
        }
    }
}
