//! The health gate of a trial slot: when a slot booted as a trial is committed, and when it
//! is given up. Pure: it is shown the supervisor's records at a time and answers.
//!
//! Rules (also in docs/update.md):
//! - a task is *up* when it runs and is ready, or when it ended by its policy after exiting
//!   with code 0 (a one-shot job that did its work);
//! - a task is *failed* when it is in a crash loop, or ended by its policy after a failure
//!   (a non-zero exit, a signal, or exit code 125 after an error): the trial is rolled back at
//!   once, there is nothing to wait for;
//! - the trial is committed once every task has been up, without any restart, for the health
//!   period: the period restarts whenever a task is seen not up, and from the latest
//!   (re)start of any task;
//! - a trial that is not committed within the health timeout (counted from the first
//!   observation, when PID 1 starts the tasks) is rolled back.

use std::time::Duration;

use crate::supervisor::{Exit, Millis, Ready, TaskRecord, TaskState};

/// What the gate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep watching; look again at the given time at the latest.
    Wait(Millis),
    /// Every task has been up for the health period: commit the trial.
    Commit,
    /// The trial failed: roll it back.
    RollBack(Failure),
}

/// Why a trial failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// A task failed for good (crash loop, or a failed exit that is not restarted).
    #[error("task {task} {why}")]
    Unhealthy { task: String, why: String },
    /// Not healthy within the health timeout.
    #[error("not healthy within {} s", after.as_secs())]
    Timeout { after: Duration },
}

/// The gate for one boot of a trial slot.
#[derive(Debug, Clone)]
pub struct HealthGate {
    period: Duration,
    timeout: Duration,
    started: Option<Millis>,
    /// Since when every task has been seen up, if it is now.
    all_up_since: Option<Millis>,
    /// Sum of every task's starts at the last look: a change means a restart.
    starts: u64,
}

impl HealthGate {
    pub fn new(period: Duration, timeout: Duration) -> Self {
        HealthGate {
            period,
            timeout,
            started: None,
            all_up_since: None,
            starts: 0,
        }
    }

    /// Looks at the tasks at `now`.
    pub fn observe(&mut self, now: Millis, tasks: &[TaskRecord]) -> Verdict {
        let started = *self.started.get_or_insert(now);
        for t in tasks {
            if let Some(why) = failed(t) {
                return Verdict::RollBack(Failure::Unhealthy {
                    task: t.name.clone(),
                    why,
                });
            }
        }
        let starts: u64 = tasks.iter().map(|t| u64::from(t.starts)).sum();
        let restarted = starts != self.starts;
        self.starts = starts;
        let all_up = tasks.iter().all(up);
        self.all_up_since = match (all_up, self.all_up_since) {
            (false, _) => None,
            (true, Some(since)) if !restarted => Some(since),
            (true, _) => Some(now),
        };
        if let Some(since) = self.all_up_since {
            // A task's own start counts too: a quick restart between two looks is caught
            // by `starts`, and its `since` moves the period's start.
            let latest_start = tasks
                .iter()
                .filter_map(|t| match t.state {
                    TaskState::Running { since, .. } => Some(since),
                    _ => None,
                })
                .max()
                .unwrap_or(since);
            let from = since.max(latest_start);
            if now >= from.plus(self.period) {
                return Verdict::Commit;
            }
            let deadline = started.plus(self.timeout);
            if now >= deadline {
                return Verdict::RollBack(Failure::Timeout {
                    after: self.timeout,
                });
            }
            return Verdict::Wait(from.plus(self.period).min(deadline));
        }
        let deadline = started.plus(self.timeout);
        if now >= deadline {
            return Verdict::RollBack(Failure::Timeout {
                after: self.timeout,
            });
        }
        Verdict::Wait(deadline)
    }
}

fn up(t: &TaskRecord) -> bool {
    match t.state {
        TaskState::Running { ready, .. } => ready == Ready::Yes,
        // Stopped for island mode: not a fault of the slot; the kept tasks show its health.
        TaskState::Island => true,
        TaskState::Exited => t.last_exit == Some(Exit::Code(0)),
        _ => false,
    }
}

