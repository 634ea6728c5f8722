//! The checks, in one reviewable place: each names its option, the value wanted, where the
//! recommendation comes from and why.
//!
//! Rules this module keeps:
//! - [`HARDENING`] holds self-protection settings, [`ATTACK_SURFACE`] the options that should
//!   be off unless a device needs them; what a manifest needs is in [`crate::needs`].
//! - A check names its source honestly: [`Source::Kspp`] only for the Kernel Self Protection
//!   Project's recommended settings, [`Source::KernelDocs`] for the kernel's own
//!   self-protection documentation and defaults, [`Source::Limpet`] for Limpet's choices.
//!   `kernel-hardening-checker` (a13xp0p0v) was the reference they were compared with.
//! - A check for one architecture says so ([`Arch`]); it is skipped on the other.
//! - An option the `.config` does not mention is not set (see [`crate::config`]).

use serde::Serialize;

use crate::config::{KernelConfig, Value};

/// The value a check wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Want {
    /// `=y`: built in.
    On,
    /// `=y` or `=m`: a module will do (the initramfs carries modules).
    Available,
    /// Not set, or not mentioned.
    Off,
    /// Exactly this value, as written after `=` (a number, or a string without quotes).
    Is(&'static str),
    /// A comma-separated string option that lists this entry (e.g. `CONFIG_LSM`).
    Lists(&'static str),
}

impl Want {
    /// Whether `value` (`None`: not mentioned) satisfies this.
    pub fn accepts(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Want::On, Some(Value::Yes)) => true,
            (Want::Available, Some(Value::Yes | Value::Module)) => true,
            (Want::Off, None | Some(Value::No)) => true,
            (Want::Is(want), Some(Value::Number(n))) => n == want,
            (Want::Is(want), Some(Value::Str(s))) => s == want,
            (Want::Lists(entry), Some(Value::Str(s))) => s.split(',').any(|e| e.trim() == *entry),
            _ => false,
        }
    }

    /// How the wanted value reads in a table: `y`, `y or m`, `is not set`, `65536`,
    /// `lists landlock`.
    pub fn describe(&self) -> String {
        match self {
            Want::On => "y".to_owned(),
            Want::Available => "y or m".to_owned(),
            Want::Off => "is not set".to_owned(),
            Want::Is(v) => (*v).to_owned(),
            Want::Lists(entry) => format!("lists {entry}"),
        }
    }
}

/// The `.config` lines that meet `checks`: built in (`=y`) where a module would also do,
/// and a listing string option holding only the wanted entry. The start of a config derived
/// from a manifest's needs, and a known-good config for tests.
pub fn fragment<'a>(checks: impl IntoIterator<Item = &'a Check>) -> String {
    let mut out = String::new();
    for c in checks {
        let line = match c.want {
            Want::On | Want::Available => format!("CONFIG_{}=y", c.option),
            Want::Off => format!("# CONFIG_{} is not set", c.option),
            // A number as it is; any other value is a string, which .config quotes.
            Want::Is(v) if is_number(v) => format!("CONFIG_{}={v}", c.option),
            Want::Is(v) => format!("CONFIG_{}=\"{v}\"", c.option),
            Want::Lists(entry) => format!("CONFIG_{}=\"{entry}\"", c.option),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Whether a `.config` value is a number (decimal, or hex with `0x`), not a string.
fn is_number(v: &str) -> bool {
    let digits = v.strip_prefix("0x").unwrap_or(v);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_hexdigit())
        && (v.starts_with("0x") || v.bytes().all(|b| b.is_ascii_digit()))
}

/// Where a check's recommendation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The Kernel Self Protection Project's recommended settings
    /// (kernsec.org/wiki/index.php/Kernel_Self_Protection_Project/Recommended_Settings).
    Kspp,
    /// The kernel's own self-protection documentation
    /// (Documentation/security/self-protection.rst) and its security defaults.
    KernelDocs,
    /// Limpet: what its sandbox and boot need, or what a single-purpose device turns off.
    Limpet,
}

impl Source {
    /// Every source, in report order.
    pub const ALL: [Source; 3] = [Source::Kspp, Source::KernelDocs, Source::Limpet];

    /// The source's name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Source::Kspp => "KSPP",
            Source::KernelDocs => "kernel docs",
            Source::Limpet => "Limpet",
        }
    }
}

/// The architectures a check applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// Every architecture.
    Any,
    /// 64-bit x86 only (`CONFIG_X86_64=y`).
    X86_64,
    /// 64-bit Arm only (`CONFIG_ARM64=y`).
    Aarch64,
}

