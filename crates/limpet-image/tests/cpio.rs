//! cpio: GNU cpio lists exactly the entries, zstd accepts the compressed form, builds are
//! reproducible.

// Test code: a failed unwrap is a failed test, and offsets fit usize on the test hosts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use common::{have, run, run_with_stdin, text};
use limpet_image::cpio::{self, CpioBuilder};

fn sample() -> CpioBuilder {
    let mut b = CpioBuilder::new();
    b.add_file("init", 0o755, vec![0x7f, b'E', b'L', b'F', 1, 2, 3])
        .unwrap();
    b.add_file("lib/modules/6.1/dm-verity.ko", 0o644, vec![9; 1001])
        .unwrap();
    b.add_file("etc/limpet/keys/root.pub", 0o444, vec![1; 32])
        .unwrap();
    b.add_dir("dev", 0o755).unwrap();
    b.add_dir("etc", 0o700).unwrap();
    b.add_symlink("sbin", "/").unwrap();
    b
}

#[test]
fn gnu_cpio_lists_exactly_the_entries() {
    let archive = sample().finish(1_700_000_000);
    if !have("cpio") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("initramfs.cpio");
    std::fs::write(&path, &archive).unwrap();
    let out = run_with_stdin("cpio", &["-it"], &path);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(
        names,
        [
            "dev",
            "etc",
            "etc/limpet",
            "etc/limpet/keys",
            "etc/limpet/keys/root.pub",
            "init",
            "lib",
            "lib/modules",
            "lib/modules/6.1",
            "lib/modules/6.1/dm-verity.ko",
            "sbin",
        ]
    );
    // Verbose listing: modes, owners, link target.
    let out = run_with_stdin("cpio", &["-itv", "--numeric-uid-gid"], &path);
    let listing = text(&out.stdout);
    let lines: Vec<&str> = listing.lines().collect();
    assert!(
        lines[1].starts_with("drwx------") && lines[1].contains(" 0        0 "),
        "{listing}"
    );
    assert!(lines[5].starts_with("-rwxr-xr-x"), "{listing}");
    assert!(
        lines[10].starts_with("lrwxrwxrwx") && lines[10].ends_with("sbin -> /"),
        "{listing}"
    );

    // Extraction gives back the contents.
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let out = std::process::Command::new("cpio")
        .args(["-id", "--quiet", "-D", x.to_str().unwrap()])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(x.join("lib/modules/6.1/dm-verity.ko")).unwrap(),
        vec![9; 1001]
    );
}

#[test]
fn zstd_accepts_the_compressed_archive() {
    let archive = sample().finish(0);
    let compressed = cpio::compress(&archive).unwrap();
    assert_eq!(&compressed[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    assert_eq!(compressed, cpio::compress(&archive).unwrap());
    if !have("zstd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("initramfs.cpio.zst");
    std::fs::write(&path, &compressed).unwrap();
    let out = run("zstd", &["-t", "-q", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run("zstd", &["-dc", path.to_str().unwrap()]);
    assert_eq!(out.stdout, archive);
    // The checksum is there: a flipped byte in the content is reported.
    let mut bad = compressed.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    assert!(!run("zstd", &["-t", "-q", path.to_str().unwrap()])
        .status
        .success());
}

#[test]
fn archive_is_deterministic() {
    assert_eq!(sample().finish(5), sample().finish(5));
    assert_ne!(sample().finish(5), sample().finish(6));
}
