//! The validated manifest: device-wide sections.
//!
//! Rules this module keeps:
//! - Every value here has passed its checks; fields hold newtypes, never raw strings that
//!   still need parsing.
//! - Security choices are enums with a safe default, never `bool`.
//! - Defaults are named constants or `Default` impls here, so the canonical form and the
//!   docs agree on them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use crate::diag::Problem;
use crate::names::{DeviceName, ModuleName, TaskName};
use crate::net::{check_dns_name, Network};
use crate::task::Task;
use crate::units::{serialize_as_display, ByteSize, Date, Duration};

/// A whole `limpet.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// `[device]`: what the image is for.
    pub device: Device,
    /// `[kernel]`: which kernel and modules go into the image.
    pub kernel: Kernel,
    /// `[disk]`: partition sizes.
    pub disk: Disk,
    /// `[network]`: device-wide network settings.
    pub network: Network,
    /// `[[task]]`: every process the device runs, in manifest order; at least one.
    pub tasks: Vec<Task>,
    /// `[update]`: where updates come from; none for a device that is never updated.
    pub update: Option<Update>,
    /// `[lifecycle]`: the support window and what happens after it.
    pub lifecycle: Option<Lifecycle>,
}

/// Default device memory when `[device] memory` is not given.
pub const DEFAULT_DEVICE_MEMORY: ByteSize = ByteSize::mib(256);
/// Default number of CPUs when `[device] cpus` is not given.
pub const DEFAULT_CPUS: u32 = 1;
/// Most CPUs a device may declare; a sanity bound, far above any IoT board.
pub const MAX_CPUS: u32 = 1024;

/// `[device]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Model name, `[a-z][a-z0-9-]{0,31}`; also the hostname and the image's model field.
    pub name: DeviceName,
    /// Firmware version (semver); updates only ever move it forwards.
    pub version: semver::Version,
    /// CPU architecture of the device.
    pub target: Target,
    /// RAM the tasks may share; their `memory` budgets must fit in it (default 256MiB).
    pub memory: ByteSize,
    /// CPUs the tasks may share; their `cpu` shares must fit in `cpus * 100%` (default 1).
    pub cpus: u32,
}

/// Supported CPU architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Target {
    /// 64-bit x86.
    #[serde(rename = "x86_64")]
    X86_64,
    /// 64-bit Arm.
    #[serde(rename = "aarch64")]
    Aarch64,
}

impl Target {
    /// Every supported target, in the order error messages list them.
    pub const ALL: [Target; 2] = [Target::X86_64, Target::Aarch64];

    /// The manifest spelling: `x86_64` or `aarch64`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64",
            Target::Aarch64 => "aarch64",
        }
    }

    /// The Rust target triple device binaries are built for (static musl).
    pub fn rust_triple(&self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64-unknown-linux-musl",
            Target::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[kernel]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Kernel {
    /// Where the kernel image and modules come from (default `host`).
    pub source: KernelSource,
    /// Extra kernel modules to put in the initramfs and load at boot.
    pub modules: Vec<ModuleName>,
}

/// Where the kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelSource {
    /// The build host's running kernel and its modules.
    #[default]
    Host,
    /// Explicit files, relative to the manifest's directory unless absolute.
    Paths {
        /// The kernel image (e.g. `vmlinuz-6.1.0-18-amd64`).
        image: PathBuf,
        /// A `/lib/modules/<version>` style directory.
        modules: PathBuf,
    },
}

/// Default size of each A/B slot.
pub const DEFAULT_SLOT_SIZE: ByteSize = ByteSize::mib(64);
/// Default size of the data partition.
pub const DEFAULT_DATA_SIZE: ByteSize = ByteSize::mib(64);
/// Smallest slot: a squashfs of a static PID 1 and one task, plus its verity tree and header.
pub const MIN_SLOT_SIZE: ByteSize = ByteSize::mib(4);
/// Smallest data partition worth a filesystem.
pub const MIN_DATA_SIZE: ByteSize = ByteSize::mib(1);
/// Partitions are whole MiB so they stay aligned for every block size in use.
pub const DISK_ALIGN: ByteSize = ByteSize::mib(1);

/// `[disk]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// Size of each of the two code slots (default 64MiB, at least 4MiB, whole MiB).
    pub slot_size: ByteSize,
    /// Size of the writable, `noexec` data partition (default 64MiB, whole MiB).
    pub data_size: ByteSize,
}

impl Default for Disk {
    fn default() -> Self {
        Disk {
            slot_size: DEFAULT_SLOT_SIZE,
            data_size: DEFAULT_DATA_SIZE,
        }
    }
}

/// Default time between update checks.
pub const DEFAULT_POLL: Duration = Duration::secs(6 * 3600);

/// Default health period: how long every task must stay up before a try is committed.
pub const DEFAULT_HEALTH: Duration = Duration::secs(60);
/// Default time a try gets to become healthy before it is rolled back.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::secs(600);
/// Default number of boots a try gets (a power cut during a try spends one).
pub const DEFAULT_TRY_BOOTS: u32 = 3;
/// Most boots a try may get.
pub const MAX_TRY_BOOTS: u32 = 10;

