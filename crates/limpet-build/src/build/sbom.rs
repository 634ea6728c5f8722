//! The software bill of materials: every crate compiled into each device binary, as one
//! CycloneDX 1.5 JSON document per image.
//!
//! Rules this module keeps:
//! - a crate is listed when it is reachable from the binary's package through normal
//!   (not dev, not build) dependencies in cargo's resolve for the device target;
//!   build scripts and proc macros run on the host and are not part of the binary;
//! - registry crates carry the SHA-256 of their `.crate` file from `Cargo.lock`;
//! - the document is deterministic: no wall-clock time (the timestamp is
//!   SOURCE_DATE_EPOCH), a serial number derived from the contents, sorted lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cargo_metadata::{DependencyKind, Metadata, Package, PackageId};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// One binary of the image and the package it comes from.
#[derive(Debug, Clone)]
pub struct SbomBinary<'a> {
    /// The binary's name, as it is installed in the slot.
    pub binary: String,
    /// The cargo package that builds it.
    pub package: String,
    /// The `cargo metadata` of the workspace the package is in, resolved for the device
    /// target.
    pub metadata: &'a Metadata,
}

/// Errors assembling the SBOM.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// `cargo metadata` was read without its dependency resolve, so the crates in a binary
    /// are unknown.
    #[error("cargo metadata has no dependency resolve for {package}")]
    NoResolve {
        /// The package whose crates were asked for.
        package: String,
    },
    /// A binary's package is not a member of the workspace `cargo metadata` describes.
    #[error("package `{package}` not found in cargo metadata")]
    UnknownPackage {
        /// The package's name.
        package: String,
    },
}

/// The crates compiled into `package` (itself included), sorted and deduplicated, with
/// each crate's direct normal dependencies.
fn closure(
    metadata: &Metadata,
    package: &str,
) -> Result<BTreeMap<PackageId, Vec<PackageId>>, SbomError> {
    let resolve = metadata
        .resolve
        .as_ref()
        .ok_or_else(|| SbomError::NoResolve {
            package: package.to_owned(),
        })?;
    let root = metadata
        .workspace_packages()
        .into_iter()
        .find(|p| p.name.as_str() == package)
        .ok_or_else(|| SbomError::UnknownPackage {
            package: package.to_owned(),
        })?;
    let nodes: BTreeMap<&PackageId, &cargo_metadata::Node> =
        resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let mut graph = BTreeMap::new();
    let mut queue = vec![root.id.clone()];
    while let Some(id) = queue.pop() {
        if graph.contains_key(&id) {
            continue;
        }
        let deps: Vec<PackageId> = nodes
            .get(&id)
            .map(|node| {
                node.deps
                    .iter()
                    .filter(|d| d.dep_kinds.iter().any(|k| k.kind == DependencyKind::Normal))
                    .map(|d| d.pkg.clone())
                    .collect()
            })
            .unwrap_or_default();
        queue.extend(deps.iter().cloned());
        graph.insert(id, deps);
    }
    Ok(graph)
}

/// `name version → sha256` from a Cargo.lock, for registry crates.
pub fn lock_checksums(lock_file: &Path) -> BTreeMap<(String, String), String> {
    #[derive(serde::Deserialize)]
    struct Lock {
        #[serde(default)]
        package: Vec<LockPackage>,
    }
    #[derive(serde::Deserialize)]
    struct LockPackage {
        name: String,
        version: String,
        checksum: Option<String>,
    }
    // A missing or unreadable lock file only means no hashes in the SBOM.
    let Ok(text) = std::fs::read_to_string(lock_file) else {
        return BTreeMap::new();
    };
    let Ok(lock) = toml::from_str::<Lock>(&text) else {
        return BTreeMap::new();
    };
    lock.package
        .into_iter()
        .filter_map(|p| Some(((p.name, p.version), p.checksum?)))
        .collect()
}

fn purl(package: &Package) -> String {
    format!("pkg:cargo/{}@{}", package.name, package.version)
}

