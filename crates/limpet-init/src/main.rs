//! `limpet-init`: PID 1 of a Limpet device.
//!
//! Boot, in order:
//! 1. mount the kernel's pseudo-filesystems and load exactly the kernel modules the build
//!    put in the initramfs (`/etc/limpet/modules`, in dependency order);
//! 2. find the boot disk's `state`, `slot-a`, `slot-b` and `data` partitions by GPT name;
//! 3. choose the slot, check its header signature against the key in the initramfs, map
//!    it through dm-verity with the signed root hash and mount its squashfs read-only;
//! 4. mount the data partition `nosuid,nodev,noexec`, load the device's identity from it
//!    (or make one on first boot: `identity`), apply the hardening sysctls and lock module
//!    loading;
//! 5. read the compiled policy from the verified slot and run every task in its sandbox
//!    under the supervisor until a shutdown request; then stop the tasks, unmount, power
//!    off.
//!
//! Rules kept here and in everything added later:
//! - PID 1 never panics: every failure is reported on the console and leads to a
//!   documented outcome (try the other slot, else power off with the reason);
//! - PID 1 never executes anything that was not declared: there is no shell to fall
//!   back to.

// First: its `console!` macro is used by every module after it.
#[macro_use]
mod console;
mod boot;
mod datafs;
mod dm;
mod hardening;
mod host_namespaces;
mod identity;
mod install;
mod lifecycle;
mod logs;
mod network;
mod owner_mode;
mod partitions;
mod power_button;
mod pubkey;
mod release;
mod roughtime;
mod runtime;
mod slots;
mod status;
mod supervisor;
mod sys;
mod trial;
mod verified;
mod watchdog;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long PID 1 waits for the boot disk's partitions to appear after loading the
/// block driver (virtio-blk probes asynchronously).
const DISK_WAIT: Duration = Duration::from_secs(10);
/// Where the verified slot is mounted.
pub const SLOT_MOUNT: &str = "slot";
/// The compiled policy inside the slot.
pub const POLICY_FILE: &str = "policy.json";
/// Where the data partition is mounted.
pub const DATA_MOUNT: &str = "data";

/// Size cap of the in-memory `/data` of a boot whose data partition was wiped.
const WIPED_DATA_TMPFS: u64 = 16 * 1024 * 1024;

