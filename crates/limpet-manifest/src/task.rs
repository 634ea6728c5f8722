//! The validated manifest: tasks and their sandbox.
//!
//! Rules this module keeps:
//! - A task declares everything it may use: memory, CPU, processes, files, devices, system
//!   calls, network. Whatever is not declared is denied by the sandbox and the network
//!   policy built from these values.
//! - Defaults are the most restrictive value that still runs a task: no network, the
//!   `minimal` system call profile, no files, no devices.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::names::{AbsPath, BinaryName, SyscallName, TaskName};
use crate::net::{EgressRule, ListenRule, NetworkAccess};
use crate::units::{ByteSize, CpuShare, Duration};

/// Default process budget of a task (`pids`).
pub const DEFAULT_PIDS: u32 = 16;
/// Most processes a task may declare; a bound that keeps fork bombs small.
pub const MAX_PIDS: u32 = 4096;

/// One supervised process: `[[task]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    /// Unique name, `[a-z][a-z0-9-]{0,31}`.
    pub name: TaskName,
    /// The cargo package that builds the task's binary.
    pub package: String,
    /// The binary target in that package (default: the package name).
    pub binary: BinaryName,
    /// Command-line arguments after the program name.
    pub args: Vec<String>,
    /// Environment variables; the task sees only these.
    pub env: BTreeMap<String, String>,
    /// Memory budget (cgroup `memory.max`); all tasks' budgets must fit in the device's memory.
    pub memory: ByteSize,
    /// CPU budget in percent of one CPU (cgroup `cpu.max`); all shares must fit in `cpus * 100%`.
    pub cpu: CpuShare,
    /// Process and thread budget (cgroup `pids.max`, default 16).
    pub pids: u32,
    /// What the supervisor does when the task exits.
    pub restart: Restart,
    /// When the task counts as up, for boot health and update commit.
    pub readiness: Readiness,
    /// Files and directories the task may read or write (Landlock).
    pub files: FileAccess,
    /// Device nodes the task may open, all under `/dev`.
    pub devices: Vec<AbsPath>,
    /// System calls the task may make (seccomp).
    pub syscalls: Syscalls,
    /// Whether the task has network at all (default `none`).
    pub network: NetworkAccess,
    /// Destinations the task may reach; needs `network = "allowlist"`.
    pub egress: Vec<EgressRule>,
    /// Ports the task listens on; needs `network = "allowlist"`.
    pub listen: Vec<ListenRule>,
    /// Size of a private, `noexec` tmpfs on `/tmp`, if the task wants one; counts against
    /// its memory budget.
    pub tmp: Option<ByteSize>,
}

/// Default first restart delay.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::secs(1);
/// Default longest restart delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::secs(60);
/// Default number of quick consecutive failures that make a crash loop.
pub const DEFAULT_CRASH_LOOP_LIMIT: u32 = 5;

/// Restart policy: `restart = "always"` or a table with the backoff and crash-loop limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Restart {
    /// When to restart (default `always`).
    pub policy: RestartPolicy,
    /// Delay before the first restart; doubled after each quick failure (default 1s).
    pub backoff_initial: Duration,
    /// Longest delay between restarts; a run longer than this resets the backoff (default 1m).
    pub backoff_max: Duration,
    /// Consecutive failures, each before the task ran for `backoff_max`, after which the task
    /// is crash-looping: an uncommitted update is rolled back, else the task stays stopped
    /// (default 5).
    pub crash_loop_limit: u32,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: RestartPolicy::Always,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            crash_loop_limit: DEFAULT_CRASH_LOOP_LIMIT,
        }
    }
}

/// When the supervisor restarts a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// After any exit.
    Always,
    /// After a non-zero exit or a signal.
    OnFailure,
    /// Never; the task runs once.
    Never,
}

impl RestartPolicy {
    /// Manifest spellings, in the order error messages list them.
    pub const NAMES: [&'static str; 3] = ["always", "on-failure", "never"];

    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default time a `notify` task has to report readiness.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::secs(30);

/// When a task counts as up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Readiness {
    /// As soon as the process has been started (the default).
    #[default]
    Started,
    /// When the task writes `READY=1` to its notify socket (`$NOTIFY_SOCKET`, the sd_notify
    /// protocol); a task that does not within `timeout` has failed.
    Notify {
        /// How long the task has to report (default 30s).
        timeout: Duration,
    },
}

/// Filesystem access beyond the read-only code slot: `files = { read = [...], write = [...] }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FileAccess {
    /// Paths the task may read (recursively for directories).
    pub read: Vec<AbsPath>,
    /// Paths the task may read and write (recursively for directories); they live on the
    /// `noexec` data partition.
    pub write: Vec<AbsPath>,
}

/// Allowed system calls: a profile plus named additions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Syscalls {
    /// The base set (default `minimal`).
    pub profile: SyscallProfile,
    /// Extra system calls on top of the profile.
    pub allow: Vec<SyscallName>,
}

/// A base set of system calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyscallProfile {
    /// Memory, files already granted, time, signals, exit: what a computing task needs.
    #[default]
    Minimal,
    /// `minimal` plus sockets (socket, connect, bind, listen, accept, send/recv, poll).
    Network,
}

impl SyscallProfile {
    /// Manifest spellings.
    pub const NAMES: [&'static str; 2] = ["minimal", "network"];

    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SyscallProfile::Minimal => "minimal",
            SyscallProfile::Network => "network",
        }
    }
}
