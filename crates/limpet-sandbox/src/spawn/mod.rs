//! Starting a task inside its sandbox: PID 1 applies a compiled [`TaskPolicy`], exactly as
//! it stands.
//!
//! # Order of operations
//!
//! Once at boot, [`prepare`]: on cgroup v2, enable `+memory +pids +cpu` in
//! `cgroup.subtree_control` of the cgroup root and of `<root>/limpet`; create `<work>`.
//!
//! [`spawn`], in PID 1 (the parent):
//! 1. Work out the child's plan (host paths, flags, exec arrays) before forking, so that the
//!    child only carries it out; refuse a seccomp program for another architecture.
//! 2. Create the data directory `<data>/<task>` (0700, owned by the task's uid and gid) and
//!    the root directory `<work>/<task>`.
//! 3. On cgroup v2, create `<root>/limpet/<task>`, write its limit files
//!    ([`CgroupLimits::files`](limpet_policy::CgroupLimits::files)) and open it.
//! 4. Make the stdout and stderr pipes and the error-report pipe, all close-on-exec.
//! 5. `clone3` with new PID, mount, IPC, UTS and cgroup namespaces, a new network namespace
//!    for a task without network, and CLONE_INTO_CGROUP on cgroup v2, so the task is inside
//!    its budget before it runs a single instruction. No new stack: the child continues like
//!    `fork`'s. PID 1 is single-threaded, so the child may allocate before `execve`.
//! 6. Read the report pipe: end-of-file means `execve` succeeded (the pipe was close-on-exec);
//!    a report names the failed step and its errno, and the child, which has exited with 127,
//!    is reaped and its cgroup removed.
//!
//! The child (module `child`), each step a function of its table `STEPS`, in this order; any
//! failure writes the failed step's code and errno to the report pipe and `_exit(127)`s:
//! <!-- BEGIN GENERATED: spawn-child-steps (rendered by crates/limpet-sandbox/src/spawn/child.rs; edit the code, then LIMPET_BLESS=1 cargo test) -->
//! 1. `reset_process`: Reset the signal mask and dispositions; `setsid` (its own session and
//!    process group).
//! 2. `make_mounts_private`: Make `/` recursively private (`MS_REC | MS_PRIVATE`): no mount
//!    made here propagates back to PID 1's namespace, nor any of PID 1's later mounts into the
//!    task.
//! 3. `mount_root_tmpfs`: Mount a small tmpfs on `<work>/<task>` (`/run/limpet/tasks/<task>` on
//!    a device; `mode=0755,size=64k,nr_inodes=256`, `nosuid,nodev,noexec`) as the task's new
//!    root.
//! 4. `apply_mounts`: The policy's mounts, in order: each mount point created (parents 0755; a
//!    symbolic link on the way is refused with `ELOOP`, so an earlier writable bind cannot
//!    redirect a later mount), then a bind (not recursive) remounted with `MS_BIND |
//!    MS_REMOUNT` and its flags, which a bind ignores otherwise (`MS_RDONLY` for read-only
//!    binds; every mount `nosuid`, `noexec` except the task's binary, `nodev` except
//!    `/dev/null` and declared devices); a tmpfs of the declared size owned by the task (0700);
//!    a fresh procfs with `subset=pid`, which inside the new PID namespace shows only the task.
//! 5. `pivot_into_root`: Enter the new root: `pivot_root(".", ".")` and detach the old root
//!    (`MNT_DETACH`). When the kernel refuses with `EINVAL`, as it always does when the current
//!    root is the initramfs (rootfs), where PID 1 runs on a device, fall back as runc's
//!    `no_pivot_root` does: move the new root over `/` (`MS_MOVE`) and `chroot(".")`. The
//!    initramfs then stays below it in the task's namespace, unreachable: leaving a chroot
//!    needs `CAP_SYS_CHROOT`, which the task never has, and no mount, `pivot_root` or `chroot`
//!    call passes its seccomp filter. Then `chdir("/")`.
//! 6. `remount_root_read_only`: Remount `/` read-only (`ro,nosuid,nodev,noexec`; the binds on
//!    it keep their own flags).
//! 7. `install_stdio`: stdin from the task's `/dev/null`, stdout and stderr onto the pipes;
//!    every other descriptor close-on-exec (`close_range`).
//! 8. `set_hostname`: `sethostname(<task>)`.
//! 9. `set_rlimits`: rlimits, soft = hard. Off-spec: before the identity change rather than
//!    after it, because raising a hard limit needs `CAP_SYS_RESOURCE`, which the uid change
//!    takes away.
//! 10. `drop_privileges`: Every capability out of the bounding set (until `EINVAL`: past the
//!     kernel's last), the ambient set cleared, `setgroups([])`, `setresgid` and `setresuid` to
//!     the task's ids, then `capset` with every set empty (the uid change empties effective and
//!     permitted, not inheritable); umask 077.
//! 11. `set_no_new_privs`: `PR_SET_NO_NEW_PRIVS`: no later exec can gain privileges.
//! 12. `apply_landlock`: Landlock, best effort over ABI 5's filesystem rights, from the
//!     policy's `landlock` paths; without Landlock in the kernel `spawn` reports
//!     `Landlock::NotEnforced`.
//! 13. `set_mdwe`: `PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN)` where the kernel has it (6.3+; the
//!     `EINVAL` of Debian's 6.1 is tolerated, and there the seccomp program's write-xor-execute
//!     rules stand alone).
//! 14. `install_seccomp`: The seccomp program, last: from here on every call, `execve`
//!     included, is checked by it.
//! 15. `exec`: `execve` with exactly the policy's argv and environment.
//! <!-- END GENERATED: spawn-child-steps -->
//!
//! # The task is PID 1 of its namespace
//!
//! - It must reap its own children: orphans inside the namespace are reparented to it, not
//!   to limpet-init. (Under the seccomp profiles a task cannot fork anyway.)
//! - Signals sent from PID 1's namespace are delivered only if the task installed a handler
//!   for them, except SIGKILL and SIGSTOP; a signal whose default action is to terminate is
//!   ignored otherwise. So a task that does not handle SIGTERM ignores it.
//! - When it exits, the kernel kills every other process of its namespace.
//!
//! The supervisor stops a task with [`kill_task`]: [`Signal::Term`] first, then after the
//! grace period [`Signal::Kill`], which on cgroup v2 writes `1` to `cgroup.kill` (every
//! process of the task, at once) and otherwise sends SIGKILL to the task's PID 1, whose
//! death takes its namespace's other processes with it.
//!
//! # What this module does not do
//!
//! - Reap the task: the supervisor's `waitpid` does. PID 1 keeps the task's cgroup for
//!   its next start (the network policy matches the cgroup's id); [`remove_cgroup`] is for
//!   callers that want it gone.
//! - Change the owner of files inside the data directory when a task's uid changes (only the
//!   directory itself is given to the new ids).
//! - On a kernel before 5.7 (clone3 with CLONE_INTO_CGROUP) or 5.11 (close_range), spawning
//!   fails at that step.

