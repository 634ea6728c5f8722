//! The event handlers of [`Runtime`](super::Runtime), driven without a VM: tasks are pipes,
//! the clock and signals a record ([`Fake`]), a trial's A/B record a fake too.

use super::*;
use crate::supervisor::{Exit, Needs};
use std::io::Write;

/// A [`Host`] that records what the loop did; tasks are pipes whose writing ends the
/// test holds.
#[derive(Debug, Default)]
struct Fake {
    now: u64,
    console: Vec<String>,
    signals: Vec<(i32, Signal)>,
    exits: Vec<Reaped>,
    next_pid: i32,
    /// stdout writer of each started pid.
    stdout: BTreeMap<i32, std::fs::File>,
}

impl Host for Fake {
    fn now(&self) -> Millis {
        Millis(self.now)
    }
    fn console(&mut self, line: &str) {
        self.console.push(line.to_owned());
    }
    fn spawn(&mut self, _task: &TaskPolicy) -> Result<Spawned, SpawnError> {
        let (stdout, out_w) = rustix::pipe::pipe().unwrap();
        let (stderr, _) = rustix::pipe::pipe().unwrap();
        let pid = 100 + self.next_pid;
        self.next_pid += 1;
        self.stdout.insert(pid, std::fs::File::from(out_w));
        Ok(Spawned {
            pid,
            stdout,
            stderr,
            cgroup: None,
            landlock: sandbox::Landlock::NotEnforced,
        })
    }
    fn signal(&mut self, pid: i32, signal: Signal) {
        self.signals.push((pid, signal));
    }
    fn reap(&mut self) -> Vec<Reaped> {
        std::mem::take(&mut self.exits)
    }
    fn oom_kills(&self, _cgroup: &Path) -> u64 {
        0
    }
}

/// A trial's A/B record that only remembers what it was told.
#[derive(Debug)]
struct FakeTrial {
    state: State,
    told: Vec<String>,
}

impl Trial for FakeTrial {
    fn state(&self) -> &State {
        &self.state
    }
    fn commit(&mut self) -> Result<(), TrialError> {
        self.told.push("commit".into());
        Ok(())
    }
    fn roll_back(&mut self, reason: FailureReason) -> Result<(), TrialError> {
        self.told.push(format!("roll back: {reason}"));
        Ok(())
    }
}

fn task(name: &str, readiness: serde_json::Value, when: &str) -> TaskPolicy {
    // One instruction (return 0): these tests never install it.
    let program = "0600000000000000";
    serde_json::from_value(limpet_testkit::policy::task_json(
        name, program, readiness, when,
    ))
    .unwrap()
}

fn policy(tasks: Vec<TaskPolicy>) -> DevicePolicy {
    DevicePolicy {
        format: limpet_policy::FORMAT,
        arch: limpet_policy::Arch::X86_64,
        tasks,
        trial: None,
        update_agent: None,
        remote_agent: None,
        owner_requesters: Vec::new(),
        remote_direct: None,
        network: None,
        lifecycle: None,
        island: None,
    }
}

fn started() -> serde_json::Value {
    serde_json::json!({ "kind": "started" })
}

fn system() -> SystemStatus {
    SystemStatus {
        slot: "a".into(),
        version: "0.1.0".into(),
        other: Some(crate::status::OtherSlot {
            slot: "b".into(),
            version: None,
            error: None,
        }),
        state: None,
        trial: TrialStatus::None,
        last_update: None,
        network: None,
        time: None,
        identity: None,
        roughtime: Vec::new(),
    }
}

fn runtime<'a>(
    dir: &Path,
    policy: &'a DevicePolicy,
    system: &'a mut SystemStatus,
) -> Runtime<'a, Fake> {
    Runtime::new(Fake::default(), dir, policy, dir, None, system)
}

fn has(rt: &Runtime<'_, Fake>, line: &str) -> bool {
    rt.host.console.iter().any(|l| l == line)
}

