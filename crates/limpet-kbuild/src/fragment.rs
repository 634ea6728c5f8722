//! The configuration of the kernel Limpet builds for a device: which options it asks for,
//! and why, each in one reviewable line.
//!
//! The config is made by the kernel's own `allnoconfig` with these lines as
//! `KCONFIG_ALLCONFIG`: everything the lines do not ask for is off. The lines come, in
//! this order, from
//! 1. [`board`]: the target board's drivers and the basics every device boots with (for
//!    QEMU's q35 and `virt` machines: virtio on PCI, the serial console, the EFI stub,
//!    the power button, the i6300ESB watchdog) and the options the others depend on;
//! 2. `limpet_kconfig::needs::of(manifest)`: what the device's tasks and PID 1 need (the
//!    sandbox, dm-verity, the network only when a task has network rules), built in;
//! 3. `limpet_kconfig::checks::HARDENING`: the self-protection settings, each as far as
//!    this compiler allows ([`Strength::BestEffort`]);
//! 4. `limpet_kconfig::checks::ATTACK_SURFACE`: what stays off.
//!
//! Rules this module keeps:
//! - Pure: it reads only the manifest; the tables are data.
//! - The kernel has no loadable modules (`CONFIG_MODULES` off): every driver the device
//!   uses is built in, nothing can be loaded at run time, and the module-signing
//!   hardening checks do not apply.
//! - A board or need line is [`Strength::Required`]: a config where it did not land is a
//!   build error naming the option. A hardening line the toolchain cannot honour (a GCC
//!   plugin, Clang-only features) is reported, not an error.
//! - When lines disagree, the first one wins: a need the manifest brings beats an
//!   attack-surface "off".

use std::collections::BTreeSet;

use limpet_kconfig::checks::{ATTACK_SURFACE, HARDENING};
use limpet_kconfig::{Arch, Check, KernelConfig, Want};
use limpet_manifest::{Manifest, Target};

/// How much a line must hold in the finished config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    /// The device does not boot or run without it: missing is an error.
    Required,
    /// Hardening: as far as the toolchain allows; missing is reported.
    BestEffort,
}

/// One line of the fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The option, its wanted value and why.
    pub check: Check,
    /// Whether it must land.
    pub strength: Strength,
}

use limpet_kconfig::needs::need as base;
use Arch::{Aarch64, Any, X86_64};
use Want::{Is, Off, On};

