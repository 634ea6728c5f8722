//! One poll: status → TUF refresh → choose → the delta from the running version if the
//! repository has one (begin → apply → check) or else: fetch the index → plan against the
//! running slot → begin → assemble; then finish → reboot (as the policy allows).
//!
//! Rules kept here:
//! - Nothing is fetched while the device is busy: a trial under the health gate or a staged
//!   trial ends the poll before the repository is asked (a staged trial only gets its reboot
//!   re-asked).
//! - A delta is used only when its signed custom describes exactly the chosen slot and it is
//!   at most [`MAX_DELTA`](limpet_repo::target::MAX_DELTA) bytes; its result is checked
//!   against the signed length and SHA-256 before `Finish`. A failed delta falls back to the
//!   chunks, which make the same slot.
//! - The chunk index is a TUF target (length- and hash-checked before it is parsed) and must
//!   describe the same length and payload hash as the signed custom fields.
//! - A stored TUF root that no longer verifies is provisioned again from the image; the
//!   trusted time floor is never reset.
//! - An owner's request is asked of the repository only when its metadata failed to verify
//!   under the vendor's root on a device not handed over (crate::owner): a device its vendor
//!   serves makes no extra request.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use limpet_chunk::{ChunkId, Index};
use limpet_install_api::DeviceStatus;
use limpet_repo::{RoughtimeList, SupportStatement};
use limpet_tuf::metadata::Role;
use limpet_tuf::{Client, Clock, RetrievalPolicy, SystemClock, UnixTime};

use crate::error::AgentError;
use crate::fleet::gate::Gate;
use crate::fleet::http::FleetUrl;
use crate::fleet::report::Attempt;
use crate::fleet::{self, CheckedIn, FleetFiles};
use crate::net::{read_all, Remote};
use crate::owner::Taken;
use crate::pid1::{InactiveSlot, Pid1, RunningSlot};
use crate::select::{choose, Candidate};
use limpet_fleet_api::report::Outcome;
use limpet_fleet_api::waves::WavesField;

/// Subdirectory of the state directory holding the TUF metadata (`root.json`,
/// `timestamp.json`, `snapshot.json`, `targets.json`, `trusted-time-floor`).
pub const METADATA_DIR: &str = "tuf";

/// When to ask PID 1 to reboot into a staged trial.
///
/// The manifest's `[update] reboot_window`. A trial staged outside the window is not lost:
/// every later poll sees it pending ([`Busy::TryStaged`]) and asks for the reboot once the
/// policy allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RebootPolicy {
    /// As soon as a trial is staged.
    #[default]
    Immediately,
    /// Only between two times of day, UTC, in minutes after midnight; `end` before
    /// `start` wraps past midnight (`23:00-01:00`). The device's clock decides: a device
    /// whose clock is wrong reboots at the wrong hour, and the trial is still health-gated.
    Window {
        /// First minute of the window (inclusive), 0..1440.
        start: u16,
        /// Minute the window closes (exclusive), 0..1440 ([`RebootPolicy::window`] never
        /// makes it equal to `start`).
        end: u16,
    },
}

impl RebootPolicy {
    /// Parses `HH:MM-HH:MM` (UTC).
    pub fn window(text: &str) -> Option<RebootPolicy> {
        let (a, b) = text.split_once('-')?;
        let minutes = |t: &str| -> Option<u16> {
            let (h, m) = t.split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && t.len() == 5).then_some(h * 60 + m)
        };
        let (start, end) = (minutes(a)?, minutes(b)?);
        (start != end).then_some(RebootPolicy::Window { start, end })
    }

    /// Whether a staged trial may be rebooted into now.
    pub fn reboot_now(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.allows(now)
    }

    /// Whether a reboot is allowed at `unix_secs`.
    pub fn allows(&self, unix_secs: u64) -> bool {
        match *self {
            RebootPolicy::Immediately => true,
            RebootPolicy::Window { start, end } => {
                let minute = u16::try_from(unix_secs % 86_400 / 60).unwrap_or(0);
                if start < end {
                    (start..end).contains(&minute)
                } else {
                    minute >= start || minute < end
                }
            }
        }
    }
}

#[cfg(test)]
mod reboot_tests {
    use super::RebootPolicy;

    #[test]
    fn windows_parse_and_wrap_past_midnight() {
        let w = RebootPolicy::window("03:00-05:30").unwrap();
        assert_eq!(
            w,
            RebootPolicy::Window {
                start: 180,
                end: 330
            }
        );
        let midnight = 19_675 * 86_400; // 2023-11-14 00:00 UTC
        let at = |h: u64, m: u64| midnight + h * 3600 + m * 60;
        assert!(!w.allows(at(2, 59)));
        assert!(w.allows(at(3, 0)));
        assert!(w.allows(at(5, 29)));
        assert!(!w.allows(at(5, 30)));
        let night = RebootPolicy::window("23:00-01:00").unwrap();
        assert!(night.allows(at(23, 30)) && night.allows(at(0, 59)));
        assert!(!night.allows(at(1, 0)) && !night.allows(at(12, 0)));
        for bad in [
            "3:00-05:00",
            "03:00",
            "24:00-01:00",
            "03:60-04:00",
            "03:00-03:00",
            "a",
        ] {
            assert_eq!(RebootPolicy::window(bad), None, "{bad}");
        }
        assert!(RebootPolicy::Immediately.allows(0));
    }
}