#[test]
fn the_other_slot_is_checked_the_turn_after_the_tasks_started() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(vec![task("a", started(), "always")]);
    let mut system = system();
    system.other = None;
    let mut rt = runtime(dir.path(), &policy, &mut system);
    let checked = std::rc::Rc::new(std::cell::Cell::new(false));
    let seen = checked.clone();
    rt.deferred = Some(Deferred {
        other_slot: Box::new(move || {
            seen.set(true);
            (
                crate::status::OtherSlot {
                    slot: "b".into(),
                    version: None,
                    error: Some("bad slot".into()),
                },
                "slot-b (the other slot): no valid header: bad slot".into(),
            )
        }),
    });
    // The first turn starts the task; the check waits, due at most DEFERRED_WAIT later.
    assert_eq!(rt.on_tick(), None);
    assert_eq!(rt.host.console[0], "limpet-init: started a (pid 100)");
    assert!(!checked.get(), "checked before the task had the CPU");
    let status = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(STATUS_FILE)).unwrap()).unwrap()
    };
    assert!(status(dir.path())["system"]["other"].is_null());
    let wait = rt.timeout().unwrap();
    assert!(wait <= DEFERRED_WAIT, "{wait:?}");
    // The next turn (the task's output, or the wait) runs it once, into the status.
    rt.host.now += 50;
    assert_eq!(rt.on_tick(), None);
    assert!(checked.get());
    assert!(has(
        &rt,
        "limpet-init: slot-b (the other slot): no valid header: bad slot"
    ));
    let other = &status(dir.path())["system"]["other"];
    assert_eq!(
        (other["slot"].as_str(), other["error"].as_str()),
        (Some("b"), Some("bad slot"))
    );
    assert!(rt.deferred.is_none() && rt.deferred_due.is_none());
    rt.host.now += 1000;
    assert_eq!(rt.on_tick(), None);
    let lines = rt
        .host
        .console
        .iter()
        .filter(|l| l.contains("other slot"))
        .count();
    assert_eq!(lines, 1, "checked once");
}

#[test]
fn a_shutdown_request_stops_tasks_in_reverse_order_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(vec![
        task("a", started(), "always"),
        task("b", started(), "always"),
    ]);
    let mut system = system();
    let mut rt = runtime(dir.path(), &policy, &mut system);
    assert_eq!(rt.on_tick(), None);
    assert_eq!(
        rt.host.console[..2],
        [
            "limpet-init: started a (pid 100)",
            "limpet-init: started b (pid 101)"
        ]
    );
    assert!(rt.host.console[2].starts_with("limpet-init: all tasks started at boottime"));
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(STATUS_FILE)).unwrap()).unwrap();
    assert_eq!(status["system"]["slot"], "a");
    assert_eq!(status["system"]["other"]["slot"], "b");
    let tasks = status["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[1]["name"], "b");
    assert_eq!(
        tasks[1]["state"], "running",
        "the task state is flattened in"
    );
    assert_eq!(tasks[1]["pid"], 101);
    assert_eq!(tasks[1]["starts"], 1);

    rt.on_signal(libc::SIGTERM);
    rt.on_signal(libc::SIGPWR); // a second request changes nothing
    assert_eq!(
        rt.host.console[3..],
        [
            "limpet-init: signal 15: shutting down",
            "limpet-init: stopping b (pid 101)",
            "limpet-init: stopping a (pid 100)",
        ]
    );
    assert_eq!(rt.host.signals, [(101, Signal::TERM), (100, Signal::TERM)]);
    assert_eq!(rt.timeout(), Some(GRACE));

    // b exits; a ignores SIGTERM and is killed when the grace period ends.
    rt.host.exits = vec![Reaped {
        pid: 101,
        exit: Exit::Signal(15),
    }];
    rt.on_signal(libc::SIGCHLD);
    assert!(has(&rt, "limpet-init: b exited (Signal(15)); stopped"));
    assert_eq!(rt.on_tick(), None);
    rt.host.now = 3000;
    assert_eq!(rt.on_tick(), None);
    assert_eq!(rt.host.signals.last(), Some(&(100, Signal::KILL)));
    rt.host.exits = vec![Reaped {
        pid: 100,
        exit: Exit::Signal(9),
    }];
    rt.on_signal(libc::SIGCHLD);
    assert_eq!(rt.on_tick(), Some(Outcome::PowerOff));
}

