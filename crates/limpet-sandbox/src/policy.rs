//! The device policy: each task's sandbox in the exact form PID 1 applies.
//!
//! [`compile`] runs on the build host and turns a validated [`Manifest`] into a
//! [`DevicePolicy`], stored as JSON in the signed image. PID 1 reads it back with
//! [`DevicePolicy::from_json`] and applies each value as it stands: cgroup file contents,
//! mount list, Landlock paths, rlimits, a seccomp program. It decides nothing itself.
//!
//! Rules this module keeps:
//! - Pure: no I/O. Same manifest, same policy, byte for byte.
//! - Security choices are enums, never `bool`; several have one variant, so that the JSON
//!   states the choice and no value can weaken it.
//! - Paths are as the task sees them in its own mount namespace, except a mount's `source`,
//!   which is in PID 1's view. The task's root is an empty read-only directory that PID 1
//!   builds; every mount target is created in it before the mount.
//! - Task identity: task number `i` (manifest order, from 0) runs as uid and gid
//!   [`FIRST_TASK_ID`]` + i`, never 0, distinct per task, with no supplementary groups and
//!   no capabilities. The numbers follow the manifest order, so an update that reorders
//!   tasks changes them: PID 1 gives each task's data directory to the task's current ids
//!   before it starts the task.

use std::collections::BTreeMap;

use limpet_manifest::{Manifest, NetworkAccess, Readiness, RestartPolicy, Task};
use serde::{Deserialize, Serialize};

use crate::seccomp::{self, Arch, Bpf, SeccompError};

/// Version of the policy format; PID 1 refuses any other.
pub const FORMAT: u32 = 1;
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

/// Errors compiling or reading a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A task's seccomp filter could not be built (the error names the task).
    #[error("compiling the seccomp filter")]
    Seccomp(#[source] SeccompError),
    /// More tasks than uids above [`FIRST_TASK_ID`].
    #[error("task \"{task}\" is number {index}; no uid is left for it")]
    TooManyTasks { task: String, index: usize },
    /// The stored policy is in another format.
    #[error("policy format {found} is not the supported format {FORMAT}")]
    Format { found: u32 },
    /// The network policy could not be compiled.
    #[error("network policy")]
    Network(#[source] limpet_net::PolicyError),
    /// The policy could not be written as JSON.
    #[error("writing the device policy as JSON")]
    WriteJson(#[source] serde_json::Error),
    /// The stored policy is not valid JSON of this shape.
    #[error("reading the device policy")]
    Json(#[source] serde_json::Error),
}

/// Every task's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePolicy {
    /// [`FORMAT`].
    pub format: u32,
    /// The device's CPU architecture; every seccomp program is built for it.
    pub arch: Arch,
    /// One entry per task, in manifest order.
    pub tasks: Vec<TaskPolicy>,
    /// How PID 1 judges a try slot; absent when the device has no `[update]`, and PID 1
    /// then uses [`TrialPolicy::default`].
    #[serde(default)]
    pub trial: Option<TrialPolicy>,
    /// The task that is the update agent: PID 1 opens the update socket for its uid only.
    #[serde(default)]
    pub update_agent: Option<String>,
    /// The network policy PID 1 installs before any interface is up, and the interfaces it
    /// brings up; absent when no task has `network = "allowlist"` (the device then has no
    /// network at all).
    #[serde(default)]
    pub network: Option<limpet_net::NetPolicy>,
}

/// When a try slot is committed or rolled back (manifest `[update]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialPolicy {
    /// Every task up this long without a failure commits the try.
    pub health_ms: u64,
    /// A try not healthy this long after PID 1 started its tasks rolls back.
    pub health_timeout_ms: u64,
    /// Boots a new try gets.
    pub try_boots: u32,
}

impl Default for TrialPolicy {
    fn default() -> Self {
        TrialPolicy {
            health_ms: limpet_manifest::DEFAULT_HEALTH.as_millis(),
            health_timeout_ms: limpet_manifest::DEFAULT_HEALTH_TIMEOUT.as_millis(),
            try_boots: limpet_manifest::DEFAULT_TRY_BOOTS,
        }
    }
}

impl DevicePolicy {
    /// The JSON stored in the image.
    pub fn to_json(&self) -> Result<Vec<u8>, PolicyError> {
        let mut out = serde_json::to_vec_pretty(self).map_err(PolicyError::WriteJson)?;
        out.push(b'\n');
        Ok(out)
    }

    /// Reads a stored policy, refusing any other format.
    pub fn from_json(bytes: &[u8]) -> Result<DevicePolicy, PolicyError> {
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let head: Head = serde_json::from_slice(bytes).map_err(PolicyError::Json)?;
        if head.format != FORMAT {
            return Err(PolicyError::Format { found: head.format });
        }
        serde_json::from_slice(bytes).map_err(PolicyError::Json)
    }
}

/// One task's sandbox, in the order PID 1 applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPolicy {
    /// The task's name (also its cgroup's and hostname's).
    pub name: String,
    /// What to execute.
    pub exec: Exec,
    /// Who the task runs as.
    pub credentials: Credentials,
    /// Capabilities left to the task.
    pub capabilities: Capabilities,
    /// cgroup v2 limits, exactly as written to the files.
    pub cgroup: CgroupLimits,
    /// Namespaces the task gets.
    pub namespaces: Namespaces,
    /// The task's filesystem, mounted in this order (parents before children).
    pub mounts: Vec<Mount>,
    /// Landlock rules over the mounted paths.
    pub landlock: Landlock,
    /// Resource limits; soft and hard are equal.
    pub rlimits: Vec<Rlimit>,
    /// Memory-deny-write-execute.
    pub memory_deny_write_execute: Mdwe,
    /// The seccomp program, installed last before exec.
    pub seccomp: SeccompProgram,
    /// What the supervisor does when the task exits.
    pub restart: Restart,
    /// When the task counts as up.
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
    /// `memory.max`, bytes.
    pub memory_max: u64,
    /// `memory.swap.max`, bytes: always 0, so a budget is real memory.
    pub memory_swap_max: u64,
    /// `pids.max`: processes and threads.
    pub pids_max: u32,
    /// `cpu.max`.
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
    /// Network.
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
    /// What is mounted.
    pub kind: MountKind,
    /// Mount flags.
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
    /// Set-id bits.
    pub setuid: SetId,
    /// Device nodes.
    pub devices: DeviceNodes,
    /// Execution.
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
    /// Which limit.
    pub resource: Resource,
    /// Soft and hard value.
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
    /// When to restart.
    pub when: RestartWhen,
    /// First delay, milliseconds.
    pub backoff_initial_ms: u64,
    /// Longest delay, milliseconds.
    pub backoff_max_ms: u64,
    /// Quick consecutive failures that make a crash loop.
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
        /// Deadline, milliseconds.
        timeout_ms: u64,
        /// The datagram socket PID 1 binds, in PID 1's view (`NOTIFY_DIR/<task>.sock`); the
        /// task sees it at [`NOTIFY_SOCKET`].
        socket: String,
    },
}

