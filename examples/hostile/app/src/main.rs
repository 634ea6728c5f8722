//! `hostile ATTACK`: one escape attempt per task, as a fully compromised task would try it.
//!
//! Every run first prints one `STATUS` line per thread (seccomp mode, no_new_privs,
//! capabilities), then tries its attack and prints exactly one verdict:
//! `ATTACK <name>: blocked: <how>` when the kernel refused it, or
//! `ATTACK <name>: ESCAPED: <what>` when it got through. Attacks that the seccomp filter
//! answers by killing the task print nothing more: the supervisor reports the task's end
//! by SIGSYS (signal 31). The `heartbeat` mode is the well-behaved neighbour that must keep
//! running while the others attack.
//!
//! This program is an attacker on purpose: its `unsafe` blocks are raw system calls the
//! standard library does not offer, each with its SAFETY note about memory, not about the
//! call's effect (which is the point).

use std::io::{Error, Write};
use std::time::Duration;

fn main() {
    let attack = std::env::args().nth(1).unwrap_or_default();
    status_of_every_thread();
    if attack == "heartbeat" {
        heartbeat();
    }
    if attack == "notify-ready" {
        notify_ready();
    }
    if attack == "notify-never" {
        unreachable_loop();
    }
    let verdict = run(&attack);
    let mut out = std::io::stdout().lock();
    let _ = match verdict {
        Ok(how) => writeln!(out, "ATTACK {attack}: blocked: {how}"),
        Err(what) => writeln!(out, "ATTACK {attack}: ESCAPED: {what}"),
    };
    let _ = out.flush();
    // Stay alive a moment so PID 1 sees an orderly exit after the verdict.
    std::thread::sleep(Duration::from_millis(200));
}

/// Prints Seccomp, NoNewPrivs and the capability sets of every thread, with a second
/// thread running, so that "every thread" is more than one.
fn status_of_every_thread() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let helper = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    let tasks = std::fs::read_dir("/proc/self/task")
        .map(|d| d.filter_map(Result::ok).count())
        .unwrap_or(0);
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.filter_map(Result::ok) {
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                    .unwrap_or_else(|| "?".into())
            };
            println!(
                "STATUS threads={tasks} tid={} Seccomp={} NoNewPrivs={} CapEff={} CapPrm={} CapBnd={} CapAmb={} Uid={}",
                entry.file_name().to_string_lossy(),
                field("Seccomp:"),
                field("NoNewPrivs:"),
                field("CapEff:"),
                field("CapPrm:"),
                field("CapBnd:"),
                field("CapAmb:"),
                field("Uid:").split_whitespace().next().unwrap_or("?"),
            );
        }
    }
    let _ = tx.send(());
    let _ = helper.join();
}

fn heartbeat() -> ! {
    for n in 0u64.. {
        println!("heartbeat {n}");
        std::thread::sleep(Duration::from_secs(1));
    }
    unreachable_loop()
}

/// A well-behaved `notify` task: says `READY=1` on `$NOTIFY_SOCKET`, then idles.
fn notify_ready() -> ! {
    let socket = std::env::var("NOTIFY_SOCKET").unwrap_or_default();
    let sent =
        std::os::unix::net::UnixDatagram::unbound().and_then(|s| s.send_to(b"READY=1\n", &socket));
    match sent {
        Ok(_) => println!("sent READY=1 to {socket}"),
        Err(e) => println!("cannot notify {socket}: {e}"),
    }
    unreachable_loop()
}

fn unreachable_loop() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `Ok(how it was blocked)` or `Err(what escaped)`.
type Verdict = Result<String, String>;

/// The errno name of the last error, e.g. `EPERM`.
fn errno_name(e: &Error) -> String {
    let name = match e.raw_os_error().unwrap_or(0) {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EACCES => "EACCES",
        libc::EAGAIN => "EAGAIN",
        libc::EROFS => "EROFS",
        libc::ENOSPC => "ENOSPC",
        libc::EXDEV => "EXDEV",
        libc::ENOSYS => "ENOSYS",
        libc::EINVAL => "EINVAL",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ENOMEM => "ENOMEM",
        libc::EFBIG => "EFBIG",
        libc::EDQUOT => "EDQUOT",
        other => return format!("errno {other}"),
    };
    name.to_owned()
}