#[test]
fn task_output_is_logged_and_a_closed_pipe_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(vec![task("a", started(), "always")]);
    let mut system = system();
    let mut rt = runtime(dir.path(), &policy, &mut system);
    rt.on_tick();
    let (id, _) = rt.pipes.iter().next().map(|(id, p)| (*id, p.task)).unwrap();
    let mut out = rt.host.stdout.remove(&100).unwrap();
    out.write_all(b"one\ntw").unwrap();
    rt.on_pipe(id);
    assert!(has(&rt, "[a] one"));
    assert!(rt.pipes.contains_key(&id), "still open");
    out.write_all(b"o\nthree").unwrap();
    drop(out);
    rt.on_pipe(id);
    assert!(has(&rt, "[a] two"));
    assert!(has(&rt, "[a] three"), "the unfinished last line is kept");
    assert!(!rt.pipes.contains_key(&id), "closed: out of the poll set");
    assert_eq!(rt.poll_set().sources, [Source::Pipe(id + 1)]);
    let log = std::fs::read_to_string(dir.path().join(LOG_DIR).join("a.log")).unwrap();
    assert_eq!(log, "one\ntwo\nthree\n");
}

#[test]
fn sources_are_handled_output_first_signals_last() {
    let mut ready = [
        Source::Signals,
        Source::Button(0),
        Source::Install,
        Source::Net(network::Source::Stub),
        Source::Pipe(3),
        Source::Notify(1),
    ];
    ready.sort();
    assert_eq!(ready.first(), Some(&Source::Notify(1)));
    assert_eq!(ready.get(1), Some(&Source::Pipe(3)));
    assert_eq!(ready.last(), Some(&Source::Signals));
}

#[test]
fn a_task_not_ready_in_time_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify/a.sock");
    let readiness = serde_json::json!({
        "kind": "notify", "timeout_ms": 2000, "socket": socket.to_str().unwrap()
    });
    let policy = policy(vec![task("a", readiness, "never")]);
    let mut system = system();
    let mut rt = runtime(dir.path(), &policy, &mut system);
    rt.on_tick();
    assert!(has(&rt, "limpet-init: started a (pid 100)"));
    assert_eq!(rt.timeout(), Some(Duration::from_secs(2)));
    rt.host.now = 1999;
    rt.on_tick();
    assert!(rt.host.signals.is_empty());
    rt.host.now = 2000;
    rt.on_tick();
    assert!(has(
        &rt,
        "limpet-init: a did not report ready in time: killing it"
    ));
    assert_eq!(rt.host.signals, [(100, Signal::KILL)]);
    rt.host.exits = vec![Reaped {
        pid: 100,
        exit: Exit::Signal(9),
    }];
    rt.on_signal(libc::SIGCHLD);
    assert!(has(
        &rt,
        "limpet-init: a exited (Signal(9)); not restarted (policy)"
    ));
}

#[test]
fn a_notify_task_that_says_ready_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let (task_side, pid1_side) = UnixDatagram::pair().unwrap();
    pid1_side.set_nonblocking(true).unwrap();
    let readiness = serde_json::json!({
        "kind": "notify", "timeout_ms": 2000,
        "socket": dir.path().join("a.sock").to_str().unwrap()
    });
    let policy = policy(vec![task("a", readiness, "always")]);
    let mut system = system();
    let mut rt = runtime(dir.path(), &policy, &mut system);
    rt.on_tick();
    rt.notifiers.insert(0, pid1_side);
    task_side.send(b"STATUS=warming up").unwrap();
    rt.on_notify(0);
    assert!(!has(&rt, "limpet-init: a is ready"));
    task_side.send(b"STATUS=up\nREADY=1\n").unwrap();
    rt.on_notify(0);
    assert!(has(&rt, "limpet-init: a is ready"));
    assert_eq!(rt.timeout(), None, "no deadline left");
}

