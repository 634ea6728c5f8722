//! What the child will do, worked out in the parent before `clone3`: host paths for every
//! mount, mount flags, rlimits, Landlock paths, the exec arrays. Pure (no I/O), so the
//! mapping from policy to kernel arguments is unit-tested; the child only carries it out.

use std::ffi::{CStr, CString};
use std::path::{Component, Path, PathBuf};

use limpet_policy::{
    Bpf, DeviceNodes, ExecFiles, Mount, MountKind, Resource, SetId, TaskPolicy, DATA_DIR, SLOT_DIR,
};
use rustix::mount::MountFlags;
use rustix::process::Resource as RlimitResource;

use super::sys::ExecArgs;
use super::{Roots, SpawnError};

/// Options of the task's root tmpfs: it holds only mount points (directories and empty
/// files), so a few inodes and no data; 0755 so the task's uid can walk it.
pub(super) const TMPFS_ROOT_OPTIONS: &CStr = c"mode=0755,size=64k,nr_inodes=256";

/// One mount, in host terms.
#[derive(Debug)]
pub(super) struct PlannedMount {
    /// For a bind, the source in PID 1's view; unused otherwise.
    pub source: PathBuf,
    /// The mount point, in PID 1's view: under the task's root directory.
    pub target: PathBuf,
    pub what: MountWhat,
    /// NOSUID always; NODEV, NOEXEC and RDONLY as the policy says.
    pub flags: MountFlags,
}

/// What a planned mount is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum MountWhat {
    Bind,
    Tmpfs { options: CString },
    Proc,
}

/// The rights a Landlock rule grants beneath its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grant {
    Read,
    Write,
    Device,
    Execute,
}

/// Everything the child needs.
#[derive(Debug)]
pub(super) struct Plan {
    /// `<work>/<task>`: where the root tmpfs is mounted, in PID 1's view.
    pub root: PathBuf,
    pub hostname: String,
    pub mounts: Vec<PlannedMount>,
    pub uid: u32,
    pub gid: u32,
    pub rlimits: Vec<(RlimitResource, u64)>,
    /// Paths inside the task's root, in the policy's order: read, write, devices, execute.
    pub landlock: Vec<(String, Grant)>,
    pub seccomp: Bpf,
    pub exec: ExecArgs,
}

impl Plan {
    pub(super) fn new(policy: &TaskPolicy, roots: &Roots) -> Result<Plan, SpawnError> {
        let task = || policy.name.clone();
        let root = roots.work.join(task_component(&policy.name)?);
        let mounts = policy
            .mounts
            .iter()
            .map(|m| plan_mount(m, &root, roots, policy))
            .collect::<Result<_, _>>()?;
        let c = &policy.credentials;
        // Never root, never the invalid id -1, never supplementary groups: the policy says
        // so, and a corrupt policy must not start a privileged task.
        let bad = |id: u32| id == 0 || id == u32::MAX;
        if bad(c.uid) || bad(c.gid) || !c.supplementary_groups.is_empty() {
            return Err(SpawnError::Credentials {
                task: task(),
                uid: c.uid,
                gid: c.gid,
            });
        }
        let l = &policy.landlock;
        let landlock = [
            (&l.read, Grant::Read),
            (&l.write, Grant::Write),
            (&l.devices, Grant::Device),
            (&l.execute, Grant::Execute),
        ]
        .into_iter()
        .flat_map(|(paths, grant)| paths.iter().map(move |p| (p.clone(), grant)))
        .collect();
        let env: Vec<String> = policy
            .exec
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let exec = ExecArgs::new(&policy.exec.path, &policy.exec.argv, &env)
            .ok_or_else(|| SpawnError::NulInExec { task: task() })?;
        Ok(Plan {
            root,
            hostname: policy.name.clone(),
            mounts,
            uid: c.uid,
            gid: c.gid,
            rlimits: policy
                .rlimits
                .iter()
                .map(|r| (rlimit_resource(r.resource), r.limit))
                .collect(),
            landlock,
            seccomp: policy.seccomp.program.clone(),
            exec,
        })
    }
}

/// The task's name as one path component (`<work>/<task>`, `<data>/<task>`, the cgroup).
/// The manifest's names are already `[a-z][a-z0-9-]*`; this keeps a stray policy from
/// naming a path outside those directories.
pub(super) fn task_component(name: &str) -> Result<&str, SpawnError> {
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) if !name.contains('/') => Ok(name),
        _ => Err(SpawnError::TaskName {
            task: name.to_owned(),
        }),
    }
}

