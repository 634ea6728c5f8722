//! `initramfs.cpio`: exactly `limpet-init` as `/init`, the vendor's public image key, the
//! kernel modules the image needs (with their dependency closure, in load order), the
//! list PID 1 loads them from, the empty `/data` template and the release file.

use ed25519_dalek::SigningKey;
use limpet_image::cpio;
use limpet_image::release::Release;

use super::kernel::{self, KernelFiles, ModuleIndex};
use super::pipeline::{read, BuildError};
use crate::outputs::{INITRAMFS_MODULE_LIST, INITRAMFS_PUBLIC_KEY};
use crate::project::keys;

/// The initramfs: `/init` (limpet-init), the public image key, the module closure and its
/// load list, the `/data` template, the release file and the empty mount points PID 1
/// uses; returns (zstd bytes, uncompressed size, module names in load order).
pub fn make(
    manifest: &limpet_manifest::Manifest,
    kernel_files: &KernelFiles,
    init: &[u8],
    data_template: &[u8],
    release: &Release,
    key: &SigningKey,
    epoch: u32,
) -> Result<(Vec<u8>, u64, Vec<String>), BuildError> {
    let release_file = release.to_file();
    let release_dependent = ReleaseFiles {
        data_template,
        release: &release_file,
    };
    let Some(modules_dir) = &kernel_files.modules_dir else {
        // A kernel without loadable modules: every driver is built in, the list is empty.
        return finish(init, release_dependent, key, epoch, Vec::new(), Vec::new());
    };
    let index = ModuleIndex::load(modules_dir)?;
    let mut wanted: Vec<String> = kernel::base_modules(manifest.device.target)
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if manifest
        .tasks
        .iter()
        .any(|t| t.network == limpet_manifest::NetworkAccess::Allowlist)
    {
        wanted.extend(
            kernel::network_modules(manifest.device.target)
                .iter()
                .map(|s| (*s).to_owned()),
        );
    }
    wanted.extend(
        manifest
            .kernel
            .modules
            .iter()
            .map(|m| m.as_str().to_owned()),
    );
    let modules = index.closure(&wanted)?;
    let mut files = Vec::new();
    for module in &modules {
        let source = modules_dir.join(&module.relative_path);
        let dest = format!(
            "lib/modules/{}/{}",
            kernel_files.release, module.relative_path
        );
        files.push((dest, read(&source)?));
    }
    finish(
        init,
        release_dependent,
        key,
        epoch,
        files,
        modules.into_iter().map(|m| m.name).collect(),
    )
}

/// The files that change with every release, even when nothing else does.
#[derive(Clone, Copy)]
struct ReleaseFiles<'a> {
    /// The empty data filesystem's template (its UUID is from the device's version).
    data_template: &'a [u8],
    /// The release file (limpet-image's `release`).
    release: &'a [u8],
}

/// The initramfs: two `newc` archives, each compressed on its own and concatenated (the
/// kernel unpacks one after the other). The first holds `/init`, the public key, the
/// module files (their paths and bytes, in load order) with the load list and the mount
/// points: the same bytes in two releases built from the same Limpet source and options.
/// The second holds the files of `release_dependent`, which change with every release.
/// Returns (zstd bytes, uncompressed size, `names`).
fn finish(
    init: &[u8],
    release_dependent: ReleaseFiles<'_>,
    key: &SigningKey,
    epoch: u32,
    modules: Vec<(String, Vec<u8>)>,
    names: Vec<String>,
) -> Result<(Vec<u8>, u64, Vec<String>), BuildError> {
    let mut archive = cpio::CpioBuilder::new();
    // The slot's delta carries the initramfs compressed: with the release's files in an
    // archive of their own, the first archive's compressed bytes are the same in two
    // releases, and a release that changes only its version pays for the second one.
    archive
        .add_file_last("init", 0o555, init.to_vec())
        .map_err(BuildError::Cpio)?;
    let pem = keys::public_pem(&key.verifying_key())?;
    archive
        .add_file(INITRAMFS_PUBLIC_KEY, 0o444, pem.into_bytes())
        .map_err(BuildError::Cpio)?;
    let mut list = String::new();
    for (dest, bytes) in modules {
        list.push('/');
        list.push_str(&dest);
        list.push('\n');
        archive
            .add_file(&dest, 0o444, bytes)
            .map_err(BuildError::Cpio)?;
    }
    archive
        .add_file(INITRAMFS_MODULE_LIST, 0o444, list.into_bytes())
        .map_err(BuildError::Cpio)?;
    for dir in ["dev", "proc", "sys", "run", "slot", "data"] {
        archive.add_dir(dir, 0o755).map_err(BuildError::Cpio)?;
    }
    let raw = archive.finish(epoch);
    let mut compressed = cpio::compress(&raw).map_err(BuildError::Cpio)?;

    let mut release = cpio::CpioBuilder::new();
    for (path, bytes) in [
        (
            limpet_image::datafs::INITRAMFS_PATH,
            release_dependent.data_template,
        ),
        (
            limpet_image::release::INITRAMFS_PATH,
            release_dependent.release,
        ),
    ] {
        release
            .add_file(path, 0o444, bytes.to_vec())
            .map_err(BuildError::Cpio)?;
    }
    let release_raw = release.finish(epoch);
    compressed.extend(cpio::compress(&release_raw).map_err(BuildError::Cpio)?);
    Ok((compressed, (raw.len() + release_raw.len()) as u64, names))
}
