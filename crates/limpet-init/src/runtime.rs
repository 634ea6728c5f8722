//! The running device: PID 1's event loop. It starts every task in its sandbox,
//! supervises them, logs their output, watches a trial slot's health, serves the update
//! agent and the network, and shuts down.
//!
//! # What the loop owns
//!
//! [`Runtime`] holds the loop's whole state: the supervisor (which decides, see
//! `supervisor.rs`), each running task's output pipes, readiness sockets and cgroup, the
//! signalfd and power buttons, the install socket, the network (`network.rs`), the
//! hardware watchdog (`watchdog.rs`), the time record (limpet-lifecycle's `Keeper`, which
//! it lends the install socket for each request), the health gate of a trial, the status
//! file's last contents and the shutdown deadline. Nothing else in PID 1 changes while the
//! loop runs. The system calls on tasks and the clock go
//! through [`Host`], so each handler can be driven in a unit test.
//!
//! # One turn of the loop (`loop { tick; poll; dispatch }`)
//!
//! 1. [`Runtime::on_tick`]: pet the watchdog when it is due, tick the time record when it
//!    is due ([`Runtime::on_time`]: it counts the uptime and saves the record every
//!    `SAVE_INTERVAL`; a failed save is tried again after [`SAVE_RETRY`]), move island
//!    mode to what is due ([`Runtime::on_island`]: stop or start again the tasks island
//!    mode does not keep, replace the network policy), start the tasks
//!    that are due (declared order; a task that
//!    declares egress waits for a network that is coming up, at most [`NETWORK_WAIT`]),
//!    kill the ones overdue with their readiness, run the checks deferred until after the
//!    first start ([`Deferred`]: the other slot's header, for the status file; due the
//!    turn after a task first started, at most [`DEFERRED_WAIT`] later, so the tasks get
//!    the CPU first), ask the health gate
//!    ([`Runtime::on_gate`]), write the status file, and move shutdown on (kill
//!    stragglers after [`GRACE`], end once every task is stopped).
//! 2. `poll` on the [`PollSet`], built afresh in one place: each descriptor is pushed
//!    with its typed [`Source`], so no code computes positions. The timeout is the
//!    earliest deadline of the supervisor, the network, the health gate, shutdown, the
//!    watchdog, the time record and the deferred checks.
//! 3. Dispatch the ready sources in the order of [`Source`]'s variants, one method each:
//!    readiness notes ([`Runtime::on_notify`]) and task output ([`Runtime::on_pipe`])
//!    first, so that a task's `READY=1` and its last lines are handled before its exit
//!    (SIGCHLD) is; then the network ([`Runtime::on_net`], which also runs its timers on
//!    every turn), the update agent ([`Runtime::on_install_socket`]), the power button
//!    ([`Runtime::on_button`]) and last the signals ([`Runtime::on_signal`]: reaping, or
//!    a shutdown request).
//!
//! # Rules
//!
//! - PID 1 never blocks on a task: pipes and sockets are non-blocking, every wait has a
//!   deadline, a task that ignores SIGTERM is killed after [`GRACE`].
//! - It never panics: a failed system call is reported on the console and the loop goes
//!   on; only a failed `poll` itself ends it, with an error.
//! - Shutdown (SIGTERM, SIGPWR, SIGHUP, SIGINT — which ctrl-alt-del sends once `main`
//!   has turned the kernel's immediate reboot off —, the ACPI power button, the update
//!   agent's reboot request, or a trial's rollback) begins once: tasks get SIGTERM in
//!   reverse declared order, [`GRACE`] to exit, then SIGKILL; the loop returns once
//!   every task is reaped, after saving the time record with the uptime up to then.
//!   `main` then syncs, unmounts and powers off or reboots.
//!
//! Adding an event source is adding a [`Source`] variant, its descriptor in
//! [`Runtime::poll_set`], and its `on_*` method in [`Runtime::dispatch`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use limpet_install::owner::OwnerServer;
use limpet_install::server::Event as InstallEvent;
use limpet_lifecycle::{IslandChange, IslandReason};
use limpet_lifecycle::{Keeper, RoughtimeChange, Uptime, WallTime};
use limpet_policy::{DevicePolicy, IslandPolicy, ReadinessCheck, TaskPolicy};
use limpet_sandbox::spawn::{self as sandbox, Roots, SpawnError, Spawned};
use limpet_state::{FailureReason, State};
use rustix::event::{PollFd, PollFlags};
use rustix::process::Signal;

use crate::console;
use crate::install::InstallServer;
use crate::logs::{LineSplitter, LogFile};
use crate::network::{self, NetMode, Network};
use crate::roughtime::{self, Roughtime};
use crate::slots::{TrialError, TrialRecord};
use crate::status::{
    RoughtimeResult, RoughtimeStatus, SystemStatus, TimeStatus, TrialStatus, UpdateAttempt,
};
use crate::supervisor::{AfterExit, Millis, Supervisor, TaskSpec};
use crate::sys::{self, Reaped};
use crate::trial::{self, HealthGate, Verdict};
use crate::watchdog::Watchdog;
use limpet_install::remote::RemoteServer;

/// How long tasks get to exit after SIGTERM at shutdown.
pub const GRACE: Duration = Duration::from_secs(3);
/// How long a task that declares egress waits for the network (a DHCP lease, with its DNS
/// servers) before it is started anyway. Long enough for the DHCP client's first three
/// tries (4, 8 and 16 s apart), short enough that a device without a network still
/// starts its network tasks well within a trial's health timeout.
pub const NETWORK_WAIT: Duration = Duration::from_secs(30);
/// How long after a failed save of the time record the loop tries again: soon enough that
/// a medium that recovers holds the count again within a minute, seldom enough not to spin
/// the loop on a dead one (a failed save leaves the record's save due at once).
pub const SAVE_RETRY: Duration = Duration::from_secs(60);
/// Where the status file is written.
pub const STATUS_FILE: &str = "run/limpet/status.json";