impl Arch {
    /// The architecture a `.config` was made for, from `CONFIG_X86_64` or `CONFIG_ARM64`.
    pub fn of(config: &KernelConfig) -> Option<Arch> {
        if config.get("X86_64") == Some(&Value::Yes) {
            Some(Arch::X86_64)
        } else if config.get("ARM64") == Some(&Value::Yes) {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    /// Whether a check for `self` applies to a kernel for `kernel` (unknown: only
    /// [`Arch::Any`] checks apply).
    pub fn applies_to(&self, kernel: Option<Arch>) -> bool {
        *self == Arch::Any || Some(*self) == kernel
    }

    /// The name in tables: `any`, `x86_64`, `aarch64`.
    pub fn name(&self) -> &'static str {
        match self {
            Arch::Any => "any",
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

/// One check of one option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The option, without `CONFIG_`.
    pub option: &'static str,
    /// The value wanted.
    pub want: Want,
    /// Where the recommendation comes from.
    pub source: Source,
    /// The architectures it applies to.
    pub arch: Arch,
    /// Why, in one line.
    pub reason: &'static str,
    /// The option's name in other kernel releases, when it was renamed (Linux 6.9 moved
    /// the x86 mitigations under `MITIGATION_`): a config that uses that name is judged by
    /// it, so a newer kernel does not fail a check it meets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed: Option<&'static str>,
}

impl Check {
    /// The same check, with the option's name in other kernel releases.
    const fn renamed(self, name: &'static str) -> Check {
        Check {
            renamed: Some(name),
            ..self
        }
    }

    /// The name `config` knows this option by, and its value there: the option's own
    /// name when the config mentions it, else its renamed one when the config mentions
    /// that, else the option's own name and `None`.
    pub fn lookup<'c>(&self, config: &'c KernelConfig) -> (&'static str, Option<&'c Value>) {
        if let Some(value) = config.get(self.option) {
            return (self.option, Some(value));
        }
        match self
            .renamed
            .and_then(|name| config.get(name).map(|v| (name, v)))
        {
            Some((name, value)) => (name, Some(value)),
            None => (self.option, None),
        }
    }
}

const fn check(
    option: &'static str,
    want: Want,
    source: Source,
    arch: Arch,
    reason: &'static str,
) -> Check {
    Check {
        option,
        want,
        source,
        arch,
        reason,
        renamed: None,
    }
}

use Arch::{Aarch64, Any, X86_64};
use Source::{KernelDocs, Kspp, Limpet};
use Want::{Is, Off, On};

/// Self-protection settings: what makes a kernel bug harder to exploit.
#[rustfmt::skip]
pub const HARDENING: &[Check] = &[
    // The kernel's own defaults and self-protection documentation.
    check("BUG", On, KernelDocs, Any, "detected kernel bugs stop the faulting task instead of continuing"),
    check("STACKPROTECTOR_STRONG", On, KernelDocs, Any, "stack canaries in every function with local arrays or address-taken locals"),
    check("STRICT_KERNEL_RWX", On, KernelDocs, Any, "kernel code is read-only and data is not executable"),
    check("STRICT_MODULE_RWX", On, KernelDocs, Any, "module code is read-only and module data is not executable"),
    check("VMAP_STACK", On, KernelDocs, Any, "kernel stacks have guard pages: an overflow faults instead of overwriting memory"),
    check("RANDOMIZE_BASE", On, KernelDocs, Any, "KASLR: the kernel's address differs per boot"),
    check("INIT_STACK_ALL_ZERO", On, KernelDocs, Any, "stack variables start zeroed, so no stale data leaks through them"),
    check("IOMMU_SUPPORT", On, KernelDocs, Any, "devices can be kept from DMA into arbitrary memory"),
    check("SECCOMP_FILTER", On, KernelDocs, Any, "processes can restrict their own system calls"),
    check("RANDOMIZE_MEMORY", On, KernelDocs, X86_64, "the kernel's memory regions move per boot"),
    check("DEBUG_WX", On, KernelDocs, Any, "warns at boot about any writable and executable kernel mapping"),
    check("PAGE_TABLE_ISOLATION", On, KernelDocs, X86_64, "Meltdown: user space cannot map kernel memory").renamed("MITIGATION_PAGE_TABLE_ISOLATION"),
    check("RETPOLINE", On, KernelDocs, X86_64, "Spectre v2: indirect branches cannot be steered").renamed("MITIGATION_RETPOLINE"),
    check("X86_UMIP", On, KernelDocs, X86_64, "user space cannot read descriptor table addresses"),
    check("X86_KERNEL_IBT", On, KernelDocs, X86_64, "indirect branches may only land on marked targets"),
    check("UNMAP_KERNEL_AT_EL0", On, KernelDocs, Aarch64, "Meltdown: the kernel is unmapped while user space runs"),
    check("ARM64_PTR_AUTH_KERNEL", On, KernelDocs, Aarch64, "return addresses are signed (pointer authentication)"),
    check("ARM64_BTI_KERNEL", On, KernelDocs, Aarch64, "indirect branches may only land on marked targets"),
    check("RODATA_FULL_DEFAULT_ENABLED", On, KernelDocs, Aarch64, "the linear map's copy of read-only data is read-only too"),
    check("ARM64_PAN", On, KernelDocs, Aarch64, "Privileged Access Never: the kernel cannot touch user memory outside its user-copy functions"),
    // KSPP recommended settings.
    check("BUG_ON_DATA_CORRUPTION", On, Kspp, Any, "a corrupted kernel list or structure stops the kernel instead of being used"),
    check("SLAB_FREELIST_HARDENED", On, Kspp, Any, "heap free-list pointers are obfuscated and checked"),
    check("SLAB_FREELIST_RANDOM", On, Kspp, Any, "heap allocations come out in a random order"),
    check("SLAB_MERGE_DEFAULT", Off, Kspp, Any, "caches are not merged, so an overflow stays in objects of its own type"),
    check("SHUFFLE_PAGE_ALLOCATOR", On, Kspp, Any, "page allocations come out in a random order"),
    check("FORTIFY_SOURCE", On, Kspp, Any, "string and memory functions check their buffer sizes"),
    check("HARDENED_USERCOPY", On, Kspp, Any, "copies to and from user space stay inside the kernel object"),
    check("HARDENED_USERCOPY_FALLBACK", Off, Kspp, Any, "a usercopy outside the allowed region is refused, not just logged"),
    check("DEBUG_LIST", On, Kspp, Any, "kernel linked lists are checked for corruption"),
    check("DEBUG_SG", On, Kspp, Any, "scatter-gather tables are checked for corruption"),
    check("DEBUG_CREDENTIALS", On, Kspp, Any, "credential structures are checked for corruption"),
    check("DEBUG_NOTIFIERS", On, Kspp, Any, "notifier callbacks must point into kernel code"),
    check("DEBUG_VIRTUAL", On, Kspp, Any, "address translations are checked"),
    check("SCHED_STACK_END_CHECK", On, Kspp, Any, "a kernel stack overrun is caught at schedule time"),
    check("INIT_ON_ALLOC_DEFAULT_ON", On, Kspp, Any, "heap and page allocations start zeroed"),
    check("INIT_ON_FREE_DEFAULT_ON", On, Kspp, Any, "freed memory is zeroed, so its contents do not linger"),
    check("SECURITY_LOCKDOWN_LSM", On, Kspp, Any, "the lockdown LSM can keep root from modifying the running kernel"),
    check("SECURITY_LOCKDOWN_LSM_EARLY", On, Kspp, Any, "lockdown takes effect before the first user process"),
    check("LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY", On, Kspp, Any, "lockdown is always on, in its strictest mode"),
    check("SECURITY_YAMA", On, Kspp, Any, "ptrace is limited to a process's descendants"),
    check("SECURITY_DMESG_RESTRICT", On, Kspp, Any, "the kernel log is for privileged readers only"),
    check("STATIC_USERMODEHELPER", On, Kspp, Any, "the kernel can start only one fixed user-space helper"),
    check("MODULE_SIG", On, Kspp, Any, "kernel modules carry signatures"),
    check("MODULE_SIG_FORCE", On, Kspp, Any, "unsigned modules are refused"),
    check("MODULE_SIG_ALL", On, Kspp, Any, "every module is signed at build"),
    check("MODULE_SIG_SHA512", On, Kspp, Any, "module signatures use SHA-512"),
    check("KFENCE", On, Kspp, Any, "samples heap allocations to catch memory errors in production"),
    check("RANDOMIZE_KSTACK_OFFSET_DEFAULT", On, Kspp, Any, "each system call's kernel stack starts at a random offset"),
    check("ZERO_CALL_USED_REGS", On, Kspp, Any, "registers are zeroed on function return, which breaks ROP gadgets"),
    check("BPF_JIT_ALWAYS_ON", On, Kspp, Any, "no BPF interpreter for Spectre gadgets"),
    check("BPF_UNPRIV_DEFAULT_OFF", On, Kspp, Any, "unprivileged BPF is off unless an administrator enables it"),
    check("STRICT_DEVMEM", On, Kspp, Any, "/dev/mem, if present, cannot reach RAM"),
    check("IO_STRICT_DEVMEM", On, Kspp, Any, "/dev/mem, if present, cannot reach device memory in use"),
    check("DEFAULT_MMAP_MIN_ADDR", Is("65536"), Kspp, Any, "user space cannot map the low pages a NULL dereference hits"),
    check("RANDSTRUCT_FULL", On, Kspp, Any, "the layout of sensitive kernel structures is randomized per build"),
    check("INTEL_IOMMU_DEFAULT_ON", On, Kspp, X86_64, "the Intel IOMMU is on from boot"),
    check("SHADOW_CALL_STACK", On, Kspp, Aarch64, "return addresses are kept on a separate stack"),
    check("ARM64_SW_TTBR0_PAN", On, Kspp, Aarch64, "PAN emulated in software on CPUs without it (before ARMv8.1)"),
    check("ARM64_PTR_AUTH", On, Kspp, Aarch64, "pointer authentication for user space; the kernel's own depends on it"),
    check("ARM64_BTI", On, Kspp, Aarch64, "branch target identification for user space"),
    check("ARM64_MTE", On, Kspp, Aarch64, "memory tagging, which allocators can use to catch use-after-free and overflows"),
    check("ARM64_E0PD", On, Kspp, Aarch64, "user space cannot time accesses to kernel addresses (ARMv8.5)"),
    check("ARM64_EPAN", On, Kspp, Aarch64, "PAN also covers execute-only user memory (ARMv8.7)"),
];

/// Options that add attack surface and should be off unless a device needs them.
#[rustfmt::skip]
pub const ATTACK_SURFACE: &[Check] = &[
    // KSPP recommended settings.
    check("DEVMEM", Off, Kspp, Any, "/dev/mem exposes physical memory"),
    check("DEVPORT", Off, Kspp, Any, "/dev/port exposes I/O ports"),
    check("KEXEC", Off, Kspp, Any, "root could replace the running kernel"),
    check("PROC_KCORE", Off, Kspp, Any, "/proc/kcore exposes kernel memory"),
    check("HIBERNATION", Off, Kspp, Any, "a resumed image could be a modified kernel"),
    check("BINFMT_MISC", Off, Kspp, Any, "arbitrary interpreters for executables"),
    check("LEGACY_PTYS", Off, Kspp, Any, "BSD-style ptys: obsolete and unrestricted"),
    check("INET_DIAG", Off, Kspp, Any, "socket diagnostics have leaked kernel addresses"),
    check("ACPI_CUSTOM_METHOD", Off, Kspp, Any, "root could write ACPI methods into the kernel"),
    check("COMPAT_BRK", Off, Kspp, Any, "keeps the heap's start from being randomized"),
    check("MODULE_FORCE_LOAD", Off, Kspp, Any, "modules could be loaded without version checks"),
    check("LDISC_AUTOLOAD", Off, Kspp, Any, "any user could load tty line-discipline modules"),
    check("USERFAULTFD", Off, Kspp, Any, "lets an exploit stall the kernel mid-copy to win races"),
    check("MODIFY_LDT_SYSCALL", Off, Kspp, X86_64, "a rarely used system call with a history of bugs"),
    check("IA32_EMULATION", Off, Kspp, X86_64, "a second, 32-bit system-call interface"),
    check("X86_X32_ABI", Off, Kspp, X86_64, "a third system-call interface"),
    check("X86_VSYSCALL_EMULATION", Off, Kspp, X86_64, "a fixed-address code page for old binaries"),
    check("X86_IOPL_IOPERM", Off, Kspp, X86_64, "user-space access to I/O ports"),
    check("COMPAT_VDSO", Off, Kspp, X86_64, "a fixed-address vDSO for old binaries"),
    check("COMPAT", Off, Kspp, Aarch64, "a second, 32-bit system-call interface"),
    // Limpet: a device runs declared, static tasks; nothing else may reach these.
    check("IO_URING", Off, Limpet, Any, "a second system-call interface that seccomp cannot filter"),
    check("BPF_SYSCALL", Off, Limpet, Any, "loading programs into the kernel; no task needs it"),
    check("KEXEC_FILE", Off, Limpet, Any, "root could replace the running kernel"),
    check("USER_NS", Off, Limpet, Any, "user namespaces open kernel paths meant for root to any task"),
    check("DEBUG_FS", Off, Limpet, Any, "debugfs exposes kernel internals"),
    check("KPROBES", Off, Limpet, Any, "root could patch kernel code"),
    check("FTRACE", Off, Limpet, Any, "kernel tracing exposes and can alter kernel state"),
    check("PROC_VMCORE", Off, Limpet, Any, "the old kernel's memory after a crash"),
    check("CHECKPOINT_RESTORE", Off, Limpet, Any, "checkpointing interfaces (kcmp, PID control); not used"),
    check("KCMP", Off, Limpet, Any, "compares kernel objects of other processes"),
    check("MAGIC_SYSRQ", Off, Limpet, Any, "a keyboard or /proc path into kernel debug actions"),
    check("KALLSYMS", Off, Limpet, Any, "the kernel's symbol table helps exploits"),
    check("MEM_SOFT_DIRTY", Off, Limpet, Any, "page tracking for checkpointing; not used"),
    check("PROC_PAGE_MONITOR", Off, Limpet, Any, "per-page information that has leaked physical addresses"),
    check("SMB_SERVER", Off, Limpet, Any, "an in-kernel file server"),
    check("NFS_FS", Off, Limpet, Any, "a network filesystem; a device mounts only its slot and data"),
    check("CIFS", Off, Limpet, Any, "a network filesystem; a device mounts only its slot and data"),
    check("HFS_FS", Off, Limpet, Any, "legacy filesystem"),
    check("HFSPLUS_FS", Off, Limpet, Any, "legacy filesystem"),
    check("JFS_FS", Off, Limpet, Any, "legacy filesystem"),
    check("REISERFS_FS", Off, Limpet, Any, "legacy filesystem"),
    check("MINIX_FS", Off, Limpet, Any, "legacy filesystem"),
    check("UFS_FS", Off, Limpet, Any, "legacy filesystem"),
    check("SYSV_FS", Off, Limpet, Any, "legacy filesystem"),
    check("TIPC", Off, Limpet, Any, "legacy network protocol"),
    check("RDS", Off, Limpet, Any, "legacy network protocol"),
    check("ATALK", Off, Limpet, Any, "legacy network protocol"),
    check("AX25", Off, Limpet, Any, "legacy network protocol"),
    check("IP_DCCP", Off, Limpet, Any, "legacy network protocol"),
    check("IP_SCTP", Off, Limpet, Any, "network protocol no task uses"),
    check("N_GSM", Off, Limpet, Any, "tty multiplexer with a history of bugs"),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn each_want_accepts_what_it_says() {
        let y = Some(&Value::Yes);
        let m = Some(&Value::Module);
        let n = Some(&Value::No);
        let num = Value::Number("65536".into());
        let lsm = Value::Str("lockdown, landlock,yama".into());
        assert!(Want::On.accepts(y) && !Want::On.accepts(m) && !Want::On.accepts(n));
        assert!(!Want::On.accepts(None));
        assert!(Want::Available.accepts(y) && Want::Available.accepts(m));
        assert!(!Want::Available.accepts(n) && !Want::Available.accepts(None));
        assert!(Want::Off.accepts(n) && Want::Off.accepts(None));
        assert!(!Want::Off.accepts(y) && !Want::Off.accepts(m));
        assert!(Want::Is("65536").accepts(Some(&num)) && !Want::Is("4096").accepts(Some(&num)));
        assert!(!Want::Is("65536").accepts(None));
        assert!(Want::Lists("landlock").accepts(Some(&lsm)));
        assert!(!Want::Lists("land").accepts(Some(&lsm)) && !Want::Lists("landlock").accepts(y));
    }

    #[test]
    fn architecture_comes_from_the_config() {
        let x86 = KernelConfig::parse("CONFIG_X86_64=y\n").unwrap();
        let arm = KernelConfig::parse("CONFIG_ARM64=y\n").unwrap();
        assert_eq!(Arch::of(&x86), Some(Arch::X86_64));
        assert_eq!(Arch::of(&arm), Some(Arch::Aarch64));
        assert_eq!(Arch::of(&KernelConfig::default()), None);
        assert!(Arch::X86_64.applies_to(Some(Arch::X86_64)));
        assert!(!Arch::X86_64.applies_to(Some(Arch::Aarch64)) && !Arch::X86_64.applies_to(None));
        assert!(Arch::Any.applies_to(None));
    }

    #[test]
    fn a_fragment_meets_its_checks() {
        let text = fragment(HARDENING.iter().chain(ATTACK_SURFACE));
        let config = KernelConfig::parse(&text).unwrap();
        for c in HARDENING.iter().chain(ATTACK_SURFACE) {
            assert!(c.want.accepts(config.get(c.option)), "{}", c.option);
        }
    }

    #[test]
    fn each_option_is_checked_once() {
        let mut names: Vec<_> = HARDENING
            .iter()
            .chain(ATTACK_SURFACE)
            .map(|c| c.option)
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all);
        assert!(ATTACK_SURFACE.iter().all(|c| c.want == Want::Off));
    }
}