/// The board and the basics, for QEMU's q35 (x86_64) and `virt` (aarch64) machines.
#[rustfmt::skip]
pub const BOARD: &[Check] = &[
    base("MODULES", Off, Any, "every driver is built in: nothing can be loaded at run time"),
    base("EXPERT", On, Any, "without it, options such as IO_URING, KALLSYMS or the x86 vsyscall page are always on"),
    base("SECCOMP", On, Any, "SECCOMP_FILTER is under it"),
    base("PROC_SYSCTL", On, Any, "PID 1 writes the hardening sysctls under /proc/sys"),
    base("FILE_LOCKING", On, Any, "flock and fcntl locks, which tasks may use"),
    base("ADVISE_SYSCALLS", On, Any, "madvise, which memory allocators use"),
    base("64BIT", On, Any, "a 64-bit kernel"),
    base("SMP", On, Any, "boards with more than one core"),
    base("MULTIUSER", On, Any, "tasks run as their own users"),
    base("PRINTK", On, Any, "kernel messages on the console"),
    base("TTY", On, Any, "the serial console"),
    base("BINFMT_ELF", On, Any, "PID 1 and the tasks are static ELF executables"),
    base("PROC_FS", On, Any, "PID 1 reads /proc (cmdline, its own memory)"),
    base("SYSFS", On, Any, "PID 1 finds disks and input devices in /sys"),
    base("FUTEX", On, Any, "Rust's standard library locks"),
    base("EPOLL", On, Any, "tasks' event loops"),
    base("SIGNALFD", On, Any, "PID 1 takes signals through a signalfd"),
    base("TIMERFD", On, Any, "tasks' timers"),
    base("EVENTFD", On, Any, "tasks' event loops"),
    base("SHMEM", On, Any, "tmpfs and shared memory"),
    base("POSIX_TIMERS", On, Any, "clocks and timers of the standard library"),
    base("RD_ZSTD", On, Any, "the initramfs is zstd-compressed"),
    base("UNIX", On, Any, "the install socket and readiness notes are Unix sockets"),
    base("NET", On, Any, "sockets (Unix sockets, loopback in every task's namespace)"),
    base("BLOCK", On, Any, "the disk"),
    base("BLK_DEV", On, Any, "block device drivers"),
    base("PCI", On, Any, "QEMU's virtio devices and the watchdog sit on PCI"),
    base("VIRTIO_MENU", On, Any, "virtio drivers"),
    base("VIRTIO_PCI", On, Any, "QEMU's virtio devices are virtio-pci"),
    base("EFI", On, Any, "started by Limpet's UEFI loader"),
    base("EFI_STUB", On, Any, "the kernel is its own EFI application, signed with db"),
    base("INPUT", On, Any, "the power button is an input device"),
    base("INPUT_EVDEV", On, Any, "PID 1 reads the power button through evdev"),
    base("WATCHDOG", On, Any, "the hardware watchdog the loader arms and PID 1 pets"),
    base("WATCHDOG_CORE", On, Any, "/dev/watchdog0"),
    base("I6300ESB_WDT", On, Any, "QEMU's i6300ESB watchdog"),
    base("RTC_CLASS", On, Any, "the real-time clock"),
    base("HW_RANDOM", On, Any, "hardware RNGs feed the kernel's RNG (HW_RANDOM_VIRTIO is under it)"),
    base("HW_RANDOM_VIRTIO", On, Any, "QEMU's virtio-rng: the RNG is ready at once, and PID 1's first-boot identity key does not wait seconds in getrandom for jitter entropy"),
    base("RANDOM_TRUST_BOOTLOADER", On, Any, "the seed the EFI stub takes from the firmware's EFI_RNG_PROTOCOL counts as entropy (Linux's default; allnoconfig would turn it off)"),
    base("MISC_FILESYSTEMS", On, Any, "squashfs is under it"),
    base("MD", On, Any, "device-mapper is under it"),
    base("CRYPTO_CRC32C", On, Any, "ext4's metadata checksums"),
    base("STACKPROTECTOR", On, Any, "STACKPROTECTOR_STRONG depends on it"),
    base("RANDOMIZE_KSTACK_OFFSET", On, Any, "RANDOMIZE_KSTACK_OFFSET_DEFAULT depends on it"),
    base("CPU_MITIGATIONS", On, X86_64, "PAGE_TABLE_ISOLATION, RETPOLINE and the other CPU mitigations are under it (SPECULATION_MITIGATIONS before the 6.1 stable backports)"),
    base("SECURITY", On, Any, "Landlock, lockdown and Yama are LSMs"),
    base("SYSVIPC", On, Any, "IPC_NS depends on it"),
    base("LSM", Is("landlock,lockdown,yama"), Any, "the LSMs active from boot, in order"),
    base("ACPI", On, X86_64, "q35's devices and power button are described by ACPI"),
    base("ACPI_BUTTON", On, X86_64, "the ACPI power button, which PID 1 turns into a clean shutdown"),
    base("SERIAL_8250", On, X86_64, "the PC serial port"),
    base("SERIAL_8250_CONSOLE", On, X86_64, "console=ttyS0"),
    base("RTC_DRV_CMOS", On, X86_64, "the PC real-time clock"),
    base("KERNEL_ZSTD", On, X86_64, "a bzImage compressed with zstd (fast to unpack)"),
    base("ACPI", On, Aarch64, "under UEFI (AAVMF) the virt board is described by ACPI tables, not a device tree"),
    base("ACPI_BUTTON", On, Aarch64, "the ACPI power button (signalled through the board's Generic Event Device), which PID 1 turns into a clean shutdown"),
    base("RTC_DRV_EFI", On, Aarch64, "under ACPI the real-time clock is read through UEFI runtime services"),
    base("PCI_HOST_GENERIC", On, Aarch64, "the virt board's PCIe host bridge on a device tree (ACPI's is built in with ACPI and PCI)"),
    base("SERIAL_AMBA_PL011", On, Aarch64, "the virt board's UART"),
    base("SERIAL_AMBA_PL011_CONSOLE", On, Aarch64, "console=ttyAMA0"),
    base("GPIOLIB", On, Aarch64, "on a device tree the power button is a GPIO key"),
    base("GPIO_PL061", On, Aarch64, "the virt board's GPIO controller"),
    base("KEYBOARD_GPIO", On, Aarch64, "gpio-keys: the virt board's power button on a device tree (QEMU without UEFI)"),
    base("INPUT_KEYBOARD", On, Aarch64, "gpio-keys is a keyboard driver"),
    base("RTC_DRV_PL031", On, Aarch64, "the virt board's real-time clock on a device tree"),
    base("ARM64_TAGGED_ADDR_ABI", On, Aarch64, "ARM64_MTE depends on it (a process passes tagged pointers to system calls only after opting in)"),
];

