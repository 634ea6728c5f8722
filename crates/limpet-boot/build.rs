//! Compiles the vendor's image public key into the loader.
//!
//! `LIMPET_BOOT_IMAGE_KEY` is the absolute path of the image key's public half (`image.pub`, an
//! SPKI PEM as `limpet keys` writes it). For `target_os = "uefi"` it is required: a loader
//! without the vendor's key could verify nothing, so the build is refused. For the host
//! (the unit tests, which pass their own keys) it is not needed and not read.

use std::env;
use std::fs;
use std::path::PathBuf;

use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::VerifyingKey;

const KEY_VAR: &str = "LIMPET_BOOT_IMAGE_KEY";

fn main() -> Result<(), String> {
    println!("cargo:rerun-if-env-changed={KEY_VAR}");
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let dest = out.join("image_key.rs");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("uefi") {
        return Ok(());
    }
    let path = env::var_os(KEY_VAR).ok_or_else(|| {
        format!(
            "{KEY_VAR} is not set: the loader verifies slots with the vendor's image key; \
             set it to the path of image.pub (SPKI PEM, from `limpet keys`)"
        )
    })?;
    let path = PathBuf::from(path);
    if path.is_relative() {
        // A build script runs in the package's folder, not where cargo was started.
        return Err(format!(
            "{KEY_VAR} must be an absolute path, got {}",
            path.display()
        ));
    }
    println!("cargo:rerun-if-changed={}", path.display());
    let pem = fs::read_to_string(&path)
        .map_err(|e| format!("{KEY_VAR}: cannot read {}: {e}", path.display()))?;
    let key = VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
        format!(
            "{KEY_VAR}: {} is not an Ed25519 public key in SPKI PEM: {e}",
            path.display()
        )
    })?;
    let bytes: Vec<String> = key.as_bytes().iter().map(|b| format!("{b:#04x}")).collect();
    let source = format!(
        "/// The vendor's image public key (from {}).\npub const IMAGE_KEY: [u8; 32] = [{}];\n",
        path.display(),
        bytes.join(", ")
    );
    fs::write(&dest, source).map_err(|e| format!("writing {}: {e}", dest.display()))
}
