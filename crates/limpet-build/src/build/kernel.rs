//! The device kernel and the modules its initramfs must carry.
//!
//! Rules this module keeps:
//! - `source = "host"` means the build host's newest kernel: the highest version (by
//!   version order, not string order) that has both `/boot/vmlinuz-V` and
//!   `/lib/modules/V/modules.dep`;
//! - a module is found through `modules.dep` only, and carried with its whole dependency
//!   closure, dependencies first, so PID 1 loads the list in order and nothing else;
//! - a module the kernel has built in (`modules.builtin`) needs no file and is skipped;
//! - where the kernel comes from ([`KernelOrigin`], for the SBOM) is what is known, never
//!   guessed: the source package of Limpet's own, the package dpkg says installed the
//!   host's, or unknown.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use limpet_manifest::{Kernel, KernelSource, Manifest, Target, Watchdog};
use sha2::{Digest, Sha256};

/// The kernel command line signed into the slot for `target` and `[kernel]`: the board's
/// first serial port as the console, a reboot on panic at once (so that a kernel that
/// panics spends a trial boot and the loader rolls back), quiet kernel messages, then the
/// manifest's own parameters, then the hardware watchdog's timeout
/// (`limpet.watchdog=`, which the loader arms and PID 1 pets; `0` for off).
pub fn command_line(target: Target, kernel: &Kernel) -> String {
    let console = match target {
        Target::X86_64 => "ttyS0",
        // The virt board's UART is a PL011, which Linux names ttyAMA0.
        Target::Aarch64 => "ttyAMA0",
    };
    let mut line = format!("console={console} panic=-1 quiet");
    for word in kernel.cmdline.words() {
        line.push(' ');
        line.push_str(word);
    }
    let secs = match kernel.watchdog {
        Watchdog::Secs(secs) => secs,
        Watchdog::Off => 0,
    };
    line.push_str(&format!(" {}={secs}", limpet_image::cmdline::WATCHDOG));
    line
}

/// Modules every Limpet image needs on the given target, before the manifest's extras:
/// the disk (virtio), the slot's filesystem, the dm-verity target, and the data
/// partition's ext4 with its checksum (a soft dependency `modules.dep` does not list).
pub fn base_modules(target: Target) -> &'static [&'static str] {
    match target {
        // QEMU's q35/pc machines and most x86 VMs expose disks as virtio-pci.
        // `button` and `evdev`: the ACPI power button, which PID 1 turns into a clean
        // shutdown. `i6300esb`: the hardware watchdog the loader arms and PID 1 pets
        // (on both targets: QEMU's i6300ESB sits on the PCI bus of q35 and virt alike).
        // `virtio_rng`: the board's hardware RNG (`limpet run` gives every guest one), so
        // the kernel's RNG is ready before PID 1 draws the first-boot identity key
        // (Debian's kernels have the RNG core built in).
        Target::X86_64 => &[
            "virtio_pci",
            "virtio_blk",
            "squashfs",
            "dm_verity",
            "crc32c_generic",
            "ext4",
            "button",
            "evdev",
            "i6300esb",
            "virtio_rng",
        ],
        // QEMU's `virt` board has a PCIe host bridge, and `-drive if=virtio` puts the disk
        // on it as virtio-blk-pci, where AAVMF also finds the EFI system partition; its
        // virtio-mmio transports stay empty, so `virtio_mmio` would only probe nothing.
        // Debian's arm64 kernel has `virtio_pci` as a module and the PCI host bridge
        // (`pci-host-generic`) and the PL011 console built in. `gpio_keys` and `evdev`: the
        // board's power button is a GPIO key on its PL061 (built in), which PID 1 turns
        // into a clean shutdown.
        Target::Aarch64 => &[
            "virtio_pci",
            "virtio_blk",
            "squashfs",
            "dm_verity",
            "crc32c_generic",
            "ext4",
            "gpio_keys",
            "evdev",
            "i6300esb",
            "virtio_rng",
        ],
    }
}

