//! Console supervision, the same for every backend: runs a program, hands each console
//! line to the caller as it arrives, and turns what happens into an [`Outcome`].
//!
//! Rules this module keeps:
//! - the program's stdin is closed (or, with a [`ConsoleInput`], a pipe that types its
//!   text once, after the line it waits for), its stdout is the console, its stderr is kept (the
//!   start of it) for an error message and otherwise drained, so it never blocks on a pipe;
//! - lines are read on their own thread, so the deadline holds even when the program
//!   prints nothing;
//! - the exit conditions, checked on each line in this order: the `exit_on` text (stop,
//!   [`Outcome::Matched`]), the power button's texts (press once), a kernel panic report
//!   (noted; QEMU exits after it with `panic=-1 -no-reboot`); then the deadline (stop,
//!   [`Outcome::Timeout`]);
//! - the program is only ever stopped by its own PID ([`Child::kill`]), and always waited
//!   for.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::console::console_lines;
use crate::error::RunError;
use crate::options::Watch;
use crate::outcome::{Outcome, RunReport};
use crate::qmp::PowerButton;

/// A console line containing this is a kernel panic report.
pub const KERNEL_PANIC: &str = "Kernel panic";

/// Most bytes of QEMU's stderr kept for an error message.
const STDERR_KEEP: usize = 64 * 1024;
/// How often the child is polled once its console is closed.
const POLL: Duration = Duration::from_millis(20);
/// How long QEMU's stderr is waited for once it has exited.
const STDERR_WAIT: Duration = Duration::from_secs(5);

/// Text typed on the program's stdin (the guest's serial console input) once, after the
/// first console line containing `after`: the owner at the console confirming an owner
/// mode request in the boot loader (docs/owner-mode.md).
#[derive(Debug)]
pub struct ConsoleInput {
    after: String,
    text: String,
    stdin: Option<std::process::ChildStdin>,
    typed: bool,
}

impl ConsoleInput {
    /// Types `text` and a carriage return once a line contains `after`.
    pub fn new(after: String, text: String) -> ConsoleInput {
        ConsoleInput {
            after,
            text,
            stdin: None,
            typed: false,
        }
    }

    fn on_line(&mut self, line: &str) {
        use std::io::Write;
        if self.typed || !line.contains(self.after.as_str()) {
            return;
        }
        self.typed = true;
        if let Some(stdin) = &mut self.stdin {
            let typed = stdin
                .write_all(format!("{}\r", self.text).as_bytes())
                .and_then(|()| stdin.flush());
            match typed {
                Ok(()) => tracing::debug!("typed {:?} on the console", self.text),
                Err(e) => tracing::warn!("cannot type on the console: {e}"),
            }
        }
    }
}

/// What the line reader thread sends.
enum Event {
    Line(String),
    Closed,
}

