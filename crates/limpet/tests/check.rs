//! `limpet check` and `limpet new` from the command line: every malformed-manifest
//! fixture is refused with its located error and a non-zero exit, never a panic.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[test]
fn every_bad_fixture_fails_with_its_located_error() {
    let dir = repo_root().join("crates/limpet-manifest/tests/fixtures/bad");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        let first = expected.lines().next().unwrap();
        // The CLI names the file by the path it was given; the fixture's expectation
        // names it by file name, so run from the fixture directory.
        let name = path.file_name().unwrap();
        let out = run(
            limpet()
                .current_dir(&dir)
                .arg("check")
                .arg("--manifest")
                .arg(name),
            false,
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", path.display());
        assert!(
            err.contains(first),
            "{}: expected `{first}` in:\n{err}",
            path.display()
        );
        assert!(!err.contains("panicked"), "{}: {err}", path.display());
        count += 1;
    }
    assert!(count >= 30, "only {count} fixtures");
}

#[test]
fn the_example_manifest_checks() {
    let out = run(
        limpet()
            .arg("check")
            .arg("--manifest")
            .arg(hello_manifest()),
        true,
    );
    assert!(stdout(&out).contains("task hello"), "{}", stdout(&out));
}

#[test]
fn a_missing_manifest_is_a_clear_error() {
    let out = run(
        limpet()
            .arg("check")
            .arg("--manifest")
            .arg("/nonexistent/limpet.toml"),
        false,
    );
    assert!(
        stderr(&out).contains("cannot read manifest /nonexistent/limpet.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn new_project_builds_as_it_is() {
    let dir = scratch().join("demo");
    let out = run(limpet().arg("new").arg("demo").arg("--dir").arg(&dir), true);
    assert!(stdout(&out).contains("limpet.toml"));
    run(limpet().current_dir(&dir).arg("check"), true);
    run(limpet().current_dir(&dir).args(["keys", "generate"]), true);
    run(
        limpet()
            .current_dir(&dir)
            .arg("build")
            .env("SOURCE_DATE_EPOCH", "1700000000"),
        true,
    );
    for name in ["slot.img", "initramfs.cpio", "kernel", "disk.img"] {
        assert!(dir.join("out").join(name).is_file(), "{name} missing");
    }
    run(
        limpet()
            .arg("verify")
            .arg("--key")
            .arg(dir.join("keys/image.pub"))
            .arg(dir.join("out")),
        true,
    );
    // A second `new` into the same directory refuses to overwrite it.
    let again = run(
        limpet().arg("new").arg("demo").arg("--dir").arg(&dir),
        false,
    );
    assert!(stderr(&again).contains("already exists"));
}

#[test]
fn new_rejects_an_invalid_device_name() {
    let out = run(
        limpet()
            .arg("new")
            .arg("Bad_Name")
            .arg("--dir")
            .arg(scratch().join("bad")),
        false,
    );
    assert!(
        stderr(&out).contains("not a valid device name"),
        "{}",
        stderr(&out)
    );
    assert!(!scratch().join("bad").exists());
}