/// Modules a device with network needs on top of [`base_modules`]: the NIC (virtio-net on
/// QEMU and most VMs) and what the nftables ruleset uses (see crates/limpet-net's module
/// doc), which must be loaded before module loading is locked: the device has no
/// `modprobe` for the kernel's on-demand loading.
pub fn network_modules(target: Target) -> &'static [&'static str] {
    match target {
        Target::X86_64 | Target::Aarch64 => &[
            "virtio_net",
            "libcrc32c",
            "nfnetlink",
            "nf_tables",
            "nf_defrag_ipv4",
            "nf_defrag_ipv6",
            "nf_conntrack",
            "nft_ct",
            "nft_limit",
            "nf_socket_ipv4",
            "nf_socket_ipv6",
            "nft_socket",
        ],
    }
}

/// Errors finding the kernel or its modules, or checking its config.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "no kernel found in {boot} with modules in {modules} (install one, e.g. `apt-get install linux-image-amd64`, or set [kernel] image and modules in limpet.toml)"
    )]
    /// `[kernel] source = "host"`, but the host has no kernel image with a matching modules
    /// directory.
    NoHostKernel {
        /// Where kernel images were looked for (`/boot`).
        boot: PathBuf,
        /// Where their modules were looked for (`/lib/modules`).
        modules: PathBuf,
    },
    #[error(
        "[kernel] source = \"host\" gives this {host} host's kernel, but the device is {target}; set [kernel] source = {{ image = \"...\", modules = \"...\" }} to an {target} kernel"
    )]
    /// `[kernel] source = "host"` on a host whose architecture is not the device's, so its
    /// kernel cannot boot the device.
    HostArch {
        /// The host's architecture.
        host: &'static str,
        /// The device target's architecture.
        target: &'static str,
    },
    /// A kernel, module or module index file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file's path.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// A line of `modules.dep` is not `path.ko: dep.ko ...`.
    #[error("{path}:{line}: malformed modules.dep line (expected `path.ko: dep.ko ...`)")]
    BadModulesDep {
        /// The `modules.dep` file.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
    },
    /// A module the image needs is neither a module file nor built into the kernel.
    #[error("kernel module `{name}` is neither in {dep} nor built in (check [kernel] modules in limpet.toml)")]
    UnknownModule {
        /// The module's name.
        name: String,
        /// The `modules.dep` that was searched.
        dep: PathBuf,
    },
    /// Where Limpet's kernel is cached could not be found (the Limpet workspace).
    #[error("cannot find the kernel cache: {0}")]
    Cache(String),
    /// Limpet's own kernel could not be built.
    #[error("building Limpet's kernel")]
    Build(#[from] limpet_kbuild::KbuildError),
    /// The kernel's `.config` (found beside its image) could not be parsed.
    #[error("kernel config {path}")]
    BadConfig {
        /// The `config-<release>` file.
        path: PathBuf,
        /// The line that could not be read.
        source: limpet_kconfig::ParseError,
    },
    /// The kernel's `.config` lacks options the manifest needs.
    #[error("kernel config {path}")]
    LacksNeeds {
        /// The `config-<release>` file.
        path: PathBuf,
        /// The options missing, by name.
        source: limpet_kconfig::MissingNeeds,
    },
    /// `modules.dep` makes a module depend on itself, so there is no order to load them in.
    #[error("module dependency cycle through `{name}` in {dep}")]
    Cycle {
        /// A module on the cycle.
        name: String,
        /// The `modules.dep` that says so.
        dep: PathBuf,
    },
}

/// A kernel image and its module tree.
#[derive(Debug, Clone)]
pub struct KernelFiles {
    /// The kernel release (`uname -r`), i.e. the name of the modules directory.
    pub release: String,
    /// The kernel image file (`vmlinuz-<release>` or the manifest's `[kernel] image`).
    pub image: PathBuf,
    /// The kernel's modules directory, holding `modules.dep` and the module files; `None`
    /// for a kernel without loadable modules (Limpet's own: every driver built in).
    pub modules_dir: Option<PathBuf>,
    /// Where it comes from, for the SBOM.
    pub origin: KernelOrigin,
}

