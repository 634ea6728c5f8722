//! `limpet run`: boots a built image in QEMU (TCG) with the serial console on the
//! caller's terminal, and turns what the guest does into an outcome and an exit code.
//!
//! - [`qemu_args`] is the whole QEMU command line, a pure function of a [`RunConfig`];
//! - [`prepare`] checks an output directory and reads the target from its slot header;
//! - [`supervise`] runs a program, hands each console line to the caller as it arrives
//!   and stops it on a pattern, a kernel panic report or a deadline;
//! - [`run`] is both, for an output directory.
//!
//! QEMU always runs under TCG: KVM is never asked for, so a run behaves the same on every
//! host (and does not hang on hosts whose KVM is unusable). The disk is attached with
//! `snapshot=on` unless [`RunConfig::persist`] is set, so a run never modifies the built
//! `disk.img`.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use limpet_image::header::Target;
use limpet_image::slot;
use serde::Serialize;

use crate::outputs::{DISK_IMG, INITRAMFS, KERNEL};
use crate::read::image_file::{self, ImageFileError};

/// Guest memory when the caller does not say.
pub const DEFAULT_MEMORY_MIB: u32 = 256;
/// Kernel command line every run starts with (the console device comes before it).
pub const BASE_APPEND: &str = "panic=-1 quiet";
/// A console line containing this is a kernel panic report.
pub const KERNEL_PANIC: &str = "Kernel panic";

/// Exit code when the guest powered off by itself or the `--exit-on` pattern was seen.
pub const EXIT_OK: u8 = 0;
/// Exit code when the guest reported a kernel panic.
pub const EXIT_KERNEL_PANIC: u8 = 3;
/// Exit code when the deadline passed first (as timeout(1)).
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code when QEMU was ended by a signal it reports (Ctrl-C), as a shell would.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Most bytes of QEMU's stderr kept for an error message.
const STDERR_KEEP: usize = 64 * 1024;
/// How often the child is polled once its console is closed.
const POLL: Duration = Duration::from_millis(20);
/// How long QEMU's stderr is waited for once it has exited.
const STDERR_WAIT: Duration = Duration::from_secs(5);

/// Why an image cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{dir} is not a directory; run `limpet build` to make one (it holds {KERNEL}, {INITRAMFS}, {DISK_IMG} and slot.img)")]
    NoDir { dir: PathBuf },
    #[error("{path} is missing; run `limpet build` to write it")]
    MissingFile { path: PathBuf },
    #[error("cannot read the slot in {dir} to learn its target; run `limpet build` again")]
    Slot {
        dir: PathBuf,
        source: ImageFileError,
    },
    #[error("{path}: not a valid slot")]
    SlotFormat {
        path: PathBuf,
        source: slot::SlotError,
    },
    #[error("cannot prepare the simulation")]
    Sim { source: crate::sim::SimError },
    #[error("{option} must be {expected}, got {value}")]
    InvalidOption {
        option: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("`{program}` is not installed; install it with `apt-get install {package}`")]
    QemuMissing {
        program: String,
        package: &'static str,
    },
    #[error("cannot start `{program}`")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot wait for `{program}`")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    #[error("`{program}` failed ({status}){}", stderr_suffix(.stderr))]
    QemuFailed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        " with nothing on stderr".to_owned()
    } else {
        format!(":\n{stderr}")
    }
}

/// The emulated machine for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// The QEMU system emulator.
    pub program: &'static str,
    /// The Debian package that installs it.
    pub package: &'static str,
    /// `-machine` value (always `accel=tcg`).
    pub machine: &'static str,
    /// `-cpu` value.
    pub cpu: &'static str,
    /// The kernel's name for the machine's first serial port.
    pub console: &'static str,
}

