//! The QEMU backend: the whole image (kernel, initramfs, disk) booted under TCG with the
//! serial console on a pipe.
//!
//! - [`QemuConfig`] is everything the command line depends on and [`qemu_args`] the whole
//!   command line, a pure function of it;
//! - [`run`] makes the configuration for an output directory, starts QEMU and supervises
//!   it ([`crate::supervise`]).
//!
//! Rules this module keeps: KVM is never asked for, so a run behaves the same on every host
//! (and does not hang on hosts whose KVM is unusable); the disk is attached with
//! `snapshot=on` unless [`DiskWrites::Persist`], so a run never modifies the built
//! `disk.img`; the user network is `restrict=on`, and forwards go to loopback only (the
//! command line checks the address).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use limpet_build::outputs::{DISK_IMG, FIRMWARE_VARS, INITRAMFS, KERNEL};
use limpet_build::secureboot::vars::firmware as firmware_files;
use limpet_image::header::Target;

use crate::error::RunError;
use crate::machine::{Firmware, Machine};
use crate::options::{
    DiskWrites, Network, QemuOptions, RtcBase, Watch, DEFAULT_MEMORY_MIB, FORWARD_ADDRESS,
};
use crate::outcome::RunReport;
use crate::qmp::{PowerButton, QmpSocket};
use crate::supervise::supervise;

/// Kernel command line every run starts with (the console device comes before it).
pub const BASE_APPEND: &str = "panic=-1 quiet";

/// Everything the QEMU command line depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConfig {
    /// The image's architecture.
    pub target: Target,
    /// How the guest starts.
    pub firmware: Firmware,
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs (zstd newc cpio).
    pub initramfs: PathBuf,
    /// The GPT disk image.
    pub disk: PathBuf,
    /// The UEFI variable store the firmware runs with ([`Firmware::Uefi`]).
    pub firmware_vars: PathBuf,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Where the guest's disk writes go.
    pub disk_writes: DiskWrites,
    /// Extra kernel command line, appended after the fixed part.
    pub append: Option<String>,
    /// The guest's network.
    pub network: Network,
    /// A QMP control socket, for asking the guest to power down (the ACPI power button).
    pub qmp: Option<PathBuf>,
    /// Where the guest's real-time clock starts; `None`: QEMU's default (now, UTC).
    pub rtc_base: Option<RtcBase>,
    /// The control socket of a running swtpm: the guest gets a TPM 2.0 (TIS interface).
    pub tpm: Option<PathBuf>,
}

