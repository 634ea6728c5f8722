//! Each task's sandbox: a manifest task compiled into the [`TaskPolicy`] PID 1 applies as
//! it stands (cgroup file contents, mount list, Landlock paths, rlimits, a seccomp program).
//!
//! Rules this module keeps:
//! - Pure: no I/O. Same manifest, same policy, byte for byte.
//! - Task identity: task number `i` (manifest order, from 0) runs as uid and gid
//!   [`FIRST_TASK_ID`]` + i`; no supplementary groups, no capabilities.
//! - Execution is allowed on exactly one mount, the task's own binary in the verified slot;
//!   device nodes only on the binds of its declared devices and `/dev/null`.
//! - Mounts are ordered parents first; of two mounts on one path the first is kept.

use limpet_manifest::{Manifest, NetworkAccess, Readiness, RestartPolicy, Task};
use limpet_policy::Arch;
use limpet_policy::{
    Capabilities, CgroupLimits, CpuMax, Credentials, DeviceNodes, Exec, ExecFiles, Landlock, Mdwe,
    Mount, MountFlags, MountKind, Namespaces, NetNamespace, Private, ReadinessCheck, Resource,
    Restart, RestartWhen, Rlimit, SeccompProgram, SetId, TaskPolicy, CPU_PERIOD_US, DATA_DIR,
    FIRST_TASK_ID, MAX_OPEN_FILES, NOTIFY_DIR, NOTIFY_SOCKET, SLOT_DIR,
};

use crate::seccomp;
use crate::CompileError;

pub(crate) fn compile_task(
    manifest: &Manifest,
    arch: Arch,
    index: usize,
    task: &Task,
) -> Result<TaskPolicy, CompileError> {
    let name = task.name.as_str();
    let id = u32::try_from(index)
        .ok()
        .and_then(|i| FIRST_TASK_ID.checked_add(i))
        .ok_or_else(|| CompileError::TooManyTasks {
            task: name.to_owned(),
            index,
        })?;
    let binary = task.binary.as_str();
    let exec_path = format!("{SLOT_DIR}/{binary}");
    let notify_socket = format!("{NOTIFY_DIR}/{name}.sock");

    let mut env = task.env.clone();
    let readiness = match task.readiness {
        Readiness::Started => ReadinessCheck::Started,
        Readiness::Notify { timeout } => {
            env.insert("NOTIFY_SOCKET".to_owned(), NOTIFY_SOCKET.to_owned());
            ReadinessCheck::Notify {
                timeout_ms: timeout.as_millis(),
                socket: notify_socket.clone(),
            }
        }
    };
    let argv = std::iter::once(binary.to_owned())
        .chain(task.args.iter().cloned())
        .collect();

    let (mounts, landlock) = filesystem(task, &exec_path, &notify_socket);

    let restart = Restart {
        when: match task.restart.policy {
            RestartPolicy::Always => RestartWhen::Always,
            RestartPolicy::OnFailure => RestartWhen::OnFailure,
            RestartPolicy::Never => RestartWhen::Never,
        },
        backoff_initial_ms: task.restart.backoff_initial.as_millis(),
        backoff_max_ms: task.restart.backoff_max.as_millis(),
        crash_loop_limit: task.restart.crash_loop_limit,
    };

    Ok(TaskPolicy {
        name: name.to_owned(),
        exec: Exec {
            path: exec_path,
            argv,
            env,
        },
        credentials: Credentials {
            uid: id,
            gid: id,
            supplementary_groups: Vec::new(),
        },
        capabilities: Capabilities::None,
        cgroup: CgroupLimits {
            memory_max: task.memory.bytes(),
            memory_swap_max: 0,
            pids_max: task.pids,
            cpu_max: CpuMax {
                quota_us: u64::from(task.cpu.percent()) * (CPU_PERIOD_US / 100),
                period_us: CPU_PERIOD_US,
            },
        },
        namespaces: Namespaces {
            pid: Private::New,
            mount: Private::New,
            ipc: Private::New,
            uts: Private::New,
            cgroup: Private::New,
            net: match task.network {
                NetworkAccess::None => NetNamespace::NewEmpty,
                NetworkAccess::Allowlist => NetNamespace::Host,
            },
        },
        mounts,
        landlock,
        rlimits: vec![
            Rlimit {
                resource: Resource::Nofile,
                limit: MAX_OPEN_FILES,
            },
            Rlimit {
                resource: Resource::Core,
                limit: 0,
            },
            Rlimit {
                resource: Resource::Nproc,
                limit: u64::from(task.pids),
            },
            Rlimit {
                resource: Resource::Memlock,
                limit: 0,
            },
            Rlimit {
                resource: Resource::Fsize,
                limit: manifest.disk.data_size.bytes(),
            },
        ],
        memory_deny_write_execute: Mdwe::Prctl,
        seccomp: SeccompProgram {
            arch,
            program: seccomp::compile(task, arch).map_err(CompileError::Seccomp)?,
        },
        restart,
        readiness,
    })
}