impl Machine {
    /// The machine `limpet run` emulates for `target`.
    pub const fn for_target(target: Target) -> Machine {
        match target {
            Target::X86_64 => Machine {
                program: "qemu-system-x86_64",
                package: "qemu-system-x86",
                machine: "pc,accel=tcg",
                cpu: "qemu64",
                console: "ttyS0",
            },
            // The virt board's UART is a PL011, which Linux names ttyAMA0.
            Target::Aarch64 => Machine {
                program: "qemu-system-aarch64",
                package: "qemu-system-arm",
                machine: "virt,accel=tcg",
                cpu: "cortex-a57",
                console: "ttyAMA0",
            },
        }
    }
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
    pub host: std::net::SocketAddrV4,
}

/// The address a guest connects to for a forward.
pub const FORWARD_ADDRESS: &str = "10.0.2.100";

/// Everything the QEMU command line depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// The image's architecture.
    pub target: Target,
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs (zstd newc cpio).
    pub initramfs: PathBuf,
    /// The GPT disk image.
    pub disk: PathBuf,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Write the guest's disk writes to `disk` instead of a throw-away overlay.
    pub persist: bool,
    /// Extra kernel command line, appended after the fixed part.
    pub append: Option<String>,
    /// The guest's network.
    pub network: Network,
    /// A QMP control socket, for asking the guest to power down (the ACPI power button).
    pub qmp: Option<PathBuf>,
}

impl RunConfig {
    /// A configuration for the outputs of `limpet build` in `dir`, with defaults.
    pub fn for_dir(dir: &Path, target: Target) -> RunConfig {
        RunConfig {
            target,
            kernel: dir.join(KERNEL),
            initramfs: dir.join(INITRAMFS),
            disk: dir.join(DISK_IMG),
            memory_mib: DEFAULT_MEMORY_MIB,
            persist: false,
            append: None,
            network: Network::None,
            qmp: None,
        }
    }

    /// The emulated machine.
    pub fn machine(&self) -> Machine {
        Machine::for_target(self.target)
    }

    /// The kernel command line.
    pub fn kernel_cmdline(&self) -> String {
        let mut line = format!("console={} {BASE_APPEND}", self.machine().console);
        if let Some(extra) = self.append.as_deref().map(str::trim) {
            if !extra.is_empty() {
                line.push(' ');
                line.push_str(extra);
            }
        }
        line
    }
}

/// The arguments of the QEMU program ([`Machine::program`]) for `config`.
pub fn qemu_args(config: &RunConfig) -> Vec<OsString> {
    let machine = config.machine();
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["-machine", machine.machine, "-cpu", machine.cpu]);
    push(&["-smp", "1", "-m", &config.memory_mib.to_string()]);
    push(&[
        "-nographic",
        "-no-reboot",
        "-monitor",
        "none",
        "-serial",
        "stdio",
    ]);
    args.extend(network_args(&config.network));
    if let Some(qmp) = &config.qmp {
        let mut value = OsString::from("unix:");
        value.push(qemu_option_value(qmp.as_os_str()));
        value.push(",server=on,wait=off");
        args.push("-qmp".into());
        args.push(value);
    }

    args.push("-kernel".into());
    args.push(config.kernel.clone().into_os_string());
    args.push("-initrd".into());
    args.push(config.initramfs.clone().into_os_string());
    let mut drive = OsString::from("file=");
    drive.push(qemu_option_value(config.disk.as_os_str()));
    drive.push(",if=virtio,format=raw");
    if !config.persist {
        drive.push(",snapshot=on");
    }
    args.push("-drive".into());
    args.push(drive);
    args.push("-append".into());
    args.push(config.kernel_cmdline().into());
    args
}

/// QEMU's arguments for the guest's network.
fn network_args(network: &Network) -> Vec<OsString> {
    match network {
        Network::None => vec!["-nic".into(), "none".into()],
        Network::User { forwards, relay } => {
            let mut netdev = OsString::from("user,id=net0,restrict=on");
            for f in forwards {
                netdev.push(format!(
                    ",guestfwd=tcp:{FORWARD_ADDRESS}:{}-cmd:",
                    f.guest_port
                ));
                netdev.push(qemu_option_value(relay.as_os_str()));
                netdev.push(format!(" relay {}", f.host));
            }
            vec![
                "-netdev".into(),
                netdev,
                "-device".into(),
                "virtio-net-pci,netdev=net0".into(),
            ]
        }
    }
}

