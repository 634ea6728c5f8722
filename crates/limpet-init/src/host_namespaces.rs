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

use std::path::Path;

use rustix::mount::MountFlags;

use crate::{console, sys, DATA_MOUNT, SLOT_MOUNT};

/// The marker file that selects simulation.
pub const MARKER: &str = "etc/limpet/sim";

/// Whether this PID 1 runs as a simulation.
pub fn requested(root: &Path) -> bool {
    root.join(MARKER).is_file()
}

/// Mounts what the runtime needs and runs the tasks until a shutdown request.
pub fn run(root: &Path) -> Result<(), String> {
    console::line("limpet-init: SIMULATION on the build host: no disk, no dm-verity, no hardening sysctls, cgroup budgets not enforced");
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    for (fstype, target) in [("proc", "proc"), ("tmpfs", "run"), ("tmpfs", "dev")] {
        sys::mount_pseudo(fstype, &root.join(target), flags)
            .map_err(|e| format!("cannot mount /{target}: {e}"))?;
    }
    sys::make_null_device(&root.join("dev/null"))
        .map_err(|e| format!("cannot make /dev/null: {e}"))?;
    sys::bind_self(
        &root.join(SLOT_MOUNT),
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
    )
    .map_err(|e| format!("cannot bind /{SLOT_MOUNT} read-only: {e}"))?;
    sys::bind_self(&root.join(DATA_MOUNT), flags)
        .map_err(|e| format!("cannot bind /{DATA_MOUNT}: {e}"))?;
    let mut policy = crate::load_policy(root)?;
    // The update agent installs into the other slot through PID 1: a simulation has no
    // slots, so it is not started (rather than failing at every start for want of its
    // socket).
    if let Some(agent) = policy.update_agent.take() {
        policy.tasks.retain(|t| t.name != agent);
        console::line(&format!(
            "limpet-init: {agent} not started: a simulation has no slots to update"
        ));
    }
    let roots = limpet_sandbox::spawn::Roots {
        slot: root.join(SLOT_MOUNT),
        data: root.join(DATA_MOUNT),
        work: root.join("run/limpet/tasks"),
        cgroups: limpet_sandbox::spawn::Cgroups::NotEnforced,
    };
    console::line(&format!(
        "limpet-init: starting {} task(s)",
        policy.tasks.len()
    ));
    let mut system = crate::status::SystemStatus {
        slot: "sim".to_owned(),
        version: String::new(),
        other: None,
        state: None,
        trial: crate::status::TrialStatus::None,
        last_update: None,
        network: None,
    };
    // No cgroup2 here: the network policy recognises each task by its uid.
    let network = policy.network.as_ref().and_then(|net| {
        crate::network::Network::start(net, limpet_net::Runtime::by_uid(net).tasks)
            .map_err(|e| console::line(&format!("limpet-init: network not started: {e}")))
            .ok()
    });
    crate::runtime::run(root, &policy, &roots, None, None, network, &mut system)?;
    console::line("limpet-init: all tasks stopped");
    Ok(())
}