mod child;
mod plan;
mod sys;

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use limpet_policy::{Arch, NetNamespace, Resource, TaskPolicy};
use rustix::fs::{Mode, OFlags};
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, WaitOptions};

use child::{ChildIo, Code, Report};
use plan::{task_component, Plan};

/// Directories PID 1 works in; every kernel-facing path comes from here, so tests point
/// them at temporary directories.
#[derive(Debug, Clone)]
pub struct Roots {
    /// Where task binaries live (`/slot`, the verified read-only squashfs).
    pub slot: PathBuf,
    /// The data partition (`/data`); each task gets `<data>/<task>`.
    pub data: PathBuf,
    /// Scratch for building each task's root (`/run/limpet/tasks`).
    pub work: PathBuf,
    /// How budgets are enforced.
    pub cgroups: Cgroups,
}

/// The cgroup hierarchy budgets are enforced with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// cgroup v2 mounted at `root` (`/sys/fs/cgroup`). PID 1 on a device always uses this.
    V2 {
        /// The cgroup2 mount point.
        root: PathBuf,
    },
    /// The host's controllers are cgroup v1 (development and CI): budgets are not enforced,
    /// and [`Spawned::cgroup`] is `None` to say so.
    NotEnforced,
}

/// Whether Landlock confines the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landlock {
    /// The kernel's Landlock ABI (the rules use the rights of ABI 5 and older it knows).
    Enforced {
        /// The kernel's Landlock ABI version.
        abi: u32,
    },
    /// The kernel has no Landlock, or it is not enabled: only mounts and seccomp confine
    /// the task's file access.
    NotEnforced,
}