/// The CPU vulnerability mitigations that Linux turns on by default: `allnoconfig`
/// would turn them off. Best effort, like the hardening checks (some need a newer
/// compiler or a feature the kernel leaves out).
#[rustfmt::skip]
pub const MITIGATIONS: &[Check] = &[
    base("RETHUNK", On, X86_64, "Retbleed: returns go through a thunk"),
    base("CPU_UNRET_ENTRY", On, X86_64, "Retbleed on AMD: untrained return thunk at kernel entry"),
    base("CPU_IBPB_ENTRY", On, X86_64, "Retbleed: branch predictor barrier at kernel entry"),
    base("CPU_IBRS_ENTRY", On, X86_64, "Retbleed on Intel: IBRS at kernel entry"),
    base("CPU_SRSO", On, X86_64, "Speculative Return Stack Overflow (AMD Inception)"),
    base("MITIGATION_RFDS", On, X86_64, "Register File Data Sampling"),
    base("MITIGATION_SPECTRE_BHI", On, X86_64, "Spectre branch history injection"),
    base("MITIGATION_ITS", On, X86_64, "Indirect Target Selection"),
    base("MITIGATION_TSA", On, X86_64, "Transient Scheduler Attacks"),
    base("MITIGATE_SPECTRE_BRANCH_HISTORY", On, Aarch64, "Spectre-BHB: the branch history is cleared at kernel entry on affected cores"),
];

/// Lines the needs of [`limpet_kconfig::needs`] depend on when the network is in.
#[rustfmt::skip]
const NETWORK_BASE: &[Check] = &[
    base("IPV6", On, Any, "NF_TABLES_INET depends on it (the ruleset drops IPv6)"),
    base("NETDEVICES", On, Any, "network drivers are under it"),
    base("NET_CORE", On, Any, "network drivers are under it"),
    base("NETFILTER_ADVANCED", On, Any, "NF_CONNTRACK_MARK depends on it"),
    base("CGROUP_NET_CLASSID", On, Any, "selects SOCK_CGROUP_DATA, which the socket-cgroup match needs (without BPF)"),
    base("PACKET", On, Any, "the DHCP client's raw socket"),
];

/// Hardening checks that do not apply to Limpet's kernel, because what they harden is
/// not in it at all (an option name, or the start of several, and why).
pub const MOOT: &[(&str, &str)] = &[
    (
        "MODULE_",
        "module signing: the kernel has no loadable modules",
    ),
    (
        "STRICT_MODULE_RWX",
        "module memory: the kernel has no loadable modules",
    ),
    ("BPF_", "BPF hardening: the bpf system call is off"),
    ("STRICT_DEVMEM", "/dev/mem restrictions: /dev/mem is off"),
    ("IO_STRICT_DEVMEM", "/dev/mem restrictions: /dev/mem is off"),
    (
        "INTEL_IOMMU_DEFAULT_ON",
        "the Intel IOMMU: QEMU's q35 has none unless asked",
    ),
];

