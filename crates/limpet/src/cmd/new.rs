use std::path::PathBuf;

/// Arguments of `limpet new`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device name (lower case letters, digits and dashes); also the directory name.
    name: String,
    /// Where to create the project (default: ./NAME).
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn run(args: Args) -> super::Result {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let files = limpet_build::scaffold::new_project(&dir, &args.name)?;
    println!("created {}:", dir.display());
    for file in files {
        println!("  {file}");
    }
    println!(
        "next: cd {} && limpet keys generate && limpet build",
        dir.display()
    );
    println!(
        "(the first build also compiles the device's own Linux kernel: about 5 minutes on 2 idle cores; [kernel] in limpet.toml says more)"
    );
    Ok(())
}
