use std::path::PathBuf;

use limpet_build::project::{source_date_epoch, Project};
use limpet_manifest::mud::{default_mud_url, mud, MudOptions};

/// Arguments of `limpet mud`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest to describe.
    #[arg(long, short, default_value = "limpet.toml")]
    manifest: PathBuf,
    /// The https:// URL the MUD file is published at (default: `[update] repository`
    /// followed by /mud.json).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Write the MUD file to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> super::Result {
    let project = Project::load(&args.manifest)?;
    let url = match args.url {
        Some(url) => url,
        None => default_mud_url(&project.manifest).ok_or_else(|| {
            format!(
                "{} has no https:// [update] repository to publish the MUD file beside; \
                 pass --url https://...",
                args.manifest.display()
            )
        })?,
    };
    // last-update from SOURCE_DATE_EPOCH (or the last commit), so the file is reproducible.
    let (epoch, _) = source_date_epoch(&project.dir)?;
    let last_update = limpet_build::sbom::rfc3339_utc(u64::from(epoch));
    let options = MudOptions::new(&url, &last_update)?;
    let text = serde_json::to_string_pretty(&mud(&project.manifest, &options))? + "\n";
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
