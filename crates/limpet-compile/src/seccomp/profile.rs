//! The system call lists: the `minimal` and `network` profiles, the calls that are never
//! allowed, and the argument rules that refuse part of an allowed call.
//!
//! Every entry names the code path that needs it (Rust std on musl, the target of every
//! device binary; glibc only where the host test binaries need it). Constants are the Linux
//! UAPI values, identical on x86_64 and aarch64; they are written out here rather than taken
//! from `libc`, whose values follow the build host, not the device.
//!
//! Public for `tests/docs.rs`, which renders docs/sandbox.md's tables from these lists.

/// Where a system call exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// Every supported architecture.
    All,
    /// x86_64 only: a legacy call that aarch64 never had (musl uses it where it exists).
    X86_64,
}

/// Which calls of an allowed system call pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Args {
    /// Any arguments (the deny rules below may still refuse some).
    Any,
    /// Argument `arg` (32-bit) is one of `values`; any other call kills the task.
    OneOf {
        /// The argument's index, from 0.
        arg: u8,
        /// The values that pass.
        values: &'static [u64],
    },
    /// Argument `arg` (64-bit) is zero, e.g. a NULL "new value" pointer: read-only use.
    Null {
        /// The argument's index, from 0.
        arg: u8,
    },
}

/// One allowlist entry.
#[derive(Debug, Clone, Copy)]
pub struct Allow {
    /// The system call.
    pub name: &'static str,
    /// Where it exists.
    pub on: On,
    /// Which of its calls pass.
    pub args: Args,
    /// The code path that needs it.
    pub why: &'static str,
}

const fn any(name: &'static str, why: &'static str) -> Allow {
    Allow {
        name,
        on: On::All,
        args: Args::Any,
        why,
    }
}

const fn x86(name: &'static str, why: &'static str) -> Allow {
    Allow {
        name,
        on: On::X86_64,
        args: Args::Any,
        why,
    }
}

// Linux UAPI constants (same values on x86_64 and aarch64).
pub(crate) const PROT_EXEC: u64 = 0x4;
pub(crate) const SHM_EXEC: u64 = 0o100_000;
pub(crate) const CLONE_THREAD: u64 = 0x0001_0000;
/// Every `CLONE_NEW*` flag `clone` takes (CLONE_NEWTIME is clone3/unshare only: its bit is
/// part of the exit-signal byte in `clone`).
pub(crate) const CLONE_NAMESPACES: [u64; 7] = [
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];
pub(crate) const AF_UNIX: u64 = 1;
pub(crate) const AF_INET: u64 = 2;
pub(crate) const AF_INET6: u64 = 10;
/// The socket type is the low four bits of `type`; the rest are SOCK_NONBLOCK/SOCK_CLOEXEC.
pub(crate) const SOCK_TYPE_MASK: u64 = 0xf;
pub(crate) const SOCK_RAW: u64 = 3;
pub(crate) const SOCK_PACKET: u64 = 10;
const TCGETS: u64 = 0x5401;
const TIOCGWINSZ: u64 = 0x5413;
const FIONBIO: u64 = 0x5421;
const FIONCLEX: u64 = 0x5450;
const FIOCLEX: u64 = 0x5451;
const PR_SET_NAME: u64 = 15;
const PR_GET_NAME: u64 = 16;
const ARCH_SET_FS: u64 = 0x1002;

pub(crate) const EPERM: u32 = 1;
pub(crate) const EACCES: u32 = 13;
pub(crate) const ENOSYS: u32 = 38;
pub(crate) const EAFNOSUPPORT: u32 = 97;

