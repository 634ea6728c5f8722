//! The Roughtime client linked into a PID 1 whose slot lists servers (see the parent
//! module for the rules it keeps).
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};

use limpet_policy::RoughtimeServer;
use limpet_roughtime::Server;

use super::{Outcome, ReplaceError, Replaced, ROUND_INTERVAL, TRIES, TRY_TIMEOUT, UNSENT_RETRY};
use crate::supervisor::Millis;
use crate::sys;

/// Largest answer read: a Roughtime answer fits one UDP datagram on Ethernet.
const ANSWER_MAX: usize = 1500;

/// One listed server.
#[derive(Debug)]
struct Listed {
    server: Server,
    address: SocketAddrV4,
}

/// The query in flight.
#[derive(Debug)]
struct Query {
    index: usize,
    nonce: [u8; 32],
    request: Vec<u8>,
    socket: UdpSocket,
    tries: u32,
    deadline: Millis,
}

/// The client's state (see the module doc).
#[derive(Debug)]
pub struct Roughtime {
    servers: Vec<Listed>,
    /// The addresses the slot lists: the only ones a query can go to.
    slot_addresses: Vec<SocketAddrV4>,
    /// The last signed list taken or refused, so the same list sent by every refresh is
    /// acted on (and said) once.
    last_signed: Option<Vec<RoughtimeServer>>,
    /// The next server of the round to ask.
    next: usize,
    /// When the next round starts (`None`: at once, once the network is up).
    round_at: Option<Millis>,
    query: Option<Query>,
    /// Whether a raised earliest time may set the system clock (not in a simulation, which
    /// runs on the host's clock).
    sets_clock: bool,
}

impl Roughtime {
    /// The client for the policy's servers, if it lists any; says each one left out.
    pub fn of(policy: &limpet_policy::DevicePolicy, sets_clock: bool) -> Option<Self> {
        let listed = &policy.lifecycle.as_ref()?.roughtime;
        let (mut client, lines) = Roughtime::new(listed);
        for line in lines {
            console!("{line}");
        }
        client.sets_clock = sets_clock;
        (!client.is_empty()).then_some(client)
    }

    /// The client for `listed`, and a console line for each server left out.
    pub fn new(listed: &[RoughtimeServer]) -> (Self, Vec<String>) {
        let mut servers = Vec::new();
        let mut lines = Vec::new();
        for l in listed {
            match Server::new(&l.name, &l.key) {
                Ok(server) => servers.push(Listed {
                    server,
                    address: l.address,
                }),
                Err(e) => lines.push(format!("roughtime {}: left out: {e}", l.name)),
            }
        }
        let client = Roughtime {
            servers,
            slot_addresses: listed.iter().map(|l| l.address).collect(),
            last_signed: None,
            next: 0,
            round_at: None,
            query: None,
            sets_clock: false,
        };
        (client, lines)
    }

    /// Whether a raised earliest time may set the system clock.
    pub fn sets_clock(&self) -> bool {
        self.sets_clock
    }

    /// Replaces the servers with `signed`, a list the agent verified in the repository's
    /// signed metadata, when every address is one the slot lists and every key is an
    /// Ed25519 key; otherwise refuses the whole list and keeps the one in use. A new list
    /// drops the query in flight and starts a round at once.
    pub fn replace(&mut self, signed: &[RoughtimeServer]) -> Result<Replaced, ReplaceError> {
        if self.last_signed.as_deref() == Some(signed) {
            return Ok(Replaced::Unchanged);
        }
        self.last_signed = Some(signed.to_vec());
        let mut servers = Vec::with_capacity(signed.len());
        for l in signed {
            if !self.slot_addresses.contains(&l.address) {
                return Err(ReplaceError::NotInSlot {
                    name: l.name.clone(),
                    address: l.address,
                });
            }
            let server = Server::new(&l.name, &l.key).map_err(|e| ReplaceError::Key {
                name: l.name.clone(),
                reason: e.to_string(),
            })?;
            servers.push(Listed {
                server,
                address: l.address,
            });
        }
        self.servers = servers;
        self.query = None;
        self.next = 0;
        self.round_at = None;
        Ok(Replaced::Now(
            self.servers
                .iter()
                .map(|l| l.server.name().to_owned())
                .collect(),
        ))
    }