/// The longest the [`Deferred`] checks wait after a task first started: they run at the
/// next turn of the loop (usually a task's first output), or after this.
pub const DEFERRED_WAIT: Duration = Duration::from_millis(200);

/// Work PID 1 does once its tasks have started rather than before: nothing a task or the
/// boot's security depends on. The other slot's header, checked against the key for the
/// status file's `system.other` (absent until then) and the console line it returns; the
/// slot that boots is checked before it is mounted, and a slot to boot next is checked
/// again then.
pub struct Deferred {
    pub other_slot: Box<dyn FnOnce() -> (crate::status::OtherSlot, String)>,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred")
    }
}
/// Where task logs go, under the data partition's mount point. The leading dot keeps it
/// apart from the tasks' own directories (`/data/<task>`): task names cannot start with one.
pub const LOG_DIR: &str = ".limpet/log";

/// Errors that end the loop before or instead of a shutdown.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot create PID 1's signalfd")]
    SignalFd(#[source] std::io::Error),
    #[error("cannot create {path}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox setup")]
    Sandbox(#[source] SpawnError),
    #[error("poll")]
    Poll(#[source] rustix::io::Errno),
}

/// `main`'s boot path reports errors as text.
/// How the run ended: what PID 1 does once every task has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A shutdown request: power off.
    PowerOff,
    /// A trial slot failed its health gate and was rolled back, or the update agent asked
    /// for the reboot into a staged trial: reboot.
    Reboot,
}

/// A trial slot under its health gate: the gate and the state to commit or roll back.
#[derive(Debug)]
pub struct GatedTrial {
    pub gate: HealthGate,
    pub trial: TrialRecord,
}

/// The A/B record of a trial, as the health gate's verdict needs it.
pub trait Trial: std::fmt::Debug {
    /// The state as stored now.
    fn state(&self) -> &State;
    /// Commits the trial.
    fn commit(&mut self) -> Result<(), TrialError>;
    /// Rolls the trial back for `reason`.
    fn roll_back(&mut self, reason: FailureReason) -> Result<(), TrialError>;
}

impl Trial for TrialRecord {
    fn state(&self) -> &State {
        TrialRecord::state(self)
    }
    fn commit(&mut self) -> Result<(), TrialError> {
        TrialRecord::commit(self)
    }
    fn roll_back(&mut self, reason: FailureReason) -> Result<(), TrialError> {
        TrialRecord::roll_back(self, reason)
    }
}

/// What the loop does to tasks and the world outside it: the kernel on a device
/// ([`Kernel`]), a record in the tests.
pub trait Host {
    /// Monotonic time since boot.
    fn now(&self) -> Millis;
    /// One console line.
    fn console(&mut self, line: &str);
    /// Starts `task` in its sandbox.
    fn spawn(&mut self, task: &TaskPolicy) -> Result<Spawned, SpawnError>;
    /// Sends `signal` to `pid` (a process already gone is no error).
    fn signal(&mut self, pid: i32, signal: Signal);
    /// Reaps every child that has ended.
    fn reap(&mut self) -> Vec<Reaped>;
    /// How many times the kernel's OOM killer acted in `cgroup`.
    fn oom_kills(&self, cgroup: &Path) -> u64;
}

/// The real [`Host`]: system calls.
#[derive(Debug)]
pub struct Kernel<'a> {
    roots: &'a Roots,
}

impl Host for Kernel<'_> {
    fn now(&self) -> Millis {
        Millis(sys::boottime_ms())
    }
    fn console(&mut self, line: &str) {
        console::line(line);
    }
    fn spawn(&mut self, task: &TaskPolicy) -> Result<Spawned, SpawnError> {
        sandbox::spawn(task, self.roots)
    }
    fn signal(&mut self, pid: i32, signal: Signal) {
        sys::signal(pid, signal);
    }
    fn reap(&mut self) -> Vec<Reaped> {
        sys::reap_all()
    }
    fn oom_kills(&self, cgroup: &Path) -> u64 {
        oom_kills(cgroup)
    }
}

/// What a descriptor in the poll set is. The variants are in handling order (see the
/// module doc), which `Ord` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The readiness socket of task `n`.
    Notify(usize),
    /// A task's output pipe, by its id in [`Runtime::pipes`].
    Pipe(u64),
    /// One of the network's sockets.
    Net(network::Source),
    /// The Roughtime query's socket.
    Roughtime,
    /// The update agent's install socket.
    Install,
    /// The remote agent's socket.
    Remote,
    /// The owner-request socket of the tasks granted `owner-request`.
    Owner,
    /// Power button `n`.
    Button(usize),
    /// PID 1's signalfd.
    Signals,
}

/// The descriptors to poll, each beside its [`Source`].
#[derive(Debug, Default)]
pub struct PollSet<'a> {
    fds: Vec<PollFd<'a>>,
    sources: Vec<Source>,
}

impl<'a> PollSet<'a> {
    fn push(&mut self, source: Source, fd: std::os::fd::BorrowedFd<'a>) {
        self.fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
        self.sources.push(source);
    }

    /// Waits up to `timeout` (forever if `None`); returns the sources with events, sorted
    /// in handling order.
    fn wait(mut self, timeout: Option<Duration>) -> Result<Vec<Source>, RuntimeError> {
        let timeout = timeout.map(|t| rustix::time::Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_millis()) * 1_000_000,
        });
        match rustix::event::poll(&mut self.fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(Vec::new()),
            Err(e) => return Err(RuntimeError::Poll(e)),
        }
        let mut ready: Vec<Source> = self
            .fds
            .iter()
            .zip(&self.sources)
            .filter(|(fd, _)| !fd.revents().is_empty())
            .map(|(_, s)| *s)
            .collect();
        // Equal sources are the same source: stability would change nothing.
        ready.sort_unstable();
        Ok(ready)
    }
}

/// One open output pipe of a running task.
#[derive(Debug)]
struct Pipe {
    task: usize,
    fd: OwnedFd,
    lines: LineSplitter,
}

