//! The emulated machine and how it starts: the seam where a second architecture and UEFI
//! firmware plug into the QEMU backend.
//!
//! [`Machine`] is everything QEMU's command line says about the board for a target;
//! [`Firmware`] is how the guest gets to its kernel. Today the only way is
//! [`Firmware::Direct`] (QEMU loads the kernel and initramfs itself); a UEFI variant
//! (OVMF on x86_64, AAVMF on aarch64, booting the signed slot's loader from the disk's EFI
//! system partition) is a new variant here and a new arm in [`crate::qemu::qemu_args`].

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
    /// QEMU loads the build's `kernel` and `initramfs.cpio` itself (`-kernel`, `-initrd`,
    /// `-append`), after the board's own firmware (SeaBIOS on x86_64).
    #[default]
    Direct,
}
