//! What `limpet run` is asked to do: the output directory, when to stop, and the backend
//! with the options only it has.
//!
//! Rules this module keeps: an option belongs to the backend it means something to, so a
//! combination that cannot be run (a namespace run with guest memory, a disk to persist,
//! a kernel command line, a power button or a NIC of QEMU's) cannot be written down.

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

use crate::machine::Firmware;

/// Guest memory when the caller does not say.
pub const DEFAULT_MEMORY_MIB: u32 = 256;

/// The address a guest connects to for a forward.
pub const FORWARD_ADDRESS: &str = "10.0.2.100";

/// What `limpet run` is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The output directory of `limpet build`.
    pub dir: PathBuf,
    /// When to stop early.
    pub watch: Watch,
    /// Where the image runs.
    pub backend: Backend,
}

impl RunOptions {
    /// QEMU with its defaults for `dir`: 256 MiB, no extra command line, snapshot disk,
    /// no network, no deadline.
    pub fn new(dir: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            dir: dir.into(),
            watch: Watch::default(),
            backend: Backend::Qemu(QemuOptions::default()),
        }
    }
}

/// What stops a run besides the guest powering off; the same for every backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watch {
    /// Stop as soon as a console line contains this plain substring (no pattern syntax).
    pub exit_on: Option<String>,
    /// Stop the guest when this much time has passed since it started.
    pub timeout: Option<Duration>,
}

/// Where the image runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The whole image (kernel, initramfs, disk) in QEMU under TCG ([`crate::qemu`]).
    Qemu(QemuOptions),
    /// limpet-init as PID 1 of new namespaces on this host, from the checked and unpacked
    /// slot ([`crate::namespaces`]): no kernel, disk, dm-verity, hardening or cgroup
    /// budgets of its own.
    Namespaces(NamespaceOptions),
}

/// The options of [`Backend::Qemu`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuOptions {
    /// How the guest starts.
    pub firmware: Firmware,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Extra kernel command line, appended after the fixed part.
    pub append: Option<String>,
    /// Where the guest's disk writes go.
    pub disk_writes: DiskWrites,
    /// The guest's network.
    pub network: Network,
    /// Press the guest's ACPI power button (through QMP) once every one of these plain
    /// substrings has appeared in some console line, and let the guest shut down by
    /// itself. Empty: never.
    pub powerdown_on: Vec<String>,
}

impl Default for QemuOptions {
    fn default() -> QemuOptions {
        QemuOptions {
            firmware: Firmware::default(),
            memory_mib: DEFAULT_MEMORY_MIB,
            append: None,
            disk_writes: DiskWrites::default(),
            network: Network::None,
            powerdown_on: Vec::new(),
        }
    }
}

/// The options of [`Backend::Namespaces`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceOptions {
    /// The existing network namespace (`/run/netns/<name>`) PID 1 runs in, instead of a
    /// new, empty one.
    pub netns: Option<String>,
}

/// Where a QEMU guest's disk writes go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DiskWrites {
    /// To a throw-away overlay (`snapshot=on`): the built `disk.img` is never modified.
    #[default]
    Discard,
    /// To `disk.img` itself (`--persist`).
    Persist,
}

/// The guest's network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Network {
    /// No network device at all.
    #[default]
    None,
    /// A virtio NIC on QEMU's user networking with `restrict=on`: the guest gets DHCP
    /// (10.0.2.15, router 10.0.2.2, DNS 10.0.2.3) and can reach nothing outside, except
    /// each forward: a connection to `10.0.2.100:<guest_port>` is relayed to `host` on this
    /// machine (by `<relay> relay <host>`, which QEMU starts per connection).
    User {
        /// The guest ports forwarded, and where to.
        forwards: Vec<Forward>,
        /// The `limpet` program: QEMU runs `<relay> relay <host>` per forwarded connection,
        /// which relays its stdin and stdout to that address.
        relay: PathBuf,
    },
}

/// One guest-to-host forward of [`Network::User`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Port on the guest side address [`FORWARD_ADDRESS`].
    pub guest_port: u16,
    /// Where the connection goes on this machine (loopback only).
    pub host: SocketAddrV4,
}
