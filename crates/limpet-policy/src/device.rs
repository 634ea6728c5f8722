//! The whole policy: every task's sandbox, the trial rules, the network policy; and its
//! JSON.
//!
//! Rules this module keeps:
//! - [`DevicePolicy::to_json`] is deterministic: the same policy, the same bytes.
//! - [`DevicePolicy::from_json`] refuses any format but [`FORMAT`] before it reads the rest,
//!   and any unknown field.
//! - A policy read by [`DevicePolicy::from_json`] holds one copy of each distinct seccomp
//!   program, however many tasks use it.
//! - Built without the `network` feature (PID 1 of a device whose policy has no network),
//!   [`DevicePolicy::from_json`] has no code to parse a network policy and
//!   refuses a policy that has one ([`NO_NETWORK`]).

use serde::{Deserialize, Serialize};

use crate::net::NetPolicy;
use crate::seccomp::{Arch, Bpf};
use crate::task::TaskPolicy;

/// Version of the policy format; PID 1 refuses any other.
pub const FORMAT: u32 = 1;
/// [`TrialPolicy::health_ms`] of a device without `[update]`: the manifest's default
/// `health` (`limpet-compile` tests that they agree).
pub const DEFAULT_HEALTH_MS: u64 = 60_000;
/// [`TrialPolicy::health_timeout_ms`] of a device without `[update]`: the manifest's
/// default `health_timeout`.
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 600_000;
/// [`TrialPolicy::try_boots`] of a device without `[update]`: the manifest's default
/// `try_boots`.
pub const DEFAULT_TRY_BOOTS: u32 = 3;

/// Errors reading or writing a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The stored policy is in another format.
    #[error("policy format {found} is not the supported format {FORMAT}")]
    Format {
        /// The `format` number the stored policy carries.
        found: u32,
    },
    /// The policy could not be written as JSON.
    #[error("writing the device policy as JSON")]
    WriteJson(#[source] serde_json::Error),
    /// The stored policy is not valid JSON of this shape.
    #[error("reading the device policy")]
    Json(#[source] serde_json::Error),
}

/// Every task's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePolicy {
    /// [`FORMAT`]: [`DevicePolicy::from_json`] refuses any other number before it reads the
    /// rest, so a PID 1 never applies a policy laid out for another version of itself.
    pub format: u32,
    /// The device's CPU architecture; every seccomp program is built for it.
    pub arch: Arch,
    /// One entry per task, in manifest order.
    pub tasks: Vec<TaskPolicy>,
    /// How PID 1 judges a trial slot; absent when the device has no `[update]`, and PID 1
    /// then uses [`TrialPolicy::default`].
    #[serde(default)]
    pub trial: Option<TrialPolicy>,
    /// The task that is the update agent: PID 1 opens the install socket for its uid only.
    #[serde(default)]
    pub update_agent: Option<String>,
    /// The task that is the remote agent (`[remote]`): PID 1 opens the remote agent's
    /// socket for its uid only. Left out of the JSON when absent, so a policy without
    /// `[remote]` is the bytes it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_agent: Option<String>,
    /// The tasks the manifest grants `rights = ["owner-request"]`, in manifest order: PID 1
    /// opens the owner-request socket for their uids only, and only these tasks' sandboxes
    /// have it (docs/owner-mode.md). Absent when none is granted, so a policy without it
    /// is byte-identical to one compiled before the right existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_requesters: Vec<String>,
    /// The direct path (`[remote] direct = true`): what PID 1 verifies a pinhole's
    /// capability against. Left out of the JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_direct: Option<RemoteDirect>,
    /// The network policy PID 1 installs before any interface is up, and the interfaces it
    /// brings up; absent when no task has `network = "allowlist"` (the device then has no
    /// network at all).
    #[serde(default)]
    #[cfg_attr(not(feature = "network"), serde(deserialize_with = "refuse_network"))]
    pub network: Option<NetPolicy>,
    /// When the slot was built and how long it is supported: what the device decides its
    /// time floor and its end of life from (`limpet-lifecycle`). `limpet build` always
    /// writes it; absent only in a policy compiled without a build (tests), and PID 1 then
    /// has no floor from the slot.
    #[serde(default)]
    pub lifecycle: Option<LifecyclePolicy>,
    /// What runs, and what the network allows, in island mode (manifest `[lifecycle]`);
    /// absent when the manifest has no `[lifecycle]` (the device then never goes into
    /// island mode).
    #[serde(default)]
    pub island: Option<IslandPolicy>,
}

