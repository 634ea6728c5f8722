//! Helpers shared by this crate's integration tests.
#![allow(dead_code, clippy::unwrap_used)] // Test code: a failed fixture read should fail the test loudly.

use std::path::{Path, PathBuf};

/// `tests/fixtures/<kind>`.
pub fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

/// Every `*.toml` in `tests/fixtures/<kind>`, sorted, as (file name, text).
pub fn fixtures(kind: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(fixture_dir(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}
