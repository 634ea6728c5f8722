//! `limpet new NAME`: a project that builds as it is — a manifest, a cargo workspace and
//! one app crate whose only task logs a line every few seconds.
//!
//! Rules this module keeps: it never writes into a directory that exists; the manifest it
//! would write is checked with the real parser first, so a name the parser refuses fails
//! with nothing written.

use std::fs;
use std::path::{Path, PathBuf};

/// Errors creating a project.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The project name is not usable as the manifest's device name.
    #[error("`{name}` is not a valid device name: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// Which rule of device names it breaks.
        reason: String,
    },
    /// The project directory already exists; `limpet new` never writes into an existing
    /// one.
    #[error("{path} already exists; choose another name or directory")]
    Exists {
        /// The existing directory.
        path: PathBuf,
    },
    /// A file or directory of the new project could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The path being written.
        path: PathBuf,
        /// Why writing it failed.
        source: std::io::Error,
    },
}

/// Creates `dir` holding a new project for a device called `name`; returns the files
/// written, relative to `dir`.
pub fn new_project(dir: &Path, name: &str) -> Result<Vec<&'static str>, ScaffoldError> {
    if dir.exists() {
        return Err(ScaffoldError::Exists {
            path: dir.to_owned(),
        });
    }
    let files = files(name);
    // Validate the manifest we are about to write with the real parser, so a name the
    // parser refuses is reported here, with its reason, before anything is written.
    if let Some((_, manifest)) = files.iter().find(|(p, _)| *p == "limpet.toml") {
        if let Err(diagnostics) = limpet_manifest::parse("limpet.toml", manifest) {
            return Err(ScaffoldError::BadName {
                name: name.to_owned(),
                reason: diagnostics.to_string(),
            });
        }
    }
    for (relative, contents) in &files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| ScaffoldError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        fs::write(&path, contents).map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

fn files(name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("limpet.toml", format!(r#"# The device: every task it runs, with its budgets and its reach.
# Reference: docs/manifest.md in the Limpet sources.

[device]
name = "{name}"
version = "0.1.0"
target = "x86_64"
memory = "128MiB"

[kernel]
# Limpet's own kernel (the default), built for this device from Debian's linux-source-6.1:
# every driver built in, no loadable modules, the attack surface compiled out. The first
# `limpet build` compiles it (about 5 minutes on 2 idle cores; it needs
# `apt-get install linux-source-6.1 make gcc flex bison bc libelf-dev libssl-dev`), then
# target/limpet-kernel of the Limpet sources keeps it: later builds of any project reuse it
# while the kernel configuration stays (it changes with the target, with tasks that have
# network rules, with a TPM). `source = "host"` boots the build host's own kernel instead.
source = "limpet"

[[task]]
name = "app"
package = "{name}-app"
binary = "{name}-app"
memory = "16MiB"
cpu = "20%"
pids = 4
restart = "always"
syscalls = {{ profile = "minimal" }}
"#)),
        ("Cargo.toml", "[workspace]\nresolver = \"2\"\nmembers = [\"app\"]\n".to_owned()),
        ("app/Cargo.toml", format!(
            "[package]\nname = \"{name}-app\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\n"
        )),
        ("app/src/main.rs", r#"//! The device's application. It runs as a Limpet task: a static binary in a sandbox,
//! restarted by the supervisor if it exits.

use std::io::Write;
use std::time::Duration;

fn main() {
    let mut stdout = std::io::stdout();
    for beat in 0u64.. {
        let _ = writeln!(stdout, "app is alive: beat {beat}");
        let _ = stdout.flush();
        std::thread::sleep(Duration::from_secs(5));
    }
}
"#.to_owned()),
        (".gitignore", "/target\n/out\n# Signing keys never go into version control.\n/keys\n".to_owned()),
    ]
}