/// A value inside a QEMU `key=value,...` option: commas are doubled.
fn qemu_option_value(value: &OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::with_capacity(value.len());
    for &byte in value.as_bytes() {
        out.push(byte);
        if byte == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// What stops a run besides the guest powering off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watch {
    /// Stop as soon as a console line contains this plain substring (no pattern syntax).
    pub exit_on: Option<String>,
    /// Stop the guest when this much time has passed since it started.
    pub timeout: Option<Duration>,
    /// Press the guest's ACPI power button (through QMP) once every one of these plain
    /// substrings has appeared in some console line, and let the guest shut down by
    /// itself. Empty: never.
    pub powerdown_on: Vec<String>,
    /// The QMP socket to press it through (set by [`run`] when `powerdown_on` is set).
    pub qmp: Option<PathBuf>,
}

/// What `limpet run` is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The output directory of `limpet build`.
    pub dir: PathBuf,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Extra kernel command line.
    pub append: Option<String>,
    /// Let the guest write to `disk.img`.
    pub persist: bool,
    /// When to stop early.
    pub watch: Watch,
    /// Run limpet-init as PID 1 of new namespaces on this host instead of booting QEMU
    /// (see [`crate::sim`]).
    pub sim: bool,
    /// With `sim`: the existing network namespace (`/run/netns/<name>`) PID 1 runs in,
    /// instead of a new, empty one.
    pub netns: Option<String>,
    /// The guest's network (QEMU only).
    pub network: Network,
}

impl RunOptions {
    /// Defaults for `dir`: 256 MiB, no extra command line, snapshot disk, no deadline.
    pub fn new(dir: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            dir: dir.into(),
            memory_mib: DEFAULT_MEMORY_MIB,
            append: None,
            persist: false,
            watch: Watch::default(),
            sim: false,
            netns: None,
            network: Network::None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The guest powered off by itself.
    PoweredOff,
    /// A console line contained the `exit_on` pattern; the guest was stopped.
    Matched,
    /// The deadline passed; the guest was stopped.
    Timeout,
    /// The guest printed a kernel panic report.
    KernelPanic,
    /// QEMU was ended by a signal (for example Ctrl-C on the terminal).
    Interrupted,
}

impl Outcome {
    /// The exit code `limpet run` ends with.
    pub const fn exit_code(self) -> u8 {
        match self {
            Outcome::PoweredOff | Outcome::Matched => EXIT_OK,
            Outcome::Timeout => EXIT_TIMEOUT,
            Outcome::KernelPanic => EXIT_KERNEL_PANIC,
            Outcome::Interrupted => EXIT_INTERRUPTED,
        }
    }
}

/// The summary of a run (`limpet run --json`).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub outcome: Outcome,
    pub exit_code: u8,
    /// The console line that contained the `exit_on` pattern.
    pub matched_line: Option<String>,
    /// The console line that reported a kernel panic.
    pub panic_line: Option<String>,
    /// Seconds from starting QEMU until it was gone.
    pub seconds: f64,
    /// Console lines seen.
    pub console_lines: u64,
    /// The deadline, if there was one.
    pub timeout_seconds: Option<f64>,
}

