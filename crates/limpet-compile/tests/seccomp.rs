//! Seccomp programs against the real kernel of the test host.
//!
//! Each case re-runs this binary as a child with `LIMPET_SECCOMP_PROBE=<case>`. The child
//! compiles a small manifest into a device policy for the host's architecture, reads it
//! back from JSON, installs the task's program with the device's `seccomp::apply`
//! (limpet-sandbox), makes one call and prints `ok` or `errno N`. The parent checks how the child ended: that output, or death
//! by SIGSYS. Calls that could harm the host if the filter let them through are made with
//! arguments the kernel would refuse anyway (a bad reboot magic, NULL module images).
//!
//! A plain `main` (`harness = false`): a probe must run in a process of its own, and the
//! libtest harness would add its threads and output capture to it. Arguments that do not
//! start with `-` filter the cases by substring, like libtest's.

// Test code: a failed expectation is a test failure, reported with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::c_long;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode, Stdio};

use limpet_policy::{Arch, DevicePolicy};
use limpet_sandbox::seccomp;

const PROBE_ENV: &str = "LIMPET_SECCOMP_PROBE";

/// How a probe must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The call succeeded.
    Works,
    /// The call failed with this errno.
    Errno(i32),
    /// The kernel killed the process with SIGSYS.
    Killed,
}

/// The task's `syscalls` line in the probe manifest.
#[derive(Debug, Clone, Copy)]
enum Profile {
    Minimal,
    Network,
    MinimalWithFlock,
}

struct Case {
    name: &'static str,
    profile: Profile,
    expect: Outcome,
    probe: fn() -> Result<(), i32>,
}

use Outcome::{Errno, Killed, Works};
use Profile::{Minimal, MinimalWithFlock, Network};

const CASES: &[Case] = &[
    case(
        "status_shows_filter_and_no_new_privs",
        Minimal,
        Works,
        status,
    ),
    case("write_works", Minimal, Works, write_stdout),
    case("thread_spawn_works", Minimal, Works, thread_spawn),
    case("sleep_and_time_work", Minimal, Works, sleep_and_time),
    case("file_io_works", Minimal, Works, file_io),
    case("ioctl_fionbio_works", Minimal, Works, ioctl_fionbio),
    case("ioctl_tiocsti_kills", Minimal, Killed, ioctl_tiocsti),
    case(
        "socket_inet_kills_under_minimal",
        Minimal,
        Killed,
        socket_inet,
    ),
    case(
        "socket_inet_works_under_network",
        Network,
        Works,
        socket_inet,
    ),
    case(
        "socket_inet6_works_under_network",
        Network,
        Works,
        socket_inet6,
    ),
    case(
        "socket_unix_works_under_network",
        Network,
        Works,
        socket_unix,
    ),
    case(
        "socket_packet_refused",
        Network,
        Errno(libc::EAFNOSUPPORT),
        socket_packet,
    ),
    case(
        "socket_netlink_refused",
        Network,
        Errno(libc::EAFNOSUPPORT),
        socket_netlink,
    ),
    case(
        "socket_raw_refused",
        Network,
        Errno(libc::EPERM),
        socket_raw,
    ),
    case(
        "mprotect_exec_refused",
        Minimal,
        Errno(libc::EACCES),
        mprotect_exec,
    ),
    case("mmap_exec_refused", Minimal, Errno(libc::EACCES), mmap_exec),
    case("mmap_rw_works", Minimal, Works, mmap_rw),
    case("fork_refused", Minimal, Errno(libc::EPERM), fork),
    case(
        "clone_newuser_thread_refused",
        Minimal,
        Errno(libc::EPERM),
        clone_newuser,
    ),
    case("clone3_is_enosys", Minimal, Errno(libc::ENOSYS), clone3),
    case("ptrace_kills", Minimal, Killed, ptrace),
    case("bpf_kills", Network, Killed, bpf),
    case("unshare_newuser_kills", Minimal, Killed, unshare_newuser),
    case("kexec_load_kills", Minimal, Killed, kexec_load),
    case("init_module_kills", Minimal, Killed, init_module),
    case("reboot_kills", Network, Killed, reboot),
    case("prctl_other_option_kills", Minimal, Killed, prctl_dumpable),
    case("setrlimit_kills", Minimal, Killed, setrlimit),
    case("getrlimit_works", Minimal, Works, getrlimit),
    case("x32_abi_kills", Minimal, Killed, x32_getpid),
    case("flock_kills_without_allow", Minimal, Killed, flock),
    case("flock_works_with_allow", MinimalWithFlock, Works, flock),
];

const fn case(
    name: &'static str,
    profile: Profile,
    expect: Outcome,
    probe: fn() -> Result<(), i32>,
) -> Case {
    Case {
        name,
        profile,
        expect,
        probe,
    }
}

