//! `limpet-init`: PID 1 of a Limpet device.
//!
//! Boot, in order:
//! 1. mount the kernel's pseudo-filesystems and load exactly the kernel modules the build
//!    put in the initramfs (`/etc/limpet/modules`, in dependency order);
//! 2. find the boot disk's `state`, `slot-a`, `slot-b` and `data` partitions by GPT name;
//! 3. choose the slot, check its header signature against the key in the initramfs, map
//!    it through dm-verity with the signed root hash and mount its squashfs read-only;
//! 4. mount the data partition `nosuid,nodev,noexec`, apply the hardening sysctls and lock
//!    module loading;
//! 5. read the compiled policy from the verified slot and run every task in its sandbox
//!    under the supervisor until a shutdown request; then stop the tasks, unmount, power
//!    off.
//!
//! Rules kept here and in everything added later:
//! - PID 1 never panics: every failure is reported on the console and leads to a
//!   documented outcome (try the other slot, else power off with the reason);
//! - PID 1 never executes anything that was not declared: there is no shell to fall
//!   back to.

mod boot;
mod console;
mod dm;
mod hardening;
mod logs;
mod network;
mod partitions;
mod power_button;
mod runtime;
mod sim;
mod slots;
mod status;
mod supervisor;
mod sys;
mod trial;
mod verified;

use std::path::Path;
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

fn main() {
    let root = Path::new("/");
    console::line(&format!(
        "limpet-init {} starting",
        env!("CARGO_PKG_VERSION")
    ));
    if sim::requested(root) {
        // PID 1 of a namespace on the build host: exit instead of powering anything off.
        let code = match sim::run(root) {
            Ok(()) => 0,
            Err(reason) => {
                console::line(&format!("limpet-init: simulation failed: {reason}"));
                1
            }
        };
        std::process::exit(code);
    }
    match boot(root) {
        Ok(runtime::Outcome::PowerOff) => console::line("limpet-init: powering off"),
        Ok(runtime::Outcome::Reboot) => {
            console::line("limpet-init: rebooting");
            sys::reboot();
        }
        Err(reason) => console::line(&format!("limpet-init: boot failed: {reason}; powering off")),
    }
    sys::power_off();
}

fn boot(root: &Path) -> Result<runtime::Outcome, String> {
    // Ctrl-alt-del sends SIGINT to PID 1 (a clean shutdown) instead of rebooting at once.
    let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);
    let report = boot::early_boot(root).map_err(|e| format!("early boot: {e}"))?;
    console::line(&format!(
        "limpet-init: {} kernel module(s) loaded, {} already present",
        report.loaded, report.already_loaded
    ));

    let disk = wait_for_disk(root)?;
    console::line(&format!(
        "limpet-init: disk {}: state={} slot-a={} slot-b={} data={}",
        disk.state.disk,
        disk.state.devname,
        disk.slot_a.devname,
        disk.slot_b.devname,
        disk.data.devname
    ));

    let key = verified::load_key(root).map_err(|e| e.to_string())?;
    let booted = slots::boot_from_state(root, &disk, &key)?;

    let data = disk.data.node(root);
    sys::mount_data(&data, &root.join(DATA_MOUNT))
        .map_err(|e| format!("cannot mount the data partition {}: {e}", data.display()))?;
    console::line(&format!(
        "limpet-init: data partition {} mounted on /{DATA_MOUNT} (nosuid,nodev,noexec)",
        data.display()
    ));

    let report = hardening::apply(root, hardening::SYSCTLS);
    for key in &report.missing {
        console::line(&format!(
            "limpet-init: sysctl {key} not present in this kernel"
        ));
    }
    for (sysctl, error) in &report.failed {
        console::line(&format!(
            "limpet-init: sysctl {} not set ({}): {error}",
            sysctl.key, sysctl.reason
        ));
    }
    let locked = hardening::apply(root, std::slice::from_ref(&hardening::MODULES_DISABLED));
    console::line(&format!(
        "limpet-init: {} hardening sysctls set; module loading {}",
        report.set,
        if locked.set == 1 {
            "locked"
        } else {
            "NOT locked"
        }
    ));

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
    let mut system = system_status(root, &disk, &key, &booted, &trial_policy);
    let updates = update_server(root, &disk, &key, &booted, &policy, &trial_policy);
    let probation = booted.trial.map(|trial| runtime::Probation {
        gate: trial::HealthGate::new(
            Duration::from_millis(trial_policy.health_ms),
            Duration::from_millis(trial_policy.health_timeout_ms),
        ),
        trial,
    });
    console::line(&format!(
        "limpet-init: starting {} task(s){}",
        policy.tasks.len(),
        if probation.is_some() {
            format!(
                "; try slot on probation: commit after {} ms of every task up",
                trial_policy.health_ms
            )
        } else {
            String::new()
        }
    ));
    let network = policy.network.as_ref().and_then(|net| {
        let tasks = network_cgroups(root, net);
        network::Network::start(net, tasks)
            .map_err(|e| {
                console::line(&format!(
                    "limpet-init: network not started, every interface stays down: {e}"
                ))
            })
            .ok()
    });
    let outcome = runtime::run(
        root,
        &policy,
        &roots,
        probation,
        updates,
        network,
        &mut system,
    )?;

    rustix::fs::sync();
    for mount in [DATA_MOUNT, SLOT_MOUNT] {
        if let Err(e) = sys::unmount(&root.join(mount)) {
            console::line(&format!("limpet-init: cannot unmount /{mount}: {e}"));
        }
    }
    console::line("limpet-init: all tasks stopped, filesystems unmounted");
    Ok(outcome)
}