/// Where the device's kernel comes from, as the SBOM records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelOrigin {
    /// Built by Limpet (`source = "limpet"`) from Debian's `linux-source-6.1`.
    Limpet {
        /// The source package's version as dpkg knows it (e.g. `6.1.192-3`).
        version: String,
        /// The sha256 of the source tarball, hex.
        source_sha256: String,
        /// The sha256 of the kernel's `.config`, hex.
        config_sha256: String,
    },
    /// A Debian kernel package on the build host (`source = "host"`), as dpkg names it.
    Debian {
        /// The package that installed the image (e.g. `linux-image-6.1.0-57-amd64`).
        package: String,
        /// Its version (e.g. `6.1.192-1`).
        version: String,
    },
    /// Files whose package is not known: a vendor's, or a host kernel no package owns.
    Unknown,
}

/// Where Limpet's own kernel comes from and goes, for `[kernel] source = "limpet"`.
#[derive(Debug, Clone)]
pub struct OwnKernel {
    /// Where the source tarball is (`/usr/src`).
    pub usr_src: PathBuf,
    /// The build cache (`<cargo target dir>/limpet-kernel`).
    pub cache: PathBuf,
    /// The build epoch.
    pub epoch: u64,
}

/// Finds the kernel the manifest asks for. `boot` and `lib_modules` are `/boot` and
/// `/lib/modules` on a real host (parameters so tests can point them elsewhere);
/// relative manifest paths are taken from `manifest_dir`. `own` builds Limpet's kernel
/// for `source = "limpet"` (`device_manifest`: the manifest with the update agent, whose
/// needs the kernel must meet).
pub fn locate(
    manifest: &Manifest,
    device_manifest: &Manifest,
    manifest_dir: &Path,
    boot: &Path,
    lib_modules: &Path,
    own: impl FnOnce() -> Result<OwnKernel, KernelError>,
) -> Result<KernelFiles, KernelError> {
    match &manifest.kernel.source {
        KernelSource::Limpet => {
            let own = own()?;
            let source = limpet_kbuild::locate(&own.usr_src)?;
            let lines = limpet_kbuild::lines(device_manifest);
            let built = limpet_kbuild::build(&limpet_kbuild::Request {
                source: &source,
                target: manifest.device.target,
                lines: &lines,
                cache: &own.cache,
                epoch: own.epoch,
                jobs: std::thread::available_parallelism().map_or(1, usize::from),
            })?;
            for option in &built.not_hardened {
                tracing::warn!(
                    "kernel hardening CONFIG_{option} is not available with this toolchain"
                );
            }
            let config = fs::read(&built.config).map_err(|e| KernelError::Read {
                path: built.config.clone(),
                source: e,
            })?;
            Ok(KernelFiles {
                release: built.release,
                image: built.image,
                modules_dir: None,
                origin: KernelOrigin::Limpet {
                    version: source.version,
                    source_sha256: source.sha256,
                    config_sha256: hex::encode(Sha256::digest(&config)),
                },
            })
        }
        KernelSource::Host => {
            let target = manifest.device.target.as_str();
            if target != std::env::consts::ARCH {
                return Err(KernelError::HostArch {
                    host: std::env::consts::ARCH,
                    target,
                });
            }
            let mut kernel = newest_host_kernel(boot, lib_modules)?;
            kernel.origin = debian_package(&kernel.image).unwrap_or(KernelOrigin::Unknown);
            Ok(kernel)
        }
        KernelSource::Paths { image, modules } => {
            let image = manifest_dir.join(image);
            let modules_dir = manifest_dir.join(modules);
            for path in [&image, &modules_dir] {
                fs::metadata(path).map_err(|source| KernelError::Read {
                    path: path.clone(),
                    source,
                })?;
            }
            let release = modules_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(KernelFiles {
                release,
                image,
                modules_dir: Some(modules_dir),
                origin: KernelOrigin::Unknown,
            })
        }
    }
}

