//! The child side of [`spawn`](super::spawn): from `clone3` to `execve`, one function per
//! step. [`STEPS`] is the one ordered table of them: the child runs it in order, the error
//! codes a step may report are listed with it (a code's wire number is its place in the
//! table), and the numbered list in the module doc of [`spawn`](super) and in
//! `docs/sandbox.md` is rendered from it by a test.
//!
//! Every step that fails ends the child with [`FAILED_EXIT_CODE`] after writing a
//! [`Report`] (which failure, which item of the plan, the errno) to the error-report pipe.
//! The child runs in a copy of a single-threaded PID 1, so it may allocate; it never
//! returns into the caller's code and never panics (no `unwrap`, no indexing).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use landlock::{
    Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, ABI,
};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::process::{Gid, Uid};

use super::plan::{Grant, MountWhat, Plan, PlannedMount, TMPFS_ROOT_OPTIONS};
use super::sys;
use crate::seccomp;

/// Exit code of a child whose setup failed (the report pipe says why). The shell's
/// "command not found or not executable", which is what the supervisor sees.
pub(super) const FAILED_EXIT_CODE: i32 = 127;

/// The Landlock ABI whose filesystem rights the policy's rules are written for (5: up to
/// IoctlDev). Rights of later ABIs are not handled, so no right the policy cannot grant
/// is denied; rights an older kernel lacks are dropped (best effort).
pub(super) const LANDLOCK_ABI: ABI = ABI::V5;

/// Which failure of which step; the wire form of [`super::Step`] without its strings. Each
/// code belongs to the one step of [`STEPS`] that lists it, and its number on the wire is
/// its place in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Code {
    ResetSignals,
    NewSession,
    PrivateMounts,
    RootTmpfs,
    BindSource,
    MountPoint,
    Mount,
    Remount,
    PivotRoot,
    DetachOldRoot,
    RootReadOnly,
    Chdir,
    Stdio,
    CloseOnExec,
    Hostname,
    Rlimit,
    BoundingSet,
    AmbientSet,
    Groups,
    Gid,
    Uid,
    Capabilities,
    NoNewPrivs,
    LandlockRule,
    LandlockRestrict,
    Mdwe,
    Seccomp,
    Exec,
}

impl Code {
    /// Every code, in table order.
    fn all() -> impl Iterator<Item = Code> {
        STEPS.iter().flat_map(|step| step.reports.iter().copied())
    }

    /// The code's place in [`STEPS`]; `None` for a code no step lists (a unit test keeps
    /// that from happening).
    fn number(self) -> Option<u32> {
        let index = Code::all().position(|c| c == self)?;
        u32::try_from(index).ok()
    }

    pub(super) fn from_number(n: u32) -> Option<Code> {
        Code::all().nth(usize::try_from(n).ok()?)
    }
}