/// The time record, as the loop keeps it.
#[derive(Debug)]
struct TimeKeeping {
    keeper: Keeper<File>,
    /// When the loop ticks the keeper next.
    due: Millis,
    /// Whether the last save failed (said once on the console, and once when one works).
    failing: bool,
}

impl TimeKeeping {
    /// The keeper's next save, on the loop's clock.
    fn next_save(keeper: &Keeper<File>) -> Millis {
        Millis(keeper.next_save().as_secs().saturating_mul(1000))
    }
}

/// The loop's clock as the time record counts it: whole seconds of uptime.
fn uptime(now: Millis) -> Uptime {
    Uptime::from_secs(now.0 / 1000)
}

/// A trial under the health gate, as the loop keeps it.
#[derive(Debug)]
struct TrialWatch {
    gate: HealthGate,
    trial: Box<dyn Trial>,
}

/// The loop's state (see the module doc).
#[derive(Debug)]
pub struct Runtime<'a, H: Host> {
    host: H,
    root: PathBuf,
    tasks: &'a [TaskPolicy],
    /// Island mode's tasks and network, if the device has `[lifecycle]`.
    island: Option<&'a IslandPolicy>,
    /// When the tasks stopped for island mode are killed if still running.
    island_kill_at: Option<Millis>,
    /// Whether the last attempt to install the mode's network policy failed (said once).
    net_switch_failing: bool,
    system: &'a mut SystemStatus,
    supervisor: Supervisor,
    signals: Option<OwnedFd>,
    buttons: Vec<OwnedFd>,
    notifiers: BTreeMap<usize, UnixDatagram>,
    install: Option<InstallServer>,
    remote: Option<RemoteServer>,
    owner: Option<OwnerServer>,
    network: Option<Network>,
    /// The hardware watchdog, petted in [`Runtime::on_tick`] when due.
    watchdog: Option<Watchdog>,
    /// The time record, ticked in [`Runtime::on_tick`] when due.
    time: Option<TimeKeeping>,
    /// The Roughtime client, its timers run in [`Runtime::on_tick`].
    roughtime: Option<Roughtime>,
    trial: Option<TrialWatch>,
    /// Open output pipes by id; ids are never reused.
    pipes: BTreeMap<u64, Pipe>,
    next_pipe: u64,
    /// Each running task's cgroup, by pid.
    cgroups: BTreeMap<i32, PathBuf>,
    /// OOM kills already reported, per cgroup.
    oom_seen: BTreeMap<PathBuf, u64>,
    logs: BTreeMap<usize, LogFile>,
    log_dir: PathBuf,
    /// Set once shutdown has begun: when stragglers are killed.
    shutdown: Option<Millis>,
    outcome: Outcome,
    /// When the health gate wants to look again.
    gate_wait: Option<Millis>,
    reported_start: bool,
    /// The checks deferred until after the first start, and when they are due (set once a
    /// task has started).
    deferred: Option<Deferred>,
    deferred_due: Option<Millis>,
    /// Tasks whose wait for the network has been announced.
    announced_held: BTreeSet<usize>,
    last_status: String,
}

/// What the loop serves besides the tasks, each when the device has it.
#[derive(Debug, Default)]
pub struct Parts {
    /// A trial slot under its health gate.
    pub trial: Option<GatedTrial>,
    /// The update agent's install socket.
    pub install: Option<InstallServer>,
    /// The remote agent's socket (limpet-install's `remote`).
    pub remote: Option<RemoteServer>,
    /// The owner-request socket, when the policy grants a task `owner-request`.
    pub owner: Option<OwnerServer>,
    /// The network.
    pub network: Option<Network>,
    /// The hardware watchdog, petted every turn it is due.
    pub watchdog: Option<Watchdog>,
    /// The time record (opened at boot by `lifecycle.rs`), ticked on its schedule.
    pub time: Option<Keeper<File>>,
    /// The Roughtime client, when the slot lists servers and the device has a network.
    pub roughtime: Option<Roughtime>,
    /// What to do once the tasks have started.
    pub deferred: Option<Deferred>,
}

