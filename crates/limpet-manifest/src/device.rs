//! `[device]`, `[kernel]` and `[disk]`: what the image is for, the kernel it boots, and the
//! partition sizes; their types and their checks.
//!
//! Rules this module keeps:
//! - Every value here has passed its checks; fields hold newtypes, never raw strings that
//!   still need parsing.
//! - Defaults are named constants or `Default` impls here, so the canonical form and the
//!   docs agree on them.
//! - Partitions are whole MiB and at least their minimum size, so the disk layout never
//!   has to round.

use std::path::PathBuf;

use serde::Serialize;

use crate::diag::{did_you_mean, Problem};
use crate::keyword::keywords;
use crate::names::{DeviceName, ModuleName};
use crate::raw::{RawDevice, RawDisk, RawKernel};
use crate::task::MIN_TASK_MEMORY;
use crate::units::ByteSize;
use crate::validate::{file_path, Checker};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// 64-bit x86.
    X86_64,
    /// 64-bit Arm.
    Aarch64,
}

keywords!(Target, "target", {
    X86_64 => "x86_64",
    Aarch64 => "aarch64",
});

impl Target {
    /// The Rust target triple device binaries are built for (static musl).
    pub fn rust_triple(&self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64-unknown-linux-musl",
            Target::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }
}

/// `[kernel]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Kernel {
    /// Where the kernel image and modules come from (default `limpet`: Limpet's own kernel,
    /// built for this manifest; the QEMU boards of both targets are what it is built for).
    pub source: KernelSource,
    /// Extra kernel modules to put in the initramfs and load at boot.
    pub modules: Vec<ModuleName>,
    /// Extra kernel command-line parameters, signed into the slot after Limpet's own.
    pub cmdline: KernelCmdline,
    /// The hardware watchdog's timeout (default [`DEFAULT_WATCHDOG`]).
    pub watchdog: Watchdog,
    /// Whether the board has a TPM the kernel must drive (default [`Tpm::None`]).
    pub tpm: Tpm,
}

/// `[kernel] tpm`: whether the device has a TPM 2.0 the kernel must drive, so that the
/// device identity is sealed to the measured boot chain (docs/identity.md). With `"tpm2"`
/// the kernel needs the TPM core and its TIS driver (limpet-kconfig's needs); PID 1 uses a
/// TPM only then: without it, `limpet build` leaves the TPM commands out of PID 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tpm {
    /// No TPM is asked for: the kernel need not drive one.
    #[default]
    None,
    /// A TPM 2.0 on the TIS interface (QEMU's `tpm-tis`, most x86 boards' fTPM or dTPM).
    Tpm2,
}

keywords!(Tpm, "tpm", {
    None => "none",
    Tpm2 => "tpm2",
});

/// The hardware watchdog's timeout when `[kernel] watchdog` is not given.
pub const DEFAULT_WATCHDOG: Watchdog = Watchdog::Secs(60);
/// The longest watchdog timeout (the i6300ESB's two 20-bit stages at about 1 kHz).
pub const MAX_WATCHDOG_SECS: u16 = 2046;
/// The most bytes of extra kernel parameters: the slot header holds 1024 bytes of command
/// line, and Limpet's own parameters take the rest.
pub const MAX_KERNEL_CMDLINE: usize = 896;

/// `[kernel] watchdog`: how long a boot may hang before the hardware watchdog resets the
/// device (the loader arms it; PID 1 pets it), or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watchdog {
    /// A timeout in whole seconds, 1 to [`MAX_WATCHDOG_SECS`].
    Secs(u16),
    /// No watchdog: a hung device stays hung until it is power-cycled.
    Off,
}

impl Default for Watchdog {
    fn default() -> Self {
        DEFAULT_WATCHDOG
    }
}

impl std::fmt::Display for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Watchdog::Secs(s) => write!(f, "{s}s"),
            Watchdog::Off => f.write_str("off"),
        }
    }
}
crate::units::serialize_as_display!(Watchdog);