/// Runs `command` (stdin closed, stdout and stderr piped), hands each line of its stdout
/// to `on_line` as it arrives, and stops it (by its PID, through [`Child::kill`]) when a
/// line contains `watch.exit_on`, when `watch.timeout` passes, or `watch.cut`'s delay
/// after the first line that contains its text (both as a timeout); each line also goes to
/// the power `button`, if there is one. Lines are read on their own thread, so the
/// deadline holds even when the program prints nothing. The child is always waited for.
///
/// A kernel panic report is noted and the program left to end (with `panic=-1` and
/// `-no-reboot` QEMU exits right after it); then the outcome is
/// [`Outcome::KernelPanic`]. A program that exits with failure on its own is an error
/// carrying its stderr.
pub fn supervise(
    mut command: Command,
    watch: &Watch,
    mut button: Option<PowerButton>,
    mut input: Option<ConsoleInput>,
    on_line: &mut dyn FnMut(&str),
) -> Result<RunReport, RunError> {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command.spawn().map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    tracing::debug!("started {program} as pid {}", child.id());
    if let Some(input) = &mut input {
        input.stdin = child.stdin.take();
    }
    let mut deadline = watch.timeout.map(|t| start + t);

    let (sender, events) = mpsc::channel();
    let stdout_reader = child
        .stdout
        .take()
        .map(|stdout| read_console(stdout, sender));
    let (stderr_sender, stderr_text) = mpsc::channel();
    if let Some(stderr) = child.stderr.take() {
        keep_stderr(stderr, stderr_sender);
    }

    let mut console_lines = 0u64;
    let mut matched_line = None;
    let mut panic_line = None;
    let mut stopped = None;
    let mut console_open = stdout_reader.is_some();
    let mut cut_armed = false;
    while console_open {
        let event = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match events.recv_timeout(left) {
                    Ok(event) => event,
                    Err(RecvTimeoutError::Timeout) => {
                        stopped = Some(Outcome::Timeout);
                        break;
                    }
                    Err(RecvTimeoutError::Disconnected) => Event::Closed,
                }
            }
            None => events.recv().unwrap_or(Event::Closed),
        };
        match event {
            Event::Closed => console_open = false,
            Event::Line(line) => {
                console_lines += 1;
                on_line(&line);
                if let Some(cut) = &watch.cut {
                    if !cut_armed && line.contains(cut.after.as_str()) {
                        tracing::debug!(
                            "console line matched {:?}: stop in {:?}",
                            cut.after,
                            cut.delay
                        );
                        cut_armed = true;
                        let at = Instant::now() + cut.delay;
                        deadline = Some(deadline.map_or(at, |d| d.min(at)));
                    }
                }
                if let Some(pattern) = &watch.exit_on {
                    if line.contains(pattern.as_str()) {
                        tracing::debug!("console line matched {pattern:?}");
                        matched_line = Some(line);
                        stopped = Some(Outcome::Matched);
                        break;
                    }
                }
                if let Some(button) = &mut button {
                    button.on_line(&line);
                }
                if let Some(input) = &mut input {
                    input.on_line(&line);
                }
                if panic_line.is_none() && line.contains(KERNEL_PANIC) {
                    tracing::debug!("kernel panic reported");
                    panic_line = Some(line);
                }
            }
        }
    }

    // The console is closed or we are stopping: the child either ends by itself (until
    // the deadline) or is ended by us.
    let status = loop {
        if stopped.is_some() {
            break stop(&mut child, &program)?;
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(source) => {
                // Still ours to end: kill and reap before reporting.
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Wait { program, source });
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stopped = Some(Outcome::Timeout);
            continue;
        }
        thread::sleep(POLL);
    };
    let seconds = start.elapsed().as_secs_f64();
    // The reader threads end when the pipes close. After a stop they are left to it (a
    // process the child started could still hold a pipe); after an exit of its own the
    // console is closed already and stderr is waited for, briefly.
    drop(events);
    let stderr = if stopped.is_some() {
        String::new()
    } else {
        if let Some(reader) = stdout_reader {
            let _ = reader.join();
        }
        stderr_text.recv_timeout(STDERR_WAIT).unwrap_or_default()
    };
    tracing::debug!("{program} ended ({status}) after {seconds:.1} s");

    let outcome = match stopped {
        Some(outcome) => outcome,
        None if panic_line.is_some() => Outcome::KernelPanic,
        None if status.success() && stderr.contains("terminating on signal") => {
            Outcome::Interrupted
        }
        None if status.success() => Outcome::PoweredOff,
        None => {
            return Err(RunError::ProgramFailed {
                program,
                status,
                stderr,
            })
        }
    };
    Ok(RunReport {
        outcome,
        exit_code: outcome.exit_code(),
        matched_line,
        panic_line,
        seconds,
        console_lines,
        timeout_seconds: watch.timeout.map(|t| t.as_secs_f64()),
    })
}

/// Sends each console line of `stdout` as it arrives, then [`Event::Closed`], from a
/// thread of its own; it ends when the pipe closes or nobody listens any more.
fn read_console(stdout: ChildStdout, sender: Sender<Event>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    let lines = console_lines(&text);
                    if lines
                        .into_iter()
                        .any(|l| sender.send(Event::Line(l)).is_err())
                    {
                        break;
                    }
                }
            }
        }
        let _ = sender.send(Event::Closed);
    })
}

/// Keeps the start of `stderr` (for an error message) and drains the rest, so the child
/// never blocks on a full pipe; sends the kept text when the pipe closes.
fn keep_stderr(mut stderr: ChildStderr, sender: Sender<String>) {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut stderr)
            .take(STDERR_KEEP as u64)
            .read_to_end(&mut kept);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        let _ = sender.send(String::from_utf8_lossy(&kept).into_owned());
    });
}