/// One numbered step of the child's setup.
#[derive(Debug)]
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "number, function and does are for the docs' rendering test"
    )
)]
pub(super) struct ChildStep {
    /// From 1, in the order the steps run.
    pub number: u8,
    /// The function that carries it out.
    pub function: &'static str,
    /// What it does and why, for the docs (Markdown, one paragraph).
    pub does: &'static str,
    /// The failures it may report.
    pub reports: &'static [Code],
    /// The step.
    pub run: fn(&mut Child<'_>) -> Result<(), Report>,
}

/// The child's steps, in order: the last one is `execve`, which returns only on failure.
pub(super) const STEPS: &[ChildStep] = &[
    ChildStep {
        number: 1,
        function: "reset_process",
        does: "Reset the signal mask and dispositions; `setsid` (its own session and process \
               group).",
        reports: &[Code::ResetSignals, Code::NewSession],
        run: reset_process,
    },
    ChildStep {
        number: 2,
        function: "make_mounts_private",
        does: "Make `/` recursively private (`MS_REC | MS_PRIVATE`): no mount made here \
               propagates back to PID 1's namespace, nor any of PID 1's later mounts into the \
               task.",
        reports: &[Code::PrivateMounts],
        run: make_mounts_private,
    },
    ChildStep {
        number: 3,
        function: "mount_root_tmpfs",
        does: "Mount a small tmpfs on `<work>/<task>` (`/run/limpet/tasks/<task>` on a device; \
               `mode=0755,size=64k,nr_inodes=256`, `nosuid,nodev,noexec`) as the task's new \
               root.",
        reports: &[Code::RootTmpfs],
        run: mount_root_tmpfs,
    },
    ChildStep {
        number: 4,
        function: "apply_mounts",
        does: "The policy's mounts, in order: each mount point created (parents 0755; a \
               symbolic link on the way is refused with `ELOOP`, so an earlier writable bind \
               cannot redirect a later mount), then a bind (not recursive) remounted with \
               `MS_BIND | MS_REMOUNT` and its flags, which a bind ignores otherwise \
               (`MS_RDONLY` for read-only binds; every mount `nosuid`, `noexec` except the \
               task's binary, `nodev` except `/dev/null` and declared devices); a tmpfs of the \
               declared size owned by the task (0700); a fresh procfs with `subset=pid`, which \
               inside the new PID namespace shows only the task.",
        reports: &[
            Code::BindSource,
            Code::MountPoint,
            Code::Mount,
            Code::Remount,
        ],
        run: apply_mounts,
    },
    ChildStep {
        number: 5,
        function: "pivot_into_root",
        does: "Enter the new root: `pivot_root(\".\", \".\")` and detach the old root \
               (`MNT_DETACH`). When the kernel refuses with `EINVAL`, as it always does when the \
               current root is the initramfs (rootfs), where PID 1 runs on a device, fall back \
               as runc's `no_pivot_root` does: move the new root over `/` (`MS_MOVE`) and \
               `chroot(\".\")`. The initramfs then stays below it in the task's namespace, \
               unreachable: leaving a chroot needs `CAP_SYS_CHROOT`, which the task never has, \
               and no mount, `pivot_root` or `chroot` call passes its seccomp filter. Then \
               `chdir(\"/\")`.",
        reports: &[Code::PivotRoot, Code::DetachOldRoot, Code::Chdir],
        run: pivot_into_root,
    },
    ChildStep {
        number: 6,
        function: "remount_root_read_only",
        does: "Remount `/` read-only (`ro,nosuid,nodev,noexec`; the binds on it keep their own \
               flags).",
        reports: &[Code::RootReadOnly],
        run: remount_root_read_only,
    },
    ChildStep {
        number: 7,
        function: "install_stdio",
        does: "stdin from the task's `/dev/null`, stdout and stderr onto the pipes; every other \
               descriptor close-on-exec (`close_range`).",
        reports: &[Code::Stdio, Code::CloseOnExec],
        run: install_stdio,
    },
    ChildStep {
        number: 8,
        function: "set_hostname",
        does: "`sethostname(<task>)`.",
        reports: &[Code::Hostname],
        run: set_hostname,
    },
    ChildStep {
        number: 9,
        function: "set_rlimits",
        does: "rlimits, soft = hard. Off-spec: before the identity change rather than after it, \
               because raising a hard limit needs `CAP_SYS_RESOURCE`, which the uid change \
               takes away.",
        reports: &[Code::Rlimit],
        run: set_rlimits,
    },
    ChildStep {
        number: 10,
        function: "drop_privileges",
        does: "Every capability out of the bounding set (until `EINVAL`: past the kernel's \
               last), the ambient set cleared, `setgroups([])`, `setresgid` and `setresuid` to \
               the task's ids, then `capset` with every set empty (the uid change empties \
               effective and permitted, not inheritable); umask 077.",
        reports: &[
            Code::BoundingSet,
            Code::AmbientSet,
            Code::Groups,
            Code::Gid,
            Code::Uid,
            Code::Capabilities,
        ],
        run: drop_privileges,
    },
    ChildStep {
        number: 11,
        function: "set_no_new_privs",
        does: "`PR_SET_NO_NEW_PRIVS`: no later exec can gain privileges.",
        reports: &[Code::NoNewPrivs],
        run: set_no_new_privs,
    },
    ChildStep {
        number: 12,
        function: "apply_landlock",
        does: "Landlock, best effort over ABI 5's filesystem rights, from the policy's \
               `landlock` paths; without Landlock in the kernel `spawn` reports \
               `Landlock::NotEnforced`.",
        reports: &[Code::LandlockRule, Code::LandlockRestrict],
        run: apply_landlock,
    },
    ChildStep {
        number: 13,
        function: "set_mdwe",
        does: "`PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN)` where the kernel has it (6.3+; the \
               `EINVAL` of Debian's 6.1 is tolerated, and there the seccomp program's \
               write-xor-execute rules stand alone).",
        reports: &[Code::Mdwe],
        run: set_mdwe,
    },
    ChildStep {
        number: 14,
        function: "install_seccomp",
        does: "The seccomp program, last: from here on every call, `execve` included, is \
               checked by it.",
        reports: &[Code::Seccomp],
        run: install_seccomp,
    },
    ChildStep {
        number: 15,
        function: "exec",
        does: "`execve` with exactly the policy's argv and environment.",
        reports: &[Code::Exec],
        run: exec,
    },
];

/// What the child writes to the report pipe when a step fails: 12 bytes, native-endian
/// (both ends are the same process image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Report {
    pub code: Code,
    /// The mount, rlimit or Landlock rule, by its index in the plan; 0 for other steps.
    pub index: u32,
    /// The errno; 0 when the failure had none (a Landlock or seccomp library error).
    pub errno: i32,
}

