//! The task binary of the spawn tests: it runs inside the sandbox and reports, one
//! `key=value` line each, what it can and cannot do. Built by `tests/spawn.rs` with plain
//! `rustc` for the host's musl target: a static binary needs nothing in the task's root but
//! itself, and a dynamic one could not even load its C library there (the seccomp program
//! refuses executable mappings). Standard library only, so no Cargo build is needed; the
//! few C functions std does not expose are declared below (musl provides them).
//!
//! Modes (`argv[1]`):
//! - `report <parent-pid> <data-dir> <tmp-bytes>`: print the report, then try to execute a
//!   copy of itself written into the data directory, last, since success replaces it.
//! - `exec-marker`: what that copy prints if it ever runs.
//! - `sleep`: sleep until killed.

use std::ffi::{c_char, c_int, CString};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

#[repr(C)]
struct Utsname {
    fields: [[u8; 65]; 6],
}

extern "C" {
    fn uname(buf: *mut Utsname) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn execv(path: *const c_char, argv: *const *const c_char) -> c_int;
}

fn outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => match e.raw_os_error() {
            Some(n) => format!("errno {n}"),
            None => format!("error {e}"),
        },
    }
}

fn last_errno() -> String {
    outcome::<()>(Err(std::io::Error::last_os_error()))
}

fn status_fields(out: &mut Vec<(String, String)>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if [
            "Uid",
            "Gid",
            "Groups",
            "CapInh",
            "CapPrm",
            "CapEff",
            "CapBnd",
            "CapAmb",
            "NoNewPrivs",
            "Seccomp",
        ]
        .contains(&key)
        {
            let value: Vec<&str> = value.split_whitespace().collect();
            out.push((key.to_owned(), value.join(" ")));
        }
    }
}

fn hostname() -> String {
    let mut buf = Utsname {
        fields: [[0; 65]; 6],
    };
    // SAFETY: `buf` is a writable struct utsname (six 65-byte fields on Linux).
    if unsafe { uname(&mut buf) } != 0 {
        return last_errno();
    }
    let node = &buf.fields[1];
    let end = node.iter().position(|&b| b == 0).unwrap_or(node.len());
    String::from_utf8_lossy(&node[..end]).into_owned()
}

fn kill_result(pid: i32) -> String {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { kill(pid, 0) } == 0 {
        "ok".to_owned()
    } else {
        last_errno()
    }
}

fn interfaces() -> String {
    match std::fs::read_to_string("/proc/self/net/dev") {
        Ok(text) => {
            let mut names: Vec<&str> = text
                .lines()
                .skip(2)
                .filter_map(|l| l.split(':').next())
                .map(str::trim)
                .collect();
            names.sort_unstable();
            names.join(",")
        }
        Err(e) => outcome::<()>(Err(e)),
    }
}

fn listing(dir: &str) -> String {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names.join(",")
        }
        Err(e) => outcome::<()>(Err(e)),
    }
}

fn open_fds() -> String {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return last_errno();
    };
    let mut fds: Vec<(u32, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let fd: u32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            let target = target.to_string_lossy().into_owned();
            // The directory being listed is itself open.
            if target.starts_with("/proc/") {
                return None;
            }
            let target = if target.starts_with("pipe:") {
                "pipe".to_owned()
            } else {
                target
            };
            Some((fd, target))
        })
        .collect();
    fds.sort();
    let fds: Vec<String> = fds.iter().map(|(fd, t)| format!("{fd}:{t}")).collect();
    fds.join(",")
}

fn limits() -> Vec<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let mut out = Vec::new();
    for (label, key) in [
        ("Max open files", "limit_nofile"),
        ("Max core file size", "limit_core"),
        ("Max processes", "limit_nproc"),
        ("Max locked memory", "limit_memlock"),
        ("Max file size", "limit_fsize"),
    ] {
        if let Some(line) = text.lines().find(|l| l.starts_with(label)) {
            let rest: Vec<&str> = line[label.len()..].split_whitespace().collect();
            out.push((
                key.to_owned(),
                rest.iter().take(2).copied().collect::<Vec<_>>().join(" "),
            ));
        }
    }
    out
}

fn tmp_size() -> String {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(4) != Some(&"/tmp") {
            continue;
        }
        if let Some(opts) = fields.last() {
            for opt in opts.split(',') {
                if let Some(size) = opt.strip_prefix("size=") {
                    return size.to_owned();
                }
            }
        }
    }
    "none".to_owned()
}

