//! The identity file on the data partition: loaded when present, made once when absent.
//!
//! Rules this module keeps:
//! - An existing file is loaded or refused ([`StoreError::Corrupt`]); it is never
//!   rewritten, replaced or removed here. A damaged identity is a fact to report, not a
//!   reason to become another device: the owner or vendor decides (a wipe makes a new
//!   one), so a fault or an attack that damages the file cannot silently re-key the device.
//! - A new file is written power-fail-safely: the temporary file `device.key.tmp` is
//!   written and fsynced, renamed over `device.key`, then the directory (and its parent,
//!   which may just have gained it) is fsynced. A power cut leaves either no
//!   `device.key` (the next boot makes a new identity, and no one ever saw the lost one:
//!   the identity is reported only after the rename is durable) or the complete file.
//!   A leftover temporary file is overwritten.
//! - The directory is mode 0700 and the file 0600, owned by PID 1 (root); tasks see only
//!   their own `/data/<name>` (docs/sandbox.md), never `/data/.limpet`.
//! - With a TPM ([`open_with`]), a new identity's seed is sealed to [`SEALED_PCRS`] (the
//!   Secure Boot state and the loader's measurement of the image key) and the file keeps
//!   only the sealed object (class tpm-sealed); it is sealed only when the loader measured
//!   a key (PCR 13 not zero), otherwise the identity is kept in software and the reason is
//!   returned ([`NotSealed`]). A sealed file is unsealed at each boot; when that fails
//!   (another boot chain, another TPM) it is refused like a damaged file.
//! - Paths come in as parameters (the data partition's mount point), so tests use a
//!   temporary directory.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::file::{self, FileError, CHECKSUM_LEN, HEADER_LEN, MAX_SECRET, SEED_LEN};
use crate::key::{Class, Identity};
use crate::tpm::{self, TpmError, Transport};
use limpet_image::measure::{IMAGE_KEY_PCR, SECURE_BOOT_PCR};

/// The PCRs a sealed identity is bound to: the Secure Boot state (7) and the loader's
/// measurement of the image key (13), both from limpet-image's `measure`.
pub const SEALED_PCRS: [u8; 2] = [pcr(SECURE_BOOT_PCR), pcr(IMAGE_KEY_PCR)];

/// A PCR number as the selection bitmap takes it (below 24, checked at compile time).
const fn pcr(n: u32) -> u8 {
    assert!(n < 24);
    n.to_le_bytes()[0]
}

/// The identity's directory under the data partition's mount point.
pub const DIR: &str = ".limpet/identity";
/// The identity file in [`DIR`].
pub const FILE: &str = "device.key";
/// The temporary file a new identity is written to before its rename.
pub const TEMP: &str = "device.key.tmp";