#[test]
fn update_events_are_recorded_and_a_reboot_request_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(vec![task("a", started(), "always")]);
    let mut system = system();
    let mut rt = runtime(dir.path(), &policy, &mut system);
    rt.on_tick();
    rt.host.now = 500;
    rt.on_install_event(InstallEvent::Failed {
        version: None,
        error: "bad signature".into(),
    });
    assert!(has(&rt, "limpet-init: update ? refused: bad signature"));
    rt.on_install_event(InstallEvent::Staged {
        version: "0.2.0".into(),
    });
    assert!(has(
        &rt,
        "limpet-init: update 0.2.0 verified and staged as a trial in slot b"
    ));
    assert_eq!(rt.shutdown, None);
    rt.on_install_event(InstallEvent::Reboot);
    assert!(has(
        &rt,
        "limpet-init: update agent: reboot into the staged trial: shutting down"
    ));
    assert_eq!(rt.host.signals, [(100, Signal::TERM)]);
    let last = rt.system.last_update.clone().unwrap();
    assert_eq!(
        (last.version.as_deref(), last.outcome.as_str(), last.at_ms),
        (Some("0.2.0"), "reboot requested", 500)
    );
    rt.host.exits = vec![Reaped {
        pid: 100,
        exit: Exit::Signal(15),
    }];
    rt.on_signal(libc::SIGCHLD);
    assert_eq!(rt.on_tick(), Some(Outcome::Reboot));
}

fn on_trial<'a>(
    dir: &Path,
    policy: &'a DevicePolicy,
    system: &'a mut SystemStatus,
) -> Runtime<'a, Fake> {
    let mut rt = runtime(dir, policy, system);
    rt.trial = Some(TrialWatch {
        gate: HealthGate::new(Duration::from_secs(10), Duration::from_secs(60)),
        trial: Box::new(FakeTrial {
            state: State::factory(limpet_state::Version::parse("0.1.0").unwrap()),
            told: Vec::new(),
        }),
    });
    rt
}

#[test]
fn the_gate_commits_a_healthy_trial() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(vec![task("a", started(), "always")]);
    let mut system = system();
    let mut rt = on_trial(dir.path(), &policy, &mut system);
    rt.on_tick();
    assert_eq!(rt.gate_wait, Some(Millis(10_000)));
    assert_eq!(rt.timeout(), Some(Duration::from_secs(10)));
    rt.host.now = 10_000;
    rt.on_tick();
    assert!(rt.host.console.iter().any(|l| l.starts_with(
        "limpet-init: every task healthy for the health period: trial committed, floor now 0.1.0"
    )));
    assert!(rt.trial.is_none());
    assert!(matches!(rt.system.trial, TrialStatus::Committed));
    assert_eq!(rt.shutdown, None);
}

#[test]
fn the_gate_rolls_back_a_failed_trial_and_reboots() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(vec![task("a", started(), "never")]);
    let mut system = system();
    let mut rt = on_trial(dir.path(), &policy, &mut system);
    rt.on_tick();
    rt.host.exits = vec![Reaped {
        pid: 100,
        exit: Exit::Code(1),
    }];
    rt.on_signal(libc::SIGCHLD);
    rt.host.now = 50;
    assert_eq!(rt.on_tick(), Some(Outcome::Reboot), "nothing left to stop");
    assert!(rt.host.console.iter().any(|l| l.starts_with(
        "limpet-init: trial failed its health gate (task a exited with code 1 and is not restarted): rebooting into the committed slot"
    )));
    assert!(has(&rt, "limpet-init: rollback: shutting down"));
    assert!(matches!(rt.system.trial, TrialStatus::RolledBack { .. }));
}

#[test]
fn an_egress_task_waits_for_the_network_and_then_starts_anyway() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(vec![
        task("uplink", started(), "always"),
        task("sensor", started(), "always"),
    ]);
    let mut system = system();
    let mut rt = runtime(dir.path(), &policy, &mut system);
    let mut specs: Vec<TaskSpec> = policy
        .tasks
        .iter()
        .map(|t| TaskSpec::new(t, None))
        .collect();
    specs[0].needs = Needs::Network;
    rt.supervisor = Supervisor::new(specs);
    rt.supervisor.wait_for_network(Millis(0).plus(NETWORK_WAIT));
    rt.on_tick();
    rt.on_tick();
    assert_eq!(
        rt.host.console[..2],
        [
            "limpet-init: uplink waits for the network (it declares egress), at most 30 s",
            "limpet-init: started sensor (pid 100)",
        ],
        "announced once; the task without egress is not held back"
    );
    assert_eq!(rt.timeout(), Some(NETWORK_WAIT));
    rt.host.now = 30_000;
    rt.on_tick();
    assert_eq!(
        rt.host.console[2..4],
        [
            "limpet-init: the network is not up after 30 s: starting uplink anyway",
            "limpet-init: started uplink (pid 101)",
        ]
    );
}