/// A started task.
#[derive(Debug)]
pub struct Spawned {
    /// The task's pid in PID 1's namespace (it is PID 1 in its own).
    pub pid: i32,
    /// Read end of the task's stdout (close-on-exec).
    pub stdout: OwnedFd,
    /// Read end of the task's stderr (close-on-exec).
    pub stderr: OwnedFd,
    /// The task's cgroup; `None` when budgets are not enforced ([`Cgroups::NotEnforced`]).
    pub cgroup: Option<PathBuf>,
    /// Whether Landlock confines it.
    pub landlock: Landlock,
}

/// A signal the supervisor sends a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: a request; ignored by a task without a handler for it (it is PID 1 of its
    /// namespace).
    Term,
    /// SIGKILL: the whole task, at once.
    Kill,
}

/// The step of the child's setup that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Resetting the signal mask and dispositions.
    ResetSignals,
    /// `setsid`.
    NewSession,
    /// Making `/` recursively private.
    PrivateMounts,
    /// Mounting the root tmpfs.
    RootTmpfs,
    /// Looking up a bind's source.
    BindSource {
        /// The source, in the policy's terms.
        source: String,
    },
    /// Creating a mount point.
    MountPoint {
        /// The target, as the task sees it.
        target: String,
    },
    /// Mounting.
    Mount {
        /// The target, as the task sees it.
        target: String,
    },
    /// Applying a bind mount's flags.
    Remount {
        /// The target, as the task sees it.
        target: String,
    },
    /// `pivot_root`.
    PivotRoot,
    /// Detaching the old root.
    DetachOldRoot,
    /// Remounting `/` read-only.
    RootReadOnly,
    /// `chdir("/")`.
    Chdir,
    /// Setting up stdin, stdout and stderr.
    Stdio,
    /// Marking inherited descriptors close-on-exec.
    CloseOnExec,
    /// `sethostname`.
    Hostname,
    /// `setrlimit`.
    Rlimit {
        /// Which limit.
        resource: Resource,
    },
    /// Dropping the bounding set.
    BoundingSet,
    /// Clearing the ambient set.
    AmbientSet,
    /// `setgroups`.
    Groups,
    /// `setresgid`.
    Gid,
    /// `setresuid`.
    Uid,
    /// `capset`.
    Capabilities,
    /// PR_SET_NO_NEW_PRIVS.
    NoNewPrivs,
    /// Adding a Landlock rule.
    LandlockRule {
        /// The rule's path, as the task sees it.
        path: String,
    },
    /// Creating or enforcing the Landlock ruleset.
    LandlockRestrict,
    /// PR_SET_MDWE.
    Mdwe,
    /// Installing the seccomp program.
    Seccomp,
    /// `execve`.
    Exec {
        /// The program.
        path: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::ResetSignals => f.write_str("resetting signals"),
            Step::NewSession => f.write_str("starting a new session"),
            Step::PrivateMounts => f.write_str("making the mounts private"),
            Step::RootTmpfs => f.write_str("mounting the root tmpfs"),
            Step::BindSource { source } => write!(f, "looking up bind source {source}"),
            Step::MountPoint { target } => write!(f, "creating mount point {target}"),
            Step::Mount { target } => write!(f, "mounting {target}"),
            Step::Remount { target } => write!(f, "applying the flags of {target}"),
            Step::PivotRoot => f.write_str("pivoting into the new root"),
            Step::DetachOldRoot => f.write_str("detaching the old root"),
            Step::RootReadOnly => f.write_str("remounting the root read-only"),
            Step::Chdir => f.write_str("changing to the new root"),
            Step::Stdio => f.write_str("setting up stdin, stdout and stderr"),
            Step::CloseOnExec => f.write_str("marking inherited descriptors close-on-exec"),
            Step::Hostname => f.write_str("setting the hostname"),
            Step::Rlimit { resource } => write!(f, "setting rlimit {resource:?}"),
            Step::BoundingSet => f.write_str("dropping the capability bounding set"),
            Step::AmbientSet => f.write_str("clearing the ambient capabilities"),
            Step::Groups => f.write_str("clearing the supplementary groups"),
            Step::Gid => f.write_str("setting the gid"),
            Step::Uid => f.write_str("setting the uid"),
            Step::Capabilities => f.write_str("clearing the capability sets"),
            Step::NoNewPrivs => f.write_str("setting no_new_privs"),
            Step::LandlockRule { path } => write!(f, "adding the Landlock rule for {path}"),
            Step::LandlockRestrict => f.write_str("enforcing the Landlock ruleset"),
            Step::Mdwe => f.write_str("setting memory-deny-write-execute"),
            Step::Seccomp => f.write_str("installing the seccomp program"),
            Step::Exec { path } => write!(f, "executing {path}"),
        }
    }
}