/// Where the agent finds its repository, trusted root, state and PID 1, and how it
/// downloads and reboots: the task's command line, parsed.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Repository base URL: `http://host[:port][/path]` (or `file://` for development);
    /// `metadata/`, `targets/` and `chunks/` are below it.
    pub repository: String,
    /// Device model: only `DEVICE/*/slot.cidx` targets are considered.
    pub device: String,
    /// CPU target the slots must be built for (`x86_64`, `aarch64`).
    pub cpu: String,
    /// The trusted root shipped in the image: copied into the metadata directory on first run.
    pub root: PathBuf,
    /// Writable state (on the data partition): the TUF metadata lives in `STATE/tuf/`.
    pub state_dir: PathBuf,
    /// PID 1's install socket.
    pub socket: PathBuf,
    /// Bounds on slow or stalled downloads.
    pub retrieval: RetrievalPolicy,
    /// When to reboot into a staged trial.
    pub reboot: RebootPolicy,
    /// The fleet server to check in with (`http://host[:port][/path]`); `None`: none.
    pub fleet: Option<String>,
}

impl AgentConfig {
    /// A configuration with the defaults: this CPU, [`limpet_install_api::INSTALL_SOCKET`], the
    /// default retrieval policy, reboot immediately.
    pub fn new(repository: &str, device: &str, root: &Path, state_dir: &Path) -> Self {
        AgentConfig {
            repository: repository.to_owned(),
            device: device.to_owned(),
            cpu: std::env::consts::ARCH.to_owned(),
            root: root.to_owned(),
            state_dir: state_dir.to_owned(),
            socket: PathBuf::from(limpet_install_api::INSTALL_SOCKET),
            retrieval: RetrievalPolicy::default(),
            reboot: RebootPolicy::default(),
            fleet: None,
        }
    }
}

/// Why nothing was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    /// The running boot is itself a trial under the health gate: no update until it is
    /// committed or rolled back.
    OnTrial {
        /// The version under the health gate.
        version: String,
    },
    /// A trial is staged and waits for a reboot.
    TrialStaged {
        /// The staged version.
        version: String,
        /// Whether this poll asked PID 1 for the reboot (the policy allowed it).
        reboot_requested: bool,
    },
}

/// What a poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// Nothing newer that this device may install.
    UpToDate {
        /// The running version.
        running: String,
        /// Body bytes fetched from the repository.
        bytes_fetched: u64,
        /// HTTP requests made (each one round trip).
        round_trips: u64,
    },
    /// An install or a trial is in progress; the repository was not asked.
    Busy(Busy),
    /// A newer version is listed, and its rollout says not yet: the device's wave has not
    /// started, or a valid hold of the fleet server applies.
    Waiting {
        /// The version listed.
        version: String,
        /// Why it waits.
        gate: Gate,
    },
    /// A new version was written, verified by PID 1 and marked as a trial.
    Staged {
        /// The version now staged for a trial.
        version: String,
        /// Boots the trial gets.
        boots: u8,
        /// Body bytes fetched: metadata, index and chunks.
        bytes_fetched: u64,
        /// HTTP requests made.
        round_trips: u64,
        /// The version the delta that made it started from; `None` when chunks did.
        delta_from: Option<String>,
        /// Chunks downloaded.
        chunks_fetched: usize,
        /// Chunks copied from the running slot.
        chunks_reused: usize,
        /// Bytes copied from the running slot.
        bytes_reused: u64,
        /// Bytes of the new slot.
        slot_length: u64,
        /// Whether the reboot was asked for (the policy allowed it).
        reboot_requested: bool,
    },
}

