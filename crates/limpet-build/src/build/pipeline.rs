//! `limpet build`: from a manifest to its outputs, `slot.img`, `initramfs.cpio`, `kernel`,
//! `loader.efi`, `efivars.fd` and `disk.img`.
//!
//! [`build`] is one call per step, in this order (the numbers are the ones it logs):
//! 1. `read_inputs`: the manifest, the signing key, the epoch, the update root, the
//!    compiled policy and the kernel (its `config-<release>`, when it has one, against
//!    what the device needs), all checked before anything is compiled;
//! 2. `compile`: the task binaries, `limpet-init` and (with `[update]`) the update
//!    agent, as static binaries for the device's target, and the UEFI boot loader with
//!    the image public key compiled in;
//! 3. `slot_contents`: the squashfs, exactly what the device runs from its slot;
//! 4. `make_initramfs`: `limpet-init`, the public key, the kernel modules, the `/data`
//!    template and the release file (limpet-image's `release`);
//! 5. `sign_kernel`: the kernel image, signed for Secure Boot with the vendor's db key;
//! 6. `sign`: the SBOM, and the whole-image slot: squashfs, dm-verity tree, signed header,
//!    SBOM, kernel, initramfs, with the kernel command line in the header;
//! 7. `boot_chain`: the loader signed with the db key, the EFI system partition holding
//!    it, and the firmware variables with the vendor's PK, KEK and db enrolled;
//! 8. `make_disk`: the GPT disk with the ESP, the slot in `slot-a`, the factory state and
//!    data.
//!
//! Rules this module keeps:
//! - nothing is written into the output directory until every output is complete: the
//!   outputs are made in a staging directory inside it and renamed into place, so an
//!   interrupted or failed build never leaves a half-written file under a final name;
//! - the squashfs holds exactly the canonical manifest, the policy compiled from it, and
//!   the task binaries;
//! - the initramfs holds exactly `limpet-init` as `/init`, the public image key, the
//!   module list and the modules it names, the `/data` template and the release file;
//!   `limpet-init` is the same bytes in every release built from the same Limpet source
//!   (its release is the file's, not in the binary);
//! - every byte depends only on the inputs (sources, lock file, kernel, key, epoch).

use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use limpet_image::slot::{SlotLayout, SlotMeta};
use limpet_image::{cpio, disk, slot, squashfs};
use limpet_manifest::{Manifest, Tpm};
use limpet_policy::{LifecyclePolicy, RoughtimeServer};
use sha2::{Digest, Sha256};

use super::cargo::{BinarySpec, CargoError, InitPart, InitParts, Workspace};
use super::cohort::Cohort;
use super::kernel::{self, KernelError, KernelFiles};
use super::sbom::{self, SbomBinary, SbomError, SbomKernel};
use crate::outputs::{
    DISK_IMG, FIRMWARE_VARS, INITRAMFS, KERNEL, LOADER, MANIFEST_FILE, POLICY_FILE, SLOT_IMG,
};
use crate::project::keys::{self, KeyError};
use crate::project::{self, EpochSource, Project, ProjectError};
use crate::secureboot::keys::{SecureBootKeyError, SecureBootKeys};
use crate::secureboot::{sign::SignError, vars::VarsError};

/// Size of the `state` partition.
pub const STATE_SIZE: u64 = 1024 * 1024;

/// Everything `limpet build` needs to know.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The vendor's `limpet.toml`; its directory is the project directory.
    pub manifest_path: PathBuf,
    /// Default: `out/` beside the manifest.
    pub out_dir: Option<PathBuf>,
    /// Default: `keys/image.key` beside the manifest.
    pub key_path: Option<PathBuf>,
    /// The Limpet source tree, to build `limpet-init` from.
    pub limpet_source: PathBuf,
    /// `/boot` and `/lib/modules` of the host, for `[kernel] source = "host"`.
    pub boot_dir: PathBuf,
    /// The host's `/lib/modules`, where the modules of a `"host"` kernel are found.
    pub lib_modules_dir: PathBuf,
    /// The host's `/usr/src`, where `source = "limpet"` finds `linux-source-6.1.tar.xz`.
    pub usr_src_dir: PathBuf,
    /// The cohort to build, whose seed orders the device binaries' code and data; `None`:
    /// the linker's own order.
    pub cohort: Option<Cohort>,
}

impl BuildOptions {
    /// Options with the host's standard directories and this build of Limpet's sources.
    pub fn new(manifest_path: PathBuf) -> Self {
        Self {
            manifest_path,
            out_dir: None,
            key_path: None,
            limpet_source: default_limpet_source(),
            boot_dir: PathBuf::from("/boot"),
            lib_modules_dir: PathBuf::from("/lib/modules"),
            usr_src_dir: PathBuf::from("/usr/src"),
            cohort: None,
        }
    }
}