/// Errors preparing, spawning or signalling a task.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A directory `prepare` needs could not be set up.
    #[error("preparing {path}")]
    Prepare {
        /// The cgroup directory (the root, or `<root>/limpet`) or `<work>`.
        path: PathBuf,
        /// Why creating it or writing to it failed.
        #[source]
        source: io::Error,
    },
    /// The task's name is not a single path component.
    #[error("task name {task:?} is not a single path component")]
    TaskName {
        /// The name as the policy gives it.
        task: String,
    },
    /// A mount target is not an absolute path below `/` without `.` or `..`.
    #[error("task \"{task}\": mount target {target:?} is not a plain absolute path")]
    MountTarget {
        /// The task's name, as the policy gives it.
        task: String,
        /// The target as the policy gives it.
        target: String,
    },
    /// The policy's ids are root's, invalid, or come with supplementary groups.
    #[error("task \"{task}\": refusing uid {uid} and gid {gid} (root, invalid, or with groups)")]
    Credentials {
        /// The task's name, as the policy gives it.
        task: String,
        /// The uid the policy gives the task.
        uid: u32,
        /// The gid the policy gives the task.
        gid: u32,
    },
    /// An argument, variable or the program path holds a NUL byte.
    #[error("task \"{task}\": the program path, an argument or a variable holds a NUL byte")]
    NulInExec {
        /// The task's name, as the policy gives it.
        task: String,
    },
    /// The seccomp program is for another architecture than this PID 1's.
    #[error("task \"{task}\": seccomp program for {program}, but this system is {host}")]
    SeccompArch {
        /// The task's name, as the policy gives it.
        task: String,
        /// The architecture the program was compiled for.
        program: Arch,
        /// The architecture this PID 1 was built for.
        host: String,
    },
    /// The task's data directory could not be created or given to the task.
    #[error("task \"{task}\": preparing the data directory {path}")]
    DataDir {
        /// The task's name, as the policy gives it.
        task: String,
        /// `<data>/<task>`.
        path: PathBuf,
        /// Why creating it, or giving it to the task's uid and gid, failed.
        #[source]
        source: io::Error,
    },
    /// The task's root directory under `<work>` could not be created.
    #[error("task \"{task}\": creating the root directory {path}")]
    RootDir {
        /// The task's name, as the policy gives it.
        task: String,
        /// `<work>/<task>`.
        path: PathBuf,
        /// Why creating it failed.
        #[source]
        source: io::Error,
    },
    /// Creating the task's cgroup, writing one of its files, or opening it.
    #[error("task \"{task}\": setting up cgroup {path}")]
    Cgroup {
        /// The task's name, as the policy gives it.
        task: String,
        /// The cgroup directory, or the limit file in it that could not be written.
        path: PathBuf,
        /// Why creating, writing or opening it failed.
        #[source]
        source: io::Error,
    },
    /// `pipe2` failed.
    #[error("task \"{task}\": creating pipes")]
    Pipe {
        /// The task's name, as the policy gives it.
        task: String,
        /// Why `pipe2` failed.
        #[source]
        source: io::Error,
    },
    /// `clone3` failed.
    #[error("task \"{task}\": clone3")]
    Clone {
        /// The task's name, as the policy gives it.
        task: String,
        /// Why `clone3` failed.
        #[source]
        source: io::Error,
    },
    /// Reading the child's error report failed, or it was malformed.
    #[error("task \"{task}\": reading the child's setup report")]
    Report {
        /// The task's name, as the policy gives it.
        task: String,
        /// Why reading the report failed, or what is wrong with it (short, or an unknown step).
        #[source]
        source: io::Error,
    },
    /// A step of the child's setup failed; the child has exited and been reaped.
    #[error("task \"{task}\": {step}")]
    Child {
        /// The task's name, as the policy gives it.
        task: String,
        /// The step of the child's setup that failed.
        step: Step,
        /// The errno the child reported for it.
        #[source]
        source: io::Error,
    },
    /// Signalling the task failed.
    #[error("signalling task pid {pid}")]
    Kill {
        /// The task's pid (in PID 1's namespace).
        pid: i32,
        /// Why the signal or the `cgroup.kill` write failed.
        #[source]
        source: io::Error,
    },
    /// Removing the task's cgroup failed.
    #[error("removing cgroup {path}")]
    RemoveCgroup {
        /// The task's cgroup directory.
        path: PathBuf,
        /// Why removing it failed (EBUSY while a process is left).
        #[source]
        source: io::Error,
    },
}

