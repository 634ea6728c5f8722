//! The software bill of materials: every crate compiled into each device binary, and the
//! kernel, as one CycloneDX 1.5 JSON document per image.
//!
//! Rules this module keeps:
//! - the kernel is one `operating-system` component with the sha256 of the image as the
//!   slot carries it: for Limpet's own kernel, the Debian source package and its pinned
//!   version (a `pkg:deb` purl), the tarball's and the `.config`'s sha256; for a host
//!   kernel, the Debian package that installed it when dpkg knows one; otherwise its
//!   release only;
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

use super::kernel::KernelOrigin;

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

/// The kernel in the slot, as the SBOM records it.
#[derive(Debug, Clone, Copy)]
pub struct SbomKernel<'a> {
    /// Its release (`uname -r`).
    pub release: &'a str,
    /// The image as the slot carries it (signed for Secure Boot).
    pub image: &'a [u8],
    /// Where it comes from.
    pub origin: &'a KernelOrigin,
}

/// The bom-ref of the kernel's component.
const KERNEL_REF: &str = "kernel:linux";

/// The kernel's component.
fn kernel_component(kernel: &SbomKernel<'_>) -> Value {
    let hashes =
        json!([{ "alg": "SHA-256", "content": hex::encode(Sha256::digest(kernel.image)) }]);
    let mut component = json!({
        "type": "operating-system",
        "bom-ref": KERNEL_REF,
        "name": "linux",
        "version": kernel.release,
        "hashes": hashes,
    });
    let property = |name: &str, value: &str| json!({ "name": name, "value": value });
    match kernel.origin {
        KernelOrigin::Limpet {
            version,
            source_sha256,
            config_sha256,
        } => {
            let package = limpet_kbuild::source::PACKAGE;
            component["description"] = json!(format!(
                "built by Limpet from Debian's {package} {version} with a configuration derived from the manifest"
            ));
            component["pedigree"] = json!({ "ancestors": [{
                "type": "operating-system",
                "name": package,
                "version": version,
                "purl": format!("pkg:deb/debian/{package}@{version}?arch=all"),
                "hashes": [{ "alg": "SHA-256", "content": source_sha256 }],
            }]});
            component["properties"] = json!([
                property("limpet:kernel:source", "limpet"),
                property("limpet:kernel:config-sha256", config_sha256),
            ]);
        }
        KernelOrigin::Debian { package, version } => {
            component["description"] = json!(format!(
                "the build host's kernel from Debian's {package} {version}"
            ));
            component["purl"] = json!(format!("pkg:deb/debian/{package}@{version}"));
            component["properties"] = json!([property("limpet:kernel:source", "host")]);
        }
        KernelOrigin::Unknown => {
            component["description"] = json!("a kernel whose package is not known");
        }
    }
    component
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
    kernel: &SbomKernel<'_>,
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
    components.insert(KERNEL_REF.to_owned(), kernel_component(kernel));
    let mut device_deps = BTreeSet::from([KERNEL_REF.to_owned()]);
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

    fn kernel_of(origin: &KernelOrigin) -> Value {
        let kernel = SbomKernel {
            release: "6.1.192",
            image: b"MZ kernel",
            origin,
        };
        let bom = cyclonedx("d", "0.1.0", &[], &kernel, &BTreeMap::new(), "1.0.0", 0).unwrap();
        let device_deps = bom["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["ref"] == "device:d")
            .unwrap()["dependsOn"]
            .clone();
        assert_eq!(device_deps, json!([KERNEL_REF]));
        let found: Vec<&Value> = bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["type"] == "operating-system")
            .collect();
        assert_eq!(found.len(), 1, "{bom}");
        found[0].clone()
    }

    #[test]
    fn limpets_kernel_is_recorded_with_its_source_package_and_config() {
        let origin = KernelOrigin::Limpet {
            version: "6.1.192-3".into(),
            source_sha256: "ab".repeat(32),
            config_sha256: "cd".repeat(32),
        };
        let c = kernel_of(&origin);
        assert_eq!(
            (c["name"].as_str(), c["version"].as_str()),
            (Some("linux"), Some("6.1.192"))
        );
        assert_eq!(
            c["hashes"][0]["content"],
            hex::encode(Sha256::digest(b"MZ kernel"))
        );
        let source = &c["pedigree"]["ancestors"][0];
        assert_eq!(source["name"], "linux-source-6.1");
        assert_eq!(source["version"], "6.1.192-3");
        assert_eq!(
            source["purl"],
            "pkg:deb/debian/linux-source-6.1@6.1.192-3?arch=all"
        );
        assert_eq!(source["hashes"][0]["content"], "ab".repeat(32));
        assert_eq!(
            c["properties"],
            json!([
                { "name": "limpet:kernel:source", "value": "limpet" },
                { "name": "limpet:kernel:config-sha256", "value": "cd".repeat(32) },
            ])
        );
        // Another config is another SBOM.
        let other = KernelOrigin::Limpet {
            version: "6.1.192-3".into(),
            source_sha256: "ab".repeat(32),
            config_sha256: "ef".repeat(32),
        };
        assert_ne!(kernel_of(&other), c);
    }

    #[test]
    fn a_host_kernel_names_its_debian_package_and_an_unknown_one_only_its_release() {
        let c = kernel_of(&KernelOrigin::Debian {
            package: "linux-image-6.1.0-57-amd64".into(),
            version: "6.1.192-1".into(),
        });
        assert_eq!(
            c["purl"],
            "pkg:deb/debian/linux-image-6.1.0-57-amd64@6.1.192-1"
        );
        assert!(c.get("pedigree").is_none());
        let c = kernel_of(&KernelOrigin::Unknown);
        assert_eq!(c["version"], "6.1.192");
        assert!(
            c.get("purl").is_none() && c.get("pedigree").is_none(),
            "{c}"
        );
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_305_600), "2026-11-22T00:00:00Z");
        assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