impl fmt::Display for PollOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reboot = |asked: bool| {
            if asked {
                "reboot requested"
            } else {
                "reboot deferred by policy"
            }
        };
        match self {
            PollOutcome::UpToDate {
                running,
                bytes_fetched,
                round_trips,
            } => write!(
                f,
                "up to date at {running} ({bytes_fetched} bytes in {round_trips} requests)"
            ),
            PollOutcome::Busy(Busy::OnTrial { version }) => {
                write!(
                    f,
                    "busy: {version} is a trial under its health gate, not checking"
                )
            }
            PollOutcome::Busy(Busy::TrialStaged {
                version,
                reboot_requested,
            }) => write!(
                f,
                "busy: {version} is staged as a trial, {}",
                reboot(*reboot_requested)
            ),
            PollOutcome::Waiting {
                version,
                gate: Gate::Wave { wave, start },
            } => write!(
                f,
                "waiting: {version} is listed, this device is in wave {wave}, which starts at {start}"
            ),
            PollOutcome::Waiting {
                version,
                gate: Gate::Held { until, reason },
            } => write!(
                f,
                "held: {version} is held by the fleet server until {until}: {reason}"
            ),
            PollOutcome::Waiting { version, .. } => write!(f, "waiting: {version}"),
            PollOutcome::Staged {
                version,
                boots,
                bytes_fetched,
                round_trips,
                delta_from,
                chunks_fetched,
                chunks_reused,
                slot_length,
                reboot_requested,
                ..
            } => {
                write!(
                    f,
                    "staged {version} ({slot_length} bytes, {boots} boots to prove itself): \
                     fetched {bytes_fetched} bytes in {round_trips} requests, "
                )?;
                match delta_from {
                    Some(from) => write!(f, "a delta from {from}")?,
                    None => write!(f, "{chunks_fetched} chunks fetched, {chunks_reused} reused")?,
                }
                write!(f, "; {}", reboot(*reboot_requested))
            }
        }
    }
}

/// A clock shared across polls (each TUF client takes its own box).
#[derive(Debug, Clone)]
struct SharedClock(Arc<dyn Clock + Send + Sync>);

impl Clock for SharedClock {
    fn now(&self) -> UnixTime {
        self.0.now()
    }
}

/// The update agent: a configuration and a clock, reused across polls (each poll opens
/// its own connection to PID 1 and its own TUF client).
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    clock: SharedClock,
    /// The owner key this agent asked the boot loader to hand the device over to: asked
    /// once per key and run, not at every poll.
    loader_asked: Option<[u8; 32]>,
}

impl Agent {
    /// An agent with the system clock (the TUF client's time floor guards it).
    pub fn new(config: AgentConfig) -> Self {
        Agent {
            config,
            clock: SharedClock(Arc::new(SystemClock)),
            loader_asked: None,
        }
    }

    /// Replaces the clock (tests and simulated devices set the time TUF expiry is
    /// checked against).
    pub fn with_clock(mut self, clock: Arc<dyn Clock + Send + Sync>) -> Self {
        self.clock = SharedClock(clock);
        self
    }

    /// The configuration the agent was made with.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Where the TUF metadata is kept: `STATE/tuf` ([`METADATA_DIR`]), or after an owner
    /// handover `STATE/tuf-owner` ([`crate::owner::OWNER_METADATA_DIR`]).
    pub fn metadata_dir(&self) -> PathBuf {
        let state = &self.config.state_dir;
        if state.join(crate::owner::ENROLMENT_FILE).exists() {
            state.join(crate::owner::OWNER_METADATA_DIR)
        } else {
            state.join(METADATA_DIR)
        }
    }

    /// Takes an owner's request (docs/end-of-life.md, [`crate::owner`]): from the state
    /// directory ([`crate::owner::REQUEST_FILE`]), or with `repo` from the repository's
    /// base ([`crate::owner::REMOTE_REQUEST`]; none there is not an error). Checked against
    /// the vendor's statement and PID 1's trusted time; enrolled when the loader reports the
    /// hand-over to its key confirmed, else the loader asked through `pid1` (once per key).
    /// Never fails the poll: a refusal is logged and a request file left in place (its date
    /// may pass by the next poll); an enrolment removes it. True when it enrolled.
    fn take_owner_request(
        &mut self,
        pid1: &Pid1,
        status: &DeviceStatus,
        repo: Option<&Remote>,
    ) -> bool {
        let state = self.config.state_dir.clone();
        let asked = self.loader_asked;
        let result = (|| {
            let request = match repo {
                None => crate::owner::pending_request(&state)?,
                Some(repo) => fetch_owner_request(repo, &self.config.repository)?,
            };
            let Some(request) = request else {
                return Ok(None);
            };
            let vendor = crate::owner::vendor_root(&state.join(METADATA_DIR), &self.config.root)?;
            crate::owner::take(
                &state,
                &vendor,
                &self.config.device,
                crate::owner::handover_time(status),
                request,
                status.owner_mode.as_deref(),
                |key| {
                    if asked == Some(key) {
                        return Ok(());
                    }
                    pid1.hand_over(key).map_err(Into::into)
                },
            )
            .map(Some)
        })();
        match result {
            Ok(None) => false,
            Ok(Some(Taken::LoaderAsked { key })) => {
                if self.loader_asked != Some(key) {
                    self.loader_asked = Some(key);
                    crate::schedule::log_line(
                        "limpet-agent: the owner's request holds: the boot loader asks the person at the device to confirm the owner's key at the next boot; the device follows the owner's root once that is confirmed",
                    );
                }
                false
            }
            Ok(Some(Taken::Enrolled(e))) => {
                let _ = std::fs::remove_file(state.join(crate::owner::REQUEST_FILE));
                crate::schedule::log_line(&format!(
                    "limpet-agent: handed over to the owner (statement for {} after {}, confirmed at the device): updates now follow the owner's root",
                    e.device,
                    UnixTime::from_secs(e.after)
                ));
                true
            }
            Err(e) => {
                crate::schedule::log_line(&format!(
                    "limpet-agent: {}",
                    limpet_error_chain::one_line(&e)
                ));
                false
            }
        }
    }

