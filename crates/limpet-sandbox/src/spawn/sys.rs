//! The raw system calls `spawn` needs that `rustix` does not wrap safely: `clone3`, `execve`,
//! `_exit`, bounding-set drops by number, PR_SET_MDWE, `close_range`, signal resets and the
//! Landlock ABI query.
//!
//! Each function makes one call and returns `io::Result` at once; nothing above this module
//! sees `libc` or a raw file descriptor.

use std::ffi::{c_char, c_int, c_long, c_uint, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `CLONE_INTO_CGROUP` (Linux 5.7): start the child in the cgroup whose directory fd is in
/// `clone_args.cgroup`. Written out because `libc` types it differently per target.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// `PR_MDWE_REFUSE_EXEC_GAIN` (Linux 6.3).
const PR_MDWE_REFUSE_EXEC_GAIN: c_long = 1;
/// `LANDLOCK_CREATE_RULESET_VERSION`: ask `landlock_create_ruleset` for the ABI version.
const LANDLOCK_CREATE_RULESET_VERSION: c_uint = 1;

/// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, Linux 5.7), as the UAPI
/// header lays it out: every field a `__aligned_u64`.
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of a `clone3` the caller is on.
#[derive(Debug)]
pub(super) enum Forked {
    /// The new process.
    Child,
    /// The caller, with the child's pid in the caller's PID namespace.
    Parent(i32),
}

/// `clone3` without a new stack: a `fork` with `flags` (namespace flags) and, when `cgroup`
/// is given, CLONE_INTO_CGROUP. The child gets SIGCHLD as its exit signal, like `fork`.
///
/// The caller must be single-threaded: the child is a copy of the calling thread alone, and
/// any lock another thread held (the allocator's) would stay held forever in it.
pub(super) fn clone3(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    let mut args = CloneArgs {
        flags,
        exit_signal: u64::from(libc::SIGCHLD.unsigned_abs()),
        ..CloneArgs::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = u64::from(fd.as_raw_fd().unsigned_abs());
    }
    // SAFETY: `args` is a valid, initialised `struct clone_args` of the size passed, alive
    // for the call. With no stack given the child runs on a copy of the caller's stack and
    // returns here like `fork`'s child; the caller is single-threaded (the documented
    // precondition), so the copy holds no lock another thread owns. No CLONE_VM, CLONE_SETTLS
    // or pidfd/tid pointers are set, so the kernel writes nothing into our memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw const args,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => i32::try_from(pid)
            .map(Forked::Parent)
            .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW)),
    }
}

/// Ends the calling process at once with `code`: no destructors, no atexit handlers, no
/// stdio flush (the child shares none of the parent's buffered state worth flushing).
pub(super) fn exit(code: i32) -> ! {
    // SAFETY: `_exit` takes a plain int and never returns; skipping destructors is the
    // point (they belong to the parent's copy of the state).
    unsafe { libc::_exit(code) }
}

/// A program path, argument vector and environment, ready for `execve`: NUL-terminated
/// strings and the NULL-terminated pointer arrays into them.
#[derive(Debug)]
pub(super) struct ExecArgs {
    path: CString,
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

impl ExecArgs {
    /// Builds the arrays; `None` if a string holds a NUL byte.
    pub(super) fn new(path: &str, argv: &[String], envp: &[String]) -> Option<ExecArgs> {
        let path = CString::new(path).ok()?;
        let strings: Vec<CString> = argv
            .iter()
            .chain(envp)
            .map(|s| CString::new(s.as_str()).ok())
            .collect::<Option<_>>()?;
        // The pointers point into each CString's own heap buffer, which does not move when
        // the Vec or this struct moves; `_strings` keeps the buffers alive as long as the
        // arrays.
        let (args, envs) = strings.split_at(argv.len());
        let argv = args
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp = envs
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Some(ExecArgs {
            path,
            _strings: strings,
            argv,
            envp,
        })
    }

    /// `execve`: returns only on failure.
    pub(super) fn exec(&self) -> io::Error {
        // SAFETY: `path` is NUL-terminated; `argv` and `envp` are NULL-terminated arrays of
        // pointers to NUL-terminated strings owned by `self._strings`, all alive for the
        // call. On success the call does not return and the address space is replaced.
        unsafe { libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        io::Error::last_os_error()
    }
}

/// `prctl(PR_CAPBSET_DROP, cap)`: removes capability number `cap` from the bounding set.
/// EINVAL means the kernel has no capability of that number.
pub(super) fn drop_bounding_capability(cap: u32) -> io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes an integer capability number and no pointers.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, c_long::from(cap), 0, 0, 0) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)`. EINVAL on kernels before 6.3.
pub(super) fn set_mdwe_refuse_exec_gain() -> io::Result<()> {
    // SAFETY: PR_SET_MDWE takes integer flags and no pointers.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_MDWE,
            PR_MDWE_REFUSE_EXEC_GAIN,
            0 as c_long,
            0 as c_long,
            0 as c_long,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)` (Linux 5.11): marks every descriptor from
/// `first` on close-on-exec, so none of PID 1's files reaches the task, and the error-report
/// pipe still closes only when `execve` succeeds.
pub(super) fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range takes integers only; with CLOSE_RANGE_CLOEXEC it closes nothing,
    // so no descriptor this process still uses becomes invalid.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            c_uint::from(first),
            c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unblocks every signal and sets every catchable one to its default action. A blocked or
/// ignored signal survives `execve`; PID 1's choices (a blocked SIGCHLD for its signalfd, an
/// ignored SIGPIPE) must not become the task's.
pub(super) fn reset_signals() -> io::Result<()> {
    // SAFETY: `set` is a local sigset_t initialised by sigemptyset before sigprocmask reads
    // it; the old-set pointer is NULL.
    let ret = unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&raw mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const set, std::ptr::null_mut())
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is a valid disposition for any catchable signal; no handler of
        // ours runs in this process any more.
        let old = unsafe { libc::signal(sig, libc::SIG_DFL) };
        if old == libc::SIG_ERR {
            let err = io::Error::last_os_error();
            // The C library reserves a few real-time signals for itself and refuses them
            // (EINVAL); their handlers are reset by execve anyway and they are never SIG_IGN.
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// The kernel's Landlock ABI version, or `None` when Landlock is not built in or not
/// enabled (ENOSYS, EOPNOTSUPP).
pub(super) fn landlock_abi() -> Option<u32> {
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the call reads no
    // memory and only returns the ABI number.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(ret).ok().filter(|&abi| abi > 0)
}

/// The raw errno for `code` as `c_int` (for the error report).
pub(super) fn errno_of(err: &io::Error) -> c_int {
    err.raw_os_error().unwrap_or(0)
}