impl Report {
    pub(super) const LEN: usize = 12;

    pub(super) fn encode(self) -> [u8; Report::LEN] {
        let mut out = [0; Report::LEN];
        // A code no step lists goes out as a number no step has: the parent reports a
        // malformed report rather than a wrong step.
        let code = self.code.number().unwrap_or(u32::MAX);
        out[..4].copy_from_slice(&code.to_ne_bytes());
        out[4..8].copy_from_slice(&self.index.to_ne_bytes());
        out[8..].copy_from_slice(&self.errno.to_ne_bytes());
        out
    }

    pub(super) fn decode(bytes: [u8; Report::LEN]) -> Option<Report> {
        let [a, b, c, d, e, f, g, h, i, j, k, l] = bytes;
        Some(Report {
            code: Code::from_number(u32::from_ne_bytes([a, b, c, d]))?,
            index: u32::from_ne_bytes([e, f, g, h]),
            errno: i32::from_ne_bytes([i, j, k, l]),
        })
    }
}

/// The child's ends of the pipes.
#[derive(Debug)]
pub(super) struct ChildIo {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub report: OwnedFd,
}

/// What the steps work on: the plan, and the child's ends of the output pipes until step 7
/// puts them on stdout and stderr.
#[derive(Debug)]
pub(super) struct Child<'a> {
    plan: &'a Plan,
    output: Option<(OwnedFd, OwnedFd)>,
}

/// Runs every step, the last `execve`; on failure reports the step and exits.
pub(super) fn run(plan: &Plan, io: ChildIo) -> ! {
    let ChildIo {
        stdout,
        stderr,
        report,
    } = io;
    let mut child = Child {
        plan,
        output: Some((stdout, stderr)),
    };
    let failed = STEPS
        .iter()
        .find_map(|step| (step.run)(&mut child).err())
        // Unreachable: `execve` returns only with an error.
        .unwrap_or(Report {
            code: Code::Exec,
            index: 0,
            errno: 0,
        });
    // Nothing more can be done if the parent cannot be told: the exit code still says the
    // task did not start.
    let _ = rustix::io::write(&report, &failed.encode());
    sys::exit(FAILED_EXIT_CODE)
}

/// A failed step with its errno.
fn fail(code: Code, index: usize) -> impl FnOnce(io::Error) -> Report {
    move |err| Report {
        code,
        index: u32::try_from(index).unwrap_or(u32::MAX),
        errno: sys::errno_of(&err),
    }
}

/// Like [`fail`], for a `rustix::io::Errno`.
fn fail_errno(code: Code, index: usize) -> impl FnOnce(rustix::io::Errno) -> Report {
    move |err| fail(code, index)(io::Error::from(err))
}

/// Step 1: process state inherited from PID 1.
fn reset_process(_: &mut Child<'_>) -> Result<(), Report> {
    sys::reset_signals().map_err(fail(Code::ResetSignals, 0))?;
    rustix::process::setsid().map_err(fail_errno(Code::NewSession, 0))?;
    Ok(())
}

