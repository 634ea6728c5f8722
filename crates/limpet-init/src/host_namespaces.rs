//! PID 1 in namespaces on the build host, for `limpet run --sim`: the command line starts
//! limpet-init as PID 1 of fresh namespaces, chrooted into the unpacked initramfs, with
//! the slot's files already checked against the signed header and the image key and
//! unpacked into `/slot`. There is no disk, no kernel module, no dm-verity and no
//! hardening sysctl (those would change the host); cgroup budgets are not enforced (the
//! build hosts have cgroup v1). Everything from the policy on — sandbox, supervisor, logs,
//! shutdown — is the device's code path.
//!
//! Simulation is chosen only by the file [`MARKER`], which the command line writes into
//! the unpacked root. No built initramfs carries it, and neither the kernel command line
//! nor the environment can create a file, so a device cannot be talked into skipping its
//! verified boot.

use std::path::{Path, PathBuf};

use rustix::mount::MountFlags;

use crate::{sys, LoadPolicyError, DATA_MOUNT, SLOT_MOUNT};

/// The marker file that selects simulation.
pub const MARKER: &str = "etc/limpet/sim";

/// Why the simulation stopped before or instead of running its tasks.
#[derive(Debug, thiserror::Error)]
pub enum HostNamespacesError {
    #[error("cannot mount {fstype} on {}", target.display())]
    Mount {
        fstype: &'static str,
        target: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make {}", path.display())]
    NullDevice {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot bind {} onto itself", target.display())]
    Bind {
        target: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Policy(#[from] LoadPolicyError),
    #[error("the runtime stopped")]
    Runtime(#[from] crate::runtime::RuntimeError),
}

/// Whether this PID 1 runs as a simulation.
pub fn requested(root: &Path) -> bool {
    root.join(MARKER).is_file()
}

/// Mounts what the runtime needs and runs the tasks until a shutdown request.
pub fn run(root: &Path) -> Result<(), HostNamespacesError> {
    console!("SIMULATION on the build host: no disk, no dm-verity, no hardening sysctls, cgroup budgets not enforced");
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    for (fstype, target) in [("proc", "proc"), ("tmpfs", "run"), ("tmpfs", "dev")] {
        let target = root.join(target);
        sys::mount_pseudo(fstype, &target, flags).map_err(|source| HostNamespacesError::Mount {
            fstype,
            target,
            source,
        })?;
    }
    let null = root.join("dev/null");
    sys::make_null_device(&null)
        .map_err(|source| HostNamespacesError::NullDevice { path: null, source })?;
    let bind = |target: PathBuf, flags| {
        sys::bind_self(&target, flags)
            .map_err(|source| HostNamespacesError::Bind { target, source })
    };
    bind(
        root.join(SLOT_MOUNT),
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
    )?;
    bind(root.join(DATA_MOUNT), flags)?;
    let mut policy = crate::load_policy(root)?;
    // The update agent installs into the other slot through PID 1: a simulation has no
    // slots, so it is not started (rather than failing at every start for want of its
    // socket).
    if let Some(agent) = policy.update_agent.take() {
        policy.tasks.retain(|t| t.name != agent);
        console!("{agent} not started: a simulation has no slots to update");
    }
    let roots = limpet_sandbox::spawn::Roots {
        slot: root.join(SLOT_MOUNT),
        data: root.join(DATA_MOUNT),
        work: root.join("run/limpet/tasks"),
        cgroups: limpet_sandbox::spawn::Cgroups::NotEnforced,
    };
    console!("starting {} task(s)", policy.tasks.len());
    let mut system = crate::status::SystemStatus {
        slot: "sim".to_owned(),
        version: String::new(),
        other: None,
        state: None,
        trial: crate::status::TrialStatus::None,
        last_update: None,
        network: None,
        time: None,
        identity: None,
        roughtime: Vec::new(),
    };
    // No cgroup2 here: the network policy recognises each task by its uid.
    let network = policy.network.as_ref().and_then(|net| {
        crate::network::Network::start(
            net,
            None,
            crate::network::NetMode::Normal,
            limpet_net::Runtime::by_uid(net).tasks,
        )
        .map_err(|e| console!("network not started: {}", crate::console::chain(&e)))
        .ok()
    });
    // A simulation has no state partition: the time record is a scratch file of the run.
    let time = crate::lifecycle::open_scratch(&root.join("run/limpet/time-record"), &policy);
    let roughtime = network
        .as_ref()
        .and_then(|_| crate::roughtime::Roughtime::of(&policy, false));
    crate::runtime::run(
        root,
        &policy,
        &roots,
        crate::runtime::Parts {
            network,
            time,
            roughtime,
            ..Default::default()
        },
        &mut system,
    )?;
    console!("all tasks stopped");
    Ok(())
}
