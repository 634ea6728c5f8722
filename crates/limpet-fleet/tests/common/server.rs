//! The server of the HTTP and dashboard tests: the real server on a loopback port with a
//! clock the test moves, an operator `ada`, and a plain HTTP/1.1 client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use limpet_fleet::auth;
use limpet_fleet::rollout::Fleet;
use limpet_fleet::store::Store;
use serde_json::Value;

use super::{hold_key, T0};

pub const PASSWORD: &str = "a long operator password";

pub struct Server {
    pub addr: SocketAddr,
    pub now: Arc<AtomicI64>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Server {
    pub fn start(url: &str) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let now = Arc::new(AtomicI64::new(T0));
        let clock_now = now.clone();
        let clock: limpet_fleet::server::Clock = Arc::new(move || clock_now.load(Ordering::SeqCst));
        let addr = rt.block_on(async {
            let store = Store::open(url).await.unwrap();
            store
                .set_operator("ada", &auth::hash_password("ada", PASSWORD).unwrap())
                .await
                .unwrap();
            let fleet = Fleet::new(store, hold_key());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(limpet_fleet::server::serve(
                listener,
                fleet,
                clock,
                Duration::from_secs(3600),
                auth::CookiePolicy::default(),
            ));
            addr
        });
        Server {
            addr,
            now,
            rt: Some(rt),
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        request(self.addr, method, path, headers, body)
    }

    pub fn checkin(&self, body: &[u8], etag: Option<&str>) -> Reply {
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(t) = etag {
            h.push(("If-None-Match", t));
        }
        self.request("POST", "/api/v1/checkin", &h, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Logs in; returns the Cookie header value and the session's CSRF token.
pub fn login(server: &Server) -> (String, String) {
    let r = server.request(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("name=ada&password={}", PASSWORD.replace(' ', "+")).as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = server.request("GET", "/", &[("Cookie", &cookie)], b"");
    assert_eq!(page.status, 200);
    let html = page.text();
    let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = html[at..at + 32].to_owned();
    (cookie, csrf)
}

/// One HTTP/1.1 request to `addr` on a connection of its own; the whole answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        addr,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")),
        "chunked answers are not read here"
    );
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}
