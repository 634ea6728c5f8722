//! The firmware variable store of a device: the vendor's PK, KEK and db enrolled, Secure
//! Boot enforcing. For QEMU it is made from the blank store of Debian's OVMF (x86_64) or
//! AAVMF (aarch64) with `virt-fw-vars`; the firmware image itself is not ours and is not
//! changed.

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
    /// The blank variable store the vendor's keys are enrolled into.
    pub vars_template: &'static str,
    /// The Debian package that installs both.
    pub package: &'static str,
}

/// The firmware `limpet run` boots a target with.
pub const fn firmware(target: Target) -> FirmwareFiles {
    match target {
        Target::X86_64 => FirmwareFiles {
            code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
            vars_template: "/usr/share/OVMF/OVMF_VARS_4M.fd",
            package: "ovmf",
        },
        Target::Aarch64 => FirmwareFiles {
            code: "/usr/share/AAVMF/AAVMF_CODE.fd",
            vars_template: "/usr/share/AAVMF/AAVMF_VARS.fd",
            package: "qemu-efi-aarch64",
        },
    }
}

/// Why the variable store could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VarsError {
    /// The blank store is not installed.
    #[error("no blank UEFI variable store at {path} (Debian package `{package}`)")]
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

/// Writes `out`: the target's blank variable store with PK, KEK and db set from the
/// vendor's certificates and Secure Boot enabled.
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
    VIRT_FW_VARS
        .run([
            "--input".as_ref(),
            fw.vars_template.as_ref(),
            "--output".as_ref(),
            out.as_os_str(),
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
        ])
        .map_err(VarsError::Tool)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
