//! `limpet handover` (the vendor's statement) and `limpet owner handover-request` (the owner's
//! request to a device whose handover date has passed): issue 13 item 4,
//! docs/end-of-life.md#owner-handover.

use std::path::PathBuf;

use crate::cmd::{self, publish::SignerArgs};

/// `limpet handover` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Signs, with the repository's root keys, a statement that from DATE on a device of model \
DEVICE may take a trust root chosen by its owner. A device checks it against its own trusted \
root and takes it only once its time floor (signed repository times, never its clock) has \
passed DATE. Sign it at release time and publish it whenever you like: it changes nothing \
before DATE. A root rotation needs it signed again with the new root keys.")]
pub struct Args {
    /// The update repository (made by `limpet repo init`).
    repo: PathBuf,
    /// Directory of the role keys (the root keys are needed).
    #[arg(long)]
    keys: PathBuf,
    /// The device model (`[device] name`).
    #[arg(long)]
    device: String,
    /// The first day (00:00 UTC) on which devices may be handed over, YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    after: String,
    /// Where to write the statement (default REPO/handover/DEVICE.json).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Root keys kept in an HSM or KMS.
    #[command(flatten)]
    signer: SignerArgs,
}

/// Runs `limpet handover`.
pub fn run(args: Args) -> cmd::Result {
    let (path, h) = limpet_repo::sign_handover(
        &args.repo,
        &args.keys,
        &args.device,
        &args.after,
        args.out.as_deref(),
        args.signer.signers()?,
    )?;
    println!(
        "{}: devices of model {} may be handed over to their owners from {}",
        path.display(),
        h.device,
        h.after
    );
    Ok(())
}

/// `limpet owner handover-request` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Writes the request an owner gives a device whose handover date has passed: the vendor's \
statement, the owner's first root metadata (`limpet repo init` on the owner's own repository \
writes it as metadata/1.root.json) and the owner's image key (`limpet keys` writes \
image.pub). The device's update agent takes it from owner-request.json in its state \
directory, checks it, and from then on trusts only the owner's repository.")]
pub struct RequestArgs {
    /// The vendor's handover statement (`limpet handover` writes it).
    #[arg(long)]
    statement: PathBuf,
    /// The owner's first root metadata.
    #[arg(long)]
    root: PathBuf,
    /// The owner's image public key (SubjectPublicKeyInfo PEM, Ed25519).
    #[arg(long, value_name = "PUB.pem")]
    image_key: PathBuf,
    /// Where to write the request.
    #[arg(long, short, default_value = "owner-request.json")]
    out: PathBuf,
}

/// Runs `limpet owner handover-request`.
pub fn run_request(args: RequestArgs) -> cmd::Result {
    let json = |path: &PathBuf| -> std::result::Result<serde_json::Value, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))
    };
    let image_key = std::fs::read_to_string(&args.image_key)
        .map_err(|e| format!("{}: {e}", args.image_key.display()))?;
    let request = limpet_repo::OwnerRequest {
        statement: json(&args.statement)?,
        root: json(&args.root)?,
        image_key,
    };
    limpet_tuf::client::verify_root(&serde_json::to_vec(&request.root)?)
        .map_err(|e| format!("{}: {e}", args.root.display()))?;
    std::fs::write(&args.out, serde_json::to_vec_pretty(&request)?)
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!("{}: owner request written", args.out.display());
    Ok(())
}
