//! `limpet.toml`: the schema of a Limpet device, parsing with located errors, semantic
//! validation, and the canonical form.
//!
//! Rules this crate keeps:
//! - Pure: no I/O beyond the text it is given. Paths in the manifest are kept as written;
//!   resolving them is the build's job.
//! - Parse, don't validate: [`raw`] is the TOML as written (serde, unknown keys denied);
//!   [`validate`] turns it into a [`Manifest`] of checked newtypes, after which an invalid
//!   state cannot be written.
//! - Every error names the file, line and column of the value at fault, what was expected,
//!   and a hint where one helps. All semantic errors are reported at once; a TOML syntax or
//!   shape error stops at the first.
//! - Never panics on any input: a firmware build tool must not crash on a typo, and the
//!   fuzz target and the mutation test hold this.
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

mod agent;
mod canonical;
mod diag;
mod model;
pub mod mud;
mod names;
mod net;
mod raw;
mod task;
mod units;
mod validate;

pub use agent::{UPDATE_AGENT_PACKAGE, UPDATE_AGENT_TASK, UPDATE_ROOT_FILE};
pub use diag::{Diagnostic, Diagnostics, Problem};
pub use model::*;
pub use names::{
    AbsPath, BinaryName, DeviceName, InterfaceName, ModuleName, SyscallName, TaskName,
};
pub use net::{
    EgressRule, Host, ListenRule, Network, NetworkAccess, NetworkMode, PortRange, Proto, Scope,
};
pub use task::*;
pub use units::{ByteSize, CpuShare, Date, Duration, PacketRate, PacketRatePer, Rate};
pub use validate::{MIN_HEALTH, MIN_POLL, MIN_TASK_MEMORY};

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