fn main() -> ExitCode {
    if let Ok(name) = std::env::var(PROBE_ENV) {
        return run_probe(&name);
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut passed = 0;
    let mut failed = 0;
    for case in CASES {
        if !filters.is_empty() && !filters.iter().any(|f| case.name.contains(f.as_str())) {
            continue;
        }
        match run_case(case) {
            Ok(()) => {
                println!("test {} ... ok", case.name);
                passed += 1;
            }
            Err(why) => {
                println!("test {} ... FAILED\n  {why}", case.name);
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_case(case: &Case) -> Result<(), String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(PROBE_ENV, case.name)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let got = match (out.status.signal(), stdout.lines().last()) {
        (Some(libc::SIGSYS), _) => Killed,
        (None, Some("ok")) if out.status.success() => Works,
        (None, Some(line)) if out.status.success() && line.starts_with("errno ") => {
            Errno(line["errno ".len()..].parse().unwrap())
        }
        _ => {
            return Err(format!(
                "child ended with {:?}; stdout {stdout:?}; stderr {stderr:?}",
                out.status
            ))
        }
    };
    if got == case.expect {
        Ok(())
    } else {
        Err(format!(
            "expected {:?}, got {got:?}; stdout {stdout:?}; stderr {stderr:?}",
            case.expect
        ))
    }
}

/// In the child: install the filter, make the call, report.
fn run_probe(name: &str) -> ExitCode {
    let case = CASES.iter().find(|c| c.name == name).unwrap();
    let arch = Arch::host().expect("tests run on x86_64 or aarch64");
    let syscalls = match case.profile {
        Minimal => "\"minimal\"",
        Network => "\"network\"\nnetwork = \"allowlist\"",
        MinimalWithFlock => "{ profile = \"minimal\", allow = [\"flock\"] }",
    };
    let manifest = format!(
        "[device]\nname = \"probe\"\nversion = \"1.0.0\"\ntarget = \"{arch}\"\n\n\
         [[task]]\nname = \"probe\"\npackage = \"probe\"\nmemory = \"8MiB\"\ncpu = \"10%\"\n\
         syscalls = {syscalls}\n"
    );
    let manifest = limpet_manifest::parse("limpet.toml", &manifest).unwrap();
    let json = limpet_compile::compile(&manifest)
        .unwrap()
        .to_json()
        .unwrap();
    let policy = DevicePolicy::from_json(&json).unwrap();
    let program = &policy.tasks[0].seccomp.program;
    // Everything that allocates or opens files before the filter is done above.
    seccomp::apply(program).unwrap();
    match (case.probe)() {
        Ok(()) => println!("ok"),
        Err(errno) => println!("errno {errno}"),
    }
    ExitCode::SUCCESS
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A raw return value: negative means failure with `errno`.
fn check(ret: c_long) -> Result<(), i32> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn status() -> Result<(), i32> {
    let text =
        std::fs::read_to_string("/proc/self/status").map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    };
    let (seccomp, nnp) = (field("Seccomp:"), field("NoNewPrivs:"));
    if seccomp == "2" && nnp == "1" {
        Ok(())
    } else {
        eprintln!("Seccomp: {seccomp:?}, NoNewPrivs: {nnp:?}");
        Err(0)
    }
}

fn write_stdout() -> Result<(), i32> {
    let msg = b"probe writes\n";
    // SAFETY: writes `msg.len()` bytes from a live buffer to fd 1.
    let n = unsafe { libc::write(1, msg.as_ptr().cast(), msg.len()) };
    check(n as c_long)
}

fn thread_spawn() -> Result<(), i32> {
    let handle = std::thread::spawn(|| 6 * 7);
    if handle.join().map_err(|_| 0)? == 42 {
        Ok(())
    } else {
        Err(0)
    }
}

fn sleep_and_time() -> Result<(), i32> {
    let start = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let _ = std::time::SystemTime::now();
    if start.elapsed() >= std::time::Duration::from_millis(5) {
        Ok(())
    } else {
        Err(0)
    }
}

fn file_io() -> Result<(), i32> {
    let io = |e: std::io::Error| e.raw_os_error().unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("limpet-seccomp-{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(io)?;
    let file = dir.join("f");
    std::fs::write(&file, b"data").map_err(io)?;
    std::fs::rename(&file, dir.join("g")).map_err(io)?;
    let back = std::fs::read(dir.join("g")).map_err(io)?;
    let _ = std::fs::metadata(dir.join("g")).map_err(io)?;
    let entries = std::fs::read_dir(&dir).map_err(io)?.count();
    std::fs::remove_dir_all(&dir).map_err(io)?;
    if back == b"data" && entries == 1 {
        Ok(())
    } else {
        Err(0)
    }
}

fn ioctl_fionbio() -> Result<(), i32> {
    let (reader, _writer) = std::io::pipe().map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let on: libc::c_int = 1;
    // SAFETY: FIONBIO reads one int from a live variable; the pipe is owned by `reader`.
    check(unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONBIO, &on) }.into())
}

fn ioctl_tiocsti() -> Result<(), i32> {
    let c: u8 = b'x';
    // SAFETY: TIOCSTI reads one byte from a live buffer; stdin is /dev/null, so even if the
    // call ran it would fail with ENOTTY.
    check(unsafe { libc::ioctl(0, libc::TIOCSTI, &c) }.into())
}

fn socket(family: i32, ty: i32) -> Result<(), i32> {
    // SAFETY: socket takes no pointers; the descriptor is closed at once.
    let fd = unsafe { libc::socket(family, ty, 0) };
    check(fd.into())?;
    // SAFETY: `fd` is a descriptor this function owns.
    unsafe { libc::close(fd) };
    Ok(())
}

fn socket_inet() -> Result<(), i32> {
    socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC)
}

fn socket_inet6() -> Result<(), i32> {
    socket(libc::AF_INET6, libc::SOCK_DGRAM)
}

fn socket_unix() -> Result<(), i32> {
    socket(libc::AF_UNIX, libc::SOCK_DGRAM)
}

fn socket_packet() -> Result<(), i32> {
    socket(libc::AF_PACKET, libc::SOCK_DGRAM)
}

fn socket_netlink() -> Result<(), i32> {
    socket(libc::AF_NETLINK, libc::SOCK_RAW)
}

fn socket_raw() -> Result<(), i32> {
    socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_NONBLOCK)
}

/// Maps one anonymous page with `prot`.
fn map(prot: i32) -> Result<*mut libc::c_void, i32> {
    // SAFETY: an anonymous private mapping at an address the kernel picks; nothing aliases it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p)
    }
}