    /// One check for an update, and its install when there is one. Never panics; on error
    /// nothing is staged (PID 1 drops an unfinished install when the connection closes).
    pub fn poll_once(&mut self) -> Result<PollOutcome, AgentError> {
        let pid1 = Pid1::connect(&self.config.socket)?;
        let status = pid1.status()?;
        self.check_in(&pid1, &status);
        if let Some(busy) = self.busy(&pid1, &status)? {
            return Ok(PollOutcome::Busy(busy));
        }
        self.take_owner_request(&pid1, &status, None);
        let repo =
            Remote::new(&self.config.repository, self.config.retrieval).map_err(|source| {
                AgentError::Repository {
                    url: self.config.repository.clone(),
                    source,
                }
            })?;
        let client = match self.refresh(&repo, status.time_floor) {
            Ok(client) => client,
            // The repository's metadata does not verify under the vendor's root: after the
            // handover date the owner serves their own repository at its address, and
            // their request beside it (crate::owner). Asked for only then, so a device
            // whose vendor serves it pays nothing for it.
            Err(e) if !self.enrolled() => {
                if !self.take_owner_request(&pid1, &status, Some(&repo)) {
                    return Err(e);
                }
                self.refresh(&repo, status.time_floor)?
            }
            Err(e) => return Err(e),
        };
        self.report_time(&pid1, &client);
        let targets = self.trusted_targets(&client)?;
        let key = device_key(&status);
        let chosen = choose(
            targets,
            &self.config.device,
            &self.config.cpu,
            &status,
            key.as_ref(),
        )?;
        let Some(candidate) = chosen else {
            return Ok(PollOutcome::UpToDate {
                running: status.running_version,
                bytes_fetched: repo.traffic.bytes(),
                round_trips: repo.traffic.requests(),
            });
        };
        if let Some(gate) = self.gate(&client, &candidate, &status)? {
            return Ok(PollOutcome::Waiting {
                version: candidate.slot.version.to_string(),
                gate,
            });
        }
        let result = self.install_candidate(&pid1, &status, &client, &repo, &candidate);
        self.record_attempt(&candidate, &result);
        result
    }

    /// Whether the device is handed over (an enrolment exists, readable or not).
    fn enrolled(&self) -> bool {
        self.config
            .state_dir
            .join(crate::owner::ENROLMENT_FILE)
            .exists()
    }