/// `path` relative to `dir` when it is `dir` or below it.
fn below<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(dir)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

/// A bind source in PID 1's view of this `roots`: `SLOT_DIR` and `DATA_DIR` are the
/// roots' `slot` and `data` (they differ in tests); any other path is taken as it stands.
pub(super) fn host_source(source: &str, roots: &Roots) -> PathBuf {
    if let Some(rest) = below(source, SLOT_DIR) {
        join_relative(&roots.slot, rest)
    } else if let Some(rest) = below(source, DATA_DIR) {
        join_relative(&roots.data, rest)
    } else {
        PathBuf::from(source)
    }
}

fn join_relative(base: &Path, rest: &str) -> PathBuf {
    if rest.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rest)
    }
}

/// A mount target under the task's root: absolute, not `/` itself, no `.` or `..`.
fn target_under(root: &Path, target: &str) -> Option<PathBuf> {
    let path = Path::new(target);
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return None;
    }
    let mut out = root.to_path_buf();
    let mut any = false;
    for c in components {
        match c {
            Component::Normal(part) => {
                out.push(part);
                any = true;
            }
            _ => return None,
        }
    }
    any.then_some(out)
}

fn plan_mount(
    m: &Mount,
    root: &Path,
    roots: &Roots,
    policy: &TaskPolicy,
) -> Result<PlannedMount, SpawnError> {
    let target = target_under(root, &m.target).ok_or_else(|| SpawnError::MountTarget {
        task: policy.name.clone(),
        target: m.target.clone(),
    })?;
    let SetId::Ignore = m.flags.setuid;
    let mut flags = MountFlags::NOSUID;
    if m.flags.devices == DeviceNodes::Deny {
        flags |= MountFlags::NODEV;
    }
    if m.flags.exec == ExecFiles::Deny {
        flags |= MountFlags::NOEXEC;
    }
    let (what, source) = match m.kind {
        MountKind::BindReadOnly => {
            flags |= MountFlags::RDONLY;
            (MountWhat::Bind, host_source(&m.source, roots))
        }
        MountKind::BindReadWrite => (MountWhat::Bind, host_source(&m.source, roots)),
        MountKind::Tmpfs { size } => (
            MountWhat::Tmpfs {
                // Owned by the task, private to it.
                options: CString::new(format!(
                    "size={size},mode=0700,uid={},gid={}",
                    policy.credentials.uid, policy.credentials.gid
                ))
                // Unreachable (numbers only), but no panic in PID 1.
                .map_err(|_| SpawnError::NulInExec {
                    task: policy.name.clone(),
                })?,
            },
            PathBuf::new(),
        ),
        MountKind::Proc => (MountWhat::Proc, PathBuf::new()),
    };
    Ok(PlannedMount {
        source,
        target,
        what,
        flags,
    })
}

