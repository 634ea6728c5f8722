//! The Linux initrd hand-over (the kernel's `Documentation/x86/boot.rst` and
//! `drivers/firmware/efi/libstub`: `LINUX_EFI_INITRD_MEDIA_GUID`): the loader installs, on
//! a new handle, a device path made of one vendor media node with that GUID, and an
//! `EFI_LOAD_FILE2_PROTOCOL` whose `LoadFile` returns the initramfs. The kernel's EFI stub
//! (Linux 5.8 and later) finds the handle by that path and pulls the initramfs through it.
//!
//! This module is the pure part: the device path's bytes and the `LoadFile` answer. The
//! binary's `sys` module installs them.

/// `LINUX_EFI_INITRD_MEDIA_GUID`, 5568e427-68fc-4f3d-ac74-ca555231cc68, in its on-disk
/// (mixed-endian) byte order.
pub const INITRD_MEDIA_GUID: [u8; 16] = [
    0x27, 0xe4, 0x68, 0x55, 0xfc, 0x68, 0x3d, 0x4f, 0xac, 0x74, 0xca, 0x55, 0x52, 0x31, 0xcc, 0x68,
];

/// The device path: a vendor media node (type 4, subtype 3, 20 bytes) with the GUID, then
/// the end-of-path node (type 0x7f, subtype 0xff, 4 bytes).
pub const INITRD_DEVICE_PATH: [u8; 24] = {
    let mut p = [0u8; 24];
    p[0] = 0x04;
    p[1] = 0x03;
    p[2] = 20;
    let mut i = 0;
    while i < 16 {
        p[4 + i] = INITRD_MEDIA_GUID[i];
        i += 1;
    }
    p[20] = 0x7f;
    p[21] = 0xff;
    p[22] = 4;
    p
};

/// What `LoadFile` answers for a caller's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadFileAnswer {
    /// `boot_policy` was true: this is not a boot option (`EFI_UNSUPPORTED`).
    Unsupported,
    /// No buffer or too small a one: report the size (`EFI_BUFFER_TOO_SMALL`).
    TooSmall {
        /// The initramfs's size.
        size: usize,
    },
    /// Copy the initramfs, report its size (`EFI_SUCCESS`).
    Copy {
        /// The initramfs's size.
        size: usize,
    },
}

/// The answer to `LoadFile(boot_policy, buffer_size, buffer)` for an initramfs of `len`
/// bytes (UEFI 2.10 section 13.2: a null buffer or a small one gets the size).
pub fn load_file_answer(
    boot_policy: bool,
    buffer_is_null: bool,
    buffer_size: usize,
    len: usize,
) -> LoadFileAnswer {
    if boot_policy {
        LoadFileAnswer::Unsupported
    } else if buffer_is_null || buffer_size < len {
        LoadFileAnswer::TooSmall { size: len }
    } else {
        LoadFileAnswer::Copy { size: len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_path_is_the_kernels() {
        // The GUID's text fields, little-endian as EFI stores them.
        assert_eq!(&INITRD_MEDIA_GUID[..4], &0x5568_e427u32.to_le_bytes());
        assert_eq!(&INITRD_MEDIA_GUID[4..6], &0x68fcu16.to_le_bytes());
        assert_eq!(&INITRD_MEDIA_GUID[6..8], &0x4f3du16.to_le_bytes());
        assert_eq!(
            &INITRD_MEDIA_GUID[8..],
            &[0xac, 0x74, 0xca, 0x55, 0x52, 0x31, 0xcc, 0x68]
        );
        assert_eq!(&INITRD_DEVICE_PATH[..4], &[4, 3, 20, 0]);
        assert_eq!(&INITRD_DEVICE_PATH[4..20], &INITRD_MEDIA_GUID);
        assert_eq!(&INITRD_DEVICE_PATH[20..], &[0x7f, 0xff, 4, 0]);
    }

    #[test]
    fn load_file_reports_the_size_before_copying() {
        assert_eq!(
            load_file_answer(false, true, 0, 10),
            LoadFileAnswer::TooSmall { size: 10 }
        );
        assert_eq!(
            load_file_answer(false, false, 9, 10),
            LoadFileAnswer::TooSmall { size: 10 }
        );
        assert_eq!(
            load_file_answer(false, false, 10, 10),
            LoadFileAnswer::Copy { size: 10 }
        );
        assert_eq!(
            load_file_answer(true, false, 10, 10),
            LoadFileAnswer::Unsupported
        );
    }
}
