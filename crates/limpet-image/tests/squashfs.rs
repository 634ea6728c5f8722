//! squashfs: unsquashfs sees exactly the entries given; builds are reproducible.

// Test code: a failed unwrap is a failed test, and offsets fit usize on the test hosts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use common::{have, run, sample_entries, text};
use limpet_image::squashfs::{self, Entry, SquashfsError};
use sha2::{Digest, Sha256};

#[test]
fn unsquashfs_lists_exactly_the_entries() {
    let image = squashfs::build(&sample_entries(), 1_700_000_000).unwrap();
    if !have("unsquashfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.img");
    std::fs::write(&path, &image).unwrap();
    let out = run("unsquashfs", &["-d", "", "-lln", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    // `-lln`: mode, uid/gid numbers, size, date, name; root first, then sorted files.
    let lines: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // Mode, owner and name of each line; root first, then the files sorted.
    let summary: Vec<(&str, &str, &str)> = lines
        .iter()
        .map(|f| (f[0], f[1], f.get(5).copied().unwrap_or("")))
        .collect();
    assert_eq!(
        summary,
        [
            ("drwxr-xr-x", "0/0", ""),
            ("-rw-------", "0/0", "/blob"),
            ("-rwxr-xr-x", "0/0", "/hello"),
            ("-rw-r--r--", "0/0", "/manifest.toml"),
        ],
        "{listing}"
    );
    let sizes: Vec<&str> = lines[1..].iter().map(|f| f[2]).collect();
    assert_eq!(sizes, ["600000", "20000", "20"], "{listing}");
    assert_eq!(lines.len(), 4, "{listing}");

    // Contents extracted by unsquashfs match.
    let out_dir = dir.path().join("x");
    let out = run(
        "unsquashfs",
        &["-d", out_dir.to_str().unwrap(), path.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for e in sample_entries() {
        assert_eq!(
            std::fs::read(out_dir.join(&e.path)).unwrap(),
            e.data,
            "{}",
            e.path
        );
    }
}

#[test]
fn list_and_read_round_trip() {
    let entries = sample_entries();
    let image = squashfs::build(&entries, 5).unwrap();
    let mut want: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.path.clone(),
                e.data.len() as u64,
                e.mode,
                <[u8; 32]>::from(Sha256::digest(&e.data)),
            )
        })
        .collect();
    want.sort();
    let got: Vec<_> = squashfs::list(&image)
        .unwrap()
        .into_iter()
        .map(|f| (f.path, f.size, f.mode, f.sha256))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        squashfs::read_file(&image, "hello").unwrap(),
        entries[1].data
    );
    assert!(matches!(
        squashfs::read_file(&image, "nope"),
        Err(SquashfsError::NotFound { .. })
    ));
}

#[test]
fn build_is_deterministic_and_order_independent() {
    let a = squashfs::build(&sample_entries(), 7).unwrap();
    let mut reversed = sample_entries();
    reversed.reverse();
    let b = squashfs::build(&reversed, 7).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, squashfs::build(&sample_entries(), 8).unwrap());
}

#[test]
fn bad_entries_are_refused() {
    let e = |path: &str, mode| Entry {
        path: path.into(),
        data: vec![],
        mode,
    };
    assert!(matches!(
        squashfs::build(&[e("a/b", 0o644)], 0),
        Err(SquashfsError::Path { .. })
    ));
    assert!(matches!(
        squashfs::build(&[e("..", 0o644)], 0),
        Err(SquashfsError::Path { .. })
    ));
    assert!(matches!(
        squashfs::build(&[e("", 0o644)], 0),
        Err(SquashfsError::Path { .. })
    ));
    assert!(matches!(
        squashfs::build(&[e("a", 0o644), e("a", 0o600)], 0),
        Err(SquashfsError::Duplicate { .. })
    ));
    assert!(matches!(
        squashfs::build(&[e("a", 0o100644)], 0),
        Err(SquashfsError::Mode { .. })
    ));
    assert!(squashfs::list(b"not a squashfs at all").is_err());
}
