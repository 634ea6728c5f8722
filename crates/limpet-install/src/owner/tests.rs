// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::fd::AsFd;

use ed25519_dalek::SigningKey;
use limpet_state::owner::REQUEST_BLOCK;

use super::*;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};

/// A `state` partition of 512 KiB with a recognisable byte everywhere, an owner server for
/// `granted`, and a client connected to it as this process's uid.
struct Rig {
    dir: tempfile::TempDir,
    server: OwnerServer,
    client: OwnedFd,
}

impl Rig {
    fn new(granted: &[Grant]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::write(&state, vec![0x5a; 512 * 1024]).unwrap();
        let socket = dir.path().join("run/limpet/owner.sock");
        let mut server = OwnerServer::bind(&socket, granted, state).unwrap();
        let client = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
        rustix::net::connect(&client, &SocketAddrUnix::new(&socket).unwrap()).unwrap();
        let accepted = server.ready();
        Rig {
            dir,
            server,
            client,
        }
        .with_accept(accepted)
    }

    /// Keeps a refusal made at accept time readable for the test.
    fn with_accept(self, accepted: Option<Asked>) -> Rig {
        if let Some(a) = accepted {
            std::fs::write(self.dir.path().join("accept"), format!("{a:?}")).unwrap();
        }
        self
    }

    fn state(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("state")).unwrap()
    }

    fn ask(&mut self, request: &Request) -> (Option<Response>, Option<Asked>) {
        rustix::net::send(self.client.as_fd(), &request.encode(), SendFlags::empty()).unwrap();
        let asked = self.server.ready();
        let mut buf = vec![0u8; MAX_MESSAGE];
        let answer = rustix::net::recv(&self.client, &mut buf, RecvFlags::DONTWAIT)
            .ok()
            .map(|(n, _)| Response::decode(&buf[..n]).unwrap());
        (answer, asked)
    }
}

fn me(task: &str) -> Grant {
    Grant {
        task: task.into(),
        uid: rustix::process::getuid().as_raw(),
    }
}

fn owner_key() -> [u8; 32] {
    SigningKey::from_bytes(&[4; 32]).verifying_key().to_bytes()
}

#[allow(clippy::cast_possible_truncation)] // 128 KiB
const AT: usize = REQUEST_OFFSET as usize;

/// Every byte of `b` except the request block.
fn outside(b: &[u8]) -> Vec<u8> {
    let mut b = b.to_vec();
    b.splice(AT..AT + REQUEST_BLOCK, []);
    b
}

#[test]
fn a_granted_task_asks_to_enter_and_to_leave() {
    let mut rig = Rig::new(&[me("settings")]);
    let before = rig.state();
    let key = owner_key();
    let (answer, asked) = rig.ask(&Request::OwnerMode {
        ask: OwnerAsk::Enter { key },
    });
    assert_eq!(answer, Some(Response::Ok));
    assert_eq!(
        asked,
        Some(Asked::Written {
            task: "settings".into(),
            ask: OwnerAsk::Enter { key }
        })
    );
    let after = rig.state();
    assert_eq!(
        OwnerRequest::parse_block(&after[AT..AT + REQUEST_BLOCK]).unwrap(),
        Some(OwnerRequest::Enter { key })
    );
    assert_eq!(outside(&after), outside(&before), "no other byte written");
    // Leaving, on the same connection: the block is replaced.
    let (answer, _) = rig.ask(&Request::OwnerMode {
        ask: OwnerAsk::Leave,
    });
    assert_eq!(answer, Some(Response::Ok));
    assert_eq!(
        OwnerRequest::parse_block(&rig.state()[AT..AT + REQUEST_BLOCK]).unwrap(),
        Some(OwnerRequest::Leave)
    );
}

