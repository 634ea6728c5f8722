use std::path::PathBuf;

use limpet_build::inspect::Inspection;

use super::human_size;

/// Arguments of `limpet inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An output directory, a slot.img or a disk.img.
    path: PathBuf,
    /// Print everything as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Write the SBOM (CycloneDX 1.5 JSON) of every crate in each binary to FILE.
    #[arg(long, value_name = "FILE")]
    sbom: Option<PathBuf>,
}

pub fn run(args: Args) -> super::Result {
    let slot = limpet_build::image_file::load_slot(&args.path)?;
    let inspection = limpet_build::inspect::inspect(&slot)?;
    // A disk image (given, or beside the slot in an output directory) also has a state.
    let disk = if matches!(
        slot.origin,
        limpet_build::image_file::SlotOrigin::DiskPartition { .. }
    ) {
        Some(args.path.clone())
    } else {
        limpet_build::image_file::disk_beside(&args.path)
    };
    let state = match &disk {
        Some(disk) => Some(limpet_build::disk_state::read(disk)?),
        None => None,
    };
    // A data partition that cannot be read is shown as such; the rest is still shown.
    let identity = disk.as_ref().map(|disk| {
        limpet_build::disk_identity::read(disk).unwrap_or_else(|e| {
            limpet_build::disk_identity::DiskIdentity::Unreadable {
                error: limpet_error_chain::one_line(&e),
            }
        })
    });
    if let Some(path) = &args.sbom {
        let text = serde_json::to_string_pretty(&inspection.sbom)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if args.json {
        let mut value = serde_json::to_value(&inspection)?;
        value["state"] = serde_json::to_value(&state)?;
        value["identity"] = serde_json::to_value(&identity)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_text(&inspection);
        if let Some(state) = &state {
            println!("state (disk):");
            println!(
                "  committed {} ({}), floor {}, boots {}",
                state.committed_slot, state.committed_version, state.floor, state.boot_count
            );
            if let Some(trial) = &state.trial {
                println!("  trying {trial}");
            }
            if let Some(failure) = &state.last_failure {
                println!("  last failure: {failure}");
            }
        }
        if let Some(identity) = &identity {
            use limpet_build::disk_identity::DiskIdentity;
            match identity {
                DiskIdentity::Absent => {
                    println!("identity (data partition): none yet (made at the first boot)");
                }
                DiskIdentity::Present(view) => {
                    println!("identity (data partition): {}", view.line());
                }
                DiskIdentity::Damaged { error } => {
                    println!("identity (data partition): DAMAGED, the device refuses it: {error}");
                }
                DiskIdentity::Unreadable { error } => {
                    println!("identity (data partition): cannot read it: {error}");
                }
            }
        }
    }
    Ok(())
}

fn print_text(i: &Inspection) {
    println!(
        "{}: {} {} for {} (slot format {})",
        i.path, i.device, i.version, i.target, i.format_version
    );
    println!(
        "signed by key id {} (not checked here: use `limpet verify`)",
        i.key_id
    );
    let v = &i.verity;
    println!("dm-verity:");
    println!(
        "  data_offset {}  data_size {}  data_blocks {}",
        v.data_offset, v.data_size, v.data_blocks
    );
    println!(
        "  hash_offset {}  data_block_size {}  hash_block_size {}",
        v.hash_offset, v.data_block_size, v.hash_block_size
    );
    println!("  hash_algorithm {}  salt {}", v.hash_algorithm, v.salt);
    println!("  root_hash {}", v.root_hash);
    let b = &i.boot;
    println!("boot:");
    for (name, p) in [("kernel", &b.kernel), ("initramfs", &b.initramfs)] {
        println!(
            "  {name:<10} offset {:>10}  size {:>10}  {}  sha256 {}",
            p.offset,
            p.size,
            human_size(p.size),
            p.sha256
        );
    }
    println!("  cmdline    {}", b.cmdline);
    println!("files:");
    for f in &i.files {
        println!(
            "  {:<20} {:>10}  {}  {}  sha256 {}",
            f.path,
            f.size,
            human_size(f.size),
            f.mode,
            f.sha256
        );
    }
    println!("tasks:");
    for t in &i.tasks {
        println!(
            "  {}: {} ({}), memory {}, cpu {}, pids {}, restart {:?} (backoff {}..{}, crash loop at {}), syscalls {:?}, network {:?}",
            t.name,
            t.package,
            t.binary,
            t.memory,
            t.cpu,
            t.pids,
            t.restart.policy,
            t.restart.backoff_initial,
            t.restart.backoff_max,
            t.restart.crash_loop_limit,
            t.syscalls.profile,
            t.network
        );
    }
    println!(
        "sbom: {} components (write it with --sbom FILE)",
        i.sbom_components
    );
}