impl QemuConfig {
    /// A configuration for the outputs of `limpet build` in `dir`, with defaults.
    pub fn for_dir(dir: &Path, target: Target) -> QemuConfig {
        QemuConfig {
            target,
            firmware: Firmware::default(),
            kernel: dir.join(KERNEL),
            initramfs: dir.join(INITRAMFS),
            disk: dir.join(DISK_IMG),
            firmware_vars: dir.join(FIRMWARE_VARS),
            memory_mib: DEFAULT_MEMORY_MIB,
            disk_writes: DiskWrites::Discard,
            append: None,
            network: Network::None,
            qmp: None,
            rtc_base: None,
            tpm: None,
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

fn push_strs(args: &mut Vec<OsString>, items: &[&str]) {
    args.extend(items.iter().map(OsString::from));
}

/// The arguments of the QEMU program ([`Machine::program`]) for `config`.
pub fn qemu_args(config: &QemuConfig) -> Vec<OsString> {
    let machine = config.machine();
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&[
        "-machine",
        machine.machine_arg(config.firmware),
        "-cpu",
        machine.cpu,
    ]);
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
    if let Some(base) = &config.rtc_base {
        args.push("-rtc".into());
        args.push(format!("base={}", base.as_str()).into());
    }
    if let Some(ctrl) = &config.tpm {
        let mut chardev = OsString::from("socket,id=chrtpm,path=");
        chardev.push(qemu_option_value(ctrl.as_os_str()));
        args.push("-chardev".into());
        args.push(chardev);
        push_strs(&mut args, &["-tpmdev", "emulator,id=tpm0,chardev=chrtpm"]);
        // x86's TIS at its fixed ISA address; the arm virt board's sysbus variant.
        let device = match config.target {
            Target::X86_64 => "tpm-tis,tpmdev=tpm0",
            Target::Aarch64 => "tpm-tis-device,tpmdev=tpm0",
        };
        push_strs(&mut args, &["-device", device]);
    }
    if let Some(qmp) = &config.qmp {
        let mut value = OsString::from("unix:");
        value.push(qemu_option_value(qmp.as_os_str()));
        value.push(",server=on,wait=off");
        args.push("-qmp".into());
        args.push(value);
    }
    let mut drive = OsString::from("file=");
    drive.push(qemu_option_value(config.disk.as_os_str()));
    drive.push(",if=virtio,format=raw");
    if config.disk_writes == DiskWrites::Discard {
        drive.push(",snapshot=on");
    }
    args.push("-drive".into());
    args.push(drive);
    // The hardware watchdog the loader arms and PID 1 pets; when it fires the machine
    // resets (and with `-no-reboot`, QEMU exits, as after a panic).
    push_watchdog(&mut args);
    // A hardware RNG (entropy from the host's RNG): the firmware's EFI_RNG_PROTOCOL
    // seeds the kernel through the EFI stub, and the kernel's virtio-rng driver feeds its
    // RNG, so PID 1's first-boot identity key does not wait for jitter entropy.
    push_rng(&mut args);
    // How the guest gets to its kernel: the firmware's arguments come last.
    match config.firmware {
        Firmware::Uefi => {
            let files = firmware_files(config.target);
            if config.target == Target::X86_64 {
                // Only SMM code may write the flash: the OS cannot rewrite db or turn
                // Secure Boot off.
                args.extend(
                    ["-global", "driver=cfi.pflash01,property=secure,value=on"].map(OsString::from),
                );
            }
            let mut code = OsString::from("if=pflash,format=raw,unit=0,readonly=on,file=");
            code.push(qemu_option_value(OsStr::new(files.code)));
            let mut vars = OsString::from("if=pflash,format=raw,unit=1,file=");
            vars.push(qemu_option_value(config.firmware_vars.as_os_str()));
            args.extend(["-drive".into(), code, "-drive".into(), vars]);
        }
        Firmware::Direct => {
            args.push("-kernel".into());
            args.push(config.kernel.clone().into_os_string());
            args.push("-initrd".into());
            args.push(config.initramfs.clone().into_os_string());
            args.push("-append".into());
            args.push(config.kernel_cmdline().into());
        }
    }
    args
}

/// The i6300ESB watchdog on the machine's PCI bus (q35 and `virt` alike), its expiry a
/// reset.
fn push_watchdog(args: &mut Vec<OsString>) {
    args.extend(["-device", "i6300esb", "-action", "watchdog=reset"].map(OsString::from));
}

/// A virtio RNG on the machine's PCI bus (q35, pc and `virt` alike), fed by QEMU's
/// built-in backend (the host's `getrandom`).
fn push_rng(args: &mut Vec<OsString>) {
    args.extend(["-device", "virtio-rng-pci"].map(OsString::from));
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
        Network::Tap { ifname } => vec![
            "-netdev".into(),
            format!(
                "tap,id=net0,ifname={},script=no,downscript=no",
                ifname.as_str()
            )
            .into(),
            "-device".into(),
            "virtio-net-pci,netdev=net0".into(),
        ],
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

/// Boots the image in `dir` (already checked, of `target`) in QEMU, handing each console
/// line to `on_line`.
pub fn run(
    dir: &Path,
    target: Target,
    options: &QemuOptions,
    watch: &Watch,
    on_line: &mut dyn FnMut(&str),
) -> Result<RunReport, RunError> {
    if options.memory_mib == 0 {
        return Err(RunError::InvalidOption {
            option: "--memory",
            expected: "at least 1 MiB",
            value: options.memory_mib.to_string(),
        });
    }
    let mut config = QemuConfig::for_dir(dir, target);
    config.firmware = options.firmware;
    // The firmware writes its variables (boot entries, at least): a run gets a copy of
    // the build's store unless its writes are to persist, as the disk's are.
    let _vars_copy = match (options.firmware, options.disk_writes) {
        (Firmware::Uefi, DiskWrites::Discard) => {
            let copy = tempfile::Builder::new()
                .prefix("limpet-efivars-")
                .tempfile()
                .map_err(|source| RunError::Io {
                    what: "a copy of the firmware variables",
                    source,
                })?;
            std::fs::copy(&config.firmware_vars, copy.path()).map_err(|source| RunError::Io {
                what: "a copy of the firmware variables",
                source,
            })?;
            config.firmware_vars = copy.path().to_owned();
            Some(copy)
        }
        _ => None,
    };
    config.memory_mib = options.memory_mib;
    config.append = options.append.clone();
    config.disk_writes = options.disk_writes;
    config.network = options.network.clone();
    config.rtc_base = options.rtc_base.clone();
    // swtpm for the run's length: ended by its PID when `_tpm` drops, after QEMU.
    let _tpm = match &options.tpm {
        Some(state) => {
            let tpm = crate::swtpm::Swtpm::start(state)?;
            config.tpm = Some(tpm.ctrl().to_owned());
            Some(tpm)
        }
        None => None,
    };
    // The QMP socket only when there is a button to press; removed when the run ends.
    let qmp = if options.powerdown_on.is_empty() {
        None
    } else {
        Some(QmpSocket::new()?)
    };
    let button = qmp.as_ref().map(|socket| {
        let path = socket.path();
        config.qmp = Some(path.clone());
        PowerButton::new(options.powerdown_on.clone(), path)
    });
    let machine = config.machine();
    let args = qemu_args(&config);
    tracing::info!(
        "booting {} ({}) in {} under TCG",
        dir.display(),
        config.target,
        machine.program
    );
    tracing::debug!("{} {:?}", machine.program, args);
    let mut command = Command::new(machine.program);
    command.args(&args);
    let input = options
        .type_on
        .clone()
        .map(|(after, text)| crate::supervise::ConsoleInput::new(after, text));
    let result = supervise(command, watch, button, input, on_line);
    drop(qmp);
    result.map_err(|err| err.missing_from(machine.package))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::options::{Forward, TapName};

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn config(target: Target) -> QemuConfig {
        QemuConfig::for_dir(Path::new("/images/out"), target)
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
    fn a_tap_network_names_the_interface_and_runs_no_script() {
        let mut c = config(Target::X86_64);
        c.network = Network::Tap {
            ifname: TapName::parse("tap0").unwrap(),
        };
        let args = strings(&qemu_args(&c));
        let i = args.iter().position(|a| a == "-netdev").unwrap();
        assert_eq!(
            args[i..i + 4],
            [
                "-netdev",
                "tap,id=net0,ifname=tap0,script=no,downscript=no",
                "-device",
                "virtio-net-pci,netdev=net0"
            ]
        );
        assert!(!args.iter().any(|a| a == "-nic"));
        for bad in [
            "",
            "tap0,script=/x",
            "a/b",
            "..",
            "sixteen-chars-xx",
            "tap 0",
        ] {
            let e = TapName::parse(bad).unwrap_err();
            assert_eq!(e.value, bad);
            assert!(
                e.to_string().contains("not a network interface name"),
                "{e}"
            );
        }
        assert_eq!(
            TapName::parse("lt123-tap.0").unwrap().as_str(),
            "lt123-tap.0"
        );
    }

    fn direct(target: Target) -> QemuConfig {
        QemuConfig {
            firmware: Firmware::Direct,
            ..config(target)
        }
    }

    #[test]
    fn the_default_boots_the_chain_through_secure_boot_firmware() {
        let args = strings(&qemu_args(&config(Target::X86_64)));
        let expected_tail = [
            "-drive",
            "file=/images/out/disk.img,if=virtio,format=raw,snapshot=on",
            "-device",
            "i6300esb",
            "-action",
            "watchdog=reset",
            "-device",
            "virtio-rng-pci",
            "-global",
            "driver=cfi.pflash01,property=secure,value=on",
            "-drive",
            "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
            "-drive",
            "if=pflash,format=raw,unit=1,file=/images/out/efivars.fd",
        ];
        assert_eq!(args[..2], ["-machine", "q35,smm=on,accel=tcg"]);
        assert_eq!(args[args.len() - expected_tail.len()..], expected_tail);
        for direct_only in ["-kernel", "-initrd", "-append"] {
            assert!(!args.iter().any(|a| a == direct_only), "{args:?}");
        }
        let args = strings(&qemu_args(&config(Target::Aarch64)));
        assert_eq!(args[..2], ["-machine", "virt,accel=tcg"]);
        assert!(!args.iter().any(|a| a == "-global"), "{args:?}");
        assert!(args.contains(
            &"if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd"
                .to_owned()
        ));
    }

    #[test]
    fn run_args_x86_64() {
        let args = strings(&qemu_args(&direct(Target::X86_64)));
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
            "-drive",
            "file=/images/out/disk.img,if=virtio,format=raw,snapshot=on",
            "-device",
            "i6300esb",
            "-action",
            "watchdog=reset",
            "-device",
            "virtio-rng-pci",
            "-kernel",
            "/images/out/kernel",
            "-initrd",
            "/images/out/initramfs.cpio",
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
        let c = direct(Target::Aarch64);
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
        c.disk_writes = DiskWrites::Persist;
        let args = strings(&qemu_args(&c));
        let drive = args.iter().position(|a| a == "-drive").unwrap();
        assert_eq!(
            args[drive + 1],
            "file=/images/out/disk.img,if=virtio,format=raw"
        );
    }

    #[test]
    fn run_args_extra_append_and_memory() {
        let mut c = direct(Target::X86_64);
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
    fn the_qmp_socket_goes_on_the_command_line() {
        let mut c = config(Target::X86_64);
        c.qmp = Some(PathBuf::from("/tmp/a,b/qmp.sock"));
        let args = strings(&qemu_args(&c));
        let i = args.iter().position(|a| a == "-qmp").unwrap();
        assert_eq!(args[i + 1], "unix:/tmp/a,,b/qmp.sock,server=on,wait=off");
    }

    /// `--rtc-base` becomes `-rtc base=`, once; without it there is no `-rtc` (QEMU's
    /// clock starts at the host's time). Values QEMU would not take are refused by name.
    #[test]
    fn the_guest_clock_starts_where_asked() {
        let mut c = config(Target::X86_64);
        assert!(!strings(&qemu_args(&c)).contains(&"-rtc".to_owned()));
        for value in ["2001-01-01T00:00:00", "2055-06-30"] {
            c.rtc_base = Some(RtcBase::parse(value).unwrap());
            let args = strings(&qemu_args(&c));
            let i = args.iter().position(|a| a == "-rtc").unwrap();
            assert_eq!(args[i + 1], format!("base={value}"));
            assert_eq!(args.iter().filter(|a| *a == "-rtc").count(), 1);
        }
        for bad in [
            "",
            "now",
            "2001-1-01",
            "2001-13-01",
            "2001-01-32",
            "2001-01-01T24:00:00",
            "2001-01-01T00:60:00",
            "2001-01-01 00:00:00",
            "2001-01-01T00:00",
            "2001-01-01T00:00:00,driftfix=slew",
            "+2001-01-01",
        ] {
            let e = RtcBase::parse(bad).unwrap_err();
            assert_eq!(e.value, bad);
            assert!(e.to_string().contains("YYYY-MM-DDTHH:MM:SS"), "{e}");
        }
    }

    /// `--tpm`: QEMU's TPM emulator on swtpm's control socket, the TIS device of the board.
    #[test]
    fn a_tpm_is_the_emulator_on_swtpms_socket() {
        let mut c = config(Target::X86_64);
        assert!(!strings(&qemu_args(&c)).iter().any(|a| a.contains("tpm")));
        c.tpm = Some(PathBuf::from("/tmp/s,w/ctrl.sock"));
        let args = strings(&qemu_args(&c));
        let at = args.iter().position(|a| a == "-chardev").unwrap();
        assert_eq!(
            args[at..at + 6],
            [
                "-chardev",
                "socket,id=chrtpm,path=/tmp/s,,w/ctrl.sock",
                "-tpmdev",
                "emulator,id=tpm0,chardev=chrtpm",
                "-device",
                "tpm-tis,tpmdev=tpm0"
            ]
        );
        let mut c = config(Target::Aarch64);
        c.tpm = Some(PathBuf::from("/tmp/ctrl.sock"));
        assert!(strings(&qemu_args(&c)).contains(&"tpm-tis-device,tpmdev=tpm0".to_owned()));
    }

    #[test]
    fn both_targets_get_the_watchdog_that_resets() {
        for target in [Target::X86_64, Target::Aarch64] {
            let args = strings(&qemu_args(&config(target)));
            let i = args.iter().position(|a| a == "i6300esb").unwrap();
            assert_eq!(args[i - 1], "-device");
            let i = args.iter().position(|a| a == "watchdog=reset").unwrap();
            assert_eq!(args[i - 1], "-action");
        }
    }

    /// Both targets, chain or direct, get the virtio RNG that seeds the kernel's RNG.
    #[test]
    fn both_targets_get_a_virtio_rng() {
        for target in [Target::X86_64, Target::Aarch64] {
            for c in [config(target), direct(target)] {
                let args = strings(&qemu_args(&c));
                let i = args.iter().position(|a| a == "virtio-rng-pci").unwrap();
                assert_eq!(args[i - 1], "-device");
            }
        }
    }
}
