//! The supervisor's decisions: when a task starts, restarts, or is given up on. Pure: it
//! is told what happened (a task started, a task exited, time passed) and answers what to
//! do; the event loop in `runtime` makes the system calls.
//!
//! Rules this module keeps (after gokrazy's `supervise.go` and Hubris's `jefe`):
//! - tasks start in declared order, and stop in reverse order: a task starts once every
//!   task declared before it is ready (`readiness = "started"`: as soon as it runs;
//!   `"notify"`: when it sends `READY=1`) or has ended for good (exited by policy, crash
//!   loop), so one broken task cannot hold the others back forever;
//! - a task that declares egress (`[[task.egress]]`) does not start before the device's
//!   network is up ([`Supervisor::network_up`]), nor later than the deadline given to
//!   [`Supervisor::wait_for_network`]: then it starts anyway. While it waits it does not
//!   hold back the tasks declared after it: they do not need what it waits for. Only the
//!   first start waits; a restart does not;
//! - a `notify` task that is not ready within its timeout is killed, which counts as a
//!   failure like any other exit;
//! - `restart = "always"` restarts after any exit, `on-failure` after a non-zero exit or a
//!   signal, `never` never; whatever the policy, exit code [`EXIT_DO_NOT_RESTART`] means
//!   "do not restart me";
//! - a restart waits `backoff_initial * 2^(failures - 1)`, capped at `backoff_max`;
//! - a run that lasted at least `backoff_max` was healthy: it resets the failure count;
//! - `crash_loop_limit` consecutive quick failures put the task in `CrashLoop`: it is not
//!   restarted again until the next boot, and the status file says so;
//! - island mode ([`Supervisor::enter_island`]) stops every task it does not keep: a
//!   running one is signalled and, once it exits, parked (`Island`); a pending or backing
//!   off one is parked at once. A parked task is not restarted and holds back no later
//!   task. Leaving island mode ([`Supervisor::leave_island`]) makes each parked task
//!   pending again, so they start again in declared order; one still stopping is pending
//!   once it exits. A task that exited by its policy or is in a crash loop stays so;
//! - the supervisor never blocks on a task: every decision is a value, every wait has a
//!   deadline the event loop computes from [`Supervisor::next_deadline`].

use std::time::Duration;

use limpet_policy::NetPolicy;
use limpet_policy::{ReadinessCheck, Restart, RestartWhen, TaskPolicy};

/// Exit code with which a task asks not to be restarted (gokrazy's convention).
pub const EXIT_DO_NOT_RESTART: i32 = 125;

/// Monotonic time since boot, in milliseconds (CLOCK_BOOTTIME on the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Millis(pub u64);

impl Millis {
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
    fn since(self, earlier: Self) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// What the supervisor needs to know about one task: the compiled policy's own restart
/// and readiness rules, and what its first start waits for.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub name: String,
    pub restart: Restart,
    pub readiness: ReadinessCheck,
    pub needs: Needs,
}

impl TaskSpec {
    /// The spec of `task`; `network` is the device's network policy, if it has one.
    pub fn new(task: &TaskPolicy, network: Option<&NetPolicy>) -> Self {
        let egress = network
            .and_then(|n| n.tasks.iter().find(|t| t.name == task.name))
            .is_some_and(|t| !t.egress.is_empty());
        TaskSpec {
            name: task.name.clone(),
            restart: task.restart,
            readiness: task.readiness.clone(),
            needs: if egress {
                Needs::Network
            } else {
                Needs::Nothing
            },
        }
    }

    fn backoff_initial(&self) -> Duration {
        Duration::from_millis(self.restart.backoff_initial_ms)
    }

    fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.restart.backoff_max_ms)
    }
}

/// What a task's first start waits for, besides the tasks declared before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// It declares egress: the device's network must be up (or the wait over).
    Network,
}

/// Whether tasks that need the network may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NetworkGate {
    /// Up, or nothing to wait for (no network, or it failed to start).
    Open,
    /// Not up yet; tasks that need it start anyway at this time.
    WaitUntil(Millis),
}

