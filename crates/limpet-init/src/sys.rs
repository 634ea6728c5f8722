//! Every system call PID 1 makes that the standard library does not wrap, through
//! `rustix` (no `unsafe` here). Above this module nothing sees raw flags.

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

/// Flushes filesystems and powers the machine off. Never returns: if the kernel refuses,
/// PID 1 waits forever rather than exit (an exiting PID 1 panics the kernel).
pub fn power_off() -> ! {
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
