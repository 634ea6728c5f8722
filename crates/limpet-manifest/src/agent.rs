//! The update agent's task, which a device with `[update]` runs without declaring it.
//!
//! [`Manifest::with_update_agent`] returns the manifest the device runs: the vendor's tasks
//! and, last, the agent, declared through the same checks as any task (the canonical
//! manifest plus the agent's `[[task]]`, parsed again), so its sandbox, budgets and egress
//! are compiled exactly like the vendor's: its only egress is the repository's host and
//! port over TCP (and the fleet server's, when `[update] fleet` names one), it reads the
//! trusted root metadata from the slot, and it writes only its own data directory.

use crate::diag::{Diagnostic, Diagnostics};
use crate::task::net::{NetworkAccess, Proto};
use crate::task::supervision::RestartPolicy;
use crate::task::SyscallProfile;
use crate::update::Update;
use crate::Manifest;

/// The agent's task name; no vendor task may use it.
pub const UPDATE_AGENT_TASK: &str = "limpet-update";
/// The cargo package (in Limpet's own workspace) that builds the agent.
pub const UPDATE_AGENT_PACKAGE: &str = "limpet-agent";
/// The repository's trusted root metadata, at the top of the slot.
pub const UPDATE_ROOT_FILE: &str = "update-root.json";

/// The agent's budgets: a TUF client, a chunk index and a 1 MiB verification buffer.
const AGENT_MEMORY: &str = "32MiB";
const AGENT_CPU: &str = "20%";
const AGENT_PIDS: u32 = 8;

impl Manifest {
    /// The manifest with the update agent's task appended, when there is an `[update]`;
    /// the manifest as it is otherwise.
    pub fn with_update_agent(&self) -> Result<Manifest, Diagnostics> {
        let Some(update) = &self.update else {
            return Ok(self.clone());
        };
        if self
            .tasks
            .iter()
            .any(|t| t.name.as_str() == UPDATE_AGENT_TASK)
        {
            return Err(Diagnostics(vec![Diagnostic {
                file: "[[task]]".to_owned(),
                line: 0,
                column: 0,
                message: format!("task name {UPDATE_AGENT_TASK:?} is reserved"),
                expected: Some("another name".to_owned()),
                hint: Some(
                    "a device with [update] runs Limpet's update agent under that name".to_owned(),
                ),
            }]));
        }
        let text = format!("{}\n{}", self.to_canonical_toml(), agent_toml(self, update));
        crate::parse("<manifest with the update agent>", &text)
    }
}

