use std::path::{Path, PathBuf};

use limpet_build::project::Project;
use limpet_kconfig::KernelConfig;

/// Arguments of `limpet check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest to check (default limpet.toml; with --kernel-config, only if given).
    #[arg(long, short)]
    manifest: Option<PathBuf>,
    /// Print the canonical form (every default explicit) instead of a summary.
    #[arg(long, conflicts_with = "kernel_config")]
    canonical: bool,
    /// Audit this kernel .config instead: hardening, attack surface, and what --manifest
    /// needs (an error naming each missing option).
    #[arg(long, value_name = "FILE")]
    kernel_config: Option<PathBuf>,
    /// With --kernel-config, print the audit as JSON.
    #[arg(long, requires = "kernel_config")]
    json: bool,
}

pub fn run(args: Args) -> super::Result {
    if let Some(path) = &args.kernel_config {
        return kernel_config(path, args.manifest.as_deref(), args.json);
    }
    let manifest = args
        .manifest
        .unwrap_or_else(|| PathBuf::from("limpet.toml"));
    let project = Project::load(&manifest)?;
    let m = &project.manifest;
    if args.canonical {
        print!("{}", m.to_canonical_toml());
        return Ok(());
    }
    println!(
        "{}: ok — device {} {} for {}, {} task(s)",
        manifest.display(),
        m.device.name,
        m.device.version,
        m.device.target.as_str(),
        m.tasks.len()
    );
    for task in &m.tasks {
        println!(
            "  task {}: {} ({}), memory {}, cpu {}, pids {}",
            task.name, task.package, task.binary, task.memory, task.cpu, task.pids
        );
    }
    Ok(())
}

/// `limpet check --kernel-config FILE`: the audit, then an error if the manifest's needs
/// are not met.
fn kernel_config(path: &Path, manifest: Option<&Path>, json: bool) -> super::Result {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read kernel config {}: {e}", path.display()))?;
    let config =
        KernelConfig::parse(&text).map_err(|e| format!("kernel config {}: {e}", path.display()))?;
    let project = manifest.map(Project::load).transpose()?;
    let audit = limpet_kconfig::audit(&config, project.as_ref().map(|p| &p.manifest));
    if json {
        println!("{}", serde_json::to_string_pretty(&audit)?);
    } else {
        print!("{}: {audit}", path.display());
    }
    audit
        .require_needs()
        .map_err(|e| format!("kernel config {}: {e}", path.display()))?;
    Ok(())
}