/// Why the boot stopped before the tasks ran to a shutdown.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("early boot")]
    EarlyBoot { source: boot::EarlyBootError },
    #[error(
        "no disk with partitions {} appeared within {}s",
        partitions::NAMES.join(", "),
        waited.as_secs()
    )]
    NoDisk { waited: Duration },
    #[error(transparent)]
    Key(#[from] verified::KeyError),
    #[error(transparent)]
    Slot(#[from] slots::StateBootError),
    #[error("cannot mount the data partition {}", device.display())]
    MountData {
        device: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Policy(#[from] LoadPolicyError),
    #[error("the runtime stopped")]
    Runtime(#[from] crate::runtime::RuntimeError),
}

/// Why the compiled policy in the slot cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadPolicyError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", path.display())]
    Parse {
        path: PathBuf,
        source: limpet_policy::PolicyError,
    },
    #[error("the policy is for {policy:?}, this device is {device:?}")]
    Arch {
        policy: limpet_policy::Arch,
        device: Option<limpet_policy::Arch>,
    },
}

fn main() {
    let root = Path::new("/");
    let version = env!("CARGO_PKG_VERSION");
    console::line(&release::starting_line(version, &release::read(root)));
    if host_namespaces::requested(root) {
        // PID 1 of a namespace on the build host: exit instead of powering anything off.
        let code = match host_namespaces::run(root) {
            Ok(()) => 0,
            Err(e) => {
                console!("simulation failed: {}", console::chain(&e));
                1
            }
        };
        std::process::exit(code);
    }
    match boot(root) {
        Ok(runtime::Outcome::PowerOff) => console!("powering off"),
        Ok(runtime::Outcome::Reboot) => {
            console!("rebooting");
            sys::reboot();
        }
        Err(BootError::Slot(e @ slots::StateBootError::TrialAppFailed { .. })) => {
            console!("{e}; rebooting");
            sys::reboot();
        }
        Err(e) => console!("boot failed: {}; powering off", console::chain(&e)),
    }
    sys::power_off();
}

fn boot(root: &Path) -> Result<runtime::Outcome, BootError> {
    // Ctrl-alt-del sends SIGINT to PID 1 (a clean shutdown) instead of rebooting at once.
    let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);
    let report = boot::early_boot(root).map_err(|source| BootError::EarlyBoot { source })?;
    let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap_or_default();
    console::stamp_from(&cmdline);
    console!(
        "{} kernel module(s) loaded, {} already present",
        report.loaded,
        report.already_loaded
    );

    let uname = rustix::system::uname();
    console!(
        "kernel {}: {}",
        uname.release().to_string_lossy(),
        cmdline.trim_end()
    );
    let mut watchdog = take_over_watchdog(root, &cmdline);

    let disk = wait_for_disk(root)?;
    console!(
        "disk {}: state={} slot-a={} slot-b={} data={}",
        disk.state.disk,
        disk.state.devname,
        disk.slot_a.devname,
        disk.slot_b.devname,
        disk.data.devname
    );

    let key = verified::load_key(root)?;
    let booted = slots::boot_from_state(root, &disk, &key, slots::Handover::parse(&cmdline))?;
    // The key new slots are checked with: the owner's once handed over (owner_mode).
    let (new_slot_key, said) = owner_mode::install_key(&cmdline, key);
    console!("{said}");

    let data = disk.data.node(root);
    // Owner mode's wipe (docs/owner-mode.md) zeroes the partition: write the empty
    // filesystem the initramfs carries back onto it (power-fail safe, see `datafs`).
    match datafs::restore(&data, &root.join(limpet_image::datafs::INITRAMFS_PATH)) {
        Ok(true) => console!(
            "data partition {} was WIPED: wrote the slot's empty filesystem onto it",
            data.display()
        ),
        Ok(false) => {}
        Err(e) => console!(
            "data partition {}: the empty filesystem was not restored: {}",
            data.display(),
            limpet_error_chain::one_line(&e)
        ),
    }
    if sys::is_wiped(&data).unwrap_or(false) {
        // Still all zero (the restore failed): this boot keeps /data in memory.
        sys::mount_data_tmpfs(&root.join(DATA_MOUNT), WIPED_DATA_TMPFS).map_err(|source| {
            BootError::MountData {
                device: data.clone(),
                source,
            }
        })?;
        console!(
            "data partition {} is WIPED (all zero, no filesystem): /{DATA_MOUNT} is a tmpfs for this boot, nothing on it persists",
            data.display()
        );
    } else {
        sys::mount_data(&data, &root.join(DATA_MOUNT)).map_err(|source| BootError::MountData {
            device: data.clone(),
            source,
        })?;
        console!(
            "data partition {} mounted on /{DATA_MOUNT} (nosuid,nodev,noexec)",
            data.display()
        );
    }
    // Held for the life of PID 1 by the update and remote sockets: it signs the update
    // agent's fleet check-ins and the remote agent's proofs, and never leaves PID 1.
    let (identity, identity_status) = identity::open(root, &root.join(DATA_MOUNT));
    let identity = identity.map(std::sync::Arc::new);
    // The remote agent's sessions, recorded by its socket and reported by the update
    // agent's check-in.
    let sessions = limpet_install::remote::SessionLog::default();

    harden(root);

    let policy = load_policy(root)?;
    let roots = limpet_sandbox::spawn::Roots {
        slot: root.join(SLOT_MOUNT),
        data: root.join(DATA_MOUNT),
        work: root.join("run/limpet/tasks"),
        cgroups: limpet_sandbox::spawn::Cgroups::V2 {
            root: root.join("sys/fs/cgroup"),
        },
    };
    let trial_policy = policy.trial.unwrap_or_default();
    let mut system = system_status(&booted, &trial_policy);
    system.identity = Some(identity_status);
    let other_slot = {
        let slot = booted.slot.other();
        let device = match slot {
            limpet_state::Slot::A => disk.slot_a.node(root),
            limpet_state::Slot::B => disk.slot_b.node(root),
        };
        let key = new_slot_key;
        runtime::Deferred {
            other_slot: Box::new(move || check_other_slot(slot, &device, &key)),
        }
    };
    let time = lifecycle::open(root, &disk, &policy);
    let install = install_server(
        root,
        &disk,
        (&new_slot_key, owner_mode::reported(&cmdline)),
        &booted,
        &policy,
        identity.clone(),
        sessions.clone(),
    );
    let remote = remote_server(root, &policy, identity, sessions);
    let owner = owner_server(root, &disk, &policy);
    let gated = booted.trial.map(|trial| runtime::GatedTrial {
        gate: trial::HealthGate::new(
            Duration::from_millis(trial_policy.health_ms),
            Duration::from_millis(trial_policy.health_timeout_ms),
        ),
        trial,
    });
    console!(
        "starting {} task(s){}",
        policy.tasks.len(),
        if gated.is_some() {
            format!(
                "; trial slot: commit after {} ms of every task up",
                trial_policy.health_ms
            )
        } else {
            String::new()
        }
    );
    let net_mode = match &time {
        Some(keeper) if keeper.island().is_island() && policy.island.is_some() => {
            network::NetMode::Island
        }
        _ => network::NetMode::Normal,
    };
    let network = policy.network.as_ref().and_then(|net| {
        let tasks = network_cgroups(root, net);
        let island = policy.island.as_ref().and_then(|i| i.network.as_ref());
        network::Network::start(net, island, net_mode, tasks)
            .map_err(|e| {
                console!(
                    "network not started, every interface stays down: {}",
                    crate::console::chain(&e)
                )
            })
            .ok()
    });
    if let Some(w) = &mut watchdog {
        if let Err(e) = w.pet_if_due(supervisor::Millis(sys::boottime_ms())) {
            console!("watchdog: {}", console::chain(&e));
        }
    }
    // Roughtime needs the network; the client asks once it is up.
    let roughtime = network
        .as_ref()
        .and_then(|_| roughtime::Roughtime::of(&policy, true));
    let outcome = runtime::run(
        root,
        &policy,
        &roots,
        runtime::Parts {
            trial: gated,
            install,
            remote,
            owner,
            network,
            watchdog,
            time,
            roughtime,
            deferred: Some(other_slot),
        },
        &mut system,
    )?;

    rustix::fs::sync();
    for mount in [DATA_MOUNT, SLOT_MOUNT] {
        if let Err(e) = sys::unmount(&root.join(mount)) {
            console!("cannot unmount /{mount}: {e}");
        }
    }
    console!("all tasks stopped, filesystems unmounted");
    Ok(outcome)
}

/// Takes the hardware watchdog over from the loader (see `watchdog`), saying what it
/// found; the one to pet from now on, if any.
fn take_over_watchdog(root: &Path, cmdline: &str) -> Option<watchdog::Watchdog> {
    match watchdog::take_over(root, cmdline, supervisor::Millis(sys::boottime_ms())) {
        Ok(watchdog::TakeOver::Running(w)) => {
            console!(
                "watchdog /{}: {} s timeout, petted every {} ms",
                watchdog::DEVICE,
                w.timeout,
                w.period.as_millis()
            );
            Some(w)
        }
        Ok(watchdog::TakeOver::Off) => {
            console!("watchdog: off (limpet.watchdog=0)");
            None
        }
        Ok(watchdog::TakeOver::Absent) => {
            console!("watchdog: no device; a hang waits for a power cycle");
            None
        }
        Err(e) => {
            console!("watchdog: {}", console::chain(&e));
            None
        }
    }
}

/// Applies the hardening sysctls, then locks module loading, reporting on the console
/// what could not be set (never fatal: see `hardening`).
fn harden(root: &Path) {
    let report = hardening::apply(root, hardening::SYSCTLS);
    for key in &report.missing {
        console!("sysctl {key} not present in this kernel");
    }
    for failed in &report.failed {
        console!("{}", console::chain(failed));
    }
    let locked = hardening::apply(root, std::slice::from_ref(&hardening::MODULES_DISABLED));
    console!(
        "{} hardening sysctls set; module loading {}",
        report.set,
        if locked.set == 1 {
            "locked"
        } else if !locked.missing.is_empty() {
            // No `kernel.modules_disabled`: a kernel built without loadable modules.
            "absent from this kernel"
        } else {
            "NOT locked"
        }
    );
}

/// How the network policy recognises each network task: by its cgroup v2 directory
/// (created now, kept across restarts, so its id stays the same), or by its uid when the
/// directory cannot be made.
fn network_cgroups(
    root: &Path,
    net: &limpet_policy::NetPolicy,
) -> std::collections::BTreeMap<String, limpet_net::TaskMatch> {
    let cgroups = root.join("sys/fs/cgroup");
    net.tasks
        .iter()
        .map(|t| {
            let matched = match task_cgroup_id(&cgroups, &t.name) {
                Ok(id) => limpet_net::TaskMatch::CgroupV2 { level: 2, id },
                Err(e) => {
                    console!(
                        "cgroup for {}: {}; matching its packets by uid {}",
                        t.name,
                        console::chain(&e),
                        t.uid
                    );
                    limpet_net::TaskMatch::Uid(t.uid)
                }
            };
            (t.name.clone(), matched)
        })
        .collect()
}

/// Why a network task's cgroup cannot identify its packets.
#[derive(Debug, thiserror::Error)]
enum CgroupIdError {
    #[error("no cgroup path")]
    Path {
        source: limpet_sandbox::spawn::SpawnError,
    },
    #[error("cannot create {}", dir.display())]
    Create {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The id (inode number) of a task's cgroup v2 directory, created if missing.
fn task_cgroup_id(cgroups: &Path, task: &str) -> Result<u64, CgroupIdError> {
    use std::os::unix::fs::MetadataExt;
    let dir = limpet_sandbox::spawn::task_cgroup(cgroups, task)
        .map_err(|source| CgroupIdError::Path { source })?;
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::metadata(&dir))
        .map(|m| m.ino())
        .map_err(|source| CgroupIdError::Create { dir, source })
}

/// The update agent's socket, when the policy names an agent task. `install`: the key new
/// slots are checked with, and the owner mode the loader reported (both from `owner_mode`).
fn install_server(
    root: &Path,
    disk: &partitions::DiskPartitions,
    install: (&ed25519_dalek::VerifyingKey, Option<String>),
    booted: &slots::Booted,
    policy: &limpet_policy::DevicePolicy,
    identity: Option<std::sync::Arc<limpet_identity::Identity>>,
    sessions: limpet_install::remote::SessionLog,
) -> Option<install::InstallServer> {
    let name = policy.update_agent.as_ref()?;
    let Some(agent) = policy.tasks.iter().find(|t| &t.name == name) else {
        console!("update agent {name} is not a task: updates disabled");
        return None;
    };
    let path = root.join(limpet_install_api::INSTALL_SOCKET.trim_start_matches('/'));
    let part = |slot: limpet_state::Slot| match slot {
        limpet_state::Slot::A => disk.slot_a.node(root),
        limpet_state::Slot::B => disk.slot_b.node(root),
    };
    let devices = limpet_install::server::Devices {
        state: disk.state.node(root),
        running: part(booted.slot),
        inactive: part(booted.slot.other()),
        running_version: booted.mounted.header.version.clone(),
        key: *install.0,
        trial_boots: u8::try_from(policy.trial.unwrap_or_default().try_boots).unwrap_or(u8::MAX),
        identity,
        sessions,
        owner_mode: install.1,
    };
    match install::InstallServer::bind(&path, agent.credentials.uid, agent.credentials.gid, devices)
    {
        Ok(server) => Some(server),
        Err(e) => {
            console!("{e}: updates disabled");
            None
        }
    }
}

/// The remote agent's socket, when the policy names a remote agent (`[remote]`): it
/// signs the agent's remote-access proofs with the device's identity, which stays here.
fn remote_server(
    root: &Path,
    policy: &limpet_policy::DevicePolicy,
    identity: Option<std::sync::Arc<limpet_identity::Identity>>,
    sessions: limpet_install::remote::SessionLog,
) -> Option<limpet_install::remote::RemoteServer> {
    let name = policy.remote_agent.as_ref()?;
    let Some(agent) = policy.tasks.iter().find(|t| &t.name == name) else {
        console!("remote agent {name} is not a task: remote access disabled");
        return None;
    };
    let path = root.join(limpet_install_api::REMOTE_SOCKET.trim_start_matches('/'));
    let (uid, gid) = (agent.credentials.uid, agent.credentials.gid);
    let gate = policy
        .remote_direct
        .as_ref()
        .and_then(|direct| pinhole_gate(name, direct, identity.as_deref()));
    let bound = limpet_install::remote::RemoteServer::bind(&path, uid, gid, identity, sessions);
    match bound.map(|server| match gate {
        Some(gate) => server.with_pinholes(gate),
        None => server,
    }) {
        Ok(server) => {
            console!(
                "remote agent's socket /{} bound for uid {uid}",
                limpet_install_api::REMOTE_SOCKET.trim_start_matches('/')
            );
            Some(server)
        }
        Err(e) => {
            console!("{e}: remote access disabled");
            None
        }
    }
}

/// The owner-request socket, when the policy grants tasks `owner-request` (bound before
/// any task starts: their sandboxes bind-mount it).
fn owner_server(
    root: &Path,
    disk: &partitions::DiskPartitions,
    policy: &limpet_policy::DevicePolicy,
) -> Option<limpet_install::owner::OwnerServer> {
    if policy.owner_requesters.is_empty() {
        return None;
    }
    let granted: Vec<_> = policy
        .tasks
        .iter()
        .filter(|t| policy.owner_requesters.contains(&t.name))
        .map(|t| limpet_install::owner::Grant {
            task: t.name.clone(),
            uid: t.credentials.uid,
        })
        .collect();
    let path = root.join(limpet_install_api::OWNER_SOCKET.trim_start_matches('/'));
    match limpet_install::owner::OwnerServer::bind(&path, &granted, disk.state.node(root)) {
        Ok(server) => Some(server),
        Err(e) => {
            console!("{e}: owner requests from tasks disabled");
            None
        }
    }
}

/// The agent's pinhole set in the kernel, over PID 1's own netlink socket; each change
/// said on the console.
struct NftPinholes {
    nft: limpet_net::Nft,
    set: String,
}

impl limpet_install::remote::PinholeSet for NftPinholes {
    fn add(&mut self, hole: &limpet_install::remote::Pinhole, secs: u64) -> Result<(), String> {
        self.nft
            .add_pinhole(
                &self.set,
                hole.peer,
                hole.local_port,
                Duration::from_secs(secs),
            )
            .map_err(|e| console::chain(&e))?;
        console!(
            "pinhole opened: {} from port {} for {secs} s",
            hole.peer,
            hole.local_port
        );
        Ok(())
    }

    fn remove(&mut self, hole: &limpet_install::remote::Pinhole) -> Result<(), String> {
        self.nft
            .remove_pinhole(&self.set, hole.peer, hole.local_port)
            .map_err(|e| console::chain(&e))?;
        console!(
            "pinhole closed: {} from port {}",
            hole.peer,
            hole.local_port
        );
        Ok(())
    }
}

/// The direct path's gate (`[remote] direct = true`): PID 1 verifies each pinhole's
/// capability against the slot's access key and this device's identity, and adds the
/// pinholes it decides to the agent's set (`pin_<agent>`) over its own netlink socket.
/// None, said on the console, when the key, the identity or the socket is missing: the
/// relay path stays.
fn pinhole_gate(
    agent: &str,
    direct: &limpet_policy::RemoteDirect,
    identity: Option<&limpet_identity::Identity>,
) -> Option<limpet_install::remote::PinholeGate> {
    let Some(identity) = identity else {
        console!("direct path disabled: this device has no identity to verify capabilities for");
        return None;
    };
    let nft = match limpet_net::Nft::open() {
        Ok(nft) => nft,
        Err(e) => {
            console!("direct path disabled: {}", console::chain(&e));
            return None;
        }
    };
    let set = limpet_net::Ruleset::pinhole_set(agent);
    let said = format!("direct path: pinholes in set {set}, at most 4, each at most 1 hour");
    let gate = limpet_install::remote::PinholeGate::new(
        identity.public_key(),
        &direct.access_key,
        None,
        Box::new(NftPinholes { nft, set }),
    );
    match gate {
        Ok(gate) => {
            console!("{said}");
            Some(gate)
        }
        Err(e) => {
            console!("direct path disabled: {e}");
            None
        }
    }
}

/// The other slot's header on `device`, checked against `key`: for the status file and
/// the console only (the runtime calls it once the tasks have started, see
/// [`runtime::Deferred`]). Booting a slot checks its header again, before mounting it.
fn check_other_slot(
    slot: limpet_state::Slot,
    device: &Path,
    key: &ed25519_dalek::VerifyingKey,
) -> (status::OtherSlot, String) {
    let label = slot.partition_name();
    let (version, error, line) = match verified::verify_header(device, key) {
        Ok(header) => {
            let line = format!(
                "{label} (the other slot): header verified: {} {} ({})",
                header.device, header.version, header.target
            );
            (Some(header.version), None, line)
        }
        Err(e) => {
            let error = crate::console::chain(&e);
            let line = format!("{label} (the other slot): no valid header: {error}");
            (None, Some(error), line)
        }
    };
    let other = status::OtherSlot {
        slot: status::slot_name(slot),
        version,
        error,
    };
    (other, line)
}

/// The status file's `system` object at boot; the other slot is filled in once the tasks
/// have started ([`check_other_slot`]).
fn system_status(
    booted: &slots::Booted,
    trial_policy: &limpet_policy::TrialPolicy,
) -> status::SystemStatus {
    status::SystemStatus {
        slot: status::slot_name(booted.slot),
        version: booted.mounted.header.version.clone(),
        other: None,
        state: booted.state.as_ref().map(Into::into),
        trial: if booted.trial.is_some() {
            status::TrialStatus::Watching {
                health_ms: trial_policy.health_ms,
                timeout_ms: trial_policy.health_timeout_ms,
            }
        } else {
            status::TrialStatus::None
        },
        last_update: None,
        network: None,
        time: None,
        identity: None,
        roughtime: Vec::new(),
    }
}

/// Reads and checks the compiled policy from the mounted slot.
pub fn load_policy(root: &Path) -> Result<limpet_policy::DevicePolicy, LoadPolicyError> {
    let path = root.join(SLOT_MOUNT).join(POLICY_FILE);
    let bytes = std::fs::read(&path).map_err(|source| LoadPolicyError::Read {
        path: path.clone(),
        source,
    })?;
    let policy = limpet_policy::DevicePolicy::from_json(&bytes)
        .map_err(|source| LoadPolicyError::Parse { path, source })?;
    let device = limpet_policy::Arch::host();
    if Some(policy.arch) != device {
        return Err(LoadPolicyError::Arch {
            policy: policy.arch,
            device,
        });
    }
    Ok(policy)
}

fn wait_for_disk(root: &Path) -> Result<partitions::DiskPartitions, BootError> {
    let start = Instant::now();
    loop {
        if let Some(disk) = partitions::select(&partitions::scan(root)) {
            return Ok(disk);
        }
        if start.elapsed() > DISK_WAIT {
            return Err(BootError::NoDisk { waited: DISK_WAIT });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    // Tests fail by panicking; the workspace lints against it are for production code.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use ed25519_dalek::SigningKey;

    /// A small signed slot (squashfs, header, boot files) signed by `key`.
    fn signed_slot(key: &SigningKey) -> Vec<u8> {
        let fs = limpet_image::squashfs::build(
            &[limpet_image::squashfs::Entry {
                path: "policy.json".into(),
                data: b"{}".to_vec(),
                mode: 0o644,
            }],
            1_700_000_000,
        )
        .unwrap();
        let meta = limpet_image::slot::SlotMeta {
            device: "thermostat".into(),
            target: "x86_64".into(),
            version: "1.4.0".into(),
        };
        let boot = limpet_image::slot::BootFiles {
            kernel: &[1; 5000],
            initramfs: &[2; 3000],
            cmdline: "console=ttyS0",
        };
        limpet_image::slot::assemble(&fs, &meta, &[], &boot, key).unwrap()
    }

    fn device(bytes: &[u8]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        file
    }

    #[test]
    fn the_other_slots_header_is_verified_against_the_key() {
        let vendor = SigningKey::from_bytes(&[1; 32]);
        let slot = device(&signed_slot(&vendor));
        let (other, line) =
            check_other_slot(limpet_state::Slot::B, slot.path(), &vendor.verifying_key());
        assert_eq!(other.slot, "b");
        assert_eq!(other.version.as_deref(), Some("1.4.0"));
        assert!(other.error.is_none(), "{:?}", other.error);
        assert_eq!(
            line,
            "slot-b (the other slot): header verified: thermostat 1.4.0 (x86_64)"
        );
    }

    #[test]
    fn the_other_slot_signed_by_another_key_is_refused() {
        let vendor = SigningKey::from_bytes(&[1; 32]);
        let attacker = SigningKey::from_bytes(&[2; 32]);
        let slot = device(&signed_slot(&attacker));
        let (other, line) =
            check_other_slot(limpet_state::Slot::A, slot.path(), &vendor.verifying_key());
        assert_eq!(other.slot, "a");
        assert_eq!(other.version, None, "no version from a refused header");
        let error = other.error.unwrap();
        assert!(error.contains("header refused"), "{error}");
        assert!(error.contains("signed by key"), "{error}");
        assert!(
            line.starts_with("slot-a (the other slot): no valid header: "),
            "{line}"
        );
    }

    #[test]
    fn a_blank_other_slot_has_no_version() {
        let vendor = SigningKey::from_bytes(&[1; 32]);
        let slot = device(&[0; 64 * 1024]);
        let (other, line) =
            check_other_slot(limpet_state::Slot::B, slot.path(), &vendor.verifying_key());
        assert_eq!(other.version, None);
        assert!(other.error.unwrap().contains("bad slot"));
        assert!(line.contains("no valid header"), "{line}");
    }
}
