//! QEMU's machine protocol (QMP), for the one thing `limpet run` asks of it: pressing the
//! guest's ACPI power button once given console lines have appeared (`--powerdown-on`).
//!
//! Rules this module keeps: the socket lives in a private directory (mode 0700) that is
//! removed when the run ends; the button is pressed at most once; a failure to press it is
//! logged, never fatal (the run's deadline still ends a guest that does not stop).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::RunError;

/// How long QEMU's answers are waited for.
const QMP_TIMEOUT: Duration = Duration::from_secs(5);

/// A QMP socket path in a private directory, removed on drop.
#[derive(Debug)]
pub struct QmpSocket {
    dir: PathBuf,
}

impl QmpSocket {
    /// A new private directory under the system's temporary directory.
    pub fn new() -> Result<QmpSocket, RunError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("limpet-run-{}-{n}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| RunError::TempDir {
                path: dir.clone(),
                source,
            })?;
        Ok(QmpSocket { dir })
    }

    /// Where QEMU listens.
    pub fn path(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
}

impl Drop for QmpSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The power button, pressed once every awaited text has appeared in a console line.
#[derive(Debug)]
pub struct PowerButton {
    /// The texts not seen yet.
    waiting: Vec<String>,
    socket: PathBuf,
    pressed: bool,
}

impl PowerButton {
    /// A button pressed through `socket` once each of `after` has been seen (`after` is
    /// not empty: an empty list means no button at all).
    pub fn new(after: Vec<String>, socket: PathBuf) -> PowerButton {
        PowerButton {
            waiting: after,
            socket,
            pressed: false,
        }
    }

    /// Notes a console line, and presses the button if it was the last one awaited.
    pub fn on_line(&mut self, line: &str) {
        self.waiting.retain(|p| !line.contains(p.as_str()));
        if self.pressed || !self.waiting.is_empty() {
            return;
        }
        self.pressed = true;
        match powerdown(&self.socket) {
            Ok(()) => tracing::info!("pressed the power button (after {line:?})"),
            Err(e) => tracing::warn!(
                "cannot press the power button through {}: {e}",
                self.socket.display()
            ),
        }
    }
}

/// Presses the guest's ACPI power button through QEMU's QMP socket.
fn powerdown(socket: &Path) -> std::io::Result<()> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(QMP_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    // The greeting, then one answer per command.
    reader.read_line(&mut line)?;
    for command in ["qmp_capabilities", "system_powerdown"] {
        writeln!(writer, "{{\"execute\":\"{command}\"}}")?;
        // Asynchronous events (`"event"`) may come before the answer: skip them.
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other(format!(
                    "QMP {command}: connection closed"
                )));
            }
            if line.contains("\"return\"") {
                break;
            }
            if !line.contains("\"event\"") {
                return Err(std::io::Error::other(format!(
                    "QMP {command}: {}",
                    line.trim()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    /// A QMP server that answers every command, after an event, and returns what it was
    /// sent.
    fn fake_qemu(socket: &Path) -> std::thread::JoinHandle<String> {
        let listener = UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            writeln!(writer, "{{\"QMP\": {{}}}}").unwrap();
            let mut reader = BufReader::new(stream);
            let mut sent = String::new();
            for _ in 0..2 {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                sent.push_str(&line);
                writeln!(writer, "{{\"event\": \"X\"}}\n{{\"return\": {{}}}}").unwrap();
            }
            let _ = reader.read_to_string(&mut String::new());
            sent
        })
    }

    #[test]
    fn the_button_is_pressed_once_after_every_text() {
        let qmp = QmpSocket::new().unwrap();
        let server = fake_qemu(&qmp.path());
        let mut button = PowerButton::new(vec!["one".into(), "two".into()], qmp.path());
        button.on_line("two first");
        assert!(!button.pressed);
        button.on_line("then one");
        assert!(button.pressed);
        // Pressed once: later lines, even matching ones, change nothing.
        button.on_line("one two");
        let sent = server.join().unwrap();
        assert_eq!(
            sent,
            "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"system_powerdown\"}\n"
        );
        let dir = qmp.dir.clone();
        drop(qmp);
        assert!(!dir.exists());
    }
}