    /// The targets the refresh verified.
    fn trusted_targets<'c>(
        &self,
        client: &'c Client,
    ) -> Result<&'c std::collections::BTreeMap<String, limpet_tuf::metadata::TargetFile>, AgentError>
    {
        client
            .trusted_targets()
            .map(|t| &t.targets)
            .ok_or_else(|| AgentError::Tuf {
                dir: self.metadata_dir(),
                source: limpet_tuf::Error::NotRefreshed,
            })
    }

    /// The delta or the chunks of `candidate`, staged.
    fn install_candidate(
        &self,
        pid1: &Pid1,
        status: &DeviceStatus,
        client: &Client,
        repo: &Remote,
        candidate: &Candidate,
    ) -> Result<PollOutcome, AgentError> {
        let targets = self.trusted_targets(client)?;
        // A delta from the running version, when the repository has one: a fraction of
        // the chunks' bytes. If it fails, the chunks make the same slot.
        if let Some(name) = delta_for(targets, &candidate.slot, &status.running_version) {
            match self.install_delta(pid1, status, client, repo, &name, &candidate.slot) {
                Ok(()) => {
                    let from = Some(status.running_version.clone());
                    return self.staged(pid1, repo, &candidate.slot, from, ChunkStats::default());
                }
                Err(e) => crate::schedule::log_line(&format!(
                    "limpet-agent: {}; fetching chunks instead",
                    limpet_error_chain::one_line(&e)
                )),
            }
        }
        self.install(pid1, status, client, repo, candidate)
    }

    /// Checks in with the fleet server, when one is configured; logs the result, never
    /// fails the poll ([`crate::fleet`]).
    fn check_in(&self, pid1: &Pid1, status: &DeviceStatus) {
        let Some(url) = &self.config.fleet else {
            return;
        };
        let files = FleetFiles::new(&self.config.state_dir);
        let result = FleetUrl::parse(url).and_then(|url| {
            fleet::check_in(
                &url,
                &files,
                &self.config.device,
                status,
                self.clock.now().as_secs(),
                |json| pid1.sign_check_in(json).map_err(Into::into),
            )
        });
        let line = match result {
            Ok(CheckedIn::Holds(n)) => {
                format!("limpet-agent: checked in with {url}: {n} hold(s) in force")
            }
            Ok(CheckedIn::NotModified) => {
                format!("limpet-agent: checked in with {url}: holds unchanged")
            }
            Err(e) => format!(
                "limpet-agent: check-in failed, keeping the last holds: {}",
                limpet_error_chain::one_line(&e)
            ),
        };
        crate::schedule::log_line(&line);
    }

    /// The rollout's word on `candidate` ([`crate::fleet::gate`]): `None` to install now.
    fn gate(
        &self,
        client: &Client,
        candidate: &Candidate,
        status: &DeviceStatus,
    ) -> Result<Option<Gate>, AgentError> {
        let extra = client.trusted_targets().map(|t| &t.extra);
        let field = match extra {
            Some(extra) => {
                WavesField::from_targets(extra).map_err(|source| AgentError::Waves { source })?
            }
            None => None,
        };
        let release = format!("{}/{}", self.config.device, candidate.slot.version);
        let key = device_key(status);
        let holds = FleetFiles::new(&self.config.state_dir).holds().holds;
        let decided = fleet::gate::gate(
            field.as_ref(),
            &release,
            key.as_ref(),
            &holds,
            self.clock.now(),
        );
        for (i, why) in &decided.ignored {
            crate::schedule::log_line(&format!(
                "limpet-agent: ignoring hold {i} of the fleet server for {release}: {why:?}"
            ));
        }
        Ok(match decided.gate {
            Gate::Go { .. } => None,
            other => Some(other),
        })
    }

    /// Remembers what the install of `candidate` came to, for the next check-in.
    fn record_attempt(&self, candidate: &Candidate, result: &Result<PollOutcome, AgentError>) {
        if self.config.fleet.is_none() {
            return;
        }
        let attempt = match result {
            Ok(PollOutcome::Staged { version, .. }) => Attempt {
                outcome: Outcome::Downloaded,
                version: version.clone(),
                reason: None,
            },
            Ok(_) => return,
            Err(e) => Attempt {
                outcome: Outcome::InstallError,
                version: candidate.slot.version.to_string(),
                reason: Some(limpet_error_chain::one_line(e).chars().take(1000).collect()),
            },
        };
        if let Err(e) = FleetFiles::new(&self.config.state_dir).record(&attempt) {
            crate::schedule::log_line(&format!(
                "limpet-agent: {}",
                limpet_error_chain::one_line(&e)
            ));
        }
    }

    /// Fetches the delta target `name`, writes the slot it makes from the running one, and
    /// checks the result against the signed length and hash before PID 1 verifies it.
    fn install_delta(
        &self,
        pid1: &Pid1,
        status: &DeviceStatus,
        client: &Client,
        repo: &Remote,
        name: &str,
        slot: &limpet_repo::SlotTarget,
    ) -> Result<(), AgentError> {
        let mut bytes = Vec::new();
        client
            .fetch_target(&*repo.targets, name, &mut bytes)
            .map_err(|source| AgentError::FetchDelta {
                target: name.to_owned(),
                source,
            })?;
        pid1.begin(&slot.version.to_string(), slot.slot_length)?;
        let seed = RunningSlot::new(pid1, status.running_length);
        let mut out = InactiveSlot::new(pid1);
        let applied =
            limpet_delta::apply(&bytes, &seed, &mut out).map_err(|source| AgentError::Delta {
                target: name.to_owned(),
                source,
            })?;
        if applied.written != slot.slot_length || applied.sha256 != slot.slot_sha256 {
            return Err(AgentError::DeltaResult {
                target: name.to_owned(),
                written: applied.written,
                sha256: applied.sha256.iter().map(|b| format!("{b:02x}")).collect(),
            });
        }
        Ok(())
    }

    /// A trial under the health gate or a staged one: nothing to fetch. Asks again for the
    /// reboot into a staged trial when the policy allows (the first request may have been
    /// lost, or deferred).
    fn busy(&self, pid1: &Pid1, status: &DeviceStatus) -> Result<Option<Busy>, AgentError> {
        if status.on_trial {
            return Ok(Some(Busy::OnTrial {
                version: status.running_version.clone(),
            }));
        }
        let Some(version) = &status.trial else {
            return Ok(None);
        };
        let reboot_requested = self.config.reboot.reboot_now();
        if reboot_requested {
            pid1.reboot()?;
        }
        Ok(Some(Busy::TrialStaged {
            version: version.clone(),
            reboot_requested,
        }))
    }

    /// Tells PID 1 the signed time and the model's end of support this refresh verified
    /// (its time record: the floor, freshness, the support window). Never fails the poll: a
    /// refusal (a PID 1 whose rules disagree, or one that keeps no time record) is logged.
    fn report_time(&self, pid1: &Pid1, client: &Client) {
        let Some(signed) = client
            .signed_time()
            .and_then(|t| u64::try_from(t.as_secs()).ok())
        else {
            return;
        };
        let extra = client.trusted_targets().map(|t| &t.extra);
        let support = match extra.map(|e| SupportStatement::from_targets(e, &self.config.device)) {
            Some(Ok(Some(statement))) => u64::try_from(statement.until.as_secs()).ok(),
            Some(Err(e)) => {
                crate::schedule::log_line(&format!(
                    "limpet-agent: ignoring the support statement: {}",
                    limpet_error_chain::one_line(&e)
                ));
                None
            }
            _ => None,
        };
        if let Err(e) = pid1.verified(signed, support) {
            crate::schedule::log_line(&format!(
                "limpet-agent: PID 1 did not take the verified time: {}",
                limpet_error_chain::one_line(&e)
            ));
        }
        self.report_roughtime(pid1, client);
    }

    /// Gives PID 1 the model's Roughtime server list from verified targets metadata
    /// (`x-limpet-roughtime`), when there is one. A malformed list is logged and not sent
    /// (PID 1 keeps the list it uses); PID 1 checks the addresses against the slot's.
    fn report_roughtime(&self, pid1: &Pid1, client: &Client) {
        let Some(extra) = client.trusted_targets().map(|t| &t.extra) else {
            return;
        };
        let list = match RoughtimeList::from_targets(extra, &self.config.device) {
            Ok(Some(list)) => list,
            Ok(None) => return,
            Err(e) => {
                crate::schedule::log_line(&format!(
                    "limpet-agent: ignoring the signed Roughtime server list: {}",
                    limpet_error_chain::one_line(&e)
                ));
                return;
            }
        };
        if let Err(e) = pid1.roughtime(list.servers) {
            crate::schedule::log_line(&format!(
                "limpet-agent: PID 1 did not take the signed Roughtime server list: {}",
                limpet_error_chain::one_line(&e)
            ));
        }
    }

    /// Opens the TUF client (provisioning the shipped root on first run) with the device's
    /// time floor (`floor`, from PID 1's status), and refreshes.
    fn refresh(&self, repo: &Remote, floor: Option<u64>) -> Result<Client, AgentError> {
        // The trust anchor: the owner's enrolled root after a handover (in its own
        // metadata directory), else the root shipped in the image.
        let enrolment = crate::owner::load(&self.config.state_dir)?;
        let dir = self.metadata_dir();
        let (anchor_path, enrolled) = match &enrolment {
            Some(e) => (
                self.config.state_dir.join(crate::owner::ENROLMENT_FILE),
                Some(e.root_bytes()),
            ),
            None => (self.config.root.clone(), None),
        };
        let anchor = || -> Result<Vec<u8>, AgentError> {
            match &enrolled {
                Some(bytes) => Ok(bytes.clone()),
                None => std::fs::read(&self.config.root).map_err(|source| AgentError::Provision {
                    root: self.config.root.clone(),
                    dir: dir.clone(),
                    source,
                }),
            }
        };
        let tuf = |source| AgentError::Tuf {
            dir: dir.clone(),
            source,
        };
        if !dir.join(Role::Root.file_name()).exists() {
            Client::init(&dir, &anchor()?).map_err(tuf)?;
        }
        let open = || Client::open(&dir, repo.metadata(), Box::new(self.clock.clone()));
        let mut client = match open() {
            Ok(client) => client,
            // A stored root that no longer verifies (a damaged file) would stop every update
            // for good: provision the shipped root again and walk the root chain from it.
            // The trusted time floor stays, so old metadata still cannot be replayed.
            Err(e) if stored_root_damaged(&e) => {
                crate::schedule::log_line(&format!(
                    "limpet-agent: the stored TUF root is unusable ({}); provisioning {} again",
                    limpet_error_chain::one_line(&e),
                    anchor_path.display()
                ));
                Client::init(&dir, &anchor()?).map_err(tuf)?;
                open().map_err(tuf)?
            }
            Err(e) => return Err(tuf(e)),
        };
        if let Some(floor) = floor.and_then(|f| i64::try_from(f).ok()) {
            client = client.with_time_floor(UnixTime::from_secs(floor));
        }
        client.refresh().map_err(tuf)?;
        Ok(client)
    }

    fn install(
        &self,
        pid1: &Pid1,
        status: &DeviceStatus,
        client: &Client,
        repo: &Remote,
        candidate: &Candidate,
    ) -> Result<PollOutcome, AgentError> {
        let slot = &candidate.slot;
        let version = slot.version.to_string();
        let name = &candidate.index_target;
        if slot.slot_length > status.inactive_capacity {
            return Err(AgentError::DoesNotFit {
                version,
                length: slot.slot_length,
                capacity: status.inactive_capacity,
            });
        }
        // The index: a TUF target, so its length and hash are checked before it is parsed.
        let mut bytes = Vec::new();
        client
            .fetch_target(&*repo.targets, name, &mut bytes)
            .map_err(|source| AgentError::FetchIndex {
                target: name.clone(),
                source,
            })?;
        let index = Index::from_bytes(&bytes).map_err(|source| AgentError::Index {
            target: name.clone(),
            source,
        })?;
        drop(bytes);
        check_index(name, &index, slot)?;

        let seed = RunningSlot::new(pid1, status.running_length);
        let assemble_err = |source| AgentError::Assemble {
            version: version.clone(),
            source,
        };
        let plan = limpet_chunk::plan(&index, &[&seed]).map_err(assemble_err)?;
        pid1.begin(&version, slot.slot_length)?;
        let mut pipeline = Pipelined::new(&*repo.base, &index, &plan);
        let mut fetch = |id: &ChunkId, cap: u64| pipeline.fetch(id, cap);
        let mut out = InactiveSlot::new(pid1);
        let stats = limpet_chunk::assemble_planned(&index, &plan, &[&seed], &mut fetch, &mut out)
            .map_err(assemble_err)?;
        let chunks = ChunkStats {
            fetched: stats.chunks_fetched,
            reused: stats.chunks_reused,
            bytes_reused: stats.bytes_reused,
        };
        self.staged(pid1, repo, slot, None, chunks)
    }

    /// The slot is written: PID 1 verifies it and marks it as the trial; then the reboot, as the
    /// policy allows.
    fn staged(
        &self,
        pid1: &Pid1,
        repo: &Remote,
        slot: &limpet_repo::SlotTarget,
        delta_from: Option<String>,
        chunks: ChunkStats,
    ) -> Result<PollOutcome, AgentError> {
        let version = slot.version.to_string();
        let boots = pid1.finish(&version, slot.verity_root)?;
        let reboot_requested = self.config.reboot.reboot_now();
        if reboot_requested {
            pid1.reboot()?;
        }
        Ok(PollOutcome::Staged {
            version,
            boots,
            bytes_fetched: repo.traffic.bytes(),
            round_trips: repo.traffic.requests(),
            delta_from,
            chunks_fetched: chunks.fetched,
            chunks_reused: chunks.reused,
            bytes_reused: chunks.bytes_reused,
            slot_length: slot.slot_length,
            reboot_requested,
        })
    }
}