/// `minimal`: memory, threads, time, signals, the files the mounts and Landlock grant, exit.
pub const MINIMAL: &[Allow] = &[
    // Process start and exit.
    any(
        "execve",
        "PID 1 installs the filter in the child and then execs the task through it; later \
         execs are confined by Landlock (execute only on the task's binary) and noexec mounts",
    ),
    Allow {
        name: "arch_prctl",
        on: On::X86_64,
        args: Args::OneOf {
            arg: 0,
            values: &[ARCH_SET_FS],
        },
        why: "musl's start-up sets the thread pointer (__init_tls → __set_thread_area)",
    },
    any("set_tid_address", "musl's start-up and every new thread"),
    any("exit", "a thread ending"),
    any("exit_group", "the process ending"),
    any(
        "restart_syscall",
        "the kernel restarts an interrupted sleep or futex wait through it",
    ),
    // Memory.
    any("brk", "musl's malloc (mallocng) grows the heap"),
    any(
        "mmap",
        "large allocations, thread stacks, std's signal stack (PROT_EXEC refused: deny rules)",
    ),
    any("munmap", "freeing those"),
    any(
        "mremap",
        "realloc of large blocks; musl's pthread_getattr_np probes the main stack (std's guard)",
    ),
    any(
        "mprotect",
        "guard pages of thread and signal stacks, musl's RELRO (PROT_EXEC refused)",
    ),
    any(
        "madvise",
        "mallocng returns freed pages; glibc reuses thread stacks",
    ),
    // Threads and synchronisation.
    any(
        "clone",
        "pthread_create (CLONE_THREAD required, namespaces refused: deny rules)",
    ),
    x86(
        "fork",
        "musl's fork(); answered EPERM by the deny rules, as clone without CLONE_THREAD is",
    ),
    x86(
        "vfork",
        "musl's vfork(); answered EPERM by the deny rules, as clone without CLONE_THREAD is",
    ),
    any(
        "clone3",
        "answered ENOSYS by the deny rules so glibc falls back to clone; musl never uses it",
    ),
    any("futex", "Mutex, Condvar, Once, thread join"),
    any("set_robust_list", "glibc registers each new thread"),
    any("rseq", "glibc 2.35+ registers each new thread"),
    any(
        "sched_yield",
        "spin loops in std's and crossbeam's synchronisation",
    ),
    any("sched_getaffinity", "std::thread::available_parallelism"),
    any("gettid", "musl's raise() and pthread_kill"),
    any("getpid", "std::process::id, musl's abort()"),
    Allow {
        name: "prctl",
        on: On::All,
        args: Args::OneOf {
            arg: 0,
            values: &[PR_SET_NAME, PR_GET_NAME],
        },
        why: "named threads: std::thread::Builder::name → pthread_setname_np",
    },
    // Signals. The task is alone in its PID namespace, so kill and friends reach only itself.
    any(
        "rt_sigaction",
        "std ignores SIGPIPE and installs SIGSEGV/SIGBUS handlers at start-up",
    ),
    any(
        "rt_sigprocmask",
        "musl blocks signals around thread creation, raise() and abort()",
    ),
    any("rt_sigreturn", "return from any signal handler"),
    any(
        "sigaltstack",
        "std's stack-overflow handler runs on its own stack",
    ),
    any("tkill", "musl's raise() and pthread_kill (abort on panic)"),
    any("tgkill", "glibc's raise() and pthread_kill"),
    any(
        "kill",
        "signalling itself; the PID namespace holds only the task",
    ),
    // Time.
    any(
        "clock_gettime",
        "Instant/SystemTime when the vDSO cannot answer",
    ),
    any("clock_getres", "timer resolution queries"),
    any("gettimeofday", "SystemTime fallback without the vDSO"),
    any("clock_nanosleep", "thread::sleep (musl)"),
    any(
        "nanosleep",
        "thread::sleep (musl for CLOCK_REALTIME, glibc)",
    ),
    // Files: what may be opened is decided by the mounts and Landlock, not here.
    x86("open", "musl's open() uses SYS_open where it exists"),
    any("openat", "File::open, OpenOptions"),
    any("close", "dropping any file descriptor"),
    any("read", "Read for files, stdin, pipes, devices"),
    any("write", "Write for files, stdout/stderr (logging), devices"),
    any("readv", "read_vectored"),
    any("writev", "write_vectored; musl's stdio flushes with writev"),
    any("pread64", "FileExt::read_at"),
    any("pwrite64", "FileExt::write_at"),
    any("lseek", "Seek"),
    any("fstat", "File::metadata"),
    x86("stat", "musl's stat()"),
    x86("lstat", "musl's lstat()"),
    any("newfstatat", "fs::metadata, musl's fstatat()"),
    any("statx", "fs::metadata on glibc, musl 1.2.5's fstatat()"),
    any(
        "fcntl",
        "FD_CLOEXEC, F_DUPFD_CLOEXEC, locks; std's fd sanity check at start-up",
    ),
    any("dup", "dup()"),
    x86("dup2", "musl's dup2()"),
    any("dup3", "try_clone, musl's dup2() on aarch64"),
    any("pipe2", "std::io::pipe, event-loop wake-ups"),
    Allow {
        name: "ioctl",
        on: On::All,
        args: Args::OneOf {
            arg: 1,
            values: &[TCGETS, TIOCGWINSZ, FIONBIO, FIONCLEX, FIOCLEX],
        },
        why: "isatty (TIOCGWINSZ, TCGETS), set_nonblocking (FIONBIO), close-on-exec; \
              devices need `allow = [\"ioctl\"]`, which lifts this restriction",
    },
    any("getdents64", "fs::read_dir"),
    x86("mkdir", "musl's mkdir()"),
    any("mkdirat", "fs::create_dir"),
    x86("unlink", "musl's unlink()"),
    x86("rmdir", "musl's rmdir()"),
    any("unlinkat", "fs::remove_file, fs::remove_dir"),
    x86("rename", "musl's rename()"),
    any("renameat", "fs::rename (atomic replace of data files)"),
    any("renameat2", "fs::rename on glibc"),
    x86("readlink", "musl's readlink(); std::env::current_exe"),
    any("readlinkat", "fs::read_link"),
    x86("access", "musl's access()"),
    any("faccessat", "Path::try_exists and access()"),
    any("faccessat2", "faccessat with flags"),
    any("ftruncate", "File::set_len"),
    any("fsync", "File::sync_all"),
    any("fdatasync", "File::sync_data"),
    any("getcwd", "std::env::current_dir"),
    // Waiting for events.
    x86("poll", "std's start-up check that fds 0-2 are open (musl)"),
    any("ppoll", "poll() on aarch64; event loops"),
    any("epoll_create1", "mio/tokio event loops"),
    any("epoll_ctl", "mio/tokio event loops"),
    x86("epoll_wait", "musl's epoll_wait()"),
    any("epoll_pwait", "epoll_wait() on aarch64"),
    any("eventfd2", "mio/tokio wake-ups"),
    // System information.
    any("getrandom", "HashMap seeds, rand"),
    any("uname", "musl's gethostname(), os info"),
    any("sysinfo", "memory and uptime queries (get_phys_pages)"),
    any("getuid", "identity queries (temp names, logging)"),
    any("geteuid", "identity queries"),
    any("getgid", "identity queries"),
    any("getegid", "identity queries"),
    Allow {
        name: "prlimit64",
        on: On::All,
        args: Args::Null { arg: 2 },
        why: "getrlimit() (musl); read-only: new_limit must be NULL",
    },
];