/// How a task's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    fn is_failure(self) -> bool {
        !matches!(self, Exit::Code(0))
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TaskState {
    /// Not started yet (waiting for the tasks declared before it).
    Pending,
    Running {
        pid: i32,
        since: Millis,
        ready: Ready,
    },
    /// Waiting to be restarted at `at`.
    Backoff {
        at: Millis,
    },
    /// Ended and, by its policy, not restarted.
    Exited,
    /// Failed `crash_loop_limit` times in a row: given up until the next boot.
    CrashLoop,
    /// Being stopped at shutdown.
    Stopping {
        pid: i32,
    },
    Stopped,
    /// Being stopped for island mode.
    IslandStopping {
        pid: i32,
    },
    /// Stopped for island mode: not restarted while it lasts.
    Island,
}

/// Whether a running task has reported ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ready {
    Yes,
    /// Waiting for `READY=1` until the deadline.
    WaitingUntil(Millis),
    /// The deadline passed; the task is being killed.
    TimedOut,
}

/// One task's record, as the status file shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskRecord {
    pub name: String,
    #[serde(flatten)]
    pub state: TaskState,
    pub starts: u32,
    pub restarts: u32,
    pub consecutive_failures: u32,
    pub last_exit: Option<Exit>,
    #[serde(skip)]
    spec: TaskSpec,
}

impl TaskRecord {
    /// Up (running and ready) or gone for good: later tasks need not wait for it.
    fn settled(&self) -> bool {
        matches!(
            self.state,
            TaskState::Running {
                ready: Ready::Yes,
                ..
            } | TaskState::Exited
                | TaskState::CrashLoop
                | TaskState::Stopped
                | TaskState::Island
                | TaskState::IslandStopping { .. }
        )
    }

    /// The task's process id while it runs or stops.
    pub fn pid(&self) -> Option<i32> {
        match self.state {
            TaskState::Running { pid, .. }
            | TaskState::Stopping { pid }
            | TaskState::IslandStopping { pid } => Some(pid),
            _ => None,
        }
    }
}

/// What the event loop must do after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    RestartAt(Millis),
    Exited,
    CrashLoop {
        failures: u32,
    },
    /// The pid was not a task's (an orphan reparented to PID 1): just reaped.
    NotATask,
    /// A task stopped during shutdown.
    Stopped,
    /// A task stopped for island mode: parked, or pending again if island mode ended
    /// while it stopped.
    Parked,
}

/// The supervisor's view of every task.
#[derive(Debug)]
pub struct Supervisor {
    tasks: Vec<TaskRecord>,
    shutting_down: bool,
    network: NetworkGate,
    /// Whether the device is in island mode.
    island: bool,
}

impl Supervisor {
    pub fn new(specs: Vec<TaskSpec>) -> Self {
        let tasks = specs
            .into_iter()
            .map(|spec| TaskRecord {
                name: spec.name.clone(),
                state: TaskState::Pending,
                starts: 0,
                restarts: 0,
                consecutive_failures: 0,
                last_exit: None,
                spec,
            })
            .collect();
        Self {
            tasks,
            shutting_down: false,
            network: NetworkGate::Open,
            island: false,
        }
    }

    /// Island mode begins: every task `keeps` does not keep is stopped (see the module
    /// doc). Returns the pids to signal, in reverse declared order.
    pub fn enter_island(&mut self, keeps: impl Fn(&str) -> bool) -> Vec<(String, i32)> {
        self.island = true;
        let mut pids = Vec::new();
        if self.shutting_down {
            return pids;
        }
        for task in self.tasks.iter_mut().rev() {
            if keeps(&task.name) {
                continue;
            }
            match task.state {
                TaskState::Running { pid, .. } => {
                    task.state = TaskState::IslandStopping { pid };
                    pids.push((task.name.clone(), pid));
                }
                TaskState::Pending | TaskState::Backoff { .. } => task.state = TaskState::Island,
                _ => {}
            }
        }
        pids
    }

    /// Island mode ends: every parked task is pending again and starts in declared order.
    pub fn leave_island(&mut self) {
        self.island = false;
        for task in &mut self.tasks {
            if task.state == TaskState::Island {
                task.state = TaskState::Pending;
            }
        }
    }

