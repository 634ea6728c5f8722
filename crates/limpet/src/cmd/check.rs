use std::path::PathBuf;

use limpet_build::project::Project;

/// Arguments of `limpet check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest to check.
    #[arg(long, short, default_value = "limpet.toml")]
    manifest: PathBuf,
    /// Print the canonical form (every default explicit) instead of a summary.
    #[arg(long)]
    canonical: bool,
}

pub fn run(args: Args) -> super::Result {
    let project = Project::load(&args.manifest)?;
    let m = &project.manifest;
    if args.canonical {
        print!("{}", m.to_canonical_toml());
        return Ok(());
    }
    println!(
        "{}: ok — device {} {} for {}, {} task(s)",
        args.manifest.display(),
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
