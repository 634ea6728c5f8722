//! `limpet-remote-agent`: the device's side of remote access (a task the image declares).
//!
//! ```text
//! limpet-remote-agent (--signer SOCKET | --data DIR) --relay HOST:PORT --access-key HEX
//!                     --service NAME=ADDR... [--cohort NAME] [--direct]
//! ```
//!
//! Exit status 2 for bad arguments or an identity that cannot be opened (`--data`);
//! otherwise it never returns: PID 1's socket (`--signer`) not answering yet is waited for,
//! so the task does not crash-loop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use limpet_identity::Purpose;
use limpet_remote::capability::{public_key, ServiceName};
use limpet_remote::decide::DevicePolicy;

const USAGE: &str = "\
limpet-remote-agent: dials out to the relay and serves the declared services to operators
holding a capability signed by the image's access key

usage: limpet-remote-agent (--signer SOCKET | --data DIR) --relay HOST:PORT
                           --access-key HEX --service NAME=ADDR [--service ...]
                           [--cohort NAME] [--direct]

  --signer SOCKET     PID 1's socket: it answers the device key and signs each proof
                      (SignRemoteAccess); the identity's private key stays in PID 1
  --data DIR          instead, open the identity itself: DIR/.limpet/identity/device.key
                      (made there when absent); for a host that is not a Limpet device
  --relay ADDR        the relay (HOST:PORT), the only address this agent dials
  --access-key HEX    the Ed25519 key (64 hex digits) whose capabilities are accepted
  --service NAME=ADDR a declared service and its local address (IP:PORT)
  --cohort NAME       the cohort this device belongs to (for cohort capabilities)
  --direct            offer the direct path (hole punching) to sessions whose capability
                      grants it, once PID 1 opened the pinhole (OpenPinhole) to the
                      address the operator signed in its hello, closed (ClosePinhole)
                      when the session ends; the relay stays the fallback
  -h, --help          this text
";

/// Where the identity's signatures come from.
enum Identity {
    Signer(PathBuf),
    Data(PathBuf),
}

struct Args {
    identity: Identity,
    relay: String,
    access_key: String,
    services: BTreeMap<ServiceName, SocketAddr>,
    cohort: Option<String>,
    direct: bool,
}

fn parse() -> Result<Option<Args>, String> {
    let (mut identity, mut relay, mut access_key, mut cohort) = (None, None, None, None);
    let mut services = BTreeMap::new();
    let mut direct = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        if flag == "--direct" {
            direct = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data" | "--signer" if identity.is_some() => {
                return Err("give one of --signer and --data".to_owned())
            }
            "--data" => identity = Some(Identity::Data(PathBuf::from(value))),
            "--signer" => identity = Some(Identity::Signer(PathBuf::from(value))),
            "--relay" => relay = Some(relay_addr(value)?),
            "--access-key" => access_key = Some(value),
            "--cohort" => cohort = Some(value),
            "--service" => {
                let (name, addr) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--service {value}: needs NAME=ADDR"))?;
                let name =
                    ServiceName::parse(name).map_err(|e| format!("--service {value}: {e}"))?;
                let addr = addr
                    .parse()
                    .map_err(|e| format!("--service {value}: {e}"))?;
                services.insert(name, addr);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(Args {
        identity: identity.ok_or("--signer or --data is needed")?,
        relay: relay.ok_or("--relay is needed")?,
        access_key: access_key.ok_or("--access-key is needed")?,
        services,
        cohort,
        direct,
    }))
}

/// `host:port`: an IPv4 address or a DNS name (resolved at each dial), and a port.
fn relay_addr(value: String) -> Result<String, String> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
            Ok(value)
        }
        _ => Err(format!("--relay {value}: needs HOST:PORT")),
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("limpet-remote-agent: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let access_key = match public_key("access_key", &args.access_key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("limpet-remote-agent: --access-key: {e}");
            return ExitCode::from(2);
        }
    };
    let (device, sign, record) = match signer(&args.identity) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("limpet-remote-agent: identity: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "limpet-remote-agent: identity {}",
        hex::encode(device.as_bytes())
    );
    let policy = DevicePolicy {
        device,
        cohort: args.cohort,
        access_key,
        services: args.services,
        revocations: Arc::default(),
    };
    // With PID 1, it decides each pinhole; a host that is not a Limpet device has none.
    let direct: Option<limpet_remote::signer::Pinholer> = match (&args.identity, args.direct) {
        (_, false) => None,
        (Identity::Signer(path), true) => Some(limpet_remote::signer::pid1_pinholer(path)),
        (Identity::Data(_), true) => Some(limpet_remote::signer::Pinholer {
            open: Arc::new(|_: &_| Ok(0)),
            close: Arc::new(|_: &_| Ok(())),
        }),
    };
    limpet_remote::device::run(&args.relay, Arc::new(policy), sign, record, direct)
}

/// The device's key, its signer and where its sessions are recorded: PID 1 over its
/// socket, or the identity opened here (the sessions then only on standard output).
fn signer(
    identity: &Identity,
) -> Result<
    (
        ed25519_dalek::VerifyingKey,
        limpet_remote::signer::Signer,
        limpet_remote::signer::Recorder,
    ),
    String,
> {
    match identity {
        Identity::Signer(path) => Ok((
            limpet_remote::signer::device_key_when_served(path),
            limpet_remote::signer::pid1(path),
            limpet_remote::signer::pid1_recorder(path),
        )),
        Identity::Data(dir) => {
            let id = match limpet_identity::store::open(dir, limpet_identity::random::kernel_seed)
                .map_err(|e| e.to_string())?
            {
                limpet_identity::store::Opened::Loaded(id)
                | limpet_identity::store::Opened::Created(id, _) => id,
            };
            let key = id.public_key();
            let sign: limpet_remote::signer::Signer =
                Arc::new(move |msg: &[u8]| Ok(id.sign(Purpose::RemoteAccess, msg)));
            Ok((key, sign, Arc::new(|_| {})))
        }
    }
}