/// Step 2: `/` and everything below it MS_PRIVATE, so no mount made here propagates back to
/// PID 1's namespace (nor any of PID 1's later mounts into the task).
fn make_mounts_private(_: &mut Child<'_>) -> Result<(), Report> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(fail_errno(Code::PrivateMounts, 0))
}

/// Step 3: the task's root, a small tmpfs holding only mount points.
fn mount_root_tmpfs(child: &mut Child<'_>) -> Result<(), Report> {
    rustix::mount::mount(
        "tmpfs",
        &child.plan.root,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        Some(TMPFS_ROOT_OPTIONS),
    )
    .map_err(fail_errno(Code::RootTmpfs, 0))
}

/// Step 4: the policy's mounts, in order.
fn apply_mounts(child: &mut Child<'_>) -> Result<(), Report> {
    for (index, mount) in child.plan.mounts.iter().enumerate() {
        apply_mount(index, mount)?;
    }
    Ok(())
}

/// One mount of the policy: its mount point, the mount, and for a bind the remount that
/// applies its flags (a bind ignores them).
fn apply_mount(index: usize, m: &PlannedMount) -> Result<(), Report> {
    let is_dir = match &m.what {
        MountWhat::Bind => std::fs::metadata(&m.source)
            .map_err(fail(Code::BindSource, index))?
            .is_dir(),
        MountWhat::Tmpfs { .. } | MountWhat::Proc => true,
    };
    make_mount_point(&m.target, is_dir).map_err(fail(Code::MountPoint, index))?;
    match &m.what {
        MountWhat::Bind => {
            // Not recursive: mounts below the source keep out of the task.
            rustix::mount::mount_bind(&m.source, &m.target)
                .map_err(fail_errno(Code::Mount, index))?;
            rustix::mount::mount_remount(&m.target, MountFlags::BIND | m.flags, "")
                .map_err(fail_errno(Code::Remount, index))
        }
        MountWhat::Tmpfs { options } => rustix::mount::mount(
            "tmpfs",
            &m.target,
            "tmpfs",
            m.flags,
            Some(options.as_c_str()),
        )
        .map_err(fail_errno(Code::Mount, index)),
        MountWhat::Proc => {
            // In the new PID namespace: it shows the task's processes only.
            rustix::mount::mount("proc", &m.target, "proc", m.flags, Some(c"subset=pid"))
                .map_err(fail_errno(Code::Mount, index))
        }
    }
}