/// Island mode, compiled (`limpet-compile`'s `island`): PID 1 switches to it, and back,
/// without reading the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IslandPolicy {
    /// The tasks that keep running, in manifest order: the manifest's `island.keep` and
    /// the update agent (so that a support extension or a handover can still arrive).
    /// Every other task is stopped and not restarted while island mode lasts.
    pub keep: Vec<String>,
    /// The network policy PID 1 installs instead of [`DevicePolicy::network`] in island
    /// mode, in one atomic replacement: no internet; the kept tasks' LAN rules only if
    /// `lan = true`; the update agent's rule to its repository. Absent when the device
    /// has no network.
    #[serde(default)]
    #[cfg_attr(not(feature = "network"), serde(deserialize_with = "refuse_network"))]
    pub network: Option<NetPolicy>,
}

impl IslandPolicy {
    /// Whether task `name` keeps running in island mode.
    pub fn keeps(&self, name: &str) -> bool {
        self.keep.iter().any(|k| k == name)
    }
}

/// The slot's time and support window (manifest `[lifecycle]`, and the build's
/// `SOURCE_DATE_EPOCH`). Signed with the slot, like every field of the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecyclePolicy {
    /// The build time (`SOURCE_DATE_EPOCH`), seconds since 1970-01-01T00:00:00Z: the
    /// device's time floor never goes below it.
    pub built: u64,
    /// The end of support: the first second after the manifest's `support_until` day
    /// (00:00 UTC of the next day), seconds since the epoch; absent when the manifest has no
    /// `[lifecycle]`. Signed extensions in the repository may move it later, never earlier.
    #[serde(default)]
    pub support_until: Option<u64>,
    /// Manifest `freshness`, in seconds of uptime without fresh signed metadata.
    #[serde(default)]
    pub freshness_secs: Option<u64>,
    /// Manifest `roughtime`: the servers PID 1 asks for a signed time that raises the
    /// device's earliest time (never the floor that refuses signed metadata). Their
    /// addresses are also in the network policy's `roughtime`, which lets PID 1's queries out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roughtime: Vec<RoughtimeServer>,
}

/// A Roughtime server PID 1 asks (manifest `[lifecycle] roughtime`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoughtimeServer {
    /// Its name, for the console and the status file.
    pub name: String,
    /// Where the queries go (UDP).
    pub address: std::net::SocketAddrV4,
    /// Its long-term Ed25519 public key, base64 of the 32 bytes.
    pub key: String,
}

/// Why a PID 1 built without its `network` feature refuses a policy
/// that has one; `limpet build` never pairs the two.
pub const NO_NETWORK: &str =
    "a network policy, and this PID 1 was built without its `network` feature";

/// The `network` field where the network is left out: `null` (or, by `default`, no field)
/// is no network; anything else is skipped unparsed and refused with [`NO_NETWORK`].
#[cfg(not(feature = "network"))]
fn refuse_network<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NetPolicy>, D::Error> {
    match Option::<serde::de::IgnoredAny>::deserialize(d)? {
        None => Ok(None),
        Some(_) => Err(serde::de::Error::custom(NO_NETWORK)),
    }
}

/// When a trial slot is committed or rolled back (manifest `[update]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialPolicy {
    /// Every task up this long without a failure commits the trial.
    pub health_ms: u64,
    /// A trial not healthy this long after PID 1 started its tasks rolls back.
    pub health_timeout_ms: u64,
    /// How many boots a trial may take (manifest `try_boots`, whose name this field and
    /// policy.json keep).
    pub try_boots: u32,
}

impl Default for TrialPolicy {
    fn default() -> Self {
        TrialPolicy {
            health_ms: DEFAULT_HEALTH_MS,
            health_timeout_ms: DEFAULT_HEALTH_TIMEOUT_MS,
            try_boots: DEFAULT_TRY_BOOTS,
        }
    }
}

impl DevicePolicy {
    /// The JSON stored in the image: pretty-printed, fields in declaration order, one final
    /// newline, so the same policy gives the same bytes. Fails only if serde_json does.
    pub fn to_json(&self) -> Result<Vec<u8>, PolicyError> {
        let mut out = serde_json::to_vec_pretty(self).map_err(PolicyError::WriteJson)?;
        out.push(b'\n');
        Ok(out)
    }

