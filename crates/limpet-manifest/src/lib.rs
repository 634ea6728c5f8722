//! `limpet.toml`: the schema of a Limpet device, parsing with located errors, semantic
//! validation, and the canonical form.
//!
//! # The flow
//!
//! [`parse`] runs three stages:
//! 1. **Parse** (`raw`): the TOML as written, into serde shapes that deny unknown keys and
//!    keep the span of every value; a syntax or shape error stops here.
//! 2. **Validate** (`validate`): each section's checks turn its raw shape into checked
//!    newtypes, reporting every problem at the value's line and column; then the checks
//!    across sections (task names, budgets against the device) run, and a [`Manifest`] is
//!    built only when nothing was reported.
//! 3. **Canonical form** ([`Manifest::to_canonical_toml`]): every default written out in a
//!    fixed order, so that `parse(canonical) == manifest`.
//!
//! # Where each section lives
//!
//! Each module holds a section's validated types *and* the checks that build them:
//!
//! | Section | Module |
//! |---|---|
//! | `[device]`, `[kernel]`, `[disk]` | `device` |
//! | `[network]` | `network` |
//! | `[[task]]`: budgets, files, devices, system calls | `task` |
//! | `restart`, `readiness` | `task::supervision` |
//! | `network`, `[[task.egress]]`, `[[task.listen]]` | `task::net` |
//! | `[update]` (and the agent task it implies: `agent`) | `update` |
//! | `[lifecycle]` | `lifecycle` |
//! | `[remote]` (and the remote agent's task it implies) | `remote` |
//! | checks across sections, the order checks run in | `validate` |
//!
//! Shared pieces: `keyword` (one table per enum of words, read by the parser, the canonical
//! writer and the hints), `names` and `units` (newtypes for names, sizes, durations,
//! rates), `diag` (located diagnostics), [`mud`] (the RFC 8520 profile built from a
//! manifest).
//!
//! # Rules this crate keeps
//!
//! - Pure: no I/O beyond the text it is given. Paths in the manifest are kept as written;
//!   resolving them is the build's job.
//! - Parse, don't validate: `raw` is the TOML as written (serde, unknown keys denied); the
//!   checks turn it into a [`Manifest`] of checked newtypes, after which an invalid state
//!   cannot be written.
//! - Every error names the file, line and column of the value at fault, what was expected,
//!   and a hint where one helps. All semantic errors are reported at once; a TOML syntax or
//!   shape error stops at the first.
//! - Never panics on any input: a firmware build tool must not crash on a typo, and the
//!   fuzz target and the mutation test hold this.
//! - Every public item is documented (`missing_docs` is on, and clippy's `-D warnings`
//!   makes a gap an error).
//!
//! ```
//! let m = limpet_manifest::parse("limpet.toml", r#"
//! [device]
//! name = "thermostat"
//! version = "1.4.0"
//! target = "x86_64"
//!
//! [[task]]
//! name = "sensor"
//! package = "thermostat-sensor"
//! memory = "8MiB"
//! cpu = "10%"
//! "#).unwrap();
//! assert_eq!(m.tasks[0].binary.as_str(), "thermostat-sensor");
//! assert_eq!(limpet_manifest::parse("limpet.toml", &m.to_canonical_toml()), Ok(m));
//! ```

#![warn(missing_docs)]

mod agent;
mod canonical;
mod device;
mod diag;
mod keyword;
mod lifecycle;
pub mod mud;
mod names;
mod network;
mod raw;
mod remote;
mod task;
mod units;
mod update;
mod validate;

use serde::Serialize;

pub use agent::{UPDATE_AGENT_PACKAGE, UPDATE_AGENT_TASK, UPDATE_ROOT_FILE};
pub use device::{
    Device, Disk, Kernel, KernelCmdline, KernelSource, Target, Tpm, Watchdog, DEFAULT_CPUS,
    DEFAULT_DATA_SIZE, DEFAULT_DEVICE_MEMORY, DEFAULT_SLOT_SIZE, DEFAULT_WATCHDOG, DISK_ALIGN,
    MAX_CPUS, MAX_KERNEL_CMDLINE, MAX_WATCHDOG_SECS, MIN_DATA_SIZE, MIN_SLOT_SIZE,
};
pub use diag::{Diagnostic, Diagnostics, Problem};
pub use lifecycle::{Island, IslandLan, Lifecycle, RoughtimeServer};
pub use names::{
    AbsPath, BinaryName, DeviceName, InterfaceName, ModuleName, SyscallName, TaskName,
};
pub use network::{Network, NetworkMode};
pub use remote::{
    AccessKeyRef, RelayAddr, Remote, RemoteService, MAX_REMOTE_SERVICES, REMOTE_AGENT_BINARY,
    REMOTE_AGENT_PACKAGE, REMOTE_AGENT_TASK, REMOTE_SIGNER_SOCKET,
};
pub use task::net::{EgressRule, Host, ListenRule, NetworkAccess, PortRange, Proto, Scope};
pub use task::supervision::{
    Readiness, Restart, RestartPolicy, DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX,
    DEFAULT_CRASH_LOOP_LIMIT, DEFAULT_NOTIFY_TIMEOUT,
};
pub use task::{
    FileAccess, Right, SyscallProfile, Syscalls, Task, DEFAULT_PIDS, MAX_PIDS, MIN_TASK_MEMORY,
};
pub use units::{ByteSize, CpuShare, Date, Duration, PacketRate, PacketRatePer, Rate};
pub use update::{
    KeyId, KeyRef, RepositoryUrl, Update, DEFAULT_HEALTH, DEFAULT_HEALTH_TIMEOUT, DEFAULT_POLL,
    DEFAULT_TRY_BOOTS, MAX_TRY_BOOTS, MIN_HEALTH, MIN_POLL,
};

/// A whole `limpet.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// `[device]`: what the image is for.
    pub device: Device,
    /// `[kernel]`: which kernel and modules go into the image.
    pub kernel: Kernel,
    /// `[disk]`: partition sizes.
    pub disk: Disk,
    /// `[network]`: device-wide network settings.
    pub network: Network,
    /// `[[task]]`: every process the device runs, in manifest order; at least one.
    pub tasks: Vec<Task>,
    /// `[update]`: where updates come from; none for a device that is never updated.
    pub update: Option<Update>,
    /// `[lifecycle]`: the support window and what happens after it.
    pub lifecycle: Option<Lifecycle>,
    /// `[remote]`: remote access through a relay; none for a device nobody reaches.
    pub remote: Option<Remote>,
}

/// Parses and validates a manifest. `source_name` is the file name used in diagnostics.
pub fn parse(source_name: &str, text: &str) -> Result<Manifest, Diagnostics> {
    let loc = diag::Locator::new(source_name, text);
    let raw: raw::RawManifest =
        toml::from_str(text).map_err(|e| Diagnostics(vec![loc.toml_error(&e)]))?;
    validate::validate(&raw, loc).map_err(|mut diags| {
        // Sorted by position (stable, so same-place errors keep check order).
        diags.sort_by_key(|d| (d.line, d.column));
        Diagnostics(diags)
    })
}