const BUILT: u64 = 1_700_000_000;

fn slot_lifecycle() -> limpet_lifecycle::SlotLifecycle {
    limpet_lifecycle::SlotLifecycle {
        built: limpet_lifecycle::WallTime::from_secs(BUILT),
        support_until: Some(limpet_lifecycle::WallTime::from_secs(2_000_000_000)),
        freshness: Some(Uptime::from_days(45)),
    }
}

/// A `state` partition in `dir`: its path, and the time record opened on it at uptime 0.
fn time_record(dir: &Path) -> (PathBuf, Keeper<File>) {
    let path = dir.join("state.img");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.set_len(1 << 20).unwrap();
    let (keeper, _) = Keeper::open(file, slot_lifecycle(), Uptime::ZERO);
    (path, keeper)
}

/// What the record in the partition at `path` holds.
fn saved(path: &Path) -> limpet_lifecycle::TimeState {
    limpet_lifecycle::LifecycleStore::new(File::open(path).unwrap())
        .unwrap()
        .load()
        .unwrap()
        .state
}

fn status_time(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(STATUS_FILE)).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["system"]["time"].clone()
}

/// The loop ticks the time record on its own timer, with no request of the update agent:
/// the record is saved once its interval has run out (so a power cut loses no uptime beyond
/// the credit), the status file shows it, and a clean shutdown saves the uptime up to then.
#[test]
fn the_time_record_is_ticked_on_the_loops_timer_and_saved_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(vec![task("a", started(), "always")]);
    let mut system = system();
    let mut rt = runtime(dir.path(), &policy, &mut system);
    let (state, keeper) = time_record(dir.path());
    rt.set_time(Some(keeper));
    let interval = Duration::from_secs(limpet_lifecycle::SAVE_INTERVAL.as_secs());
    rt.on_tick();
    assert_eq!(
        rt.timeout(),
        Some(interval),
        "the record's save is the only deadline"
    );
    let time = status_time(dir.path());
    assert_eq!(
        (&time["floor"], &time["earliest"], &time["support_until"]),
        (
            &serde_json::json!(BUILT),
            &serde_json::json!(BUILT),
            &serde_json::json!(2_000_000_000u64)
        ),
        "{time}"
    );
    assert_eq!(time["support_extended"], false, "{time}");
    assert_eq!(time["island_due"], serde_json::Value::Null, "{time}");
    assert_eq!(time["persisted"], true, "{time}");

    rt.host.now = 599_999;
    rt.on_tick();
    assert_eq!(saved(&state).earliest().as_secs(), BUILT, "not due yet");
    rt.host.now = 600_000;
    rt.on_tick();
    assert_eq!(saved(&state).earliest().as_secs(), BUILT + 600);
    assert_eq!(
        saved(&state).since_fresh().as_secs(),
        600 + 600,
        "credited ahead"
    );
    assert_eq!(status_time(dir.path())["earliest"], BUILT + 600);
    assert_eq!(rt.timeout(), Some(interval));

    rt.host.now = 700_000;
    rt.on_signal(libc::SIGTERM);
    rt.host.exits = vec![Reaped {
        pid: 100,
        exit: Exit::Signal(15),
    }];
    rt.on_signal(libc::SIGCHLD);
    assert_eq!(rt.on_tick(), Some(Outcome::PowerOff));
    assert_eq!(saved(&state).earliest().as_secs(), BUILT + 700);
}

