//! The policy compiler: a validated [`Manifest`] → [`DevicePolicy`]: each task's sandbox
//! ([`sandbox`]), its seccomp program ([`seccomp`]), the network policy ([`net`]), and
//! island mode's tasks and network policy ([`island`]).
//!
//! The result is stored as JSON in the signed slot; PID 1 reads it back with
//! `limpet_policy::DevicePolicy::from_json` and applies it without interpreting the
//! manifest.
//!
//! Rules this crate keeps:
//! - Build host only. PID 1 and the update agent never link it, nor the manifest parser it
//!   reads from (`.ci/check-boundary` fails CI if one of them does): the device carries no
//!   TOML parser and no seccomp compiler.
//! - Pure: no I/O. Same manifest, same policy, byte for byte.
//! - Every error names the task (and rule, call or address) it comes from.

#![warn(missing_docs)]

pub mod island;
pub mod net;
pub mod sandbox;
pub mod seccomp;

use limpet_manifest::{Manifest, NetworkAccess};
use limpet_policy::{DevicePolicy, TrialPolicy, FORMAT};

use crate::sandbox::compile_task;
use crate::seccomp::SeccompError;

/// Errors compiling a policy.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A task's seccomp filter could not be built (the error names the task).
    #[error("compiling the seccomp filter")]
    Seccomp(#[source] SeccompError),
    /// More tasks than uids above [`limpet_policy::FIRST_TASK_ID`].
    #[error("task \"{task}\" is number {index}; no uid is left for it")]
    TooManyTasks {
        /// The first task left without a uid.
        task: String,
        /// Its position in the manifest, from 0.
        index: usize,
    },
    /// The network policy could not be compiled.
    #[error("network policy")]
    Network(#[source] net::NetError),
}

/// Compiles the policy of every task in `manifest`, and the device-wide trial and network
/// policy, into the form PID 1 applies.
///
/// Fails on the first task whose seccomp filter cannot be built, when there are more tasks
/// than uids, or when the network declarations cannot be compiled (IPv6).
pub fn compile(manifest: &Manifest) -> Result<DevicePolicy, CompileError> {
    let arch = seccomp::arch(manifest.device.target);
    // PID 1 brings the network up for a task that may use it, and to ask the Roughtime
    // servers of `[lifecycle] roughtime`.
    let asks_roughtime = manifest
        .lifecycle
        .as_ref()
        .is_some_and(|l| !l.roughtime.is_empty());
    let network = if asks_roughtime
        || manifest
            .tasks
            .iter()
            .any(|t| t.network == NetworkAccess::Allowlist)
    {
        Some(net::compile(manifest).map_err(CompileError::Network)?)
    } else {
        None
    };
    let tasks = manifest
        .tasks
        .iter()
        .enumerate()
        .map(|(index, task)| compile_task(manifest, arch, index, task))
        .collect::<Result<_, _>>()?;
    Ok(DevicePolicy {
        format: FORMAT,
        arch,
        tasks,
        trial: manifest.update.as_ref().map(|u| TrialPolicy {
            health_ms: u.health.as_millis(),
            health_timeout_ms: u.health_timeout.as_millis(),
            try_boots: u.try_boots,
        }),
        update_agent: manifest
            .tasks
            .iter()
            .find(|t| t.name.as_str() == limpet_manifest::UPDATE_AGENT_TASK)
            .map(|t| t.name.to_string()),
        remote_agent: manifest
            .tasks
            .iter()
            .find(|t| t.name.as_str() == limpet_manifest::REMOTE_AGENT_TASK)
            .map(|t| t.name.to_string()),
        owner_requesters: manifest
            .tasks
            .iter()
            .filter(|t| t.rights.contains(&limpet_manifest::Right::OwnerRequest))
            .map(|t| t.name.to_string())
            .collect(),
        remote_direct: remote_direct(manifest),
        island: island::compile(manifest, network.as_ref()),
        network,
        // The build's time is not the manifest's: `limpet build` adds it (limpet-build's
        // `lifecycle_policy`).
        lifecycle: None,
    })
}

/// `[remote] direct = true`: the access key PID 1 verifies pinholes' capabilities
/// against, the one the agent's task was written with (`--access-key`, by
/// `Manifest::with_remote_agent`); none without the agent's task.
fn remote_direct(manifest: &Manifest) -> Option<limpet_policy::RemoteDirect> {
    manifest.remote.as_ref().filter(|r| r.direct)?;
    let agent = manifest
        .tasks
        .iter()
        .find(|t| t.name.as_str() == limpet_manifest::REMOTE_AGENT_TASK)?;
    let key = agent
        .args
        .iter()
        .skip_while(|a| a.as_str() != "--access-key")
        .nth(1)?;
    Some(limpet_policy::RemoteDirect {
        access_key: key.clone(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// PID 1's trial rules for a device without `[update]` are the manifest's defaults,
    /// which the policy crate cannot read: the same numbers, written twice, kept equal here.
    #[test]
    fn default_trial_policy_is_the_manifests_default() {
        assert_eq!(
            TrialPolicy::default(),
            TrialPolicy {
                health_ms: limpet_manifest::DEFAULT_HEALTH.as_millis(),
                health_timeout_ms: limpet_manifest::DEFAULT_HEALTH_TIMEOUT.as_millis(),
                try_boots: limpet_manifest::DEFAULT_TRY_BOOTS,
            }
        );
        // The same through a manifest whose `[update]` leaves them out.
        let hello = std::fs::read_to_string(format!(
            "{}/../../examples/hello/limpet.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let text = format!(
            "{hello}\n[update]\nrepository = \"https://updates.example.invalid/d\"\n\
             keys = [{{ id = \"{}\" }}]\n",
            "2f".repeat(32)
        );
        let m = limpet_manifest::parse("limpet.toml", &text).unwrap();
        assert_eq!(compile(&m).unwrap().trial, Some(TrialPolicy::default()));
    }

    /// `[remote]`: the policy names the remote agent's task, and only that task has PID 1's
    /// remote socket mounted (the path the agent's `--signer` argument names).
    #[test]
    fn the_remote_agent_is_named_and_only_it_has_the_remote_socket() {
        assert_eq!(
            limpet_manifest::REMOTE_SIGNER_SOCKET,
            limpet_install_api::REMOTE_SOCKET
        );
        let key = "ab".repeat(32);
        let text = format!(
            "[device]\nname = \"d\"\nversion = \"1.0.0\"\ntarget = \"x86_64\"\n\n\
             [[task]]\nname = \"web\"\npackage = \"web\"\nmemory = \"8MiB\"\ncpu = \"10%\"\n\
             network = \"allowlist\"\n\n[remote]\nrelay = \"192.0.2.7:7400\"\n\
             access_key = \"{key}\"\nservices = [{{ name = \"console\", task = \"web\", port = 8080 }}]\n"
        );
        let m = limpet_manifest::parse("limpet.toml", &text).unwrap();
        assert_eq!(compile(&m).unwrap().remote_agent, None);
        let p = compile(&m.with_remote_agent(&key).unwrap()).unwrap();
        assert_eq!(
            p.remote_agent.as_deref(),
            Some(limpet_manifest::REMOTE_AGENT_TASK)
        );
        let with_socket: Vec<&str> = p
            .tasks
            .iter()
            .filter(|t| {
                t.mounts
                    .iter()
                    .any(|m| m.target == limpet_install_api::REMOTE_SOCKET)
            })
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(with_socket, [limpet_manifest::REMOTE_AGENT_TASK]);
    }
}