fn agent_toml(m: &Manifest, u: &Update) -> String {
    let root = format!("/slot/{UPDATE_ROOT_FILE}");
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let args = [
        "--repository",
        u.repository.as_str(),
        "--device",
        m.device.name.as_str(),
        "--root",
        &root,
        "--state",
        &format!("/data/{UPDATE_AGENT_TASK}"),
        "--poll",
        &u.poll.to_string(),
    ]
    .iter()
    .copied()
    .chain(
        u.reboot_window
            .as_deref()
            .map(|w| ["--reboot-window", w])
            .into_iter()
            .flatten(),
    )
    .chain(
        u.fleet
            .as_ref()
            .map(|f| ["--fleet", f.as_str()])
            .into_iter()
            .flatten(),
    )
    .map(&q)
    .collect::<Vec<_>>()
    .join(", ");
    // The fleet server's check-ins (limpet-agent's fleet module): one more host and port,
    // unless it is the repository's.
    let fleet_egress = u
        .fleet
        .as_ref()
        .filter(|f| (f.host(), f.port()) != (u.repository.host(), u.repository.port()))
        .map_or_else(String::new, |f| {
            format!(
                "\n[[task.egress]]\nhost = {}\nports = [{}]\nproto = {}\n",
                q(f.host()),
                f.port(),
                q(Proto::Tcp.as_str())
            )
        });
    format!(
        "[[task]]\nname = {name}\npackage = {package}\nbinary = {package}\nargs = [{args}]\n\
         memory = {memory}\ncpu = {cpu}\npids = {AGENT_PIDS}\nrestart = {restart}\n\
         syscalls = {syscalls}\nnetwork = {network}\nfiles = {{ read = [{root}] }}\n\n\
         [[task.egress]]\nhost = {host}\nports = [{port}]\nproto = {proto}\n{fleet_egress}",
        name = q(UPDATE_AGENT_TASK),
        package = q(UPDATE_AGENT_PACKAGE),
        memory = q(AGENT_MEMORY),
        cpu = q(AGENT_CPU),
        restart = q(RestartPolicy::Always.as_str()),
        syscalls = q(SyscallProfile::Network.as_str()),
        network = q(NetworkAccess::Allowlist.as_str()),
        proto = q(Proto::Tcp.as_str()),
        root = q(&root),
        host = q(u.repository.host()),
        port = u.repository.port(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
[device]
name = "thermostat"
version = "1.4.0"
target = "x86_64"

[[task]]
name = "sensor"
package = "thermostat-sensor"
memory = "8MiB"
cpu = "10%"

[update]
repository = "http://10.0.2.100:8080/thermostat"
keys = [{ id = "2f8e4f1b5d3a6c7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6" }]
poll = "1h"
"#;

    #[test]
    fn the_agent_is_a_task_limited_to_the_repository() {
        let m = crate::parse("t.toml", MANIFEST).unwrap();
        let with = m.with_update_agent().unwrap();
        assert_eq!(with.tasks.len(), 2);
        let agent = &with.tasks[1];
        assert_eq!(agent.name.as_str(), UPDATE_AGENT_TASK);
        assert_eq!(agent.package, UPDATE_AGENT_PACKAGE);
        assert_eq!(agent.network, crate::NetworkAccess::Allowlist);
        assert_eq!(agent.egress.len(), 1);
        assert_eq!(agent.egress[0].host.to_string(), "10.0.2.100");
        assert_eq!(agent.egress[0].ports[0].to_string(), "8080");
        assert!(agent.listen.is_empty());
        assert!(agent
            .args
            .contains(&"http://10.0.2.100:8080/thermostat".to_owned()));
        assert!(agent.args.contains(&"1h".to_owned()));
        assert!(!agent.args.contains(&"--reboot-window".to_owned()));
        let windowed = crate::parse(
            "t.toml",
            &format!("{MANIFEST}reboot_window = \"03:00-05:00\"\n"),
        )
        .unwrap()
        .with_update_agent()
        .unwrap();
        let args = &windowed.tasks[1].args;
        assert_eq!(args[args.len() - 2..], ["--reboot-window", "03:00-05:00"]);
        assert_eq!(agent.files.read[0].as_str(), "/slot/update-root.json");
        assert!(!agent.args.contains(&"--fleet".to_owned()));
        // A fleet server: its URL on the command line and its host and port, nothing more,
        // in the egress; on the repository's host and port, no second entry.
        for (fleet, egress) in [
            ("http://10.0.2.101:8090", 2),
            ("http://10.0.2.100:8080/fleet", 1),
        ] {
            let with_fleet = crate::parse("t.toml", &format!("{MANIFEST}fleet = \"{fleet}\"\n"))
                .unwrap()
                .with_update_agent()
                .unwrap();
            let agent = &with_fleet.tasks[1];
            assert_eq!(agent.args[agent.args.len() - 2..], ["--fleet", fleet]);
            assert_eq!(agent.egress.len(), egress, "{fleet}");
            let last = agent.egress.last().unwrap();
            let url: crate::RepositoryUrl = fleet.parse().unwrap();
            assert_eq!(last.host.to_string(), url.host());
            assert_eq!(last.ports[0].to_string(), url.port().to_string());
        }
        // https:// and credentials are refused where they are written.
        for bad in [
            "https://10.0.2.101",
            "http://ops:pw@10.0.2.101",
            "10.0.2.101",
        ] {
            let e = crate::parse("t.toml", &format!("{MANIFEST}fleet = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("t.toml:"), "{bad}: {e}");
        }
        // Without [update], nothing is added.
        let without = MANIFEST.split("[update]").next().unwrap();
        let plain = crate::parse("t.toml", without).unwrap();
        assert_eq!(plain.with_update_agent().unwrap().tasks.len(), 1);
    }

    #[test]
    fn a_vendor_task_cannot_take_the_agents_name() {
        let m = crate::parse(
            "t.toml",
            &MANIFEST.replace("name = \"sensor\"", "name = \"limpet-update\""),
        )
        .unwrap();
        let e = m.with_update_agent().unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
    }

    #[test]
    fn repository_host_and_port() {
        for (url, host, port) in [
            ("http://10.0.2.100/r", "10.0.2.100", 80),
            ("https://updates.example.com/x", "updates.example.com", 443),
            (
                "http://updates.example.com:8080",
                "updates.example.com",
                8080,
            ),
        ] {
            let u: crate::RepositoryUrl = url.parse().unwrap();
            assert_eq!((u.host(), u.port()), (host, port), "{url}");
        }
    }
}