/// A failed call is a block; a successful one an escape.
fn expect_err<T>(result: std::io::Result<T>, escaped: &str) -> Verdict {
    match result {
        Ok(_) => Err(escaped.to_owned()),
        Err(e) => Ok(errno_name(&e)),
    }
}

/// A raw call's result as io::Result.
fn check(ret: libc::c_long) -> std::io::Result<libc::c_long> {
    if ret < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn syscall0(nr: libc::c_long) -> std::io::Result<libc::c_long> {
    // SAFETY: a system call with no pointer arguments; the kernel validates it.
    check(unsafe { libc::syscall(nr, 0, 0, 0, 0, 0, 0) })
}

fn run(attack: &str) -> Verdict {
    match attack {
        "exec-shell" => expect_err(execve(c"/bin/sh"), "ran /bin/sh"),
        "exec-written-file" => exec_written_file(),
        "write-root-fs" => expect_err(std::fs::write("/evil", b"x"), "wrote /evil"),
        "write-slot" => expect_err(
            std::fs::write(own_binary(), b"x"),
            "overwrote its own binary",
        ),
        "write-outside-data" => expect_err(std::fs::write("/data/evil", b"x"), "wrote /data/evil"),
        "read-other-task-data" => expect_err(
            std::fs::read_dir("/data/heartbeat"),
            "listed another task's data",
        ),
        "read-shadow" => expect_err(std::fs::read("/etc/shadow"), "read /etc/shadow"),
        "read-sysfs" => expect_err(std::fs::read_dir("/sys/class"), "listed /sys"),
        "open-dev-mem" => expect_err(std::fs::File::open("/dev/mem"), "opened /dev/mem"),
        "open-block-device" => expect_err(std::fs::File::open("/dev/vda"), "opened /dev/vda"),
        "change-sysctl" => expect_err(
            std::fs::write("/proc/sys/kernel/hostname", b"pwned"),
            "changed a sysctl",
        ),
        "see-other-processes" => see_other_processes(),
        "signal-pid1" => signal_everyone(),
        "mount" => expect_err(mount_tmpfs(), "mounted a tmpfs"),
        "pivot-root" => expect_err(
            syscall2(libc::SYS_pivot_root, c"/tmp", c"/tmp"),
            "pivot_root",
        ),
        "chroot" => expect_err(syscall1(libc::SYS_chroot, c"/tmp"), "chroot"),
        "ptrace-pid1" => expect_err(ptrace_attach(1), "attached to pid 1"),
        "process-vm-read" => expect_err(syscall0(libc::SYS_process_vm_readv), "process_vm_readv"),
        "load-module" => expect_err(syscall0(libc::SYS_finit_module), "finit_module"),
        "kexec" => expect_err(syscall0(libc::SYS_kexec_load), "kexec_load"),
        "reboot" => expect_err(reboot(), "rebooted"),
        "set-clock" => expect_err(set_clock(), "set the clock"),
        "raw-socket" => expect_err(
            socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
            "opened a raw socket",
        ),
        "packet-socket" => expect_err(
            socket(libc::AF_PACKET, libc::SOCK_RAW, 0),
            "opened a packet socket",
        ),
        "netlink-route" => expect_err(
            socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE),
            "opened rtnetlink",
        ),
        "inet-socket-no-network" => inet_connect(),
        "bpf" => expect_err(syscall0(libc::SYS_bpf), "bpf()"),
        "perf-event-open" => expect_err(syscall0(libc::SYS_perf_event_open), "perf_event_open"),
        "userfaultfd" => expect_err(syscall0(libc::SYS_userfaultfd), "userfaultfd"),
        "unshare-user-ns" => expect_err(unshare_user(), "unshared a user namespace"),
        "setuid-root" => expect_err(setuid_root(), "became uid 0"),
        "keyctl" => expect_err(syscall0(libc::SYS_keyctl), "keyctl"),
        "mprotect-exec" => mprotect_exec(),
        "mmap-write-exec" => mmap_write_exec(),
        "memfd-exec" => expect_err(syscall2(libc::SYS_memfd_create, c"x", c""), "memfd_create"),
        "io-uring" => expect_err(syscall0(libc::SYS_io_uring_setup), "io_uring_setup"),
        "fork" => fork(),
        "threads-past-pids-max" => threads_past_pids_max(),
        "fill-tmp" => fill_tmp(),
        "memory-hog" => memory_hog(),
        "crash" => std::process::exit(1),
        other => Err(format!("unknown attack {other:?}")),
    }
}

