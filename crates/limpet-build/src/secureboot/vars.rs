//! The firmware variable store of a device: the vendor's PK, KEK and db enrolled, Secure
//! Boot enforcing. For QEMU it is made from a store of Debian's OVMF (x86_64) or AAVMF
//! (aarch64) with `virt-fw-vars`; the firmware image itself is not ours and is not
//! changed.
//!
//! Rules this module keeps: the store written holds the vendor's certificates as the only
//! PK, KEK and db entries, whatever the template held; on aarch64 the template is the
//! store with Microsoft's keys (Debian 12's blank `AAVMF_VARS.fd` is all zeros, a store the
//! firmware formats on its first boot and `virt-fw-vars` cannot read), so its PK, KEK, db
//! and dbx are deleted before the vendor's are enrolled.

use std::path::{Path, PathBuf};

use limpet_image::header::Target;
use sha2::{Digest, Sha256};

use super::keys::SecureBootKeys;
use super::tool::VIRT_FW_VARS;
use super::ToolError;

/// The UEFI firmware of a QEMU target, from Debian's packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareFiles {
    /// The firmware code (read-only flash), built with Secure Boot support.
    pub code: &'static str,
    /// The variable store the vendor's keys are enrolled into.
    pub vars_template: &'static str,
    /// Variables of the template deleted before the vendor's keys are enrolled.
    pub vars_removed: &'static [&'static str],
    /// The Debian package that installs both.
    pub package: &'static str,
}

/// The firmware `limpet run` boots a target with.
pub const fn firmware(target: Target) -> FirmwareFiles {
    match target {
        Target::X86_64 => FirmwareFiles {
            code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
            vars_template: "/usr/share/OVMF/OVMF_VARS_4M.fd",
            vars_removed: &[],
            package: "ovmf",
        },
        // Debian builds one AAVMF code image, with Secure Boot (`AAVMF_CODE.ms.fd` is a
        // link to it); the virt board has no SMM, so nothing but the OS's good manners
        // keeps it from rewriting the variable flash (docs/threat-model.md says what that means).
        Target::Aarch64 => FirmwareFiles {
            code: "/usr/share/AAVMF/AAVMF_CODE.fd",
            vars_template: "/usr/share/AAVMF/AAVMF_VARS.ms.fd",
            vars_removed: &["PK", "KEK", "db", "dbx"],
            package: "qemu-efi-aarch64",
        },
    }
}

/// Why the variable store could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VarsError {
    /// The template store is not installed.
    #[error("no UEFI variable store template at {path} (Debian package `{package}`)")]
    NoTemplate {
        /// Where it was expected.
        path: PathBuf,
        /// The package that installs it.
        package: &'static str,
    },
    /// A certificate could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `virt-fw-vars` failed or is missing.
    #[error("enrolling the Secure Boot keys into the firmware variables")]
    Tool(#[source] ToolError),
}

/// The owner GUID of the vendor's signature list entries: derived from the PK
/// certificate, so one vendor's entries always carry the same owner.
pub fn owner_guid(pk_cert: &[u8]) -> String {
    let d = Sha256::new()
        .chain_update(b"limpet-secureboot-owner")
        .chain_update(pk_cert)
        .finalize();
    let mut g = [0u8; 16];
    g.copy_from_slice(&d[..16]);
    crate::build::ids::uuid_string(&g)
}

