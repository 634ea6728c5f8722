//! [`Relay`]: a TCP relay between a client and a real server (limpet-repo's development
//! server in the tests), standing in for the network: it counts the connections and bytes
//! that cross it, and can trickle the server's bytes ([`Throttle`]) to play a slow server
//! for the clients' slow-retrieval defence.
//!
//! Rules kept here:
//! - Bytes pass unchanged and in order; each client connection gets its own upstream
//!   connection, and a half-close is passed on.
//! - The throttle paces everything the server sends (response heads too), in bursts of
//!   [`Throttle::bytes`] with a [`Throttle::pause`] after each.
//! - A relay lives as long as the test process; its threads are never joined.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long [`Wire::take`] waits for the relay threads to finish counting.
pub const SETTLE: Duration = Duration::from_millis(100);

/// Send at most `bytes` bytes, then pause `pause`, repeatedly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    /// Bytes per burst.
    pub bytes: usize,
    /// Pause after each burst.
    pub pause: Duration,
}

/// What a relay saw.
#[derive(Debug, Default)]
pub struct Wire {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Bytes from the client to the server (requests).
    pub up: AtomicU64,
    /// Bytes from the server to the client (responses, headers included).
    pub down: AtomicU64,
    /// Every byte the clients sent (their requests), in the order each connection sent
    /// them: what a test reads to see which paths were asked for.
    pub sent: Mutex<Vec<u8>>,
}

impl Wire {
    /// The clients' bytes so far as text (request lines and headers), after [`SETTLE`].
    pub fn sent_text(&self) -> String {
        std::thread::sleep(SETTLE);
        let sent = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&sent).into_owned()
    }
}

impl Wire {
    /// `(connections, up, down)` since the last call, resetting the counts. Waits
    /// [`SETTLE`] first, so the relay threads have counted what the client already read.
    pub fn take(&self) -> (u64, u64, u64) {
        std::thread::sleep(SETTLE);
        (
            self.connections.swap(0, Ordering::SeqCst),
            self.up.swap(0, Ordering::SeqCst),
            self.down.swap(0, Ordering::SeqCst),
        )
    }
}

/// A running relay on a loopback port.
#[derive(Debug)]
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The counts so far.
    pub wire: Arc<Wire>,
}

impl Relay {
    /// A relay to `upstream` that passes bytes at full speed and counts them.
    pub fn start(upstream: SocketAddr) -> Relay {
        Relay::spawn(upstream, None)
    }

    /// A relay to `upstream` that trickles the server's bytes as `throttle` says.
    pub fn throttled(upstream: SocketAddr, throttle: Throttle) -> Relay {
        Relay::spawn(upstream, Some(throttle))
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    #[allow(clippy::unwrap_used)] // test code: a relay that cannot bind fails the test
    fn spawn(upstream: SocketAddr, throttle: Option<Throttle>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let wire = Arc::new(Wire::default());
        let w = Arc::clone(&wire);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let w = Arc::clone(&w);
                std::thread::spawn(move || relay(client, upstream, &w, throttle));
            }
        });
        Relay { addr, wire }
    }
}

fn relay(client: TcpStream, upstream: SocketAddr, wire: &Arc<Wire>, throttle: Option<Throttle>) {
    wire.connections.fetch_add(1, Ordering::SeqCst);
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let w = Arc::clone(wire);
    let up = std::thread::spawn(move || copy(c2, s2, &w.up, None, Some(&w.sent)));
    copy(server, client, &wire.down, throttle, None);
    let _ = up.join();
}

/// Copies `from` to `to` until either end closes, counting into `count` and keeping the
/// bytes in `record` when given.
fn copy(
    mut from: TcpStream,
    mut to: TcpStream,
    count: &AtomicU64,
    throttle: Option<Throttle>,
    record: Option<&Mutex<Vec<u8>>>,
) {
    let mut buf = [0u8; 16 * 1024];
    let burst = throttle.map_or(buf.len(), |t| t.bytes.clamp(1, buf.len()));
    loop {
        let n = match from.read(&mut buf[..burst]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        count.fetch_add(n as u64, Ordering::SeqCst);
        if let Some(record) = record {
            record
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(t) = throttle {
            std::thread::sleep(t.pause);
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