/// Compiles the policy of every task in `manifest`.
pub fn compile(manifest: &Manifest) -> Result<DevicePolicy, PolicyError> {
    let arch = Arch::from(manifest.device.target);
    let tasks = manifest
        .tasks
        .iter()
        .enumerate()
        .map(|(index, task)| compile_task(manifest, arch, index, task))
        .collect::<Result<_, _>>()?;
    Ok(DevicePolicy {
        format: FORMAT,
        arch,
        tasks,
        trial: manifest.update.as_ref().map(|u| TrialPolicy {
            health_ms: u.health.as_millis(),
            health_timeout_ms: u.health_timeout.as_millis(),
            try_boots: u.try_boots,
        }),
        update_agent: manifest
            .tasks
            .iter()
            .find(|t| t.name.as_str() == limpet_manifest::UPDATE_AGENT_TASK)
            .map(|t| t.name.to_string()),
        network: if manifest
            .tasks
            .iter()
            .any(|t| t.network == limpet_manifest::NetworkAccess::Allowlist)
        {
            Some(limpet_net::NetPolicy::compile(manifest).map_err(PolicyError::Network)?)
        } else {
            None
        },
    })
}

fn compile_task(
    manifest: &Manifest,
    arch: Arch,
    index: usize,
    task: &Task,
) -> Result<TaskPolicy, PolicyError> {
    let name = task.name.as_str();
    let id = u32::try_from(index)
        .ok()
        .and_then(|i| FIRST_TASK_ID.checked_add(i))
        .ok_or_else(|| PolicyError::TooManyTasks {
            task: name.to_owned(),
            index,
        })?;
    let binary = task.binary.as_str();
    let exec_path = format!("{SLOT_DIR}/{binary}");
    let notify_socket = format!("{NOTIFY_DIR}/{name}.sock");

    let mut env = task.env.clone();
    let readiness = match task.readiness {
        Readiness::Started => ReadinessCheck::Started,
        Readiness::Notify { timeout } => {
            env.insert("NOTIFY_SOCKET".to_owned(), NOTIFY_SOCKET.to_owned());
            ReadinessCheck::Notify {
                timeout_ms: timeout.as_millis(),
                socket: notify_socket.clone(),
            }
        }
    };
    let argv = std::iter::once(binary.to_owned())
        .chain(task.args.iter().cloned())
        .collect();

    let (mounts, landlock) = filesystem(task, &exec_path, &notify_socket);

    let restart = Restart {
        when: match task.restart.policy {
            RestartPolicy::Always => RestartWhen::Always,
            RestartPolicy::OnFailure => RestartWhen::OnFailure,
            RestartPolicy::Never => RestartWhen::Never,
        },
        backoff_initial_ms: task.restart.backoff_initial.as_millis(),
        backoff_max_ms: task.restart.backoff_max.as_millis(),
        crash_loop_limit: task.restart.crash_loop_limit,
    };

    Ok(TaskPolicy {
        name: name.to_owned(),
        exec: Exec {
            path: exec_path,
            argv,
            env,
        },
        credentials: Credentials {
            uid: id,
            gid: id,
            supplementary_groups: Vec::new(),
        },
        capabilities: Capabilities::None,
        cgroup: CgroupLimits {
            memory_max: task.memory.bytes(),
            memory_swap_max: 0,
            pids_max: task.pids,
            cpu_max: CpuMax {
                quota_us: u64::from(task.cpu.percent()) * (CPU_PERIOD_US / 100),
                period_us: CPU_PERIOD_US,
            },
        },
        namespaces: Namespaces {
            pid: Private::New,
            mount: Private::New,
            ipc: Private::New,
            uts: Private::New,
            cgroup: Private::New,
            net: match task.network {
                NetworkAccess::None => NetNamespace::NewEmpty,
                NetworkAccess::Allowlist => NetNamespace::Host,
            },
        },
        mounts,
        landlock,
        rlimits: vec![
            Rlimit {
                resource: Resource::Nofile,
                limit: MAX_OPEN_FILES,
            },
            Rlimit {
                resource: Resource::Core,
                limit: 0,
            },
            Rlimit {
                resource: Resource::Nproc,
                limit: u64::from(task.pids),
            },
            Rlimit {
                resource: Resource::Memlock,
                limit: 0,
            },
            Rlimit {
                resource: Resource::Fsize,
                limit: manifest.disk.data_size.bytes(),
            },
        ],
        memory_deny_write_execute: Mdwe::Prctl,
        seccomp: SeccompProgram {
            arch,
            program: seccomp::compile(task, arch).map_err(PolicyError::Seccomp)?,
        },
        restart,
        readiness,
    })
}

