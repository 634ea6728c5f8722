//! A software TPM 2.0 for the guest (`limpet run --tpm DIR`): `swtpm` started for the run,
//! its state in DIR (kept, so every run with the same DIR sees the same TPM, as a device
//! keeps its chip), and QEMU's TPM emulator device connected to its control socket.
//!
//! Rules this module keeps: swtpm is started by this run and ended by its own PID when the
//! run ends ([`Swtpm`]'s `Drop`: kill, then wait), never by name; its sockets live in a
//! scratch directory of the run, not in DIR.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::RunError;

/// How long swtpm gets to create its control socket.
const START_WAIT: Duration = Duration::from_secs(10);

/// A running swtpm, ended by its PID when dropped.
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    ctrl: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Swtpm {
    /// Starts swtpm with its TPM 2.0 state in `state` (created if missing) and waits for
    /// its control socket.
    pub fn start(state: &Path) -> Result<Swtpm, RunError> {
        std::fs::create_dir_all(state).map_err(|source| RunError::Io {
            what: "the TPM state directory (--tpm)",
            source,
        })?;
        let scratch = tempfile::Builder::new()
            .prefix("limpet-swtpm-")
            .tempdir()
            .map_err(|source| RunError::Io {
                what: "a scratch directory for swtpm's socket",
                source,
            })?;
        let ctrl = scratch.path().join("ctrl.sock");
        let mut child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--terminate"])
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", ctrl.display()))
            .spawn()
            .map_err(|source| RunError::Io {
                what: "swtpm for --tpm (apt-get install swtpm)",
                source,
            })?;
        let start = Instant::now();
        while !ctrl.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(RunError::Io {
                    what: "swtpm for --tpm",
                    source: std::io::Error::other(format!("swtpm exited at start: {status}")),
                });
            }
            if start.elapsed() > START_WAIT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Io {
                    what: "swtpm for --tpm",
                    source: std::io::Error::other("no control socket within 10 s"),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Swtpm {
            child,
            ctrl,
            _scratch: scratch,
        })
    }

    /// The control socket QEMU's TPM emulator connects to.
    pub fn ctrl(&self) -> &Path {
        &self.ctrl
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
