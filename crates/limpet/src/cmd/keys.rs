use std::path::PathBuf;

/// `limpet keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make the image signing key pair (image.key, mode 0600, and image.pub).
    Generate {
        /// Directory for the key files.
        #[arg(long, default_value = "keys")]
        out: PathBuf,
        /// Succeed without writing anything when both key files already exist.
        #[arg(long)]
        if_missing: bool,
    },
}

pub fn run(command: Command) -> super::Result {
    match command {
        Command::Generate { out, if_missing } => {
            let private = out.join(limpet_build::keys::PRIVATE_KEY_FILE);
            let public = out.join(limpet_build::keys::PUBLIC_KEY_FILE);
            if if_missing && private.exists() && public.exists() {
                println!(
                    "keys already present in {}; left as they are",
                    out.display()
                );
                return Ok(());
            }
            let keys = limpet_build::keys::generate(&out)?;
            println!(
                "private key: {} (mode 0600; keep it offline, never commit it)",
                keys.private.display()
            );
            println!("public key:  {}", keys.public.display());
            println!("key id:      {}", keys.key_id);
            Ok(())
        }
    }
}