/// The Limpet workspace this binary was built from, unless `LIMPET_SOURCE` says otherwise.
pub fn default_limpet_source() -> PathBuf {
    std::env::var_os("LIMPET_SOURCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Errors of a build, each naming the step and the thing at fault.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The project (manifest, epoch, paths) could not be read.
    #[error(transparent)]
    Project(#[from] ProjectError),
    /// The image signing key could not be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Cargo failed to compile a device binary.
    #[error("compiling the device binaries")]
    Cargo(#[from] CargoError),
    /// The kernel or its modules could not be found or read.
    #[error("finding or checking the kernel")]
    Kernel(#[from] KernelError),
    /// The `data` partition's filesystem could not be made.
    #[error("making the data filesystem")]
    DataFs(#[from] super::datafs::DataFsError),
    /// The manifest's policy does not compile (seccomp, rules).
    #[error("compiling the task policy")]
    Policy(#[from] limpet_compile::CompileError),
    /// The manifest's `support_until` is not a date the device can count to (a manifest
    /// that passed its checks always is).
    #[error("support_until {last_day:?} is not a date after 1970")]
    SupportUntil {
        /// The date as the manifest gives it.
        last_day: String,
    },
    /// The compiled policy could not be serialized as `policy.json`.
    #[error("writing the compiled policy as JSON")]
    PolicyJson(#[from] limpet_policy::PolicyError),
    /// The SBOM could not be made.
    #[error("writing the SBOM")]
    Sbom(#[from] SbomError),
    /// An input file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file's path.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// An output or staging file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The path being written.
        path: PathBuf,
        /// Why writing it failed.
        source: std::io::Error,
    },
    /// The squashfs of the slot could not be made.
    #[error("making the squashfs")]
    Squashfs(#[source] squashfs::SquashfsError),
    /// The slot (squashfs, dm-verity tree, signed header) could not be assembled.
    #[error("assembling the slot")]
    Slot(#[source] slot::SlotError),
    /// The initramfs archive could not be made.
    #[error("making the initramfs")]
    Cpio(#[source] cpio::CpioError),
    /// The device's name, version and target do not make a release file.
    #[error("the initramfs's release file")]
    Release(#[source] limpet_image::release::ReleaseError),
    /// The GPT disk image could not be made.
    #[error("making the disk image")]
    Disk(#[source] disk::DiskError),
    /// The vendor's Secure Boot keys are missing or unusable.
    #[error(transparent)]
    SecureBootKeys(#[from] SecureBootKeyError),
    /// The loader or the kernel could not be signed for Secure Boot.
    #[error(transparent)]
    SecureBootSign(#[from] SignError),
    /// The firmware variables could not be made.
    #[error(transparent)]
    FirmwareVars(#[from] VarsError),
    /// The EFI system partition could not be made.
    #[error("making the EFI system partition")]
    Esp(#[source] limpet_image::esp::EspError),
    /// The factory A/B state, or a partition's contents, could not be written into the disk
    /// image (no such partition, contents larger than it, a bad state record).
    #[error("cannot write the factory state into {path}: {reason}")]
    State {
        /// The disk image being written.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The update agent's task could not be added to the device manifest.
    #[error("adding the update agent's task")]
    UpdateAgent(#[source] limpet_manifest::Diagnostics),
    /// The remote agent's task could not be added to the device manifest.
    #[error("adding the remote agent's task")]
    RemoteAgent(#[source] limpet_manifest::Diagnostics),
    /// The file `[remote] access_key` names does not hold an access key.
    #[error("[remote] access_key {path}: {reason}")]
    AccessKey {
        /// The file, as resolved from the manifest's directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The manifest has `[update]` but no `root` file to start the device's trust from.
    #[error("[update] needs `root`: the repository's first root metadata (e.g. root = \"repo/metadata/1.root.json\", written by `limpet repo init`)")]
    NoUpdateRoot,
    /// The `[update] root` file is not a TUF root metadata the device could trust.
    #[error("{path}: not the TUF root metadata the device can trust: {reason}")]
    UpdateRoot {
        /// The root metadata file `[update] root` names.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Two tasks name binaries the same from different packages, so one would
    /// overwrite the other in the slot.
    #[error("two tasks use binaries named `{binary}` from different packages ({first}, {second})")]
    BinaryClash {
        /// The binary's name.
        binary: String,
        /// The first package that builds it.
        first: String,
        /// The second package that builds it.
        second: String,
    },
}

/// Sizes and identities of what a build wrote, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    /// Where the outputs were written.
    pub out_dir: PathBuf,
    /// The device name from the manifest.
    pub device: String,
    /// The image version from the manifest.
    pub version: String,
    /// The target (board) name the image is for.
    pub target: String,
    /// The cohort built, if any (its seed ordered the device binaries).
    pub cohort: Option<Cohort>,
    /// The seconds since 1970 every timestamp in the image is set to.
    pub source_date_epoch: u32,
    /// Where that epoch came from, in words (`SOURCE_DATE_EPOCH`, the last git commit, or none).
    pub epoch_source: String,
    /// The id of the signing key, hex: the first 8 bytes of the sha256 of its public key.
    pub key_id: String,
    /// The dm-verity root hash of the squashfs, hex; the signed header carries it.
    pub root_hash: String,
    /// The release of the kernel the image boots (`uname -r`), whose modules the initramfs holds.
    pub kernel_release: String,
    /// The kernel's `.config` that the build audited against the device's needs, when the
    /// kernel has one beside its image (Debian's `/boot`, Limpet's own kernel).
    pub kernel_config: Option<PathBuf>,
    /// The device binaries and their sizes: the task binaries in the slot, then `limpet-init`.
    pub binaries: Vec<SizedFile>,
    /// The names of the kernel modules the initramfs carries.
    pub modules: Vec<String>,
    /// Size of the squashfs in the slot, bytes.
    pub squashfs_bytes: u64,
    /// Size of the dm-verity hash tree in the slot, bytes.
    pub verity_tree_bytes: u64,
    /// Size of `slot.img`, bytes.
    pub slot_bytes: u64,
    /// Size of `initramfs.cpio` as written (compressed), bytes.
    pub initramfs_bytes: u64,
    /// Size of the initramfs's archive before compression, bytes.
    pub initramfs_uncompressed_bytes: u64,
    /// Size of the `kernel` output (signed), bytes.
    pub kernel_bytes: u64,
    /// Size of the signed boot loader, bytes.
    pub loader_bytes: u64,
    /// Size of `disk.img`, bytes.
    pub disk_bytes: u64,
    /// Number of components the SBOM lists.
    pub sbom_components: usize,
}

/// A named file and its size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SizedFile {
    /// The file's name (a binary's name for [`BuildReport::binaries`]).
    pub name: String,
    /// Its size, bytes.
    pub bytes: u64,
}

/// Builds the image described by `options`: the steps of the module doc, in order.
pub fn build(options: &BuildOptions) -> Result<BuildReport, BuildError> {
    const STEPS: usize = 8;
    let step = |n: usize, what: &str| tracing::info!("[{n}/{STEPS}] {what}");

    step(1, "reading the manifest and the signing key");
    let inputs = read_inputs(options)?;
    let target = inputs.project.manifest.device.target;

    step(
        2,
        &format!(
            "compiling task binaries and limpet-init for {}{}",
            target.rust_triple(),
            options
                .cohort
                .map(|c| format!(", {c} (its seed orders the code)"))
                .unwrap_or_default()
        ),
    );
    let compiled = compile(options, &inputs)?;
    let out_dir = options
        .out_dir
        .clone()
        .unwrap_or_else(|| inputs.project.dir.join("out"));
    let staging = Staging::new(&out_dir)?;

    step(
        3,
        "making the squashfs (canonical manifest + task binaries)",
    );
    let contents = slot_contents(&inputs, &compiled)?;

    step(
        4,
        &format!("making the initramfs (kernel {})", inputs.kernel.release),
    );
    let initramfs = make_initramfs(&inputs, &compiled, &staging)?;

    step(5, "signing the kernel for Secure Boot (db key)");
    let kernel = sign_kernel(&inputs, &staging)?;

    step(
        6,
        "writing the SBOM and signing the slot (dm-verity tree, header, kernel, initramfs)",
    );
    // A cohort's slot says which cohort it is, signed: `limpet publish` names its targets
    // after it (docs/cohorts.md).
    let mut cmdline = kernel::command_line(
        inputs.project.manifest.device.target,
        &inputs.project.manifest.kernel,
    );
    if let Some(cohort) = options.cohort {
        cmdline.push(' ');
        cmdline.push_str(&cohort.cmdline_word());
    }
    let boot = slot::BootFiles {
        kernel: &kernel,
        initramfs: &initramfs.archive,
        cmdline: &cmdline,
    };
    let signed = sign(&inputs, &compiled, &contents, &boot, &staging)?;

    step(
        7,
        "signing the boot loader, making the EFI system partition and the firmware variables",
    );
    let chain = boot_chain(&inputs, &compiled, &staging)?;

    step(
        8,
        "making the disk image (esp, state, slot-a, slot-b, data)",
    );
    let disk_bytes = make_disk(&inputs, &signed, &chain.esp, &staging)?;

    staging.commit(&[SLOT_IMG, INITRAMFS, KERNEL, LOADER, FIRMWARE_VARS, DISK_IMG])?;

    let mut binaries = contents.binaries;
    binaries.push(SizedFile {
        name: "limpet-init".into(),
        bytes: initramfs.init_bytes,
    });
    Ok(BuildReport {
        out_dir,
        device: signed.meta.device,
        version: signed.meta.version,
        target: signed.meta.target,
        cohort: options.cohort,
        source_date_epoch: inputs.epoch,
        epoch_source: match inputs.epoch_source {
            EpochSource::Environment => "SOURCE_DATE_EPOCH".into(),
            EpochSource::LastCommit => "last git commit".into(),
            EpochSource::Zero => "none found (0)".into(),
        },
        key_id: hex::encode(limpet_image::header::key_id(
            &inputs.signing_key.verifying_key(),
        )),
        root_hash: hex::encode(signed.root_hash),
        kernel_release: inputs.kernel.release,
        kernel_config: inputs.kernel_config,
        binaries,
        modules: initramfs.modules,
        squashfs_bytes: signed.layout.squashfs_size,
        verity_tree_bytes: signed.layout.tree_size,
        slot_bytes: signed.bytes.len() as u64,
        initramfs_bytes: initramfs.archive.len() as u64,
        initramfs_uncompressed_bytes: initramfs.uncompressed_bytes,
        kernel_bytes: kernel.len() as u64,
        loader_bytes: chain.loader_bytes,
        disk_bytes,
        sbom_components: signed.sbom_components,
    })
}

/// What step 1 reads and checks, for the steps after it.
struct Inputs {
    project: Project,
    /// What the device runs: the vendor's tasks and, with `[update]`, the update agent.
    device_manifest: Manifest,
    signing_key: SigningKey,
    /// The vendor's Secure Boot keys, from `secureboot/` beside the image key.
    secure_boot: SecureBootKeys,
    epoch: u32,
    epoch_source: EpochSource,
    /// `[update] root`, checked: the TUF root the device starts from.
    update_root: Option<Vec<u8>>,
    /// `policy.json`: the device manifest's policy, compiled.
    policy: Vec<u8>,
    /// What of PID 1 that policy uses (a network, an update agent).
    init_parts: InitParts,
    kernel: KernelFiles,
    /// The kernel's `.config` that was audited, if it has one.
    kernel_config: Option<PathBuf>,
}

/// Step 1: reads the manifest, the signing key and the epoch, checks `[update] root`,
/// compiles the policy and finds the kernel, so that an error in any of them is found
/// before minutes of compiling.
fn read_inputs(options: &BuildOptions) -> Result<Inputs, BuildError> {
    let project = Project::load(&options.manifest_path)?;
    let manifest = &project.manifest;
    let key_path = options
        .key_path
        .clone()
        .unwrap_or_else(|| project.dir.join("keys").join(keys::PRIVATE_KEY_FILE));
    let signing_key = keys::load_signing_key(&key_path)?;
    let key_dir = key_path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let secure_boot = SecureBootKeys::load(&key_dir)?;
    let (epoch, epoch_source) = project::source_date_epoch(&project.dir)?;
    let device_manifest = manifest
        .with_update_agent()
        .map_err(BuildError::UpdateAgent)?;
    let device_manifest = match &manifest.remote {
        Some(r) => device_manifest
            .with_remote_agent(&access_key(&project.dir, &r.access_key)?)
            .map_err(BuildError::RemoteAgent)?,
        None => device_manifest,
    };
    let update_root = match &manifest.update {
        Some(u) => Some(update_root(&project.dir, u)?),
        None => None,
    };
    let mut compiled = limpet_compile::compile(&device_manifest)?;
    compiled.lifecycle = Some(lifecycle_policy(manifest, epoch)?);
    let part = |used: bool| {
        if used {
            InitPart::Linked
        } else {
            InitPart::LeftOut
        }
    };
    let init_parts = InitParts {
        network: part(compiled.network.is_some()),
        install: part(compiled.update_agent.is_some()),
        tpm: part(manifest.kernel.tpm == Tpm::Tpm2),
        roughtime: part(
            compiled
                .lifecycle
                .as_ref()
                .is_some_and(|l| !l.roughtime.is_empty()),
        ),
    };
    let policy = compiled.to_json()?;
    let kernel = kernel::locate(
        manifest,
        &device_manifest,
        &project.dir,
        &options.boot_dir,
        &options.lib_modules_dir,
        || {
            let ws = Workspace::load(&options.limpet_source, manifest.device.target)
                .map_err(|e| kernel::KernelError::Cache(e.to_string()))?;
            Ok(kernel::OwnKernel {
                usr_src: options.usr_src_dir.clone(),
                cache: ws.target_dir.join("limpet-kernel"),
                epoch: u64::from(epoch),
            })
        },
    )?;
    // Before minutes of compiling: a kernel whose config lacks what the device needs
    // (the manifest with its update agent) would fail at boot.
    let kernel_config = kernel::check_config(&kernel, &device_manifest)?;
    Ok(Inputs {
        project,
        device_manifest,
        signing_key,
        secure_boot,
        epoch,
        epoch_source,
        update_root,
        policy,
        init_parts,
        kernel,
        kernel_config,
    })
}

/// The slot's time and support window for `policy.json`: the build time (the device's time
/// floor starts there) and the manifest's `[lifecycle]`, its last day of support as the
/// first second after it (limpet-repo's `support_end`, as the repository's extensions).
fn lifecycle_policy(manifest: &Manifest, epoch: u32) -> Result<LifecyclePolicy, BuildError> {
    let roughtime = manifest
        .lifecycle
        .iter()
        .flat_map(|l| &l.roughtime)
        .map(|r| RoughtimeServer {
            name: r.name.clone(),
            address: r.address,
            key: r.key.clone(),
        })
        .collect();
    let (support_until, freshness_secs) = match &manifest.lifecycle {
        Some(l) => {
            let last_day = l.support_until.to_string();
            let end = limpet_repo::support_end(&last_day)
                .and_then(|t| u64::try_from(t.as_secs()).ok())
                .ok_or(BuildError::SupportUntil { last_day })?;
            (Some(end), l.freshness.map(|f| f.as_millis() / 1000))
        }
        None => (None, None),
    };
    Ok(LifecyclePolicy {
        built: u64::from(epoch),
        support_until,
        freshness_secs,
        roughtime,
    })
}

/// What step 2 compiled, and the workspaces it came from (for the SBOM).
struct Compiled {
    /// The distinct task binaries, in declaration order, and their paths.
    task_specs: Vec<BinarySpec>,
    task_paths: Vec<PathBuf>,
    init_path: PathBuf,
    /// The update agent, for a device with `[update]`.
    agent_path: Option<PathBuf>,
    /// The remote agent, for a device with `[remote]`.
    remote_agent_path: Option<PathBuf>,
    /// The UEFI boot loader, unsigned, with the image public key compiled in.
    loader_path: PathBuf,
    project_ws: Workspace,
    limpet_ws: Workspace,
}

/// Step 2: compiles the task binaries from the project's workspace and Limpet's own
/// binaries (PID 1, and the update agent for a device with `[update]`) from Limpet's,
/// in one cargo invocation when the project lives in Limpet's own workspace.
fn compile(options: &BuildOptions, inputs: &Inputs) -> Result<Compiled, BuildError> {
    let manifest = &inputs.project.manifest;
    let target = manifest.device.target;
    let task_specs = task_binaries(manifest)?;
    let project_ws = Workspace::load(&inputs.project.dir, target)?;
    let limpet_ws = Workspace::load(&options.limpet_source, target)?;
    let mut own_specs = vec![BinarySpec {
        package: "limpet-init".into(),
        binary: "limpet-init".into(),
    }];
    if manifest.update.is_some() {
        own_specs.push(BinarySpec {
            package: limpet_manifest::UPDATE_AGENT_PACKAGE.into(),
            binary: limpet_manifest::UPDATE_AGENT_PACKAGE.into(),
        });
    }
    if manifest.remote.is_some() {
        own_specs.push(remote_agent_spec());
    }
    let (task_paths, own_paths) = if same_dir(&project_ws.root, &limpet_ws.root) {
        let mut specs = task_specs.clone();
        specs.extend(own_specs.iter().cloned());
        let mut paths = project_ws.build(&specs, target, inputs.init_parts, options.cohort)?;
        let own = paths.split_off(task_specs.len());
        (paths, own)
    } else {
        let tasks = project_ws.build(&task_specs, target, inputs.init_parts, options.cohort)?;
        let own = limpet_ws.build(&own_specs, target, inputs.init_parts, options.cohort)?;
        (tasks, own)
    };
    let mut own_paths = own_paths.into_iter();
    let init_path = own_paths.next().ok_or(CargoError::MissingOutput {
        path: "limpet-init".into(),
    })?;
    let agent_path = manifest.update.as_ref().and_then(|_| own_paths.next());
    let remote_agent_path = manifest.remote.as_ref().and_then(|_| own_paths.next());
    let loader_path = limpet_ws.build_loader(target, &loader_key_file(&limpet_ws, inputs)?)?;
    Ok(Compiled {
        task_specs,
        task_paths,
        init_path,
        agent_path,
        remote_agent_path,
        loader_path,
        project_ws,
        limpet_ws,
    })
}

/// What step 3 made: the squashfs, and the binaries in it for the report.
struct SlotContents {
    squashfs: Vec<u8>,
    binaries: Vec<SizedFile>,
}

/// Step 3: the squashfs, exactly the canonical manifest, the compiled policy, the task
/// binaries, with `[update]` the update agent and the TUF root it starts from, and with
/// `[remote]` the remote agent.
fn slot_contents(inputs: &Inputs, compiled: &Compiled) -> Result<SlotContents, BuildError> {
    let mut entries = vec![
        squashfs::Entry {
            path: MANIFEST_FILE.into(),
            data: inputs.project.manifest.to_canonical_toml().into_bytes(),
            mode: 0o444,
        },
        squashfs::Entry {
            path: POLICY_FILE.into(),
            data: inputs.policy.clone(),
            mode: 0o444,
        },
    ];
    let mut binaries = Vec::new();
    let mut binary = |name: &str, path: &Path| -> Result<(), BuildError> {
        let data = read(path)?;
        binaries.push(SizedFile {
            name: name.to_owned(),
            bytes: data.len() as u64,
        });
        entries.push(squashfs::Entry {
            path: name.to_owned(),
            data,
            mode: 0o555,
        });
        Ok(())
    };
    for (spec, path) in compiled.task_specs.iter().zip(&compiled.task_paths) {
        binary(&spec.binary, path)?;
    }
    if let (Some(agent), Some(_)) = (&compiled.agent_path, &inputs.update_root) {
        binary(limpet_manifest::UPDATE_AGENT_PACKAGE, agent)?;
    }
    if let Some(agent) = &compiled.remote_agent_path {
        binary(limpet_manifest::REMOTE_AGENT_BINARY, agent)?;
    }
    if let (Some(_), Some(root)) = (&compiled.agent_path, &inputs.update_root) {
        entries.push(squashfs::Entry {
            path: limpet_manifest::UPDATE_ROOT_FILE.into(),
            data: root.clone(),
            mode: 0o444,
        });
    }
    let squashfs = squashfs::build(&entries, inputs.epoch).map_err(BuildError::Squashfs)?;
    Ok(SlotContents { squashfs, binaries })
}

/// What step 4 signed.
struct Signed {
    /// The whole slot, as written to `slot.img`.
    bytes: Vec<u8>,
    layout: SlotLayout,
    root_hash: [u8; 32],
    meta: SlotMeta,
    sbom_components: usize,
}

/// Step 6: the SBOM, then the slot (squashfs, dm-verity tree, header signed with the
/// image key, the SBOM as its attachment, the kernel and the initramfs), written to
/// `slot.img`.
fn sign(
    inputs: &Inputs,
    compiled: &Compiled,
    contents: &SlotContents,
    boot: &slot::BootFiles<'_>,
    staging: &Staging,
) -> Result<Signed, BuildError> {
    let manifest = &inputs.project.manifest;
    let kernel = SbomKernel {
        release: &inputs.kernel.release,
        image: boot.kernel,
        origin: &inputs.kernel.origin,
    };
    let sbom = make_sbom(manifest, compiled, &kernel, inputs.epoch)?;
    let sbom_components = sbom["components"].as_array().map_or(0, Vec::len);
    let attachment = encode_attachment(&sbom)?;
    let meta = SlotMeta {
        device: manifest.device.name.as_str().to_owned(),
        target: manifest.device.target.as_str().to_owned(),
        version: manifest.device.version.to_string(),
    };
    let bytes = slot::assemble(
        &contents.squashfs,
        &meta,
        &attachment,
        boot,
        &inputs.signing_key,
    )
    .map_err(BuildError::Slot)?;
    let opened = slot::open(&bytes).map_err(BuildError::Slot)?;
    let layout = opened.layout;
    let root_hash = opened.header.unverified().root_hash;
    staging.write(SLOT_IMG, &bytes)?;
    Ok(Signed {
        bytes,
        layout,
        root_hash,
        meta,
        sbom_components,
    })
}

/// What step 4 made.
struct InitramfsReport {
    /// The compressed archive, as written to `initramfs.cpio` and into the slot.
    archive: Vec<u8>,
    uncompressed_bytes: u64,
    /// The modules it carries, in load order.
    modules: Vec<String>,
    /// The size of `limpet-init`.
    init_bytes: u64,
}

/// Step 4: the initramfs (`limpet-init`, the public key, the module closure and its load
/// list, the `/data` template, the release file), written to `initramfs.cpio`.
fn make_initramfs(
    inputs: &Inputs,
    compiled: &Compiled,
    staging: &Staging,
) -> Result<InitramfsReport, BuildError> {
    let init = read(&compiled.init_path)?;
    let device = &inputs.device_manifest.device;
    let release = limpet_image::release::Release::new(
        device.name.as_str(),
        &device.version.to_string(),
        header_target(device.target),
    )
    .map_err(BuildError::Release)?;
    let template = data_template(inputs, staging)?;
    let (initramfs, uncompressed_bytes, modules) = super::initramfs::make(
        &inputs.device_manifest,
        &inputs.kernel,
        &init,
        &template,
        &release,
        &inputs.signing_key,
        inputs.epoch,
    )?;
    staging.write(INITRAMFS, &initramfs)?;
    Ok(InitramfsReport {
        archive: initramfs,
        uncompressed_bytes,
        modules,
        init_bytes: init.len() as u64,
    })
}

/// The empty data filesystem as a template ([`limpet_image::datafs`]): made by mke2fs as
/// the disk's is, the partition's size, its UUID from the device's name and version, so
/// PID 1 can restore a wiped data partition. Its scratch file is removed.
fn data_template(inputs: &Inputs, staging: &Staging) -> Result<Vec<u8>, BuildError> {
    use std::io::Read;
    let manifest = &inputs.project.manifest;
    let seed = Sha256::new()
        .chain_update(b"limpet-data-template")
        .chain_update(manifest.device.name.as_str())
        .chain_update(manifest.device.version.to_string())
        .finalize();
    let uuid: [u8; 16] = seed[..16].try_into().unwrap_or([0; 16]);
    let path = staging.path("data-template.ext4");
    super::datafs::make(
        &path,
        manifest.disk.data_size.bytes(),
        &super::ids::uuid_string(&uuid),
        inputs.epoch,
    )?;
    let read_err = |source| BuildError::Read {
        path: path.clone(),
        source,
    };
    let mut file = fs::File::open(&path).map_err(read_err)?;
    let mut encoder = limpet_image::datafs::Encoder::new();
    let mut block = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut block).map_err(read_err)?;
        if n == 0 {
            break;
        }
        encoder.push(&block[..n]);
    }
    drop(file);
    let _ = fs::remove_file(&path);
    Ok(encoder.finish())
}

/// The image public key as a file the loader's build reads: one stable path per key
/// (under the device target directory, named by the key id), so that cargo rebuilds the
/// loader only when the key changes.
fn loader_key_file(limpet_ws: &Workspace, inputs: &Inputs) -> Result<PathBuf, BuildError> {
    let public = inputs.signing_key.verifying_key();
    let id = hex::encode(limpet_image::header::key_id(&public));
    let dir = limpet_ws.device_target_dir().join("limpet-boot-keys");
    let path = dir.join(format!("{id}.pub"));
    let pem = keys::public_pem(&public)?;
    if fs::read_to_string(&path).ok().as_deref() != Some(pem.as_str()) {
        let write = |source| BuildError::Write {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(write)?;
        fs::write(&path, pem).map_err(write)?;
    }
    Ok(path)
}

/// Step 5: the kernel image signed with the db key (replacing any signature it had),
/// written to `kernel`; returns its bytes.
fn sign_kernel(inputs: &Inputs, staging: &Staging) -> Result<Vec<u8>, BuildError> {
    let kernel = read(&inputs.kernel.image)?;
    let signed = crate::secureboot::sign::sign_pe(
        &kernel,
        "kernel",
        &inputs.secure_boot.db,
        inputs.epoch,
        &staging.dir,
    )?;
    staging.write(KERNEL, &signed)?;
    Ok(signed)
}

/// What step 7 made.
struct BootChain {
    /// The EFI system partition's FAT image.
    esp: Vec<u8>,
    loader_bytes: u64,
}

/// Step 7: the boot loader signed with the db key (`loader.efi`), the EFI system
/// partition holding it at the removable-media path, and the firmware variables with the
/// vendor's keys enrolled (`efivars.fd`).
fn boot_chain(
    inputs: &Inputs,
    compiled: &Compiled,
    staging: &Staging,
) -> Result<BootChain, BuildError> {
    let target = inputs.project.manifest.device.target;
    let loader = read(&compiled.loader_path)?;
    let signed = crate::secureboot::sign::sign_pe(
        &loader,
        "boot loader",
        &inputs.secure_boot.db,
        inputs.epoch,
        &staging.dir,
    )?;
    staging.write(LOADER, &signed)?;
    let esp = limpet_image::esp::build(header_target(target), &signed).map_err(BuildError::Esp)?;
    crate::secureboot::vars::make(
        header_target(target),
        &inputs.secure_boot,
        &staging.path(FIRMWARE_VARS),
    )?;
    Ok(BootChain {
        esp,
        loader_bytes: signed.len() as u64,
    })
}

/// The image format's name for a manifest target.
fn header_target(target: limpet_manifest::Target) -> limpet_image::header::Target {
    match target {
        limpet_manifest::Target::X86_64 => limpet_image::header::Target::X86_64,
        limpet_manifest::Target::Aarch64 => limpet_image::header::Target::Aarch64,
    }
}

/// Step 8: the disk image (the EFI system partition, the factory state, the slot in
/// `slot-a`, an empty `slot-b`, the data filesystem), its GUIDs derived from the device
/// name and the slot's root hash; returns its size.
fn make_disk(
    inputs: &Inputs,
    signed: &Signed,
    esp: &[u8],
    staging: &Staging,
) -> Result<u64, BuildError> {
    let manifest = &inputs.project.manifest;
    let guid_seed: [u8; 32] = Sha256::new()
        .chain_update(b"limpet-disk-guid")
        .chain_update(manifest.device.name.as_str())
        .chain_update(signed.root_hash)
        .finalize()
        .into();
    let spec = disk::DiskSpec {
        esp,
        state_size: STATE_SIZE,
        slot_size: manifest.disk.slot_size.bytes(),
        data_size: manifest.disk.data_size.bytes(),
        slot_a: &signed.bytes,
        guid_seed,
    };
    super::disk_image::write(
        &staging.path(DISK_IMG),
        &spec,
        &manifest.device.version,
        &staging.path("data.ext4"),
        inputs.epoch,
    )
}

/// The distinct binaries the tasks need, in declaration order.
fn task_binaries(manifest: &Manifest) -> Result<Vec<BinarySpec>, BuildError> {
    let mut specs: Vec<BinarySpec> = Vec::new();
    for task in &manifest.tasks {
        let spec = BinarySpec {
            package: task.package.clone(),
            binary: task.binary.as_str().to_owned(),
        };
        match specs.iter().find(|s| s.binary == spec.binary) {
            Some(existing) if existing.package != spec.package => {
                return Err(BuildError::BinaryClash {
                    binary: spec.binary,
                    first: existing.package.clone(),
                    second: spec.package,
                });
            }
            Some(_) => {}
            None => specs.push(spec),
        }
    }
    Ok(specs)
}

/// The SBOM of every binary in the slot and the initramfs, and of the kernel.
fn make_sbom(
    manifest: &Manifest,
    compiled: &Compiled,
    kernel: &SbomKernel<'_>,
    epoch: u32,
) -> Result<serde_json::Value, BuildError> {
    let Compiled {
        task_specs,
        project_ws,
        limpet_ws,
        ..
    } = compiled;
    let mut bins: Vec<SbomBinary<'_>> = task_specs
        .iter()
        .map(|s| SbomBinary {
            binary: s.binary.clone(),
            package: s.package.clone(),
            metadata: &project_ws.metadata,
        })
        .collect();
    bins.push(SbomBinary {
        binary: "limpet-init".into(),
        package: "limpet-init".into(),
        metadata: &limpet_ws.metadata,
    });
    if manifest.update.is_some() {
        bins.push(SbomBinary {
            binary: limpet_manifest::UPDATE_AGENT_PACKAGE.into(),
            package: limpet_manifest::UPDATE_AGENT_PACKAGE.into(),
            metadata: &limpet_ws.metadata,
        });
    }
    if manifest.remote.is_some() {
        let spec = remote_agent_spec();
        bins.push(SbomBinary {
            binary: spec.binary,
            package: spec.package,
            metadata: &limpet_ws.metadata,
        });
    }
    let mut checksums = sbom::lock_checksums(&project_ws.root.join("Cargo.lock"));
    checksums.extend(sbom::lock_checksums(&limpet_ws.root.join("Cargo.lock")));
    let rustc = rustc_version();
    Ok(sbom::cyclonedx(
        manifest.device.name.as_str(),
        &manifest.device.version.to_string(),
        &bins,
        kernel,
        &checksums,
        &rustc,
        u64::from(epoch),
    )?)
}

/// The attachment after the slot header: the SBOM as zstd-compressed JSON.
fn encode_attachment(sbom: &serde_json::Value) -> Result<Vec<u8>, BuildError> {
    let json = serde_json::to_vec(sbom).map_err(|e| BuildError::Write {
        path: "sbom".into(),
        source: std::io::Error::other(e),
    })?;
    cpio::compress(&json).map_err(BuildError::Cpio)
}

fn rustc_version() -> String {
    std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    fs::read(path).map_err(|source| BuildError::Read {
        path: path.to_owned(),
        source,
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A staging directory inside the output directory; removed unless committed.
struct Staging {
    dir: PathBuf,
    out_dir: PathBuf,
}

impl Staging {
    /// Creates the output directory if need be, and a fresh staging directory in it.
    fn new(out_dir: &Path) -> Result<Self, BuildError> {
        fs::create_dir_all(out_dir).map_err(|source| BuildError::Write {
            path: out_dir.to_owned(),
            source,
        })?;
        let dir = out_dir.join(format!(".limpet-build-{}", std::process::id()));
        // A leftover from a killed build with the same PID is stale by definition.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).map_err(|source| BuildError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            out_dir: out_dir.to_owned(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), BuildError> {
        let path = self.path(name);
        fs::write(&path, bytes).map_err(|source| BuildError::Write { path, source })
    }

    /// Moves the finished outputs into the output directory.
    fn commit(&self, names: &[&str]) -> Result<(), BuildError> {
        for name in names {
            let to = self.out_dir.join(name);
            fs::rename(self.path(name), &to)
                .map_err(|source| BuildError::Write { path: to, source })?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Reads `[update] root` and checks it is TUF root metadata signed by its own root
/// threshold (limpet-tuf, as the device will), whose root role lists every key id of
/// `[update] keys` (the pin the vendor wrote in the manifest).
/// The remote agent's binary, from Limpet's own workspace.
fn remote_agent_spec() -> BinarySpec {
    BinarySpec {
        package: limpet_manifest::REMOTE_AGENT_PACKAGE.into(),
        binary: limpet_manifest::REMOTE_AGENT_BINARY.into(),
    }
}

/// `[remote] access_key`: the key's 64 hex digits, read from the file it names (relative
/// to the manifest's directory) when it is not written out.
fn access_key(dir: &Path, key: &limpet_manifest::AccessKeyRef) -> Result<String, BuildError> {
    let path = match key {
        limpet_manifest::AccessKeyRef::Key(hex) => return Ok(hex.clone()),
        limpet_manifest::AccessKeyRef::File(rel) => dir.join(rel),
    };
    let text = String::from_utf8(read(&path)?).map_err(|_| BuildError::AccessKey {
        path: path.clone(),
        reason: "not text".to_owned(),
    })?;
    let hex = text.trim();
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(BuildError::AccessKey {
            path,
            reason: "not an Ed25519 public key of 64 hex digits (`limpet access keygen` writes one in FILE.pub)".to_owned(),
        })
    }
}

fn update_root(dir: &Path, u: &limpet_manifest::Update) -> Result<Vec<u8>, BuildError> {
    let rel = u.root.as_ref().ok_or(BuildError::NoUpdateRoot)?;
    let path = dir.join(rel);
    let bytes = read(&path)?;
    let bad = |reason: String| BuildError::UpdateRoot {
        path: path.clone(),
        reason,
    };
    let root = limpet_tuf::client::verify_root(&bytes).map_err(|e| bad(e.to_string()))?;
    let ids: Vec<String> = root
        .role_keys(limpet_tuf::metadata::Role::Root)
        .map_err(|e| bad(e.to_string()))?
        .keyids
        .iter()
        .map(ToString::to_string)
        .collect();
    for key in &u.keys {
        match key {
            limpet_manifest::KeyRef::Id(id) if !ids.iter().any(|k| k == id.as_str()) => {
                return Err(bad(format!(
                    "[update] keys lists {} but the root role's keys are {ids:?}",
                    id.as_str()
                )));
            }
            limpet_manifest::KeyRef::Id(_) => {}
            limpet_manifest::KeyRef::File(f) => {
                return Err(bad(format!(
                    "[update] keys pins a key file ({}); pin TUF root key ids instead: {{ id = \"...\" }}",
                    f.display()
                )));
            }
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_key_is_read_from_the_file_remote_names() {
        let dir = tempfile::tempdir().unwrap();
        let key = "3B6A27BCCEB6A42D62A3A8D02A6F0D73653215771DE243A63AC048A18B59DA29";
        std::fs::write(dir.path().join("access.pub"), format!("{key}\n")).unwrap();
        std::fs::write(dir.path().join("short.pub"), &key[2..]).unwrap();
        let file = |p: &str| limpet_manifest::AccessKeyRef::File(p.into());
        assert_eq!(
            access_key(dir.path(), &file("access.pub")).unwrap(),
            key.to_ascii_lowercase()
        );
        let e = access_key(dir.path(), &file("short.pub")).unwrap_err();
        assert!(
            matches!(&e, BuildError::AccessKey { path, .. } if path.ends_with("short.pub")),
            "{e}"
        );
        assert!(access_key(dir.path(), &file("missing.pub")).is_err());
    }

    /// A repository's first root and one of its root key ids.
    fn repository(dir: &Path) -> (Vec<u8>, String) {
        let repo = limpet_tuf::repo::Repository::init(
            &dir.join("repo"),
            &dir.join("keys"),
            limpet_tuf::repo::InitOptions::default(),
            Box::new(limpet_tuf::time::SystemClock),
        )
        .unwrap();
        let id = repo
            .root()
            .unwrap()
            .role_keys(limpet_tuf::metadata::Role::Root)
            .unwrap()
            .keyids[0]
            .to_string();
        let bytes = std::fs::read(dir.join("repo/metadata/1.root.json")).unwrap();
        (bytes, id)
    }

    fn update(keys: &str, root: Option<&str>) -> limpet_manifest::Update {
        let text = format!(
            "[device]\nname = \"t\"\nversion = \"1.0.0\"\ntarget = \"x86_64\"\n\n\
             [[task]]\nname = \"a\"\npackage = \"a\"\nmemory = \"8MiB\"\ncpu = \"5%\"\n\n\
             [update]\nrepository = \"http://192.0.2.1/\"\nkeys = [{keys}]\n{}",
            root.map_or_else(String::new, |r| format!("root = \"{r}\"\n"))
        );
        limpet_manifest::parse("t.toml", &text)
            .unwrap()
            .update
            .unwrap()
    }

    fn reason(e: BuildError) -> String {
        match e {
            BuildError::UpdateRoot { reason, .. } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_shipped_root_must_be_self_signed_and_list_the_pinned_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (root, id) = repository(dir.path());
        let pin = format!("{{ id = \"{id}\" }}");
        std::fs::write(dir.path().join("root.json"), &root).unwrap();
        assert_eq!(
            update_root(dir.path(), &update(&pin, Some("root.json"))).unwrap(),
            root
        );

        assert!(matches!(
            update_root(dir.path(), &update(&pin, None)),
            Err(BuildError::NoUpdateRoot)
        ));
        let other = format!("{{ id = \"{}\" }}", "ab".repeat(32));
        assert!(
            reason(update_root(dir.path(), &update(&other, Some("root.json"))).unwrap_err())
                .contains("[update] keys lists")
        );
        assert!(reason(
            update_root(
                dir.path(),
                &update("{ file = \"k.pub\" }", Some("root.json"))
            )
            .unwrap_err()
        )
        .contains("pin TUF root key ids"));

        // Not root metadata, or its signed part changed after signing.
        std::fs::write(dir.path().join("bad.json"), b"{ not json").unwrap();
        update_root(dir.path(), &update(&pin, Some("bad.json"))).unwrap_err();
        let text = String::from_utf8(root.clone()).unwrap();
        let forged = text.replacen("\"version\": 1", "\"version\": 9", 1);
        assert_ne!(forged, text, "the root's version field moved");
        std::fs::write(dir.path().join("forged.json"), forged).unwrap();
        assert!(matches!(
            update_root(dir.path(), &update(&pin, Some("forged.json"))),
            Err(BuildError::UpdateRoot { .. })
        ));
        assert!(matches!(
            update_root(dir.path(), &update(&pin, Some("missing.json"))),
            Err(BuildError::Read { .. })
        ));
    }

    fn manifest(path: &str) -> Manifest {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path);
        let text = fs::read_to_string(&path).unwrap();
        limpet_manifest::parse(&path.display().to_string(), &text).unwrap()
    }

    /// `support_until = "2032-01-01"` (the last day) ends support at 2032-01-02T00:00:00Z;
    /// `freshness = "45d"` is 45 days of uptime; the build time is the epoch given.
    #[test]
    fn the_lifecycle_policy_carries_the_window_and_the_build_time() {
        let m = manifest("crates/limpet-manifest/tests/fixtures/good/full.toml");
        assert_eq!(
            lifecycle_policy(&m, 1_700_000_000).unwrap(),
            LifecyclePolicy {
                built: 1_700_000_000,
                support_until: Some(1_956_614_400),
                freshness_secs: Some(45 * 86_400),
                roughtime: vec![RoughtimeServer {
                    name: "rt1".to_owned(),
                    address: "192.0.2.5:2002".parse().unwrap(),
                    key: "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=".to_owned(),
                }],
            }
        );
        let m = manifest("examples/hello/limpet.toml");
        assert!(m.lifecycle.is_none());
        assert_eq!(
            lifecycle_policy(&m, 7).unwrap(),
            LifecyclePolicy {
                built: 7,
                support_until: None,
                freshness_secs: None,
                roughtime: Vec::new(),
            }
        );
    }
}