/// `network`, on top of `minimal`: sockets (families and types limited by the deny rules).
pub const NETWORK: &[Allow] = &[
    any(
        "socket",
        "TcpStream, TcpListener, UdpSocket (AF_INET, AF_INET6, AF_UNIX only)",
    ),
    any("socketpair", "UnixStream::pair, event-loop wake-ups"),
    any("connect", "TcpStream::connect, UdpSocket::connect"),
    any("bind", "TcpListener::bind, UdpSocket::bind"),
    any("listen", "TcpListener::bind"),
    any("accept", "musl's accept()"),
    any("accept4", "TcpListener::accept"),
    any("sendto", "send, send_to"),
    any("recvfrom", "recv, recv_from"),
    any(
        "sendmsg",
        "sendmsg (UDP with control data, Unix fd passing)",
    ),
    any("recvmsg", "recvmsg"),
    any("sendmmsg", "batched UDP sends (quinn)"),
    any("recvmmsg", "batched UDP receives (quinn)"),
    any("shutdown", "TcpStream::shutdown"),
    any(
        "getsockopt",
        "SO_ERROR after a non-blocking connect, take_error",
    ),
    any("setsockopt", "set_nodelay, set_ttl, SO_REUSEADDR"),
    any("getsockname", "local_addr"),
    any("getpeername", "peer_addr"),
];