/// Refuses a kernel whose `.config` lacks what `manifest` needs, naming each option (see
/// crates/limpet-kconfig). The config is `config-<release>` beside the kernel image, as
/// Debian's `/boot` has it; a kernel without one is not audited (`Ok(None)`). Reads only:
/// the build's outputs do not depend on it.
pub fn check_config(
    kernel: &KernelFiles,
    manifest: &Manifest,
) -> Result<Option<PathBuf>, KernelError> {
    let Some(dir) = kernel.image.parent() else {
        return Ok(None);
    };
    let path = dir.join(format!("config-{}", kernel.release));
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KernelError::Read { path, source }),
    };
    let config = match limpet_kconfig::KernelConfig::parse(&text) {
        Ok(config) => config,
        Err(source) => return Err(KernelError::BadConfig { path, source }),
    };
    match limpet_kconfig::audit(&config, Some(manifest)).require_needs() {
        Ok(()) => Ok(Some(path)),
        Err(source) => Err(KernelError::LacksNeeds { path, source }),
    }
}

fn newest_host_kernel(boot: &Path, lib_modules: &Path) -> Result<KernelFiles, KernelError> {
    let none = || KernelError::NoHostKernel {
        boot: boot.to_owned(),
        modules: lib_modules.to_owned(),
    };
    let entries = fs::read_dir(boot).map_err(|_| none())?;
    let mut found: Vec<(Vec<u64>, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("vmlinuz-")
                .map(str::to_owned)
        })
        .filter(|release| lib_modules.join(release).join("modules.dep").is_file())
        .map(|release| (version_key(&release), release))
        .collect();
    found.sort();
    let (_, release) = found.pop().ok_or_else(none)?;
    Ok(KernelFiles {
        image: boot.join(format!("vmlinuz-{release}")),
        modules_dir: Some(lib_modules.join(&release)),
        release,
        origin: KernelOrigin::Unknown,
    })
}

/// The Debian package that installed `image` and its version, if dpkg knows one
/// (`dpkg-query -S`, then `-W`); `None` when dpkg is missing or no package owns it.
fn debian_package(image: &Path) -> Option<KernelOrigin> {
    let query = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("dpkg-query")
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let owner = query(&["-S".as_ref(), image.as_os_str()])?;
    let package = parse_dpkg_owner(&owner)?;
    let version = query(&[
        "-W".as_ref(),
        "-f".as_ref(),
        "${Version}".as_ref(),
        package.as_ref(),
    ])?;
    (!version.is_empty()).then_some(KernelOrigin::Debian { package, version })
}

/// The package of a `dpkg-query -S` answer (`linux-image-6.1.0-57-amd64: /boot/vmlinuz-…`);
/// `None` for more than one package or an answer of another shape (a diversion).
fn parse_dpkg_owner(answer: &str) -> Option<String> {
    let mut lines = answer.lines();
    let (package, _) = lines.next()?.split_once(": ")?;
    let package = package.split(':').next()?.trim();
    let valid = !package.is_empty() && !package.contains([',', ' ']) && lines.next().is_none();
    valid.then(|| package.to_owned())
}

/// Numeric parts of a kernel release, so that 6.10 sorts after 6.9.
fn version_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(u64::MAX))
        .collect()
}

/// The module name as the kernel knows it: file stem, `-` and `_` equivalent.
pub fn module_name(path_or_name: &str) -> String {
    let file = path_or_name.rsplit('/').next().unwrap_or(path_or_name);
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .unwrap_or(file);
    stem.replace('-', "_")
}

/// A module file to carry, relative to the modules directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// The module's name as the kernel knows it (see [`module_name`]).
    pub name: String,
    /// The module file's path relative to the modules directory, as `modules.dep` gives it.
    pub relative_path: String,
}