/// Runs the tasks until a shutdown request; returns when every task has stopped.
pub fn run(
    root: &Path,
    policy: &DevicePolicy,
    roots: &Roots,
    parts: Parts,
    system: &mut SystemStatus,
) -> Result<Outcome, RuntimeError> {
    let Parts {
        trial,
        install,
        remote,
        owner,
        network,
        watchdog,
        time,
        roughtime,
        deferred,
    } = parts;
    let signals = sys::signal_fd().map_err(RuntimeError::SignalFd)?;
    if let Some(parent) = roots.work.parent() {
        std::fs::create_dir_all(parent).map_err(|source| RuntimeError::WorkDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    sandbox::prepare(roots).map_err(RuntimeError::Sandbox)?;
    let mut runtime = Runtime::new(Kernel { roots }, root, policy, &roots.data, network, system);
    runtime.signals = Some(signals);
    runtime.buttons = crate::power_button::open(root);
    runtime.install = install;
    runtime.remote = remote;
    runtime.owner = owner;
    runtime.watchdog = watchdog;
    runtime.set_time(time);
    runtime.roughtime = roughtime;
    runtime.deferred = deferred;
    runtime.trial = trial.map(|p| TrialWatch {
        gate: p.gate,
        trial: Box::new(p.trial),
    });
    runtime.run()
}

impl<'a, H: Host> Runtime<'a, H> {
    /// The loop's state before the first turn: nothing started, no descriptor but the
    /// network's.
    fn new(
        host: H,
        root: &Path,
        policy: &'a DevicePolicy,
        data: &Path,
        network: Option<Network>,
        system: &'a mut SystemStatus,
    ) -> Self {
        let specs = policy
            .tasks
            .iter()
            .map(|t| TaskSpec::new(t, policy.network.as_ref()))
            .collect();
        let mut supervisor = Supervisor::new(specs);
        if network
            .as_ref()
            .is_some_and(|n| !n.is_up() && n.may_come_up())
        {
            supervisor.wait_for_network(host.now().plus(NETWORK_WAIT));
        }
        Runtime {
            host,
            root: root.to_owned(),
            tasks: &policy.tasks,
            island: policy.island.as_ref(),
            island_kill_at: None,
            net_switch_failing: false,
            system,
            supervisor,
            signals: None,
            buttons: Vec::new(),
            notifiers: BTreeMap::new(),
            install: None,
            remote: None,
            owner: None,
            network,
            watchdog: None,
            time: None,
            roughtime: None,
            trial: None,
            pipes: BTreeMap::new(),
            next_pipe: 0,
            cgroups: BTreeMap::new(),
            oom_seen: BTreeMap::new(),
            logs: BTreeMap::new(),
            log_dir: data.join(LOG_DIR),
            shutdown: None,
            outcome: Outcome::PowerOff,
            gate_wait: None,
            reported_start: false,
            deferred: None,
            deferred_due: None,
            announced_held: BTreeSet::new(),
            last_status: String::new(),
        }
    }

    /// Gives the loop the time record, its first tick due at its next save. A device that
    /// boots in island mode (`lifecycle.rs` settled it) parks the tasks island mode does
    /// not keep before any task starts.
    fn set_time(&mut self, keeper: Option<Keeper<File>>) {
        self.time = keeper.map(|keeper| TimeKeeping {
            due: TimeKeeping::next_save(&keeper),
            keeper,
            failing: false,
        });
        if self.in_island() {
            if let Some(island) = self.island {
                // Nothing runs yet: nothing to signal.
                let _ = self.supervisor.enter_island(|t| island.keeps(t));
            }
        }
    }

    /// Whether the time record says island mode (and the policy has one to apply).
    fn in_island(&self) -> bool {
        self.island.is_some()
            && self
                .time
                .as_ref()
                .is_some_and(|t| t.keeper.island().is_island())
    }

    /// Moves island mode to what the time record says is due now (limpet-lifecycle's rule
    /// 8: a passed end of support or a stale repository enters it; a signed extension or
    /// fresh metadata, which the update agent brings, leaves it), then keeps the installed
    /// network policy the mode's, and kills what island mode stopped and is still running
    /// after [`GRACE`].
    fn on_island(&mut self, now: Millis) {
        let Some(island) = self.island else {
            return;
        };
        if self.shutdown.is_some() {
            return;
        }
        if let Some(time) = self.time.as_mut() {
            let settled = time.keeper.settle_island(uptime(now));
            let until = time.keeper.support_until();
            let freshness = time.keeper.slot().freshness;
            if let Err(e) = settled.saved {
                let line = format!(
                    "island mode not saved: {}; the time record is saved again at the next tick",
                    console::chain(&e)
                );
                self.say(&line);
            }
            match settled.change {
                Some(IslandChange::Entered(reason)) => {
                    self.say(&format!(
                        "island mode begins: {}; stopping every task but {}",
                        island_reason(&reason),
                        island.keep.join(", ")
                    ));
                    for (name, pid) in self.supervisor.enter_island(|t| island.keeps(t)) {
                        self.say(&format!("stopping {name} (pid {pid}) for island mode"));
                        self.host.signal(pid, Signal::TERM);
                        self.island_kill_at = Some(now.plus(GRACE));
                    }
                }
                Some(IslandChange::Left) => {
                    self.say(&format!(
                        "island mode ends: support until {}, fresh signed metadata within {}; starting the stopped tasks again",
                        until.map_or_else(|| "no end".to_owned(), |u| u.to_string()),
                        freshness.map_or_else(|| "no limit".to_owned(), |f| f.to_string())
                    ));
                    self.supervisor.leave_island();
                    self.island_kill_at = None;
                }
                None => {}
            }
        }
        let wanted = if self.in_island() {
            NetMode::Island
        } else {
            NetMode::Normal
        };
        if let Some(net) = self.network.as_mut() {
            if net.mode() != wanted {
                let line = match net.switch(wanted) {
                    Ok(rules) => {
                        self.net_switch_failing = false;
                        Some(format!(
                            "{} network policy installed: {rules} rules, replacing the {} one in one batch",
                            wanted.as_str(),
                            match wanted {
                                NetMode::Island => NetMode::Normal.as_str(),
                                NetMode::Normal => NetMode::Island.as_str(),
                            }
                        ))
                    }
                    Err(e) => (!std::mem::replace(&mut self.net_switch_failing, true)).then(|| {
                        format!(
                            "cannot install the {} network policy: {}; trying again every turn",
                            wanted.as_str(),
                            console::chain(&e)
                        )
                    }),
                };
                if let Some(line) = line {
                    self.say(&line);
                }
            }
        }
        if self.island_kill_at.is_some_and(|at| now >= at) {
            self.island_kill_at = None;
            for pid in self.supervisor.island_stragglers() {
                self.host.signal(pid, Signal::KILL);
            }
        }
    }

    /// `loop { tick; poll; dispatch }` until every task has stopped after a shutdown.
    fn run(mut self) -> Result<Outcome, RuntimeError> {
        loop {
            if let Some(outcome) = self.on_tick() {
                return Ok(outcome);
            }
            let timeout = self.timeout();
            let ready = self.poll_set().wait(timeout)?;
            self.dispatch(&ready);
        }
    }

    /// Every descriptor the loop waits on, with its source.
    fn poll_set(&self) -> PollSet<'_> {
        let mut set = PollSet::default();
        if let Some(signals) = &self.signals {
            set.push(Source::Signals, signals.as_fd());
        }
        for (i, button) in self.buttons.iter().enumerate() {
            set.push(Source::Button(i), button.as_fd());
        }
        for (task, sock) in &self.notifiers {
            set.push(Source::Notify(*task), sock.as_fd());
        }
        if let Some(server) = &self.install {
            set.push(Source::Install, server.pollable().as_fd());
        }
        if let Some(server) = &self.remote {
            set.push(Source::Remote, server.pollable().as_fd());
        }
        if let Some(server) = &self.owner {
            set.push(Source::Owner, server.pollable().as_fd());
        }
        if let Some(net) = &self.network {
            for (source, fd) in net.pollables() {
                set.push(Source::Net(source), fd);
            }
        }
        if let Some(fd) = self.roughtime.as_ref().and_then(Roughtime::pollable) {
            set.push(Source::Roughtime, fd);
        }
        for (id, pipe) in &self.pipes {
            set.push(Source::Pipe(*id), pipe.fd.as_fd());
        }
        set
    }

    /// How long the poll may sleep: until the earliest deadline.
    fn timeout(&self) -> Option<Duration> {
        let now = self.host.now();
        let net = self.network.as_ref().map(|n| {
            let left = n
                .next_deadline()
                .saturating_duration_since(std::time::Instant::now());
            now.plus(left)
        });
        let deadline = [
            self.supervisor.next_deadline(),
            self.shutdown,
            self.gate_wait,
            net,
            self.watchdog.as_ref().map(Watchdog::due),
            self.time.as_ref().map(|t| t.due),
            self.roughtime.as_ref().and_then(Roughtime::deadline),
            self.island_kill_at,
            self.deferred_due,
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some(Duration::from_millis(deadline.0.saturating_sub(now.0)))
    }

    /// Handles what `poll` reported, in [`Source`] order. The network runs on every turn,
    /// in its place after the task pipes: its timers are due even when none of its
    /// sockets is readable.
    fn dispatch(&mut self, ready: &[Source]) {
        let net: Vec<network::Source> = ready
            .iter()
            .filter_map(|s| match s {
                Source::Net(n) => Some(*n),
                _ => None,
            })
            .collect();
        let mut net_done = false;
        for source in ready {
            if !net_done && *source > Source::Pipe(u64::MAX) {
                self.on_net(&net);
                net_done = true;
            }
            match *source {
                Source::Notify(task) => self.on_notify(task),
                Source::Pipe(id) => self.on_pipe(id),
                Source::Net(_) => {}
                Source::Roughtime => {
                    let outcome = self.roughtime.as_mut().and_then(Roughtime::on_readable);
                    if let Some(outcome) = outcome {
                        self.on_roughtime(outcome);
                    }
                }
                Source::Install => self.on_install_socket(),
                Source::Remote => {
                    if let Some(server) = &mut self.remote {
                        server.ready();
                    }
                }
                Source::Owner => self.on_owner_socket(),
                Source::Button(i) => self.on_button(i),
                Source::Signals => self.on_signals(),
            }
        }
        if !net_done {
            self.on_net(&net);
        }
    }

    /// The part of each turn that depends on time, not on a descriptor.
    fn on_tick(&mut self) -> Option<Outcome> {
        let now = self.host.now();
        if self.deferred_due.is_some() {
            self.run_deferred();
        }
        if let Some(watchdog) = &mut self.watchdog {
            if let Err(e) = watchdog.pet_if_due(now) {
                let line = format!("watchdog: {}", console::chain(&e));
                self.say(&line);
            }
        }
        self.on_time(now);
        let net_up = self.network.as_ref().is_some_and(Network::is_up);
        let outcome = self.roughtime.as_mut().and_then(|r| r.on_tick(now, net_up));
        if let Some(outcome) = outcome {
            self.on_roughtime(outcome);
        }
        self.on_island(now);
        self.start_due(now);
        for (name, pid) in self.supervisor.readiness_overdue(now) {
            self.say(&format!("{name} did not report ready in time: killing it"));
            self.host.signal(pid, Signal::KILL);
        }
        if !self.reported_start && self.supervisor.records().iter().all(|r| r.starts > 0) {
            // Once, after the first start of every task: the figures the boot benchmark reads.
            self.reported_start = true;
            let line = format!(
                "all tasks started at boottime {} ms; PID 1 Rss {} kB",
                self.host.now().0,
                sys::own_rss_kb().map_or_else(|| "?".to_owned(), |kb| kb.to_string())
            );
            self.say(&line);
        }
        if self.deferred.is_some()
            && self.deferred_due.is_none()
            && self.supervisor.records().iter().any(|r| r.starts > 0)
        {
            self.deferred_due = Some(now.plus(DEFERRED_WAIT));
        }
        self.on_gate(now);
        if let Some(net) = &self.network {
            if self.system.network.as_ref() != Some(net.status()) {
                self.system.network = Some(net.status().clone());
            }
        }
        self.system.time = self.time.as_ref().map(|t| TimeStatus::of(&t.keeper));
        self.write_status();
        let deadline = self.shutdown?;
        if self.supervisor.all_stopped() {
            self.save_time(now);
            return Some(self.outcome);
        }
        if now >= deadline {
            for pid in self.supervisor.stragglers() {
                self.host.signal(pid, Signal::KILL);
            }
        }
        None
    }

    /// The checks deferred until after the first start ([`Deferred`]), once.
    fn run_deferred(&mut self) {
        self.deferred_due = None;
        if let Some(deferred) = self.deferred.take() {
            let (other, line) = (deferred.other_slot)();
            self.system.other = Some(other);
            self.say(&line);
        }
    }

    /// What a Roughtime query came to: a trusted answer goes to the time record (rule 9),
    /// which may move the clock forward; each result is said and kept for the status file.
    fn on_roughtime(&mut self, outcome: roughtime::Outcome) {
        let now = self.host.now();
        let (server, result, lower, line) = match outcome {
            roughtime::Outcome::Verified(v) => {
                let lower = WallTime::from_secs(v.earliest_secs());
                let (result, line) = match self.time.as_mut() {
                    None => (
                        RoughtimeResult::NoRecord,
                        format!(
                            "roughtime {}: answer trusted ({lower}), but there is no time record to raise",
                            v.server
                        ),
                    ),
                    Some(time) => match time.keeper.roughtime(lower, uptime(now)) {
                        (RoughtimeChange::Raised { to, .. }, saved) => {
                            let mut line =
                                format!("roughtime {}: earliest time raised to {to}", v.server);
                            if let Err(e) = saved {
                                line.push_str(&format!("; not saved: {}", console::chain(&e)));
                            }
                            (RoughtimeResult::Raised, line)
                        }
                        (RoughtimeChange::NotAbove { lower, earliest }, _) => (
                            RoughtimeResult::Unchanged,
                            format!(
                                "roughtime {}: {lower} is not above the earliest time {earliest}: nothing changed",
                                v.server
                            ),
                        ),
                    },
                };
                (v.server, result, Some(lower.as_secs()), line)
            }
            roughtime::Outcome::Refused { server, error } => {
                let line = format!(
                    "roughtime {server}: answer refused: {}",
                    console::chain(&error)
                );
                (server, RoughtimeResult::Refused, None, line)
            }
            roughtime::Outcome::NoAnswer { server } => {
                let line = format!(
                    "roughtime {server}: no answer after {} tries of {} s",
                    roughtime::TRIES,
                    roughtime::TRY_TIMEOUT.as_secs()
                );
                (server, RoughtimeResult::NoAnswer, None, line)
            }
            roughtime::Outcome::Unsent { server, error } => {
                let line = format!(
                    "roughtime {server}: not sent: {error}; trying again in {} s",
                    roughtime::UNSENT_RETRY.as_secs()
                );
                (server, RoughtimeResult::Unsent, None, line)
            }
        };
        self.say(&line);
        let sets_clock = self.roughtime.as_ref().is_some_and(Roughtime::sets_clock);
        if result == RoughtimeResult::Raised && sets_clock {
            if let Some(time) = &self.time {
                crate::lifecycle::set_clock(&time.keeper);
            }
        }
        let status = RoughtimeStatus {
            server,
            result,
            lower,
            detail: line,
            at_uptime_ms: now.0,
        };
        let results = &mut self.system.roughtime;
        match results.iter_mut().find(|r| r.server == status.server) {
            Some(last) => *last = status,
            None => results.push(status),
        }
    }

    /// Ticks the time record when due: it counts the uptime and saves when its interval has
    /// run out. A failed save is said once and tried again after [`SAVE_RETRY`].
    fn on_time(&mut self, now: Millis) {
        let Some(time) = self.time.as_mut() else {
            return;
        };
        if now < time.due {
            return;
        }
        let line = match time.keeper.tick(uptime(now)) {
            Ok(()) => {
                time.due = TimeKeeping::next_save(&time.keeper);
                std::mem::take(&mut time.failing).then(|| "time record saved again".to_owned())
            }
            Err(e) => {
                time.due = now.plus(SAVE_RETRY);
                (!std::mem::replace(&mut time.failing, true)).then(|| {
                    format!(
                        "time record: {}; trying again every {} s",
                        console::chain(&e),
                        SAVE_RETRY.as_secs()
                    )
                })
            }
        };
        if let Some(line) = line {
            self.say(&line);
        }
    }

    /// At the end of a shutdown: saves the time record with the uptime up to `now`, so the
    /// next boot's earliest time includes the whole of this one.
    fn save_time(&mut self, now: Millis) {
        let Some(time) = self.time.as_mut() else {
            return;
        };
        if let Err(e) = time.keeper.save_now(uptime(now)) {
            let line = format!("time record not saved at shutdown: {}", console::chain(&e));
            self.say(&line);
        }
    }

    /// Starts every task that is due; announces, once, each task held for the network.
    fn start_due(&mut self, now: Millis) {
        for index in self.supervisor.held(now) {
            if self.announced_held.insert(index) {
                let name = self.task_name(index).to_owned();
                self.say(&format!(
                    "{name} waits for the network (it declares egress), at most {} s",
                    NETWORK_WAIT.as_secs()
                ));
            }
        }
        // A start can make the next task in declared order due (a `started` task is up at
        // once), so ask again; each round starts at least one task, and no task twice.
        for _ in 0..=self.tasks.len() {
            let due = self.supervisor.due(now);
            if due.is_empty() {
                break;
            }
            for index in due {
                if self.supervisor.starts_without_network(index) {
                    let name = self.task_name(index).to_owned();
                    self.say(&format!(
                        "the network is not up after {} s: starting {name} anyway",
                        NETWORK_WAIT.as_secs()
                    ));
                }
                self.start(index, now);
            }
        }
    }

    fn start(&mut self, index: usize, now: Millis) {
        let Some(task) = self.tasks.get(index) else {
            return;
        };
        if let ReadinessCheck::Notify { socket, .. } = &task.readiness {
            match notify_socket(Path::new(socket), task) {
                Ok(sock) => {
                    self.notifiers.insert(index, sock);
                }
                Err(e) => self.say(&format!("cannot create {socket} for {}: {e}", task.name)),
            }
        }
        match self.host.spawn(task) {
            Ok(spawned) => {
                self.say(&format!("started {} (pid {})", task.name, spawned.pid));
                self.supervisor.started(index, spawned.pid, now);
                if let Some(cgroup) = spawned.cgroup.clone() {
                    self.cgroups.insert(spawned.pid, cgroup);
                }
                for fd in [spawned.stdout, spawned.stderr] {
                    // Never block PID 1 on a task's pipe.
                    let _ = rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK);
                    self.pipes.insert(
                        self.next_pipe,
                        Pipe {
                            task: index,
                            fd,
                            lines: LineSplitter::default(),
                        },
                    );
                    self.next_pipe += 1;
                }
            }
            Err(e) => {
                let after = self.supervisor.start_failed(index, now);
                self.say(&format!(
                    "cannot start {}: {}; {}",
                    task.name,
                    console::chain(&e),
                    describe(after)
                ));
            }
        }
    }

    /// Asks the health gate of a trial (not during shutdown) and carries out its verdict.
    fn on_gate(&mut self, now: Millis) {
        if self.shutdown.is_some() {
            return;
        }
        let Some(watch) = self.trial.as_mut() else {
            return;
        };
        match watch.gate.observe(now, self.supervisor.records()) {
            Verdict::Wait(at) => self.gate_wait = Some(at),
            Verdict::Commit => {
                self.gate_wait = None;
                let line = match watch.trial.commit() {
                    Ok(()) => {
                        self.system.trial = TrialStatus::Committed;
                        format!(
                            "every task healthy for the health period: trial committed, floor now {} (boottime {} ms)",
                            watch.trial.state().floor(),
                            self.host.now().0
                        )
                    }
                    Err(e) => {
                        let error = crate::console::chain(&e);
                        self.system.trial = TrialStatus::CommitFailed {
                            error: error.clone(),
                        };
                        error
                    }
                };
                self.system.state = Some(watch.trial.state().into());
                self.trial = None;
                self.say(&line);
            }
            Verdict::RollBack(failure) => {
                self.gate_wait = None;
                let reason = match failure {
                    trial::Failure::Unhealthy { .. } => FailureReason::Unhealthy,
                    trial::Failure::Timeout { .. } => FailureReason::HealthTimeout,
                };
                let recorded = watch.trial.roll_back(reason);
                let line = format!(
                    "trial failed its health gate ({failure}){}: rebooting into the committed slot (boottime {} ms)",
                    match &recorded {
                        Ok(()) => String::new(),
                        Err(e) => format!("; {}", crate::console::chain(e)),
                    },
                    self.host.now().0
                );
                self.system.trial = TrialStatus::RolledBack {
                    reason: failure.to_string(),
                };
                self.system.state = Some(watch.trial.state().into());
                self.trial = None;
                self.say(&line);
                self.outcome = Outcome::Reboot;
                self.begin_shutdown("rollback");
            }
        }
    }

    /// A task's readiness socket is readable.
    fn on_notify(&mut self, task: usize) {
        let Some(sock) = self.notifiers.get(&task) else {
            return;
        };
        if notified_ready(sock) {
            if let Some(name) = self.supervisor.ready(task) {
                let line = format!("{name} is ready");
                self.say(&line);
            }
        }
    }

    /// A task's output pipe is readable (or closed): its complete lines go to the console
    /// and its log; a closed pipe is dropped.
    fn on_pipe(&mut self, id: u64) {
        let Some(pipe) = self.pipes.get_mut(&id) else {
            return;
        };
        let name = self.tasks.get(pipe.task).map_or("?", |t| t.name.as_str());
        let log = self
            .logs
            .entry(pipe.task)
            .or_insert_with(|| LogFile::open(&self.log_dir, name));
        let (lines, closed) = drain(pipe);
        for line in lines {
            self.host.console(&format!("[{name}] {line}"));
            log.append(&line);
        }
        if closed {
            self.pipes.remove(&id);
        }
    }

    /// The network's readable sockets (maybe none), then its timers; a network that has
    /// come up lets the tasks that wait for it start.
    fn on_net(&mut self, readable: &[network::Source]) {
        let Some(net) = self.network.as_mut() else {
            return;
        };
        net.ready(readable);
        if net.is_up() {
            self.supervisor.network_up();
        }
    }

    /// The update agent's socket is readable.
    fn on_install_socket(&mut self) {
        let on_trial = self.trial.is_some();
        let time = self.time.as_mut().map(|t| &mut t.keeper);
        if let Some(event) = self.install.as_mut().and_then(|s| s.ready(on_trial, time)) {
            self.on_install_event(event);
        }
    }

    /// Serves the owner-request socket and says on the console what a task asked, or
    /// why it was refused (the request only asks: the loader confirms it with a person).
    fn on_owner_socket(&mut self) {
        let Some(asked) = self.owner.as_mut().and_then(OwnerServer::ready) else {
            return;
        };
        let line = asked.console_line();
        self.say(&line);
    }

    /// What the update agent's request came to.
    fn on_install_event(&mut self, event: InstallEvent) {
        let at_ms = self.host.now().0;
        let attempt = |version, outcome: String| UpdateAttempt {
            version,
            outcome,
            at_ms,
        };
        match event {
            InstallEvent::Staged { version } => {
                let line = format!(
                    "update {version} verified and staged as a trial in slot {}",
                    self.system.other.as_ref().map_or("?", |o| o.slot.as_str())
                );
                self.say(&line);
                self.system.last_update = Some(attempt(Some(version), "staged".to_owned()));
            }
            InstallEvent::Reboot => {
                let version = self
                    .system
                    .last_update
                    .as_ref()
                    .and_then(|a| a.version.clone());
                self.system.last_update = Some(attempt(version, "reboot requested".to_owned()));
                self.outcome = Outcome::Reboot;
                self.begin_shutdown("update agent: reboot into the staged trial");
            }
            InstallEvent::Roughtime { servers } => self.on_signed_roughtime(&servers),
            InstallEvent::Failed { version, error } => {
                self.say(&format!(
                    "update {} refused: {error}",
                    version.as_deref().unwrap_or("?")
                ));
                self.system.last_update = Some(attempt(version, format!("failed: {error}")));
            }
        }
    }

    /// The agent verified a Roughtime server list in the repository's signed metadata.
    fn on_signed_roughtime(&mut self, servers: &[limpet_policy::RoughtimeServer]) {
        let line = match self.roughtime.as_mut().map(|r| r.replace(servers)) {
            None => "roughtime: the signed server list is refused: the slot lists no Roughtime server, so none has an egress rule".to_owned(),
            Some(Ok(roughtime::Replaced::Unchanged)) => return,
            Some(Ok(roughtime::Replaced::Now(names))) => format!(
                "roughtime: now asking the signed list: {}",
                if names.is_empty() { "no server".to_owned() } else { names.join(", ") }
            ),
            Some(Err(e)) => format!("roughtime: the signed server list is refused: {e}"),
        };
        self.say(&line);
    }

    /// Power button `i` has input.
    fn on_button(&mut self, i: usize) {
        if self
            .buttons
            .get(i)
            .is_some_and(crate::power_button::pressed)
        {
            self.begin_shutdown("power button");
        }
    }

    /// The signalfd is readable.
    fn on_signals(&mut self) {
        let Some(fd) = &self.signals else {
            return;
        };
        for signo in sys::read_signals(fd) {
            self.on_signal(signo);
        }
    }

    /// One signal: SIGCHLD reaps; every other handled signal asks for shutdown.
    fn on_signal(&mut self, signo: i32) {
        if signo == libc::SIGCHLD {
            self.reap();
        } else {
            self.begin_shutdown(&format!("signal {signo}"));
        }
    }

    fn reap(&mut self) {
        for reaped in self.host.reap() {
            let now = self.host.now();
            let name = self
                .supervisor
                .records()
                .iter()
                .find(|r| r.pid() == Some(reaped.pid))
                .map(|r| r.name.clone());
            // The task's cgroup says whether the kernel's OOM killer ended it. The cgroup
            // is kept for the next start: the network policy recognises the task's sockets
            // by its id. So the count is compared with what earlier runs accounted for.
            let oom = self.cgroups.remove(&reaped.pid).map(|cgroup| {
                let kills = self.host.oom_kills(&cgroup);
                let seen = self.oom_seen.insert(cgroup, kills).unwrap_or(0);
                kills.saturating_sub(seen)
            });
            let after = self.supervisor.exited(reaped.pid, reaped.exit, now);
            if let Some(name) = name {
                let oom = match oom {
                    Some(n) if n > 0 => {
                        format!(", OOM-killed in its cgroup (memory.max) {n} time(s)")
                    }
                    _ => String::new(),
                };
                self.say(&format!(
                    "{name} exited ({:?}{oom}); {}",
                    reaped.exit,
                    describe(after)
                ));
            }
        }
    }

    /// Begins shutdown, once: SIGTERM to every task in reverse declared order, and the
    /// deadline after which stragglers are killed.
    fn begin_shutdown(&mut self, reason: &str) {
        if self.shutdown.is_some() {
            return;
        }
        self.say(&format!("{reason}: shutting down"));
        for (name, pid) in self.supervisor.begin_shutdown() {
            self.say(&format!("stopping {name} (pid {pid})"));
            self.host.signal(pid, Signal::TERM);
        }
        self.shutdown = Some(self.host.now().plus(GRACE));
    }

    /// Writes the status file atomically (temporary name, then rename) when it changed.
    fn write_status(&mut self) {
        /// The status file's contents, serialized straight from PID 1's own state (no
        /// `serde_json::Value` tree built and dropped on every turn).
        #[derive(serde::Serialize)]
        struct StatusFile<'s> {
            system: &'s SystemStatus,
            tasks: &'s [crate::supervisor::TaskRecord],
        }
        let Ok(status) = serde_json::to_string(&StatusFile {
            system: self.system,
            tasks: self.supervisor.records(),
        }) else {
            return;
        };
        if status == self.last_status {
            return;
        }
        let path = self.root.join(STATUS_FILE);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = path.with_extension("json.tmp");
        if std::fs::write(&tmp, &status).is_ok() && std::fs::rename(&tmp, &path).is_ok() {
            self.last_status = status;
        }
    }

    fn task_name(&self, index: usize) -> &str {
        self.tasks.get(index).map_or("?", |t| t.name.as_str())
    }

    /// One line of PID 1's own on the console: [`console::PREFIX`] is written here, once.
    fn say(&mut self, line: &str) {
        self.host.console(&format!("{}{line}", console::PREFIX));
    }
}