    /// The pids still being stopped for island mode, to kill when their grace ends.
    pub fn island_stragglers(&self) -> Vec<i32> {
        self.tasks
            .iter()
            .filter_map(|t| match t.state {
                TaskState::IslandStopping { pid } => Some(pid),
                _ => None,
            })
            .collect()
    }

    pub fn records(&self) -> &[TaskRecord] {
        &self.tasks
    }

    /// The network is not up yet: tasks that need it wait, at most until `until`.
    pub fn wait_for_network(&mut self, until: Millis) {
        self.network = NetworkGate::WaitUntil(until);
    }

    /// The network is up: tasks that need it may start.
    pub fn network_up(&mut self) {
        self.network = NetworkGate::Open;
    }

    /// Whether task `index` needs the network and it is not up (its start is forced by
    /// the end of the wait, if it starts now).
    pub fn starts_without_network(&self, index: usize) -> bool {
        self.network != NetworkGate::Open
            && self
                .tasks
                .get(index)
                .is_some_and(|t| t.spec.needs == Needs::Network)
    }

    /// The tasks to start now, in declared order: every pending task (initial start) and
    /// every task whose backoff has expired. Nothing starts during shutdown.
    pub fn due(&self, now: Millis) -> Vec<usize> {
        self.plan(now).0
    }

    /// The pending tasks that would start now but wait for the network.
    pub fn held(&self, now: Millis) -> Vec<usize> {
        self.plan(now).1
    }

    /// (due, held for the network).
    fn plan(&self, now: Millis) -> (Vec<usize>, Vec<usize>) {
        let (mut due, mut held) = (Vec::new(), Vec::new());
        if self.shutting_down {
            return (due, held);
        }
        let network_closed = matches!(self.network, NetworkGate::WaitUntil(at) if now < at);
        // Declared order: a pending task waits for every earlier task to be up or gone,
        // or held for the network (which it does not need for that).
        let mut earlier_settled = true;
        for (i, t) in self.tasks.iter().enumerate() {
            let mut is_held = false;
            match t.state {
                TaskState::Pending if earlier_settled => {
                    if network_closed && t.spec.needs == Needs::Network {
                        held.push(i);
                        is_held = true;
                    } else {
                        due.push(i);
                    }
                }
                TaskState::Backoff { at } if at <= now => due.push(i),
                _ => {}
            }
            earlier_settled &= is_held || t.settled();
        }
        (due, held)
    }

    /// Records that the task running as `pid` reported ready; returns its name the first
    /// time.
    pub fn ready(&mut self, index: usize) -> Option<&str> {
        let task = self.tasks.get_mut(index)?;
        match &mut task.state {
            TaskState::Running { ready, .. } if *ready != Ready::Yes => {
                *ready = Ready::Yes;
                Some(task.name.as_str())
            }
            _ => None,
        }
    }

    /// The `notify` tasks whose readiness deadline has passed, each returned once (the
    /// caller kills them; their exit then counts as a failure).
    pub fn readiness_overdue(&mut self, now: Millis) -> Vec<(String, i32)> {
        let mut overdue = Vec::new();
        for t in &mut self.tasks {
            if let TaskState::Running { pid, ready, .. } = &mut t.state {
                if matches!(ready, Ready::WaitingUntil(at) if *at <= now) {
                    *ready = Ready::TimedOut;
                    overdue.push((t.name.clone(), *pid));
                }
            }
        }
        overdue
    }

    /// Records that task `index` was started as `pid`.
    pub fn started(&mut self, index: usize, pid: i32, now: Millis) {
        if let Some(task) = self.tasks.get_mut(index) {
            if matches!(task.state, TaskState::Backoff { .. }) {
                task.restarts += 1;
            }
            task.starts += 1;
            let ready = match task.spec.readiness {
                ReadinessCheck::Started => Ready::Yes,
                ReadinessCheck::Notify { timeout_ms, .. } => {
                    Ready::WaitingUntil(now.plus(Duration::from_millis(timeout_ms)))
                }
            };
            task.state = TaskState::Running {
                pid,
                since: now,
                ready,
            };
        }
    }

