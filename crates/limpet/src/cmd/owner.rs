//! `limpet owner`: owner mode requests (docs/owner-mode.md), and the owner's handover
//! request (`handover-request`, in `handover.rs`; docs/end-of-life.md).
//!
//! A request only asks: the device's boot loader acts on it after the owner confirms it at
//! the device's console, and clears it either way. The request is one 4 KiB block at
//! `limpet_state::owner::REQUEST_OFFSET` of the `state` partition; these commands write
//! it into a disk image (`--disk`, a device's disk before it is written out, or one under
//! `limpet run`) or into a file (`--out`) for something on the device to write there.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use limpet_state::owner::{Request, REQUEST_BLOCK, REQUEST_OFFSET};

/// `limpet owner` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Ask the device's boot loader to enter owner mode, accepting images signed by KEY
    /// besides the vendor's. The loader shows KEY's fingerprint and waits for the owner to
    /// type its first 8 characters at the device's console; confirming wipes the data
    /// partition and the device identity.
    Request(RequestArgs),
    /// Ask the device's boot loader to leave owner mode (vendor-signed images only). The
    /// same confirmation at the console; confirming wipes the data partition again.
    Leave(Target),
    /// Print the fingerprint of an image public key and the code the loader asks for.
    Fingerprint(FingerprintArgs),
    /// Write an owner's handover request for a device whose vendor handed it over: the
    /// vendor's statement, the owner's root and image key, for the device's update agent.
    HandoverRequest(super::handover::RequestArgs),
}

/// Arguments of `limpet owner request`.
#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    /// The owner's image public key (SPKI PEM, as `limpet keys generate` writes image.pub).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    target: Target,
}

/// Where a request goes.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// Write the request into this disk image's `state` partition.
    #[arg(long, value_name = "DISK")]
    disk: Option<PathBuf>,
    /// Write the 4 KiB request block to this file (for the device to write at offset
    /// 131072 of its `state` partition).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Arguments of `limpet owner fingerprint`.
#[derive(Debug, clap::Args)]
pub struct FingerprintArgs {
    /// An image public key (SPKI PEM).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
}

/// Why an owner command failed.
#[derive(Debug, thiserror::Error)]
pub enum OwnerCmdError {
    /// The key file is not an image public key.
    #[error("owner key")]
    Key(#[from] limpet_build::keys::KeyError),
    /// The disk image cannot be read or has no state partition.
    #[error("{}: cannot find the state partition", path.display())]
    Gpt {
        /// The disk image.
        path: PathBuf,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Writing failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs a `limpet owner` command.
pub fn run(command: Command) -> super::Result {
    match command {
        Command::HandoverRequest(args) => return super::handover::run_request(args),
        Command::Request(args) => {
            let key = limpet_build::keys::load_verifying_key(&args.key)?;
            write(
                &args.target,
                &Request::Enter {
                    key: key.to_bytes(),
                },
            )?;
            println!(
                "owner mode requested for the key {}: at the device's next boot, type {} and Enter at its console to confirm (this wipes its data)",
                fingerprint(&key),
                code(&key)
            );
        }
        Command::Leave(target) => {
            write(&target, &Request::Leave)?;
            println!(
                "leaving owner mode requested: at the device's next boot, type the code its loader shows and Enter to confirm (this wipes its data)"
            );
        }
        Command::Fingerprint(args) => {
            let key = limpet_build::keys::load_verifying_key(&args.key)?;
            println!("{} (confirmation code {})", fingerprint(&key), code(&key));
        }
    }
    Ok(())
}

/// The key's fingerprint as the loader prints it (sha256 of the key, hex).
fn fingerprint(key: &VerifyingKey) -> String {
    limpet_image::measure::image_key_measurement(key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the owner types at the loader: the fingerprint's first 8 characters.
fn code(key: &VerifyingKey) -> String {
    fingerprint(key).chars().take(8).collect()
}

fn write(target: &Target, request: &Request) -> Result<(), OwnerCmdError> {
    let block = request.block();
    match (&target.disk, &target.out) {
        (Some(disk), _) => write_to_disk(disk, &block),
        (None, Some(out)) => std::fs::write(out, block).map_err(|source| OwnerCmdError::Write {
            path: out.clone(),
            source,
        }),
        // clap's group requires one of the two.
        (None, None) => Ok(()),
    }
}

fn write_to_disk(disk: &Path, block: &[u8; REQUEST_BLOCK]) -> Result<(), OwnerCmdError> {
    let gpt_err = |source: Box<dyn std::error::Error + Send + Sync>| OwnerCmdError::Gpt {
        path: disk.to_owned(),
        source,
    };
    let write_err = |source| OwnerCmdError::Write {
        path: disk.to_owned(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(write_err)?;
    let parts = limpet_image::gpt::read(&mut file).map_err(|e| gpt_err(Box::new(e)))?;
    let state = parts
        .iter()
        .find(|p| p.name == "state")
        .ok_or_else(|| gpt_err("no partition named state".into()))?;
    if state.size() < REQUEST_OFFSET + REQUEST_BLOCK as u64 {
        return Err(gpt_err(
            format!("the state partition holds {} bytes, too few", state.size()).into(),
        ));
    }
    file.seek(SeekFrom::Start(state.offset() + REQUEST_OFFSET))
        .map_err(write_err)?;
    file.write_all(block).map_err(write_err)?;
    file.sync_all().map_err(write_err)
}