/// Ends the child we spawned (SIGKILL to its PID) and reaps it.
fn stop(child: &mut Child, program: &str) -> Result<ExitStatus, RunError> {
    tracing::debug!("stopping {program} (pid {})", child.id());
    // An error here means it has already exited; wait() below reaps it either way.
    let _ = child.kill();
    child.wait().map_err(|source| RunError::Wait {
        program: program.to_owned(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::options::Cut;
    use crate::outcome::{EXIT_KERNEL_PANIC, EXIT_TIMEOUT};

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    fn supervise_lines(script: &str, watch: &Watch) -> (Result<RunReport, RunError>, Vec<String>) {
        let mut lines = Vec::new();
        let result = supervise(sh(script), watch, None, None, &mut |l| {
            lines.push(l.to_owned())
        });
        (result, lines)
    }

    #[test]
    fn run_supervise_exit_on_stops_at_first_match() {
        let watch = Watch {
            exit_on: Some("ready".to_owned()),
            timeout: Some(Duration::from_secs(30)),
            cut: None,
        };
        let started = Instant::now();
        let (report, lines) = supervise_lines(
            "printf 'boot\\r\\nall ready now\\nlater\\n'; exec sleep 30",
            &watch,
        );
        let report = report.unwrap();
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(report.outcome, Outcome::Matched);
        assert_eq!(report.exit_code, 0);
        assert_eq!(report.matched_line.as_deref(), Some("all ready now"));
        assert_eq!(lines, ["boot", "all ready now"]);
        assert_eq!(report.console_lines, 2);
    }

    #[test]
    fn run_supervise_timeout_with_silent_child() {
        let watch = Watch {
            exit_on: Some("never".to_owned()),
            timeout: Some(Duration::from_millis(300)),
            cut: None,
        };
        let started = Instant::now();
        let (report, lines) = supervise_lines("exec sleep 30", &watch);
        let report = report.unwrap();
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(report.outcome, Outcome::Timeout);
        assert_eq!(report.exit_code, EXIT_TIMEOUT);
        assert!(lines.is_empty());
    }

    #[test]
    fn run_supervise_timeout_after_console_closed() {
        let watch = Watch {
            exit_on: None,
            timeout: Some(Duration::from_millis(300)),
            cut: None,
        };
        let (report, _) = supervise_lines("exec >&-; exec sleep 30", &watch);
        assert_eq!(report.unwrap().outcome, Outcome::Timeout);
    }

    #[test]
    fn run_supervise_cut_counts_from_the_line_not_the_start() {
        // The line comes after 1 s; the cut 300 ms after it, long before the timeout.
        let watch = Watch {
            exit_on: None,
            timeout: Some(Duration::from_secs(30)),
            cut: Some(Cut {
                after: "installing".to_owned(),
                delay: Duration::from_millis(300),
            }),
        };
        let started = Instant::now();
        let (report, lines) = supervise_lines(
            "echo boot; sleep 1; echo 'installing v2'; echo installing again; exec sleep 30",
            &watch,
        );
        let report = report.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(1300));
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(report.outcome, Outcome::Timeout);
        assert_eq!(report.exit_code, EXIT_TIMEOUT);
        assert_eq!(lines, ["boot", "installing v2", "installing again"]);
    }

    #[test]
    fn run_supervise_cut_never_armed_leaves_the_timeout() {
        let watch = Watch {
            exit_on: None,
            timeout: Some(Duration::from_millis(300)),
            cut: Some(Cut {
                after: "never".to_owned(),
                delay: Duration::from_secs(60),
            }),
        };
        let (report, lines) = supervise_lines("echo boot; exec sleep 30", &watch);
        assert_eq!(report.unwrap().outcome, Outcome::Timeout);
        assert_eq!(lines, ["boot"]);
    }

    #[test]
    fn run_supervise_powered_off() {
        let (report, lines) = supervise_lines("echo one; echo two", &Watch::default());
        let report = report.unwrap();
        assert_eq!(report.outcome, Outcome::PoweredOff);
        assert_eq!(report.exit_code, 0);
        assert_eq!(report.console_lines, 2);
        assert_eq!(lines, ["one", "two"]);
    }

    #[test]
    fn run_supervise_kernel_panic() {
        let (report, _) = supervise_lines(
            "echo '[ 1.0] Kernel panic - not syncing: Attempted to kill init!'; echo trace",
            &Watch::default(),
        );
        let report = report.unwrap();
        assert_eq!(report.outcome, Outcome::KernelPanic);
        assert_eq!(report.exit_code, EXIT_KERNEL_PANIC);
        assert!(report
            .panic_line
            .unwrap()
            .contains("Attempted to kill init"));
    }

    #[test]
    fn run_supervise_failure_carries_stderr() {
        let (report, _) = supervise_lines("echo 'bad option' >&2; exit 1", &Watch::default());
        let err = report.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bad option"), "{text}");
        assert!(matches!(err, RunError::ProgramFailed { .. }));
    }

    #[test]
    fn run_missing_program_is_spawn_not_found() {
        let err = supervise(
            Command::new("limpet-no-such-program"),
            &Watch::default(),
            None,
            None,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(&err, RunError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
    }
}
