//! What `limpet run` is asked to do: the output directory, when to stop, and the backend
//! with the options only it has.
//!
//! Rules this module keeps: an option belongs to the backend it means something to, so a
//! combination that cannot be run (a namespace run with guest memory, a disk to persist,
//! a kernel command line, a power button or a NIC of QEMU's) cannot be written down; a
//! value with a syntax of QEMU's (the guest clock's start) is parsed into its own type, so
//! a wrong one is refused by name before QEMU starts.

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
    /// Stop the guest this long after the first console line that contains a text, as
    /// [`Watch::timeout`] stops it (outcome [`crate::Outcome::Timeout`]); `timeout` still
    /// holds, whichever comes first.
    pub cut: Option<Cut>,
}

/// A stop timed from a console line rather than from the start: with QEMU, a power cut
/// at a chosen moment of what the line announces (`limpet run --cut-on`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The plain substring of the console line the delay is counted from (its first
    /// occurrence).
    pub after: String,
    /// How long after that line.
    pub delay: Duration,
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
    /// Where the guest's real-time clock starts (QEMU's `-rtc base=`); `None`: now, in UTC.
    pub rtc_base: Option<RtcBase>,
    /// A TPM 2.0 (swtpm) with its state in this directory; `None`: no TPM.
    pub tpm: Option<PathBuf>,
    /// Type the second text on the guest's serial console once a console line contains
    /// the first (the owner confirming an owner mode request at the boot loader).
    pub type_on: Option<(String, String)>,
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
            rtc_base: None,
            tpm: None,
            type_on: None,
        }
    }
}

/// The time a guest's real-time clock starts at, in UTC: `YYYY-MM-DDTHH:MM:SS` or
/// `YYYY-MM-DD` (midnight), the forms QEMU's `-rtc base=` takes. For testing a device
/// whose clock is wrong (a flat battery, years in the past or the future).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcBase(String);

/// A `--rtc-base` value that is not a date and time QEMU takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a UTC date and time YYYY-MM-DDTHH:MM:SS (or a date YYYY-MM-DD)")]
pub struct InvalidRtcBase {
    /// The value given.
    pub value: String,
}

impl RtcBase {
    /// Checks `value`: the digits in their places, each field in its range (day up to 31
    /// in any month: QEMU's own check of the calendar follows).
    pub fn parse(value: &str) -> Result<RtcBase, InvalidRtcBase> {
        let (date, time) = match value.split_once('T') {
            Some((date, time)) => (date, Some(time)),
            None => (value, None),
        };
        let date_ok = fields(date, '-', [(4, 0..=9999), (2, 1..=12), (2, 1..=31)]);
        let time_ok = time.is_none_or(|t| fields(t, ':', [(2, 0..=23), (2, 0..=59), (2, 0..=59)]));
        if date_ok && time_ok {
            Ok(RtcBase(value.to_owned()))
        } else {
            Err(InvalidRtcBase {
                value: value.to_owned(),
            })
        }
    }

    /// The value as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `text` is three fields split by `sep`, each of exactly its number of digits and
/// in its range.
fn fields(text: &str, sep: char, want: [(usize, std::ops::RangeInclusive<u32>); 3]) -> bool {
    let parts: Vec<&str> = text.split(sep).collect();
    parts.len() == want.len()
        && parts.iter().zip(want).all(|(part, (digits, range))| {
            part.len() == digits
                && part.bytes().all(|b| b.is_ascii_digit())
                && part.parse::<u32>().is_ok_and(|n| range.contains(&n))
        })
}

impl std::str::FromStr for RtcBase {
    type Err = InvalidRtcBase;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RtcBase::parse(s)
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
    /// A virtio NIC on an existing tap interface of the namespace QEMU runs in (QEMU's
    /// `-netdev tap,ifname=...,script=no,downscript=no`): the guest is on whatever network
    /// the caller joined the tap to (a bridge with a DHCP server, a router), as a device
    /// is on a real LAN. QEMU configures nothing on the host side: the tap must exist,
    /// made by the caller (`ip tuntap add NAME mode tap`), or QEMU must be allowed to
    /// create it.
    Tap {
        /// The tap interface.
        ifname: TapName,
    },
}

/// The name of a network interface for [`Network::Tap`]: 1 to 15 bytes (the kernel's
/// `IFNAMSIZ` less its NUL) of letters, digits, `-`, `_` and `.`, not `.` or `..`; so it
/// cannot carry a QEMU option of its own (a comma) or a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapName(String);

/// A `--net-tap` value that is not an interface name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a network interface name (1 to 15 letters, digits, '-', '_' or '.')")]
pub struct InvalidTapName {
    /// The value given.
    pub value: String,
}

impl TapName {
    /// Checks `value`.
    pub fn parse(value: &str) -> Result<TapName, InvalidTapName> {
        let ok = (1..=15).contains(&value.len())
            && value != "."
            && value != ".."
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(TapName(value.to_owned()))
        } else {
            Err(InvalidTapName {
                value: value.to_owned(),
            })
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for TapName {
    type Err = InvalidTapName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TapName::parse(s)
    }
}

/// One guest-to-host forward of [`Network::User`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Port on the guest side address [`FORWARD_ADDRESS`].
    pub guest_port: u16,
    /// Where the connection goes on this machine (loopback only).
    pub host: SocketAddrV4,
}