/// Added for a task with `readiness = notify`: it sends `READY=1` on a Unix datagram socket
/// (`$NOTIFY_SOCKET`). Only AF_UNIX passes the deny rules unless the profile is `network`.
pub const NOTIFY: &[Allow] = &[
    any(
        "socket",
        "the sd_notify client opens an AF_UNIX datagram socket",
    ),
    any("connect", "sd_notify clients that connect first"),
    any("sendto", "sd_notify's send to $NOTIFY_SOCKET"),
    any("sendmsg", "sd_notify's send to $NOTIFY_SOCKET"),
];

/// Never allowed, even when a manifest lists them: each would let a task reach past its
/// sandbox or change the whole device.
pub const NEVER: &[(&str, &str)] = &[
    ("kexec_load", "it replaces the running kernel"),
    ("kexec_file_load", "it replaces the running kernel"),
    (
        "init_module",
        "it loads kernel code; module loading is PID 1's alone",
    ),
    (
        "finit_module",
        "it loads kernel code; module loading is PID 1's alone",
    ),
    ("delete_module", "it unloads kernel code"),
    ("create_module", "it loads kernel code"),
    ("reboot", "rebooting or powering off is PID 1's decision"),
    ("mount", "the task's mounts are fixed by PID 1"),
    ("umount2", "the task's mounts are fixed by PID 1"),
    ("pivot_root", "the task's root is fixed by PID 1"),
    ("chroot", "the task's root is fixed by PID 1"),
    (
        "fsopen",
        "the new mount API: the task's mounts are fixed by PID 1",
    ),
    (
        "fsconfig",
        "the new mount API: the task's mounts are fixed by PID 1",
    ),
    (
        "fsmount",
        "the new mount API: the task's mounts are fixed by PID 1",
    ),
    (
        "fspick",
        "the new mount API: the task's mounts are fixed by PID 1",
    ),
    (
        "move_mount",
        "the new mount API: the task's mounts are fixed by PID 1",
    ),
    (
        "open_tree",
        "the new mount API: the task's mounts are fixed by PID 1",
    ),
    (
        "mount_setattr",
        "the new mount API: the task's mounts are fixed by PID 1",
    ),
    ("ptrace", "it reads and writes another process's memory"),
    ("process_vm_readv", "it reads another process's memory"),
    ("process_vm_writev", "it writes another process's memory"),
    (
        "pidfd_getfd",
        "it takes file descriptors from another process",
    ),
    ("kcmp", "it probes another process's kernel objects"),
    (
        "bpf",
        "eBPF is a large kernel attack surface and can observe the whole device",
    ),
    (
        "perf_event_open",
        "it observes other processes and the kernel",
    ),
    (
        "userfaultfd",
        "it makes kernel races easy to win (a favourite exploit primitive)",
    ),
    (
        "io_uring_setup",
        "io_uring performs operations without system calls, past this filter",
    ),
    (
        "io_uring_enter",
        "io_uring performs operations without system calls, past this filter",
    ),
    (
        "io_uring_register",
        "io_uring performs operations without system calls, past this filter",
    ),
    (
        "unshare",
        "new namespaces (a user namespace above all) undo the sandbox",
    ),
    ("setns", "joining another namespace undoes the sandbox"),
    (
        "keyctl",
        "the kernel keyring is shared kernel state and a known attack surface",
    ),
    (
        "add_key",
        "the kernel keyring is shared kernel state and a known attack surface",
    ),
    (
        "request_key",
        "the kernel keyring is shared kernel state and a known attack surface",
    ),
    ("swapon", "swap is device-wide"),
    ("swapoff", "swap is device-wide"),
    (
        "settimeofday",
        "the clock is device-wide; update freshness depends on it",
    ),
    (
        "clock_settime",
        "the clock is device-wide; update freshness depends on it",
    ),
    (
        "adjtimex",
        "the clock is device-wide; update freshness depends on it",
    ),
    (
        "clock_adjtime",
        "the clock is device-wide; update freshness depends on it",
    ),
    ("acct", "process accounting is device-wide"),
    (
        "open_by_handle_at",
        "it opens files by handle, around the mounts and Landlock",
    ),
    (
        "name_to_handle_at",
        "file handles are only useful to open_by_handle_at",
    ),
    ("iopl", "raw I/O port access"),
    ("ioperm", "raw I/O port access"),
    (
        "modify_ldt",
        "x86 segment tricks, a past source of kernel bugs",
    ),
    ("syslog", "the kernel log leaks kernel addresses"),
    ("quotactl", "disk quotas are device-wide"),
    ("sethostname", "the hostname is device-wide"),
    ("setdomainname", "the domain name is device-wide"),
    ("vhangup", "it hangs up the console"),
    (
        "personality",
        "READ_IMPLIES_EXEC would add PROT_EXEC behind the write-xor-execute rules",
    ),
    (
        "memfd_create",
        "a memfd is code outside the verified slot that exec through /proc could run",
    ),
    (
        "execveat",
        "it executes a file descriptor (a memfd), around the path-based exec checks",
    ),
    (
        "setuid",
        "the task runs as one fixed unprivileged uid with no capabilities; an identity change \
         has no use, and refusing it keeps a capability slip from becoming a uid change",
    ),
    (
        "setgid",
        "the task runs as one fixed unprivileged gid; see setuid",
    ),
    (
        "setreuid",
        "the task runs as one fixed unprivileged uid; see setuid",
    ),
    (
        "setregid",
        "the task runs as one fixed unprivileged gid; see setuid",
    ),
    (
        "setresuid",
        "the task runs as one fixed unprivileged uid; see setuid",
    ),
    (
        "setresgid",
        "the task runs as one fixed unprivileged gid; see setuid",
    ),
    (
        "setfsuid",
        "the task runs as one fixed unprivileged uid; see setuid",
    ),
    (
        "setfsgid",
        "the task runs as one fixed unprivileged gid; see setuid",
    ),
    (
        "setgroups",
        "the task has no supplementary groups; see setuid",
    ),
    ("capset", "the task has no capabilities to set; see setuid"),
];

