//! Shared helpers of the command line's integration tests: running `limpet`, a signing
//! key, and one build of `examples/hello` shared by every test of a test binary.
#![allow(dead_code)]

pub mod disk;
pub mod hostile;
pub mod repo;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A `limpet` command with a quiet log.
pub fn limpet() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_limpet"));
    cmd.env("LIMPET_LOG", "warn");
    cmd
}

/// Runs a command, returning its output; panics with stdout and stderr if `expect_ok`
/// disagrees with the exit status.
pub fn run(cmd: &mut Command, expect_ok: bool) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if out.status.success() != expect_ok {
        panic!(
            "{cmd:?} exited with {} (expected success: {expect_ok})\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether an external tool is installed; tests that need it fail loudly without it,
/// because `.ci/run` installs every one of them.
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed; `.ci/run` lists the packages the tests need"
    );
}

/// Boots `dir` with `limpet run` (through the device's chain), keeping its disk and
/// firmware writes, until a console line contains `until`, which must happen within
/// `deadline_secs`; returns the console.
pub fn boot_until_line(dir: &Path, until: &str, deadline_secs: &str) -> String {
    boot_to_outcome(dir, ["--exit-on", until], deadline_secs, "matched")
}

/// `limpet run DIR --json --persist --timeout DEADLINE` with `args`, which must succeed
/// with `outcome`; returns the console.
fn boot_to_outcome(dir: &Path, args: [&str; 2], deadline_secs: &str, outcome: &str) -> String {
    let out = run(
        limpet()
            .arg("run")
            .arg(dir)
            .args(["--json", "--persist", "--timeout", deadline_secs])
            .args(args),
        true,
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let console = stderr(&out);
    assert_eq!(summary["outcome"], outcome, "{summary}\n{console}");
    console
}

/// Boots `dir` with `limpet run` (through the device's chain), keeping its disk and
/// firmware writes; once a console line contains `up`, presses the board's power button,
/// and the device must power off within `deadline_secs`. Returns the console.
pub fn boot_then_power_off(dir: &Path, up: &str, deadline_secs: &str) -> String {
    boot_to_outcome(dir, ["--powerdown-on", up], deadline_secs, "powered-off")
}

/// Boots `dir` (`limpet run`, through the chain, keeping its writes) until the guest's
/// kernel panics: `panic=-1` reboots at once, and QEMU runs with `-no-reboot`, so it exits;
/// a kernel that waits after its panic (`panic=0`) is ended by the hardware watchdog's reset.
/// Returns the console; `deadline_secs` is the run's safety net.
pub fn boot_to_panic(dir: &Path, deadline_secs: &str) -> String {
    let out = run(
        limpet()
            .arg("run")
            .arg(dir)
            .args(["--json", "--persist", "--timeout", deadline_secs]),
        false,
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let console = stderr(&out);
    assert_eq!(summary["outcome"], "kernel-panic", "{summary}\n{console}");
    console
}

/// A scratch directory that lives as long as the test binary and is removed when it exits.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    /// A static is never dropped, so its `TempDir` never removes itself: without this the
    /// images of a QEMU test binary (up to 2.7 GB) stayed in /tmp after every run.
    extern "C" fn remove_at_exit() {
        if let Some(dir) = DIR.get() {
            let _ = std::fs::remove_dir_all(dir.path());
        }
    }
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: `remove_at_exit` takes nothing, returns nothing and cannot unwind (it
        // ignores the removal's error); `exit` runs it once, after the tests have ended.
        unsafe { libc::atexit(remove_at_exit) };
        dir
    })
    .path()
}

/// A key pair made with `limpet keys generate` in `dir` (with the Secure Boot keys beside
/// it in `dir/secureboot/`).
pub fn keys_in(dir: &Path) -> (PathBuf, PathBuf) {
    // Tests of one binary run side by side and often ask for the same keys: one
    // `keys generate` at a time, or two would race to create the same files.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    run(
        limpet()
            .args(["keys", "generate", "--if-missing", "--out"])
            .arg(dir),
        true,
    );
    (dir.join("image.key"), dir.join("image.pub"))
}

/// The example device's manifest.
pub fn hello_manifest() -> PathBuf {
    repo_root().join("examples/hello/limpet.toml")
}

/// `limpet build --manifest MANIFEST --out OUT --key KEY` with a fixed SOURCE_DATE_EPOCH,
/// which must succeed: every test build goes through here.
pub fn build(manifest: &Path, out: &Path, key: &Path) -> Output {
    run(
        limpet()
            .arg("build")
            .arg("--manifest")
            .arg(manifest)
            .arg("--out")
            .arg(out)
            .arg("--key")
            .arg(key)
            .env("SOURCE_DATE_EPOCH", "1700000000"),
        true,
    )
}

