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

/// `limpet new`'s project checks and builds as it is, except for its kernel: it asks for
/// Limpet's own (the default), and this test builds it on the host's. That project's kernel
/// configuration (x86_64, no network rules) is not one CI builds (tests/kernel.rs builds the
/// network one per architecture, and shows a device booting on it), so building it here
/// would add a kernel build of 5–10 minutes to CI; the rest of the project (the workspace,
/// the app crate, the image) is the same on either kernel.
#[test]
fn new_project_builds_as_it_is() {
    let dir = scratch().join("demo");
    let out = run(limpet().arg("new").arg("demo").arg("--dir").arg(&dir), true);
    assert!(stdout(&out).contains("limpet.toml"));
    run(limpet().current_dir(&dir).arg("check"), true);
    let manifest = dir.join("limpet.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let parsed = limpet_manifest::parse("limpet.toml", &text).unwrap();
    assert_eq!(parsed.kernel.source, limpet_manifest::KernelSource::Limpet);
    // The default it names is the default the parser takes.
    let without = text.replace("\nsource = \"limpet\"\n", "\n");
    assert_ne!(without, text);
    let parsed = limpet_manifest::parse("limpet.toml", &without).unwrap();
    assert_eq!(parsed.kernel.source, limpet_manifest::KernelSource::Limpet);
    std::fs::write(
        &manifest,
        text.replace("\nsource = \"limpet\"\n", "\nsource = \"host\"\n"),
    )
    .unwrap();
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

/// A `.config` that meets exactly what the manifest at `path` needs, minus `drop`.
fn config_for(path: &std::path::Path, drop: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    let manifest = limpet_manifest::parse("limpet.toml", &text).unwrap();
    let needs = limpet_kconfig::needs::of(&manifest);
    // Modules where a module will do, as the host kernel has them.
    let config = limpet_kconfig::fragment(needs.iter().filter(|c| c.option != drop))
        .replace("CONFIG_DM_VERITY=y", "CONFIG_DM_VERITY=m")
        .replace("CONFIG_SQUASHFS=y", "CONFIG_SQUASHFS=m");
    let example = path.parent().unwrap().file_name().unwrap();
    let out = scratch().join(format!("kconfig-{}-{drop}", example.to_string_lossy()));
    std::fs::write(&out, config).unwrap();
    out
}

#[test]
fn a_kernel_config_that_meets_the_manifest_passes_its_audit() {
    let config = config_for(&hello_manifest(), "");
    let out = run(
        limpet()
            .args(["check", "--manifest"])
            .arg(hello_manifest())
            .arg("--kernel-config")
            .arg(&config),
        true,
    );
    let text = stdout(&out);
    assert!(text.contains("manifest needs: 27 of 27 met"), "{text}");
    assert!(text.contains("kernel config: x86_64"), "{text}");
}

#[test]
fn network_rules_against_a_kernel_without_nftables_are_refused_naming_the_option() {
    let contain = repo_root().join("examples/contain/limpet.toml");
    let config = config_for(&contain, "NF_TABLES");
    let out = run(
        limpet()
            .args(["check", "--manifest"])
            .arg(&contain)
            .arg("--kernel-config")
            .arg(&config),
        false,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the kernel lacks what the manifest needs: CONFIG_NF_TABLES (wanted y or m"),
        "{err}"
    );
    assert!(stdout(&out).contains("missing: CONFIG_NF_TABLES is not mentioned"));
    // The same kernel serves a manifest without network rules.
    let hello = run(
        limpet()
            .args(["check", "--manifest"])
            .arg(hello_manifest())
            .arg("--kernel-config")
            .arg(&config),
        true,
    );
    assert!(stdout(&hello).contains("manifest needs: 27 of 27 met"));
}

#[test]
fn a_bad_kernel_config_line_is_named_and_json_is_valid() {
    let bad = scratch().join("kconfig-bad");
    std::fs::write(&bad, "CONFIG_A=y\nCONFIG_B=maybe\n").unwrap();
    let out = run(limpet().args(["check", "--kernel-config"]).arg(&bad), false);
    let err = stderr(&out);
    assert!(
        err.contains("line 2: CONFIG_B has an unreadable value `maybe`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let good = scratch().join("kconfig-good");
    std::fs::write(&good, "CONFIG_X86_64=y\nCONFIG_IO_URING=y\n").unwrap();
    let out = run(
        limpet()
            .args(["check", "--json", "--kernel-config"])
            .arg(&good),
        true,
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["arch"], "x86_64");
    assert_eq!(json["options_on"], 2);
    assert!(json["needs"].as_array().unwrap().is_empty());
}

#[test]
fn a_build_for_a_kernel_lacking_a_need_is_refused_before_compiling() {
    // A vendor kernel laid out as /boot is: `config-<release>` beside the image.
    let contain = repo_root().join("examples/contain/limpet.toml");
    let dir = scratch().join("vendor-kernel");
    std::fs::create_dir_all(dir.join("k/6.1.0-vendor")).unwrap();
    std::fs::write(dir.join("k/vmlinuz"), "").unwrap();
    std::fs::copy(
        config_for(&contain, "NF_TABLES"),
        dir.join("k/config-6.1.0-vendor"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(&contain).unwrap().replace(
        "source = \"host\"",
        "source = { image = \"k/vmlinuz\", modules = \"k/6.1.0-vendor\" }",
    );
    std::fs::write(dir.join("limpet.toml"), manifest).unwrap();
    run(limpet().current_dir(&dir).args(["keys", "generate"]), true);
    let out = run(limpet().current_dir(&dir).arg("build"), false);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the kernel lacks what the manifest needs: CONFIG_NF_TABLES"),
        "{err}"
    );
    assert!(!dir.join("out").exists(), "nothing is built");
}
