//! The programs of both architectures, run by a small classic-BPF interpreter.
//!
//! The real-kernel tests (`tests/seccomp.rs`) cover the build host's architecture only;
//! these check the aarch64 programs the same way, and x86_64 again, without a kernel. The
//! interpreter knows exactly the instructions seccompiler emits plus the chaining jump, and
//! fails on any other.

// Test code: a failed expectation is a test failure, reported with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use limpet_compile::seccomp::{self, syscall_number};
use limpet_policy::{Arch, Bpf};

const ALLOW: u32 = 0x7fff_0000;
const KILL_PROCESS: u32 = 0x8000_0000;
const ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

/// `struct seccomp_data` as the kernel lays it out (little-endian).
fn seccomp_data(nr: u32, arch: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&nr.to_le_bytes());
    d[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    d
}

fn run(bpf: &Bpf, data: &[u8; 64]) -> u32 {
    let prog: Vec<(u16, u8, u8, u32)> = bpf.instructions().collect();
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let (code, jt, jf, k) = prog[pc];
        pc += 1;
        let jump = |cond: bool| {
            if cond {
                usize::from(jt)
            } else {
                usize::from(jf)
            }
        };
        match code {
            0x20 => {
                let k = k as usize;
                acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
            }
            0x54 => acc &= k,
            0x05 => pc += k as usize,
            0x15 => pc += jump(acc == k),
            0x25 => pc += jump(acc > k),
            0x35 => pc += jump(acc >= k),
            0x06 => return k,
            other => panic!("unexpected BPF opcode {other:#x} at {}", pc - 1),
        }
    }
}

fn task(syscalls: &str) -> limpet_manifest::Task {
    let text = format!(
        "[device]\nname = \"d\"\nversion = \"1.0.0\"\ntarget = \"x86_64\"\n\n[[task]]\n\
         name = \"t\"\npackage = \"p\"\nmemory = \"8MiB\"\ncpu = \"10%\"\nsyscalls = {syscalls}\n"
    );
    limpet_manifest::parse("limpet.toml", &text)
        .unwrap()
        .tasks
        .remove(0)
}

struct Filter {
    arch: Arch,
    bpf: Bpf,
}

impl Filter {
    fn new(syscalls: &str, arch: Arch) -> Filter {
        Filter {
            arch,
            bpf: seccomp::compile(&task(syscalls), arch).unwrap(),
        }
    }

    fn call(&self, name: &str, args: [u64; 6]) -> u32 {
        let nr = syscall_number(self.arch, name).unwrap();
        let audit = match self.arch {
            Arch::X86_64 => AUDIT_ARCH_X86_64,
            Arch::Aarch64 => AUDIT_ARCH_AARCH64,
        };
        run(&self.bpf, &seccomp_data(nr, audit, args))
    }
}

const NONE: [u64; 6] = [0; 6];
const THREAD_FLAGS: u64 = 0x003d_0f00; // glibc's and musl's pthread_create
const SIGCHLD: u64 = 17;

