//! `limpet serve`: the update repository over plain HTTP, for development (limpet-repo's
//! static server). Production repositories are served by any web server or object store.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::cmd;

/// `limpet serve` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Serves every file below REPO (metadata/, targets/, chunks/) with GET and HEAD. Point devices \
at http://ADDR (their --repository). For development only: no TLS (TUF metadata provides \
integrity and freshness), no connection limits.")]
pub struct Args {
    /// The update repository (made by `limpet repo init`).
    repo: PathBuf,
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
}

/// Runs `limpet serve`; returns only on error.
pub fn run(args: Args) -> cmd::Result {
    let root = args.repo.join("metadata/root.json");
    if !root.is_file() {
        return Err(format!(
            "{} is not an update repository (no metadata/root.json); create one with `limpet repo init`",
            args.repo.display()
        )
        .into());
    }
    let server = limpet_repo::serve::serve(&args.repo, args.addr)?;
    println!(
        "serving {} at {} (metadata/, targets/, chunks/); Ctrl-C to stop",
        args.repo.display(),
        server.url()
    );
    server.join();
    Ok(())
}
