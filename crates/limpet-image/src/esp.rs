//! The EFI system partition: a FAT filesystem holding the boot loader at the path every
//! UEFI firmware starts from removable media (`\EFI\BOOT\BOOTX64.EFI` on x86_64,
//! `\EFI\BOOT\BOOTAA64.EFI` on aarch64).
//!
//! Rules this module keeps:
//! - reproducible: a fixed volume id and label, every timestamp the FAT epoch
//!   (1980-01-01, the `fatfs` crate without a clock), files written in the order given;
//! - nothing but the files given: no boot menu, no configuration file, no second loader.
//!   What boots is decided by the signed loader and the A/B state, not by files here.

use std::io::{Cursor, Write};

use thiserror::Error;

use crate::header::Target;

/// Size of the partition: room for a loader fifty times larger than Limpet's.
pub const ESP_SIZE: u64 = ESP_BYTES as u64;
/// [`ESP_SIZE`] as a buffer length.
const ESP_BYTES: usize = 8 << 20;
/// The FAT volume label.
pub const LABEL: &[u8; 11] = b"LIMPET-ESP ";
/// The FAT volume id (serial number), fixed for reproducibility.
pub const VOLUME_ID: u32 = 0x4c49_4d50;

/// The removable-media boot path of `target`, as directory components.
pub const fn boot_path(target: Target) -> [&'static str; 3] {
    match target {
        Target::X86_64 => ["EFI", "BOOT", "BOOTX64.EFI"],
        Target::Aarch64 => ["EFI", "BOOT", "BOOTAA64.EFI"],
    }
}

/// Why the partition could not be made.
#[derive(Debug, Error)]
pub enum EspError {
    /// The FAT library failed (a file too large for the volume, most likely).
    #[error("writing {what} into the EFI system partition")]
    Fat {
        /// What was being written.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The partition's bytes ([`ESP_SIZE`]) with `loader` at the boot path of `target`.
pub fn build(target: Target, loader: &[u8]) -> Result<Vec<u8>, EspError> {
    let fat = |what: &str| {
        let what = what.to_owned();
        move |source| EspError::Fat { what, source }
    };
    let mut disk = Cursor::new(vec![0u8; ESP_BYTES]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new()
            .volume_id(VOLUME_ID)
            .volume_label(*LABEL),
    )
    .map_err(fat("the FAT filesystem"))?;
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())
            .map_err(fat("the FAT filesystem"))?;
        let [efi, boot, file] = boot_path(target);
        {
            let dir = fs
                .root_dir()
                .create_dir(efi)
                .and_then(|d| d.create_dir(boot))
                .map_err(fat("the loader's directory"))?;
            let mut f = dir.create_file(file).map_err(fat(file))?;
            f.truncate().map_err(fat(file))?;
            f.write_all(loader).map_err(fat(file))?;
            f.flush().map_err(fat(file))?;
        }
        fs.unmount().map_err(fat("the FAT filesystem"))?;
    }
    Ok(disk.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_loader_is_at_the_boot_path_and_the_image_is_reproducible() {
        let loader: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let a = build(Target::X86_64, &loader).unwrap();
        assert_eq!(a, build(Target::X86_64, &loader).unwrap());
        assert_eq!(a.len() as u64, ESP_SIZE);
        let mut disk = Cursor::new(a);
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).unwrap();
        let mut back = Vec::new();
        fs.root_dir()
            .open_file("EFI/BOOT/BOOTX64.EFI")
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, loader);
    }

    #[test]
    fn a_loader_larger_than_the_partition_is_an_error() {
        let err = build(Target::Aarch64, &vec![1u8; ESP_BYTES]).unwrap_err();
        assert!(err.to_string().contains("BOOTAA64.EFI"), "{err}");
    }
}
