//! One task's sandbox in the exact form PID 1 applies: cgroup file contents, mount list,
//! Landlock paths, rlimits, a seccomp program, restart and readiness.
//!
//! Rules this module keeps:
//! - Paths are as the task sees them in its own mount namespace, except a mount's `source`,
//!   which is in PID 1's view. The task's root is an empty read-only directory that PID 1
//!   builds; every mount target is created in it before the mount.
//! - Task identity: task number `i` (manifest order, from 0) runs as uid and gid
//!   [`FIRST_TASK_ID`]` + i`, never 0, distinct per task, with no supplementary groups and
//!   no capabilities. The numbers follow the manifest order, so an update that reorders
//!   tasks changes them: PID 1 gives each task's data directory to the task's current ids
//!   before it starts the task.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::seccomp::{Arch, Bpf};

/// uid and gid of the first task; task `i` gets `FIRST_TASK_ID + i`. Above the ids a
/// distribution gives people and system services, so no file a build tool leaves behind
/// can belong to a task by accident.
pub const FIRST_TASK_ID: u32 = 10_000;
/// Where PID 1 mounts the verified slot; task binaries sit at its top level.
pub const SLOT_DIR: &str = "/slot";
/// Where PID 1 mounts the data partition; each task has `DATA_DIR/<task>`.
pub const DATA_DIR: &str = "/data";
/// Where PID 1 creates each `notify` task's readiness socket: `NOTIFY_DIR/<task>.sock`.
pub const NOTIFY_DIR: &str = "/run/limpet/notify";
/// The readiness socket as the task sees it, and the value of its `NOTIFY_SOCKET`.
pub const NOTIFY_SOCKET: &str = "/run/notify";
/// cgroup `cpu.max` period, in microseconds (the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// Open files per task (RLIMIT_NOFILE): plenty for a device task, small enough that a
/// descriptor leak shows in testing rather than exhausting the kernel.
pub const MAX_OPEN_FILES: u64 = 256;

/// One task's sandbox, in the order PID 1 applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPolicy {
    /// The task's `name`: PID 1 also uses it as its cgroup's name, its hostname and the
    /// name of its data directory.
    pub name: String,
    /// What PID 1 `execve`s once the sandbox is in place, from the task's `binary`, `args`
    /// and `env`.
    pub exec: Exec,
    /// The ids PID 1 switches to before exec: the task's own, by its manifest position.
    pub credentials: Credentials,
    /// Capabilities left to the task after the identity change.
    pub capabilities: Capabilities,
    /// cgroup v2 limits from the task's `memory`, `pids` and `cpu`, exactly as PID 1 writes
    /// them to the files (on cgroup v2 only).
    pub cgroup: CgroupLimits,
    /// The namespaces PID 1 creates with `clone3`; only the network one depends on the
    /// manifest (`network`).
    pub namespaces: Namespaces,
    /// The task's filesystem, mounted in this order (parents before children).
    pub mounts: Vec<Mount>,
    /// Landlock rules over the mounted paths, the second bound on what the task may touch
    /// should a mount grant too much.
    pub landlock: Landlock,
    /// Resource limits PID 1 sets before the identity change; soft and hard are equal.
    pub rlimits: Vec<Rlimit>,
    /// How PID 1 keeps the task from making memory both writable and executable.
    pub memory_deny_write_execute: Mdwe,
    /// The seccomp program, installed last before exec.
    pub seccomp: SeccompProgram,
    /// What the supervisor does when the task exits, from the task's `restart`.
    pub restart: Restart,
    /// When the task counts as up (a trial is healthy once every task has been up long
    /// enough), from the task's `readiness`.
    pub readiness: ReadinessCheck,
}

/// The program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// `/slot/<binary>`: the same path outside and inside the task's mount namespace.
    pub path: String,
    /// `argv[0]` is the binary's name, then the manifest's `args`.
    pub argv: Vec<String>,
    /// The whole environment: the manifest's `env`, plus `NOTIFY_SOCKET` for a `notify`
    /// task (the readiness protocol needs it). Nothing is inherited from PID 1.
    pub env: BTreeMap<String, String>,
}