const fn flags(devices: DeviceNodes, exec: ExecFiles) -> MountFlags {
    MountFlags {
        setuid: SetId::Ignore,
        devices,
        exec,
    }
}

/// Inert data: no devices, no execution.
const DATA: MountFlags = flags(DeviceNodes::Deny, ExecFiles::Deny);

/// The mount list and Landlock rules of a task.
fn filesystem(task: &Task, exec_path: &str, notify_socket: &str) -> (Vec<Mount>, Landlock) {
    let bind = |path: &str, kind, flags| Mount {
        source: path.to_owned(),
        target: path.to_owned(),
        kind,
        flags,
    };
    let data_dir = format!("{DATA_DIR}/{}", task.name);
    let mut mounts = vec![
        Mount {
            source: "proc".to_owned(),
            target: "/proc".to_owned(),
            kind: MountKind::Proc,
            flags: DATA,
        },
        // The one place execution is allowed: the verified, read-only slot.
        bind(
            exec_path,
            MountKind::BindReadOnly,
            flags(DeviceNodes::Deny, ExecFiles::Allow),
        ),
        // Every task gets /dev/null: std and many libraries open it; it grants nothing.
        bind(
            "/dev/null",
            MountKind::BindReadWrite,
            flags(DeviceNodes::Allow, ExecFiles::Deny),
        ),
    ];
    let mut landlock = Landlock {
        read: vec!["/proc".to_owned()],
        write: Vec::new(),
        devices: vec!["/dev/null".to_owned()],
        execute: vec![exec_path.to_owned()],
    };
    for dev in &task.devices {
        mounts.push(bind(
            dev.as_str(),
            MountKind::BindReadWrite,
            flags(DeviceNodes::Allow, ExecFiles::Deny),
        ));
        landlock.devices.push(dev.to_string());
    }
    for path in &task.files.read {
        mounts.push(bind(path.as_str(), MountKind::BindReadOnly, DATA));
        landlock.read.push(path.to_string());
    }
    mounts.push(bind(&data_dir, MountKind::BindReadWrite, DATA));
    landlock.write.push(data_dir.clone());
    for path in &task.files.write {
        // A path at or below the data directory is already mounted and granted with it.
        let covered = path.as_str() == data_dir
            || path
                .as_str()
                .strip_prefix(data_dir.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        if !covered {
            mounts.push(bind(path.as_str(), MountKind::BindReadWrite, DATA));
            landlock.write.push(path.to_string());
        }
    }
    if let Some(size) = task.tmp {
        mounts.push(Mount {
            source: "tmpfs".to_owned(),
            target: "/tmp".to_owned(),
            kind: MountKind::Tmpfs { size: size.bytes() },
            flags: DATA,
        });
        landlock.write.push("/tmp".to_owned());
    }
    if task.name.as_str() == limpet_manifest::UPDATE_AGENT_TASK {
        // The update agent's one privileged door: PID 1's update socket (owned by the
        // agent's uid, mode 0600; limpet-update-api). Like the notify socket, not a
        // Landlock matter.
        mounts.push(Mount {
            source: limpet_update_api::SOCKET.to_owned(),
            target: limpet_update_api::SOCKET.to_owned(),
            kind: MountKind::BindReadWrite,
            flags: DATA,
        });
    }
    if matches!(task.readiness, Readiness::Notify { .. }) {
        mounts.push(Mount {
            source: notify_socket.to_owned(),
            target: NOTIFY_SOCKET.to_owned(),
            kind: MountKind::BindReadWrite,
            flags: DATA,
        });
        // No Landlock rule: sending to a named socket is not a file access Landlock
        // mediates (and the kernel refuses a rule on a socket, ENXIO); the socket's owner
        // and mode (the task's uid, 0600) are what limit it.
    }
    // A later mount on an earlier one's path would hide it; one on a path below an earlier
    // one must come after it. Keep the first of equal targets, then order parents first.
    let mut seen = std::collections::BTreeSet::new();
    mounts.retain(|m| seen.insert(m.target.clone()));
    mounts.sort_by_key(|m| m.target.matches('/').count());
    (mounts, landlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(path: &str) -> Manifest {
        let full = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&full).unwrap();
        limpet_manifest::parse(path, &text).unwrap()
    }

    fn hello() -> TaskPolicy {
        let p = compile(&manifest("examples/hello/limpet.toml")).unwrap();
        assert_eq!(p.format, FORMAT);
        assert_eq!(p.arch, Arch::X86_64);
        assert_eq!(p.tasks.len(), 1);
        p.tasks.into_iter().next().unwrap()
    }

    fn full() -> DevicePolicy {
        compile(&manifest(
            "crates/limpet-manifest/tests/fixtures/good/full.toml",
        ))
        .unwrap()
    }

    fn flags_of(devices: DeviceNodes, exec: ExecFiles) -> MountFlags {
        flags(devices, exec)
    }

    #[test]
    fn hello_exec_and_identity() {
        let t = hello();
        assert_eq!(t.name, "hello");
        assert_eq!(t.exec.path, "/slot/hello");
        assert_eq!(t.exec.argv, ["hello"]);
        assert!(t.exec.env.is_empty());
        assert_eq!(
            t.credentials,
            Credentials {
                uid: 10_000,
                gid: 10_000,
                supplementary_groups: vec![]
            }
        );
        assert_eq!(t.capabilities, Capabilities::None);
    }

    #[test]
    fn hello_cgroup_files() {
        let t = hello();
        assert_eq!(
            t.cgroup.files(),
            [
                ("memory.max", "8388608".to_owned()),
                ("memory.swap.max", "0".to_owned()),
                ("pids.max", "2".to_owned()),
                ("cpu.max", "5000 100000".to_owned()),
            ]
        );
    }

    #[test]
    fn hello_namespaces_mounts_landlock() {
        let t = hello();
        assert_eq!(t.namespaces.net, NetNamespace::NewEmpty);
        assert_eq!(t.namespaces.pid, Private::New);
        let data = flags_of(DeviceNodes::Deny, ExecFiles::Deny);
        let mounts: Vec<_> = t
            .mounts
            .iter()
            .map(|m| (m.source.as_str(), m.target.as_str(), m.kind, m.flags))
            .collect();
        assert_eq!(
            mounts,
            [
                ("proc", "/proc", MountKind::Proc, data),
                (
                    "/slot/hello",
                    "/slot/hello",
                    MountKind::BindReadOnly,
                    flags_of(DeviceNodes::Deny, ExecFiles::Allow)
                ),
                (
                    "/dev/null",
                    "/dev/null",
                    MountKind::BindReadWrite,
                    flags_of(DeviceNodes::Allow, ExecFiles::Deny)
                ),
                ("/data/hello", "/data/hello", MountKind::BindReadWrite, data),
            ]
        );
        assert_eq!(
            t.landlock,
            Landlock {
                read: vec!["/proc".into()],
                write: vec!["/data/hello".into()],
                devices: vec!["/dev/null".into()],
                execute: vec!["/slot/hello".into()],
            }
        );
    }

    #[test]
    fn hello_rlimits_mdwe_restart_readiness_seccomp() {
        let t = hello();
        let limits: Vec<_> = t.rlimits.iter().map(|r| (r.resource, r.limit)).collect();
        assert_eq!(
            limits,
            [
                (Resource::Nofile, 256),
                (Resource::Core, 0),
                (Resource::Nproc, 2),
                (Resource::Memlock, 0),
                (Resource::Fsize, 64 * 1024 * 1024),
            ]
        );
        assert_eq!(t.memory_deny_write_execute, Mdwe::Prctl);
        assert_eq!(
            t.restart,
            Restart {
                when: RestartWhen::Always,
                backoff_initial_ms: 1000,
                backoff_max_ms: 60_000,
                crash_loop_limit: 5
            }
        );
        assert_eq!(t.readiness, ReadinessCheck::Started);
        assert_eq!(t.seccomp.arch, Arch::X86_64);
        let hello_manifest = manifest("examples/hello/limpet.toml");
        assert_eq!(
            t.seccomp.program,
            seccomp::compile(&hello_manifest.tasks[0], Arch::X86_64).unwrap()
        );
    }

    #[test]
    fn full_sensor() {
        let p = full();
        assert_eq!(p.arch, Arch::Aarch64);
        let s = &p.tasks[0];
        assert_eq!(s.name, "sensor");
        assert_eq!(s.exec.path, "/slot/sensord");
        assert_eq!(s.exec.argv, ["sensord", "--interval", "5s"]);
        let env: Vec<_> = s
            .exec
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("NOTIFY_SOCKET", "/run/notify"),
                ("RUST_LOG", "info"),
                ("SENSOR_BUS", "1"),
            ]
        );
        assert_eq!(s.credentials.uid, 10_000);
        assert_eq!(
            s.cgroup.files(),
            [
                ("memory.max", "8388608".to_owned()),
                ("memory.swap.max", "0".to_owned()),
                ("pids.max", "4".to_owned()),
                ("cpu.max", "10000 100000".to_owned()),
            ]
        );
        assert_eq!(s.namespaces.net, NetNamespace::Host);
        let data = flags_of(DeviceNodes::Deny, ExecFiles::Deny);
        let mounts: Vec<_> = s
            .mounts
            .iter()
            .map(|m| (m.source.as_str(), m.target.as_str(), m.kind, m.flags))
            .collect();
        assert_eq!(
            mounts,
            [
                ("proc", "/proc", MountKind::Proc, data),
                (
                    "tmpfs",
                    "/tmp",
                    MountKind::Tmpfs { size: 1024 * 1024 },
                    data
                ),
                (
                    "/slot/sensord",
                    "/slot/sensord",
                    MountKind::BindReadOnly,
                    flags_of(DeviceNodes::Deny, ExecFiles::Allow)
                ),
                (
                    "/dev/null",
                    "/dev/null",
                    MountKind::BindReadWrite,
                    flags_of(DeviceNodes::Allow, ExecFiles::Deny)
                ),
                (
                    "/dev/i2c-1",
                    "/dev/i2c-1",
                    MountKind::BindReadWrite,
                    flags_of(DeviceNodes::Allow, ExecFiles::Deny)
                ),
                (
                    "/etc/thermostat",
                    "/etc/thermostat",
                    MountKind::BindReadOnly,
                    data
                ),
                // `write = ["/data/sensor"]` is the data directory itself: one mount.
                (
                    "/data/sensor",
                    "/data/sensor",
                    MountKind::BindReadWrite,
                    data
                ),
                (
                    "/run/limpet/notify/sensor.sock",
                    "/run/notify",
                    MountKind::BindReadWrite,
                    data
                ),
            ]
        );
        assert_eq!(
            s.landlock,
            Landlock {
                read: vec!["/proc".into(), "/etc/thermostat".into()],
                write: vec!["/data/sensor".into(), "/tmp".into()],
                devices: vec!["/dev/null".into(), "/dev/i2c-1".into()],
                execute: vec!["/slot/sensord".into()],
            }
        );
        let limits: Vec<_> = s.rlimits.iter().map(|r| (r.resource, r.limit)).collect();
        assert_eq!(
            limits,
            [
                (Resource::Nofile, 256),
                (Resource::Core, 0),
                (Resource::Nproc, 4),
                (Resource::Memlock, 0),
                (Resource::Fsize, 32 * 1024 * 1024),
            ]
        );
        assert_eq!(
            s.restart,
            Restart {
                when: RestartWhen::OnFailure,
                backoff_initial_ms: 500,
                backoff_max_ms: 30_000,
                crash_loop_limit: 3
            }
        );
        assert_eq!(
            s.readiness,
            ReadinessCheck::Notify {
                timeout_ms: 10_000,
                socket: "/run/limpet/notify/sensor.sock".into()
            }
        );
        assert_eq!(s.seccomp.arch, Arch::Aarch64);
    }

    #[test]
    fn full_web() {
        let p = full();
        let w = &p.tasks[1];
        assert_eq!(w.name, "web");
        assert_eq!(w.exec.path, "/slot/thermostat-web");
        assert_eq!(w.credentials.uid, 10_001);
        assert_eq!(w.credentials.gid, 10_001);
        assert_eq!(w.cgroup.cpu_max.to_string(), "120000 100000");
        assert_eq!(w.cgroup.pids_max, 16);
        assert_eq!(w.namespaces.net, NetNamespace::Host);
        assert!(w.exec.env.is_empty());
        assert_eq!(w.readiness, ReadinessCheck::Started);
        assert_eq!(w.restart.when, RestartWhen::Always);
        assert!(!w.mounts.iter().any(|m| m.target == "/tmp"));
        // Execution is allowed on exactly one mount: the task's binary.
        let exec: Vec<_> = w
            .mounts
            .iter()
            .filter(|m| m.flags.exec == ExecFiles::Allow)
            .map(|m| m.target.as_str())
            .collect();
        assert_eq!(exec, ["/slot/thermostat-web"]);
        assert_ne!(p.tasks[0].seccomp.program, w.seccomp.program);
    }

    #[test]
    fn json_round_trip_and_format_check() {
        let p = full();
        let json = p.to_json().unwrap();
        assert_eq!(DevicePolicy::from_json(&json).unwrap(), p);
        // Deterministic.
        assert_eq!(full().to_json().unwrap(), json);
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains("\"net\": \"host\""), "{text}");
        assert!(text.contains("\"memory_deny_write_execute\": \"prctl\""));
        let other = text.replacen("\"format\": 1", "\"format\": 2", 1);
        assert!(matches!(
            DevicePolicy::from_json(other.as_bytes()),
            Err(PolicyError::Format { found: 2 })
        ));
        let unknown = text.replacen("\"format\": 1", "\"format\": 1, \"extra\": 0", 1);
        assert!(matches!(
            DevicePolicy::from_json(unknown.as_bytes()),
            Err(PolicyError::Json(_))
        ));
    }

    #[test]
    fn seccomp_errors_name_the_task() {
        let text = std::fs::read_to_string(format!(
            "{}/../../examples/hello/limpet.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
        .replace(
            "syscalls = { profile = \"minimal\" }",
            "syscalls = { profile = \"minimal\", allow = [\"reboot\"] }",
        );
        let m = limpet_manifest::parse("limpet.toml", &text).unwrap();
        let e = compile(&m).unwrap_err();
        let PolicyError::Seccomp(source) = &e else {
            panic!("{e:?}")
        };
        assert!(
            matches!(source, SeccompError::Forbidden { task, syscall, .. }
            if task == "hello" && syscall == "reboot")
        );
    }
}