/// The CycloneDX document for a device image.
pub fn cyclonedx(
    device: &str,
    device_version: &str,
    binaries: &[SbomBinary<'_>],
    checksums: &BTreeMap<(String, String), String>,
    rustc_version: &str,
    source_date_epoch: u64,
) -> Result<Value, SbomError> {
    let device_ref = format!("device:{device}");
    let mut components: BTreeMap<String, Value> = BTreeMap::new();
    let mut dependencies: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let std_ref = format!("rust-std@{rustc_version}");
    components.insert(
        std_ref.clone(),
        json!({
            "type": "library", "bom-ref": std_ref, "name": "rust-std", "version": rustc_version,
            "description": "Rust standard library (core, alloc, std) and musl libc, linked statically",
        }),
    );
    let mut device_deps = BTreeSet::new();
    for bin in binaries {
        let graph = closure(bin.metadata, &bin.package)?;
        let packages: BTreeMap<&PackageId, &Package> =
            bin.metadata.packages.iter().map(|p| (&p.id, p)).collect();
        let bin_ref = format!("bin:{}", bin.binary);
        device_deps.insert(bin_ref.clone());
        let mut bin_deps = BTreeSet::from([std_ref.clone()]);
        for (id, deps) in &graph {
            let Some(package) = packages.get(id) else {
                continue;
            };
            let pref = purl(package);
            bin_deps.insert(pref.clone());
            let mut component = json!({
                "type": "library",
                "bom-ref": pref,
                "name": package.name.as_str(),
                "version": package.version.to_string(),
                "purl": pref,
            });
            if let Some(license) = &package.license {
                component["licenses"] = json!([{ "expression": license }]);
            }
            if let Some(sum) =
                checksums.get(&(package.name.to_string(), package.version.to_string()))
            {
                component["hashes"] = json!([{ "alg": "SHA-256", "content": sum }]);
            }
            components.insert(pref.clone(), component);
            let entry = dependencies.entry(pref).or_default();
            for dep in deps {
                if let Some(dp) = packages.get(dep) {
                    entry.insert(purl(dp));
                }
            }
        }
        components.insert(
            bin_ref.clone(),
            json!({
                "type": "application", "bom-ref": bin_ref, "name": bin.binary,
                "description": format!("static {} binary from package {}", "musl", bin.package),
            }),
        );
        dependencies.insert(bin_ref, bin_deps);
    }
    dependencies.insert(device_ref.clone(), device_deps);

    let components: Vec<Value> = components.into_values().collect();
    let dependencies: Vec<Value> = dependencies
        .into_iter()
        .map(|(r, d)| json!({ "ref": r, "dependsOn": d.into_iter().collect::<Vec<_>>() }))
        .collect();
    let mut bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": rfc3339_utc(source_date_epoch),
            "tools": { "components": [{ "type": "application", "name": "limpet", "version": env!("CARGO_PKG_VERSION") }] },
            "component": { "type": "firmware", "bom-ref": device_ref, "name": device, "version": device_version },
        },
        "components": components,
        "dependencies": dependencies,
    });
    // The serial number is derived from the contents so that rebuilds are identical.
    let digest = Sha256::digest(bom.to_string().as_bytes());
    bom["serialNumber"] = json!(format!(
        "urn:uuid:{}",
        super::ids::uuid_string(&first_16(&digest))
    ));
    Ok(bom)
}

/// The first 16 bytes of a digest.
fn first_16(digest: &[u8]) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (to, from) in b.iter_mut().zip(digest) {
        *to = *from;
    }
    b
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (proleptic Gregorian, UTC):
/// the TUF metadata's own time format (`limpet_tuf::UnixTime`), so the two cannot disagree.
pub fn rfc3339_utc(secs: u64) -> String {
    limpet_tuf::UnixTime::from_secs(i64::try_from(secs).unwrap_or(i64::MAX)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_305_600), "2026-11-22T00:00:00Z");
        assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