fn rlimit_resource(resource: Resource) -> RlimitResource {
    match resource {
        Resource::Nofile => RlimitResource::Nofile,
        Resource::Core => RlimitResource::Core,
        Resource::Nproc => RlimitResource::Nproc,
        Resource::Memlock => RlimitResource::Memlock,
        Resource::Fsize => RlimitResource::Fsize,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::spawn::Cgroups;

    fn roots() -> Roots {
        Roots {
            slot: "/tmp/s".into(),
            data: "/tmp/d".into(),
            work: "/tmp/w".into(),
            cgroups: Cgroups::NotEnforced,
        }
    }

    fn sensor() -> TaskPolicy {
        let path = "crates/limpet-manifest/tests/fixtures/good/full.toml";
        let text = std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
        let m = limpet_manifest::parse(path, &text).unwrap();
        limpet_compile::compile(&m).unwrap().tasks.remove(0)
    }

    #[test]
    fn sources_map_to_roots() {
        let r = roots();
        assert_eq!(
            host_source("/slot/sensord", &r),
            Path::new("/tmp/s/sensord")
        );
        assert_eq!(host_source("/data/sensor", &r), Path::new("/tmp/d/sensor"));
        assert_eq!(host_source("/data", &r), Path::new("/tmp/d"));
        assert_eq!(host_source("/dev/null", &r), Path::new("/dev/null"));
        // A sibling that merely shares the prefix is not under the slot.
        assert_eq!(host_source("/slotx/a", &r), Path::new("/slotx/a"));
    }

    #[test]
    fn targets_stay_under_the_root() {
        let root = Path::new("/w/t");
        assert_eq!(target_under(root, "/a/b"), Some("/w/t/a/b".into()));
        assert_eq!(target_under(root, "/a/../../etc"), None);
        assert_eq!(target_under(root, "a"), None);
        assert_eq!(target_under(root, "/"), None);
    }

    #[test]
    fn task_names_are_one_component() {
        assert!(task_component("sensor").is_ok());
        for bad in ["", "..", ".", "a/b", "/a"] {
            assert!(
                matches!(task_component(bad), Err(SpawnError::TaskName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sensor_plan() {
        let p = Plan::new(&sensor(), &roots()).unwrap();
        assert_eq!(p.root, Path::new("/tmp/w/sensor"));
        let mounts: Vec<_> = p
            .mounts
            .iter()
            .map(|m| {
                (
                    m.source.to_str().unwrap(),
                    m.target.to_str().unwrap(),
                    &m.what,
                    m.flags,
                )
            })
            .collect();
        let inert = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        let tmpfs = MountWhat::Tmpfs {
            options: c"size=1048576,mode=0700,uid=10000,gid=10000".into(),
        };
        assert_eq!(
            mounts,
            [
                ("", "/tmp/w/sensor/proc", &MountWhat::Proc, inert),
                ("", "/tmp/w/sensor/tmp", &tmpfs, inert),
                (
                    "/tmp/s/sensord",
                    "/tmp/w/sensor/slot/sensord",
                    &MountWhat::Bind,
                    MountFlags::NOSUID | MountFlags::NODEV | MountFlags::RDONLY
                ),
                (
                    "/dev/null",
                    "/tmp/w/sensor/dev/null",
                    &MountWhat::Bind,
                    MountFlags::NOSUID | MountFlags::NOEXEC
                ),
                (
                    "/dev/i2c-1",
                    "/tmp/w/sensor/dev/i2c-1",
                    &MountWhat::Bind,
                    MountFlags::NOSUID | MountFlags::NOEXEC
                ),
                (
                    "/etc/thermostat",
                    "/tmp/w/sensor/etc/thermostat",
                    &MountWhat::Bind,
                    inert | MountFlags::RDONLY
                ),
                (
                    "/tmp/d/sensor",
                    "/tmp/w/sensor/data/sensor",
                    &MountWhat::Bind,
                    inert
                ),
                (
                    "/run/limpet/notify/sensor.sock",
                    "/tmp/w/sensor/run/notify",
                    &MountWhat::Bind,
                    inert
                ),
                // The fixture grants the sensor `rights = ["owner-request"]`.
                (
                    "/run/limpet/owner.sock",
                    "/tmp/w/sensor/run/limpet/owner.sock",
                    &MountWhat::Bind,
                    inert
                ),
            ]
        );
        assert_eq!((p.uid, p.gid), (10_000, 10_000));
        assert_eq!(p.hostname, "sensor");
        assert_eq!(
            p.landlock,
            [
                ("/proc".to_owned(), Grant::Read),
                ("/etc/thermostat".to_owned(), Grant::Read),
                ("/data/sensor".to_owned(), Grant::Write),
                ("/tmp".to_owned(), Grant::Write),
                ("/dev/null".to_owned(), Grant::Device),
                ("/dev/i2c-1".to_owned(), Grant::Device),
                ("/slot/sensord".to_owned(), Grant::Execute),
            ]
        );
        assert_eq!(p.rlimits.len(), 5);
        assert_eq!(p.rlimits[0], (RlimitResource::Nofile, 256));
    }

    #[test]
    fn root_uid_is_refused() {
        let mut t = sensor();
        t.credentials.uid = 0;
        assert!(matches!(
            Plan::new(&t, &roots()),
            Err(SpawnError::Credentials { uid: 0, .. })
        ));
    }

    #[test]
    fn nul_in_argv_is_refused() {
        let mut t = sensor();
        t.exec.argv.push("a\0b".into());
        assert!(matches!(
            Plan::new(&t, &roots()),
            Err(SpawnError::NulInExec { .. })
        ));
    }
}
