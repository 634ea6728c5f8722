//! The emulated machine and how it starts: the seam where a second architecture and UEFI
//! firmware plug into the QEMU backend.
//!
//! [`Machine`] is everything QEMU's command line says about the board for a target;
//! [`Firmware`] is how the guest gets to its kernel: [`Firmware::Direct`] (QEMU loads the
//! kernel and initramfs itself) or [`Firmware::Uefi`] (the board's UEFI firmware, OVMF on
//! x86_64 and AAVMF on aarch64, boots Limpet's loader from the disk's EFI system
//! partition, and the loader verifies and starts the slot's kernel). Each is one arm in
//! [`crate::qemu::qemu_args`].

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
    /// The board's UEFI firmware ([`Firmware::Uefi`]).
    pub uefi: UefiFirmware,
}

/// A UEFI firmware build as Debian installs it: code and a blank variable store, both
/// attached as the board's flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UefiFirmware {
    /// The firmware code (read-only flash).
    pub code: &'static str,
    /// A blank variable store, used (with `snapshot=on`, so never written) when the
    /// image has no variable store of its own.
    pub vars_template: &'static str,
    /// The Debian package that installs both.
    pub package: &'static str,
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
                uefi: UefiFirmware {
                    code: "/usr/share/OVMF/OVMF_CODE_4M.fd",
                    vars_template: "/usr/share/OVMF/OVMF_VARS_4M.fd",
                    package: "ovmf",
                },
            },
            // The virt board's UART is a PL011, which Linux names ttyAMA0.
            Target::Aarch64 => Machine {
                program: "qemu-system-aarch64",
                package: "qemu-system-arm",
                machine: "virt,accel=tcg",
                cpu: "cortex-a57",
                console: "ttyAMA0",
                uefi: UefiFirmware {
                    code: "/usr/share/AAVMF/AAVMF_CODE.fd",
                    vars_template: "/usr/share/AAVMF/AAVMF_VARS.fd",
                    package: "qemu-efi-aarch64",
                },
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
    /// The board's UEFI firmware ([`Machine::uefi`]) boots the disk's EFI system partition
    /// (`\EFI\BOOT\BOOTX64.EFI`: limpet-boot), which verifies the slot and starts its
    /// kernel with the slot's signed command line: QEMU is given no kernel, initramfs or
    /// command line. The variable store is the image's `uefi-vars.fd` when it has one
    /// (where Secure Boot keys are enrolled), else the firmware's blank one.
    Uefi,
}

/// The image's own UEFI variable store, beside the build's outputs.
pub const UEFI_VARS_FILE: &str = "uefi-vars.fd";