/// Where the task's binary is, inside its sandbox.
fn own_binary() -> &'static str {
    "/slot/hostile"
}

fn syscall1(nr: libc::c_long, a: &std::ffi::CStr) -> std::io::Result<libc::c_long> {
    // SAFETY: `a` is a valid NUL-terminated string that outlives the call.
    check(unsafe { libc::syscall(nr, a.as_ptr()) })
}

fn syscall2(
    nr: libc::c_long,
    a: &std::ffi::CStr,
    b: &std::ffi::CStr,
) -> std::io::Result<libc::c_long> {
    // SAFETY: `a` and `b` are valid NUL-terminated strings that outlive the call.
    check(unsafe { libc::syscall(nr, a.as_ptr(), b.as_ptr(), 0) })
}

/// execve in place (no fork: tasks cannot create processes), with `heartbeat` as argument
/// so that a successful exec would be visible on the console.
fn execve(path: &std::ffi::CStr) -> std::io::Result<libc::c_long> {
    let argv = [path.as_ptr(), c"heartbeat".as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: `path` and the argv strings are NUL-terminated and outlive the call; both
    // arrays end with a null pointer. On success the call does not return.
    check(libc::c_long::from(unsafe {
        libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr())
    }))
}

fn mount_tmpfs() -> std::io::Result<libc::c_long> {
    // SAFETY: every pointer is a valid NUL-terminated string or null.
    check(libc::c_long::from(unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/tmp".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    }))
}

fn ptrace_attach(pid: libc::pid_t) -> std::io::Result<libc::c_long> {
    // SAFETY: PTRACE_ATTACH takes no pointers (addr and data are ignored).
    check(unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) })
}

fn reboot() -> std::io::Result<libc::c_long> {
    // SAFETY: reboot takes a command number only.
    check(libc::c_long::from(unsafe {
        libc::reboot(libc::RB_POWER_OFF)
    }))
}

fn set_clock() -> std::io::Result<libc::c_long> {
    let t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec that outlives the call.
    check(libc::c_long::from(unsafe {
        libc::clock_settime(libc::CLOCK_REALTIME, &t)
    }))
}

fn socket(domain: i32, kind: i32, proto: i32) -> std::io::Result<libc::c_long> {
    // SAFETY: socket takes integers only.
    check(libc::c_long::from(unsafe {
        libc::socket(domain, kind, proto)
    }))
}

fn unshare_user() -> std::io::Result<libc::c_long> {
    // SAFETY: unshare takes a flag word only.
    check(libc::c_long::from(unsafe {
        libc::unshare(libc::CLONE_NEWUSER)
    }))
}

fn setuid_root() -> std::io::Result<libc::c_long> {
    // SAFETY: setuid takes an integer only.
    check(libc::c_long::from(unsafe { libc::setuid(0) }))
}

/// Writes a copy of its own binary into its data directory (`/data/<task>`, the task
/// being named after its attack) and tries to run it.
fn exec_written_file() -> Verdict {
    use std::os::unix::fs::OpenOptionsExt;
    let path = std::path::PathBuf::from("/data/exec-written-file/evil");
    let bytes =
        std::fs::read(own_binary()).map_err(|e| format!("setup: cannot read own binary: {e}"))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o700)
        .open(&path)
        .map_err(|e| format!("setup: cannot write {}: {e}", path.display()))?;
    file.write_all(&bytes).map_err(|e| format!("setup: {e}"))?;
    drop(file);
    let path = std::ffi::CString::new(path.into_os_string().into_encoded_bytes())
        .map_err(|e| format!("setup: {e}"))?;
    expect_err(execve(&path), "ran a file it wrote")
}