/// uid, gid and groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Real, effective, saved and filesystem uid; never 0.
    pub uid: u32,
    /// Real, effective, saved and filesystem gid; never 0.
    pub gid: u32,
    /// Always empty: PID 1 clears the groups it had.
    pub supplementary_groups: Vec<u32>,
}

/// Capabilities a task keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capabilities {
    /// Every set emptied: bounding, ambient, inheritable, permitted, effective. There is no
    /// other variant: no task is privileged.
    None,
}

/// cgroup v2 limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupLimits {
    /// `memory.max`, bytes: the task's `memory`. Above it the kernel reclaims, then kills
    /// inside the task's cgroup only.
    pub memory_max: u64,
    /// `memory.swap.max`, bytes: always 0, so a budget is real memory.
    pub memory_swap_max: u64,
    /// `pids.max`: the task's `pids`, its processes and threads together.
    pub pids_max: u32,
    /// `cpu.max`: the task's `cpu` share; PID 1 writes it once the task has exec'd.
    pub cpu_max: CpuMax,
}

impl CgroupLimits {
    /// Each cgroup file and the exact text to write to it.
    pub fn files(&self) -> [(&'static str, String); 4] {
        [
            ("memory.max", self.memory_max.to_string()),
            ("memory.swap.max", self.memory_swap_max.to_string()),
            ("pids.max", self.pids_max.to_string()),
            ("cpu.max", self.cpu_max.to_string()),
        ]
    }
}

/// `cpu.max`: the task may run `quota_us` in every `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuMax {
    /// Microseconds of CPU time per period: the manifest's percent × 1000.
    pub quota_us: u64,
    /// [`CPU_PERIOD_US`].
    pub period_us: u64,
}

impl std::fmt::Display for CpuMax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.quota_us, self.period_us)
    }
}

/// A namespace the task always gets a new one of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Private {
    /// A new namespace for this task alone; there is no variant sharing PID 1's.
    New,
}

/// The network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetNamespace {
    /// A new namespace with only a loopback interface (`network = "none"`).
    NewEmpty,
    /// The device's namespace (`network = "allowlist"`); nftables rules installed by PID 1
    /// confine the task's uid to its egress and listen rules.
    Host,
}

/// Namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespaces {
    /// The task is PID 1 of its own PID namespace and sees no other process.
    pub pid: Private,
    /// Its own mount table (the [`Mount`] list).
    pub mount: Private,
    /// No System V IPC or POSIX message queues shared with other tasks.
    pub ipc: Private,
    /// Its own hostname (set to the task's name).
    pub uts: Private,
    /// Its cgroup appears as the root, so it cannot name others.
    pub cgroup: Private,
    /// The network namespace: new and empty, or the device's, by the task's `network`.
    pub net: NetNamespace,
}

/// One mount in the task's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// For a bind, the path in PID 1's view; for tmpfs and proc, the filesystem name.
    pub source: String,
    /// The path inside the task's root.
    pub target: String,
    /// What is mounted: a bind, a tmpfs or a procfs.
    pub kind: MountKind,
    /// The flags PID 1 mounts (or, for a bind, remounts) it with.
    pub flags: MountFlags,
}

/// What a mount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum MountKind {
    /// A bind mount, then remounted read-only.
    BindReadOnly,
    /// A bind mount, writable.
    BindReadWrite,
    /// A private tmpfs of `size` bytes (its pages count against the memory budget).
    Tmpfs {
        /// `size=` in bytes.
        size: u64,
    },
    /// A procfs of the task's own PID namespace, with `subset=pid` so that only process
    /// directories show (no /proc/sys, /proc/kallsyms, ...).
    Proc,
}

/// Mount flags, each an explicit choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountFlags {
    /// Whether set-id bits count: never (`nosuid`).
    pub setuid: SetId,
    /// Whether device nodes open (`nodev` unless allowed).
    pub devices: DeviceNodes,
    /// Whether files execute (`noexec` unless allowed).
    pub exec: ExecFiles,
}

