//! `limpet`: the command line. It parses arguments and calls the libraries; every
//! command's logic lives in `limpet-build`, `limpet-image` or `limpet-manifest`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Build, check and inspect sealed single-purpose Linux firmware images.
#[derive(Debug, Parser)]
#[command(name = "limpet", version, about, long_about = None)]
struct Cli {
    /// More detail in the log (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new project: a limpet.toml and an app crate that build as they are.
    New(cmd::new::Args),
    /// Validate a limpet.toml and print what it declares.
    Check(cmd::check::Args),
    /// Compile the tasks and limpet-init and write slot.img, initramfs.cpio, kernel, disk.img.
    Build(cmd::build::Args),
    /// Check an image's signature, dm-verity tree, squashfs and contents.
    Verify(cmd::verify::Args),
    /// Show what an image holds: files, tasks, verity parameters, SBOM.
    Inspect(cmd::inspect::Args),
    /// Write the device's Manufacturer Usage Description (RFC 8520 MUD file, JSON).
    Mud(cmd::mud::Args),
    /// Boot a built image in QEMU (TCG) with its console here; exit with the guest's outcome.
    Run(cmd::run::Args),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(cmd::keys::Command),
    /// Ask a device's boot loader to enter or leave owner mode (confirmed at the device).
    #[command(subcommand)]
    Owner(cmd::owner::Command),
    /// Manage an update repository (TUF metadata, targets, chunk store).
    #[command(subcommand)]
    Repo(cmd::publish::RepoCommand),
    /// Add a built image to an update repository, or re-sign its timestamp (--refresh).
    Publish(cmd::publish::PublishArgs),
    /// Sign the owner handover statement: after a date, devices of a model may take a trust
    /// root chosen by their owner.
    Handover(cmd::handover::Args),
    /// Serve an update repository over HTTP for development.
    Serve(cmd::serve::Args),
    /// Run the fleet server, manage its operators.
    #[command(subcommand)]
    Fleet(cmd::fleet::Command),
    /// Run a remote-access relay (`relay serve`); `relay ADDR` relays stdin and stdout to a
    /// loopback TCP address (what QEMU runs for each `run --forward` connection).
    Relay(cmd::relay::Args),
    /// Reach a device's declared service through a relay, with a capability.
    Connect(cmd::remote::ConnectArgs),
    /// Remote-access keys and capabilities.
    #[command(subcommand)]
    Access(cmd::remote::AccessCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LIMPET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();

    let result = match cli.command {
        Command::New(args) => cmd::new::run(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Build(args) => cmd::build::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Mud(args) => cmd::mud::run(args),
        Command::Handover(args) => cmd::handover::run(args),
        Command::Relay(args) => cmd::relay::run(args),
        Command::Connect(args) => cmd::remote::connect(args),
        Command::Access(command) => cmd::remote::access(command),
        Command::Run(args) => match cmd::run::run(args) {
            Ok(code) => return code,
            Err(err) => Err(err),
        },
        Command::Keys(command) => cmd::keys::run(command),
        Command::Owner(command) => cmd::owner::run(command),
        Command::Repo(command) => cmd::publish::run_repo(command),
        Command::Publish(args) => cmd::publish::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Fleet(command) => cmd::fleet::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", limpet_error_chain::caused_by(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}