/// Creates `target`'s missing parents (0755) and `target` itself: a directory, or an empty
/// file to bind a file or device onto. Refuses a symbolic link on the way (ELOOP), so an
/// earlier bind of a writable directory cannot redirect a later mount.
fn make_mount_point(target: &Path, is_dir: bool) -> io::Result<()> {
    let mut path = std::path::PathBuf::new();
    let mut components = target.components().peekable();
    while let Some(component) = components.next() {
        path.push(component);
        let last = components.peek().is_none();
        if path.parent().is_none() {
            continue; // the filesystem root
        }
        if last && !is_dir {
            match rustix::fs::open(
                &path,
                OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(_) => {}
                Err(e) if e == rustix::io::Errno::EXIST => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            match rustix::fs::mkdir(&path, Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::EXIST => {}
                Err(e) => return Err(e.into()),
            }
        }
        if std::fs::symlink_metadata(&path)?.file_type().is_symlink() {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
    }
    Ok(())
}

/// Step 5: `pivot_root` into the new root and detach the old one (or, from an initramfs
/// root, move the new root over "/" and chroot into it), which leaves the task's
/// namespace with only the mounts built above; then `chdir("/")`.
fn pivot_into_root(child: &mut Child<'_>) -> Result<(), Report> {
    rustix::process::chdir(&child.plan.root).map_err(fail_errno(Code::PivotRoot, 0))?;
    // pivot_root(".", "."): the old root ends up stacked on the new one, at ".", and is
    // detached next; no directory for it is needed in the new root.
    match rustix::process::pivot_root(".", ".") {
        Ok(()) => {
            rustix::mount::unmount(".", UnmountFlags::DETACH)
                .map_err(fail_errno(Code::DetachOldRoot, 0))?;
        }
        // The kernel refuses pivot_root when the current root is the initramfs (rootfs),
        // which is where PID 1 runs on a device. Then, as runc's `no_pivot_root`, the new
        // root is moved over "/" and entered with chroot. The initramfs stays below it in
        // this namespace, unreachable: leaving a chroot needs CAP_SYS_CHROOT, which the
        // task never has, and no mount or pivot_root call passes its seccomp filter.
        Err(rustix::io::Errno::INVAL) => {
            rustix::mount::mount_move(".", "/").map_err(fail_errno(Code::PivotRoot, 1))?;
            rustix::process::chroot(".").map_err(fail_errno(Code::PivotRoot, 2))?;
        }
        Err(e) => return Err(fail_errno(Code::PivotRoot, 0)(e)),
    }
    rustix::process::chdir("/").map_err(fail_errno(Code::Chdir, 0))
}

/// Step 6: the root tmpfs read-only (the binds on it keep their own flags).
fn remount_root_read_only(_: &mut Child<'_>) -> Result<(), Report> {
    rustix::mount::mount_remount(
        "/",
        MountFlags::BIND
            | MountFlags::RDONLY
            | MountFlags::NOSUID
            | MountFlags::NODEV
            | MountFlags::NOEXEC,
        "",
    )
    .map_err(fail_errno(Code::RootReadOnly, 0))
}

/// Step 7: stdin from the task's `/dev/null`, stdout and stderr to the pipes, then every
/// other descriptor close-on-exec.
fn install_stdio(child: &mut Child<'_>) -> Result<(), Report> {
    // Taken only once, by this step; `None` would mean the table ran it twice.
    let (stdout, stderr) = child
        .output
        .take()
        .ok_or_else(|| fail(Code::Stdio, 0)(io::Error::from_raw_os_error(libc::EBADF)))?;
    dup_stdio(stdout, stderr)?;
    sys::cloexec_from(3).map_err(fail(Code::CloseOnExec, 0))
}

/// stdin from the task's `/dev/null`, stdout and stderr to the pipes. Each descriptor is
/// first moved above 2, so that none already sits on the number it is copied to (a `dup2`
/// onto itself would keep its close-on-exec flag).
fn dup_stdio(stdout: OwnedFd, stderr: OwnedFd) -> Result<(), Report> {
    let err = fail_errno(Code::Stdio, 0);
    let null = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(fail_errno(Code::Stdio, 0))?;
    let above = |fd: &OwnedFd| rustix::io::fcntl_dupfd_cloexec(fd, 3);
    let (null, stdout, stderr) = match (above(&null), above(&stdout), above(&stderr)) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(err(e)),
    };
    rustix::stdio::dup2_stdin(null.as_fd()).map_err(fail_errno(Code::Stdio, 0))?;
    rustix::stdio::dup2_stdout(stdout.as_fd()).map_err(fail_errno(Code::Stdio, 0))?;
    rustix::stdio::dup2_stderr(stderr.as_fd()).map_err(fail_errno(Code::Stdio, 0))
}

/// Step 8: the task's name as its hostname (in its own UTS namespace).
fn set_hostname(child: &mut Child<'_>) -> Result<(), Report> {
    rustix::system::sethostname(child.plan.hostname.as_bytes())
        .map_err(fail_errno(Code::Hostname, 0))
}

/// Step 9: the policy's rlimits, soft = hard. Off-spec (the order asked for): before the uid
/// change, not after it, because setting a hard limit above the current one needs
/// CAP_SYS_RESOURCE, which the uid change takes away.
fn set_rlimits(child: &mut Child<'_>) -> Result<(), Report> {
    for (index, &(resource, limit)) in child.plan.rlimits.iter().enumerate() {
        let value = rustix::process::Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        };
        rustix::process::setrlimit(resource, value).map_err(fail_errno(Code::Rlimit, index))?;
    }
    Ok(())
}

