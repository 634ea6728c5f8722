//! The tuf-conformance client CLI:
//!
//! ```text
//! limpet-tuf-client --metadata-dir DIR init ROOT_PATH
//! limpet-tuf-client --metadata-dir DIR --metadata-url URL refresh
//! limpet-tuf-client --metadata-dir DIR --metadata-url URL --target-name NAME \
//!     --target-base-url URL --target-dir DIR download
//! ```
//!
//! Exit code 0 on success, 1 on any failure.

use std::path::PathBuf;
use std::process::ExitCode;

use limpet_tuf::transport::{transport_for_url, RetrievalPolicy};
use limpet_tuf::{Client, SystemClock};

#[derive(Default)]
struct Args {
    metadata_dir: Option<PathBuf>,
    metadata_url: Option<String>,
    target_names: Vec<String>,
    target_base_url: Option<String>,
    target_dir: Option<PathBuf>,
    command: Option<String>,
    positional: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--metadata-dir" => args.metadata_dir = Some(value(&flag)?.into()),
            "--metadata-url" => args.metadata_url = Some(value(&flag)?),
            "--target-name" => args.target_names.push(value(&flag)?),
            "--target-base-url" => args.target_base_url = Some(value(&flag)?),
            "--target-dir" => args.target_dir = Some(value(&flag)?.into()),
            f if f.starts_with("-v") || f == "--verbose" => {}
            f if f.starts_with('-') => return Err(format!("unknown option {f}")),
            _ if args.command.is_none() => args.command = Some(arg),
            _ => args.positional.push(arg),
        }
    }
    Ok(args)
}

fn need<T: Clone>(v: &Option<T>, name: &str) -> Result<T, String> {
    v.clone().ok_or_else(|| format!("{name} is required"))
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let dir = need(&args.metadata_dir, "--metadata-dir")?;
    let policy = RetrievalPolicy::default();
    let open = |url: &str| -> Result<Client, String> {
        let transport = transport_for_url(url, policy).map_err(|e| e.to_string())?;
        Client::open(&dir, transport, Box::new(SystemClock)).map_err(|e| e.to_string())
    };
    match args.command.as_deref() {
        Some("init") => {
            let root_path = args
                .positional
                .first()
                .ok_or("init needs the trusted root file")?;
            let bytes =
                std::fs::read(root_path).map_err(|e| format!("reading {root_path}: {e}"))?;
            Client::init(&dir, &bytes).map_err(|e| e.to_string())
        }
        Some("refresh") => {
            let mut client = open(&need(&args.metadata_url, "--metadata-url")?)?;
            client.refresh().map_err(|e| e.to_string())
        }
        Some("download") => {
            let mut client = open(&need(&args.metadata_url, "--metadata-url")?)?;
            let base = need(&args.target_base_url, "--target-base-url")?;
            let target_dir = need(&args.target_dir, "--target-dir")?;
            if args.target_names.is_empty() {
                return Err("--target-name is required".into());
            }
            client.refresh().map_err(|e| e.to_string())?;
            let targets = transport_for_url(&base, policy).map_err(|e| e.to_string())?;
            for name in &args.target_names {
                let path = client
                    .download_target_to_dir(&*targets, name, &target_dir)
                    .map_err(|e| e.to_string())?;
                println!("{name}: {}", path.display());
            }
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other}")),
        None => Err("no command (init, refresh or download)".into()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("limpet-tuf-client: {e}");
            ExitCode::from(1)
        }
    }
}
