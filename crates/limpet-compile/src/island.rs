//! Island mode compiled: which tasks keep running and the network policy PID 1 installs
//! instead of the normal one ([`IslandPolicy`]), from the manifest's `[lifecycle] island`
//! and the normal [`NetPolicy`].
//!
//! Rules this module keeps:
//! - Pure: no I/O. Same manifest, same policy.
//! - Kept: the tasks of `island.keep` and the update agent, in manifest order. Every other
//!   task stops.
//! - The island network policy only ever narrows the normal one, rule by rule:
//!   - the update agent keeps its rules unchanged: its one egress rule is the declared
//!     repository's host and port (limpet-manifest's `agent`), the only connection beyond
//!     the LAN left in island mode, so a support extension or a handover can still arrive;
//!   - a kept task with `lan = true` keeps its egress rules, each narrowed to the LAN
//!     ([`Reach::LanOnly`]: the destination's addresses in `lan4`), and its listen rules,
//!     each narrowed to scope `lan`;
//!   - a kept task with `lan = false` (the default) keeps its chain with no rule but the
//!     final counted drop: no egress, no listener, no DNS;
//!   - a task that stops has no chain (its packets, if any, meet the output chain's drop).
//! - The DNS names left are those a remaining rule uses, each with the set it has in the
//!   normal policy (the stub answers no other name). DHCP, the egress cap and PID 1's
//!   upstream DNS stay as they are: the agent needs an address and its repository's name.

use limpet_manifest::{IslandLan, Manifest, UPDATE_AGENT_TASK};
use limpet_policy::net::{Destination, DnsAccess, ListenScope, NetPolicy, Reach, TaskNet};
use limpet_policy::IslandPolicy;

/// The island policy of `manifest`, whose normal network policy is `network`; `None`
/// when the manifest has no `[lifecycle]`.
pub fn compile(manifest: &Manifest, network: Option<&NetPolicy>) -> Option<IslandPolicy> {
    let island = &manifest.lifecycle.as_ref()?.island;
    let keep: Vec<String> = manifest
        .tasks
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| {
            *name == UPDATE_AGENT_TASK || island.keep.iter().any(|k| k.as_str() == *name)
        })
        .map(str::to_owned)
        .collect();
    let network = network.map(|normal| island_network(normal, &keep, island.lan));
    Some(IslandPolicy { keep, network })
}

/// The normal policy narrowed for island mode (the rules in the module doc).
fn island_network(normal: &NetPolicy, keep: &[String], lan: IslandLan) -> NetPolicy {
    let tasks: Vec<TaskNet> = normal
        .tasks
        .iter()
        .filter(|t| keep.contains(&t.name))
        .map(|t| {
            if t.name == UPDATE_AGENT_TASK {
                return t.clone();
            }
            match lan {
                IslandLan::Allowed => lan_only(t),
                IslandLan::Blocked => TaskNet {
                    dns: DnsAccess::None,
                    egress: Vec::new(),
                    listen: Vec::new(),
                    pinholes: false,
                    ..t.clone()
                },
            }
        })
        .collect();
    let names = normal
        .names
        .iter()
        .filter(|n| {
            tasks
                .iter()
                .flat_map(|t| &t.egress)
                .any(|e| matches!(&e.to, Destination::Name { set, .. } if *set == n.set))
        })
        .cloned()
        .collect();
    NetPolicy {
        tasks,
        names,
        ..normal.clone()
    }
}

