//! Test images: squashfs slots (as limpet-image builds them) holding a "binary" whose
//! relative references change when code is inserted, like a recompiled task.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]

use limpet_image::squashfs::{build, Entry};

pub use limpet_testkit::noise::noise;

/// `n` bytes of "machine code": compressible opcodes, and every 48 bytes an opcode 0xe8
/// with a rel32 to a pseudo-random target. With `insert = Some((at, len))`, `len` new bytes
/// go in at `at` and every reference is recomputed, as a compiler would: those crossing
/// the insertion change, the rest stay.
pub fn code(seed: u64, n: usize, insert: Option<(usize, usize)>) -> Vec<u8> {
    let base: Vec<u8> = noise(seed, n)
        .iter()
        .map(|b| [0x48, 0x89, 0x8b, 0xc3, 0x0f, 0x1f, 0x44, 0x00][usize::from(b & 7)])
        .collect();
    let moved = |q: usize| match insert {
        Some((at, len)) if q >= at => q + len,
        _ => q,
    };
    let mut out = base.clone();
    if let Some((at, len)) = insert {
        out.splice(at..at, noise(seed ^ 0xabcd, len));
    }
    let targets = noise(seed ^ 0x5555, (n / 48 + 1) * 4);
    for (k, p) in (0..n.saturating_sub(8)).step_by(48).enumerate() {
        let t = u32::from_le_bytes(targets[k * 4..k * 4 + 4].try_into().unwrap()) as usize % n;
        let (p2, t2) = (moved(p), moved(t));
        let rel = (t2 as i64 - (p2 as i64 + 5)) as i32;
        out[p2] = 0xe8;
        out[p2 + 1..p2 + 5].copy_from_slice(&rel.to_le_bytes());
    }
    out
}

/// A slot's squashfs with `binary`, a manifest naming `version`, and a policy.
pub fn slot(binary: &[u8], version: &str) -> Vec<u8> {
    let entries = [
        Entry {
            path: "app".into(),
            data: binary.to_vec(),
            mode: 0o555,
        },
        Entry {
            path: "manifest.toml".into(),
            data: format!("[device]\nname = \"thermostat\"\nversion = \"{version}\"\n")
                .into_bytes(),
            mode: 0o444,
        },
        Entry {
            path: "policy.json".into(),
            data: b"{\"tasks\": []}".to_vec(),
            mode: 0o444,
        },
    ];
    build(&entries, 1).unwrap()
}

/// v1 and v2 of a slot whose 512 KiB binary had 24 bytes inserted near its start.
pub fn release_pair() -> (Vec<u8>, Vec<u8>) {
    let n = 1 << 19;
    (
        slot(&code(7, n, None), "1.0.0"),
        slot(&code(7, n, Some((40_000, 24))), "1.0.1"),
    )
}

/// `squashfs` as a signed limpet slot (verity tree, header, SBOM) of `version`.
pub fn signed_slot(squashfs: &[u8], version: &str) -> Vec<u8> {
    let meta = limpet_image::slot::SlotMeta {
        device: "thermostat".into(),
        target: "x86_64".into(),
        version: version.into(),
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let sbom = format!("{{\"version\": \"{version}\"}}");
    let boot = limpet_image::slot::BootFiles {
        kernel: b"test kernel",
        initramfs: b"test initramfs",
        cmdline: "console=ttyS0",
    };
    limpet_image::slot::assemble(squashfs, &meta, sbom.as_bytes(), &boot, &key).unwrap()
}