impl std::str::FromStr for Watchdog {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        if s == "off" {
            return Ok(Watchdog::Off);
        }
        let range =
            || format!("a whole number of seconds from 1s to {MAX_WATCHDOG_SECS}s, or \"off\"");
        let d: crate::units::Duration = s.parse()?;
        let millis = d.as_millis();
        match u16::try_from(millis / 1000) {
            Ok(secs) if millis.is_multiple_of(1000) && (1..=MAX_WATCHDOG_SECS).contains(&secs) => {
                Ok(Watchdog::Secs(secs))
            }
            _ => Err(
                Problem::new(format!("watchdog timeout {s:?} is out of range")).expected(range()),
            ),
        }
    }
}

/// `[kernel] cmdline`: extra kernel parameters, each a word of printable ASCII, none of
/// them Limpet's own (`limpet.*`) nor one that would start another program than
/// limpet-init as PID 1 (`init=`, `rdinit=`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelCmdline(Vec<String>);

impl KernelCmdline {
    /// The parameters, in order.
    pub fn words(&self) -> &[String] {
        &self.0
    }
}

impl std::fmt::Display for KernelCmdline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}
crate::units::serialize_as_display!(KernelCmdline);

impl std::str::FromStr for KernelCmdline {
    type Err = Problem;

    fn from_str(s: &str) -> Result<Self, Problem> {
        if let Some(c) = s.chars().find(|c| !(' '..='~').contains(c) || *c == '"') {
            return Err(Problem::new(format!("kernel command line holds {c:?}"))
                .expected("printable ASCII parameters separated by spaces, without quotes"));
        }
        if s.len() > MAX_KERNEL_CMDLINE {
            return Err(
                Problem::new(format!("kernel command line is {} bytes long", s.len()))
                    .expected(format!("at most {MAX_KERNEL_CMDLINE} bytes")),
            );
        }
        let words: Vec<String> = s.split_ascii_whitespace().map(str::to_owned).collect();
        for word in &words {
            let name = word.split_once('=').map_or(word.as_str(), |(n, _)| n);
            if name.starts_with("limpet.") {
                let problem = Problem::new(format!("kernel parameter {word:?} is Limpet's own"))
                    .expected("parameters outside the `limpet.` namespace, which the build and the loader write");
                return Err(if name == "limpet.watchdog" {
                    problem.hint("set the watchdog with [kernel] watchdog")
                } else {
                    problem
                });
            }
            if name == "init" || name == "rdinit" {
                return Err(Problem::new(format!("kernel parameter {word:?} replaces PID 1"))
                    .expected("parameters that keep limpet-init as PID 1: it verifies the slot and sandboxes every task"));
            }
        }
        Ok(KernelCmdline(words))
    }
}

/// Where the kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelSource {
    /// The build host's running kernel and its modules.
    Host,
    /// Limpet's own kernel, built from Debian's `linux-source-6.1` with a configuration
    /// derived from this manifest (crates/limpet-kbuild): every driver built in, no
    /// loadable modules. The default: both targets' boards (QEMU's q35 and `virt`) are the
    /// boards its configuration is made for.
    #[default]
    Limpet,
    /// Explicit files, relative to the manifest's directory unless absolute.
    Paths {
        /// The kernel image (e.g. `vmlinuz-6.1.0-18-amd64`).
        image: PathBuf,
        /// A `/lib/modules/<version>` style directory.
        modules: PathBuf,
    },
}

