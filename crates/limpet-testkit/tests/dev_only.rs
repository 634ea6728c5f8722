//! The boundaries this crate and the dev server's move exist for, read from `cargo tree`:
//! no production crate links limpet-testkit, and the device's update agent does not link
//! limpet-repo's vendor side (`publish`: publishing and the development HTTP server).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

/// `cargo tree ARGS` over the workspace's own lock file, without the network.
fn cargo_tree(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["tree", "--locked", "--offline", "--prefix", "none"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn no_production_crate_links_the_testkit() {
    // Every crate that reaches limpet-testkit through normal (non-dev) dependencies.
    let users = cargo_tree(&["--workspace", "-e", "normal", "-i", "limpet-testkit"]);
    let crates: Vec<&str> = users
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(crates, ["limpet-testkit"], "{users}");
}

#[test]
fn the_agent_links_no_vendor_side_code() {
    let features = cargo_tree(&["-p", "limpet-agent", "-e", "normal,features"]);
    assert!(features.contains("limpet-repo v"), "{features}");
    assert!(
        !features.contains("limpet-repo feature \"publish\""),
        "the agent links limpet-repo's publish side (and its dev server):\n{features}"
    );
    assert!(!features.contains("limpet-testkit v"), "{features}");
}