/// The controllers every task's cgroup gets.
const CONTROLLERS: &str = "+memory +pids +cpu";
/// The CPU budget file, written after exec.
const CPU_MAX_FILE: &str = "cpu.max";
/// The directory under the cgroup root that holds every task's cgroup.
pub const CGROUP_PARENT: &str = "limpet";

/// Once at boot: on cgroup v2, enables the task controllers in the root and in
/// `<root>/limpet` (creating it); creates `<work>`. Fails with [`SpawnError::Prepare`]
/// naming the directory that could not be set up; an existing directory is no error.
pub fn prepare(roots: &Roots) -> Result<(), SpawnError> {
    if let Cgroups::V2 { root } = &roots.cgroups {
        let parent = root.join(CGROUP_PARENT);
        write_file(&root.join("cgroup.subtree_control"), CONTROLLERS)
            .map_err(prepare_error(root))?;
        create_dir(&parent, 0o755).map_err(prepare_error(&parent))?;
        write_file(&parent.join("cgroup.subtree_control"), CONTROLLERS)
            .map_err(prepare_error(&parent))?;
    }
    create_dir(&roots.work, 0o700).map_err(prepare_error(&roots.work))
}

fn prepare_error(path: &Path) -> impl FnOnce(io::Error) -> SpawnError + '_ {
    move |source| SpawnError::Prepare {
        path: path.to_path_buf(),
        source,
    }
}

