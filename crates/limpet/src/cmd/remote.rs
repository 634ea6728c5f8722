//! `limpet access keygen|grant|revoke` and `limpet connect`: the operator's and the key holder's
//! side of remote access (limpet-remote; docs/remote-access.md).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use limpet_remote::capability::{
    public_key, Capability, ServiceName, SignedCapability, Subject, MAX_LIFETIME_SECS,
};
use rand_core::{OsRng, RngCore};

/// `limpet access` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AccessCommand {
    /// Make an Ed25519 key pair for remote access: KEY (PKCS#8 PEM, mode 0600) and KEY.pub
    /// (64 hex digits). An access key's public half goes into the manifest's
    /// `[remote] access_key`; an operator key's into the capabilities granted to it.
    Keygen {
        /// The private key's file; the public key is written beside it with `.pub` added.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a capability: OPERATOR may reach SERVICEs of one device (or a cohort) for at
    /// most 8 hours.
    Grant {
        /// The access key (PKCS#8 PEM) pinned in the device's image.
        #[arg(long)]
        key: PathBuf,
        /// The operator's public key: 64 hex digits, or a `.pub` file holding them.
        #[arg(long)]
        operator: String,
        /// The device's identity public key (64 hex digits, as `limpet inspect` shows it).
        #[arg(long, conflicts_with = "cohort", required_unless_present = "cohort")]
        device: Option<String>,
        /// Every device whose image names this cohort.
        #[arg(long)]
        cohort: Option<String>,
        /// A service the operator may reach (repeatable; the device also needs it declared).
        #[arg(long = "service", required = true)]
        services: Vec<String>,
        /// How long the capability lives: e.g. 30m, 2h (at most 8h).
        #[arg(long = "for", default_value = "1h")]
        lifetime: String,
        /// Also grant the direct path (hole punching): a device with `[remote] direct =
        /// true` then asks PID 1 for a pinhole, for the session, to the address the
        /// operator signs as its own (`limpet connect` does).
        #[arg(long)]
        direct: bool,
        /// Where to write the capability (JSON); standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a revocation list: the capabilities named are refused by every device that
    /// receives the list (through `limpet relay serve --revocations FILE`) before they
    /// expire. It replaces the device's list only when newer: give the last list with
    /// `--add-to` to keep what it revoked.
    Revoke {
        /// The access key (PKCS#8 PEM) that signed the capabilities.
        #[arg(long)]
        key: PathBuf,
        /// A capability file to revoke (repeatable).
        #[arg(long = "cap")]
        caps: Vec<PathBuf>,
        /// A capability's hash to revoke, 64 hex digits, as `limpet access grant` and the
        /// device's log print it (repeatable).
        #[arg(long = "hash")]
        hashes: Vec<String>,
        /// The list issued before, whose revocations the new one keeps.
        #[arg(long)]
        add_to: Option<PathBuf>,
        /// Where to write the list (JSON).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Arguments of `limpet connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The device's identity public key (64 hex digits).
    device: String,
    /// The relay the device is registered at (IP:PORT).
    #[arg(long)]
    relay: SocketAddr,
    /// The capability file (from `limpet access grant`).
    #[arg(long)]
    cap: PathBuf,
    /// The operator's private key (PKCS#8 PEM, from `limpet access keygen`): it signs each
    /// session and, with a capability granting `direct`, the address the relay observed of
    /// this machine, the only one the device's pinhole may lead to.
    #[arg(long)]
    key: PathBuf,
    /// Listen on LOCAL (IP:PORT) and carry each connection to the device's SERVICE, each in
    /// its own session.
    #[arg(long, value_name = "LOCAL=SERVICE", conflicts_with = "service")]
    forward: Option<String>,
    /// Carry standard input and output to the device's SERVICE, in one session.
    #[arg(long, required_unless_present = "forward")]
    service: Option<String>,
}

pub fn access(command: AccessCommand) -> super::Result {
    match command {
        AccessCommand::Keygen { out } => keygen(&out),
        AccessCommand::Revoke {
            key,
            caps,
            hashes,
            add_to,
            out,
        } => revoke(&key, &caps, &hashes, add_to.as_deref(), &out),
        AccessCommand::Grant {
            key,
            operator,
            device,
            cohort,
            services,
            lifetime,
            direct,
            out,
        } => {
            let access = load_key(&key)?;
            let operator = match std::fs::read_to_string(&operator) {
                Ok(text) => public_key("operator", &text),
                Err(_) => public_key("operator", &operator),
            }?;
            let subject = match (device, cohort) {
                (Some(device), _) => Subject::Device(public_key("device", &device)?),
                (None, Some(cohort)) => Subject::Cohort(cohort),
                (None, None) => return Err("--device or --cohort is needed".into()),
            };
            let services = services
                .iter()
                .map(|s| ServiceName::parse(s))
                .collect::<Result<Vec<_>, _>>()?;
            let secs = parse_lifetime(&lifetime)?;
            let now = unix_now();
            let mut nonce = [0u8; 16];
            OsRng.fill_bytes(&mut nonce);
            let capability = Capability::new(operator, subject, services, now, now + secs, nonce)?;
            let capability = if direct {
                capability.with_direct()
            } else {
                capability
            };
            let signed = capability.sign(&access);
            let text = signed.to_json() + "\n";
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
                    println!(
                        "capability {} written to {} (expires {})",
                        hex::encode(signed.hash()),
                        path.display(),
                        now + secs
                    );
                }
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}

fn revoke(
    key: &Path,
    caps: &[PathBuf],
    hashes: &[String],
    add_to: Option<&Path>,
    out: &Path,
) -> super::Result {
    use limpet_remote::revocation::RevocationList;
    let access = load_key(key)?;
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
    };
    let (mut revoked, after) = match add_to {
        Some(path) => {
            let old = RevocationList::from_json(&read(path)?)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if !old.signed_by(&access.verifying_key()) {
                return Err(format!("{}: not signed by this access key", path.display()).into());
            }
            (old.revoked, Some(old.issued))
        }
        None => Default::default(),
    };
    for path in caps {
        let cap = SignedCapability::from_json(&read(path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        revoked.insert(cap.hash());
    }
    for text in hashes {
        let hash = hex::decode(text)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| format!("--hash {text}: not 64 hex digits"))?;
        revoked.insert(hash);
    }
    // Later than the list it extends, even within the same second.
    let issued = after.map_or(unix_now(), |t| unix_now().max(t + 1));
    let list = RevocationList::sign(issued, revoked, &access)?;
    std::fs::write(out, list.to_json())
        .map_err(|e| format!("{}: cannot write: {e}", out.display()))?;
    println!(
        "revocation list issued at {issued}: {} capabilities, written to {}",
        list.revoked.len(),
        out.display()
    );
    Ok(())
}

fn keygen(out: &Path) -> super::Result {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| format!("encoding the key: {e}"))?;
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(|e| format!("{}: cannot create: {e}", out.display()))?
    };
    file.write_all(pem.as_bytes())?;
    let public = hex::encode(key.verifying_key().as_bytes());
    let mut pub_path = out.as_os_str().to_owned();
    pub_path.push(".pub");
    std::fs::write(&pub_path, format!("{public}\n"))?;
    println!("private key: {} (mode 0600)", out.display());
    println!("public key:  {public}");
    Ok(())
}

fn load_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    SigningKey::from_pkcs8_pem(&text)
        .map_err(|e| format!("{}: not an Ed25519 PKCS#8 key: {e}", path.display()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `90s`, `30m`, `2h` as seconds, at most [`MAX_LIFETIME_SECS`].
fn parse_lifetime(text: &str) -> Result<u64, String> {
    let bad = || format!("--for {text}: give a number and s, m or h, at most 8h");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(bad()),
    };
    if secs == 0 || secs > MAX_LIFETIME_SECS {
        return Err(bad());
    }
    Ok(secs)
}

pub fn connect(args: ConnectArgs) -> super::Result {
    let device = public_key("device", &args.device)?;
    let operator = load_key(&args.key)?;
    let text = std::fs::read(&args.cap).map_err(|e| format!("{}: {e}", args.cap.display()))?;
    let cap =
        SignedCapability::from_json(&text).map_err(|e| format!("{}: {e}", args.cap.display()))?;
    match (args.forward, args.service) {
        (Some(forward), _) => {
            let (local, service) = forward
                .split_once('=')
                .ok_or_else(|| format!("--forward {forward}: needs LOCAL=SERVICE"))?;
            let local: SocketAddr = local
                .parse()
                .map_err(|e| format!("--forward {forward}: {e}"))?;
            let listener = TcpListener::bind(local)
                .map_err(|e| format!("--forward: cannot listen on {local}: {e}"))?;
            println!(
                "connect: {} forwards to service {service} of {}",
                listener.local_addr()?,
                args.device
            );
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (operator, cap, service) = (operator.clone(), cap.clone(), service.to_owned());
                let relay = args.relay;
                std::thread::spawn(move || {
                    match session(relay, &device, &operator, &cap, &service)
                        .and_then(|ch| ch.splice(client).map_err(Into::into))
                    {
                        Ok((up, down)) => {
                            println!("connect: session ended: {up} bytes sent, {down} received")
                        }
                        Err(e) => {
                            eprintln!("connect: {}", limpet_error_chain::caused_by(e.as_ref()))
                        }
                    }
                });
            }
            Ok(())
        }
        (None, Some(service)) => {
            let channel = session(args.relay, &device, &operator, &cap, &service)
                .map_err(|e| e as Box<dyn std::error::Error>)?;
            stdio(channel)
        }
        (None, None) => Err("--forward or --service is needed".into()),
    }
}

type Boxed = Box<dyn std::error::Error + Send + Sync>;

/// One session on the direct path when the capability grants it and the device offers it,
/// through the relay otherwise; says which on standard error (`connect: path: direct to
/// IP:PORT` or `connect: path: relay`: standard output may be the session's data).
fn session(
    relay: SocketAddr,
    device: &VerifyingKey,
    operator: &SigningKey,
    cap: &SignedCapability,
    service: &str,
) -> Result<limpet_remote::session::Channel<TcpStream>, Boxed> {
    use limpet_remote::direct;
    let (channel, route) =
        direct::operator(relay, device, operator, cap, service, direct::PUNCH_TIME)?;
    eprintln!("connect: path: {route}");
    Ok(channel)
}

/// Carries standard input and output through `channel` (one session).
fn stdio(channel: limpet_remote::session::Channel<TcpStream>) -> super::Result {
    let (up, down) = channel.splice_io(std::io::stdin(), std::io::stdout().lock(), |out| {
        let _ = out.flush();
    })?;
    eprintln!("connect: session ended: {up} bytes sent, {down} received");
    Ok(())
}
