//! Compiling the device's binaries: every task package and `limpet-init`, as static musl
//! executables for the device target, in release mode, stripped, reproducibly.
//!
//! Rules this module keeps:
//! - device builds use their own target directory (`<target>/limpet-device`) so their
//!   flags never invalidate the host build's cache, and the host's never leak in;
//! - the release profile is forced through `CARGO_PROFILE_RELEASE_*` variables, so a
//!   project's own `[profile.release]` cannot make a device binary unstripped or unwinding;
//! - every absolute host path cargo or rustc could embed is remapped to a fixed prefix,
//!   so the same sources give the same bytes on any machine;
//! - a build holds `<device target dir>/limpet-build.lock` from `cargo build` until it has
//!   copied its binaries aside (`outputs/<pid>-<n>`): builds of different devices share
//!   the output paths, and PID 1's parts (`InitParts`) differ between them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use limpet_manifest::Target;

use super::cohort::{gcc_ld_dir, Cohort};

/// Errors while running cargo.
#[derive(Debug, thiserror::Error)]
pub enum CargoError {
    /// A program (`cargo`) could not be started.
    #[error("cannot run `{program}` (is Rust installed with rustup?)")]
    Spawn {
        /// The program's name.
        program: String,
        /// Why starting it failed.
        source: std::io::Error,
    },
    /// `cargo metadata` ended with a failure status.
    #[error("`cargo metadata` in {dir} failed: {stderr}")]
    Metadata {
        /// The directory it ran in.
        dir: PathBuf,
        /// What it wrote on stderr, trimmed.
        stderr: String,
    },
    /// `cargo metadata` printed something that is not its JSON format.
    #[error("cannot read `cargo metadata` output for {dir}")]
    MetadataParse {
        /// The directory it ran in.
        dir: PathBuf,
        /// Why its output does not parse.
        source: serde_json::Error,
    },
    /// The manifest names a package the cargo workspace does not have.
    #[error("package `{package}` is not in the cargo workspace at {workspace}")]
    UnknownPackage {
        /// The package's name.
        package: String,
        /// The workspace's root directory.
        workspace: PathBuf,
    },
    /// The package exists but has no binary of that name.
    #[error("package `{package}` has no binary named `{binary}` (it has: {available})")]
    UnknownBinary {
        /// The package's name.
        package: String,
        /// The binary's name.
        binary: String,
        /// The binaries the package has, comma-separated (or `no binaries`).
        available: String,
    },
    /// A cohort build needs lld, which rustup's toolchains carry as rust-lld.
    #[error("cohort builds link with lld: the toolchain has no {}/ld.lld (a rustup toolchain carries it)", looked.display())]
    NoLld {
        /// Where it was looked for.
        looked: PathBuf,
    },
    #[error(
        "the Rust standard library for {triple} is missing; install it with `rustup target add {triple}`"
    )]
    /// The standard library for the device's target is not installed.
    MissingTarget {
        /// The Rust target triple (for example `aarch64-unknown-linux-musl`).
        triple: String,
    },
    /// `cargo build` for the device ended with a failure status; its own output says why.
    #[error("cargo build for {triple} failed (exit status {status}); its output is above")]
    Build {
        /// The Rust target triple it built for.
        triple: String,
        /// Its exit status, in words.
        status: String,
    },
    /// `cargo build` succeeded but the binary is not where cargo puts it.
    #[error("cargo reported success but {path} does not exist")]
    MissingOutput {
        /// Where the binary was expected.
        path: PathBuf,
    },
    /// The build lock, or a private copy of a built binary, failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One binary to build: a package of the cargo workspace and one of its binaries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BinarySpec {
    /// The package's name in the cargo workspace.
    pub package: String,
    /// The binary's name in that package (its `[[bin]]` name).
    pub binary: String,
}

/// Whether a part of PID 1 that only some devices use is in the device's limpet-init:
/// every byte of limpet-init stays resident for the device's whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitPart {
    /// The device uses it: limpet-init is built with it (its default).
    Linked,
    /// The device does not: limpet-init is built without the part's cargo feature, and
    /// would refuse to start that part should the policy ask for it.
    LeftOut,
}

/// The parts of limpet-init a device may leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitParts {
    /// nftables, rtnetlink, DHCP and the DNS stub (about 180 KB), and the parser of a
    /// network policy (limpet-policy's `network` feature, 57 KB): only for a policy with a
    /// network.
    pub network: InitPart,
    /// The update agent's install socket (about 60 KB): only for a device with `[update]`.
    pub install: InitPart,
    /// The TPM 2.0 commands that seal the device identity: only for a manifest with
    /// `[kernel] tpm = "tpm2"` (without, the identity is kept in software).
    pub tpm: InitPart,
    /// The Roughtime client: only for a slot that lists Roughtime servers.
    pub roughtime: InitPart,
}