/// Step 10: the task's identity, with no capability left in any set; umask 077.
fn drop_privileges(child: &mut Child<'_>) -> Result<(), Report> {
    let plan = child.plan;
    drop_bounding_set()?;
    rustix::thread::clear_ambient_capability_set().map_err(fail_errno(Code::AmbientSet, 0))?;
    rustix::thread::set_thread_groups(&[]).map_err(fail_errno(Code::Groups, 0))?;
    let gid = Gid::from_raw_unchecked(plan.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(fail_errno(Code::Gid, 0))?;
    let uid = Uid::from_raw_unchecked(plan.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(fail_errno(Code::Uid, 0))?;
    clear_capabilities()?;
    rustix::process::umask(Mode::from_raw_mode(0o077));
    Ok(())
}

/// Every capability out of the bounding set, so nothing executed later can gain one.
/// Capability numbers are dense: the first EINVAL is past the kernel's last one.
fn drop_bounding_set() -> Result<(), Report> {
    for cap in 0..64 {
        match sys::drop_bounding_capability(cap) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && cap > 0 => return Ok(()),
            Err(e) => return Err(fail(Code::BoundingSet, 0)(e)),
        }
    }
    Ok(())
}

/// Effective, permitted and inheritable sets emptied. The uid change has already
/// emptied effective and permitted; inheritable survives it, so it is cleared here.
fn clear_capabilities() -> Result<(), Report> {
    let empty = rustix::thread::CapabilitySet::empty();
    rustix::thread::set_capabilities(
        None,
        rustix::thread::CapabilitySets {
            effective: empty,
            permitted: empty,
            inheritable: empty,
        },
    )
    .map_err(fail_errno(Code::Capabilities, 0))
}

/// The access a [`Grant`] gives beneath its path, for the rights of [`LANDLOCK_ABI`].
fn access(grant: Grant) -> BitFlags<AccessFs> {
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    match grant {
        Grant::Read => read,
        Grant::Write => {
            read | AccessFs::WriteFile
                | AccessFs::Truncate
                | AccessFs::MakeReg
                | AccessFs::MakeDir
                | AccessFs::RemoveFile
                | AccessFs::RemoveDir
                | AccessFs::Refer
        }
        Grant::Device => AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::IoctlDev,
        Grant::Execute => AccessFs::Execute | AccessFs::ReadFile,
    }
}

/// The first errno in an error's source chain (Landlock and seccomp errors wrap one).
fn chain_errno(err: &(dyn std::error::Error + 'static)) -> i32 {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return sys::errno_of(io);
        }
        cur = e.source();
    }
    0
}

fn landlock_fail(code: Code, index: usize) -> impl FnOnce(landlock::RulesetError) -> Report {
    move |err| Report {
        code,
        index: u32::try_from(index).unwrap_or(u32::MAX),
        errno: chain_errno(&err),
    }
}

/// Step 11: no exec from here on can gain privileges.
fn set_no_new_privs(_: &mut Child<'_>) -> Result<(), Report> {
    rustix::thread::set_no_new_privs(true).map_err(fail_errno(Code::NoNewPrivs, 0))
}

/// Step 12: Landlock over the task's paths. Every right of [`LANDLOCK_ABI`] is handled, so
/// anything the rules do not grant is denied; on a kernel without Landlock the crate's best
/// effort makes this a no-op, which `spawn` reports as [`super::Landlock::NotEnforced`].
fn apply_landlock(child: &mut Child<'_>) -> Result<(), Report> {
    let plan = child.plan;
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        .and_then(Ruleset::create)
        .map_err(landlock_fail(Code::LandlockRestrict, 0))?;
    for (index, (path, grant)) in plan.landlock.iter().enumerate() {
        let is_dir = std::fs::metadata(path)
            .map_err(fail(Code::LandlockRule, index))?
            .is_dir();
        let fd = PathFd::new(path).map_err(|e| Report {
            code: Code::LandlockRule,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            errno: chain_errno(&e),
        })?;
        let mut rights = access(*grant);
        if !is_dir {
            // Directory rights on a file are an error to the kernel.
            rights &= AccessFs::from_file(LANDLOCK_ABI);
        }
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .map_err(landlock_fail(Code::LandlockRule, index))?;
    }
    ruleset
        .restrict_self()
        .map_err(landlock_fail(Code::LandlockRestrict, 0))?;
    Ok(())
}

/// Step 13: PR_SET_MDWE where the kernel has it (6.3+). EINVAL means it does not; the seccomp
/// program, installed next, refuses executable mappings in any case.
fn set_mdwe(_: &mut Child<'_>) -> Result<(), Report> {
    match sys::set_mdwe_refuse_exec_gain() {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        Err(e) => Err(fail(Code::Mdwe, 0)(e)),
    }
}