/// Starts `policy`'s task; returns once it has exec'd its binary, or with the step that
/// failed. Must be called from a single-threaded process (limpet-init is one).
pub fn spawn(policy: &TaskPolicy, roots: &Roots) -> Result<Spawned, SpawnError> {
    // 1.
    check_arch(policy)?;
    let plan = Plan::new(policy, roots)?;
    // 2.
    prepare_data_dir(policy, roots)?;
    create_dir(&plan.root, 0o700).map_err(|source| SpawnError::RootDir {
        task: policy.name.clone(),
        path: plan.root.clone(),
        source,
    })?;
    // 3.
    let cgroup = create_cgroup(policy, roots)?;
    // 4.
    let pipes = Pipes::new().map_err(|source| SpawnError::Pipe {
        task: policy.name.clone(),
        source,
    })?;
    let landlock = match sys::landlock_abi() {
        Some(abi) => Landlock::Enforced { abi },
        None => Landlock::NotEnforced,
    };
    // 5.
    let forked = sys::clone3(
        namespace_flags(policy),
        cgroup.as_ref().map(|(_, fd)| fd.as_fd()),
    );
    let pid = match forked {
        Ok(sys::Forked::Child) => child::run(&plan, pipes.child),
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(source) => {
            if let Some((path, _)) = &cgroup {
                let _ = std::fs::remove_dir(path);
            }
            return Err(SpawnError::Clone {
                task: policy.name.clone(),
                source,
            });
        }
    };
    // The child's ends must be closed here, or the report pipe never reaches end-of-file.
    drop(pipes.child);
    // 6.
    let cgroup = cgroup.map(|(path, _fd)| path);
    match read_report(&pipes.report) {
        Ok(None) => {
            if let Some(path) = &cgroup {
                let file = path.join(CPU_MAX_FILE);
                if let Err(source) = write_file(&file, &policy.cgroup.cpu_max.to_string()) {
                    // A task without its CPU budget must not run.
                    let _ = write_file(&path.join("cgroup.kill"), "1");
                    reap_failed(pid, Some(path), true);
                    return Err(SpawnError::Cgroup {
                        task: policy.name.clone(),
                        path: file,
                        source,
                    });
                }
            }
            Ok(Spawned {
                pid,
                stdout: pipes.stdout,
                stderr: pipes.stderr,
                cgroup,
                landlock,
            })
        }
        Ok(Some(report)) => {
            reap_failed(pid, cgroup.as_deref(), false);
            Err(SpawnError::Child {
                task: policy.name.clone(),
                step: step_of(report, policy),
                source: if report.errno > 0 {
                    io::Error::from_raw_os_error(report.errno)
                } else {
                    io::Error::other("no errno")
                },
            })
        }
        Err(source) => {
            reap_failed(pid, cgroup.as_deref(), true);
            Err(SpawnError::Report {
                task: policy.name.clone(),
                source,
            })
        }
    }
}

/// Sends `signal` to the task. [`Signal::Kill`] with a cgroup writes `cgroup.kill`, which
/// kills every process in it at once.
pub fn kill_task(task: &Spawned, signal: Signal) -> Result<(), SpawnError> {
    let kill_error = |source| SpawnError::Kill {
        pid: task.pid,
        source,
    };
    if let (Signal::Kill, Some(cgroup)) = (signal, &task.cgroup) {
        return write_file(&cgroup.join("cgroup.kill"), "1").map_err(kill_error);
    }
    let pid = Pid::from_raw(task.pid)
        .ok_or_else(|| kill_error(io::Error::from_raw_os_error(libc::ESRCH)))?;
    let sig = match signal {
        Signal::Term => rustix::process::Signal::TERM,
        Signal::Kill => rustix::process::Signal::KILL,
    };
    rustix::process::kill_process(pid, sig).map_err(|e| kill_error(e.into()))
}

/// Removes the cgroup of a task that has exited and been reaped (the kernel refuses with
/// EBUSY while a process is left in it). Nothing to do without one.
pub fn remove_cgroup(task: &Spawned) -> Result<(), SpawnError> {
    match &task.cgroup {
        Some(path) => std::fs::remove_dir(path).map_err(|source| SpawnError::RemoveCgroup {
            path: path.clone(),
            source,
        }),
        None => Ok(()),
    }
}

/// Parent step 1: the program must be for this machine.
fn check_arch(policy: &TaskPolicy) -> Result<(), SpawnError> {
    let host = Arch::host();
    if host == Some(policy.seccomp.arch) {
        return Ok(());
    }
    Err(SpawnError::SeccompArch {
        task: policy.name.clone(),
        program: policy.seccomp.arch,
        host: host.map_or_else(|| std::env::consts::ARCH.to_owned(), |a| a.to_string()),
    })
}