/// The architecture of a target, as the checks name it.
pub fn arch(target: Target) -> Arch {
    match target {
        Target::X86_64 => Arch::X86_64,
        Target::Aarch64 => Arch::Aarch64,
    }
}

/// The fragment's lines for `manifest`, in order, each option once.
pub fn lines(manifest: &Manifest) -> Vec<Line> {
    let arch = arch(manifest.device.target);
    let network: &[Check] = if limpet_kconfig::needs::uses_network(manifest) {
        NETWORK_BASE
    } else {
        &[]
    };
    let required = BOARD
        .iter()
        .chain(network)
        .cloned()
        .chain(limpet_kconfig::needs::of(manifest))
        .map(|check| (check, Strength::Required));
    let hardening = HARDENING
        .iter()
        .filter(|c| !MOOT.iter().any(|(option, _)| c.option.starts_with(option)))
        .chain(MITIGATIONS)
        .map(|c| (c.clone(), Strength::BestEffort));
    let off = ATTACK_SURFACE
        .iter()
        .map(|c| (c.clone(), Strength::Required));
    let mut seen = BTreeSet::new();
    required
        .chain(hardening)
        .chain(off)
        .filter(|(c, _)| c.arch.applies_to(Some(arch)))
        .filter(|(c, _)| seen.insert(c.option))
        .map(|(check, strength)| Line { check, strength })
        .collect()
}

/// The fragment's text for `KCONFIG_ALLCONFIG`, one `# why` comment above each line.
pub fn render(lines: &[Line]) -> String {
    let mut out = String::new();
    for line in lines {
        out.push_str("# ");
        out.push_str(line.check.reason);
        out.push('\n');
        out.push_str(&limpet_kconfig::fragment([&line.check]));
    }
    out
}