/// `[update]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Update {
    /// Base URL of the TUF repository (`https://` or `http://`; metadata is signed either way).
    pub repository: RepositoryUrl,
    /// Time between update checks (default 6h).
    pub poll: Duration,
    /// Root keys trusted for this device's repository; at least one.
    pub keys: Vec<KeyRef>,
    /// The repository's first root metadata (`1.root.json`, relative to the manifest's
    /// directory): the device's trust anchor, put in the slot by `limpet build`, which
    /// checks that it lists the `keys` ids as root keys. Needed to build.
    pub root: Option<PathBuf>,
    /// When the agent may reboot into a staged update: `HH:MM-HH:MM`, UTC (wrapping past
    /// midnight when the end is earlier); `None`: at once.
    pub reboot_window: Option<String>,
    /// How long every task must be up (running and ready, or finished with success)
    /// without a failure before a try slot is committed (default 60s).
    pub health: Duration,
    /// How long after boot a try may take to become healthy before it is rolled back
    /// (default 10m; always longer than `health`).
    pub health_timeout: Duration,
    /// How many boots a try gets before it is rolled back (1 to 10, default 3).
    pub try_boots: u32,
}

/// A checked `http(s)://host[:port][/path]` URL, without user info, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepositoryUrl(String);

impl RepositoryUrl {
    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the transport is TLS.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// `host[:port]`: what stands between the scheme and the path.
    fn authority(&self) -> &str {
        let rest = self
            .0
            .strip_prefix("https://")
            .or_else(|| self.0.strip_prefix("http://"))
            .unwrap_or(&self.0);
        rest.split('/').next().unwrap_or("")
    }

    /// The host (a DNS name or IPv4 address; an IPv6 literal keeps its brackets).
    pub fn host(&self) -> &str {
        let authority = self.authority();
        if authority.starts_with('[') {
            return authority.split_inclusive(']').next().unwrap_or(authority);
        }
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    }

    /// The port: the one written, else 443 for https and 80 for http.
    pub fn port(&self) -> u16 {
        let authority = self.authority();
        let after_host = authority.rsplit_once(']').map_or(authority, |(_, a)| a);
        after_host
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(if self.is_https() { 443 } else { 80 })
    }
}

impl fmt::Display for RepositoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serialize_as_display!(RepositoryUrl);

impl FromStr for RepositoryUrl {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        let err = || {
            Problem::new(format!("invalid repository URL {s:?}"))
                .expected("an http:// or https:// URL: scheme, host, optional port and path")
        };
        let Some(rest) = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
        else {
            let hint = if s.contains("://") {
                "only https:// and http:// are supported".to_owned()
            } else {
                format!("did you mean \"https://{s}\"?")
            };
            return Err(err().hint(hint));
        };
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(err().hint(format!("{c:?} is not allowed in a URL")));
        }
        if s.contains(['?', '#']) {
            return Err(err().hint("a repository URL has no query or fragment"));
        }
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err(err().hint(
                "credentials do not belong in the manifest; the repository is public and signed",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| err().hint("unclosed '[' in an IPv6 host"))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err().hint("invalid IPv6 address"));
            }
            (None, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (Some(h), Some(p)),
                None => (Some(authority), None),
            }
        };
        if let Some(host) = host {
            if host.parse::<std::net::Ipv4Addr>().is_err() {
                check_dns_name(host).map_err(|h| err().hint(format!("host: {h}")))?;
            }
        }
        if let Some(port) = port {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => return Err(err().hint("the port must be 1-65535")),
            }
        }
        Ok(RepositoryUrl(s.to_owned()))
    }
}

/// A trusted root key, by file or by key id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRef {
    /// A public key file, relative to the manifest's directory unless absolute.
    File(PathBuf),
    /// A TUF key id: 64 lower-case hex digits (SHA-256 of the canonical public key).
    Id(KeyId),
}

/// A TUF key id: 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serialize_as_display!(KeyId);

impl FromStr for KeyId {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Ok(KeyId(s.to_owned()));
        }
        let lower = s.to_ascii_lowercase();
        let hint = if lower != s && KeyId::from_str(&lower).is_ok() {
            format!("write it in lower case: \"{lower}\"")
        } else {
            format!("this id has {} characters", s.chars().count())
        };
        Err(Problem::new(format!("invalid key id {s:?}"))
            .expected("64 lower-case hex digits (a TUF key id)")
            .hint(hint))
    }
}

/// `[lifecycle]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    /// Last day of vendor support; after it the device goes into island mode and the owner
    /// may take it over with physical presence.
    pub support_until: Date,
    /// If no fresh signed update metadata arrives for this long, the device goes into island
    /// mode (protects against a frozen or cut-off repository). Needs `[update]`.
    pub freshness: Option<Duration>,
    /// What keeps running in island mode.
    pub island: Island,
}

/// Island mode: local function only, nothing towards the internet.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Island {
    /// Tasks that keep running in island mode; the others are stopped.
    pub keep: Vec<TaskName>,
    /// Whether kept tasks may still use the local network (default: blocked).
    pub lan: IslandLan,
}

/// LAN access in island mode. Written `lan = true` / `lan = false` in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IslandLan {
    /// No network at all in island mode (the default: an unsupported device exposes nothing).
    #[default]
    Blocked,
    /// Kept tasks keep their `listen` rules with scope `lan` and egress to LAN addresses.
    Allowed,
}
