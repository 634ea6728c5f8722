//! Verified mount of a slot: check the signed header against the key in the initramfs,
//! hand the signed verity parameters to the kernel's dm-verity target, and mount the
//! squashfs read-only from the verified device.
//!
//! Rules this module keeps:
//! - nothing from the slot is used before its header's signature checks out: the only
//!   bytes read before that are the squashfs superblock and the header, and every layout
//!   value derived from the unsigned superblock is cross-checked against the signed
//!   header by `limpet_image::slot::read_header_at`;
//! - the verity table is built only from signed header fields;
//! - the squashfs is mounted from the dm-verity device, never from the raw partition, so
//!   every block read afterwards is checked against the signed root hash by the kernel.

use std::fs::File;
use std::path::{Path, PathBuf};

use limpet_image::header::SlotHeader;
use limpet_image::slot;

use crate::dm::{self, Command};
use crate::sys;

/// Where the initramfs carries the vendor's public image key.
pub const PUBLIC_KEY: &str = "etc/limpet/image.pub";

/// Why the image key in the initramfs cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the image key {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image key {} is not an Ed25519 public key in PEM", path.display())]
    Parse {
        path: PathBuf,
        source: crate::pubkey::PubkeyError,
    },
}

/// Why a slot's header was refused or its squashfs not mounted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot open {}", device.display())]
    Open {
        device: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: bad slot", device.display())]
    Header {
        device: PathBuf,
        source: slot::SlotError,
    },
    #[error("{}: header refused", device.display())]
    Signature {
        device: PathBuf,
        source: limpet_image::header::HeaderError,
    },
    #[error("device-mapper {step} of {name}")]
    DeviceMapper {
        name: String,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("device-mapper table of {name}")]
    Table { name: String, source: dm::DmError },
    #[error("cannot mount {}", device.display())]
    Mount {
        device: PathBuf,
        source: std::io::Error,
    },
}

/// A slot whose header is verified and whose squashfs is mounted.
#[derive(Debug)]
pub struct MountedSlot {
    pub header: SlotHeader,
    pub verity_device: PathBuf,
    pub mountpoint: PathBuf,
}

/// Reads the public image key the initramfs carries.
pub fn load_key(root: &Path) -> Result<ed25519_dalek::VerifyingKey, KeyError> {
    let path = root.join(PUBLIC_KEY);
    let text = std::fs::read_to_string(&path).map_err(|source| KeyError::Read {
        path: path.clone(),
        source,
    })?;
    crate::pubkey::parse_pem(&text).map_err(|source| KeyError::Parse { path, source })
}

/// Checks the header of the slot on `device` against `key`.
pub fn verify_header(
    device: &Path,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<SlotHeader, VerifyError> {
    let mut file = File::open(device).map_err(|source| VerifyError::Open {
        device: device.to_owned(),
        source,
    })?;
    let (_layout, unverified) =
        slot::read_header_at(&mut file).map_err(|source| VerifyError::Header {
            device: device.to_owned(),
            source,
        })?;
    unverified
        .verify(key)
        .map_err(|source| VerifyError::Signature {
            device: device.to_owned(),
            source,
        })
}

/// Maps `device` through dm-verity as `name` with the signed parameters of `header`, and
/// mounts the squashfs read-only on `mountpoint`.
pub fn mount_verified(
    root: &Path,
    device: &Path,
    header: SlotHeader,
    name: &str,
    mountpoint: &Path,
) -> Result<MountedSlot, VerifyError> {
    let dm_err = |step: &'static str| {
        move |source| VerifyError::DeviceMapper {
            name: name.to_owned(),
            step,
            source,
        }
    };
    let table_err = |source| VerifyError::Table {
        name: name.to_owned(),
        source,
    };
    let control = File::options()
        .read(true)
        .write(true)
        .open(root.join("dev/mapper/control"))
        .map_err(dm_err("open /dev/mapper/control"))?;

    let mut create = dm::request(name, 0).map_err(table_err)?;
    sys::dm_ioctl(&control, Command::DevCreate, &mut create).map_err(dm_err("create"))?;

    let params = dm::verity_params(&device.display().to_string(), &header);
    let mut load =
        dm::table_load(name, "verity", dm::verity_sectors(&header), &params).map_err(table_err)?;
    sys::dm_ioctl(&control, Command::TableLoad, &mut load).map_err(dm_err("load verity table"))?;

    // DM_DEV_SUSPEND without the suspend flag resumes: the table goes live.
    let mut resume = dm::request(name, 0).map_err(table_err)?;
    sys::dm_ioctl(&control, Command::DevSuspend, &mut resume).map_err(dm_err("resume"))?;
    let dev = dm::dev_of(&resume).unwrap_or(0);
    let minor = dev_minor(dev);
    let verity_device = root.join(format!("dev/dm-{minor}"));
    sys::ensure_block_node(&verity_device, dev).map_err(dm_err("device node"))?;

    sys::mount_squashfs(&verity_device, mountpoint).map_err(|source| VerifyError::Mount {
        device: verity_device.clone(),
        source,
    })?;
    Ok(MountedSlot {
        header,
        verity_device,
        mountpoint: mountpoint.to_owned(),
    })
}

/// The minor number of a Linux `dev_t` (the kernel's new encoding, as glibc and musl
/// `minor()`).
fn dev_minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & 0xffff_ff00)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_numbers_decode_like_libc() {
        // makedev(254, 0) and makedev(253, 300) as the kernel encodes them.
        assert_eq!(dev_minor(254 << 8), 0);
        let dev = ((300u64 & 0xff) | (253 << 8)) | ((300u64 & !0xff) << 12);
        assert_eq!(dev_minor(dev), 300);
    }
}