impl InitParts {
    /// limpet-init's cargo features for the device build: the parts it links (built with
    /// `--no-default-features`, so a part not listed is left out).
    fn features(self) -> Vec<&'static str> {
        [
            ("network", self.network),
            ("install", self.install),
            ("tpm", self.tpm),
            ("roughtime", self.roughtime),
        ]
        .into_iter()
        .filter(|(_, part)| *part == InitPart::Linked)
        .map(|(feature, _)| feature)
        .collect()
    }
}

/// A cargo workspace as `cargo metadata` describes it.
#[derive(Debug)]
pub struct Workspace {
    /// The workspace's root directory.
    pub root: PathBuf,
    /// Cargo's target directory for the host build; device builds use `limpet-device`
    /// inside it.
    pub target_dir: PathBuf,
    /// The whole of `cargo metadata`, its dependency graph resolved for the device's
    /// target.
    pub metadata: cargo_metadata::Metadata,
}

impl Workspace {
    /// Reads the workspace that contains `dir` (cargo searches upwards from it), with the
    /// dependency graph resolved for `target`.
    pub fn load(dir: &Path, target: Target) -> Result<Self, CargoError> {
        let output = Command::new(cargo())
            .current_dir(dir)
            .args(["metadata", "--format-version", "1", "--filter-platform"])
            .arg(target.rust_triple())
            .output()
            .map_err(|source| CargoError::Spawn {
                program: "cargo".into(),
                source,
            })?;
        if !output.status.success() {
            return Err(CargoError::Metadata {
                dir: dir.to_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        let metadata: cargo_metadata::Metadata =
            serde_json::from_slice(&output.stdout).map_err(|source| CargoError::MetadataParse {
                dir: dir.to_owned(),
                source,
            })?;
        Ok(Self {
            root: metadata.workspace_root.clone().into_std_path_buf(),
            target_dir: metadata.target_directory.clone().into_std_path_buf(),
            metadata,
        })
    }

    /// The workspace member called `name`.
    pub fn package(&self, name: &str) -> Result<&cargo_metadata::Package, CargoError> {
        self.metadata
            .workspace_packages()
            .into_iter()
            .find(|p| p.name.as_str() == name)
            .ok_or_else(|| CargoError::UnknownPackage {
                package: name.to_owned(),
                workspace: self.root.clone(),
            })
    }

    /// Checks that every spec names an existing package and binary, before compiling.
    pub fn check(&self, specs: &[BinarySpec]) -> Result<(), CargoError> {
        for spec in specs {
            let package = self.package(&spec.package)?;
            let bins: Vec<&str> = package
                .targets
                .iter()
                .filter(|t| t.is_bin())
                .map(|t| t.name.as_str())
                .collect();
            if !bins.contains(&spec.binary.as_str()) {
                return Err(CargoError::UnknownBinary {
                    package: spec.package.clone(),
                    binary: spec.binary.clone(),
                    available: if bins.is_empty() {
                        "no binaries".into()
                    } else {
                        bins.join(", ")
                    },
                });
            }
        }
        Ok(())
    }

    /// Where device builds of this workspace go.
    pub fn device_target_dir(&self) -> PathBuf {
        self.target_dir.join("limpet-device")
    }

    /// Compiles `specs` for `target` (limpet-init, if among them, with the parts `init`
    /// names) and returns each binary's path, in the order given.
    pub fn build(
        &self,
        specs: &[BinarySpec],
        target: Target,
        init: InitParts,
        cohort: Option<Cohort>,
    ) -> Result<Vec<PathBuf>, CargoError> {
        let triple = target.rust_triple();
        let mut flags = device_rustflags(&self.root);
        flags.extend(link_flags(target).iter().map(|f| (*f).to_owned()));
        if let Some(cohort) = cohort {
            flags.extend(cohort.link_flags(target, &toolchain_gcc_ld()?));
        }
        let mut env = vec![(rustflags_var(triple), Some(flags.join(" ")))];
        if target == Target::Aarch64 {
            // rustup's musl targets are self-contained: rust-lld links them without a
            // cross C toolchain.
            env.push((
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER".into(),
                Some("rust-lld".into()),
            ));
            env.extend(aarch64_c_env());
        }
        // PID 1 in a cargo invocation of its own: `--no-default-features` would reach every
        // package of an invocation, and the tasks keep their own features.
        let (init_specs, other_specs): (Vec<_>, Vec<_>) = specs
            .iter()
            .cloned()
            .partition(|s| s.package == INIT_PACKAGE);
        let mut built = Vec::with_capacity(specs.len());
        if !other_specs.is_empty() {
            built.extend(other_specs.iter().cloned().zip(self.cargo_build(
                &other_specs,
                triple,
                &env,
                &[],
                "",
            )?));
        }
        if !init_specs.is_empty() {
            let mut args = vec!["--no-default-features".to_owned()];
            let features = init.features();
            if !features.is_empty() {
                args.extend(["--features".to_owned(), features.join(",")]);
            }
            built.extend(init_specs.iter().cloned().zip(self.cargo_build(
                &init_specs,
                triple,
                &env,
                &args,
                "",
            )?));
        }
        // In the order given.
        specs
            .iter()
            .map(|spec| {
                built
                    .iter()
                    .find(|(s, _)| s == spec)
                    .map(|(_, path)| path.clone())
                    .ok_or_else(|| CargoError::MissingOutput {
                        path: spec.binary.clone().into(),
                    })
            })
            .collect()
    }

    /// Compiles Limpet's UEFI boot loader (`limpet-boot`, in this workspace) for `target`
    /// with the vendor's image public key `image_pub` compiled in; returns the path of the
    /// `.efi` image.
    pub fn build_loader(&self, target: Target, image_pub: &Path) -> Result<PathBuf, CargoError> {
        let triple = uefi_triple(target);
        let spec = BinarySpec {
            package: LOADER_PACKAGE.into(),
            binary: LOADER_PACKAGE.into(),
        };
        // The UEFI targets are soft-float: curve25519-dalek's automatic SIMD backend does
        // not compile for them, so the loader's Ed25519 uses the portable serial backend
        // (DEVICE_CFGS; the workspace's .cargo/config.toml says the same for a loader built
        // by hand, and this variable overrides it).
        let env = [
            (
                rustflags_var(triple),
                Some(device_rustflags(&self.root).join(" ")),
            ),
            (LOADER_KEY_VAR.into(), Some(image_pub.display().to_string())),
        ];
        let mut paths = self.cargo_build(&[spec], triple, &env, &[], ".efi")?;
        paths.pop().ok_or(CargoError::MissingOutput {
            path: LOADER_PACKAGE.into(),
        })
    }

    /// `cargo build --release` of `specs` for `triple` with the device profile, `env` (a
    /// variable set, or removed when its value is `None`) and the further arguments `args`;
    /// each binary's path (its name + `suffix`), in the order given.
    fn cargo_build(
        &self,
        specs: &[BinarySpec],
        triple: &str,
        env: &[(String, Option<String>)],
        args: &[String],
        suffix: &str,
    ) -> Result<Vec<PathBuf>, CargoError> {
        self.check(specs)?;
        ensure_target_installed(triple)?;
        let target_dir = self.device_target_dir();
        // Two builds of one workspace (tests run side by side) write the same output paths
        // with different flags (InitParts): from `cargo build` until the binaries are
        // copied aside, this build holds the directory's lock.
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CargoError::Io { path, source }
        };
        std::fs::create_dir_all(&target_dir).map_err(io(&target_dir))?;
        let lock_path = target_dir.join("limpet-build.lock");
        let lock = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let mut cmd = Command::new(cargo());
        cmd.current_dir(&self.root)
            .args(["build", "--release", "--target", triple])
            .arg("--target-dir")
            .arg(&target_dir);
        if self.root.join("Cargo.lock").exists() {
            // The lock file pins every crate: a device build must not re-resolve.
            cmd.arg("--locked");
        }
        for spec in specs {
            cmd.args(["-p", &spec.package, "--bin", &spec.binary]);
        }
        cmd.args(args);
        for (key, value) in profile_env() {
            cmd.env(key, value);
        }
        for (key, value) in env {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        // Flags the caller may have set for host builds must not reach the device build.
        cmd.env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        tracing::debug!(?cmd, "running cargo");
        let status = cmd.status().map_err(|source| CargoError::Spawn {
            program: "cargo".into(),
            source,
        })?;
        if !status.success() {
            return Err(CargoError::Build {
                triple: triple.to_owned(),
                status: status.to_string(),
            });
        }
        let private = private_outputs(&target_dir).map_err(io(&target_dir))?;
        specs
            .iter()
            .map(|spec| {
                let name = format!("{}{suffix}", spec.binary);
                let path = target_dir.join(triple).join("release").join(&name);
                if !path.is_file() {
                    return Err(CargoError::MissingOutput { path });
                }
                let copy = private.join(&name);
                std::fs::copy(&path, &copy).map_err(io(&copy))?;
                Ok(copy)
            })
            .collect()
    }
}

/// A new directory for this build's copies of its binaries,
/// `<target_dir>/outputs/<pid>-<n>`; directories of processes that have ended are removed
/// first, so the copies do not pile up.
fn private_outputs(target_dir: &Path) -> std::io::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let outputs = target_dir.join("outputs");
    std::fs::create_dir_all(&outputs)?;
    for entry in std::fs::read_dir(&outputs)?.flatten() {
        let name = entry.file_name();
        let pid = name.to_string_lossy().split('-').next().map(str::to_owned);
        if let Some(pid) = pid {
            if !Path::new("/proc").join(&pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = outputs.join(format!("{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The package (and binary) of PID 1.
pub const INIT_PACKAGE: &str = "limpet-init";

/// The package (and binary) of Limpet's UEFI boot loader.
pub const LOADER_PACKAGE: &str = "limpet-boot";
/// The variable naming the image public key the loader is built with (its build.rs).
pub const LOADER_KEY_VAR: &str = "LIMPET_BOOT_IMAGE_KEY";

/// The Rust UEFI target of a device target.
pub const fn uefi_triple(target: Target) -> &'static str {
    match target {
        Target::X86_64 => "x86_64-unknown-uefi",
        Target::Aarch64 => "aarch64-unknown-uefi",
    }
}

/// The C compiler for C code in aarch64 device binaries (libzstd in the update agent),
/// unless the caller chose one (`CC_aarch64_unknown_linux_musl`): Debian has no
/// `aarch64-linux-musl-gcc`, the name the `cc` crate looks for, but its cross gcc
/// (`gcc-aarch64-linux-gnu`) compiles against musl (`musl-dev:arm64`) through musl's specs
/// file, as `musl-gcc` does on the host.
fn aarch64_c_env() -> Vec<(String, Option<String>)> {
    const CC: &str = "CC_aarch64_unknown_linux_musl";
    const CFLAGS: &str = "CFLAGS_aarch64_unknown_linux_musl";
    const SPECS: &str = "/usr/lib/aarch64-linux-musl/musl-gcc.specs";
    if std::env::var_os(CC).is_some() || !Path::new(SPECS).is_file() {
        return Vec::new();
    }
    vec![
        (CC.into(), Some("aarch64-linux-gnu-gcc".into())),
        (CFLAGS.into(), Some(format!("-specs {SPECS}"))),
    ]
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The release profile every device binary gets, whatever the project's own profile says.
fn profile_env() -> [(&'static str, &'static str); 6] {
    [
        ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s"),
        ("CARGO_PROFILE_RELEASE_LTO", "true"),
        ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1"),
        // A panic in a task ends the task; the supervisor restarts it. No unwinding tables.
        ("CARGO_PROFILE_RELEASE_PANIC", "abort"),
        ("CARGO_PROFILE_RELEASE_STRIP", "symbols"),
        ("CARGO_PROFILE_RELEASE_DEBUG", "false"),
    ]
}

/// `CARGO_TARGET_<TRIPLE>_RUSTFLAGS`: applies to the device target only, never to build
/// scripts or proc macros run on the host.
fn rustflags_var(triple: &str) -> String {
    format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        triple.to_uppercase().replace('-', "_")
    )
}

/// Every flag the device target gets: the path remapping, then [`DEVICE_CFGS`].
fn device_rustflags(workspace_root: &Path) -> Vec<String> {
    let mut flags = remap_flags(workspace_root);
    for cfg in DEVICE_CFGS {
        flags.extend(["--cfg".to_owned(), (*cfg).to_owned()]);
    }
    flags
}

/// Linker flags for the device's Linux binaries (not the UEFI loader, a PE image).
///
/// x86_64 (`cc` and GNU ld, a static PIE): `-z pack-relative-relocs` stores the relative
/// relocations that the start code applies to a position-independent binary as DT_RELR
/// bitmaps (musl applies them, since 1.2.4) instead of 24-byte RELA entries: limpet-init
/// loses 28 KiB of its 31 KiB `.rela.dyn`, and the binary's pages are resident for the
/// device's whole life. It stays a PIE, so its address is still randomised. aarch64 is
/// linked by rust-lld as a static non-PIE executable, with no relocations to pack.
fn link_flags(target: Target) -> &'static [&'static str] {
    match target {
        Target::X86_64 => &["-C", "link-arg=-Wl,-z,pack-relative-relocs"],
        Target::Aarch64 => &[],
    }
}

/// Crate configuration chosen for every device binary.
///
/// `curve25519_dalek_backend="serial"`: ed25519 signature checks (PID 1's slot headers)
/// use the portable 64-bit field arithmetic instead of carrying the AVX2 backend beside it
/// with a run-time CPU check; that is 16 KiB less in limpet-init, which is resident for
/// the device's whole life, for a check that runs a few times per boot. aarch64 builds
/// use this backend already.
const DEVICE_CFGS: &[&str] = &[r#"curve25519_dalek_backend="serial""#];

/// `--remap-path-prefix` for every host directory whose path could end up in a binary
/// (panic locations of our crates and of crates from the registry).
fn remap_flags(workspace_root: &Path) -> Vec<String> {
    let mut pairs: Vec<(PathBuf, &str)> = vec![(workspace_root.to_owned(), "/build")];
    if let Some(home) = cargo_home() {
        pairs.push((home, "/cargo"));
    }
    if let Some(home) = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")))
    {
        pairs.push((home, "/rustup"));
    }
    // Longest prefix first is not required (rustc applies the last matching flag), but a
    // fixed order keeps the flags, and so the cache key, stable.
    pairs
        .into_iter()
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect()
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// The toolchain's `gcc-ld` directory (its `ld.lld` runs rust-lld), which cohort builds
/// link with; an error when the toolchain has none.
fn toolchain_gcc_ld() -> Result<PathBuf, CargoError> {
    let rustc = |arg: &str| {
        Command::new("rustc")
            .arg(arg)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let sysroot = PathBuf::from(rustc("--print=sysroot").trim());
    let host = rustc("-vV")
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_default()
        .to_owned();
    let dir = gcc_ld_dir(&sysroot, &host);
    if dir.join("ld.lld").is_file() {
        Ok(dir)
    } else {
        Err(CargoError::NoLld { looked: dir })
    }
}

/// Fails early, with the command that fixes it, when rustup lacks the target's std.
fn ensure_target_installed(triple: &str) -> Result<(), CargoError> {
    let output = Command::new("rustc").args(["--print", "sysroot"]).output();
    let Ok(output) = output else {
        // No rustc on PATH: cargo itself will say so more precisely.
        return Ok(());
    };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if sysroot.join("lib/rustlib").join(triple).is_dir() {
        Ok(())
    } else {
        Err(CargoError::MissingTarget {
            triple: triple.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustflags_variable_is_target_scoped() {
        assert_eq!(
            rustflags_var("x86_64-unknown-linux-musl"),
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS"
        );
    }

    #[test]
    fn device_flags_remap_then_choose_the_serial_curve25519_backend() {
        let flags = device_rustflags(Path::new("/src/project"));
        assert_eq!(flags[0], "--remap-path-prefix=/src/project=/build");
        assert_eq!(
            flags[flags.len() - 2..],
            ["--cfg", r#"curve25519_dalek_backend="serial""#]
        );
        // The flags travel space-separated in CARGO_TARGET_<TRIPLE>_RUSTFLAGS.
        assert!(DEVICE_CFGS.iter().all(|cfg| !cfg.contains(' ')));
    }

    #[test]
    fn x86_64_device_binaries_pack_their_relative_relocations() {
        assert_eq!(
            link_flags(Target::X86_64),
            ["-C", "link-arg=-Wl,-z,pack-relative-relocs"]
        );
        assert!(link_flags(Target::Aarch64).is_empty());
        // The flags travel space-separated in CARGO_TARGET_<TRIPLE>_RUSTFLAGS.
        assert!(link_flags(Target::X86_64).iter().all(|f| !f.contains(' ')));
    }

    #[test]
    fn only_the_parts_a_device_does_not_use_are_left_out_of_pid_1() {
        let parts = InitParts {
            network: InitPart::LeftOut,
            install: InitPart::Linked,
            tpm: InitPart::LeftOut,
            roughtime: InitPart::Linked,
        };
        assert_eq!(parts.features(), ["install", "roughtime"]);
        // limpet-init declares these features, and links them all by default (the build
        // host, tests and clippy).
        let manifest = include_str!("../../../limpet-init/Cargo.toml");
        for feature in ["network", "install", "tpm", "roughtime"] {
            assert!(manifest.contains(&format!("\n{feature} = [")), "{feature}");
        }
        assert!(manifest.contains(r#"default = ["network", "install", "tpm", "roughtime"]"#));
    }

    #[test]
    fn remap_covers_the_workspace() {
        let flags = remap_flags(Path::new("/src/project"));
        assert_eq!(flags[0], "--remap-path-prefix=/src/project=/build");
    }
}