    /// Reads a stored policy. Fails with [`PolicyError::Format`] when its `format` is not
    /// [`FORMAT`] (checked before the rest is parsed), and with [`PolicyError::Json`] when it
    /// is not JSON of this shape.
    pub fn from_json(bytes: &[u8]) -> Result<DevicePolicy, PolicyError> {
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let head: Head = serde_json::from_slice(bytes).map_err(PolicyError::Json)?;
        if head.format != FORMAT {
            return Err(PolicyError::Format { found: head.format });
        }
        let mut policy: DevicePolicy = serde_json::from_slice(bytes).map_err(PolicyError::Json)?;
        policy.share_equal_programs();
        Ok(policy)
    }

    /// Tasks with equal seccomp programs share one copy: PID 1 keeps the policy for its
    /// whole life, and a program is about 5 KiB (the `minimal` profile), the same for every
    /// task of a profile.
    fn share_equal_programs(&mut self) {
        let mut distinct: Vec<Bpf> = Vec::new();
        for task in &mut self.tasks {
            let program = &mut task.seccomp.program;
            match distinct.iter().find(|seen| *seen == program) {
                Some(seen) => *program = seen.clone(),
                None => distinct.push(program.clone()),
            }
        }
    }
}

/// The direct path's policy: PID 1 opens a pinhole in the remote agent's set only for a
/// capability this access key signed (limpet-install's `PinholeGate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteDirect {
    /// The access key pinned in the image, 64 hex digits (the agent's `--access-key`).
    pub access_key: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_format_is_checked_before_the_rest() {
        // Another format is refused as such, whatever else the document holds.
        assert!(matches!(
            DevicePolicy::from_json(br#"{"format": 2, "tasks": "not a list"}"#),
            Err(PolicyError::Format { found: 2 })
        ));
        assert!(matches!(
            DevicePolicy::from_json(b"{\"format\": 1}"),
            Err(PolicyError::Json(_))
        ));
        assert!(matches!(
            DevicePolicy::from_json(b"not json"),
            Err(PolicyError::Json(_))
        ));
    }

    /// A stored task whose seccomp program is `program` (hex).
    fn task(name: &str, program: &str) -> serde_json::Value {
        let started = serde_json::json!({ "kind": "started" });
        limpet_testkit::policy::task_json(name, program, started, "always")
    }

    #[test]
    fn tasks_with_equal_programs_share_one_copy() {
        let allow = "060000000000ff7f";
        let kill = "0600000000000000";
        let json = serde_json::json!({
            "format": FORMAT,
            "arch": "x86_64",
            "tasks": [task("a", allow), task("b", kill), task("c", allow), task("d", kill)],
        });
        let policy = DevicePolicy::from_json(json.to_string().as_bytes()).unwrap();
        let programs: Vec<&Bpf> = policy.tasks.iter().map(|t| &t.seccomp.program).collect();
        assert!(programs[0].shares_bytes_with(programs[2]));
        assert!(programs[1].shares_bytes_with(programs[3]));
        assert!(!programs[0].shares_bytes_with(programs[1]));
        // Sharing changes no program.
        assert_eq!(programs[0].as_bytes(), [6, 0, 0, 0, 0, 0, 0xff, 0x7f]);
        assert_eq!(programs[1].as_bytes(), [6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            policy
                .tasks
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
    }

    #[test]
    fn empty_policy_round_trips_as_pretty_json() {
        let policy = DevicePolicy {
            format: FORMAT,
            arch: Arch::Aarch64,
            tasks: Vec::new(),
            trial: None,
            update_agent: None,
            remote_agent: None,
            owner_requesters: Vec::new(),
            remote_direct: None,
            network: None,
            lifecycle: None,
            island: None,
        };
        let json = policy.to_json().unwrap();
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            "{\n  \"format\": 1,\n  \"arch\": \"aarch64\",\n  \"tasks\": [],\n  \
             \"trial\": null,\n  \"update_agent\": null,\n  \"network\": null,\n  \
             \"lifecycle\": null,\n  \"island\": null\n}\n"
        );
        assert_eq!(DevicePolicy::from_json(&json).unwrap(), policy);
        let with_lifecycle = DevicePolicy {
            lifecycle: Some(LifecyclePolicy {
                built: 1_700_000_000,
                support_until: Some(1_956_614_400),
                freshness_secs: None,
                roughtime: Vec::new(),
            }),
            ..policy
        };
        let json = with_lifecycle.to_json().unwrap();
        assert!(String::from_utf8(json.clone()).unwrap().contains(
            "\"lifecycle\": {\n    \"built\": 1700000000,\n    \"support_until\": 1956614400,\n    \"freshness_secs\": null\n  }"
        ));
        assert_eq!(DevicePolicy::from_json(&json).unwrap(), with_lifecycle);
    }
}