/// The device identity's public key from PID 1's status; `None` when the device has none
/// (or PID 1 sent something that is not a key): such a device takes cohort 1 and the
/// rollout's last wave ([`fleet::gate`]).
fn device_key(status: &DeviceStatus) -> Option<[u8; 32]> {
    status
        .device_key
        .as_deref()
        .and_then(limpet_fleet_api::report::parse_device_key)
        .map(|k| k.to_bytes())
}

/// Whether opening the client failed on the stored root itself (not on I/O, which may pass,
/// nor on the time floor, which must not be reset).
/// The owner's request at the repository's base ([`crate::owner::REMOTE_REQUEST`]), length
/// capped; `None` when the repository has none.
fn fetch_owner_request(
    repo: &Remote,
    url: &str,
) -> Result<Option<limpet_repo::OwnerRequest>, crate::owner::OwnerError> {
    let from = || {
        PathBuf::from(format!(
            "{}/{}",
            url.trim_end_matches('/'),
            crate::owner::REMOTE_REQUEST
        ))
    };
    let bytes = match repo
        .base
        .fetch(
            crate::owner::REMOTE_REQUEST,
            crate::owner::MAX_REQUEST_BYTES,
        )
        .and_then(read_all)
    {
        Ok(bytes) => bytes,
        Err(limpet_tuf::Error::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(crate::owner::OwnerError::Fetch {
                url: from().display().to_string(),
                source,
            })
        }
    };
    crate::owner::parse_request(&bytes, from()).map(Some)
}