    /// Whether any server is listed.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The socket to poll while a query is in flight.
    pub fn pollable(&self) -> Option<BorrowedFd<'_>> {
        self.query.as_ref().map(|q| q.socket.as_fd())
    }

    /// When [`Roughtime::on_tick`] has something to do (`None`: only once the network is
    /// up, which the loop's network deadline covers).
    pub fn deadline(&self) -> Option<Millis> {
        match &self.query {
            Some(q) => Some(q.deadline),
            None => self.round_at,
        }
    }

    /// Times: sends a query when one is due, resends one whose try timed out, gives up on
    /// one out of tries. `net_up`: whether the network has an address to send from.
    pub fn on_tick(&mut self, now: Millis, net_up: bool) -> Option<Outcome> {
        if let Some(q) = &mut self.query {
            if now < q.deadline {
                return None;
            }
            if q.tries < TRIES {
                q.tries += 1;
                q.deadline = now.plus(TRY_TIMEOUT);
                let to = self.servers.get(q.index).map(|l| l.address);
                if let Some(to) = to {
                    // A failed resend is a try that got no answer.
                    let _ = q.socket.send_to(&q.request, to);
                }
                return None;
            }
            let index = q.index;
            self.query = None;
            return Some(Outcome::NoAnswer {
                server: self.name(index),
            });
        }
        if !net_up || self.servers.is_empty() || self.round_at.is_some_and(|at| now < at) {
            return None;
        }
        let index = self.next;
        self.next += 1;
        if self.next >= self.servers.len() {
            self.next = 0;
            self.round_at = Some(now.plus(ROUND_INTERVAL));
        } else {
            self.round_at = Some(now);
        }
        match self.send(index, now) {
            Ok(q) => {
                self.query = Some(q);
                None
            }
            Err(error) => {
                self.next = index;
                self.round_at = Some(now.plus(UNSENT_RETRY));
                Some(Outcome::Unsent {
                    server: self.name(index),
                    error,
                })
            }
        }
    }

    /// The socket is readable: each datagram from the server asked is checked; the first
    /// one from it ends the query. Datagrams from elsewhere are dropped.
    pub fn on_readable(&mut self) -> Option<Outcome> {
        let q = self.query.as_ref()?;
        let listed = self.servers.get(q.index)?;
        let mut buf = [0u8; ANSWER_MAX];
        loop {
            match q.socket.recv_from(&mut buf) {
                Ok((n, SocketAddr::V4(from))) if from == listed.address => {
                    let answer = buf.get(..n).unwrap_or_default();
                    let outcome = match limpet_roughtime::verify(answer, &q.nonce, &listed.server) {
                        Ok(v) => Outcome::Verified(v),
                        Err(error) => Outcome::Refused {
                            server: listed.server.name().to_owned(),
                            error,
                        },
                    };
                    self.query = None;
                    return Some(outcome);
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    fn name(&self, index: usize) -> String {
        self.servers
            .get(index)
            .map_or_else(String::new, |l| l.server.name().to_owned())
    }

    /// Opens a socket and sends a new request with a fresh nonce to server `index`.
    fn send(&self, index: usize, now: Millis) -> std::io::Result<Query> {
        let to = self
            .servers
            .get(index)
            .map(|l| l.address)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        let nonce = sys::random_nonce()?;
        let request = limpet_roughtime::request(&nonce);
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.set_nonblocking(true)?;
        socket.send_to(&request, to)?;
        Ok(Query {
            index,
            nonce,
            request,
            socket,
            tries: 1,
            deadline: now.plus(TRY_TIMEOUT),
        })
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use super::*;

    /// The Ed25519 base point: a valid key nobody's answer is signed with.
    const KEY: &str = "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";

    /// A client for one server on loopback, and that server's socket.
    fn client() -> (Roughtime, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(address) = server.local_addr().unwrap() else {
            panic!("not IPv4");
        };
        let (client, lines) = Roughtime::new(&[
            RoughtimeServer {
                name: "rt1".to_owned(),
                address,
                key: KEY.to_owned(),
            },
            RoughtimeServer {
                name: "bad".to_owned(),
                address,
                key: "c2hvcnQ=".to_owned(),
            },
        ]);
        assert_eq!(
            lines,
            ["roughtime bad: left out: Roughtime key of bad: 5 bytes, an Ed25519 key is 32"]
        );
        (client, server)
    }

    /// Another valid Ed25519 key (RFC 8032 test 1).
    const KEY2: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    #[test]
    fn a_signed_list_replaces_keys_and_narrows_but_adds_no_address() {
        let (mut client, server) = client();
        let SocketAddr::V4(address) = server.local_addr().unwrap() else {
            panic!("not IPv4");
        };
        let rotated = [RoughtimeServer {
            name: "rt1-new".to_owned(),
            address,
            key: KEY2.to_owned(),
        }];
        assert_eq!(
            client.replace(&rotated),
            Ok(Replaced::Now(vec!["rt1-new".to_owned()]))
        );
        assert_eq!(client.servers[0].server.name(), "rt1-new");
        // Sent again by the next refresh: nothing to do, nothing said.
        assert_eq!(client.replace(&rotated), Ok(Replaced::Unchanged));
        // Attack: a list naming an address the slot does not list (no egress rule for it).
        let elsewhere: SocketAddrV4 = "192.0.2.99:2002".parse().unwrap();
        let added = [
            rotated[0].clone(),
            RoughtimeServer {
                name: "new".to_owned(),
                address: elsewhere,
                key: KEY.to_owned(),
            },
        ];
        assert_eq!(
            client.replace(&added),
            Err(ReplaceError::NotInSlot {
                name: "new".to_owned(),
                address: elsewhere
            })
        );
        assert_eq!(client.servers.len(), 1, "the list in use is kept");
        assert_eq!(client.servers[0].server.name(), "rt1-new");
        // A bad key refuses the whole list too.
        let bad = [RoughtimeServer {
            name: "rt1".to_owned(),
            address,
            key: "c2hvcnQ=".to_owned(),
        }];
        assert!(matches!(
            client.replace(&bad),
            Err(ReplaceError::Key { .. })
        ));
        assert_eq!(client.servers[0].server.name(), "rt1-new");
        // Narrowed to nothing: the client asks no server.
        assert_eq!(client.replace(&[]), Ok(Replaced::Now(vec![])));
        assert!(client.is_empty());
        assert!(client.on_tick(Millis(0), true).is_none());
    }

    fn receive(server: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 2048];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        (buf[..n].to_vec(), from)
    }

    /// Waits (the socket is non-blocking) for the client to read what was sent to it.
    fn read(client: &mut Roughtime) -> Option<Outcome> {
        for _ in 0..200 {
            if let Some(o) = client.on_readable() {
                return Some(o);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    #[test]
    fn nothing_is_sent_before_the_network_is_up() {
        let (mut c, _server) = client();
        assert!(c.on_tick(Millis(0), false).is_none());
        assert!(c.pollable().is_none());
        assert_eq!(c.deadline(), None);
    }

    /// A request is 1024 bytes; retries resend the same request (the same nonce), a new
    /// query draws a new one; after the last try the server counts as silent, and the next
    /// round waits its interval.
    #[test]
    fn retries_are_bounded_and_a_silent_server_is_reported() {
        let (mut c, server) = client();
        assert!(c.on_tick(Millis(0), true).is_none());
        let (first, _) = receive(&server);
        assert_eq!(first.len(), limpet_roughtime::REQUEST_SIZE);
        assert_eq!(c.deadline(), Some(Millis(2000)));
        assert!(c.on_tick(Millis(1999), true).is_none());
        assert!(c.on_tick(Millis(2000), true).is_none());
        assert_eq!(receive(&server).0, first);
        assert!(c.on_tick(Millis(4000), true).is_none());
        assert_eq!(receive(&server).0, first);
        match c.on_tick(Millis(6000), true) {
            Some(Outcome::NoAnswer { server }) => assert_eq!(server, "rt1"),
            other => panic!("{other:?}"),
        }
        let next_round = Millis(0).plus(ROUND_INTERVAL);
        assert_eq!(c.deadline(), Some(next_round));
        assert!(c.on_tick(Millis(6001), true).is_none());
        assert!(c.pollable().is_none());
        assert!(c.on_tick(next_round, true).is_none());
        let (second, _) = receive(&server);
        assert_ne!(second, first, "a new query has a new nonce");
    }

    /// Attack: bytes from another address are not taken for the answer; the server's own
    /// reply that is not a signed answer is refused with the crate's exact error.
    #[test]
    fn a_datagram_from_elsewhere_is_dropped_and_a_bad_answer_refused() {
        let (mut c, server) = client();
        assert!(c.on_tick(Millis(0), true).is_none());
        let (_, from) = receive(&server);
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        stranger.send_to(b"ROUGHTIM", from).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(c.on_readable().is_none());
        assert!(c.pollable().is_some(), "the query still waits");
        server.send_to(b"not roughtime", from).unwrap();
        match read(&mut c) {
            Some(Outcome::Refused { server, error }) => {
                assert_eq!(server, "rt1");
                assert!(
                    matches!(error, limpet_roughtime::Error::Malformed { .. }),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(c.pollable().is_none());
    }
}
