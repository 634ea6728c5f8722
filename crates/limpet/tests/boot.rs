//! The built initramfs boots on the real Debian kernel in QEMU (TCG): the kernel accepts
//! the zstd cpio, runs limpet-init as PID 1, which loads every module in its list and
//! powers off.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Upper bound for one TCG boot on a loaded 2-core machine.
const BOOT_DEADLINE: Duration = Duration::from_secs(180);

#[test]
fn initramfs_boots_and_loads_its_modules() {
    require_tool("qemu-system-x86_64");
    let (out, _) = hello_build();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "pc,accel=tcg",
            "-cpu",
            "qemu64",
            "-smp",
            "1",
            "-m",
            "256",
        ])
        .args([
            "-nographic",
            "-nic",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(out.join("kernel"))
        .arg("-initrd")
        .arg(out.join("initramfs.cpio"))
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Bounded: a watchdog ends this QEMU (by its own PID) if the guest hangs.
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < BOOT_DEADLINE {
            std::thread::sleep(Duration::from_millis(500));
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        let _ = Command::new("kill").arg(pid.to_string()).status();
    });
    let console: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    let status = child.wait().unwrap();
    let _ = watchdog.join();
    let text = console.join("\n");
    assert!(
        status.success(),
        "qemu exited with {status}; console:\n{text}"
    );
    assert!(
        text.contains("limpet-init 0.1.0 starting"),
        "console:\n{text}"
    );
    let loaded = console
        .iter()
        .find(|l| l.contains("kernel module(s) loaded"))
        .unwrap_or_else(|| panic!("no module report; console:\n{text}"));
    assert!(!text.contains("early boot failed"), "console:\n{text}");
    assert!(!loaded.starts_with("limpet-init: 0 kernel"), "{loaded}");
    assert!(text.contains("powering off"), "console:\n{text}");
    assert!(!text.contains("Kernel panic"), "console:\n{text}");
}