/// The lines `config` does not meet, required ones first: (required, best effort).
pub fn unmet<'a>(lines: &'a [Line], config: &KernelConfig) -> (Vec<&'a Line>, Vec<&'a Line>) {
    let missing = |strength| {
        lines
            .iter()
            .filter(move |l| l.strength == strength)
            .filter(|l| !l.check.want.accepts(l.check.lookup(config).1))
            .collect()
    };
    (missing(Strength::Required), missing(Strength::BestEffort))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(target: &str, network: bool) -> Manifest {
        let net = if network {
            "network = \"allowlist\"\n[[task.egress]]\nhost = \"192.0.2.1\"\nports = [443]\n"
        } else {
            ""
        };
        limpet_manifest::parse(
            "limpet.toml",
            &format!(
                "[device]\nname = \"d\"\nversion = \"0.1.0\"\ntarget = \"{target}\"\n\
                 [[task]]\nname = \"t\"\npackage = \"t\"\nmemory = \"8MiB\"\ncpu = \"5%\"\n{net}"
            ),
        )
        .unwrap()
    }

    fn options(lines: &[Line]) -> Vec<&'static str> {
        lines.iter().map(|l| l.check.option).collect()
    }

    #[test]
    fn each_option_once_and_the_first_line_wins() {
        for target in ["x86_64", "aarch64"] {
            let lines = lines(&manifest(target, true));
            let mut sorted = options(&lines);
            sorted.sort_unstable();
            let before = sorted.len();
            sorted.dedup();
            assert_eq!(sorted.len(), before, "{target}");
        }
    }

    #[test]
    fn the_network_comes_only_with_network_rules() {
        let without = options(&lines(&manifest("x86_64", false)));
        let with = options(&lines(&manifest("x86_64", true)));
        for option in ["NF_TABLES", "NFT_SOCKET", "VIRTIO_NET", "IPV6", "PACKET"] {
            assert!(!without.contains(&option), "{option}");
            assert!(with.contains(&option), "{option}");
        }
    }

    #[test]
    fn modules_are_off_and_their_signing_is_not_asked_for() {
        let lines = lines(&manifest("x86_64", false));
        let modules = lines.iter().find(|l| l.check.option == "MODULES").unwrap();
        assert_eq!(
            (modules.check.want, modules.strength),
            (Want::Off, Strength::Required)
        );
        assert!(!options(&lines).iter().any(|o| o.starts_with("MODULE_SIG")));
    }

    #[test]
    fn each_target_gets_its_own_board() {
        let x86 = options(&lines(&manifest("x86_64", false)));
        let arm = options(&lines(&manifest("aarch64", false)));
        assert!(x86.contains(&"SERIAL_8250_CONSOLE") && !x86.contains(&"SERIAL_AMBA_PL011"));
        assert!(arm.contains(&"SERIAL_AMBA_PL011_CONSOLE") && !arm.contains(&"SERIAL_8250"));
        // Both boards come up from UEFI with ACPI tables; only x86 has the PC's RTC.
        assert!(x86.contains(&"ACPI_BUTTON") && arm.contains(&"ACPI_BUTTON"));
        assert!(x86.contains(&"RTC_DRV_CMOS") && !arm.contains(&"RTC_DRV_CMOS"));
    }

    #[test]
    fn a_config_missing_a_need_is_unmet_and_hardening_only_reported() {
        let lines = lines(&manifest("x86_64", false));
        // Everything as asked, except dm-verity (required) and KFENCE (hardening).
        let text: String = lines
            .iter()
            .filter(|l| !matches!(l.check.option, "DM_VERITY" | "KFENCE"))
            .map(|l| limpet_kconfig::fragment([&l.check]))
            .collect();
        let config = KernelConfig::parse(&text).unwrap();
        let (required, best_effort) = unmet(&lines, &config);
        assert_eq!(options_of(&required), ["DM_VERITY"]);
        assert_eq!(options_of(&best_effort), ["KFENCE"]);
    }

    fn options_of(lines: &[&Line]) -> Vec<&'static str> {
        lines.iter().map(|l| l.check.option).collect()
    }

    /// The board, the mitigations and the moot checks as tables, for `docs/kernel.md`.
    #[test]
    fn docs_list_the_board_and_what_is_moot() {
        use limpet_testkit::docs;
        let lines = |checks: &[Check]| {
            let rows = checks.iter().map(|c| {
                vec![
                    format!("`CONFIG_{}`", c.option),
                    format!("`{}`", c.want.describe()),
                    c.arch.name().to_owned(),
                    c.reason.to_owned(),
                ]
            });
            docs::table(&["option", "wanted", "arch", "why"], rows)
        };
        let moot = docs::table(
            &["checks", "why they do not apply"],
            MOOT.iter().map(|(option, why)| {
                // A name ending in `_` is the start of several options.
                let all = if option.ends_with('_') { "*" } else { "" };
                vec![format!("`CONFIG_{option}{all}`"), (*why).to_owned()]
            }),
        );
        let doc = docs::workspace_path("docs/kernel.md");
        for (name, rendered) in [
            ("kernel-board", lines(BOARD)),
            ("kernel-mitigations", lines(MITIGATIONS)),
            ("kernel-moot", moot),
        ] {
            docs::assert_region(&doc, name, file!(), &rendered);
        }
    }

    #[test]
    fn the_rendered_fragment_says_why_above_each_line() {
        let lines = lines(&manifest("aarch64", false));
        let text = render(&lines);
        assert!(text.contains(
            "# every driver is built in: nothing can be loaded at run time\n# CONFIG_MODULES is not set\n"
        ));
        assert!(text.contains("CONFIG_LSM=\"landlock,lockdown,yama\"\n"));
    }
}