/// Every mount the task sees, in mount order: `target:flags`, where flags are the
/// per-mount `ro`/`rw`, `nosuid`, `nodev`, `noexec` (atime options left out).
fn mounts() -> String {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(target), Some(opts)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let flags: Vec<&str> = opts
            .split(',')
            .filter(|o| ["ro", "rw", "nosuid", "nodev", "noexec"].contains(o))
            .collect();
        out.push(format!("{target}:{}", flags.join("+")));
    }
    out.join(" ")
}

/// Fills /tmp with `bytes` + one page: the last write must fail with ENOSPC.
fn tmp_fill(bytes: usize) -> String {
    let result = (|| {
        let mut f = std::fs::File::create("/tmp/fill")?;
        let chunk = vec![0x5a; 4096];
        let mut written = 0;
        while written <= bytes {
            f.write_all(&chunk)?;
            written += chunk.len();
        }
        Ok::<_, std::io::Error>(())
    })();
    let out = outcome(result);
    let _ = std::fs::remove_file("/tmp/fill");
    out
}

fn data_write(dir: &str) -> String {
    let path = format!("{dir}/probe-data");
    let result = std::fs::write(&path, b"written by the task")
        .and_then(|()| std::fs::read(&path))
        .map(|back| back == b"written by the task");
    match result {
        Ok(true) => "ok".to_owned(),
        Ok(false) => "read back differs".to_owned(),
        Err(e) => outcome::<()>(Err(e)),
    }
}

/// Writes a copy of this binary into the data directory, executable by mode.
fn write_copy(dir: &str) -> std::io::Result<String> {
    let me = std::fs::read("/proc/self/exe")?;
    let path = format!("{dir}/probe-copy");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(&path)?;
    f.write_all(&me)?;
    Ok(path)
}

fn report(args: &[String]) -> i32 {
    let parent: i32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0);
    let data = args.get(3).cloned().unwrap_or_default();
    let tmp_bytes: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| out.push((k.to_owned(), v));
    put("pid", std::process::id().to_string());
    put("argv", args.join(" "));
    let mut env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();
    put("env", env.join(" "));
    put(
        "cwd",
        match std::env::current_dir() {
            Ok(p) => p.display().to_string(),
            Err(e) => outcome::<()>(Err(e)),
        },
    );
    put("hostname", hostname());
    put("fds", open_fds());
    put("root_create", outcome(std::fs::File::create("/probe-file")));
    put("root_mkdir", outcome(std::fs::create_dir("/probe-dir")));
    put("root_list", listing("/"));
    put("proc_list", listing("/proc"));
    put("etc_passwd", outcome(std::fs::read("/etc/passwd")));
    put("data_write", data_write(&data));
    put("net", interfaces());
    put("mounts", mounts());
    put("tmp_size", tmp_size());
    put("tmp_fill", tmp_fill(tmp_bytes));
    put("kill_parent", kill_result(parent));
    put("kill_self", kill_result(1));
    let mut out = out;
    status_fields(&mut out);
    out.extend(limits());
    let copy = write_copy(&data);

    let mut stdout = std::io::stdout().lock();
    for (k, v) in &out {
        let _ = writeln!(stdout, "{k}={v}");
    }
    let _ = stdout.flush();
    drop(stdout);

    // Last: on success this process becomes the copy, which prints `data_exec=ok`.
    let exec = match copy {
        Ok(path) => {
            let path = CString::new(path).unwrap_or_default();
            let marker = CString::new("exec-marker").unwrap_or_default();
            let argv = [path.as_ptr(), marker.as_ptr(), std::ptr::null()];
            // SAFETY: NUL-terminated strings and a NULL-terminated array, alive for the call.
            unsafe { execv(path.as_ptr(), argv.as_ptr()) };
            last_errno()
        }
        Err(e) => format!("copy failed: {}", outcome::<()>(Err(e))),
    };
    println!("data_exec={exec}");
    eprintln!("probe done");
    0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("report") => report(&args),
        Some("exec-marker") => {
            println!("data_exec=ok");
            0
        }
        Some("sleep") => loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
        },
        _ => {
            eprintln!("probe: unknown mode {:?}", args.get(1));
            2
        }
    };
    std::process::exit(code);
}