/// `modules.dep` and `modules.builtin` of one kernel.
#[derive(Debug)]
pub struct ModuleIndex {
    dep_path: PathBuf,
    /// name → (relative path, dependency relative paths)
    modules: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    /// Reads `modules.dep` (and `modules.builtin`, if there is one) in `modules_dir`;
    /// fails if `modules.dep` cannot be read or one of its lines is malformed.
    pub fn load(modules_dir: &Path) -> Result<Self, KernelError> {
        let dep_path = modules_dir.join("modules.dep");
        let text = fs::read_to_string(&dep_path).map_err(|source| KernelError::Read {
            path: dep_path.clone(),
            source,
        })?;
        let mut modules = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (module, deps) = line.split_once(':').ok_or(KernelError::BadModulesDep {
                path: dep_path.clone(),
                line: index + 1,
            })?;
            let deps = deps.split_whitespace().map(str::to_owned).collect();
            modules.insert(module_name(module), (module.to_owned(), deps));
        }
        // modules.builtin is optional: a kernel without it has no built-in modules listed.
        let builtin = fs::read_to_string(modules_dir.join("modules.builtin"))
            .map(|t| t.lines().map(module_name).collect())
            .unwrap_or_default();
        Ok(Self {
            dep_path,
            modules,
            builtin,
        })
    }

    /// The files for `names` and everything they depend on, each once, dependencies
    /// before the modules that need them.
    pub fn closure(&self, names: &[String]) -> Result<Vec<ModuleFile>, KernelError> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for name in names {
            let name = module_name(name);
            if !self.modules.contains_key(&name) {
                if self.builtin.contains(&name) {
                    tracing::debug!(module = %name, "built into the kernel");
                    continue;
                }
                return Err(KernelError::UnknownModule {
                    name,
                    dep: self.dep_path.clone(),
                });
            }
            self.visit(&name, &mut Vec::new(), &mut done, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<ModuleFile>,
    ) -> Result<(), KernelError> {
        if done.contains(name) {
            return Ok(());
        }
        if stack.iter().any(|n| n == name) {
            return Err(KernelError::Cycle {
                name: name.to_owned(),
                dep: self.dep_path.clone(),
            });
        }
        let Some((path, deps)) = self.modules.get(name) else {
            return Err(KernelError::UnknownModule {
                name: name.to_owned(),
                dep: self.dep_path.clone(),
            });
        };
        stack.push(name.to_owned());
        for dep in deps {
            self.visit(&module_name(dep), stack, done, order)?;
        }
        stack.pop();
        done.insert(name.to_owned());
        order.push(ModuleFile {
            name: name.to_owned(),
            relative_path: path.clone(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use limpet_image::cmdline::Watchdog as Armed;

    /// A one-task manifest for `target` with `kernel` as its `[kernel]` section.
    fn manifest_with(target: &str, kernel: &str) -> Manifest {
        limpet_manifest::parse(
            "limpet.toml",
            &format!(
                "[device]\nname = \"d\"\nversion = \"0.1.0\"\ntarget = \"{target}\"\n\
                 [kernel]\n{kernel}\n\
                 [[task]]\nname = \"t\"\npackage = \"t\"\nmemory = \"8MiB\"\ncpu = \"5%\"\n"
            ),
        )
        .unwrap()
    }

    fn kernel_section(toml: &str) -> Kernel {
        manifest_with("x86_64", toml).kernel
    }

    #[test]
    fn the_signed_command_line_ends_with_the_watchdog_the_loader_and_pid1_read() {
        let line = command_line(Target::X86_64, &kernel_section(""));
        assert_eq!(line, "console=ttyS0 panic=-1 quiet limpet.watchdog=60");
        assert_eq!(Armed::from_cmdline(&line), Armed::Secs(60));
        let k = kernel_section("cmdline = \"init_on_free=1  mitigations=auto\"\nwatchdog = \"2m\"");
        let line = command_line(Target::Aarch64, &k);
        assert_eq!(
            line,
            "console=ttyAMA0 panic=-1 quiet init_on_free=1 mitigations=auto limpet.watchdog=120"
        );
        let line = command_line(Target::X86_64, &kernel_section("watchdog = \"off\""));
        assert_eq!(Armed::from_cmdline(&line), Armed::Off);
    }

    #[test]
    fn the_manifests_watchdog_bounds_are_the_loaders() {
        assert_eq!(
            limpet_manifest::MAX_WATCHDOG_SECS,
            limpet_image::cmdline::WATCHDOG_MAX_SECS
        );
        assert_eq!(
            limpet_manifest::DEFAULT_WATCHDOG,
            Watchdog::Secs(limpet_image::cmdline::WATCHDOG_DEFAULT_SECS)
        );
        // The longest command line the manifest allows fits the slot header's field.
        let longest = format!(
            "console=ttyAMA0 panic=-1 quiet {} limpet.watchdog=2046",
            "x".repeat(limpet_manifest::MAX_KERNEL_CMDLINE)
        );
        assert!(longest.len() + " limpet.slot=a limpet.counted=1".len() <= 1024);
    }

    fn kernel_with_config(config: Option<&str>) -> (tempfile::TempDir, KernelFiles) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("vmlinuz-6.1.0-test"), "").unwrap();
        if let Some(config) = config {
            fs::write(dir.path().join("config-6.1.0-test"), config).unwrap();
        }
        let kernel = KernelFiles {
            release: "6.1.0-test".into(),
            image: dir.path().join("vmlinuz-6.1.0-test"),
            modules_dir: Some(dir.path().join("modules")),
            origin: KernelOrigin::Unknown,
        };
        (dir, kernel)
    }

    fn network_manifest() -> Manifest {
        limpet_manifest::parse(
            "limpet.toml",
            "[device]\nname = \"d\"\nversion = \"0.1.0\"\ntarget = \"x86_64\"\n\
             [[task]]\nname = \"t\"\npackage = \"t\"\nmemory = \"8MiB\"\ncpu = \"5%\"\n\
             network = \"allowlist\"\n[[task.egress]]\nhost = \"192.0.2.1\"\nports = [443]\n",
        )
        .unwrap()
    }

    #[test]
    fn a_kernel_config_lacking_a_need_is_refused_naming_the_option() {
        let manifest = network_manifest();
        let needs = limpet_kconfig::needs::of(&manifest);
        let mut config = limpet_kconfig::fragment(needs.iter().filter(|c| c.option != "NF_TABLES"));
        let (_dir, kernel) = kernel_with_config(Some(&config));
        let err = check_config(&kernel, &manifest).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(
            chain.contains(
                "config-6.1.0-test: the kernel lacks what the manifest needs: CONFIG_NF_TABLES"
            ),
            "{chain}"
        );

        config.push_str("CONFIG_NF_TABLES=m\n");
        let (_dir, kernel) = kernel_with_config(Some(&config));
        assert!(check_config(&kernel, &manifest).unwrap().is_some());
    }

    #[test]
    fn a_kernel_without_a_config_is_not_audited_and_a_bad_one_is_refused() {
        let (_dir, kernel) = kernel_with_config(None);
        assert!(check_config(&kernel, &network_manifest())
            .unwrap()
            .is_none());
        let (_dir, kernel) = kernel_with_config(Some("CONFIG_A=y\nnonsense\n"));
        let err = check_config(&kernel, &network_manifest()).unwrap_err();
        assert!(matches!(err, KernelError::BadConfig { .. }), "{err:?}");
    }

    fn index(dep: &str, builtin: &str) -> (tempfile::TempDir, ModuleIndex) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("modules.dep"), dep).unwrap();
        fs::write(dir.path().join("modules.builtin"), builtin).unwrap();
        let index = ModuleIndex::load(dir.path()).unwrap();
        (dir, index)
    }

    #[test]
    fn closure_puts_dependencies_first_once() {
        let (_d, idx) = index(
            "kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko\n\
             kernel/drivers/md/dm-bufio.ko: kernel/drivers/md/dm-mod.ko\n\
             kernel/drivers/md/dm-mod.ko:\n\
             kernel/fs/squashfs/squashfs.ko:\n",
            "kernel/drivers/virtio/virtio.ko\n",
        );
        let files = idx
            .closure(&[
                "dm_verity".into(),
                "squashfs".into(),
                "dm-mod".into(),
                "virtio".into(),
            ])
            .unwrap();
        let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["dm_mod", "dm_bufio", "dm_verity", "squashfs"]);
    }

    #[test]
    fn unknown_module_is_named() {
        let (_d, idx) = index("kernel/fs/squashfs/squashfs.ko:\n", "");
        let err = idx.closure(&["nosuch".into()]).unwrap_err();
        assert!(matches!(err, KernelError::UnknownModule { ref name, .. } if name == "nosuch"));
    }

    #[test]
    fn cycle_is_an_error_not_a_hang() {
        let (_d, idx) = index("a.ko: b.ko\nb.ko: a.ko\n", "");
        assert!(matches!(
            idx.closure(&["a".into()]),
            Err(KernelError::Cycle { .. })
        ));
    }

    #[test]
    fn malformed_line_is_located() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("modules.dep"), "a.ko:\nno colon here\n").unwrap();
        let err = ModuleIndex::load(dir.path()).unwrap_err();
        assert!(matches!(err, KernelError::BadModulesDep { line: 2, .. }));
    }

    #[test]
    fn newest_kernel_sorts_by_version() {
        let boot = tempfile::tempdir().unwrap();
        let lib = tempfile::tempdir().unwrap();
        for v in ["6.9.0-1-amd64", "6.10.0-1-amd64", "6.11.0-1-amd64"] {
            fs::write(boot.path().join(format!("vmlinuz-{v}")), b"k").unwrap();
            // 6.11 has no modules: it must not be chosen.
            if v != "6.11.0-1-amd64" {
                fs::create_dir_all(lib.path().join(v)).unwrap();
                fs::write(lib.path().join(v).join("modules.dep"), b"").unwrap();
            }
        }
        let k = newest_host_kernel(boot.path(), lib.path()).unwrap();
        assert_eq!(k.release, "6.10.0-1-amd64");
    }

    #[test]
    fn the_host_kernel_is_refused_for_another_architecture() {
        let other = if std::env::consts::ARCH == "x86_64" {
            "aarch64"
        } else {
            "x86_64"
        };
        let manifest = manifest_with(other, "source = \"host\"");
        let empty = tempfile::tempdir().unwrap();
        let never = || -> Result<OwnKernel, KernelError> { unreachable!("not a limpet kernel") };
        let err = locate(
            &manifest,
            &manifest,
            empty.path(),
            empty.path(),
            empty.path(),
            never,
        )
        .unwrap_err();
        assert!(matches!(err, KernelError::HostArch { .. }), "{err}");
        assert!(err.to_string().contains("set [kernel] source"), "{err}");
    }

    #[test]
    fn a_limpet_kernel_without_its_source_says_what_to_install() {
        let manifest = manifest_with("x86_64", "source = \"limpet\"");
        let empty = tempfile::tempdir().unwrap();
        let own = || {
            Ok(OwnKernel {
                usr_src: empty.path().to_owned(),
                cache: empty.path().join("cache"),
                epoch: 1,
            })
        };
        let err = locate(
            &manifest,
            &manifest,
            empty.path(),
            empty.path(),
            empty.path(),
            own,
        )
        .unwrap_err();
        assert!(matches!(err, KernelError::Build(_)), "{err}");
        let chain = limpet_error_chain::one_line(&err);
        assert!(
            chain.contains("apt-get install linux-source-6.1"),
            "{chain}"
        );
        assert!(!empty.path().join("cache").exists());
    }

    #[test]
    fn the_package_of_a_kernel_is_read_from_dpkgs_answer() {
        assert_eq!(
            parse_dpkg_owner("linux-image-6.1.0-57-amd64: /boot/vmlinuz-6.1.0-57-amd64\n"),
            Some("linux-image-6.1.0-57-amd64".into())
        );
        // Multi-arch packages are `name:arch`.
        assert_eq!(
            parse_dpkg_owner("linux-image-6.1.0-57-arm64:arm64: /boot/vmlinuz-6.1.0-57-arm64"),
            Some("linux-image-6.1.0-57-arm64".into())
        );
        for unknown in [
            "",
            "diversion by x from: /boot/vmlinuz",
            "a, b: /boot/vmlinuz",
            "a: /boot/vmlinuz\nb: /boot/vmlinuz",
        ] {
            assert_eq!(parse_dpkg_owner(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn no_kernel_says_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let err = newest_host_kernel(empty.path(), empty.path()).unwrap_err();
        assert!(err
            .to_string()
            .contains("apt-get install linux-image-amd64"));
    }
}