const fn flags(devices: DeviceNodes, exec: ExecFiles) -> MountFlags {
    MountFlags {
        setuid: SetId::Ignore,
        devices,
        exec,
    }
}

/// Inert data: no devices, no execution.
const DATA: MountFlags = flags(DeviceNodes::Deny, ExecFiles::Deny);

/// The mount list and Landlock rules of a task.
fn filesystem(task: &Task, exec_path: &str, notify_socket: &str) -> (Vec<Mount>, Landlock) {
    let bind = |path: &str, kind, flags| Mount {
        source: path.to_owned(),
        target: path.to_owned(),
        kind,
        flags,
    };
    let data_dir = format!("{DATA_DIR}/{}", task.name);
    let mut mounts = vec![
        Mount {
            source: "proc".to_owned(),
            target: "/proc".to_owned(),
            kind: MountKind::Proc,
            flags: DATA,
        },
        // The one place execution is allowed: the verified, read-only slot.
        bind(
            exec_path,
            MountKind::BindReadOnly,
            flags(DeviceNodes::Deny, ExecFiles::Allow),
        ),
        // Every task gets /dev/null: std and many libraries open it; it grants nothing.
        bind(
            "/dev/null",
            MountKind::BindReadWrite,
            flags(DeviceNodes::Allow, ExecFiles::Deny),
        ),
    ];
    let mut landlock = Landlock {
        read: vec!["/proc".to_owned()],
        write: Vec::new(),
        devices: vec!["/dev/null".to_owned()],
        execute: vec![exec_path.to_owned()],
    };
    for dev in &task.devices {
        mounts.push(bind(
            dev.as_str(),
            MountKind::BindReadWrite,
            flags(DeviceNodes::Allow, ExecFiles::Deny),
        ));
        landlock.devices.push(dev.to_string());
    }
    for path in &task.files.read {
        mounts.push(bind(path.as_str(), MountKind::BindReadOnly, DATA));
        landlock.read.push(path.to_string());
    }
    mounts.push(bind(&data_dir, MountKind::BindReadWrite, DATA));
    landlock.write.push(data_dir.clone());
    for path in &task.files.write {
        // A path at or below the data directory is already mounted and granted with it.
        let covered = path.as_str() == data_dir
            || path
                .as_str()
                .strip_prefix(data_dir.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        if !covered {
            mounts.push(bind(path.as_str(), MountKind::BindReadWrite, DATA));
            landlock.write.push(path.to_string());
        }
    }
    if let Some(size) = task.tmp {
        mounts.push(Mount {
            source: "tmpfs".to_owned(),
            target: "/tmp".to_owned(),
            kind: MountKind::Tmpfs { size: size.bytes() },
            flags: DATA,
        });
        landlock.write.push("/tmp".to_owned());
    }
    if task.name.as_str() == limpet_manifest::UPDATE_AGENT_TASK {
        // The update agent's one privileged door: PID 1's install socket (owned by the
        // agent's uid, mode 0600; limpet-install-api). Like the notify socket, not a
        // Landlock matter.
        mounts.push(Mount {
            source: limpet_install_api::INSTALL_SOCKET.to_owned(),
            target: limpet_install_api::INSTALL_SOCKET.to_owned(),
            kind: MountKind::BindReadWrite,
            flags: DATA,
        });
    }
    if task.name.as_str() == limpet_manifest::REMOTE_AGENT_TASK {
        // The remote agent's door: PID 1's remote socket (owned by its uid, mode 0600),
        // which signs the remote-access proofs and nothing else.
        mounts.push(Mount {
            source: limpet_install_api::REMOTE_SOCKET.to_owned(),
            target: limpet_install_api::REMOTE_SOCKET.to_owned(),
            kind: MountKind::BindReadWrite,
            flags: DATA,
        });
    }
    if task.rights.contains(&limpet_manifest::Right::OwnerRequest) {
        // The owner-request right's door: PID 1's owner-request socket, mounted into the
        // granted tasks' sandboxes only (PID 1 also checks the peer's uid; limpet-install's
        // `owner`). Not a Landlock matter, like the sockets above.
        mounts.push(Mount {
            source: limpet_install_api::OWNER_SOCKET.to_owned(),
            target: limpet_install_api::OWNER_SOCKET.to_owned(),
            kind: MountKind::BindReadWrite,
            flags: DATA,
        });
    }
    if matches!(task.readiness, Readiness::Notify { .. }) {
        mounts.push(Mount {
            source: notify_socket.to_owned(),
            target: NOTIFY_SOCKET.to_owned(),
            kind: MountKind::BindReadWrite,
            flags: DATA,
        });
        // No Landlock rule: sending to a named socket is not a file access Landlock
        // mediates (and the kernel refuses a rule on a socket, ENXIO); the socket's owner
        // and mode (the task's uid, 0600) are what limit it.
    }
    // A later mount on an earlier one's path would hide it; one on a path below an earlier
    // one must come after it. Keep the first of equal targets, then order parents first.
    let mut seen = std::collections::BTreeSet::new();
    mounts.retain(|m| seen.insert(m.target.clone()));
    mounts.sort_by_key(|m| m.target.matches('/').count());
    (mounts, landlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile;
    use crate::seccomp::SeccompError;
    use limpet_policy::{DevicePolicy, PolicyError, FORMAT};

    fn manifest(path: &str) -> Manifest {
        let full = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&full).unwrap();
        limpet_manifest::parse(path, &text).unwrap()
    }

    fn hello() -> TaskPolicy {
        let p = compile(&manifest("examples/hello/limpet.toml")).unwrap();
        assert_eq!(p.format, FORMAT);
        assert_eq!(p.arch, Arch::X86_64);
        assert_eq!(p.tasks.len(), 1);
        p.tasks.into_iter().next().unwrap()
    }

    fn full() -> DevicePolicy {
        compile(&manifest(
            "crates/limpet-manifest/tests/fixtures/good/full.toml",
        ))
        .unwrap()
    }

    fn flags_of(devices: DeviceNodes, exec: ExecFiles) -> MountFlags {
        flags(devices, exec)
    }

    #[test]
    fn hello_exec_and_identity() {
        let t = hello();
        assert_eq!(t.name, "hello");
        assert_eq!(t.exec.path, "/slot/hello");
        assert_eq!(t.exec.argv, ["hello"]);
        assert!(t.exec.env.is_empty());
        assert_eq!(
            t.credentials,
            Credentials {
                uid: 10_000,
                gid: 10_000,
                supplementary_groups: vec![]
            }
        );
        assert_eq!(t.capabilities, Capabilities::None);
    }

    #[test]
    fn hello_cgroup_files() {
        let t = hello();
        assert_eq!(
            t.cgroup.files(),
            [
                ("memory.max", "8388608".to_owned()),
                ("memory.swap.max", "0".to_owned()),
                ("pids.max", "2".to_owned()),
                ("cpu.max", "5000 100000".to_owned()),
            ]
        );
    }

    #[test]
    fn hello_namespaces_mounts_landlock() {
        let t = hello();
        assert_eq!(t.namespaces.net, NetNamespace::NewEmpty);
        assert_eq!(t.namespaces.pid, Private::New);
        let data = flags_of(DeviceNodes::Deny, ExecFiles::Deny);
        let mounts: Vec<_> = t
            .mounts
            .iter()
            .map(|m| (m.source.as_str(), m.target.as_str(), m.kind, m.flags))
            .collect();
        assert_eq!(
            mounts,
            [
                ("proc", "/proc", MountKind::Proc, data),
                (
                    "/slot/hello",
                    "/slot/hello",
                    MountKind::BindReadOnly,
                    flags_of(DeviceNodes::Deny, ExecFiles::Allow)
                ),
                (
                    "/dev/null",
                    "/dev/null",
                    MountKind::BindReadWrite,
                    flags_of(DeviceNodes::Allow, ExecFiles::Deny)
                ),
                ("/data/hello", "/data/hello", MountKind::BindReadWrite, data),
            ]
        );
        assert_eq!(
            t.landlock,
            Landlock {
                read: vec!["/proc".into()],
                write: vec!["/data/hello".into()],
                devices: vec!["/dev/null".into()],
                execute: vec!["/slot/hello".into()],
            }
        );
    }

    #[test]
    fn hello_rlimits_mdwe_restart_readiness_seccomp() {
        let t = hello();
        let limits: Vec<_> = t.rlimits.iter().map(|r| (r.resource, r.limit)).collect();
        assert_eq!(
            limits,
            [
                (Resource::Nofile, 256),
                (Resource::Core, 0),
                (Resource::Nproc, 2),
                (Resource::Memlock, 0),
                (Resource::Fsize, 64 * 1024 * 1024),
            ]
        );
        assert_eq!(t.memory_deny_write_execute, Mdwe::Prctl);
        assert_eq!(
            t.restart,
            Restart {
                when: RestartWhen::Always,
                backoff_initial_ms: 1000,
                backoff_max_ms: 60_000,
                crash_loop_limit: 5
            }
        );
        assert_eq!(t.readiness, ReadinessCheck::Started);
        assert_eq!(t.seccomp.arch, Arch::X86_64);
        let hello_manifest = manifest("examples/hello/limpet.toml");
        assert_eq!(
            t.seccomp.program,
            seccomp::compile(&hello_manifest.tasks[0], Arch::X86_64).unwrap()
        );
    }

    #[test]
    fn full_sensor() {
        let p = full();
        assert_eq!(p.arch, Arch::Aarch64);
        let s = &p.tasks[0];
        assert_eq!(s.name, "sensor");
        assert_eq!(s.exec.path, "/slot/sensord");
        assert_eq!(s.exec.argv, ["sensord", "--interval", "5s"]);
        let env: Vec<_> = s
            .exec
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("NOTIFY_SOCKET", "/run/notify"),
                ("RUST_LOG", "info"),
                ("SENSOR_BUS", "1"),
            ]
        );
        assert_eq!(s.credentials.uid, 10_000);
        assert_eq!(
            s.cgroup.files(),
            [
                ("memory.max", "8388608".to_owned()),
                ("memory.swap.max", "0".to_owned()),
                ("pids.max", "4".to_owned()),
                ("cpu.max", "10000 100000".to_owned()),
            ]
        );
        assert_eq!(s.namespaces.net, NetNamespace::Host);
        let data = flags_of(DeviceNodes::Deny, ExecFiles::Deny);
        let mounts: Vec<_> = s
            .mounts
            .iter()
            .map(|m| (m.source.as_str(), m.target.as_str(), m.kind, m.flags))
            .collect();
        assert_eq!(
            mounts,
            [
                ("proc", "/proc", MountKind::Proc, data),
                (
                    "tmpfs",
                    "/tmp",
                    MountKind::Tmpfs { size: 1024 * 1024 },
                    data
                ),
                (
                    "/slot/sensord",
                    "/slot/sensord",
                    MountKind::BindReadOnly,
                    flags_of(DeviceNodes::Deny, ExecFiles::Allow)
                ),
                (
                    "/dev/null",
                    "/dev/null",
                    MountKind::BindReadWrite,
                    flags_of(DeviceNodes::Allow, ExecFiles::Deny)
                ),
                (
                    "/dev/i2c-1",
                    "/dev/i2c-1",
                    MountKind::BindReadWrite,
                    flags_of(DeviceNodes::Allow, ExecFiles::Deny)
                ),
                (
                    "/etc/thermostat",
                    "/etc/thermostat",
                    MountKind::BindReadOnly,
                    data
                ),
                // `write = ["/data/sensor"]` is the data directory itself: one mount.
                (
                    "/data/sensor",
                    "/data/sensor",
                    MountKind::BindReadWrite,
                    data
                ),
                (
                    "/run/limpet/notify/sensor.sock",
                    "/run/notify",
                    MountKind::BindReadWrite,
                    data
                ),
                // `rights = ["owner-request"]`.
                (
                    "/run/limpet/owner.sock",
                    "/run/limpet/owner.sock",
                    MountKind::BindReadWrite,
                    data
                ),
            ]
        );
        assert_eq!(
            s.landlock,
            Landlock {
                read: vec!["/proc".into(), "/etc/thermostat".into()],
                write: vec!["/data/sensor".into(), "/tmp".into()],
                devices: vec!["/dev/null".into(), "/dev/i2c-1".into()],
                execute: vec!["/slot/sensord".into()],
            }
        );
        let limits: Vec<_> = s.rlimits.iter().map(|r| (r.resource, r.limit)).collect();
        assert_eq!(
            limits,
            [
                (Resource::Nofile, 256),
                (Resource::Core, 0),
                (Resource::Nproc, 4),
                (Resource::Memlock, 0),
                (Resource::Fsize, 32 * 1024 * 1024),
            ]
        );
        assert_eq!(
            s.restart,
            Restart {
                when: RestartWhen::OnFailure,
                backoff_initial_ms: 500,
                backoff_max_ms: 30_000,
                crash_loop_limit: 3
            }
        );
        assert_eq!(
            s.readiness,
            ReadinessCheck::Notify {
                timeout_ms: 10_000,
                socket: "/run/limpet/notify/sensor.sock".into()
            }
        );
        assert_eq!(s.seccomp.arch, Arch::Aarch64);
    }

    #[test]
    fn full_web() {
        let p = full();
        let w = &p.tasks[1];
        assert_eq!(w.name, "web");
        assert_eq!(w.exec.path, "/slot/thermostat-web");
        assert_eq!(w.credentials.uid, 10_001);
        assert_eq!(w.credentials.gid, 10_001);
        assert_eq!(w.cgroup.cpu_max.to_string(), "120000 100000");
        assert_eq!(w.cgroup.pids_max, 16);
        assert_eq!(w.namespaces.net, NetNamespace::Host);
        assert!(w.exec.env.is_empty());
        assert_eq!(w.readiness, ReadinessCheck::Started);
        assert_eq!(w.restart.when, RestartWhen::Always);
        assert!(!w.mounts.iter().any(|m| m.target == "/tmp"));
        // Execution is allowed on exactly one mount: the task's binary.
        let exec: Vec<_> = w
            .mounts
            .iter()
            .filter(|m| m.flags.exec == ExecFiles::Allow)
            .map(|m| m.target.as_str())
            .collect();
        assert_eq!(exec, ["/slot/thermostat-web"]);
        assert_ne!(p.tasks[0].seccomp.program, w.seccomp.program);
    }

    /// `rights = ["owner-request"]` (the sensor's, in full.toml): the task is named in the
    /// policy and only its sandbox has PID 1's owner-request socket; the web task, without
    /// the right, has no such mount and is not named.
    #[test]
    fn only_a_granted_task_gets_the_owner_request_socket() {
        let p = full();
        assert_eq!(p.owner_requesters, ["sensor"]);
        let has_socket = |t: &TaskPolicy| {
            t.mounts
                .iter()
                .any(|m| m.target == limpet_install_api::OWNER_SOCKET)
        };
        assert!(has_socket(&p.tasks[0]));
        assert!(!has_socket(&p.tasks[1]));
        // A policy with no granted task leaves the field out of its JSON (older policies
        // and PID 1s read the same bytes).
        let hello = compile(&manifest("examples/hello/limpet.toml")).unwrap();
        assert!(hello.owner_requesters.is_empty());
        let text = String::from_utf8(hello.to_json().unwrap()).unwrap();
        assert!(!text.contains("owner_requesters"), "{text}");
    }

    #[test]
    fn json_round_trip_and_format_check() {
        let p = full();
        let json = p.to_json().unwrap();
        assert_eq!(DevicePolicy::from_json(&json).unwrap(), p);
        // Deterministic.
        assert_eq!(full().to_json().unwrap(), json);
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains("\"net\": \"host\""), "{text}");
        assert!(text.contains("\"memory_deny_write_execute\": \"prctl\""));
        let other = text.replacen("\"format\": 1", "\"format\": 2", 1);
        assert!(matches!(
            DevicePolicy::from_json(other.as_bytes()),
            Err(PolicyError::Format { found: 2 })
        ));
        let unknown = text.replacen("\"format\": 1", "\"format\": 1, \"extra\": 0", 1);
        assert!(matches!(
            DevicePolicy::from_json(unknown.as_bytes()),
            Err(PolicyError::Json(_))
        ));
    }

    #[test]
    fn seccomp_errors_name_the_task() {
        let text = std::fs::read_to_string(format!(
            "{}/../../examples/hello/limpet.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
        .replace(
            "syscalls = { profile = \"minimal\" }",
            "syscalls = { profile = \"minimal\", allow = [\"reboot\"] }",
        );
        let m = limpet_manifest::parse("limpet.toml", &text).unwrap();
        let e = compile(&m).unwrap_err();
        let CompileError::Seccomp(source) = &e else {
            panic!("{e:?}")
        };
        assert!(
            matches!(source, SeccompError::Forbidden { task, syscall, .. }
            if task == "hello" && syscall == "reboot")
        );
    }
}
