//! The running device: start every task in its sandbox, supervise, log, and shut down.
//!
//! One thread, one loop: `poll` on the signalfd and on every task's output pipes, with
//! a timeout set by the supervisor's next deadline. The supervisor module decides; this
//! module makes the system calls.
//!
//! Shutdown (SIGTERM, SIGPWR, SIGHUP, SIGINT — which ctrl-alt-del sends once `main` has
//! turned the kernel's immediate reboot off — or the ACPI power button): tasks are
//! signalled SIGTERM in reverse declared order, given [`GRACE`] to exit, then killed; PID
//! 1 reaps them, syncs, unmounts `/data` and `/slot`, and powers off.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use limpet_policy::{DevicePolicy, ReadinessCheck, RestartWhen, TaskPolicy};
use limpet_sandbox::spawn::{self as sandbox, Roots};
use rustix::event::{PollFd, PollFlags};
use rustix::process::Signal;

use crate::console;
use crate::logs::{LineSplitter, LogFile};
use crate::network::Network;
use crate::slots::PendingTrial;
use crate::status::{SystemStatus, TrialStatus, UpdateAttempt};
use crate::supervisor::{AfterExit, Millis, Readiness, RestartPolicy, Supervisor, TaskSpec};
use crate::sys;
use crate::trial::{self, HealthGate, Verdict};
use limpet_state::FailureReason;
use limpet_update::server::{Event as UpdateEvent, UpdateServer};

/// How long tasks get to exit after SIGTERM at shutdown.
pub const GRACE: Duration = Duration::from_secs(3);
/// Where the status file is written.
pub const STATUS_FILE: &str = "run/limpet/status.json";
/// Where task logs go, under the data partition's mount point. The leading dot keeps it
/// apart from the tasks' own directories (`/data/<task>`): task names cannot start with one.
pub const LOG_DIR: &str = ".limpet/log";

/// One open output pipe of a running task.
#[derive(Debug)]
struct Pipe {
    task: usize,
    fd: OwnedFd,
    lines: LineSplitter,
}

/// The supervisor's specs from the compiled policy.
pub fn specs(policy: &DevicePolicy) -> Vec<TaskSpec> {
    policy
        .tasks
        .iter()
        .map(|t| TaskSpec {
            name: t.name.clone(),
            restart: match t.restart.when {
                RestartWhen::Always => RestartPolicy::Always,
                RestartWhen::OnFailure => RestartPolicy::OnFailure,
                RestartWhen::Never => RestartPolicy::Never,
            },
            backoff_initial: Duration::from_millis(t.restart.backoff_initial_ms),
            backoff_max: Duration::from_millis(t.restart.backoff_max_ms),
            crash_loop_limit: t.restart.crash_loop_limit,
            readiness: match &t.readiness {
                ReadinessCheck::Started => Readiness::Started,
                ReadinessCheck::Notify { timeout_ms, .. } => Readiness::Notify {
                    timeout: Duration::from_millis(*timeout_ms),
                },
            },
        })
        .collect()
}

/// How the run ended: what PID 1 does once every task has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A shutdown request: power off.
    PowerOff,
    /// A try slot failed its health gate and was rolled back: reboot into the committed
    /// slot.
    Reboot,
}

/// A try slot on probation: its health gate and the state to commit or roll back.
#[derive(Debug)]
pub struct Probation {
    pub gate: HealthGate,
    pub trial: PendingTrial,
}

