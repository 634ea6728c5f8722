//! `spawn` against the real kernel of the test host, as root.
//!
//! Each case compiles a small manifest into a device policy for the host's architecture
//! (through its JSON, as PID 1 reads it), points [`Roots`] at temporary directories and
//! starts the task. The task's binary is `tests/spawn_probe/probe.rs`, compiled here with
//! `rustc` for the host's musl target (a static binary: the task's root holds nothing but
//! the policy's mounts), bound from the temporary `slot`. The probe prints what it sees and
//! can do; each case asserts the exact values.
//!
//! Budgets are not enforced (the host's controllers are cgroup v1): `Cgroups::NotEnforced`.
//!
//! A plain `main` (`harness = false`): `spawn` forks, which needs a single-threaded parent,
//! and libtest runs cases on threads. Arguments that do not start with `-` filter the cases
//! by substring. Not root: every case is skipped, and says so. `LIMPET_SPAWN_SHOW=1` prints
//! each probe report.

// Test code: a failed expectation is a test failure, reported with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use limpet_policy::{DevicePolicy, TaskPolicy};
use limpet_sandbox::spawn::{self, Cgroups, Roots, Signal, SpawnError, Spawned, Step};

/// The task's uid and gid: the first task of a manifest.
const TASK_ID: u32 = limpet_policy::FIRST_TASK_ID;
/// The probe's `tmp` (`"1MiB"` in its manifest), in bytes.
const TMP_BYTES: u64 = 1024 * 1024;

struct Case {
    name: &'static str,
    run: fn(&Env),
}

const CASES: &[Case] = &[
    Case {
        name: "probe_sees_only_its_sandbox",
        run: probe_sees_only_its_sandbox,
    },
    Case {
        name: "host_network_task_sees_host_interfaces",
        run: host_network_task_sees_host_interfaces,
    },
    Case {
        name: "missing_binary_names_the_step",
        run: missing_binary_names_the_step,
    },
    Case {
        name: "sigterm_is_ignored_sigkill_kills",
        run: sigterm_is_ignored_sigkill_kills,
    },
];

/// What every case shares: the probe and the roots.
struct Env {
    dir: PathBuf,
    roots: Roots,
}

fn main() -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<&Case> = CASES
        .iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f.as_str())))
        .collect();
    if !rustix::process::geteuid().is_root() {
        println!("spawn tests need root: {} skipped", selected.len());
        println!("0 passed, 0 failed, {} skipped", selected.len());
        return ExitCode::SUCCESS;
    }
    let env = setup();
    let mut passed = 0;
    let mut failed = 0;
    for case in selected {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(&env)));
        match result {
            Ok(()) => {
                println!("test {} ... ok", case.name);
                passed += 1;
            }
            Err(_) => {
                println!("test {} ... FAILED", case.name);
                failed += 1;
            }
        }
    }
    // Every task built its root in its own mount namespace: no mount is left in this
    // namespace on or under the test's directory (where a leaked root, tmp or bind would
    // stay, or come back by propagation), and each task's root directory under <work> is
    // an empty directory again. Only that subtree is compared: other test binaries of the
    // same run (limpet-net's namespace tests) add and remove mounts elsewhere meanwhile.
    let name = "spawn_leaves_no_mounts_behind";
    let leftover = mounts_under(&env.dir);
    let work_clean = std::fs::read_dir(&env.roots.work).unwrap().all(|e| {
        std::fs::read_dir(e.unwrap().path())
            .unwrap()
            .next()
            .is_none()
    });
    if leftover.is_empty() && work_clean {
        println!("test {name} ... ok");
        passed += 1;
    } else {
        println!(
            "test {name} ... FAILED\nmounts left under {}:\n{}\nwork clean: {work_clean}",
            env.dir.display(),
            leftover.join("\n")
        );
        failed += 1;
    }
    let _ = std::fs::remove_dir_all(&env.dir);
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The lines of this namespace's mount table whose mount point is `dir` or lies under it.
/// `dir` must be canonical, as the kernel writes mount points (no space in it: the table
/// escapes those).
fn mounts_under(dir: &Path) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    table
        .lines()
        .filter(|line| {
            line.split(' ')
                .nth(4)
                .is_some_and(|point| Path::new(point).starts_with(dir))
        })
        .map(str::to_owned)
        .collect()
}

/// Builds the probe and the roots in a fresh temporary directory.
fn setup() -> Env {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("spawn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    assert!(
        mounts_under(&dir).is_empty(),
        "a mount under the fresh {}",
        dir.display()
    );
    let roots = Roots {
        slot: dir.join("slot"),
        data: dir.join("data"),
        work: dir.join("work"),
        cgroups: Cgroups::NotEnforced,
    };
    std::fs::create_dir_all(&roots.slot).unwrap();
    std::fs::create_dir_all(&roots.data).unwrap();
    spawn::prepare(&roots).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spawn_probe/probe.rs");
    let target = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    let status = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args([
            "--edition",
            "2021",
            "--target",
            &target,
            "-C",
            "opt-level=1",
            "-o",
        ])
        .arg(roots.slot.join("probe"))
        .arg(&source)
        .status()
        .expect("running rustc for the probe");
    assert!(status.success(), "building the probe for {target} failed");
    Env { dir, roots }
}