#[test]
fn minimal_on_both_architectures() {
    for arch in Arch::ALL {
        let f = Filter::new("\"minimal\"", arch);
        assert_eq!(f.call("write", NONE), ALLOW, "{arch}");
        assert_eq!(f.call("execve", NONE), ALLOW);
        assert_eq!(f.call("socket", [2, 1, 0, 0, 0, 0]), KILL_PROCESS);
        assert_eq!(f.call("ptrace", NONE), KILL_PROCESS);
        assert_eq!(f.call("bpf", NONE), KILL_PROCESS);
        assert_eq!(f.call("unshare", NONE), KILL_PROCESS);
        assert_eq!(f.call("reboot", NONE), KILL_PROCESS);
        assert_eq!(f.call("init_module", NONE), KILL_PROCESS);
        assert_eq!(f.call("io_uring_setup", NONE), KILL_PROCESS);
        // Write-xor-execute.
        assert_eq!(f.call("mmap", [0, 4096, 3, 0x22, 0, 0]), ALLOW);
        assert_eq!(f.call("mmap", [0, 4096, 5, 0x22, 0, 0]), ERRNO | 13);
        assert_eq!(f.call("mprotect", [0, 4096, 1, 0, 0, 0]), ALLOW);
        assert_eq!(f.call("mprotect", [0, 4096, 4, 0, 0, 0]), ERRNO | 13);
        assert_eq!(f.call("pkey_mprotect", [0, 4096, 1, 0, 0, 0]), KILL_PROCESS);
        // Threads, not processes or namespaces.
        assert_eq!(f.call("clone", [THREAD_FLAGS, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(f.call("clone", [SIGCHLD, 0, 0, 0, 0, 0]), ERRNO | 1);
        assert_eq!(
            f.call("clone", [THREAD_FLAGS | 0x1000_0000, 0, 0, 0, 0, 0]),
            ERRNO | 1
        );
        assert_eq!(f.call("clone3", NONE), ERRNO | 38);
        // Argument-limited calls.
        assert_eq!(f.call("prctl", [15, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(f.call("prctl", [4, 0, 0, 0, 0, 0]), KILL_PROCESS);
        assert_eq!(f.call("ioctl", [1, 0x5413, 0, 0, 0, 0]), ALLOW);
        assert_eq!(f.call("ioctl", [1, 0x5412, 0, 0, 0, 0]), KILL_PROCESS); // TIOCSTI
        assert_eq!(f.call("prlimit64", [0, 7, 0, 0x1000, 0, 0]), ALLOW);
        assert_eq!(f.call("prlimit64", [0, 7, 0x1000, 0, 0, 0]), KILL_PROCESS);
    }
}

#[test]
fn other_abis_are_killed() {
    for arch in Arch::ALL {
        let f = Filter::new("\"minimal\"", arch);
        let write = syscall_number(arch, "write").unwrap();
        assert_eq!(
            run(&f.bpf, &seccomp_data(write, AUDIT_ARCH_I386, NONE)),
            KILL_PROCESS
        );
    }
    let f = Filter::new("\"minimal\"", Arch::X86_64);
    assert_eq!(
        run(&f.bpf, &seccomp_data(0x4000_0001, AUDIT_ARCH_X86_64, NONE)),
        KILL_PROCESS,
        "x32 write"
    );
}

#[test]
fn network_on_both_architectures() {
    for arch in Arch::ALL {
        let f = Filter::new("\"network\"\nnetwork = \"allowlist\"", arch);
        assert_eq!(f.call("socket", [2, 1, 0, 0, 0, 0]), ALLOW, "{arch}");
        assert_eq!(f.call("socket", [10, 0x80802, 0, 0, 0, 0]), ALLOW);
        assert_eq!(f.call("socket", [1, 2, 0, 0, 0, 0]), ALLOW);
        assert_eq!(f.call("socket", [17, 2, 0, 0, 0, 0]), ERRNO | 97); // AF_PACKET
        assert_eq!(f.call("socket", [16, 3, 0, 0, 0, 0]), ERRNO | 97); // AF_NETLINK
        assert_eq!(f.call("socket", [2, 3, 0, 0, 0, 0]), ERRNO | 1); // SOCK_RAW
        assert_eq!(f.call("socket", [2, 0x803, 0, 0, 0, 0]), ERRNO | 1); // raw, nonblock
        assert_eq!(f.call("connect", NONE), ALLOW);
        assert_eq!(f.call("bpf", NONE), KILL_PROCESS);
    }
}

#[test]
fn additions_and_notify() {
    for arch in Arch::ALL {
        let f = Filter::new("{ allow = [\"ioctl\", \"flock\"] }", arch);
        assert_eq!(f.call("ioctl", [3, 0x0703, 0, 0, 0, 0]), ALLOW, "{arch}"); // I2C_SLAVE
        assert_eq!(f.call("flock", NONE), ALLOW);
        let f = Filter::new("{ allow = [\"shmat\", \"pkey_mprotect\"] }", arch);
        assert_eq!(f.call("shmat", [1, 0, 0o100_000, 0, 0, 0]), ERRNO | 13);
        assert_eq!(f.call("shmat", [1, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(f.call("pkey_mprotect", [0, 4096, 7, 0, 0, 0]), ERRNO | 13);
        // A notify task may open a Unix socket, and no other.
        let text = "\"minimal\"\nreadiness = \"notify\"";
        let f = Filter::new(text, arch);
        assert_eq!(f.call("socket", [1, 0x80002, 0, 0, 0, 0]), ALLOW);
        assert_eq!(f.call("sendto", NONE), ALLOW);
        assert_eq!(f.call("socket", [2, 2, 0, 0, 0, 0]), ERRNO | 97);
        assert_eq!(f.call("bind", NONE), KILL_PROCESS);
    }
}