/// A kept task's rules with `lan = true`: every egress rule narrowed to the LAN, every
/// listener to scope `lan`.
fn lan_only(t: &TaskNet) -> TaskNet {
    let mut t = t.clone();
    for e in &mut t.egress {
        e.reach = Reach::LanOnly;
    }
    for l in &mut t.listen {
        l.from = ListenScope::Lan;
    }
    // A pinhole leads to a peer off the LAN: none in island mode.
    t.pinholes = false;
    t
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const NETWORK: &str = include_str!("../tests/fixtures/network.toml");

    /// The test device with `[update]` (so the update agent is a task) and `[lifecycle]`
    /// keeping `sensor`, its LAN access `lan`.
    fn manifest(lan: bool) -> Manifest {
        let text = format!(
            "{NETWORK}\n[update]\nrepository = \"http://updates.example.com:8080/thermostat\"\n\
             keys = [{{ id = \"{}\" }}]\n\n[lifecycle]\nsupport_until = \"2030-01-01\"\n\
             island = {{ keep = [\"sensor\"], lan = {lan} }}\n",
            "2f".repeat(32)
        );
        limpet_manifest::parse("limpet.toml", &text)
            .unwrap()
            .with_update_agent()
            .unwrap()
    }

    fn island(lan: bool) -> IslandPolicy {
        let m = manifest(lan);
        let normal = crate::compile(&m).unwrap();
        assert_eq!(normal.island, compile(&m, normal.network.as_ref()));
        normal.island.unwrap()
    }

    #[test]
    fn the_kept_tasks_and_the_update_agent_keep_running() {
        let p = island(false);
        assert_eq!(p.keep, ["sensor", UPDATE_AGENT_TASK]);
        assert!(p.keeps("sensor") && p.keeps(UPDATE_AGENT_TASK));
        assert!(!p.keeps("quiet") && !p.keeps("web"));
    }

    #[test]
    fn without_lan_only_the_update_check_leaves_the_device() {
        let m = manifest(false);
        let normal = crate::compile(&m).unwrap().network.unwrap();
        let net = island(false).network.unwrap();
        let names: Vec<&str> = net.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["sensor", UPDATE_AGENT_TASK], "web has no chain");
        let sensor = &net.tasks[0];
        assert!(sensor.egress.is_empty() && sensor.listen.is_empty());
        assert_eq!(sensor.dns, DnsAccess::None);
        // The agent's rules are the normal ones: its repository, nothing else.
        let agent = normal
            .tasks
            .iter()
            .find(|t| t.name == UPDATE_AGENT_TASK)
            .unwrap();
        assert_eq!(&net.tasks[1], agent);
        assert_eq!(agent.egress.len(), 1);
        assert_eq!(
            agent.egress[0].to,
            Destination::Name {
                name: "updates.example.com".into(),
                set: net.set_of_name("updates.example.com").unwrap().into()
            }
        );
        // Only the repository's name is still resolved, in the set it always had.
        assert_eq!(net.names.len(), 1);
        assert_eq!(
            net.set_of_name("updates.example.com"),
            normal.set_of_name("updates.example.com")
        );
        // DHCP, the cap and the upstream DNS are the normal policy's.
        assert_eq!(
            (net.addressing, net.egress_cap, &net.dns_upstream),
            (normal.addressing, normal.egress_cap, &normal.dns_upstream)
        );
    }

    #[test]
    fn with_lan_a_kept_task_keeps_its_rules_narrowed_to_the_lan() {
        let m = manifest(true);
        let normal = crate::compile(&m).unwrap().network.unwrap();
        let net = island(true).network.unwrap();
        let sensor = &net.tasks[0];
        let before = &normal.tasks[0];
        assert_eq!(sensor.egress.len(), before.egress.len());
        for (island, normal) in sensor.egress.iter().zip(&before.egress) {
            assert_eq!(island.reach, Reach::LanOnly);
            assert_eq!(normal.reach, Reach::Declared);
            assert_eq!((&island.to, &island.ports), (&normal.to, &normal.ports));
        }
        assert_eq!(sensor.listen.len(), before.listen.len());
        assert!(sensor.listen.iter().all(|l| l.from == ListenScope::Lan));
        assert_eq!(sensor.dns, before.dns);
        // The agent is not narrowed: it must reach its repository beyond the LAN.
        let agent = net
            .tasks
            .iter()
            .find(|t| t.name == UPDATE_AGENT_TASK)
            .unwrap();
        assert!(agent.egress.iter().all(|e| e.reach == Reach::Declared));
        assert!(net.set_of_name("api.example.com").is_some());
        assert!(
            net.set_of_name("a.example.net").is_none(),
            "only web used it"
        );
    }

    #[test]
    fn no_lifecycle_no_island_mode() {
        let m = limpet_manifest::parse("limpet.toml", NETWORK).unwrap();
        assert_eq!(crate::compile(&m).unwrap().island, None);
    }
}