/// The attack: a task without the right connects (here the socket is reachable, as if a
/// sandbox had it by mistake). It is answered with the refusal, its request is never read,
/// and the partition is unchanged.
#[test]
fn a_task_without_the_right_is_refused_and_writes_nothing() {
    let other = Grant {
        task: "settings".into(),
        uid: 54_321,
    };
    let rig = Rig::new(&[other]);
    let uid = rustix::process::getuid().as_raw();
    let refusal = format!("uid {uid} holds no owner-request right");
    assert_eq!(
        std::fs::read_to_string(rig.dir.path().join("accept")).unwrap(),
        format!("{:?}", Asked::Refused(refusal.clone()))
    );
    let before = rig.state();
    let mut buf = vec![0u8; MAX_MESSAGE];
    let (n, _) = rustix::net::recv(&rig.client, &mut buf, RecvFlags::DONTWAIT).unwrap();
    assert_eq!(Response::decode(&buf[..n]), Ok(Response::Error(refusal)));
    // The connection was not kept: the request is never served.
    let _ = rustix::net::send(
        rig.client.as_fd(),
        &Request::OwnerMode {
            ask: OwnerAsk::Enter { key: owner_key() },
        }
        .encode(),
        SendFlags::empty(),
    );
    assert_eq!(rig.server.conn.as_ref().map(|(_, t)| t.clone()), None);
    assert_eq!(rig.state(), before);
}

#[test]
fn a_bad_key_or_another_request_writes_nothing() {
    let mut rig = Rig::new(&[me("settings")]);
    let before = rig.state();
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    let (answer, asked) = rig.ask(&Request::OwnerMode {
        ask: OwnerAsk::Enter { key: off_curve },
    });
    let e = "owner-mode request refused: the owner's image key is not an Ed25519 public key";
    assert_eq!(answer, Some(Response::Error(e.into())));
    assert_eq!(asked, Some(Asked::Refused(format!("settings: {e}"))));
    // The update agent's requests are not served on this socket.
    for request in [
        Request::Status,
        Request::HandOver { key: owner_key() },
        Request::Reboot,
    ] {
        let (answer, _) = rig.ask(&request);
        assert_eq!(
            answer,
            Some(Response::Error(
                "this socket serves owner-mode requests only".into()
            )),
            "{request:?}"
        );
    }
    assert_eq!(rig.state(), before);
}

/// A power cut in the middle of the block's write leaves part new, part old: the
/// checksum fails, so the loader reports and clears it, and nothing is confirmed.
#[test]
fn a_torn_request_block_is_never_a_request() {
    let block = OwnerRequest::Enter { key: owner_key() }.block();
    let old = [0x5a_u8; REQUEST_BLOCK];
    for cut in [8, 16, 32, 40, 48, 51] {
        let mut torn = old;
        torn[..cut].copy_from_slice(&block[..cut]);
        assert!(
            OwnerRequest::parse_block(&torn).is_err(),
            "cut at {cut}: {:?}",
            OwnerRequest::parse_block(&torn)
        );
    }
    // The write is one aligned 4 KiB block at an aligned offset.
    assert_eq!(REQUEST_OFFSET % 4096, 0);
    assert_eq!(REQUEST_BLOCK, 4096);
}

/// PID 1's console line names the task and the key by the fingerprint the loader prints
/// (the key's measurement in hex), and says that nothing changes without the person.
#[test]
fn the_console_line_names_the_task_and_the_loaders_fingerprint() {
    let key = owner_key();
    let vk = VerifyingKey::from_bytes(&key).unwrap();
    let fingerprint: String = limpet_image::measure::image_key_measurement(&vk)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        Asked::Written {
            task: "settings".into(),
            ask: OwnerAsk::Enter { key }
        }
        .console_line(),
        format!(
            "owner request from task settings written for the boot loader: enter owner mode \
             with the owner key {fingerprint}; nothing changes unless a person at the device \
             confirms it at the next boot"
        )
    );
    assert!(Asked::Written {
        task: "settings".into(),
        ask: OwnerAsk::Leave
    }
    .console_line()
    .contains(": leave owner mode;"));
    assert_eq!(
        Asked::Refused("uid 7 holds no owner-request right".into()).console_line(),
        "owner request refused: uid 7 holds no owner-request right"
    );
}