/// Lists /proc: only the task itself may be visible.
fn see_other_processes() -> Verdict {
    let pids: Vec<String> = std::fs::read_dir("/proc")
        .map_err(|e| format!("cannot list /proc: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        .collect();
    if pids == ["1"] {
        Ok("only itself (pid 1 of its namespace) is visible".into())
    } else {
        Err(format!("sees pids {pids:?}"))
    }
}

/// kill(-1, SIGKILL): every process the task could signal. With its own pid namespace
/// there is none but itself, which kill(-1) skips.
fn signal_everyone() -> Verdict {
    // SAFETY: kill takes integers only.
    let ret = unsafe { libc::kill(-1, libc::SIGKILL) };
    expect_err(check(libc::c_long::from(ret)), "signalled other processes")
}

/// A TCP connect to a TEST-NET address from a task without network: no route.
fn inet_connect() -> Verdict {
    let addr = std::net::SocketAddr::from(([192, 0, 2, 1], 443));
    expect_err(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)),
        "connected to 192.0.2.1:443",
    )
}

/// mprotect of a writable page to executable.
fn mprotect_exec() -> Verdict {
    // SAFETY: anonymous private mapping of one page; no existing memory is touched.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(format!("setup: mmap failed: {}", Error::last_os_error()));
    }
    // SAFETY: `page` is the page mapped above, owned by this function.
    let ret = unsafe { libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC) };
    expect_err(
        check(libc::c_long::from(ret)),
        "made a written page executable",
    )
}

/// mmap of a page both writable and executable.
fn mmap_write_exec() -> Verdict {
    // SAFETY: a new anonymous mapping; no existing memory is touched.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        Ok(errno_name(&Error::last_os_error()))
    } else {
        Err("mapped a W+X page".into())
    }
}

/// fork(): a task may run threads, never new processes.
fn fork() -> Verdict {
    // SAFETY: the child, if any, only calls _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: _exit never returns and touches no Rust state.
        unsafe { libc::_exit(0) };
    }
    expect_err(check(libc::c_long::from(pid)), "forked a process")
}

/// Spawns threads until the cgroup's pids.max refuses one.
fn threads_past_pids_max() -> Verdict {
    // The STATUS helper thread has been joined, but the kernel releases it (and its place
    // under RLIMIT_NPROC and pids.max) only after join returns: wait until this thread is
    // alone, so the count below is the budget and not a race.
    let alone = (0..200).any(|_| {
        let threads = std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count);
        threads == 1 || {
            std::thread::sleep(Duration::from_millis(10));
            false
        }
    });
    if !alone {
        return Err("setup: the STATUS thread never went away".into());
    }
    let mut handles = Vec::new();
    for n in 0..64 {
        match std::thread::Builder::new().spawn(|| std::thread::sleep(Duration::from_secs(5))) {
            Ok(h) => handles.push(h),
            Err(e) => return Ok(format!("{} after {n} more threads", errno_name(&e))),
        }
    }
    Err("started 64 threads".into())
}

/// Writes into /tmp until its size limit stops it.
fn fill_tmp() -> Verdict {
    let mut file = std::fs::File::create("/tmp/fill").map_err(|e| format!("setup: {e}"))?;
    let chunk = vec![0x5a_u8; 64 * 1024];
    for _ in 0..4096 {
        if let Err(e) = file.write_all(&chunk) {
            return Ok(errno_name(&e));
        }
    }
    Err("wrote 256 MiB into /tmp".into())
}

/// Touches memory until the cgroup's memory.max ends the task (OOM kill, SIGKILL).
fn memory_hog() -> Verdict {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for n in 0..1024u32 {
        // Non-zero contents, so every page is really touched.
        blocks.push(vec![u8::try_from(n % 251 + 1).unwrap_or(1); 1024 * 1024]);
    }
    Err(format!("allocated {} MiB", blocks.len()))
}