/// Checks that `options.dir` holds what a run needs and reads the target from its slot.
pub fn prepare(options: &RunOptions) -> Result<RunConfig, RunError> {
    let dir = &options.dir;
    if !dir.is_dir() {
        return Err(RunError::NoDir { dir: dir.clone() });
    }
    if options.memory_mib == 0 {
        return Err(RunError::InvalidOption {
            option: "--memory",
            expected: "at least 1 MiB",
            value: options.memory_mib.to_string(),
        });
    }
    for name in [KERNEL, INITRAMFS, DISK_IMG] {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(RunError::MissingFile { path });
        }
    }
    let slot_bytes = image_file::load_slot(dir).map_err(|source| RunError::Slot {
        dir: dir.clone(),
        source,
    })?;
    let opened = slot::open(&slot_bytes.bytes).map_err(|source| RunError::SlotFormat {
        path: slot_bytes.path.clone(),
        source,
    })?;
    let target = opened.header.unverified().target;
    let mut config = RunConfig::for_dir(dir, target);
    config.memory_mib = options.memory_mib;
    config.append = options.append.clone();
    config.persist = options.persist;
    config.network = options.network.clone();
    Ok(config)
}

/// Boots the image in `options.dir`, handing each console line to `on_line`.
pub fn run(options: &RunOptions, on_line: &mut dyn FnMut(&str)) -> Result<RunReport, RunError> {
    let mut config = prepare(options)?;
    if options.sim {
        return run_sim(options, on_line);
    }
    let mut watch = options.watch.clone();
    // A private directory for the QMP socket, removed when the run ends.
    let qmp_dir = if watch.powerdown_on.is_empty() {
        None
    } else {
        Some(tempfile_dir()?)
    };
    if let Some(dir) = &qmp_dir {
        let socket = dir.join("qmp.sock");
        config.qmp = Some(socket.clone());
        watch.qmp = Some(socket);
    }
    let machine = config.machine();
    let args = qemu_args(&config);
    tracing::info!(
        "booting {} ({}) in {} under TCG",
        options.dir.display(),
        config.target,
        machine.program
    );
    tracing::debug!("{} {:?}", machine.program, args);
    let mut command = Command::new(machine.program);
    command.args(&args);
    let result = supervise(command, &watch, on_line);
    if let Some(dir) = qmp_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    result.map_err(|err| match err {
        RunError::Spawn { program, source } if source.kind() == std::io::ErrorKind::NotFound => {
            RunError::QemuMissing {
                program,
                package: machine.package,
            }
        }
        other => other,
    })
}

/// A new private directory under the system's temporary directory.
fn tempfile_dir() -> Result<PathBuf, RunError> {
    use std::os::unix::fs::DirBuilderExt;
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("limpet-run-{}-{n}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|source| RunError::Spawn {
            program: format!("mkdir {}", dir.display()),
            source,
        })?;
    Ok(dir)
}

/// Presses the guest's ACPI power button through QEMU's QMP socket.
fn qmp_powerdown(socket: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    // The greeting, then one answer per command.
    reader.read_line(&mut line)?;
    for command in ["qmp_capabilities", "system_powerdown"] {
        writeln!(writer, "{{\"execute\":\"{command}\"}}")?;
        // Asynchronous events (`"event"`) may come before the answer: skip them.
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other(format!(
                    "QMP {command}: connection closed"
                )));
            }
            if line.contains("\"return\"") {
                break;
            }
            if !line.contains("\"event\"") {
                return Err(std::io::Error::other(format!(
                    "QMP {command}: {}",
                    line.trim()
                )));
            }
        }
    }
    Ok(())
}

/// `--sim`: limpet-init in new namespaces on this host.
fn run_sim(options: &RunOptions, on_line: &mut dyn FnMut(&str)) -> Result<RunReport, RunError> {
    if !options.watch.powerdown_on.is_empty() {
        return Err(RunError::InvalidOption {
            option: "--powerdown-on",
            expected: "absent with --sim (there is no power button: end a simulation with --exit-on, --timeout or Ctrl-C, which PID 1 gets as SIGTERM)",
            value: options.watch.powerdown_on.join(", "),
        });
    }
    let root = crate::sim::prepare(&options.dir).map_err(|source| RunError::Sim { source })?;
    tracing::info!(
        "simulating {} in {} (new namespaces on this host)",
        options.dir.display(),
        root.path().display()
    );
    supervise(
        root.command(options.netns.as_deref()),
        &options.watch,
        on_line,
    )
    .map_err(|err| match err {
        RunError::Spawn { program, source } if source.kind() == std::io::ErrorKind::NotFound => {
            RunError::QemuMissing {
                program,
                package: "util-linux",
            }
        }
        other => other,
    })
}