/// Binds the readiness socket of a `notify` task (a datagram socket only that task's uid
/// may write to), replacing a stale one.
fn notify_socket(path: &Path, task: &TaskPolicy) -> std::io::Result<UnixDatagram> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let sock = UnixDatagram::bind(path)?;
    sock.set_nonblocking(true)?;
    std::os::unix::fs::chown(path, Some(task.credentials.uid), Some(task.credentials.gid))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(sock)
}

/// Reads every pending datagram; true if one of them said `READY=1` (the sd_notify
/// convention: newline-separated assignments).
fn notified_ready(sock: &UnixDatagram) -> bool {
    let mut buf = [0u8; 1024];
    let mut ready = false;
    while let Ok(n) = sock.recv(&mut buf) {
        let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
        ready |= text.lines().any(|l| l.trim() == "READY=1");
    }
    ready
}

/// `oom_kill` of a cgroup's `memory.events`.
fn oom_kills(cgroup: &Path) -> u64 {
    std::fs::read_to_string(cgroup.join("memory.events"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or(0)
}

/// Why island mode began, for the console.
fn island_reason(reason: &IslandReason) -> String {
    match reason {
        IslandReason::SupportEnded { until, earliest } => {
            format!("support ended at {until} (earliest time {earliest})")
        }
        IslandReason::Stale {
            since_fresh,
            freshness,
        } => {
            format!("no fresh signed metadata for {since_fresh} of uptime (freshness {freshness})")
        }
    }
}

fn describe(after: AfterExit) -> String {
    match after {
        AfterExit::RestartAt(at) => format!("restart at {} ms", at.0),
        AfterExit::Exited => "not restarted (policy)".into(),
        AfterExit::CrashLoop { failures } => {
            format!("crash loop after {failures} failures: not restarted until reboot")
        }
        AfterExit::NotATask => "not a task".into(),
        AfterExit::Stopped => "stopped".into(),
        AfterExit::Parked => "stopped for island mode, not restarted while it lasts".into(),
    }
}

/// Reads what a pipe has: the complete lines, and whether the pipe is closed (then its
/// unfinished last line is among them).
fn drain(pipe: &mut Pipe) -> (Vec<String>, bool) {
    let mut buf = [0u8; 4096];
    let mut lines = Vec::new();
    loop {
        match rustix::io::read(pipe.fd.as_fd(), &mut buf) {
            Ok(0) => {
                lines.extend(pipe.lines.finish());
                return (lines, true);
            }
            Ok(n) => lines.extend(pipe.lines.push(buf.get(..n).unwrap_or_default())),
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => return (lines, false),
            Err(_) => return (lines, true),
        }
    }
}

#[cfg(test)]
mod tests;