/// Why the identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is damaged; it is kept as it is and no new identity is made (a wipe of the data partition makes one)", path.display())]
    Corrupt { path: PathBuf, source: FileError },
    #[error("{} holds a TPM-sealed identity, and this device has no TPM (/dev/tpmrm0)", path.display())]
    NoTpm { path: PathBuf },
    #[error("cannot unseal {}: the boot chain (Secure Boot state, image key) differs from the one it was sealed to, or this is another TPM; it is kept as it is and no new identity is made", path.display())]
    Unseal { path: PathBuf, source: TpmError },
    #[error("cannot read the kernel's random number generator")]
    Random { source: std::io::Error },
    #[error("cannot create {}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot rename {} into place", path.display())]
    Rename {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot sync the directory {}", path.display())]
    SyncDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What [`open`] found.
#[derive(Debug)]
pub enum Opened {
    /// The identity of an earlier boot.
    Loaded(Identity),
    /// A new identity, made at this boot and now durable; when it is kept in software
    /// although a TPM was offered, why.
    Created(Identity, Option<NotSealed>),
}

impl Opened {
    /// The identity, either way.
    pub fn identity(&self) -> &Identity {
        match self {
            Opened::Loaded(id) | Opened::Created(id, _) => id,
        }
    }
}

/// Why a new identity offered a TPM was kept in software.
#[derive(Debug, thiserror::Error)]
pub enum NotSealed {
    #[error("PCR {IMAGE_KEY_PCR} is zero: the loader measured no image key (a boot without Limpet's loader, or a firmware without EFI_TCG2_PROTOCOL)")]
    Unmeasured,
    #[error("the TPM refused")]
    Tpm(#[source] TpmError),
}

/// The identity file's path under the data partition mounted at `data`.
pub fn path(data: &Path) -> PathBuf {
    data.join(DIR).join(FILE)
}

/// Loads the identity kept under `data` (the data partition's mount point), or makes one
/// from `new_seed` when there is no file (see the module doc), without a TPM.
pub fn open(
    data: &Path,
    new_seed: impl FnOnce() -> std::io::Result<Zeroizing<[u8; 32]>>,
) -> Result<Opened, StoreError> {
    open_with(data, new_seed, None)
}

/// [`open`], sealing a new identity with `tpm` and unsealing a sealed one with it.
pub fn open_with(
    data: &Path,
    new_seed: impl FnOnce() -> std::io::Result<Zeroizing<[u8; 32]>>,
    tpm: Option<&mut dyn Transport>,
) -> Result<Opened, StoreError> {
    let path = path(data);
    match read_capped(&path) {
        Ok(bytes) => load(&path, &bytes, tpm).map(Opened::Loaded),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = new_seed().map_err(|source| StoreError::Random { source })?;
            let sealed = tpm.map(|t| seal_seed(t, &seed));
            let (identity, bytes, not_sealed) = match sealed {
                Some(Ok(sealed)) => {
                    let identity = Identity::from_seed(&seed, Class::TpmSealed);
                    let bytes = file::encode_parts(
                        Class::TpmSealed,
                        &identity.public_key(),
                        &sealed.to_bytes(),
                    );
                    (identity, bytes, None)
                }
                other => {
                    let identity = Identity::from_seed(&seed, Class::Software);
                    let bytes = file::encode(&identity);
                    (identity, bytes, other.and_then(Result::err))
                }
            };
            write_new(data, &bytes)?;
            Ok(Opened::Created(identity, not_sealed))
        }
        Err(source) => Err(StoreError::Read { path, source }),
    }
}

/// Seals `seed` to [`SEALED_PCRS`], if the loader measured an image key.
fn seal_seed(tpm: &mut dyn Transport, seed: &[u8; 32]) -> Result<tpm::Sealed, NotSealed> {
    match tpm::read_pcr(tpm, pcr(IMAGE_KEY_PCR)).map_err(NotSealed::Tpm)? {
        Some(value) if value != [0; 32] => {}
        _ => return Err(NotSealed::Unmeasured),
    }
    tpm::seal(tpm, &SEALED_PCRS, seed).map_err(NotSealed::Tpm)
}

/// The public part of the file at `path` (class and public key), checked as a whole:
/// what `limpet inspect` shows of a disk image.
pub fn decode_public(bytes: &[u8]) -> Result<(Class, ed25519_dalek::VerifyingKey), FileError> {
    let decoded = file::decode(bytes)?;
    if decoded.class == Class::Software {
        file::software_identity(&decoded)?;
    }
    Ok((decoded.class, decoded.public))
}

fn load(
    path: &Path,
    bytes: &[u8],
    tpm: Option<&mut dyn Transport>,
) -> Result<Identity, StoreError> {
    let corrupt = |source| StoreError::Corrupt {
        path: path.to_owned(),
        source,
    };
    let decoded = file::decode(bytes).map_err(corrupt)?;
    if decoded.class == Class::Software {
        return file::software_identity(&decoded).map_err(corrupt);
    }
    let sealed =
        tpm::Sealed::from_bytes(&decoded.secret).map_err(|_| corrupt(FileError::SealedObject))?;
    let Some(tpm) = tpm else {
        return Err(StoreError::NoTpm {
            path: path.to_owned(),
        });
    };
    let seed = tpm::unseal(tpm, &SEALED_PCRS, &sealed).map_err(|source| StoreError::Unseal {
        path: path.to_owned(),
        source,
    })?;
    let seed: &[u8; SEED_LEN] = seed
        .as_slice()
        .try_into()
        .map_err(|_| corrupt(FileError::SeedLength { found: seed.len() }))?;
    let identity = Identity::from_seed(seed, Class::TpmSealed);
    if identity.public_key() != decoded.public {
        return Err(corrupt(FileError::KeyMismatch));
    }
    Ok(identity)
}

/// The file's bytes, at most one more than the largest valid file (so an oversized file
/// is refused by its length, without reading all of it).
fn read_capped(path: &Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let cap = HEADER_LEN + MAX_SECRET + CHECKSUM_LEN + 1;
    let mut bytes = Zeroizing::new(Vec::new());
    File::open(path)?
        .take(u64::try_from(cap).unwrap_or(u64::MAX))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes `bytes` as the identity file: temporary file, fsync, rename, fsync of the
/// directory and its parent.
fn write_new(data: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = data.join(DIR);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| StoreError::CreateDir {
            path: dir.clone(),
            source,
        })?;
    let temp = dir.join(TEMP);
    let write = |path: &Path| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write(&temp).map_err(|source| StoreError::Write {
        path: temp.clone(),
        source,
    })?;
    let path = dir.join(FILE);
    std::fs::rename(&temp, &path).map_err(|source| StoreError::Rename {
        path: path.clone(),
        source,
    })?;
    for d in [dir.as_path(), dir.parent().unwrap_or(&dir)] {
        File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(|source| StoreError::SyncDir {
                path: d.to_owned(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn seed(byte: u8) -> impl FnOnce() -> std::io::Result<Zeroizing<[u8; 32]>> {
        move || Ok(Zeroizing::new([byte; 32]))
    }

    fn no_seed() -> std::io::Result<Zeroizing<[u8; 32]>> {
        Err(std::io::Error::other("must not be asked for a seed"))
    }

    /// First boot makes and stores an identity; the next boot loads the same one and
    /// asks for no randomness.
    #[test]
    fn the_first_open_creates_and_the_next_loads_the_same() {
        let data = tempfile::tempdir().unwrap();
        let first = open(data.path(), crate::random::kernel_seed).unwrap();
        let Opened::Created(made, None) = &first else {
            panic!("{first:?}")
        };
        let again = open(data.path(), no_seed).unwrap();
        let Opened::Loaded(loaded) = &again else {
            panic!("{again:?}")
        };
        assert_eq!(made.fingerprint(), loaded.fingerprint());
        assert_eq!(loaded.class(), Class::Software);
        let file = path(data.path());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
        assert!(!file.with_file_name(TEMP).exists());
    }

    /// Two data partitions (two devices) get two identities.
    #[test]
    fn two_devices_get_two_identities() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = open(a.path(), crate::random::kernel_seed).unwrap();
        let b = open(b.path(), crate::random::kernel_seed).unwrap();
        assert_ne!(a.identity().fingerprint(), b.identity().fingerprint());
    }

    /// A damaged file is refused by name and kept byte for byte; no new identity is made.
    #[test]
    fn a_damaged_file_is_refused_and_kept() {
        let data = tempfile::tempdir().unwrap();
        open(data.path(), seed(3)).unwrap();
        let file = path(data.path());
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[60] ^= 0x80;
        std::fs::write(&file, &bytes).unwrap();
        let err = open(data.path(), no_seed).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { path, source: FileError::Checksum } if *path == file),
            "{err:?}"
        );
        assert!(err.to_string().contains("no new identity is made"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
        // An empty file (a torn write on a filesystem without ordering) is refused too.
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            open(data.path(), no_seed),
            Err(StoreError::Corrupt {
                source: FileError::TooShort { len: 0, .. },
                ..
            })
        ));
    }

    /// A power cut before the rename leaves only the temporary file: the next boot makes
    /// an identity as on a first boot and replaces the leftover.
    #[test]
    fn a_leftover_temporary_file_is_replaced() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join(DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(TEMP), b"half a key").unwrap();
        let opened = open(data.path(), seed(9)).unwrap();
        assert!(matches!(opened, Opened::Created(_, None)));
        assert!(!dir.join(TEMP).exists());
        let loaded = open(data.path(), no_seed).unwrap();
        assert_eq!(
            loaded.identity().fingerprint(),
            opened.identity().fingerprint()
        );
    }

    /// No randomness, no identity: the error says so and nothing is written.
    #[test]
    fn without_randomness_nothing_is_written() {
        let data = tempfile::tempdir().unwrap();
        let err = open(data.path(), no_seed).unwrap_err();
        assert!(matches!(err, StoreError::Random { .. }), "{err:?}");
        assert!(!path(data.path()).exists());
    }

    /// `decode_public` shows a file's class and public key, and refuses a damaged one.
    #[test]
    fn the_public_part_is_readable_from_the_bytes() {
        let data = tempfile::tempdir().unwrap();
        let opened = open(data.path(), seed(5)).unwrap();
        let bytes = std::fs::read(path(data.path())).unwrap();
        let (class, public) = decode_public(&bytes).unwrap();
        assert_eq!(class, Class::Software);
        assert_eq!(public, opened.identity().public_key());
        assert_eq!(
            decode_public(&bytes[..40]).unwrap_err(),
            FileError::TooShort { len: 40, min: 80 }
        );
    }
}
