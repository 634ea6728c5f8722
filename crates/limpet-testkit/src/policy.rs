//! A stored task policy (one entry of `policy.json`'s `tasks`) as JSON, for tests that need
//! a whole `TaskPolicy` but care about only a few of its fields. It stands in for what
//! `limpet-compile` writes for a small task; JSON keeps this crate free of limpet-policy, so
//! limpet-policy's own tests can use it.

/// A task named `name` with the given seccomp `program` (hex), `readiness` object and
/// restart `when`; everything else is a small, valid sandbox.
pub fn task_json(
    name: &str,
    program: &str,
    readiness: serde_json::Value,
    when: &str,
) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "exec": { "path": format!("/slot/{name}"), "argv": [name], "env": {} },
        "credentials": { "uid": 10000, "gid": 10000, "supplementary_groups": [] },
        "capabilities": "none",
        "cgroup": {
            "memory_max": 8_388_608, "memory_swap_max": 0, "pids_max": 4,
            "cpu_max": { "quota_us": 10000, "period_us": 100000 }
        },
        "namespaces": {
            "pid": "new", "mount": "new", "ipc": "new", "uts": "new", "cgroup": "new",
            "net": "new-empty"
        },
        "mounts": [],
        "landlock": { "read": [], "write": [], "devices": [], "execute": [] },
        "rlimits": [],
        "memory_deny_write_execute": "prctl",
        "seccomp": { "arch": "x86_64", "program": program },
        "restart": {
            "when": when, "backoff_initial_ms": 1000, "backoff_max_ms": 60000,
            "crash_loop_limit": 5
        },
        "readiness": readiness
    })
}