/// A one-task manifest for the probe, compiled and read back as PID 1 reads it.
fn probe_policy(binary: &str, args: &[String], network: &str) -> TaskPolicy {
    let arch = std::env::consts::ARCH;
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let (network, syscalls, egress) = match network {
        "none" => ("none", "minimal", ""),
        _ => (
            "allowlist",
            "network",
            "\n[[task.egress]]\nhost = \"192.0.2.1\"\nports = [443]\n",
        ),
    };
    let text = format!(
        r#"
[device]
name = "probe"
version = "0.1.0"
target = "{arch}"

[kernel]
source = "host"

[[task]]
name = "probe"
package = "{binary}"
args = [{args}]
env = {{ PROBE_VAR = "set by the manifest" }}
memory = "16MiB"
cpu = "10%"
pids = 4
tmp = "1MiB"
network = "{network}"
syscalls = "{syscalls}"
{egress}"#,
        args = args.join(", "),
    );
    let manifest = limpet_manifest::parse("limpet.toml", &text).unwrap();
    let json = limpet_compile::compile(&manifest)
        .unwrap()
        .to_json()
        .unwrap();
    let mut device = DevicePolicy::from_json(&json).unwrap();
    let task = device.tasks.remove(0);
    assert_eq!(
        (task.credentials.uid, task.credentials.gid),
        (TASK_ID, TASK_ID)
    );
    task
}

/// Reads the task's stdout and stderr to end-of-file and waits for it.
fn finish(task: Spawned) -> (String, String, i32) {
    let mut out = String::new();
    std::fs::File::from(task.stdout)
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    std::fs::File::from(task.stderr)
        .read_to_string(&mut err)
        .unwrap();
    (out, err, wait(task.pid))
}

/// `waitpid`; the raw status.
fn wait(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: `status` is a valid int for the kernel to write.
    let ret = unsafe { libc::waitpid(pid, &raw mut status, 0) };
    assert_eq!(ret, pid, "waitpid: {}", std::io::Error::last_os_error());
    status
}

fn report(out: &str) -> BTreeMap<&str, &str> {
    out.lines().filter_map(|l| l.split_once('=')).collect()
}

fn errno(n: i32) -> String {
    format!("errno {n}")
}

/// What a report run leaves: the probe's `key=value` lines and what `spawn` said.
struct ReportRun {
    report: BTreeMap<String, String>,
    landlock: spawn::Landlock,
    cgroup: Option<PathBuf>,
}

fn run_report(env: &Env, network: &str) -> ReportRun {
    let args: Vec<String> = vec![
        "report".into(),
        std::process::id().to_string(),
        "/data/probe".into(),
        TMP_BYTES.to_string(),
    ];
    let task = probe_policy("probe", &args, network);
    let spawned = spawn::spawn(&task, &env.roots).unwrap();
    let landlock = spawned.landlock;
    let cgroup = spawned.cgroup.clone();
    let (out, err, status) = finish(spawned);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "probe status {status:#x}\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert_eq!(err, "probe done\n");
    if std::env::var_os("LIMPET_SPAWN_SHOW").is_some() {
        println!("  landlock: {landlock:?}\n{out}");
    }
    ReportRun {
        report: report(&out)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        landlock,
        cgroup,
    }
}