/// Set-id bits on a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetId {
    /// `nosuid`, on every mount: no task gains privilege through a file.
    Ignore,
}

/// Device nodes on a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceNodes {
    /// `nodev`.
    Deny,
    /// Device nodes work: only on the bind of a declared device (and `/dev/null`).
    Allow,
}

/// Execution from a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecFiles {
    /// `noexec`.
    Deny,
    /// Only on the bind of the task's own binary, inside the verified slot.
    Allow,
}

/// Landlock rules: paths inside the task's root. PID 1 handles every filesystem right its
/// kernel's Landlock ABI knows, so anything not granted here is denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Landlock {
    /// Read files and list directories beneath (ReadFile, ReadDir).
    pub read: Vec<String>,
    /// Read and write beneath: ReadFile, ReadDir, WriteFile, Truncate, MakeReg, MakeDir,
    /// RemoveFile, RemoveDir, Refer.
    pub write: Vec<String>,
    /// Device nodes: ReadFile, WriteFile, IoctlDev (Landlock ABI 5).
    pub devices: Vec<String>,
    /// Execute (and ReadFile, which exec needs): only the task's own binary.
    pub execute: Vec<String>,
}

/// A resource limit; soft and hard are equal so the task cannot raise the soft one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimit {
    /// The resource limited.
    pub resource: Resource,
    /// The value PID 1 sets as both the soft and the hard limit.
    pub limit: u64,
}

/// Resource limits PID 1 sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Resource {
    /// RLIMIT_NOFILE.
    Nofile,
    /// RLIMIT_CORE: 0, no core dumps (they would hold secrets and fill the data partition).
    Core,
    /// RLIMIT_NPROC: the task's `pids`; the uid is the task's own, so this counts exactly
    /// its threads, a second bound next to `pids.max`.
    Nproc,
    /// RLIMIT_MEMLOCK: 0, nothing pinned in RAM.
    Memlock,
    /// RLIMIT_FSIZE: the data partition's size. No file the task can write legitimately is
    /// larger; the bound also holds on a device node or tmpfs, where the partition does not.
    Fsize,
}

/// Memory-deny-write-execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mdwe {
    /// `prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)` where the kernel has it (6.3+); the
    /// seccomp program refuses executable mappings in any case, so older kernels keep
    /// write-xor-execute too.
    Prctl,
}

/// The seccomp program for the device's architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeccompProgram {
    /// The architecture it checks for; PID 1 refuses to install a program for another.
    pub arch: Arch,
    /// Raw `sock_filter`s, hex in JSON.
    pub program: Bpf,
}

/// Restart policy, copied from the manifest for the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    /// Which exits the supervisor restarts the task after, from `restart.policy`.
    pub when: RestartWhen,
    /// Delay before the first restart, milliseconds, from `restart.backoff_initial`; doubled
    /// after each quick failure.
    pub backoff_initial_ms: u64,
    /// Longest delay, milliseconds, from `restart.backoff_max`; a run longer than this
    /// resets the backoff.
    pub backoff_max_ms: u64,
    /// Quick consecutive failures after which the supervisor stops restarting the task (a
    /// crash loop), from `restart.crash_loop_limit`.
    pub crash_loop_limit: u32,
}

/// When the supervisor restarts a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartWhen {
    /// After any exit.
    Always,
    /// After a non-zero exit or a signal.
    OnFailure,
    /// Never.
    Never,
}

/// When a task counts as up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum ReadinessCheck {
    /// Once started.
    Started,
    /// When it sends `READY=1` on its notify socket within `timeout_ms`.
    Notify {
        /// How long after the start PID 1 waits for `READY=1`, milliseconds, from
        /// `readiness.timeout`.
        timeout_ms: u64,
        /// The datagram socket PID 1 binds, in PID 1's view (`NOTIFY_DIR/<task>.sock`); the
        /// task sees it at [`NOTIFY_SOCKET`].
        socket: String,
    },
}