/// Parent step 2: `<data>/<task>`, created 0700 if missing, then given to the task's ids
/// (they follow the manifest order and may change with an update). Opened without following
/// a symbolic link, so a task cannot make PID 1 chown another path.
fn prepare_data_dir(policy: &TaskPolicy, roots: &Roots) -> Result<(), SpawnError> {
    let path = roots.data.join(task_component(&policy.name)?);
    let result = (|| -> io::Result<()> {
        create_dir(&path, 0o700)?;
        let dir = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let c = &policy.credentials;
        rustix::fs::fchown(
            &dir,
            Some(rustix::fs::Uid::from_raw_unchecked(c.uid)),
            Some(rustix::fs::Gid::from_raw_unchecked(c.gid)),
        )?;
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o700))?;
        Ok(())
    })();
    result.map_err(|source| SpawnError::DataDir {
        task: policy.name.clone(),
        path,
        source,
    })
}

/// Parent step 3: the task's cgroup with its limits, and a descriptor of it for
/// CLONE_INTO_CGROUP. `None` when budgets are not enforced.
fn create_cgroup(
    policy: &TaskPolicy,
    roots: &Roots,
) -> Result<Option<(PathBuf, OwnedFd)>, SpawnError> {
    let Cgroups::V2 { root } = &roots.cgroups else {
        return Ok(None);
    };
    let path = task_cgroup(root, &policy.name)?;
    let error = |path: PathBuf| {
        let task = policy.name.clone();
        move |source| SpawnError::Cgroup { task, path, source }
    };
    create_dir(&path, 0o755).map_err(error(path.clone()))?;
    // cpu.max is written once the task has exec'd (see `spawn`): the setup before exec is
    // ours, and throttling it to the task's share made every start take seconds under
    // emulation while PID 1 waited. Memory and pids budgets hold from the first instruction.
    for (file, value) in policy.cgroup.files() {
        if file == CPU_MAX_FILE {
            continue;
        }
        let file = path.join(file);
        write_file(&file, &value).map_err(error(file.clone()))?;
    }
    let fd = rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| error(path.clone())(e.into()))?;
    Ok(Some((path, fd)))
}

/// The pipes of one spawn: the parent's read ends and the child's write ends, all
/// close-on-exec (the child copies its ends onto 1 and 2, which clears the flag there).
#[derive(Debug)]
struct Pipes {
    stdout: OwnedFd,
    stderr: OwnedFd,
    report: OwnedFd,
    child: ChildIo,
}

impl Pipes {
    /// Parent step 4.
    fn new() -> io::Result<Pipes> {
        let pipe = || rustix::pipe::pipe_with(PipeFlags::CLOEXEC);
        let (stdout, stdout_w) = pipe()?;
        let (stderr, stderr_w) = pipe()?;
        let (report, report_w) = pipe()?;
        Ok(Pipes {
            stdout,
            stderr,
            report,
            child: ChildIo {
                stdout: stdout_w,
                stderr: stderr_w,
                report: report_w,
            },
        })
    }
}

/// Parent step 5: the namespaces of `policy`.
fn namespace_flags(policy: &TaskPolicy) -> u64 {
    // Each namespace but the network one has the single variant `New`.
    let mut flags = libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    if policy.namespaces.net == NetNamespace::NewEmpty {
        flags |= libc::CLONE_NEWNET;
    }
    u64::from(flags.unsigned_abs())
}

