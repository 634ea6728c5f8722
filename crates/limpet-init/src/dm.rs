//! Device-mapper requests for the dm-verity target, encoded as the kernel's
//! `struct dm_ioctl` (include/uapi/linux/dm-ioctl.h, interface version 4).
//!
//! This module only builds and parses byte buffers; [`crate::sys`] makes the ioctl calls.
//! Layout of `struct dm_ioctl` (312 bytes, little-endian on every target we build):
//!
//! ```text
//! 0   u32[3] version      in: 4.0.0 (the minimum we need)
//! 12  u32    data_size    total buffer size, this header included
//! 16  u32    data_start   offset of the payload (target specs) from the header start
//! 20  u32    target_count
//! 24  i32    open_count
//! 28  u32    flags
//! 32  u32    event_nr
//! 36  u32    padding
//! 40  u64    dev          out: the mapped device's number
//! 48  [128]  name
//! 176 [129]  uuid
//! 305 [7]    data (padding)
//! ```
//!
//! A table is one `struct dm_target_spec` (40 bytes: sector_start u64, length u64,
//! status i32, next u32, target_type [16]) followed by the target's parameter string and
//! a NUL, padded to 8 bytes.

use limpet_image::header::SlotHeader;

/// Size of `struct dm_ioctl`.
pub const DM_IOCTL_SIZE: usize = 312;
/// Size of `struct dm_target_spec`.
const TARGET_SPEC_SIZE: usize = 40;
/// `DM_NAME_LEN`.
const NAME_LEN: usize = 128;
/// Flag: the device is read-only.
pub const DM_READONLY_FLAG: u32 = 1 << 0;
/// Size of the buffers we hand to the kernel: room for the header, one target spec and
/// its parameters, with space for the kernel's answers.
pub const BUFFER_SIZE: usize = 16 * 1024;

/// The ioctl commands we use (`DM_*_CMD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    DevCreate = 3,
    DevSuspend = 6,
    TableLoad = 9,
}

impl Command {
    /// The ioctl request number: `_IOWR(0xfd, cmd, struct dm_ioctl)`.
    pub fn request(self) -> u32 {
        const IOC_READ_WRITE: u32 = 3;
        let size = u32::try_from(DM_IOCTL_SIZE).unwrap_or(0);
        (IOC_READ_WRITE << 30) | (size << 16) | (0xfd << 8) | self as u32
    }
}

/// Errors building a request.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DmError {
    #[error("device-mapper name {name:?} is longer than {} bytes", NAME_LEN - 1)]
    NameTooLong { name: String },
    #[error("device-mapper table of {len} bytes does not fit the request buffer")]
    ParamsTooLong { len: usize },
}

/// A request buffer: the header with `name` and `flags`, no payload.
pub fn request(name: &str, flags: u32) -> Result<Vec<u8>, DmError> {
    if name.len() >= NAME_LEN {
        return Err(DmError::NameTooLong {
            name: name.to_owned(),
        });
    }
    let mut buf = vec![0u8; BUFFER_SIZE];
    put_u32(&mut buf, 0, 4);
    put_u32(&mut buf, 12, u32::try_from(BUFFER_SIZE).unwrap_or(u32::MAX));
    put_u32(
        &mut buf,
        16,
        u32::try_from(DM_IOCTL_SIZE).unwrap_or(u32::MAX),
    );
    put_u32(&mut buf, 28, flags);
    buf[48..48 + name.len()].copy_from_slice(name.as_bytes());
    Ok(buf)
}

/// A DM_TABLE_LOAD request with one target of `length_sectors` sectors.
pub fn table_load(
    name: &str,
    target_type: &str,
    length_sectors: u64,
    params: &str,
) -> Result<Vec<u8>, DmError> {
    let mut buf = request(name, DM_READONLY_FLAG)?;
    let spec = DM_IOCTL_SIZE;
    let params_start = spec + TARGET_SPEC_SIZE;
    let end = (params_start + params.len() + 1).next_multiple_of(8);
    if end > buf.len() || target_type.len() >= 16 {
        return Err(DmError::ParamsTooLong { len: params.len() });
    }
    put_u32(&mut buf, 20, 1);
    put_u64(&mut buf, spec, 0);
    put_u64(&mut buf, spec + 8, length_sectors);
    put_u32(&mut buf, spec + 20, u32::try_from(end - spec).unwrap_or(0));
    buf[spec + 24..spec + 24 + target_type.len()].copy_from_slice(target_type.as_bytes());
    buf[params_start..params_start + params.len()].copy_from_slice(params.as_bytes());
    Ok(buf)
}

/// The device number the kernel wrote back into a request buffer.
pub fn dev_of(buf: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(40..48)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// The dm-verity table for a slot whose data and hash tree are both on `device` (format
/// 1, no superblock: every parameter comes from the signed header).
pub fn verity_params(device: &str, header: &SlotHeader) -> String {
    let hash_start_block = header.hash_offset / u64::from(header.hash_block_size.max(1));
    format!(
        "1 {device} {device} {} {} {} {hash_start_block} {} {} {}",
        header.data_block_size,
        header.hash_block_size,
        header.data_blocks,
        header.hash_algorithm.name(),
        hex(&header.root_hash),
        hex(&header.salt),
    )
}

/// Length of the verity target in 512-byte sectors.
pub fn verity_sectors(header: &SlotHeader) -> u64 {
    header
        .data_blocks
        .saturating_mul(u64::from(header.data_block_size) / 512)
}

/// Lower-case hex of `bytes`, as dm tables and console lines write digests.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, value: u64) {
    buf[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_kernel_header() {
        // Values of DM_DEV_CREATE, DM_TABLE_LOAD and DM_DEV_SUSPEND on Linux x86_64/arm64.
        assert_eq!(Command::DevCreate.request(), 0xc138_fd03);
        assert_eq!(Command::TableLoad.request(), 0xc138_fd09);
        assert_eq!(Command::DevSuspend.request(), 0xc138_fd06);
    }

    #[test]
    fn table_load_lays_out_one_target() {
        let buf = table_load("limpet-slot", "verity", 800, "1 a b").unwrap();
        assert_eq!(&buf[0..4], &4u32.to_le_bytes());
        assert_eq!(&buf[16..20], &312u32.to_le_bytes());
        assert_eq!(&buf[20..24], &1u32.to_le_bytes());
        assert_eq!(&buf[48..59], b"limpet-slot");
        assert_eq!(&buf[312 + 8..312 + 16], &800u64.to_le_bytes());
        assert_eq!(&buf[312 + 24..312 + 30], b"verity");
        assert_eq!(&buf[352..357], b"1 a b");
        assert_eq!(buf[357], 0);
        let next = u32::from_le_bytes(buf[332..336].try_into().unwrap());
        assert_eq!(next % 8, 0);
    }

    #[test]
    fn overlong_names_are_refused() {
        assert!(matches!(
            request(&"x".repeat(128), 0),
            Err(DmError::NameTooLong { .. })
        ));
    }
}
