//! `limpet fleet`: the fleet server (limpet-fleet) and its operators.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cmd;

/// `limpet fleet` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the fleet server: the check-in API, holds, rollouts and the dashboard.
    #[command(after_help = "\
The database is a SQLite file by default (made on first start); give a postgres:// URL for \
PostgreSQL. The hold key is made on first start; put its public half (printed at start) in \
hold_keys of x-limpet-waves in the targets metadata. See docs/fleet.md.")]
    Serve {
        /// `sqlite://PATH` or `postgres://USER@HOST/DB`.
        #[arg(long, default_value = limpet_fleet::config::DEFAULT_DATABASE)]
        database: String,
        /// The Ed25519 key (PKCS#8 PEM) the server signs holds with; made when missing.
        #[arg(long, default_value = "fleet-hold-key.pem")]
        hold_key: PathBuf,
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: SocketAddr,
        /// Seconds between checks of download deadlines and renewals of halted rollouts' holds.
        #[arg(long, default_value_t = 30)]
        tick: u64,
        /// Leave `Secure` off the session cookie, for a server reached over plain HTTP on an
        /// address other than localhost (passwords then cross the network in the clear).
        #[arg(long)]
        plain_http_cookies: bool,
    },
    /// Add an operator, or set a new password; the password is read from standard input.
    Operator {
        /// The operator's name.
        name: String,
        /// `sqlite://PATH` or `postgres://USER@HOST/DB`.
        #[arg(long, default_value = limpet_fleet::config::DEFAULT_DATABASE)]
        database: String,
    },
}

/// Runs a `limpet fleet` subcommand.
pub fn run(command: Command) -> cmd::Result {
    match command {
        Command::Serve {
            database,
            hold_key,
            addr,
            tick,
            plain_http_cookies,
        } => {
            let opts = limpet_fleet::config::ServeOptions {
                database,
                hold_key,
                addr,
                tick: Duration::from_secs(tick.max(1)),
                cookies: if plain_http_cookies {
                    limpet_fleet::auth::CookiePolicy::PlainHttp
                } else {
                    limpet_fleet::auth::CookiePolicy::Secure
                },
            };
            limpet_fleet::config::serve(&opts, |addr, key| {
                println!("fleet server at http://{addr}/ (hold key {key}); Ctrl-C to stop");
            })?;
            Ok(())
        }
        Command::Operator { name, database } => {
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            limpet_fleet::config::set_operator(&database, &name, password)?;
            println!("operator {name} can log in");
            Ok(())
        }
    }
}