/// Parent step 6: `None` at end-of-file (the child exec'd), or the child's report.
fn read_report(pipe: &OwnedFd) -> io::Result<Option<Report>> {
    let mut buf = [0u8; Report::LEN];
    let mut filled = 0;
    while filled < Report::LEN {
        let rest = buf.get_mut(filled..).unwrap_or_default();
        match rustix::io::read(pipe, rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match filled {
        0 => Ok(None),
        Report::LEN => Report::decode(buf)
            .map(Some)
            .ok_or_else(|| io::Error::other("unknown step in the child's report")),
        _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
    }
}

/// Reaps a child whose setup failed (killing it first if its state is unknown) and removes
/// its cgroup: a failed spawn leaves nothing behind.
fn reap_failed(pid: i32, cgroup: Option<&Path>, kill_first: bool) {
    if let Some(pid) = Pid::from_raw(pid) {
        if kill_first {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        while let Err(rustix::io::Errno::INTR) =
            rustix::process::waitpid(Some(pid), WaitOptions::empty())
        {}
    }
    if let Some(path) = cgroup {
        let _ = std::fs::remove_dir(path);
    }
}

/// The public form of a report, with the mount, limit or path it refers to.
fn step_of(report: Report, policy: &TaskPolicy) -> Step {
    let index = usize::try_from(report.index).unwrap_or(usize::MAX);
    let mount = policy.mounts.get(index);
    let target = || mount.map(|m| m.target.clone()).unwrap_or_default();
    match report.code {
        Code::ResetSignals => Step::ResetSignals,
        Code::NewSession => Step::NewSession,
        Code::PrivateMounts => Step::PrivateMounts,
        Code::RootTmpfs => Step::RootTmpfs,
        Code::BindSource => Step::BindSource {
            source: mount.map(|m| m.source.clone()).unwrap_or_default(),
        },
        Code::MountPoint => Step::MountPoint { target: target() },
        Code::Mount => Step::Mount { target: target() },
        Code::Remount => Step::Remount { target: target() },
        Code::PivotRoot => Step::PivotRoot,
        Code::DetachOldRoot => Step::DetachOldRoot,
        Code::RootReadOnly => Step::RootReadOnly,
        Code::Chdir => Step::Chdir,
        Code::Stdio => Step::Stdio,
        Code::CloseOnExec => Step::CloseOnExec,
        Code::Hostname => Step::Hostname,
        Code::Rlimit => Step::Rlimit {
            resource: policy
                .rlimits
                .get(index)
                .map_or(Resource::Nofile, |r| r.resource),
        },
        Code::BoundingSet => Step::BoundingSet,
        Code::AmbientSet => Step::AmbientSet,
        Code::Groups => Step::Groups,
        Code::Gid => Step::Gid,
        Code::Uid => Step::Uid,
        Code::Capabilities => Step::Capabilities,
        Code::NoNewPrivs => Step::NoNewPrivs,
        Code::LandlockRule => {
            let l = &policy.landlock;
            let path = l
                .read
                .iter()
                .chain(&l.write)
                .chain(&l.devices)
                .chain(&l.execute)
                .nth(index)
                .cloned()
                .unwrap_or_default();
            Step::LandlockRule { path }
        }
        Code::LandlockRestrict => Step::LandlockRestrict,
        Code::Mdwe => Step::Mdwe,
        Code::Seccomp => Step::Seccomp,
        Code::Exec => Step::Exec {
            path: policy.exec.path.clone(),
        },
    }
}

/// Where task `name`'s cgroup lives under the cgroup2 mount `root`: `<root>/limpet/<name>`
/// (level 2, the level the network policy's cgroup match names). Fails with
/// [`SpawnError::TaskName`] when `name` is not a single path component.
pub fn task_cgroup(root: &Path, name: &str) -> Result<PathBuf, SpawnError> {
    Ok(root.join(CGROUP_PARENT).join(task_component(name)?))
}

/// `mkdir` with `mode`, accepting an existing directory.
fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    match rustix::fs::mkdir(path, Mode::from_raw_mode(mode)) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) if path.is_dir() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes `value` to a kernel file (cgroup) in one `write`, as the kernel expects.
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reports_round_trip() {
        for n in 0..40 {
            let Some(code) = Code::from_number(n) else {
                assert!(n >= 28);
                continue;
            };
            let r = Report {
                code,
                index: 7,
                errno: libc::ENOENT,
            };
            assert_eq!(Report::decode(r.encode()), Some(r));
        }
    }

    #[test]
    fn write_file_creates_nothing() {
        // A cgroup file that does not exist is an error, not a new regular file.
        let dir = std::env::temp_dir().join(format!("limpet-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(write_file(&dir.join("memory.max"), "1").is_err());
        std::fs::remove_dir(&dir).unwrap();
    }
}
