//! Every system call PID 1 makes that the standard library does not wrap. Mostly through
//! `rustix`; the device-mapper and watchdog ioctls, which rustix does not wrap, are
//! `unsafe` calls, each with its SAFETY note. Above this module nothing sees raw flags or pointers.

use std::ffi::CStr;
use std::io;
use std::path::Path;

use rustix::mount::MountFlags;

/// The pseudo-filesystems mounted first, with the flags each gets.
pub const PSEUDO_FILESYSTEMS: &[(&str, &str, MountFlags)] = &[
    (
        "proc",
        "proc",
        MountFlags::NOSUID
            .union(MountFlags::NODEV)
            .union(MountFlags::NOEXEC),
    ),
    (
        "sysfs",
        "sys",
        MountFlags::NOSUID
            .union(MountFlags::NODEV)
            .union(MountFlags::NOEXEC),
    ),
    (
        "devtmpfs",
        "dev",
        MountFlags::NOSUID.union(MountFlags::NOEXEC),
    ),
    (
        "tmpfs",
        "run",
        MountFlags::NOSUID
            .union(MountFlags::NODEV)
            .union(MountFlags::NOEXEC),
    ), // PID 1 mounts cgroup v2 itself: the task budgets are its controllers.
    (
        "cgroup2",
        "sys/fs/cgroup",
        MountFlags::NOSUID
            .union(MountFlags::NODEV)
            .union(MountFlags::NOEXEC),
    ),
];

