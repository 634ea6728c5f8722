//! README.md's layout table names every crate and every example of the tree, and names
//! nothing that is not there: a crate added, moved or renamed without its row fails here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use limpet_testkit::docs::workspace_path;

/// The backquoted paths in the first column of the table under `## Layout`.
fn layout_paths() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(workspace_path("README.md")).unwrap();
    let section = readme
        .split("\n## Layout\n")
        .nth(1)
        .expect("README.md has a `## Layout` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut paths = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = row.split('|').nth(1).unwrap_or("");
        for (i, piece) in first_cell.split('`').enumerate() {
            // Odd pieces are the backquoted ones.
            if i % 2 == 1 {
                paths.insert(piece.trim_end_matches('/').to_owned());
            }
        }
    }
    paths
}

/// The directories under `parent` (relative to the workspace root), as `parent/name`.
fn dirs(parent: &str) -> BTreeSet<String> {
    std::fs::read_dir(workspace_path(parent))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_dir())
        .map(|entry| format!("{parent}/{}", entry.file_name().to_string_lossy()))
        .collect()
}

#[test]
fn the_layout_table_names_every_crate_and_example() {
    let listed = layout_paths();
    let missing: Vec<String> = dirs("crates")
        .into_iter()
        .chain(dirs("examples"))
        .filter(|dir| !listed.contains(dir))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's layout table has no row for {missing:?}"
    );
}

#[test]
fn every_path_in_the_layout_table_exists() {
    let gone: Vec<String> = layout_paths()
        .into_iter()
        .filter(|path| !workspace_path(path).exists())
        .collect();
    assert!(
        gone.is_empty(),
        "README.md's layout table names paths that do not exist: {gone:?}"
    );
}