fn stored_root_damaged(e: &limpet_tuf::Error) -> bool {
    !matches!(
        e,
        limpet_tuf::Error::Io { .. } | limpet_tuf::Error::TimeFloorCorrupt { .. }
    )
}

/// Chunks offered to the transport at once: fetched in one round trip on one connection
/// (HTTP pipelining), held in memory until the assembler takes them (at most 8 × 64 KiB).
const PIPELINE: usize = 8;

/// The chunk fetches of one install, in the order the assembler makes them (the plan's
/// download positions), offered to the transport [`PIPELINE`] at a time.
struct Pipelined<'a> {
    base: &'a dyn limpet_tuf::Transport,
    /// (path, compressed length) of each chunk to download, in order.
    queue: Vec<(String, u64)>,
    /// Index in `queue` of the next expected fetch.
    next: usize,
    /// `queue[..offered]` has been offered already.
    offered: usize,
}

impl<'a> Pipelined<'a> {
    fn new(base: &'a dyn limpet_tuf::Transport, index: &Index, plan: &limpet_chunk::Plan) -> Self {
        let queue = plan
            .fetch_positions()
            .filter_map(|i| index.chunks().get(i))
            .map(|c| {
                let path = limpet_repo::target::chunk_path(&c.id.to_hex());
                (path, u64::from(c.compressed_length))
            })
            .collect();
        Pipelined {
            base,
            queue,
            next: 0,
            offered: 0,
        }
    }

