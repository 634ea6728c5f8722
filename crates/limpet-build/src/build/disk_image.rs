//! `disk.img`: the GPT layout with the slot in `slot-a`, the factory A/B state in `state`,
//! and an empty ext4 in `data`.
//!
//! Rules this module keeps:
//! - the factory state commits slot A at the built version, which is also the first
//!   version floor; no trial is set;
//! - a partition's contents that do not fit in it are refused, never cut short;
//! - all-zero blocks are skipped when copying into a partition, so the file stays sparse.

use std::fs;
use std::path::Path;

use limpet_image::disk;

use super::pipeline::BuildError;

/// Writes the disk image at `path` (a staging path) and returns its size in bytes.
/// `data_fs` is a scratch file for the data filesystem before it is copied in.
pub fn write(
    path: &Path,
    spec: &disk::DiskSpec<'_>,
    version: &semver::Version,
    data_fs: &Path,
    epoch: u32,
) -> Result<u64, BuildError> {
    let write_err = |source| BuildError::Write {
        path: path.to_owned(),
        source,
    };
    // Read and write: the state store reads both copies before writing one.
    let mut file = fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(write_err)?;
    let layout = disk::write(spec, &mut file).map_err(BuildError::Disk)?;
    write_factory_state(&mut file, &layout, version, path)?;
    let data_size = layout
        .partitions
        .iter()
        .find(|p| p.name == "data")
        .map_or(0, limpet_image::gpt::Partition::size);
    let uuid_bytes: [u8; 16] = spec.guid_seed[16..].try_into().unwrap_or([0; 16]);
    super::datafs::make(
        data_fs,
        data_size,
        &super::ids::uuid_string(&uuid_bytes),
        epoch,
    )?;
    copy_into_partition(data_fs, &mut file, &layout, "data", path)?;
    file.sync_all().map_err(write_err)?;
    let bytes = file
        .metadata()
        .map_err(|source| BuildError::Read {
            path: path.to_owned(),
            source,
        })?
        .len();
    Ok(bytes)
}

/// Copies `image` into partition `name` of the disk, skipping all-zero blocks so the disk
/// file stays sparse.
fn copy_into_partition(
    image: &Path,
    disk_file: &mut fs::File,
    layout: &disk::DiskLayout,
    name: &str,
    disk_path: &Path,
) -> Result<(), BuildError> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let part = layout
        .partitions
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| BuildError::State {
            path: disk_path.to_owned(),
            reason: format!("no {name} partition"),
        })?;
    let mut source = fs::File::open(image).map_err(|source| BuildError::Read {
        path: image.to_owned(),
        source,
    })?;
    let len = source
        .metadata()
        .map_err(|source| BuildError::Read {
            path: image.to_owned(),
            source,
        })?
        .len();
    if len > part.size() {
        return Err(BuildError::State {
            path: disk_path.to_owned(),
            reason: format!(
                "{} is {len} bytes, partition {name} only {}",
                image.display(),
                part.size()
            ),
        });
    }
    let write_err = |source| BuildError::Write {
        path: disk_path.to_owned(),
        source,
    };
    let mut block = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let n = source.read(&mut block).map_err(|source| BuildError::Read {
            path: image.to_owned(),
            source,
        })?;
        if n == 0 {
            break;
        }
        let chunk = &block[..n];
        if chunk.iter().any(|&b| b != 0) {
            disk_file
                .seek(SeekFrom::Start(part.offset() + offset))
                .map_err(write_err)?;
            disk_file.write_all(chunk).map_err(write_err)?;
        }
        offset += n as u64;
    }
    Ok(())
}

/// Writes the factory state into the disk's `state` partition: slot A committed at the
/// built version, which is also the first version floor.
fn write_factory_state(
    disk_file: &mut fs::File,
    layout: &disk::DiskLayout,
    version: &semver::Version,
    disk_path: &Path,
) -> Result<(), BuildError> {
    let write_err = |e: String| BuildError::State {
        path: disk_path.to_owned(),
        reason: e,
    };
    let part = layout
        .partitions
        .iter()
        .find(|p| p.name == "state")
        .ok_or_else(|| write_err("the disk layout has no state partition".into()))?;
    let version = limpet_state::Version::from_semver(version.clone())
        .map_err(|e| write_err(e.to_string()))?;
    let region = limpet_state::Region::new(disk_file, part.offset(), part.size())
        .map_err(|e| write_err(e.to_string()))?;
    let mut store = limpet_state::StateStore::new(region).map_err(|e| write_err(e.to_string()))?;
    store
        .store(&limpet_state::State::factory(version))
        .map_err(|e| write_err(e.to_string()))?;
    Ok(())
}