/// What a deny rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// `(arg & mask) == value`, 32 bits.
    Masked {
        /// The argument's index, from 0.
        arg: u8,
        /// The bits of the argument compared.
        mask: u64,
        /// What those bits must equal for the rule to refuse the call.
        value: u64,
    },
    /// `(arg & mask) == value`, 64 bits.
    Masked64 {
        /// The argument's index, from 0.
        arg: u8,
        /// The bits of the argument compared.
        mask: u64,
        /// What those bits must equal for the rule to refuse the call.
        value: u64,
    },
    /// `arg` is none of `values`, 32 bits.
    NoneOf {
        /// The argument's index, from 0.
        arg: u8,
        /// The values that let the call through; any other value is refused.
        values: &'static [u64],
    },
    /// Always (the call is refused whatever its arguments).
    Always,
}

/// A refusal inside an allowed system call: the call returns `errno` instead of running.
#[derive(Debug, Clone, Copy)]
pub struct Deny {
    /// The system call.
    pub name: &'static str,
    /// Which of its calls are refused.
    pub test: Test,
    /// What they return.
    pub errno: u32,
    /// What it stops.
    pub why: &'static str,
}

const fn masked(name: &'static str, arg: u8, bit: u64, errno: u32, why: &'static str) -> Deny {
    Deny {
        name,
        test: Test::Masked {
            arg,
            mask: bit,
            value: bit,
        },
        errno,
        why,
    }
}

