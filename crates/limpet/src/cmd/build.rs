use std::path::PathBuf;

use limpet_build::cohort::Cohort;
use limpet_build::{BuildOptions, BuildReport};

use super::human_size;

/// Arguments of `limpet build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The device's manifest.
    #[arg(long, short, default_value = "limpet.toml")]
    manifest: PathBuf,
    /// Output directory (default: out/ beside the manifest).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// The private image signing key (default: keys/image.key beside the manifest).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Build N cohorts of the release, each into `cohort-K/` of the output directory:
    /// functionally identical images whose code and data lie in an order drawn from K
    /// (docs/cohorts.md).
    #[arg(long, value_name = "N")]
    cohorts: Option<u32>,
    /// With --cohorts: build only cohort K (1 to N).
    #[arg(long, value_name = "K", requires = "cohorts")]
    cohort: Option<u32>,
    /// Print the report as JSON on stdout (with --cohorts, a list of reports).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> super::Result {
    let mut options = BuildOptions::new(args.manifest);
    options.key_path = args.key;
    let Some(count) = args.cohorts else {
        options.out_dir = args.out;
        let report = limpet_build::build(&options)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_report(&report);
        }
        return Ok(());
    };
    let cohorts = match args.cohort {
        Some(k) => vec![Cohort::new(k, count)?],
        None => Cohort::all(count)?,
    };
    let base = match args.out {
        Some(out) => out,
        None => options
            .manifest_path
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."))
            .join("out"),
    };
    let mut reports = Vec::new();
    for cohort in cohorts {
        options.cohort = Some(cohort);
        options.out_dir = Some(base.join(cohort.dir_name()));
        let report = limpet_build::build(&options)?;
        if !args.json {
            println!("{cohort}:");
            print_report(&report);
        }
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}

fn print_report(r: &BuildReport) {
    println!(
        "built {} {} for {} into {}",
        r.device,
        r.version,
        r.target,
        r.out_dir.display()
    );
    println!(
        "  signed by key {}, dm-verity root {}",
        r.key_id, r.root_hash
    );
    println!("  timestamps: {} ({})", r.source_date_epoch, r.epoch_source);
    println!(
        "  kernel {} with modules: {}",
        r.kernel_release,
        r.modules.join(", ")
    );
    println!("sizes:");
    for bin in &r.binaries {
        println!(
            "  {:<28} {:>12} B  {:>10}",
            format!("binary {}", bin.name),
            bin.bytes,
            human_size(bin.bytes)
        );
    }
    let rows = [
        ("squashfs", r.squashfs_bytes),
        ("dm-verity tree", r.verity_tree_bytes),
        ("slot.img", r.slot_bytes),
        ("initramfs (uncompressed)", r.initramfs_uncompressed_bytes),
        ("initramfs.cpio (zstd)", r.initramfs_bytes),
        ("kernel", r.kernel_bytes),
        ("disk.img", r.disk_bytes),
    ];
    for (name, bytes) in rows {
        println!("  {name:<28} {bytes:>12} B  {:>10}", human_size(bytes));
    }
    println!("  SBOM: {} components", r.sbom_components);
}