/// How the network policy recognises each network task: by its cgroup v2 directory
/// (created now, kept across restarts, so its id stays the same), or by its uid when the
/// directory cannot be made.
fn network_cgroups(
    root: &Path,
    net: &limpet_policy::NetPolicy,
) -> std::collections::BTreeMap<String, limpet_net::TaskMatch> {
    use std::os::unix::fs::MetadataExt;
    let cgroups = root.join("sys/fs/cgroup");
    net.tasks
        .iter()
        .map(|t| {
            let dir = limpet_sandbox::spawn::task_cgroup(&cgroups, &t.name)
                .map_err(|e| std::io::Error::other(console::chain(&e)));
            let matched = dir
                .and_then(|dir| {
                    std::fs::create_dir_all(&dir)?;
                    std::fs::metadata(&dir)
                })
                .map(|m| limpet_net::TaskMatch::CgroupV2 {
                    level: 2,
                    id: m.ino(),
                });
            let matched = matched.unwrap_or_else(|e| {
                console::line(&format!(
                    "limpet-init: cgroup for {}: {e}; matching its packets by uid {}",
                    t.name, t.uid
                ));
                limpet_net::TaskMatch::Uid(t.uid)
            });
            (t.name.clone(), matched)
        })
        .collect()
}

/// The update agent's socket, when the policy names an agent task.
fn update_server(
    root: &Path,
    disk: &partitions::DiskPartitions,
    key: &ed25519_dalek::VerifyingKey,
    booted: &slots::Booted,
    policy: &limpet_policy::DevicePolicy,
    trial_policy: &limpet_policy::TrialPolicy,
) -> Option<limpet_update::server::UpdateServer> {
    let name = policy.update_agent.as_ref()?;
    let Some(agent) = policy.tasks.iter().find(|t| &t.name == name) else {
        console::line(&format!(
            "limpet-init: update agent {name} is not a task: updates disabled"
        ));
        return None;
    };
    let path = root.join(limpet_update_api::SOCKET.trim_start_matches('/'));
    let part = |slot: limpet_state::Slot| match slot {
        limpet_state::Slot::A => disk.slot_a.node(root),
        limpet_state::Slot::B => disk.slot_b.node(root),
    };
    let devices = limpet_update::server::Devices {
        state: disk.state.node(root),
        running: part(booted.slot),
        inactive: part(booted.slot.other()),
        running_version: booted.mounted.header.version.clone(),
        key: *key,
        try_boots: u8::try_from(trial_policy.try_boots).unwrap_or(u8::MAX),
    };
    match limpet_update::server::UpdateServer::bind(
        &path,
        agent.credentials.uid,
        agent.credentials.gid,
        devices,
    ) {
        Ok(server) => Some(server),
        Err(e) => {
            console::line(&format!("limpet-init: {e}: updates disabled"));
            None
        }
    }
}

/// The status file's `system` object at boot.
fn system_status(
    root: &Path,
    disk: &partitions::DiskPartitions,
    key: &ed25519_dalek::VerifyingKey,
    booted: &slots::Booted,
    trial_policy: &limpet_policy::TrialPolicy,
) -> status::SystemStatus {
    let other = booted.slot.other();
    let other_part = match other {
        limpet_state::Slot::A => &disk.slot_a,
        limpet_state::Slot::B => &disk.slot_b,
    };
    let (version, error) = match verified::verify_header(&other_part.node(root), key) {
        Ok(header) => (Some(header.version), None),
        Err(e) => (None, Some(e.to_string())),
    };
    status::SystemStatus {
        slot: status::slot_name(booted.slot),
        version: booted.mounted.header.version.clone(),
        other: Some(status::OtherSlot {
            slot: status::slot_name(other),
            version,
            error,
        }),
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
    }
}

/// Reads and checks the compiled policy from the mounted slot.
pub fn load_policy(root: &Path) -> Result<limpet_policy::DevicePolicy, String> {
    let policy_path = root.join(SLOT_MOUNT).join(POLICY_FILE);
    let policy_bytes = std::fs::read(&policy_path)
        .map_err(|e| format!("cannot read {}: {e}", policy_path.display()))?;
    let policy = limpet_policy::DevicePolicy::from_json(&policy_bytes)
        .map_err(|e| format!("{}: {e}", policy_path.display()))?;
    if Some(policy.arch) != limpet_policy::Arch::host() {
        return Err(format!(
            "the policy is for {:?}, this device is {:?}",
            policy.arch,
            limpet_policy::Arch::host()
        ));
    }
    Ok(policy)
}

fn wait_for_disk(root: &Path) -> Result<partitions::DiskPartitions, String> {
    let start = Instant::now();
    loop {
        if let Some(disk) = partitions::select(&partitions::scan(root)) {
            return Ok(disk);
        }
        if start.elapsed() > DISK_WAIT {
            return Err(format!(
                "no disk with partitions {} appeared within {}s",
                partitions::NAMES.join(", "),
                DISK_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