/// The memory-deny-write-execute rules, the equivalent of PR_SET_MDWE's
/// PR_MDWE_REFUSE_EXEC_GAIN and stricter: no new executable mapping at all. A static binary
/// is mapped by the kernel at exec, so it never needs one; only a JIT or a loader would.
/// EACCES is what the kernel's own MDWE returns, so a task sees one failure whichever layer
/// refused.
pub(crate) const WRITE_XOR_EXECUTE: &[Deny] = &[
    masked("mmap", 2, PROT_EXEC, EACCES, "no executable mapping (W^X)"),
    masked(
        "mprotect",
        2,
        PROT_EXEC,
        EACCES,
        "no page made executable (W^X)",
    ),
    masked(
        "pkey_mprotect",
        2,
        PROT_EXEC,
        EACCES,
        "no page made executable (W^X)",
    ),
    masked(
        "shmat",
        2,
        SHM_EXEC,
        EACCES,
        "no executable shared memory (W^X)",
    ),
];

/// Rules on `clone` (and x86_64's `fork` and `vfork`): threads only, and no namespaces. EPERM, as `fork` fails for a process
/// without the right; Command::spawn reports it as an io::Error the task can log.
pub(crate) fn clone_rules() -> Vec<Deny> {
    let mut rules = vec![Deny {
        name: "clone",
        test: Test::Masked64 {
            arg: 0,
            mask: CLONE_THREAD,
            value: 0,
        },
        errno: EPERM,
        why: "no new processes (fork, vfork, posix_spawn): threads only",
    }];
    // x86_64's own fork and vfork: the same refusal, so a task fails alike on both
    // architectures (musl forks through clone on aarch64).
    for name in ["fork", "vfork"] {
        rules.push(Deny {
            name,
            test: Test::Always,
            errno: EPERM,
            why: "no new processes: threads only",
        });
    }
    rules.extend(CLONE_NAMESPACES.iter().map(|&flag| Deny {
        name: "clone",
        test: Test::Masked64 {
            arg: 0,
            mask: flag,
            value: flag,
        },
        errno: EPERM,
        why: "no new namespaces",
    }));
    rules
}

/// `clone3` passes its flags in memory, which a seccomp filter cannot read, so it is
/// answered ENOSYS: glibc and Rust std then fall back to `clone`, whose flags are checked.
pub(crate) const CLONE3: Deny = Deny {
    name: "clone3",
    test: Test::Always,
    errno: ENOSYS,
    why: "flags unreadable by seccomp; callers fall back to clone",
};

/// Rules on socket families: only those the task's profile grants, never AF_PACKET,
/// AF_NETLINK and the rest. EAFNOSUPPORT, as for a kernel built without the family
/// (callers probing for IPv6 or netlink handle that).
pub(crate) fn socket_family_rules(families: &'static [u64]) -> Vec<Deny> {
    ["socket", "socketpair"]
        .into_iter()
        .map(|name| Deny {
            name,
            test: Test::NoneOf {
                arg: 0,
                values: families,
            },
            errno: EAFNOSUPPORT,
            why: "only the families of the profile: never AF_PACKET, AF_NETLINK, ...",
        })
        .collect()
}

/// Rules on socket types: no raw or packet sockets, which bypass the transport layer the
/// network policy reasons about. EPERM, as without CAP_NET_RAW.
pub(crate) fn socket_type_rules() -> Vec<Deny> {
    let mut rules = Vec::new();
    for name in ["socket", "socketpair"] {
        for ty in [SOCK_RAW, SOCK_PACKET] {
            rules.push(Deny {
                name,
                test: Test::Masked {
                    arg: 1,
                    mask: SOCK_TYPE_MASK,
                    value: ty,
                },
                errno: EPERM,
                why: "no raw sockets: they bypass the transport layer nftables reasons about",
            });
        }
    }
    rules
}

/// Families for the `network` profile.
pub(crate) const NETWORK_FAMILIES: &[u64] = &[AF_UNIX, AF_INET, AF_INET6];
/// Families otherwise (the readiness socket, or a `socket` named in `allow`).
pub(crate) const LOCAL_FAMILIES: &[u64] = &[AF_UNIX];