fn mprotect_exec() -> Result<(), i32> {
    let p = map(libc::PROT_READ | libc::PROT_WRITE)?;
    // SAFETY: `p` is the page mapped just above; only its protection changes.
    check(unsafe { libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC) }.into())
}

fn mmap_exec() -> Result<(), i32> {
    map(libc::PROT_READ | libc::PROT_EXEC).map(|_| ())
}

fn mmap_rw() -> Result<(), i32> {
    let p = map(libc::PROT_READ | libc::PROT_WRITE)?;
    // SAFETY: `p` is a fresh, writable 4096-byte page.
    unsafe { p.cast::<u8>().write(1) };
    Ok(())
}

fn fork() -> Result<(), i32> {
    // SAFETY: if fork unexpectedly succeeds, the child exits at once without touching
    // anything shared.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: _exit is async-signal-safe and ends the child.
        unsafe { libc::_exit(0) };
    }
    check(pid.into())
}

fn clone_newuser() -> Result<(), i32> {
    // Thread flags plus CLONE_NEWUSER, with no stack: the kernel would refuse it (EINVAL),
    // the filter refuses it first (EPERM).
    let flags = libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_NEWUSER;
    // SAFETY: a raw clone that the filter (or the kernel) refuses; no child can exist.
    check(unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) })
}

fn clone3() -> Result<(), i32> {
    // SAFETY: a NULL argument structure; the kernel would answer EFAULT.
    check(unsafe { libc::syscall(libc::SYS_clone3, 0, 0) })
}

fn ptrace() -> Result<(), i32> {
    // SAFETY: PTRACE_TRACEME takes no pointers.
    check(unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0) })
}

fn bpf() -> Result<(), i32> {
    // SAFETY: a NULL attribute pointer of size 0; the kernel would refuse it.
    check(unsafe { libc::syscall(libc::SYS_bpf, 0, 0, 0) })
}

fn unshare_newuser() -> Result<(), i32> {
    // SAFETY: unshare takes no pointers.
    check(unsafe { libc::unshare(libc::CLONE_NEWUSER) }.into())
}

fn kexec_load() -> Result<(), i32> {
    // SAFETY: zero segments and a NULL segment list; the kernel would refuse it.
    check(unsafe { libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0) })
}

fn init_module() -> Result<(), i32> {
    // SAFETY: a NULL image of length 0; the kernel would refuse it.
    check(unsafe { libc::syscall(libc::SYS_init_module, 0, 0, 0) })
}

fn reboot() -> Result<(), i32> {
    // SAFETY: wrong magic numbers: the kernel answers EINVAL before anything happens.
    check(unsafe { libc::syscall(libc::SYS_reboot, 0, 0, 0, 0) })
}

fn prctl_dumpable() -> Result<(), i32> {
    // SAFETY: PR_SET_DUMPABLE takes no pointers.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }.into())
}

fn setrlimit() -> Result<(), i32> {
    let lim = libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    // SAFETY: a live rlimit structure; this process only.
    check(unsafe { libc::syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_NOFILE, &lim, 0) })
}

fn getrlimit() -> Result<(), i32> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a NULL new limit and a live structure for the old one.
    check(unsafe { libc::syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_NOFILE, 0, &mut lim) })
}

fn x32_getpid() -> Result<(), i32> {
    // The x32 ABI's getpid (on aarch64 an unknown number: killed all the same).
    const X32_SYSCALL_BIT: c_long = 0x4000_0000;
    // SAFETY: getpid takes no arguments.
    check(unsafe { libc::syscall(X32_SYSCALL_BIT | 39) })
}

fn flock() -> Result<(), i32> {
    let file =
        std::fs::File::open("/proc/self/status").map_err(|e| e.raw_os_error().unwrap_or(0))?;
    // SAFETY: a descriptor owned by `file`, which outlives the call.
    check(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) }.into())
}