/// What the line reader thread sends.
enum Event {
    Line(String),
    Closed,
}

/// Runs `command` (stdin closed, stdout and stderr piped), hands each line of its stdout
/// to `on_line` as it arrives, and stops it (by its PID, through [`Child::kill`]) when a
/// line contains `watch.exit_on` or when `watch.timeout` passes. Lines are read on their
/// own thread, so the deadline holds even when the program prints nothing. The child is
/// always waited for.
///
/// A kernel panic report is noted and the program left to end (with `panic=-1` and
/// `-no-reboot` QEMU exits right after it); then the outcome is
/// [`Outcome::KernelPanic`]. A program that exits with failure on its own is an error
/// carrying its stderr.
pub fn supervise(
    mut command: Command,
    watch: &Watch,
    on_line: &mut dyn FnMut(&str),
) -> Result<RunReport, RunError> {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command.spawn().map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    tracing::debug!("started {program} as pid {}", child.id());
    let deadline = watch.timeout.map(|t| start + t);

    let (sender, events) = mpsc::channel();
    let stdout_reader = child.stdout.take().map(|stdout| {
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf);
                        let lines = console_lines(&text);
                        if lines
                            .into_iter()
                            .any(|l| sender.send(Event::Line(l)).is_err())
                        {
                            break;
                        }
                    }
                }
            }
            let _ = sender.send(Event::Closed);
        })
    });
    let (stderr_sender, stderr_text) = mpsc::channel();
    if let Some(mut stderr) = child.stderr.take() {
        thread::spawn(move || {
            // Keep the start, drain the rest so the child never blocks on a full pipe.
            let mut kept = Vec::new();
            let _ = (&mut stderr)
                .take(STDERR_KEEP as u64)
                .read_to_end(&mut kept);
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
            let _ = stderr_sender.send(String::from_utf8_lossy(&kept).into_owned());
        });
    }

    let mut console_lines = 0u64;
    let mut matched_line = None;
    let mut panic_line = None;
    let mut stopped = None;
    let mut console_open = stdout_reader.is_some();
    let mut powerdown_sent = false;
    let mut powerdown_waiting: Vec<String> = watch.powerdown_on.clone();
    while console_open {
        let event = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match events.recv_timeout(left) {
                    Ok(event) => event,
                    Err(RecvTimeoutError::Timeout) => {
                        stopped = Some(Outcome::Timeout);
                        break;
                    }
                    Err(RecvTimeoutError::Disconnected) => Event::Closed,
                }
            }
            None => events.recv().unwrap_or(Event::Closed),
        };
        match event {
            Event::Closed => console_open = false,
            Event::Line(line) => {
                console_lines += 1;
                on_line(&line);
                if let Some(pattern) = &watch.exit_on {
                    if line.contains(pattern.as_str()) {
                        tracing::debug!("console line matched {pattern:?}");
                        matched_line = Some(line);
                        stopped = Some(Outcome::Matched);
                        break;
                    }
                }
                if let Some(qmp) = &watch.qmp {
                    powerdown_waiting.retain(|p| !line.contains(p.as_str()));
                    if !powerdown_sent
                        && powerdown_waiting.is_empty()
                        && !watch.powerdown_on.is_empty()
                    {
                        powerdown_sent = true;
                        match qmp_powerdown(qmp) {
                            Ok(()) => tracing::info!("pressed the power button (after {line:?})"),
                            Err(e) => tracing::warn!(
                                "cannot press the power button through {}: {e}",
                                qmp.display()
                            ),
                        }
                    }
                }
                if panic_line.is_none() && line.contains(KERNEL_PANIC) {
                    tracing::debug!("kernel panic reported");
                    panic_line = Some(line);
                }
            }
        }
    }

    // The console is closed or we are stopping: the child either ends by itself (until
    // the deadline) or is ended by us.
    let status = loop {
        if stopped.is_some() {
            break stop(&mut child, &program)?;
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(source) => {
                // Still ours to end: kill and reap before reporting.
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Wait { program, source });
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stopped = Some(Outcome::Timeout);
            continue;
        }
        thread::sleep(POLL);
    };
    let seconds = start.elapsed().as_secs_f64();
    // The reader threads end when the pipes close. After a stop they are left to it (a
    // process the child started could still hold a pipe); after an exit of its own the
    // console is closed already and stderr is waited for, briefly.
    drop(events);
    let stderr = if stopped.is_some() {
        String::new()
    } else {
        if let Some(reader) = stdout_reader {
            let _ = reader.join();
        }
        stderr_text.recv_timeout(STDERR_WAIT).unwrap_or_default()
    };
    tracing::debug!("{program} ended ({status}) after {seconds:.1} s");

    let outcome = match stopped {
        Some(outcome) => outcome,
        None if panic_line.is_some() => Outcome::KernelPanic,
        None if status.success() && stderr.contains("terminating on signal") => {
            Outcome::Interrupted
        }
        None if status.success() => Outcome::PoweredOff,
        None => {
            return Err(RunError::QemuFailed {
                program,
                status,
                stderr,
            })
        }
    };
    Ok(RunReport {
        outcome,
        exit_code: outcome.exit_code(),
        matched_line,
        panic_line,
        seconds,
        console_lines,
        timeout_seconds: watch.timeout.map(|t| t.as_secs_f64()),
    })
}

