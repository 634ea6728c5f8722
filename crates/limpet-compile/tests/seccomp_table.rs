//! The x86_64 system call table against the build host's kernel headers.

// Test code: a failed expectation is a test failure, reported with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use limpet_compile::seccomp::syscall_number;
use limpet_policy::Arch;

/// Every `#define __NR_<name> <number>` in the host's `<asm/unistd_64.h>` that our table
/// knows has the same number, and the table knows all but calls newer than it.
#[test]
fn x86_64_table_matches_host_headers() {
    let header = [
        "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
        "/usr/include/asm/unistd_64.h",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .expect("kernel headers (linux-libc-dev) are installed on the build machines");
    let mut checked = 0;
    for line in header.lines() {
        let mut words = line.split_whitespace();
        let (Some("#define"), Some(name), Some(number)) =
            (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let (Some(name), Ok(number)) = (name.strip_prefix("__NR_"), number.parse::<u32>()) else {
            continue;
        };
        match syscall_number(Arch::X86_64, name) {
            Some(ours) => assert_eq!(ours, number, "{name}"),
            // Only calls added after Linux 6.12, the table's source, may be missing.
            None => assert!(number > 462, "{name} ({number}) is missing"),
        }
        checked += 1;
    }
    assert!(checked > 300, "only {checked} definitions read");
}

/// A few aarch64 numbers from the asm-generic table, which aarch64 uses.
#[test]
fn aarch64_spot_checks() {
    for (name, nr) in [
        ("io_setup", 0),
        ("openat", 56),
        ("close", 57),
        ("read", 63),
        ("write", 64),
        ("newfstatat", 79),
        ("fstat", 80),
        ("exit_group", 94),
        ("futex", 98),
        ("socket", 198),
        ("clone", 220),
        ("execve", 221),
        ("mmap", 222),
        ("mprotect", 226),
        ("clone3", 435),
    ] {
        assert_eq!(syscall_number(Arch::Aarch64, name), Some(nr), "{name}");
    }
    for absent in [
        "open",
        "stat",
        "fork",
        "poll",
        "arch_prctl",
        "clock_gettime64",
    ] {
        assert_eq!(syscall_number(Arch::Aarch64, absent), None, "{absent}");
    }
}
