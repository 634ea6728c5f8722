//! The emulated machine and how it starts: the seam where a second architecture and UEFI
//! firmware plug into the QEMU backend.
//!
//! [`Machine`] is everything QEMU's command line says about the board for a target;
//! [`Firmware`] is how the guest gets to its kernel: [`Firmware::Uefi`], the device's own
//! chain (OVMF on x86_64, AAVMF on aarch64, with the vendor's keys enrolled and Secure Boot
//! enforcing, starting the signed loader from the disk's EFI system partition, which starts
//! the slot's kernel), or [`Firmware::Direct`] (QEMU loads the build's kernel and initramfs
//! itself: the developer's fast path, which verifies nothing before PID 1).

use limpet_image::header::Target;

/// The emulated machine for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// The QEMU system emulator.
    pub program: &'static str,
    /// The Debian package that installs it.
    pub package: &'static str,
    /// `-machine` value (always `accel=tcg`).
    pub machine: &'static str,
    /// `-cpu` value.
    pub cpu: &'static str,
    /// The kernel's name for the machine's first serial port.
    pub console: &'static str,
}

impl Machine {
    /// The `-machine` value for booting with `firmware`: Secure Boot on x86_64 needs the
    /// q35 board with SMM, so that only the firmware can write its variables.
    pub const fn machine_arg(&self, firmware: Firmware) -> &'static str {
        match (firmware, self.console.as_bytes()) {
            (Firmware::Uefi, b"ttyS0") => "q35,smm=on,accel=tcg",
            _ => self.machine,
        }
    }

    /// The machine `limpet run` emulates for `target`.
    pub const fn for_target(target: Target) -> Machine {
        match target {
            Target::X86_64 => Machine {
                program: "qemu-system-x86_64",
                package: "qemu-system-x86",
                machine: "pc,accel=tcg",
                cpu: "qemu64",
                console: "ttyS0",
            },
            // The virt board's UART is a PL011, which Linux names ttyAMA0.
            Target::Aarch64 => Machine {
                program: "qemu-system-aarch64",
                package: "qemu-system-arm",
                machine: "virt,accel=tcg",
                cpu: "cortex-a57",
                console: "ttyAMA0",
            },
        }
    }
}

/// How the guest gets to its kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Firmware {
    /// The device's chain: UEFI firmware (Debian's OVMF or AAVMF) with the build's
    /// `efivars.fd` (the vendor's keys enrolled, Secure Boot enforcing) starts Limpet's
    /// signed loader from the disk's EFI system partition; the loader picks, verifies and
    /// starts the slot's kernel.
    #[default]
    Uefi,
    /// QEMU loads the build's `kernel` and `initramfs.cpio` itself (`-kernel`, `-initrd`,
    /// `-append`), after the board's own firmware (SeaBIOS on x86_64): nothing is
    /// verified before PID 1, which still verifies the slot it mounts.
    Direct,
}