/// Builds examples/hello into `out` with `key`.
pub fn build_hello(out: &Path, key: &Path) -> Output {
    build(&hello_manifest(), out, key)
}

/// Builds `examples/<manifest>` (a path under examples/) into the scratch folder `out`
/// with the tests' key: the output dir.
pub fn build_example(manifest: &str, out: &str) -> PathBuf {
    let (key, _) = keys_in(&scratch().join("keys"));
    let out = scratch().join(out);
    build(&repo_root().join("examples").join(manifest), &out, &key);
    out
}

/// One build of examples/hello, made on first use: (output dir, public key).
pub fn hello_build() -> &'static (PathBuf, PathBuf) {
    static BUILD: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILD.get_or_init(|| {
        let (key, public) = keys_in(&scratch().join("keys"));
        let out = scratch().join("hello-out");
        build_hello(&out, &key);
        (out, public)
    })
}

/// `limpet inspect --json` of a path.
pub fn inspect_json(path: &Path) -> serde_json::Value {
    let out = run(limpet().arg("inspect").arg("--json").arg(path), true);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A copy of `file` with one byte flipped at `offset`.
pub fn flipped_copy(file: &Path, offset: u64, to: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let i = usize::try_from(offset).unwrap();
    bytes[i] ^= 0x01;
    std::fs::write(to, bytes).unwrap();
}

/// examples/hello built with a second, unrelated key: (output dir, that key's public half).
pub fn other_key_build() -> &'static (PathBuf, PathBuf) {
    static BUILD: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILD.get_or_init(|| {
        let (key, public) = keys_in(&scratch().join("other-keys"));
        let out = scratch().join("hello-other-key");
        build_hello(&out, &key);
        (out, public)
    })
}

/// A copy of the output directory `from` as `name`, with `replace` files taken from
/// the directory `donor`.
pub fn mixed_output(name: &str, from: &Path, donor: &Path, replace: &[&str]) -> PathBuf {
    let dir = scratch().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for file in [
        "slot.img",
        "initramfs.cpio",
        "kernel",
        "loader.efi",
        "efivars.fd",
        "disk.img",
    ] {
        let source = if replace.contains(&file) { donor } else { from };
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    dir
}

/// One build of examples/hostile, made on first use: the output dir.
pub fn hostile_build() -> &'static PathBuf {
    static BUILD: OnceLock<PathBuf> = OnceLock::new();
    BUILD.get_or_init(|| build_example("hostile/limpet.toml", "hostile-out"))
}

/// examples/hello built as release `version` with the key in `scratch()/keys` and the given
/// `[update]` table appended; `fail` makes its task exit 1 at start and never be restarted
/// (a broken release). `label` keeps builds of different tests apart. Returns the output
/// directory.
pub fn hello_release(label: &str, version: &str, fail: bool, update: &str) -> PathBuf {
    hello_release_edited(label, version, update, |manifest| {
        if fail {
            manifest.replace(
                "restart = \"always\"",
                "restart = \"never\"\nargs = [\"--fail-at-start\"]",
            )
        } else {
            manifest
        }
    })
}

/// [`hello_release`] with its manifest's text changed by `edit` (after the version is
/// set, before `update` is appended).
pub fn hello_release_edited(
    label: &str,
    version: &str,
    update: &str,
    edit: impl FnOnce(String) -> String,
) -> PathBuf {
    let (key, _) = keys_in(&scratch().join("keys"));
    // Inside the repository, so the build finds the cargo workspace with the `hello` package.
    let dir = repo_root()
        .join("target/limpet-test-manifests")
        .join(format!("{label}-{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut manifest = edit(
        std::fs::read_to_string(hello_manifest())
            .unwrap()
            .replace("version = \"0.1.0\"", &format!("version = \"{version}\"")),
    );
    manifest.push_str(update);
    let path = dir.join("limpet.toml");
    std::fs::write(&path, manifest).unwrap();
    let out = scratch().join(format!("{label}-{version}"));
    build(&path, &out, &key);
    out
}

/// An update repository made with `limpet repo init REPO --keys KEYS` (once per path):
/// its first root metadata, the file a device ships, and one of its root key ids, the pin
/// for `[update] keys`.
pub fn tuf_repo(repo: &Path, keys: &Path) -> (PathBuf, String) {
    let root = repo.join("metadata/1.root.json");
    if !root.exists() {
        run(
            limpet()
                .args(["repo", "init"])
                .arg(repo)
                .arg("--keys")
                .arg(keys),
            true,
        );
    }
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&root).unwrap()).unwrap();
    let id = doc["signed"]["roles"]["root"]["keyids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    (root, id)
}