fn failed(t: &TaskRecord) -> Option<String> {
    match t.state {
        TaskState::CrashLoop => Some("is in a crash loop".to_owned()),
        TaskState::Exited => match t.last_exit {
            Some(Exit::Code(0)) => None,
            Some(Exit::Code(c)) => Some(format!("exited with code {c} and is not restarted")),
            Some(Exit::Signal(s)) => Some(format!("was killed by signal {s} and is not restarted")),
            None => Some("could not be started".to_owned()),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::{Needs, Supervisor, TaskSpec};
    use limpet_policy::{ReadinessCheck, Restart, RestartWhen};

    fn spec(name: &str, when: RestartWhen) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            restart: Restart {
                when,
                backoff_initial_ms: 100,
                backoff_max_ms: 5000,
                crash_loop_limit: 3,
            },
            readiness: ReadinessCheck::Started,
            needs: Needs::Nothing,
        }
    }

    const PERIOD: Duration = Duration::from_secs(10);
    const TIMEOUT: Duration = Duration::from_secs(60);

    #[test]
    fn commits_after_the_period_of_everything_up() {
        let mut s = Supervisor::new(vec![spec("a", RestartWhen::Always)]);
        let mut g = HealthGate::new(PERIOD, TIMEOUT);
        assert_eq!(
            g.observe(Millis(0), s.records()),
            Verdict::Wait(Millis(60_000))
        );
        s.started(0, 10, Millis(100));
        assert_eq!(
            g.observe(Millis(100), s.records()),
            Verdict::Wait(Millis(10_100))
        );
        assert_eq!(
            g.observe(Millis(10_099), s.records()),
            Verdict::Wait(Millis(10_100))
        );
        assert_eq!(g.observe(Millis(10_100), s.records()), Verdict::Commit);
    }

    #[test]
    fn a_restart_starts_the_period_again() {
        let mut s = Supervisor::new(vec![spec("a", RestartWhen::Always)]);
        let mut g = HealthGate::new(PERIOD, TIMEOUT);
        s.started(0, 10, Millis(0));
        assert!(matches!(
            g.observe(Millis(0), s.records()),
            Verdict::Wait(_)
        ));
        // Crashes at 9 s and is back at 9.1 s, between two looks.
        s.exited(10, Exit::Code(1), Millis(9_000));
        s.started(0, 11, Millis(9_100));
        assert_eq!(
            g.observe(Millis(9_500), s.records()),
            Verdict::Wait(Millis(19_500))
        );
        assert_eq!(
            g.observe(Millis(19_499), s.records()),
            Verdict::Wait(Millis(19_500))
        );
        assert_eq!(g.observe(Millis(19_500), s.records()), Verdict::Commit);
    }

    #[test]
    fn a_crash_loop_rolls_back_at_once() {
        let mut s = Supervisor::new(vec![spec("a", RestartWhen::Always)]);
        let mut g = HealthGate::new(PERIOD, TIMEOUT);
        let mut now = 0;
        for pid in 1..=3 {
            s.started(0, pid, Millis(now));
            assert!(matches!(
                g.observe(Millis(now), s.records()),
                Verdict::Wait(_)
            ));
            now += 10;
            s.exited(pid, Exit::Signal(11), Millis(now));
            now += 1_000;
        }
        assert_eq!(
            g.observe(Millis(now), s.records()),
            Verdict::RollBack(Failure::Unhealthy {
                task: "a".into(),
                why: "is in a crash loop".into()
            })
        );
    }

    #[test]
    fn a_one_shot_success_is_up_and_a_failure_is_not() {
        let mut s = Supervisor::new(vec![
            spec("job", RestartWhen::OnFailure),
            spec("b", RestartWhen::Never),
        ]);
        let mut g = HealthGate::new(PERIOD, TIMEOUT);
        s.started(0, 1, Millis(0));
        s.exited(1, Exit::Code(0), Millis(50));
        s.started(1, 2, Millis(60));
        assert_eq!(
            g.observe(Millis(60), s.records()),
            Verdict::Wait(Millis(10_060))
        );
        s.exited(2, Exit::Code(3), Millis(70));
        assert_eq!(
            g.observe(Millis(80), s.records()),
            Verdict::RollBack(Failure::Unhealthy {
                task: "b".into(),
                why: "exited with code 3 and is not restarted".into()
            })
        );
    }

    #[test]
    fn never_ready_times_out() {
        let mut s = Supervisor::new(vec![TaskSpec {
            readiness: ReadinessCheck::Notify {
                timeout_ms: 600_000,
                socket: "/run/limpet/notify/a.sock".into(),
            },
            ..spec("a", RestartWhen::Always)
        }]);
        let mut g = HealthGate::new(PERIOD, TIMEOUT);
        s.started(0, 1, Millis(0));
        assert_eq!(
            g.observe(Millis(0), s.records()),
            Verdict::Wait(Millis(60_000))
        );
        assert_eq!(
            g.observe(Millis(60_000), s.records()),
            Verdict::RollBack(Failure::Timeout { after: TIMEOUT })
        );
    }
}
