use std::path::PathBuf;

/// Arguments of `limpet verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An output directory, a slot.img or a disk.img.
    path: PathBuf,
    /// The vendor's public image key (SPKI PEM, e.g. keys/image.pub).
    #[arg(long)]
    key: PathBuf,
    /// Print the checks as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> super::Result {
    let key = limpet_build::keys::load_verifying_key(&args.key)?;
    let passed = limpet_build::verify::verify(&args.path, &key)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&passed)?);
    } else {
        for check in &passed {
            println!("ok  {:<11} {}", check.check, check.detail);
        }
        println!("{}: verified", args.path.display());
    }
    Ok(())
}