    /// Records that starting task `index` failed (exec error, sandbox error): counted as a
    /// failure with the same backoff as a crash.
    pub fn start_failed(&mut self, index: usize, now: Millis) -> AfterExit {
        let Some(task) = self.tasks.get_mut(index) else {
            return AfterExit::NotATask;
        };
        task.last_exit = None;
        Self::fail(task, now, Duration::ZERO)
    }

    /// Records that `pid` ended with `exit`, and decides what follows.
    pub fn exited(&mut self, pid: i32, exit: Exit, now: Millis) -> AfterExit {
        let shutting_down = self.shutting_down;
        let island = self.island;
        let Some(task) = self.tasks.iter_mut().find(|t| match t.state {
            TaskState::Running { pid: p, .. }
            | TaskState::Stopping { pid: p }
            | TaskState::IslandStopping { pid: p } => p == pid,
            _ => false,
        }) else {
            return AfterExit::NotATask;
        };
        task.last_exit = Some(exit);
        let ran_for = match task.state {
            TaskState::Running { since, .. } => now.since(since),
            _ => Duration::ZERO,
        };
        if shutting_down || matches!(task.state, TaskState::Stopping { .. }) {
            task.state = TaskState::Stopped;
            return AfterExit::Stopped;
        }
        if matches!(task.state, TaskState::IslandStopping { .. }) {
            task.state = if island {
                TaskState::Island
            } else {
                TaskState::Pending
            };
            return AfterExit::Parked;
        }
        let restart = exit != Exit::Code(EXIT_DO_NOT_RESTART)
            && match task.spec.restart.when {
                RestartWhen::Always => true,
                RestartWhen::OnFailure => exit.is_failure(),
                RestartWhen::Never => false,
            };
        if !restart {
            task.state = TaskState::Exited;
            return AfterExit::Exited;
        }
        if !exit.is_failure() && ran_for >= task.spec.backoff_max() {
            task.consecutive_failures = 0;
        }
        Self::fail(task, now, ran_for)
    }

    fn fail(task: &mut TaskRecord, now: Millis, ran_for: Duration) -> AfterExit {
        if ran_for >= task.spec.backoff_max() {
            // A long, healthy run: this failure starts a new series.
            task.consecutive_failures = 0;
        }
        task.consecutive_failures += 1;
        if task.consecutive_failures >= task.spec.restart.crash_loop_limit {
            task.state = TaskState::CrashLoop;
            return AfterExit::CrashLoop {
                failures: task.consecutive_failures,
            };
        }
        let at = now.plus(backoff(&task.spec, task.consecutive_failures));
        task.state = TaskState::Backoff { at };
        AfterExit::RestartAt(at)
    }

    /// The earliest time the event loop must wake up for, if any.
    pub fn next_deadline(&self) -> Option<Millis> {
        let network = match self.network {
            NetworkGate::WaitUntil(at)
                if self
                    .tasks
                    .iter()
                    .any(|t| t.state == TaskState::Pending && t.spec.needs == Needs::Network) =>
            {
                Some(at)
            }
            _ => None,
        };
        self.tasks
            .iter()
            .filter_map(|t| match t.state {
                TaskState::Backoff { at } => Some(at),
                TaskState::Running {
                    ready: Ready::WaitingUntil(at),
                    ..
                } => Some(at),
                _ => None,
            })
            .chain(network)
            .min()
    }

    /// Begins shutdown: returns the pids to signal, in reverse declared order, and marks
    /// those tasks stopping. Tasks waiting in backoff are simply not restarted.
    pub fn begin_shutdown(&mut self) -> Vec<(String, i32)> {
        self.shutting_down = true;
        let mut pids = Vec::new();
        for task in self.tasks.iter_mut().rev() {
            match task.state {
                TaskState::Running { pid, .. } => {
                    task.state = TaskState::Stopping { pid };
                    pids.push((task.name.clone(), pid));
                }
                // Already signalled: now it stops for the shutdown.
                TaskState::IslandStopping { pid } => task.state = TaskState::Stopping { pid },
                TaskState::Backoff { .. } | TaskState::Pending | TaskState::Island => {
                    task.state = TaskState::Stopped
                }
                _ => {}
            }
        }
        pids
    }

