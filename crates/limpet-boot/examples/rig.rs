//! The QEMU test rig's writer (`rig/make-disk.sh` calls it): a whole-image slot
//! (limpet-image's format 2) around the given kernel, initramfs and command line, or a
//! `state` partition image.
//!
//! ```text
//! rig slot  <image.key> <version> <kernel> <initramfs> <cmdline> <out>
//! rig state <out> factory <version>
//! rig state <out> trial <committed version> <trial version> <boots>
//! ```
//!
//! `RIG_TARGET=aarch64` writes an aarch64 slot. Temporary, like the rig header itself: the build pipeline writes the real slots
//! (limpet-image's header format 2) and the factory state.

use std::fs;
use std::process::ExitCode;

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use limpet_image::slot::{assemble, BootFiles, SlotMeta};
use limpet_state::{Region, Slot, State, StateStore, Version};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["slot", key, version, kernel, initramfs, cmdline, out] => {
            slot(key, version, kernel, initramfs, cmdline, out)
        }
        ["state", out, "factory", version] => {
            parse(version).and_then(|v| state(out, &State::factory(v)))
        }
        ["state", out, "trial", committed, trial, boots] => (|| {
            let boots: u8 = boots.parse().map_err(|e| format!("boots {boots}: {e}"))?;
            let s = State::factory(parse(committed)?)
                .mark_trial(Slot::B, parse(trial)?, boots)
                .map_err(|e| e.to_string())?;
            state(out, &s)
        })(),
        _ => Err(
            "usage: rig slot <image.key> <version> <kernel> <initramfs> <cmdline> <out> | \
                  rig state <out> factory <version> | \
                  rig state <out> trial <committed> <trial> <boots>"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rig: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse(v: &str) -> Result<Version, String> {
    Version::parse(v).map_err(|e| format!("version {v}: {e}"))
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("reading {path}: {e}"))
}

fn slot(
    key: &str,
    version: &str,
    kernel: &str,
    initramfs: &str,
    cmdline: &str,
    out: &str,
) -> Result<(), String> {
    let pem = fs::read_to_string(key).map_err(|e| format!("reading {key}: {e}"))?;
    let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| format!("{key}: {e}"))?;
    let mut squashfs = vec![0u8; 4096];
    squashfs[..4].copy_from_slice(b"hsqs");
    squashfs[40..48].copy_from_slice(&4096u64.to_le_bytes());
    let image = assemble(
        &squashfs,
        &SlotMeta {
            device: "rig".into(),
            // The slot's architecture: x86_64 unless RIG_TARGET says otherwise.
            target: std::env::var("RIG_TARGET").unwrap_or_else(|_| "x86_64".into()),
            version: version.into(),
        },
        b"{}",
        &BootFiles {
            kernel: &read(kernel)?,
            initramfs: &read(initramfs)?,
            cmdline,
        },
        &key,
    )
    .map_err(|e| format!("assembling the slot: {e}"))?;
    fs::write(out, image).map_err(|e| format!("writing {out}: {e}"))
}

fn state(out: &str, state: &State) -> Result<(), String> {
    let file = fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .map_err(|e| format!("{out}: {e}"))?;
    file.set_len(1 << 20).map_err(|e| format!("{out}: {e}"))?;
    let region = Region::new(file, 0, 1 << 20).map_err(|e| format!("{out}: {e}"))?;
    let mut store = StateStore::new(region).map_err(|e| format!("{out}: {e}"))?;
    store.store(state).map_err(|e| format!("{out}: {e}"))?;
    Ok(())
}