/// Writes `out`: the target's variable store with PK, KEK and db set from the vendor's
/// certificates only, and Secure Boot enabled.
pub fn make(target: Target, keys: &SecureBootKeys, out: &Path) -> Result<(), VarsError> {
    let fw = firmware(target);
    if !Path::new(fw.vars_template).is_file() {
        return Err(VarsError::NoTemplate {
            path: fw.vars_template.into(),
            package: fw.package,
        });
    }
    let pk = std::fs::read(&keys.pk.cert).map_err(|source| VarsError::Read {
        path: keys.pk.cert.clone(),
        source,
    })?;
    let owner = owner_guid(&pk);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--input".as_ref(),
        fw.vars_template.as_ref(),
        "--output".as_ref(),
        out.as_os_str(),
    ];
    // virt-fw-vars deletes before it enrols, whatever the order of its options.
    for name in fw.vars_removed {
        args.extend::<[&std::ffi::OsStr; 2]>(["--delete".as_ref(), name.as_ref()]);
    }
    VIRT_FW_VARS
        .run(args.into_iter().chain([
            "--set-pk".as_ref(),
            owner.as_ref(),
            keys.pk.cert.as_os_str(),
            "--add-kek".as_ref(),
            owner.as_ref(),
            keys.kek.cert.as_os_str(),
            "--add-db".as_ref(),
            owner.as_ref(),
            keys.db.cert.as_os_str(),
            "--secure-boot".as_ref(),
        ]))
        .map_err(VarsError::Tool)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The variables of the store at `path` (`virt-fw-vars --output-json`): name → data.
    fn variables(path: &Path, dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
        let json = dir.join("vars.json");
        VIRT_FW_VARS
            .run([
                "--input".as_ref(),
                path.as_os_str(),
                "--output-json".as_ref(),
                json.as_os_str(),
            ])
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        v["variables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let name = v["name"].as_str().unwrap().to_owned();
                (name, hex::decode(v["data"].as_str().unwrap()).unwrap())
            })
            .collect()
    }

    /// The owners of the entries of an EFI_SIGNATURE_LIST sequence (UEFI 2.10 32.4.1).
    fn owners(mut lists: &[u8]) -> Vec<[u8; 16]> {
        let mut owners = Vec::new();
        let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        while !lists.is_empty() {
            let list_size = u32_at(lists, 16) as usize;
            let header_size = u32_at(lists, 20) as usize;
            let entry_size = u32_at(lists, 24) as usize;
            let mut entries = &lists[28 + header_size..list_size];
            while !entries.is_empty() {
                owners.push(entries[..16].try_into().unwrap());
                entries = &entries[entry_size..];
            }
            lists = &lists[list_size..];
        }
        owners
    }

    /// The GUID text of `owner_guid` as EFI_GUID bytes (the first three fields little-endian).
    fn guid_bytes(text: &str) -> [u8; 16] {
        let b = hex::decode(text.replace('-', "")).unwrap();
        let mut g: [u8; 16] = b.try_into().unwrap();
        g[0..4].reverse();
        g[4..6].reverse();
        g[6..8].reverse();
        g
    }

    /// Needs Debian's `ovmf`, `qemu-efi-aarch64`, `openssl` and `virt-fw-vars`, which
    /// `.ci/install-deps` installs. AAVMF's template holds Microsoft's keys: none of them
    /// may survive into the device's store.
    #[test]
    fn the_store_holds_the_vendor_keys_only_and_enforces_secure_boot() {
        let dir = tempfile::tempdir().unwrap();
        let keys = super::super::keys::generate(dir.path(), "vars test").unwrap();
        let vendor = guid_bytes(&owner_guid(&std::fs::read(&keys.pk.cert).unwrap()));
        for target in [Target::X86_64, Target::Aarch64] {
            let out = dir.path().join(format!("{target}.fd"));
            make(target, &keys, &out).unwrap();
            let vars = variables(&out, dir.path());
            for name in ["PK", "KEK", "db"] {
                let data = vars
                    .get(name)
                    .unwrap_or_else(|| panic!("{target}: no {name}"));
                assert_eq!(owners(data), [vendor], "{target}: {name}");
            }
            assert_eq!(vars["SecureBootEnable"], [1], "{target}");
            assert_eq!(vars["CustomMode"], [0], "{target}");
        }
    }

    #[test]
    fn owner_guid_is_a_stable_v4_uuid() {
        let g = owner_guid(b"cert");
        assert_eq!(g, owner_guid(b"cert"));
        assert_ne!(g, owner_guid(b"other"));
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
        assert!(matches!(&g[19..20], "8" | "9" | "a" | "b"), "{g}");
    }
}