    /// Whether every task has stopped (shutdown may proceed).
    pub fn all_stopped(&self) -> bool {
        self.tasks.iter().all(|t| {
            !matches!(
                t.state,
                TaskState::Running { .. }
                    | TaskState::Stopping { .. }
                    | TaskState::IslandStopping { .. }
            )
        })
    }

    /// The pids still alive during shutdown, to kill when the grace period ends.
    pub fn stragglers(&self) -> Vec<i32> {
        self.tasks
            .iter()
            .filter_map(|t| match t.state {
                TaskState::Stopping { pid }
                | TaskState::Running { pid, .. }
                | TaskState::IslandStopping { pid } => Some(pid),
                _ => None,
            })
            .collect()
    }
}

/// Delay before restart number `failures` (1-based): doubling from `backoff_initial`,
/// capped at `backoff_max`.
pub fn backoff(spec: &TaskSpec, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    spec.backoff_initial()
        .saturating_mul(1u32 << doublings)
        .min(spec.backoff_max())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(when: RestartWhen) -> TaskSpec {
        TaskSpec {
            name: "t".into(),
            restart: Restart {
                when,
                backoff_initial_ms: 1000,
                backoff_max_ms: 60_000,
                crash_loop_limit: 5,
            },
            readiness: ReadinessCheck::Started,
            needs: Needs::Nothing,
        }
    }

    fn notify(timeout_ms: u64) -> ReadinessCheck {
        ReadinessCheck::Notify {
            timeout_ms,
            socket: "/run/limpet/notify/t.sock".into(),
        }
    }

    #[test]
    fn declared_order_waits_for_readiness() {
        let mut a = spec(RestartWhen::Always);
        a.name = "a".into();
        a.readiness = notify(10_000);
        let mut b = spec(RestartWhen::Always);
        b.name = "b".into();
        let mut sup = Supervisor::new(vec![a, b]);
        assert_eq!(sup.due(Millis(0)), [0], "b waits for a");
        sup.started(0, 1, Millis(0));
        assert!(sup.due(Millis(5)).is_empty(), "a is not ready yet");
        assert_eq!(sup.next_deadline(), Some(Millis(10_000)));
        assert_eq!(sup.ready(0), Some("a"));
        assert_eq!(sup.ready(0), None, "reported once");
        assert_eq!(sup.due(Millis(6)), [1]);
    }

    #[test]
    fn a_task_not_ready_in_time_is_overdue_and_does_not_block_forever() {
        let mut a = spec(RestartWhen::Never);
        a.readiness = notify(1000);
        let b = spec(RestartWhen::Always);
        let mut sup = Supervisor::new(vec![a, b]);
        sup.started(0, 7, Millis(0));
        assert!(sup.readiness_overdue(Millis(999)).is_empty());
        assert_eq!(sup.readiness_overdue(Millis(1000)), [("t".to_owned(), 7)]);
        assert!(
            sup.readiness_overdue(Millis(1001)).is_empty(),
            "reported once"
        );
        // Killed by the loop; with restart = never it is gone for good and b may start.
        assert_eq!(
            sup.exited(7, Exit::Signal(9), Millis(1001)),
            AfterExit::Exited
        );
        assert_eq!(sup.due(Millis(1001)), [1]);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let s = spec(RestartWhen::Always);
        let delays: Vec<u64> = (1..=8).map(|n| backoff(&s, n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(&s, u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn crash_loop_stops_restarts_at_the_limit() {
        let mut sup = Supervisor::new(vec![spec(RestartWhen::Always)]);
        let mut now = Millis(0);
        let mut outcomes = Vec::new();
        for pid in 1..=5 {
            assert_eq!(sup.due(now), [0]);
            sup.started(0, pid, now);
            now = Millis(now.0 + 100);
            outcomes.push(sup.exited(pid, Exit::Code(1), now));
            if let AfterExit::RestartAt(at) = outcomes[outcomes.len() - 1] {
                assert!(
                    sup.due(Millis(at.0 - 1)).is_empty(),
                    "not due before its backoff"
                );
                now = at;
            }
        }
        assert_eq!(outcomes[0], AfterExit::RestartAt(Millis(100 + 1000)));
        assert_eq!(outcomes[4], AfterExit::CrashLoop { failures: 5 });
        assert_eq!(sup.records()[0].state, TaskState::CrashLoop);
        assert_eq!(sup.records()[0].restarts, 4);
        assert!(sup.due(Millis(u64::MAX)).is_empty());
    }

    #[test]
    fn a_long_run_resets_the_failure_count() {
        let mut sup = Supervisor::new(vec![spec(RestartWhen::Always)]);
        sup.started(0, 10, Millis(0));
        sup.exited(10, Exit::Signal(9), Millis(10));
        sup.started(0, 11, Millis(2_000));
        // Ran for two minutes: healthy, so the next failure is the first of a series.
        assert_eq!(
            sup.exited(11, Exit::Signal(9), Millis(122_000)),
            AfterExit::RestartAt(Millis(123_000))
        );
        assert_eq!(sup.records()[0].consecutive_failures, 1);
    }

    #[test]
    fn policies_decide_restarts() {
        let mut on_failure = Supervisor::new(vec![spec(RestartWhen::OnFailure)]);
        on_failure.started(0, 1, Millis(0));
        assert_eq!(
            on_failure.exited(1, Exit::Code(0), Millis(5)),
            AfterExit::Exited
        );

        let mut never = Supervisor::new(vec![spec(RestartWhen::Never)]);
        never.started(0, 1, Millis(0));
        assert_eq!(
            never.exited(1, Exit::Signal(11), Millis(5)),
            AfterExit::Exited
        );

        let mut always = Supervisor::new(vec![spec(RestartWhen::Always)]);
        always.started(0, 1, Millis(0));
        assert_eq!(
            always.exited(1, Exit::Code(EXIT_DO_NOT_RESTART), Millis(5)),
            AfterExit::Exited
        );
    }

    #[test]
    fn unknown_pids_are_orphans() {
        let mut sup = Supervisor::new(vec![spec(RestartWhen::Always)]);
        assert_eq!(
            sup.exited(4242, Exit::Code(0), Millis(0)),
            AfterExit::NotATask
        );
    }

    #[test]
    fn shutdown_stops_in_reverse_order_and_starts_nothing() {
        let mut a = spec(RestartWhen::Always);
        a.name = "a".into();
        let mut b = spec(RestartWhen::Always);
        b.name = "b".into();
        let mut sup = Supervisor::new(vec![a, b]);
        sup.started(0, 1, Millis(0));
        sup.started(1, 2, Millis(0));
        let order = sup.begin_shutdown();
        assert_eq!(order, [("b".to_owned(), 2), ("a".to_owned(), 1)]);
        assert!(sup.due(Millis(0)).is_empty());
        assert!(!sup.all_stopped());
        assert_eq!(
            sup.exited(2, Exit::Signal(15), Millis(1)),
            AfterExit::Stopped
        );
        assert_eq!(sup.stragglers(), [1]);
        sup.exited(1, Exit::Signal(15), Millis(2));
        assert!(sup.all_stopped());
    }

    #[test]
    fn egress_tasks_wait_for_the_network_and_hold_no_one_back() {
        let mut net = spec(RestartWhen::Always);
        net.name = "uplink".into();
        net.needs = Needs::Network;
        let mut local = spec(RestartWhen::Always);
        local.name = "sensor".into();
        let mut sup = Supervisor::new(vec![net, local]);
        sup.wait_for_network(Millis(30_000));
        assert!(sup.starts_without_network(0));
        assert!(!sup.starts_without_network(1));
        assert_eq!(sup.held(Millis(0)), [0]);
        assert_eq!(
            sup.due(Millis(0)),
            [1],
            "the task without egress starts at once"
        );
        assert_eq!(sup.next_deadline(), Some(Millis(30_000)));
        sup.started(1, 2, Millis(0));
        assert!(sup.due(Millis(100)).is_empty());
        sup.network_up();
        assert!(sup.held(Millis(200)).is_empty());
        assert_eq!(sup.due(Millis(200)), [0]);
        assert!(!sup.starts_without_network(0));
        sup.started(0, 1, Millis(200));
        assert_eq!(sup.next_deadline(), None);
    }

    #[test]
    fn the_network_wait_is_bounded() {
        let mut net = spec(RestartWhen::Always);
        net.needs = Needs::Network;
        let mut sup = Supervisor::new(vec![net]);
        sup.wait_for_network(Millis(30_000));
        assert!(sup.due(Millis(29_999)).is_empty());
        assert_eq!(sup.due(Millis(30_000)), [0], "started anyway");
        assert!(sup.held(Millis(30_000)).is_empty());
        assert!(sup.starts_without_network(0), "and the caller can say so");
    }

    fn named(name: &str) -> TaskSpec {
        let mut s = spec(RestartWhen::Always);
        s.name = name.into();
        s
    }

    /// Island mode keeping `keep`: the others stop and are not restarted, whatever their
    /// restart policy; a later task is not held back by a parked one; leaving island mode
    /// starts them again in declared order.
    #[test]
    fn island_mode_stops_what_it_does_not_keep_until_it_ends() {
        let mut sup = Supervisor::new(vec![named("a"), named("keep"), named("b"), named("c")]);
        sup.started(0, 10, Millis(0));
        sup.started(1, 11, Millis(0));
        sup.started(2, 12, Millis(0));
        assert_eq!(
            sup.exited(12, Exit::Code(1), Millis(10)),
            AfterExit::RestartAt(Millis(1010))
        );
        // a runs, keep runs, b backs off, c is pending.
        let stop = sup.enter_island(|n| n == "keep");
        assert_eq!(stop, [("a".to_owned(), 10)]);
        assert_eq!(sup.records()[2].state, TaskState::Island);
        assert_eq!(sup.records()[3].state, TaskState::Island);
        assert_eq!(sup.island_stragglers(), [10]);
        // Its exit, by SIGTERM or anything, parks it: no restart, "always" or not.
        assert_eq!(
            sup.exited(10, Exit::Signal(15), Millis(20)),
            AfterExit::Parked
        );
        assert_eq!(sup.records()[0].state, TaskState::Island);
        assert!(sup.due(Millis(5000)).is_empty(), "nothing parked starts");
        assert_eq!(sup.next_deadline(), None);
        // The kept task still restarts as its policy says.
        assert!(matches!(
            sup.exited(11, Exit::Code(1), Millis(30)),
            AfterExit::RestartAt(_)
        ));
        assert_eq!(sup.due(Millis(5000)), [1]);
        sup.started(1, 13, Millis(5000));
        // Leaving: every parked task is pending, in declared order.
        sup.leave_island();
        assert_eq!(sup.due(Millis(5001)), [0]);
        sup.started(0, 14, Millis(5001));
        assert_eq!(sup.due(Millis(5002)), [2]);
        sup.started(2, 15, Millis(5002));
        assert_eq!(sup.due(Millis(5003)), [3]);
    }

    /// Leaving island mode while a task is still stopping: it starts again once it exits.
    /// Shutdown during island mode stops everything.
    #[test]
    fn island_mode_meets_its_end_and_shutdown() {
        let mut sup = Supervisor::new(vec![named("a"), named("b")]);
        sup.started(0, 10, Millis(0));
        sup.started(1, 11, Millis(0));
        assert_eq!(sup.enter_island(|_| false).len(), 2);
        sup.leave_island();
        assert_eq!(
            sup.exited(10, Exit::Signal(15), Millis(5)),
            AfterExit::Parked
        );
        assert_eq!(sup.records()[0].state, TaskState::Pending);
        assert_eq!(sup.due(Millis(6)), [0]);
        // b is still stopping: shutdown takes it over, and ends once it exits.
        assert_eq!(sup.begin_shutdown(), []);
        assert!(!sup.all_stopped());
        assert_eq!(sup.stragglers(), [11]);
        assert_eq!(
            sup.exited(11, Exit::Signal(15), Millis(7)),
            AfterExit::Stopped
        );
        assert!(sup.all_stopped());
        // Entering island mode during shutdown signals nothing more.
        assert!(sup.enter_island(|_| false).is_empty());
    }
}