/// Runs the tasks until a shutdown request; returns when every task has stopped.
pub fn run(
    root: &Path,
    policy: &DevicePolicy,
    roots: &Roots,
    mut probation: Option<Probation>,
    mut updates: Option<UpdateServer>,
    mut network: Option<Network>,
    system: &mut SystemStatus,
) -> Result<Outcome, String> {
    let signals = sys::signal_fd().map_err(|e| format!("signalfd: {e}"))?;
    if let Some(parent) = roots.work.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    sandbox::prepare(roots).map_err(|e| format!("sandbox setup: {}", crate::console::chain(&e)))?;
    let mut supervisor = Supervisor::new(specs(policy));
    let mut pipes: Vec<Pipe> = Vec::new();
    let mut cgroups: BTreeMap<i32, PathBuf> = BTreeMap::new();
    let mut oom_seen: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let mut logs: BTreeMap<usize, LogFile> = BTreeMap::new();
    let log_dir = roots.data.join(LOG_DIR);
    let mut shutdown_deadline: Option<Millis> = None;
    let mut reported_start = false;
    let buttons = crate::power_button::open(root);
    let mut notifiers: BTreeMap<usize, UnixDatagram> = BTreeMap::new();
    let mut last_status = String::new();
    let mut outcome = Outcome::PowerOff;
    let mut gate_wait: Option<Millis> = None;

    loop {
        let now = Millis(sys::boottime_ms());
        for index in supervisor.due(now) {
            let Some(task) = policy.tasks.get(index) else {
                continue;
            };
            if let ReadinessCheck::Notify { socket, .. } = &task.readiness {
                match notify_socket(Path::new(socket), task) {
                    Ok(sock) => {
                        notifiers.insert(index, sock);
                    }
                    Err(e) => console::line(&format!(
                        "limpet-init: cannot create {socket} for {}: {e}",
                        task.name
                    )),
                }
            }
            start(
                index,
                task,
                roots,
                &mut supervisor,
                &mut pipes,
                &mut cgroups,
                now,
            );
        }
        for (name, pid) in supervisor.readiness_overdue(now) {
            console::line(&format!(
                "limpet-init: {name} did not report ready in time: killing it"
            ));
            sys::signal(pid, Signal::KILL);
        }
        if !reported_start && supervisor.records().iter().all(|r| r.starts > 0) {
            // Once, after the first start of every task: the figures the boot benchmark reads.
            reported_start = true;
            console::line(&format!(
                "limpet-init: all tasks started at boottime {} ms; PID 1 Rss {} kB",
                sys::boottime_ms(),
                sys::own_rss_kb().map_or_else(|| "?".to_owned(), |kb| kb.to_string())
            ));
        }
        let mut shutdown_reason = None;
        if let (Some(p), None) = (probation.as_mut(), shutdown_deadline) {
            match p.gate.observe(now, supervisor.records()) {
                Verdict::Wait(at) => gate_wait = Some(at),
                Verdict::Commit => {
                    gate_wait = None;
                    match p.trial.commit() {
                        Ok(()) => {
                            console::line(&format!(
                                "limpet-init: every task healthy for the health period: try committed, floor now {} (boottime {} ms)",
                                p.trial.state().floor(),
                                sys::boottime_ms()
                            ));
                            system.trial = TrialStatus::Committed;
                        }
                        Err(e) => {
                            console::line(&format!("limpet-init: {e}"));
                            system.trial = TrialStatus::CommitFailed { error: e };
                        }
                    }
                    system.state = Some(p.trial.state().into());
                    probation = None;
                }
                Verdict::RollBack(failure) => {
                    gate_wait = None;
                    let reason = match failure {
                        trial::Failure::Unhealthy { .. } => FailureReason::Unhealthy,
                        trial::Failure::Timeout { .. } => FailureReason::HealthTimeout,
                    };
                    let recorded = p.trial.roll_back(reason);
                    console::line(&format!(
                        "limpet-init: try failed its health gate ({failure}){}: rebooting into the committed slot (boottime {} ms)",
                        match &recorded {
                            Ok(()) => String::new(),
                            Err(e) => format!("; {e}"),
                        },
                        sys::boottime_ms()
                    ));
                    system.trial = TrialStatus::RolledBack {
                        reason: failure.to_string(),
                    };
                    system.state = Some(p.trial.state().into());
                    outcome = Outcome::Reboot;
                    shutdown_reason = Some("rollback".to_owned());
                    probation = None;
                }
            }
        }
        if let Some(net) = &network {
            if system.network.as_ref() != Some(&net.status) {
                system.network = Some(net.status.clone());
            }
        }
        write_status(root, system, &supervisor, &mut last_status);

        if let Some(deadline) = shutdown_deadline {
            if supervisor.all_stopped() {
                return Ok(outcome);
            }
            if now >= deadline {
                for pid in supervisor.stragglers() {
                    sys::signal(pid, Signal::KILL);
                }
            }
        }

        let timeout = if shutdown_reason.is_some() {
            Some(rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            })
        } else {
            let net_wait = network.as_ref().map(|n| {
                let ms = n
                    .next_deadline()
                    .saturating_duration_since(std::time::Instant::now())
                    .as_millis();
                now.plus(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
            });
            next_timeout(
                &supervisor,
                [shutdown_deadline, gate_wait, net_wait]
                    .into_iter()
                    .flatten()
                    .min(),
                now,
            )
        };
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(pipes.len() + 1);
        fds.push(PollFd::new(&signals, PollFlags::IN));
        for button in &buttons {
            fds.push(PollFd::new(button, PollFlags::IN));
        }
        for sock in notifiers.values() {
            fds.push(PollFd::new(sock, PollFlags::IN));
        }
        if let Some(server) = &updates {
            fds.push(PollFd::new(server.pollable(), PollFlags::IN));
        }
        let net_fds = network.as_ref().map(Network::pollables).unwrap_or_default();
        for fd in &net_fds {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        for pipe in &pipes {
            fds.push(PollFd::new(&pipe.fd, PollFlags::IN));
        }
        let ready = match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => 0,
            Err(e) => return Err(format!("poll: {e}")),
        };
        let events: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
        drop(fds);
        let net_count = net_fds.len();
        drop(net_fds);
        if ready == 0 && shutdown_reason.is_none() {
            if let Some(net) = network.as_mut() {
                net.ready(&[]);
            }
            continue;
        }

        // Task output first, so a task's last lines are logged before its exit is.
        let first_notifier = 1 + buttons.len();
        let update_index = first_notifier + notifiers.len();
        let first_net = update_index + usize::from(updates.is_some());
        let first_pipe = first_net + net_count;
        let net_readable: Vec<bool> = events
            .iter()
            .skip(first_net)
            .take(net_count)
            .map(|e| !e.is_empty())
            .collect();
        let update_ready =
            updates.is_some() && events.get(update_index).is_some_and(|e| !e.is_empty());
        let readable: Vec<usize> = notifiers
            .keys()
            .zip(events.iter().skip(first_notifier))
            .filter(|(_, e)| !e.is_empty())
            .map(|(i, _)| *i)
            .collect();
        for index in readable {
            let Some(sock) = notifiers.get(&index) else {
                continue;
            };
            if notified_ready(sock) {
                if let Some(name) = supervisor.ready(index) {
                    console::line(&format!("limpet-init: {name} is ready"));
                }
            }
        }
        let mut closed = Vec::new();
        for (i, revents) in events.iter().enumerate().skip(first_pipe) {
            if revents.is_empty() {
                continue;
            }
            let Some(pipe) = pipes.get_mut(i - first_pipe) else {
                continue;
            };
            let name = policy.tasks.get(pipe.task).map_or("?", |t| t.name.as_str());
            let log = logs
                .entry(pipe.task)
                .or_insert_with(|| LogFile::open(&log_dir, name));
            if drain(pipe, name, log) {
                closed.push(i - first_pipe);
            }
        }
        for i in closed.into_iter().rev() {
            pipes.remove(i);
        }

        if let Some(net) = network.as_mut() {
            net.ready(&net_readable);
        }
        if update_ready {
            if let Some(event) = updates.as_mut().and_then(|s| s.ready(probation.is_some())) {
                let at_ms = sys::boottime_ms();
                let attempt = |version, outcome: String| UpdateAttempt {
                    version,
                    outcome,
                    at_ms,
                };
                match event {
                    UpdateEvent::Staged { version } => {
                        console::line(&format!(
                            "limpet-init: update {version} verified and staged as a try in slot {}",
                            system.other.as_ref().map_or("?", |o| o.slot.as_str())
                        ));
                        system.last_update = Some(attempt(Some(version), "staged".to_owned()));
                    }
                    UpdateEvent::Reboot => {
                        let version = system.last_update.as_ref().and_then(|a| a.version.clone());
                        system.last_update = Some(attempt(version, "reboot requested".to_owned()));
                        outcome = Outcome::Reboot;
                        shutdown_reason =
                            Some("update agent: reboot into the staged try".to_owned());
                    }
                    UpdateEvent::Failed { version, error } => {
                        console::line(&format!(
                            "limpet-init: update {} refused: {error}",
                            version.as_deref().unwrap_or("?")
                        ));
                        system.last_update = Some(attempt(version, format!("failed: {error}")));
                    }
                }
            }
        }
        for (button, revents) in buttons.iter().zip(events.iter().skip(1)) {
            if !revents.is_empty() && crate::power_button::pressed(button) {
                shutdown_reason = Some("power button".to_owned());
            }
        }
        if events.first().is_some_and(|e| !e.is_empty()) {
            for signo in sys::read_signals(&signals) {
                if signo == libc::SIGCHLD {
                    reap(&mut supervisor, &mut cgroups, &mut oom_seen);
                } else {
                    shutdown_reason = Some(format!("signal {signo}"));
                }
            }
        }
        if let (Some(reason), None) = (shutdown_reason, shutdown_deadline) {
            console::line(&format!("limpet-init: {reason}: shutting down"));
            for (name, pid) in supervisor.begin_shutdown() {
                console::line(&format!("limpet-init: stopping {name} (pid {pid})"));
                sys::signal(pid, Signal::TERM);
            }
            shutdown_deadline = Some(Millis(sys::boottime_ms()).plus(GRACE));
        }
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

fn start(
    index: usize,
    task: &TaskPolicy,
    roots: &Roots,
    supervisor: &mut Supervisor,
    pipes: &mut Vec<Pipe>,
    cgroups: &mut BTreeMap<i32, PathBuf>,
    now: Millis,
) {
    match sandbox::spawn(task, roots) {
        Ok(spawned) => {
            console::line(&format!(
                "limpet-init: started {} (pid {})",
                task.name, spawned.pid
            ));
            supervisor.started(index, spawned.pid, now);
            if let Some(cgroup) = spawned.cgroup.clone() {
                cgroups.insert(spawned.pid, cgroup);
            }
            for fd in [spawned.stdout, spawned.stderr] {
                // Never block PID 1 on a task's pipe.
                let _ = rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK);
                pipes.push(Pipe {
                    task: index,
                    fd,
                    lines: LineSplitter::default(),
                });
            }
        }
        Err(e) => {
            let after = supervisor.start_failed(index, now);
            console::line(&format!(
                "limpet-init: cannot start {}: {}; {}",
                task.name,
                console::chain(&e),
                describe(after)
            ));
        }
    }
}

fn reap(
    supervisor: &mut Supervisor,
    cgroups: &mut BTreeMap<i32, PathBuf>,
    oom_seen: &mut BTreeMap<PathBuf, u64>,
) {
    for reaped in sys::reap_all() {
        let now = Millis(sys::boottime_ms());
        let name = supervisor
            .records()
            .iter()
            .find(|r| r.pid() == Some(reaped.pid))
            .map(|r| r.name.clone());
        // The task's cgroup says whether the kernel's OOM killer ended it. The cgroup is
        // kept for the next start: the network policy recognises the task's sockets by
        // its id. So the count is compared with what earlier runs already accounted for.
        let oom = cgroups.remove(&reaped.pid).map(|cgroup| {
            let kills = oom_kills(&cgroup);
            let seen = oom_seen.insert(cgroup, kills).unwrap_or(0);
            kills.saturating_sub(seen)
        });
        let after = supervisor.exited(reaped.pid, reaped.exit, now);
        if let Some(name) = name {
            let oom = match oom {
                Some(n) if n > 0 => format!(", OOM-killed in its cgroup (memory.max) {n} time(s)"),
                _ => String::new(),
            };
            console::line(&format!(
                "limpet-init: {name} exited ({:?}{oom}); {}",
                reaped.exit,
                describe(after)
            ));
        }
    }
}

/// `oom_kill` of a cgroup's `memory.events`.
fn oom_kills(cgroup: &Path) -> u64 {
    std::fs::read_to_string(cgroup.join("memory.events"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or(0)
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
    }
}

/// Reads what a pipe has, logging complete lines. Returns true when the pipe is closed.
fn drain(pipe: &mut Pipe, name: &str, log: &mut LogFile) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(pipe.fd.as_fd(), &mut buf) {
            Ok(0) => {
                if let Some(line) = pipe.lines.finish() {
                    emit(name, &line, log);
                }
                return true;
            }
            Ok(n) => {
                for line in pipe.lines.push(buf.get(..n).unwrap_or_default()) {
                    emit(name, &line, log);
                }
            }
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => return false,
            Err(_) => return true,
        }
    }
}

fn emit(task: &str, line: &str, log: &mut LogFile) {
    console::line(&format!("[{task}] {line}"));
    log.append(line);
}

fn next_timeout(
    supervisor: &Supervisor,
    shutdown: Option<Millis>,
    now: Millis,
) -> Option<rustix::time::Timespec> {
    let deadline = match (supervisor.next_deadline(), shutdown) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }?;
    let ms = deadline.0.saturating_sub(now.0);
    Some(rustix::time::Timespec {
        tv_sec: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        tv_nsec: i64::try_from(ms % 1000 * 1_000_000).unwrap_or(0),
    })
}

/// Writes the status file atomically (temporary name, then rename) when it changed.
fn write_status(root: &Path, system: &SystemStatus, supervisor: &Supervisor, last: &mut String) {
    let status = serde_json::json!({ "system": system, "tasks": supervisor.records() }).to_string();
    if status == *last {
        return;
    }
    let path = root.join(STATUS_FILE);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension("json.tmp");
    if std::fs::write(&tmp, &status).is_ok() && std::fs::rename(&tmp, &path).is_ok() {
        *last = status;
    }
}