/// The console lines in one raw line of output: a terminal reset (`ESC c`, which the
/// firmware sends before the kernel takes the console) starts a new line on a terminal,
/// so it starts one here too; see [`console_text`] for each part.
pub fn console_lines(raw: &str) -> Vec<String> {
    let parts: Vec<&str> = raw.split("\u{1b}c").collect();
    if parts.len() == 1 {
        return vec![console_text(raw)];
    }
    parts
        .into_iter()
        .map(console_text)
        .filter(|part| !part.is_empty())
        .collect()
}

/// A console line as text: terminal escape sequences (the firmware clears the screen and
/// resets the terminal) and other control characters but tabs removed, line end dropped.
pub fn console_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            // CSI (ESC [) runs to a final byte in @..~; other sequences, such as ESC c
            // (reset), are two characters.
            '\u{1b}' => {
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Ends the child we spawned (SIGKILL to its PID) and reaps it.
fn stop(child: &mut Child, program: &str) -> Result<ExitStatus, RunError> {
    tracing::debug!("stopping {program} (pid {})", child.id());
    // An error here means it has already exited; wait() below reaps it either way.
    let _ = child.kill();
    child.wait().map_err(|source| RunError::Wait {
        program: program.to_owned(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn config(target: Target) -> RunConfig {
        RunConfig::for_dir(Path::new("/images/out"), target)
    }

    #[test]
    fn user_network_is_restricted_and_forwards_through_the_relay() {
        let mut c = config(Target::X86_64);
        c.network = Network::User {
            forwards: vec![Forward {
                guest_port: 80,
                host: "127.0.0.1:8080".parse().unwrap(),
            }],
            relay: PathBuf::from("/usr/bin/lim,pet"),
        };
        let args = strings(&qemu_args(&c));
        let i = args.iter().position(|a| a == "-netdev").unwrap();
        assert_eq!(
            args[i + 1],
            "user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:/usr/bin/lim,,pet relay 127.0.0.1:8080"
        );
        assert_eq!(
            args[i + 2..i + 4],
            ["-device", "virtio-net-pci,netdev=net0"]
        );
        assert!(!args.iter().any(|a| a == "-nic"));
    }

    #[test]
    fn run_args_x86_64() {
        let args = strings(&qemu_args(&config(Target::X86_64)));
        let expected = [
            "-machine",
            "pc,accel=tcg",
            "-cpu",
            "qemu64",
            "-smp",
            "1",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-nic",
            "none",
            "-kernel",
            "/images/out/kernel",
            "-initrd",
            "/images/out/initramfs.cpio",
            "-drive",
            "file=/images/out/disk.img,if=virtio,format=raw,snapshot=on",
            "-append",
            "console=ttyS0 panic=-1 quiet",
        ];
        assert_eq!(args, expected);
        assert_eq!(
            config(Target::X86_64).machine().program,
            "qemu-system-x86_64"
        );
    }

    #[test]
    fn run_args_aarch64() {
        let c = config(Target::Aarch64);
        let args = strings(&qemu_args(&c));
        assert_eq!(
            &args[..4],
            ["-machine", "virt,accel=tcg", "-cpu", "cortex-a57"]
        );
        assert_eq!(
            args.last().map(String::as_str),
            Some("console=ttyAMA0 panic=-1 quiet")
        );
        assert_eq!(c.machine().program, "qemu-system-aarch64");
        assert_eq!(c.machine().package, "qemu-system-arm");
    }

    #[test]
    fn run_args_never_ask_for_kvm() {
        for target in [Target::X86_64, Target::Aarch64] {
            let args = strings(&qemu_args(&config(target)));
            assert!(!args.iter().any(|a| a.contains("kvm")), "{args:?}");
            assert!(args.iter().any(|a| a.contains("accel=tcg")), "{args:?}");
        }
    }

    #[test]
    fn run_args_persist_drops_snapshot() {
        let mut c = config(Target::X86_64);
        c.persist = true;
        let args = strings(&qemu_args(&c));
        let drive = args.iter().position(|a| a == "-drive").unwrap();
        assert_eq!(
            args[drive + 1],
            "file=/images/out/disk.img,if=virtio,format=raw"
        );
    }

    #[test]
    fn run_args_extra_append_and_memory() {
        let mut c = config(Target::X86_64);
        c.append = Some("  loglevel=7 limpet.debug=1 ".to_owned());
        c.memory_mib = 512;
        let args = strings(&qemu_args(&c));
        let append = args.iter().position(|a| a == "-append").unwrap();
        assert_eq!(
            args[append + 1],
            "console=ttyS0 panic=-1 quiet loglevel=7 limpet.debug=1"
        );
        let m = args.iter().position(|a| a == "-m").unwrap();
        assert_eq!(args[m + 1], "512");
        c.append = Some("   ".to_owned());
        assert_eq!(c.kernel_cmdline(), "console=ttyS0 panic=-1 quiet");
    }

    #[test]
    fn run_args_escape_commas_in_disk_path() {
        let mut c = config(Target::X86_64);
        c.disk = PathBuf::from("/a,b/disk.img");
        let args = strings(&qemu_args(&c));
        assert!(
            args.contains(&"file=/a,,b/disk.img,if=virtio,format=raw,snapshot=on".to_owned()),
            "{args:?}"
        );
    }

    #[test]
    fn run_console_text_drops_escapes_and_line_ends() {
        assert_eq!(
            console_text("\u{1b}c\u{1b}[?7l\u{1b}[2Jlimpet-init 0.1.0 starting\r\n"),
            "limpet-init 0.1.0 starting"
        );
        assert_eq!(console_text("\u{1b}[0mSeaBIOS\tok\n"), "SeaBIOS\tok");
        assert_eq!(console_text("plain"), "plain");
        assert_eq!(
            console_lines(
                "Booting from ROM..\u{1b}c\u{1b}[?7l\u{1b}[2Jlimpet-init 0.1.0 starting\r\n"
            ),
            ["Booting from ROM..", "limpet-init 0.1.0 starting"]
        );
        assert_eq!(console_lines("\u{1b}c\u{1b}[2J\r\n"), Vec::<String>::new());
        assert_eq!(console_lines("\r\n"), [""]);
    }

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    fn supervise_lines(script: &str, watch: &Watch) -> (Result<RunReport, RunError>, Vec<String>) {
        let mut lines = Vec::new();
        let result = supervise(sh(script), watch, &mut |l| lines.push(l.to_owned()));
        (result, lines)
    }

    #[test]
    fn run_supervise_exit_on_stops_at_first_match() {
        let watch = Watch {
            exit_on: Some("ready".to_owned()),
            timeout: Some(Duration::from_secs(30)),
            ..Watch::default()
        };
        let started = Instant::now();
        let (report, lines) = supervise_lines(
            "printf 'boot\\r\\nall ready now\\nlater\\n'; exec sleep 30",
            &watch,
        );
        let report = report.unwrap();
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(report.outcome, Outcome::Matched);
        assert_eq!(report.exit_code, 0);
        assert_eq!(report.matched_line.as_deref(), Some("all ready now"));
        assert_eq!(lines, ["boot", "all ready now"]);
        assert_eq!(report.console_lines, 2);
    }

    #[test]
    fn run_supervise_timeout_with_silent_child() {
        let watch = Watch {
            exit_on: Some("never".to_owned()),
            timeout: Some(Duration::from_millis(300)),
            ..Watch::default()
        };
        let started = Instant::now();
        let (report, lines) = supervise_lines("exec sleep 30", &watch);
        let report = report.unwrap();
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(report.outcome, Outcome::Timeout);
        assert_eq!(report.exit_code, EXIT_TIMEOUT);
        assert!(lines.is_empty());
    }

    #[test]
    fn run_supervise_timeout_after_console_closed() {
        let watch = Watch {
            exit_on: None,
            timeout: Some(Duration::from_millis(300)),
            ..Watch::default()
        };
        let (report, _) = supervise_lines("exec >&-; exec sleep 30", &watch);
        assert_eq!(report.unwrap().outcome, Outcome::Timeout);
    }

    #[test]
    fn run_supervise_powered_off() {
        let (report, lines) = supervise_lines("echo one; echo two", &Watch::default());
        let report = report.unwrap();
        assert_eq!(report.outcome, Outcome::PoweredOff);
        assert_eq!(report.exit_code, 0);
        assert_eq!(report.console_lines, 2);
        assert_eq!(lines, ["one", "two"]);
    }

    #[test]
    fn run_supervise_kernel_panic() {
        let (report, _) = supervise_lines(
            "echo '[ 1.0] Kernel panic - not syncing: Attempted to kill init!'; echo trace",
            &Watch::default(),
        );
        let report = report.unwrap();
        assert_eq!(report.outcome, Outcome::KernelPanic);
        assert_eq!(report.exit_code, EXIT_KERNEL_PANIC);
        assert!(report
            .panic_line
            .unwrap()
            .contains("Attempted to kill init"));
    }

    #[test]
    fn run_supervise_failure_carries_stderr() {
        let (report, _) = supervise_lines("echo 'bad option' >&2; exit 1", &Watch::default());
        let err = report.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bad option"), "{text}");
        assert!(matches!(err, RunError::QemuFailed { .. }));
    }

    #[test]
    fn run_missing_program_is_spawn_not_found() {
        let err = supervise(
            Command::new("limpet-no-such-program"),
            &Watch::default(),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(&err, RunError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn run_prepare_names_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KERNEL), b"k").unwrap();
        let err = prepare(&RunOptions::new(dir.path())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(INITRAMFS), "{text}");
        assert!(text.contains("limpet build"), "{text}");
        let err = prepare(&RunOptions::new(dir.path().join("nope"))).unwrap_err();
        assert!(matches!(err, RunError::NoDir { .. }));
    }
}