/// A time record that cannot be written is said once, tried again every `SAVE_RETRY`
/// (never in a busy loop), and said again when it works.
#[test]
fn a_failed_save_of_the_time_record_is_said_once_and_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(vec![task("a", started(), "always")]);
    let mut system = system();
    let mut rt = runtime(dir.path(), &policy, &mut system);
    let (state, keeper) = time_record(dir.path());
    drop(keeper);
    // Read-only: every write fails.
    let (keeper, _) = Keeper::open(File::open(&state).unwrap(), slot_lifecycle(), Uptime::ZERO);
    rt.set_time(Some(keeper));
    let said = |rt: &Runtime<'_, Fake>| {
        rt.host
            .console
            .iter()
            .filter(|l| l.starts_with("limpet-init: time record"))
            .cloned()
            .collect::<Vec<_>>()
    };
    rt.on_tick();
    let lines = said(&rt);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("limpet-init: time record: saving the time record: ")
            && lines[0].ends_with("; trying again every 60 s"),
        "{lines:?}"
    );
    assert_eq!(rt.timeout(), Some(SAVE_RETRY), "not at once: no busy loop");
    rt.host.now = 60_000;
    rt.on_tick();
    assert_eq!(said(&rt).len(), 1, "said once");
    assert_eq!(rt.timeout(), Some(SAVE_RETRY));
    // The medium recovers.
    let time = rt.time.as_mut().unwrap();
    *time.keeper.device_mut().unwrap() =
        File::options().read(true).write(true).open(&state).unwrap();
    rt.host.now = 120_000;
    rt.on_tick();
    assert_eq!(
        said(&rt).last().unwrap(),
        "limpet-init: time record saved again"
    );
    assert_eq!(saved(&state).earliest().as_secs(), BUILT + 120);
}

/// Island mode in the loop: a signed time past the end of support (as the update agent
/// reports it) stops the task island mode does not keep, saves the mode at once, shows it
/// in the status file, never restarts the task, and kills it if it ignores SIGTERM; a
/// signed extension starts it again.
#[test]
fn island_mode_stops_and_restarts_the_tasks_it_does_not_keep() {
    use limpet_lifecycle::{IslandMode, WallTime};
    let dir = tempfile::tempdir().unwrap();
    let mut policy = policy(vec![
        task("keep", started(), "always"),
        task("other", started(), "always"),
    ]);
    policy.island = Some(IslandPolicy {
        keep: vec!["keep".into()],
        network: None,
    });
    let mut system = system();
    let mut rt = runtime(dir.path(), &policy, &mut system);
    let (state, keeper) = time_record(dir.path());
    rt.set_time(Some(keeper));
    rt.on_tick();
    assert!(has(&rt, "limpet-init: started other (pid 101)"));

    // The agent verified a signed time past the end of support.
    rt.host.now = 10_000;
    let keeper = &mut rt.time.as_mut().unwrap().keeper;
    keeper
        .verified(WallTime::from_secs(2_000_000_100), Uptime::from_secs(10))
        .unwrap();
    rt.on_tick();
    assert!(
        has(
            &rt,
            "limpet-init: island mode begins: support ended at @2000000000 (earliest time @2000000100); stopping every task but keep"
        ),
        "{:?}",
        rt.host.console
    );
    assert!(has(
        &rt,
        "limpet-init: stopping other (pid 101) for island mode"
    ));
    assert_eq!(rt.host.signals, [(101, Signal::TERM)]);
    assert!(matches!(saved(&state).island(), IslandMode::Island { .. }));
    let time = status_time(dir.path());
    assert_eq!(time["island"]["mode"], "island", "{time}");
    assert_eq!(time["island"]["cause"], "support_ended", "{time}");

    // It ignores SIGTERM: killed after the grace; its exit parks it, never restarted.
    rt.host.now = 10_000 + 3_000;
    rt.on_tick();
    assert_eq!(rt.host.signals.last(), Some(&(101, Signal::KILL)));
    rt.host.exits = vec![Reaped {
        pid: 101,
        exit: Exit::Signal(9),
    }];
    rt.on_signal(libc::SIGCHLD);
    assert!(has(
        &rt,
        "limpet-init: other exited (Signal(9)); stopped for island mode, not restarted while it lasts"
    ));
    rt.host.now = 100_000;
    rt.on_tick();
    assert_eq!(rt.host.next_pid, 2, "nothing started in island mode");

    // A signed extension: island mode ends, other starts again.
    rt.host.now = 110_000;
    let keeper = &mut rt.time.as_mut().unwrap().keeper;
    keeper
        .extend_support(WallTime::from_secs(2_100_000_000), Uptime::from_secs(110))
        .unwrap();
    rt.on_tick();
    assert!(
        rt.host
            .console
            .iter()
            .any(|l| l.starts_with("limpet-init: island mode ends: support until @2100000000")),
        "{:?}",
        rt.host.console
    );
    assert!(has(&rt, "limpet-init: started other (pid 102)"));
    assert!(matches!(saved(&state).island(), IslandMode::Left { .. }));
    assert_eq!(status_time(dir.path())["island"]["mode"], "left");
}
