//! What a Limpet manifest needs from the kernel that boots it.
//!
//! Rules this module keeps:
//! - Needs are [`Check`]s of source [`Source::Limpet`], each naming the code path that needs
//!   it in its reason.
//! - A driver or filesystem a module can provide wants [`Want::Available`] (`=y` or `=m`):
//!   the initramfs carries the host kernel's modules and loads them before anything else.
//!   A switch that cannot be a module wants [`Want::On`].
//! - [`ALWAYS`] holds what every device needs; [`NETWORK`] is added only when a task has
//!   network rules (`network = "allowlist"`), as the build adds the network modules then.

use limpet_manifest::{Manifest, NetworkAccess, Target, Tpm};

use crate::checks::{Arch, Check, Source, Want};

/// A check of Limpet's own (source [`Source::Limpet`]): what a device needs, or what the
/// kernel Limpet builds is given (crates/limpet-kbuild).
pub const fn need(option: &'static str, want: Want, arch: Arch, reason: &'static str) -> Check {
    Check {
        option,
        want,
        source: Source::Limpet,
        arch,
        reason,
        renamed: None,
    }
}

use Arch::{Aarch64, Any, X86_64};
use Want::{Available, Lists, On};

/// What every Limpet device needs.
#[rustfmt::skip]
pub const ALWAYS: &[Check] = &[
    need("BLK_DEV_INITRD", On, Any, "PID 1 and the modules start from the initramfs"),
    need("DEVTMPFS", On, Any, "PID 1 mounts /dev as devtmpfs"),
    need("TMPFS", On, Any, "PID 1 mounts /run and task scratch space as tmpfs"),
    need("SECCOMP_FILTER", On, Any, "every task runs under its seccomp allowlist"),
    need("NAMESPACES", On, Any, "every task gets its own namespaces"),
    need("PID_NS", On, Any, "every task gets its own PID namespace"),
    need("IPC_NS", On, Any, "every task gets its own IPC namespace"),
    need("UTS_NS", On, Any, "every task gets its own UTS namespace"),
    need("NET_NS", On, Any, "a task without network gets a namespace with loopback only"),
    need("CGROUPS", On, Any, "task budgets are cgroup v2 limits"),
    need("MEMCG", On, Any, "each task's memory budget is its memory.max"),
    need("SWAP", On, Any, "each task's memory.swap.max is set to 0, a file only a kernel with swap support has"),
    need("CGROUP_PIDS", On, Any, "each task's pids budget is its pids.max"),
    need("CGROUP_SCHED", On, Any, "each task's cpu budget is its cpu.max"),
    need("FAIR_GROUP_SCHED", On, Any, "cpu.max applies to normal tasks"),
    need("CFS_BANDWIDTH", On, Any, "cpu.max caps a task's CPU time"),
    need("SECURITY_LANDLOCK", On, Any, "every task's file access is a Landlock ruleset"),
    need("LSM", Lists("landlock"), Any, "Landlock is active without an lsm= boot parameter"),
    need("BLK_DEV_DM", Available, Any, "the slot is mounted through device-mapper"),
    need("DM_VERITY", Available, Any, "the slot is verified block by block with dm-verity"),
    need("CRYPTO_SHA256", Available, Any, "dm-verity's hash is sha256"),
    need("SQUASHFS", Available, Any, "the slot's filesystem is squashfs"),
    need("SQUASHFS_ZSTD", On, Any, "the slot's squashfs is zstd-compressed"),
    need("EXT4_FS", Available, Any, "the data partition is ext4"),
    need("VIRTIO_BLK", Available, Any, "QEMU's disks are virtio block devices"),
    need("X86_64", On, X86_64, "the manifest's target is x86_64"),
    need("VIRTIO_PCI", Available, X86_64, "QEMU's x86 virtio devices sit on PCI"),
    need("ARM64", On, Aarch64, "the manifest's target is aarch64"),
    need("VIRTIO_MMIO", Available, Aarch64, "QEMU's virt machine has virtio-mmio devices"),
];

/// What a device needs when a task has network rules: the NIC and what the nftables
/// ruleset of crates/limpet-net uses.
#[rustfmt::skip]
pub const NETWORK: &[Check] = &[
    need("INET", On, Any, "tasks with network rules use TCP/IP"),
    need("NETFILTER", On, Any, "task network rules are enforced by netfilter"),
    need("NF_TABLES", Available, Any, "task network rules are an nftables ruleset"),
    need("NF_TABLES_INET", On, Any, "the ruleset is one inet table for IPv4 and IPv6"),
    need("NF_CONNTRACK", Available, Any, "replies to allowed connections are matched by state"),
    need("NFT_CT", Available, Any, "the ruleset matches connection state (ct state)"),
    need("NF_CONNTRACK_MARK", On, Any, "a flow's conntrack mark names its owners, for the packets a socket no longer does"),
    need("NFT_LIMIT", Available, Any, "egress rate and packet limits are nftables limits"),
    need("NFT_SOCKET", Available, Any, "rules match a packet's task by its socket's cgroup"),
    need("SOCK_CGROUP_DATA", On, Any, "sockets remember their cgroup for that match"),
    need("VIRTIO_NET", Available, Any, "QEMU's network card is virtio-net"),
];

/// Whether the manifest's tasks use the network, so [`NETWORK`] applies.
pub fn uses_network(manifest: &Manifest) -> bool {
    manifest
        .tasks
        .iter()
        .any(|t| t.network == NetworkAccess::Allowlist)
}

/// What a device needs when its manifest asks for a TPM (`[kernel] tpm = "tpm2"`): the TPM
/// core and its TIS driver, built in (PID 1 loads only the modules the manifest lists).
#[rustfmt::skip]
pub const TPM: &[Check] = &[
    need("TCG_TPM", On, Any, "PID 1 seals the device identity with the TPM (/dev/tpmrm0)"),
    need("TCG_TIS_CORE", On, Any, "the TPM's TIS interface"),
    need("TCG_TIS", On, Any, "the TPM on the TIS interface (QEMU's tpm-tis, x86 boards)"),
];

/// Everything `manifest` needs, for its target's architecture.
pub fn of(manifest: &Manifest) -> Vec<Check> {
    let arch = match manifest.device.target {
        Target::X86_64 => Arch::X86_64,
        Target::Aarch64 => Arch::Aarch64,
    };
    let network: &[Check] = if uses_network(manifest) { NETWORK } else { &[] };
    let tpm: &[Check] = match manifest.kernel.tpm {
        Tpm::Tpm2 => TPM,
        Tpm::None => &[],
    };
    ALWAYS
        .iter()
        .chain(network)
        .chain(tpm)
        .filter(|c| c.arch.applies_to(Some(arch)))
        .cloned()
        .collect()
}