impl KernelSource {
    /// How `source = "host"` is spelled: the one source written as a word, not a table.
    pub(crate) const HOST: &'static str = "host";
    /// How `source = "limpet"` is spelled.
    pub(crate) const LIMPET: &'static str = "limpet";
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

/// Checks `[device]`.
pub(crate) fn check_device(c: &mut Checker<'_>, d: &RawDevice) -> Option<Device> {
    let name = c.parse(&d.name);
    let version = c.check(&d.version, parse_version);
    let target = c.check(&d.target, parse_target);
    let memory = c.parse_or(&d.memory, DEFAULT_DEVICE_MEMORY);
    let cpus = match &d.cpus {
        Some(n) => c.int_in(n, "cpu count", 1, i64::from(MAX_CPUS)),
        None => Some(DEFAULT_CPUS),
    };
    if let (Some(m), Some(s)) = (memory, &d.memory) {
        if m < MIN_TASK_MEMORY {
            c.report(
                &s.span(),
                Problem::new(format!("device memory {m} is too small"))
                    .expected(format!("at least {MIN_TASK_MEMORY}")),
            );
        }
    }
    Some(Device {
        name: name?,
        version: version?,
        target: target?,
        memory: memory?,
        cpus: cpus?,
    })
}

/// `source = "host"`, the one word a kernel source may be.
fn parse_kernel_word(v: &str) -> Result<KernelSource, Problem> {
    let (host, limpet) = (KernelSource::HOST, KernelSource::LIMPET);
    if v == host {
        return Ok(KernelSource::Host);
    }
    if v == limpet {
        return Ok(KernelSource::Limpet);
    }
    let hint = match did_you_mean(v, [host, limpet]) {
        Some(word) => format!("did you mean \"{word}\"?"),
        None => "for your own kernel write source = { image = \"path/to/vmlinuz\", modules = \"path/to/lib/modules/<version>\" }".to_owned(),
    };
    Err(Problem::new(format!("invalid kernel source {v:?}"))
        .expected(format!(
            "\"{host}\", \"{limpet}\" or a table {{ image = \"...\", modules = \"...\" }}"
        ))
        .hint(hint))
}

/// A semantic version, with the nearest one that parses as the hint.
fn parse_version(s: &str) -> Result<semver::Version, Problem> {
    semver::Version::parse(s).map_err(|e| {
        // Suggest the nearest version that parses: no leading 'v', missing parts as 0.
        let t = s.trim().trim_start_matches(['v', 'V']);
        let dots = t.split(['-', '+']).next().unwrap_or(t).matches('.').count();
        let padded = match dots {
            0 => format!("{t}.0.0"),
            1 => format!("{t}.0"),
            _ => t.to_owned(),
        };
        let padded = if dots < 2 {
            // Keep pre-release/build suffixes after the padded core.
            match t.find(['-', '+']) {
                Some(i) => {
                    let (core, suffix) = t.split_at(i);
                    format!("{core}{}{suffix}", if dots == 0 { ".0.0" } else { ".0" })
                }
                None => padded,
            }
        } else {
            padded
        };
        let hint = semver::Version::parse(&padded)
            .ok()
            .filter(|_| padded != s)
            .map(|v| format!("did you mean \"{v}\"?"));
        Problem::new(format!("invalid version {s:?}"))
            .expected("a semantic version MAJOR.MINOR.PATCH, e.g. \"1.4.0\"")
            .hint(hint.unwrap_or_else(|| e.to_string()))
    })
}

/// A supported target, with hints for the other names architectures go by.
fn parse_target(s: &str) -> Result<Target, Problem> {
    if let Some((_, t)) = Target::KEYWORDS.iter().find(|(w, _)| *w == s) {
        return Ok(*t);
    }
    let words = || Target::KEYWORDS.iter().map(|(w, _)| *w);
    let supported = words().collect::<Vec<_>>().join(", ");
    let hint = match s.to_ascii_lowercase().as_str() {
        "amd64" | "x86-64" | "x64" | "x86_64-unknown-linux-musl" | "x86_64-unknown-linux-gnu" => {
            Some(format!("did you mean \"{}\"?", Target::X86_64))
        }
        "arm64" | "armv8" | "aarch64-unknown-linux-musl" | "aarch64-unknown-linux-gnu" => {
            Some(format!("did you mean \"{}\"?", Target::Aarch64))
        }
        "arm" | "armv7" | "armhf" | "armv7l" | "riscv64" | "riscv" => {
            Some("armv7 and riscv64 are planned but not supported yet".to_owned())
        }
        _ => did_you_mean(s, words()).map(|t| format!("did you mean \"{t}\"?")),
    };
    Err(Problem::new(format!("unsupported target {s:?}"))
        .expected(format!("a supported target: {supported}"))
        .maybe_hint(hint))
}

/// Checks `[kernel]`.
pub(crate) fn check_kernel(c: &mut Checker<'_>, k: &RawKernel) -> Option<Kernel> {
    let source = match &k.source {
        None => Some(KernelSource::default()),
        Some(s) => c.str_or_table(
            s,
            |c, word| c.check(word, parse_kernel_word),
            |c, p| {
                let image = c.check(&p.image, |v| file_path("kernel image", v));
                let modules = c.check(&p.modules, |v| file_path("modules directory", v));
                Some(KernelSource::Paths {
                    image: image?,
                    modules: modules?,
                })
            },
        ),
    };
    let modules = c.list(&k.modules, str::parse);
    if let (Some(KernelSource::Limpet), Some(first)) =
        (&source, k.modules.as_ref().and_then(|m| m.first()))
    {
        let problem = Problem::new(if k.source.is_some() {
            "kernel modules with source = \"limpet\""
        } else {
            "kernel modules with source = \"limpet\" (the default)"
        })
        .expected("no [kernel] modules: Limpet's kernel has every driver the device uses built in, and no loadable modules")
        .hint("to load modules, set source = \"host\" (the build host's kernel) or source = { image = \"...\", modules = \"...\" }");
        c.report(&first.span(), problem);
        return None;
    }
    let cmdline = c.parse_or(&k.cmdline, KernelCmdline::default());
    let watchdog = c.parse_or(&k.watchdog, DEFAULT_WATCHDOG);
    let tpm = k.tpm.as_ref().map_or(Some(Tpm::None), |s| c.keyword(s));
    Some(Kernel {
        source: source?,
        modules: modules?,
        cmdline: cmdline?,
        watchdog: watchdog?,
        tpm: tpm?,
    })
}

/// Checks `[disk]`: each size at least its minimum and a whole number of MiB.
pub(crate) fn check_disk(c: &mut Checker<'_>, d: &RawDisk) -> Option<Disk> {
    let slot = c.parse_or(&d.slot_size, DEFAULT_SLOT_SIZE);
    let data = c.parse_or(&d.data_size, DEFAULT_DATA_SIZE);
    let mut ok = true;
    for (value, raw, min, what) in [
        (slot, &d.slot_size, MIN_SLOT_SIZE, "slot_size"),
        (data, &d.data_size, MIN_DATA_SIZE, "data_size"),
    ] {
        let (Some(v), Some(raw)) = (value, raw) else {
            continue;
        };
        if v < min {
            ok = false;
            c.report(
                &raw.span(),
                Problem::new(format!("{what} {v} is too small"))
                    .expected(format!("at least {min}"))
                    .hint(format!("did you mean \"{min}\"?")),
            );
        } else if v.bytes() % DISK_ALIGN.bytes() != 0 {
            ok = false;
            let up = ByteSize(
                v.bytes()
                    .div_ceil(DISK_ALIGN.bytes())
                    .saturating_mul(DISK_ALIGN.bytes()),
            );
            c.report(
                &raw.span(),
                Problem::new(format!("{what} {v} is not a whole number of MiB"))
                    .expected("a size in whole MiB, so partitions stay aligned")
                    .hint(format!("did you mean \"{up}\"?")),
            );
        }
    }
    ok.then_some(())?;
    Some(Disk {
        slot_size: slot?,
        data_size: data?,
    })
}