fn probe_sees_only_its_sandbox(env: &Env) {
    let run = run_report(env, "none");
    let get = |k: &str| run.report.get(k).map(String::as_str).unwrap_or("<missing>");
    let ids = format!("{TASK_ID} {TASK_ID} {TASK_ID} {TASK_ID}");
    let expect: &[(&str, String)] = &[
        // PID 1 of its own namespace, which holds nothing else.
        ("pid", "1".into()),
        ("proc_list", "1,self,thread-self".into()),
        // The parent's PID 1 (this test process) is not visible.
        ("kill_parent", errno(libc::ESRCH)),
        ("kill_self", "ok".into()),
        // Exactly the policy's argv and environment.
        (
            "argv",
            format!(
                "probe report {} /data/probe {TMP_BYTES}",
                std::process::id()
            ),
        ),
        ("env", "PROBE_VAR=set by the manifest".into()),
        ("cwd", "/".into()),
        // Identity and privilege.
        ("Uid", ids.clone()),
        ("Gid", ids),
        ("Groups", String::new()),
        ("CapInh", "0000000000000000".into()),
        ("CapPrm", "0000000000000000".into()),
        ("CapEff", "0000000000000000".into()),
        ("CapBnd", "0000000000000000".into()),
        ("CapAmb", "0000000000000000".into()),
        ("NoNewPrivs", "1".into()),
        ("Seccomp", "2".into()),
        ("hostname", "probe".into()),
        // stdin is the task's /dev/null; nothing of the parent's leaked.
        ("fds", "0:/dev/null,1:pipe,2:pipe".into()),
        // Filesystem: read-only root, nothing of the host, a writable noexec data dir.
        ("root_create", errno(libc::EROFS)),
        ("root_mkdir", errno(libc::EROFS)),
        ("etc_passwd", errno(libc::ENOENT)),
        ("data_write", "ok".into()),
        // The mount table, in order, with each mount's flags: the root read-only; execution
        // only from the task's binary; device nodes only through /dev/null.
        (
            "mounts",
            [
                "/:ro+nosuid+nodev+noexec",
                "/proc:rw+nosuid+nodev+noexec",
                "/tmp:rw+nosuid+nodev+noexec",
                "/slot/probe:ro+nosuid+nodev",
                "/dev/null:rw+nosuid+noexec",
                "/data/probe:rw+nosuid+nodev+noexec",
            ]
            .join(" "),
        ),
        ("data_exec", errno(libc::EACCES)),
        // /tmp as declared: the declared size, and no byte more.
        ("tmp_size", format!("{}k", TMP_BYTES / 1024)),
        ("tmp_fill", errno(libc::ENOSPC)),
        // No network: loopback only.
        ("net", "lo".into()),
        // rlimits, soft = hard.
        ("limit_nofile", "256 256".into()),
        ("limit_core", "0 0".into()),
        ("limit_nproc", "4 4".into()),
        ("limit_memlock", "0 0".into()),
        ("limit_fsize", "67108864 67108864".into()),
    ];
    let mut wrong = Vec::new();
    for (key, want) in expect {
        if get(key) != want {
            wrong.push(format!("{key}: want {want:?}, got {:?}", get(key)));
        }
    }
    // Landlock: "/" itself is under no rule, so listing it is refused where it is enforced.
    let list_root = get("root_list");
    match run.landlock {
        spawn::Landlock::Enforced { .. } => {
            if list_root != errno(libc::EACCES) {
                wrong.push(format!("root_list under Landlock: {list_root}"));
            }
        }
        spawn::Landlock::NotEnforced => {
            println!("  note: this kernel has no Landlock; root_list={list_root}");
        }
    }
    assert!(run.cgroup.is_none(), "budgets are not enforced here");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The data directory belongs to the task, 0700, and holds what it wrote.
    let data = env.roots.data.join("probe");
    let meta = std::fs::metadata(&data).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (TASK_ID, TASK_ID, 0o700)
    );
    let written = std::fs::metadata(data.join("probe-data")).unwrap();
    assert_eq!(written.uid(), TASK_ID);
    // umask 077.
    assert_eq!(written.mode() & 0o777, 0o600);
}

fn host_network_task_sees_host_interfaces(env: &Env) {
    let run = run_report(env, "allowlist");
    let host = std::fs::read_to_string("/proc/self/net/dev").unwrap();
    let mut names: Vec<&str> = host
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    names.sort_unstable();
    assert_eq!(
        run.report.get("net").map(String::as_str),
        Some(names.join(",").as_str())
    );
}

fn missing_binary_names_the_step(env: &Env) {
    let task = probe_policy("missing", &["report".into()], "none");
    let err = spawn::spawn(&task, &env.roots).unwrap_err();
    let SpawnError::Child { task, step, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(task, "probe");
    assert_eq!(
        step,
        &Step::BindSource {
            source: "/slot/missing".into()
        }
    );
    assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(
        err.to_string(),
        "task \"probe\": looking up bind source /slot/missing"
    );
    // The failed child was reaped by spawn: no child of ours is left.
    // SAFETY: WNOHANG with a NULL status pointer.
    let ret = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
    assert_eq!(ret, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ECHILD)
    );
}

fn sigterm_is_ignored_sigkill_kills(env: &Env) {
    let task = probe_policy("probe", &["sleep".into()], "none");
    let spawned = spawn::spawn(&task, &env.roots).unwrap();
    // PID 1 of its namespace without a SIGTERM handler: the signal is dropped.
    spawn::kill_task(&spawned, Signal::Term).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut status = 0;
    // SAFETY: `status` is a valid int for the kernel to write.
    let ret = unsafe { libc::waitpid(spawned.pid, &raw mut status, libc::WNOHANG) };
    assert_eq!(ret, 0, "the task ended on SIGTERM (status {status:#x})");
    spawn::kill_task(&spawned, Signal::Kill).unwrap();
    let status = wait(spawned.pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "status {status:#x}"
    );
    spawn::remove_cgroup(&spawned).unwrap();
}
