//! Helpers shared by the integration tests: fixed keys, pseudo-random data, sample
//! entries, and running the real tools (veritysetup, unsquashfs, sgdisk, cpio, zstd).

// Each test binary uses a different subset of these helpers; test code may panic.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use ed25519_dalek::SigningKey;
use limpet_image::slot::SlotMeta;
use limpet_image::squashfs::Entry;

/// A fixed signing key; different seeds give different keys.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// Deterministic, incompressible bytes (limpet-testkit's xorshift64*).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    limpet_testkit::noise::Rng::new(seed).bytes(len)
}

/// Entries of a small app: a manifest, a binary and a big incompressible blob, so the
/// squashfs spans more than 128 blocks and its tree has two levels.
pub fn sample_entries() -> Vec<Entry> {
    vec![
        Entry {
            path: "manifest.toml".into(),
            data: b"[device]\nname = \"t\"\n".to_vec(),
            mode: 0o644,
        },
        Entry {
            path: "hello".into(),
            data: pseudo_random(20_000, 1),
            mode: 0o755,
        },
        Entry {
            path: "blob".into(),
            data: pseudo_random(600_000, 2),
            mode: 0o600,
        },
    ]
}

pub fn meta() -> SlotMeta {
    SlotMeta {
        device: "thermostat".into(),
        target: "x86_64".into(),
        version: "1.4.0".into(),
    }
}

/// The sample kernel and initramfs: distinct pseudo-random bytes, sizes not multiples of
/// 4096 so that every gap is exercised.
pub fn boot_parts() -> (Vec<u8>, Vec<u8>) {
    (pseudo_random(20_001, 11), pseudo_random(9_000, 12))
}

/// The sample command line.
pub const CMDLINE: &str = "console=ttyS0 panic=-1 quiet";

/// A sample SBOM-like attachment.
pub fn attachment() -> Vec<u8> {
    b"{\"sbom\":\"not really compressed\"}".to_vec()
}

/// Whether `tool` is on PATH; prints a notice when it is not, so a skipped check shows.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("NOTICE: {tool} not installed; skipping the check that needs it");
    }
    found
}

/// Runs a command, returning its output (whatever the exit status).
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a command with `input` on stdin.
pub fn run_with_stdin(program: &str, args: &[&str], input: &Path) -> Output {
    let file = std::fs::File::open(input).unwrap();
    Command::new(program)
        .args(args)
        .stdin(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