    /// Fetches one chunk file; when it is the next one planned and not offered yet, the
    /// next [`PIPELINE`] are offered first. A fetch out of the planned order (a seed that
    /// did not match) is simply fetched.
    fn fetch(&mut self, id: &ChunkId, cap: u64) -> std::io::Result<Vec<u8>> {
        let path = limpet_repo::target::chunk_path(&id.to_hex());
        if self.queue.get(self.next).is_some_and(|(p, _)| *p == path) {
            if self.next >= self.offered {
                let end = (self.next + PIPELINE).min(self.queue.len());
                let mut batch: Vec<(&str, u64)> = Vec::with_capacity(end - self.next);
                for (p, c) in &self.queue[self.next..end] {
                    // A chunk twice in a batch is offered once (the stash serves it once).
                    if !batch.iter().any(|(q, _)| q == p) {
                        batch.push((p.as_str(), *c));
                    }
                }
                self.base.prefetch(&batch);
                self.offered = end;
            }
            self.next += 1;
        }
        self.base
            .fetch(&path, cap)
            .and_then(read_all)
            .map_err(std::io::Error::other)
    }
}

/// What the chunk path fetched and reused (all zero after a delta).
#[derive(Debug, Clone, Copy, Default)]
struct ChunkStats {
    fetched: usize,
    reused: usize,
    bytes_reused: u64,
}

/// The delta target from `running` to `slot`, when the repository lists a usable one:
/// its custom describes exactly `slot`, and it is at most [`limpet_repo::target::MAX_DELTA`].
fn delta_for(
    targets: &std::collections::BTreeMap<String, limpet_tuf::metadata::TargetFile>,
    slot: &limpet_repo::SlotTarget,
    running: &str,
) -> Option<String> {
    let running = limpet_state::Version::parse(running).ok()?.to_string();
    let name = limpet_repo::target::delta_target_name_in(
        &slot.device,
        &slot.version.to_string(),
        &running,
        slot.cohort,
    );
    let file = targets.get(&name)?;
    let usable = match limpet_repo::DeltaTarget::from_custom(&name, file.custom.as_ref()) {
        Ok(delta) if delta.slot != *slot => Err("it describes another slot".to_owned()),
        Ok(_) if file.length > limpet_repo::target::MAX_DELTA => Err(format!(
            "{} bytes, over {}",
            file.length,
            limpet_repo::target::MAX_DELTA
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    };
    match usable {
        Ok(()) => Some(name),
        Err(why) => {
            crate::schedule::log_line(&format!("limpet-agent: not using the delta {name}: {why}"));
            None
        }
    }
}

/// The index must describe the slot the custom fields describe (a publisher bug otherwise:
/// both are signed by the same targets key).
fn check_index(
    name: &str,
    index: &Index,
    slot: &limpet_repo::SlotTarget,
) -> Result<(), AgentError> {
    let mismatch = |field| AgentError::IndexMismatch {
        target: name.to_owned(),
        field,
    };
    if index.total_length() != slot.slot_length {
        return Err(mismatch("slot_length"));
    }
    if index.payload_sha256() != slot.slot_sha256 {
        return Err(mismatch("slot_sha256"));
    }
    Ok(())
}

#[cfg(test)]
mod owner_request_tests {
    use super::*;
    use crate::owner::{OwnerError, MAX_REQUEST_BYTES, REMOTE_REQUEST};

    /// The request at the repository's base: none is no request; one past the cap is
    /// refused by its length (a repository cannot make the device read without bound);
    /// bytes that are not a request are refused by name.
    #[test]
    fn the_repositorys_request_is_length_capped_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let server = limpet_repo::serve::serve(dir.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let url = format!("http://{}", server.local_addr());
        let repo = Remote::new(&url, RetrievalPolicy::default()).unwrap();
        assert!(matches!(fetch_owner_request(&repo, &url), Ok(None)));

        let too_long = usize::try_from(MAX_REQUEST_BYTES).unwrap() + 1;
        std::fs::write(dir.path().join(REMOTE_REQUEST), vec![b' '; too_long]).unwrap();
        let err = fetch_owner_request(&repo, &url).unwrap_err();
        assert!(
            matches!(
                &err,
                OwnerError::Fetch { url: u, source: limpet_tuf::Error::LengthExceeded { max, .. } }
                    if *max == MAX_REQUEST_BYTES && u.ends_with("/owner-request.json")
            ),
            "{err:?}"
        );

        std::fs::write(dir.path().join(REMOTE_REQUEST), b"{\"statement\": 1}").unwrap();
        let err = fetch_owner_request(&repo, &url).unwrap_err();
        assert!(matches!(&err, OwnerError::Request { .. }), "{err:?}");
    }
}