/// Step 14: the task's seccomp program, last: from here on every call, `execve` included, is
/// checked by it.
fn install_seccomp(child: &mut Child<'_>) -> Result<(), Report> {
    seccomp::apply(&child.plan.seccomp).map_err(|e| Report {
        code: Code::Seccomp,
        index: 0,
        errno: chain_errno(&e),
    })
}

/// Step 15: `execve`, which returns only on failure.
fn exec(child: &mut Child<'_>) -> Result<(), Report> {
    Err(fail(Code::Exec, 0)(child.plan.exec.exec()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use limpet_testkit::docs;

    /// The numbered list of the steps, as the docs give it.
    fn rendered_steps() -> String {
        let items = STEPS.iter().map(|step| {
            let text = format!("`{}`: {}", step.function, step.does);
            (usize::from(step.number), text)
        });
        docs::numbered_list(items, 92)
    }

    #[test]
    fn steps_are_numbered_in_order() {
        for (i, step) in STEPS.iter().enumerate() {
            assert_eq!(usize::from(step.number), i + 1, "{}", step.function);
        }
    }

    #[test]
    fn every_code_belongs_to_one_step() {
        // A code added to the enum but not to a step fails here (it would go out as an
        // unknown number); the match makes adding a code without listing it here a compile
        // error.
        let every = |code: Code| match code {
            Code::ResetSignals
            | Code::NewSession
            | Code::PrivateMounts
            | Code::RootTmpfs
            | Code::BindSource
            | Code::MountPoint
            | Code::Mount
            | Code::Remount
            | Code::PivotRoot
            | Code::DetachOldRoot
            | Code::RootReadOnly
            | Code::Chdir
            | Code::Stdio
            | Code::CloseOnExec
            | Code::Hostname
            | Code::Rlimit
            | Code::BoundingSet
            | Code::AmbientSet
            | Code::Groups
            | Code::Gid
            | Code::Uid
            | Code::Capabilities
            | Code::NoNewPrivs
            | Code::LandlockRule
            | Code::LandlockRestrict
            | Code::Mdwe
            | Code::Seccomp
            | Code::Exec => code,
        };
        let all: Vec<Code> = Code::all().map(every).collect();
        assert_eq!(
            all.len(),
            28,
            "a code is missing from STEPS or listed twice"
        );
        for (n, code) in all.iter().enumerate() {
            let n = u32::try_from(n).unwrap();
            assert_eq!(code.number(), Some(n), "{code:?} is listed twice");
            assert_eq!(Code::from_number(n), Some(*code));
        }
        assert_eq!(Code::from_number(28), None);
    }

    #[test]
    fn docs_list_the_landlock_rights() {
        let grants = [Grant::Read, Grant::Write, Grant::Device, Grant::Execute];
        let rows = grants.map(|grant| {
            // Which paths get each grant is `policy::compile`'s; said here for the table.
            let (rule, paths) = match grant {
                Grant::Read => ("read", "`/proc`, each of `files.read`"),
                Grant::Write => (
                    "write",
                    "`/data/<name>`, each of `files.write` outside it, `/tmp` (with `tmp`). Not \
                     `/run/notify`: sending to a named socket is no file access Landlock \
                     mediates (the kernel refuses a rule on a socket); its owner and mode limit \
                     it",
                ),
                Grant::Device => ("devices", "`/dev/null`, each of `devices`"),
                Grant::Execute => ("execute", "`/slot/<binary>` only"),
            };
            let rights: Vec<String> = access(grant).iter().map(|r| format!("{r:?}")).collect();
            [rule.to_owned(), rights.join(", "), paths.to_owned()]
        });
        let table = docs::table(&["rule", "rights beneath the path", "paths"], rows);
        let doc = docs::workspace_path("docs/sandbox.md");
        docs::assert_region(&doc, "landlock-rights", file!(), &table);
    }

    #[test]
    fn docs_list_the_steps() {
        let rendered = rendered_steps();
        for doc in ["docs/sandbox.md", "crates/limpet-sandbox/src/spawn/mod.rs"] {
            docs::assert_region(
                &docs::workspace_path(doc),
                "spawn-child-steps",
                file!(),
                &rendered,
            );
        }
    }
}