/// Mounts a pseudo-filesystem of type `fstype` on `target`, creating the directory.
pub fn mount_pseudo(fstype: &str, target: &Path, flags: MountFlags) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    match rustix::mount::mount(fstype, target, fstype, flags, None::<&CStr>) {
        Ok(()) => Ok(()),
        // The kernel may already have mounted devtmpfs (CONFIG_DEVTMPFS_MOUNT).
        Err(rustix::io::Errno::BUSY) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Outcome of loading one module.
#[derive(Debug, PartialEq, Eq)]
pub enum ModuleLoad {
    Loaded,
    AlreadyLoaded,
}

/// Loads a kernel module file with `finit_module`.
pub fn load_module(path: &Path) -> io::Result<ModuleLoad> {
    let file = std::fs::File::open(path)?;
    match rustix::system::finit_module(&file, c"", 0) {
        Ok(()) => Ok(ModuleLoad::Loaded),
        Err(rustix::io::Errno::EXIST) => Ok(ModuleLoad::AlreadyLoaded),
        Err(e) => Err(e.into()),
    }
}

/// Flushes filesystems and restarts the machine. Never returns (see [`power_off`]).
pub fn reboot() -> ! {
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Flushes filesystems and powers the machine off. Never returns: if the kernel refuses,
/// PID 1 waits forever rather than exit (an exiting PID 1 panics the kernel).
pub fn power_off() -> ! {
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Sends one device-mapper request (`buf`, laid out by [`crate::dm`]) to
/// `/dev/mapper/control`; the kernel writes its answer into the same buffer.
pub fn dm_ioctl(
    control: &std::fs::File,
    command: crate::dm::Command,
    buf: &mut [u8],
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if buf.len() < crate::dm::DM_IOCTL_SIZE {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // The header's data_size field must not claim more than the buffer holds: the kernel
    // reads and writes up to data_size bytes.
    let claimed = buf
        .get(12..16)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes);
    if usize::try_from(claimed).map_or(true, |c| c > buf.len()) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: `control` is an open file descriptor for the device-mapper control node;
    // `buf` is a live, writable allocation of at least `data_size` bytes (checked above)
    // laid out as `struct dm_ioctl` followed by its payload, and stays borrowed mutably
    // for the duration of the call, so the kernel's reads and writes stay inside it.
    let ret = unsafe {
        libc::ioctl(
            control.as_raw_fd(),
            command.request() as libc::Ioctl,
            buf.as_mut_ptr(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `WDIOC_SETTIMEOUT`: `_IOWR('W', 6, int)` (linux/watchdog.h; the same number on x86_64
/// and aarch64).
const WDIOC_SETTIMEOUT: u32 = (3 << 30) | (4 << 16) | ((b'W' as u32) << 8) | 6;

/// Sets the watchdog `device`'s timeout to `secs` seconds; returns the timeout the driver
/// took (it may round).
pub fn watchdog_set_timeout(device: &std::fs::File, secs: u16) -> io::Result<u16> {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = libc::c_int::from(secs);
    // SAFETY: `device` is an open file descriptor; WDIOC_SETTIMEOUT reads and writes one
    // `int`, and `value` is a live, writable `c_int` borrowed mutably for the call.
    let ret = unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            WDIOC_SETTIMEOUT as libc::Ioctl,
            &mut value as *mut libc::c_int,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    u16::try_from(value).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Mounts a read-only squashfs from `device` on `target`.
pub fn mount_squashfs(device: &Path, target: &Path) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    let flags = MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID;
    rustix::mount::mount(device, target, "squashfs", flags, None::<&CStr>).map_err(Into::into)
}

/// Makes a block device node `path` for device number `dev` if devtmpfs has not yet.
pub fn ensure_block_node(path: &Path, dev: u64) -> io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mode = rustix::fs::Mode::from_raw_mode(0o600);
    match rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::BlockDevice,
        mode,
        dev,
    ) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Mounts the data partition's ext4 on `target`: writable, but nothing on it can be
/// executed, carry set-id bits, or be a device node.
pub fn mount_data(device: &Path, target: &Path) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::NOATIME;
    rustix::mount::mount(device, target, "ext4", flags, Some(c"errors=remount-ro"))
        .map_err(Into::into)
}

/// Whether the first 64 KiB of `device` are all zero: a data partition the boot loader
/// wiped (owner mode's change), which holds no filesystem to mount.
pub fn is_wiped(device: &Path) -> io::Result<bool> {
    use std::io::Read;
    let mut head = vec![0u8; 64 * 1024];
    std::fs::File::open(device)?.read_exact(&mut head)?;
    Ok(head.iter().all(|&b| b == 0))
}

/// Mounts a tmpfs of at most `bytes` on `target` with the data partition's flags: the
/// `/data` of a boot whose data partition was wiped.
pub fn mount_data_tmpfs(target: &Path, bytes: u64) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::NOATIME;
    let options = std::ffi::CString::new(format!("size={bytes},mode=0755"))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    rustix::mount::mount("tmpfs", target, "tmpfs", flags, Some(options.as_c_str()))
        .map_err(Into::into)
}

/// The signals PID 1 handles through its signalfd instead of default actions.
const HANDLED_SIGNALS: [libc::c_int; 5] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGPWR,
    libc::SIGINT,
    libc::SIGHUP,
];

/// Blocks the handled signals and returns a signalfd that reports them.
pub fn signal_fd() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: `sigset_t` is a plain bit set; all-zero is a valid (empty) value and
    // `sigemptyset` initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t for each call.
    unsafe {
        libc::sigemptyset(&mut set);
        for signal in HANDLED_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed. PID 1 is
    // single-threaded, so the process mask is this thread's mask.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: -1 asks for a new descriptor; `set` is initialised.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by signalfd, is valid and owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Reads every pending signal number from a signalfd (non-blocking).
pub fn read_signals(fd: &std::os::fd::OwnedFd) -> Vec<i32> {
    let mut signals = Vec::new();
    // struct signalfd_siginfo is 128 bytes; ssi_signo is its first u32.
    let mut buf = [0u8; 128];
    while let Ok(128) = rustix::io::read(fd, &mut buf) {
        let signo = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        signals.push(i32::try_from(signo).unwrap_or(0));
    }
    signals
}

/// One reaped child.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    pub pid: i32,
    pub exit: crate::supervisor::Exit,
}

/// Reaps every child that has ended, without blocking. Any child, whatever its process
/// group: tasks start their own session, and orphans reparented to PID 1 are reaped too.
pub fn reap_all() -> Vec<Reaped> {
    let mut reaped = Vec::new();
    while let Ok(Some((pid, status))) = rustix::process::wait(rustix::process::WaitOptions::NOHANG)
    {
        let exit = if let Some(code) = status.exit_status() {
            crate::supervisor::Exit::Code(code)
        } else {
            crate::supervisor::Exit::Signal(status.terminating_signal().unwrap_or(0))
        };
        reaped.push(Reaped {
            pid: pid.as_raw_nonzero().get(),
            exit,
        });
    }
    reaped
}

/// Sends `signal` to process `pid`; a process that is already gone is not an error.
pub fn signal(pid: i32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Milliseconds since boot, counting suspend (CLOCK_BOOTTIME).
pub fn boottime_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000_000
}

/// Microseconds since boot (CLOCK_BOOTTIME).
pub fn boottime_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000
}

/// The system clock (CLOCK_REALTIME), whole seconds since the epoch; 0 before 1970.
pub fn realtime_secs() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    u64::try_from(t.tv_sec).unwrap_or(0)
}

/// Sets the system clock (CLOCK_REALTIME) to `secs` seconds since the epoch.
pub fn set_realtime_secs(secs: u64) -> io::Result<()> {
    let tv_sec = i64::try_from(secs).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    rustix::time::clock_settime(
        rustix::time::ClockId::Realtime,
        rustix::time::Timespec { tv_sec, tv_nsec: 0 },
    )
    .map_err(io::Error::from)
}

/// 32 bytes from the kernel's random source (`getrandom`): a Roughtime request's nonce.
#[cfg_attr(not(feature = "roughtime"), allow(dead_code))]
pub fn random_nonce() -> io::Result<[u8; 32]> {
    let mut nonce = [0u8; 32];
    let mut filled = 0;
    while filled < nonce.len() {
        let rest = nonce.get_mut(filled..).unwrap_or_default();
        filled += rustix::rand::getrandom(rest, rustix::rand::GetRandomFlags::empty())
            .map_err(io::Error::from)?;
    }
    Ok(nonce)
}

/// Unmounts `target` (used at shutdown; a busy mount is detached instead).
pub fn unmount(target: &Path) -> io::Result<()> {
    match rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH).map_err(Into::into)
        }
        Err(e) => Err(e.into()),
    }
}

/// PID 1's resident memory in kB, from `/proc/self/smaps_rollup` (exact; `VmRSS` in
/// `status` is updated lazily and under-counts small processes).
pub fn own_rss_kb() -> Option<u64> {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("Rss:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
}

/// Makes the character device `/dev/null` (1, 3) at `path`, mode 0666.
pub fn make_null_device(path: &Path) -> io::Result<()> {
    let mode = rustix::fs::Mode::from_raw_mode(0o666);
    let dev = rustix::fs::makedev(1, 3);
    match rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        mode,
        dev,
    ) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    // mknod applies the umask; the node must be usable by every task uid.
    rustix::fs::chmod(path, mode).map_err(Into::into)
}

/// Bind-mounts `path` onto itself and remounts it with `flags`.
pub fn bind_self(path: &Path, flags: MountFlags) -> io::Result<()> {
    std::fs::create_dir_all(path)?;
    rustix::mount::mount_bind(path, path)?;
    rustix::mount::mount_remount(path, MountFlags::BIND | flags, "").map_err(Into::into)
}
