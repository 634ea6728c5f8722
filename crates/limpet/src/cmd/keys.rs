use std::path::PathBuf;

use limpet_build::secureboot::keys::{self as sb_keys, SecureBootKeys};

/// `limpet keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make the vendor's keys: the image signing key pair (image.key, mode 0600, and
    /// image.pub) and the UEFI Secure Boot keys (secureboot/PK, KEK and db: RSA-2048 keys,
    /// mode 0600, and self-signed X.509 certificates; needs `openssl`).
    Generate {
        /// Directory for the key files.
        #[arg(long, default_value = "keys")]
        out: PathBuf,
        /// Make only the keys that are missing; succeed without writing anything when
        /// all are present.
        #[arg(long)]
        if_missing: bool,
        /// The vendor name written into the Secure Boot certificates' subjects.
        #[arg(long, default_value = "Limpet vendor")]
        vendor: String,
    },
}

pub fn run(command: Command) -> super::Result {
    match command {
        Command::Generate {
            out,
            if_missing,
            vendor,
        } => {
            let private = out.join(limpet_build::keys::PRIVATE_KEY_FILE);
            let public = out.join(limpet_build::keys::PUBLIC_KEY_FILE);
            let sb = SecureBootKeys::paths(&out);
            let have_image = private.exists() && public.exists();
            if if_missing && have_image && sb.complete() {
                println!(
                    "keys already present in {}; left as they are",
                    out.display()
                );
                return Ok(());
            }
            if !(if_missing && have_image) {
                let keys = limpet_build::keys::generate(&out)?;
                println!(
                    "private key: {} (mode 0600; keep it offline, never commit it)",
                    keys.private.display()
                );
                println!("public key:  {}", keys.public.display());
                println!("key id:      {}", keys.key_id);
            }
            if !(if_missing && sb.complete()) {
                let sb = sb_keys::generate(&out, &vendor)?;
                for (name, pair) in sb.named() {
                    println!(
                        "Secure Boot {name}: {} (mode 0600), certificate {}",
                        pair.key.display(),
                        pair.cert.display()
                    );
                }
            }
            Ok(())
        }
    }
}
