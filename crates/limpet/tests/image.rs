//! `limpet build`, `verify` and `inspect` on examples/hello, checked by independent tools:
//! unsquashfs, veritysetup, cpio, zstd, sgdisk.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The squashfs part of a slot, as its own file.
fn squashfs_part(slot: &Path, to: &Path) -> u64 {
    let json = inspect_json(slot);
    let size = json["layout"]["squashfs_size"].as_u64().unwrap();
    let bytes = std::fs::read(slot).unwrap();
    std::fs::write(to, &bytes[..usize::try_from(size).unwrap()]).unwrap();
    size
}

/// `veritysetup verify` with the parameters `limpet inspect --json` reports.
fn veritysetup_verify(slot: &Path, params: &serde_json::Value) -> std::process::Output {
    let v = &params["verity"];
    assert_eq!(v["data_offset"], 0);
    assert_eq!(v["hash_algorithm"], "sha256");
    let blocks = v["data_size"].as_u64().unwrap() / v["data_block_size"].as_u64().unwrap();
    Command::new("veritysetup")
        .arg("verify")
        .arg("--no-superblock")
        .arg("--format=1")
        .arg(format!("--hash={}", v["hash_algorithm"].as_str().unwrap()))
        .arg(format!("--data-block-size={}", v["data_block_size"]))
        .arg(format!("--hash-block-size={}", v["hash_block_size"]))
        .arg(format!("--data-blocks={blocks}"))
        .arg(format!("--hash-offset={}", v["hash_offset"]))
        .arg(format!("--salt={}", v["salt"].as_str().unwrap()))
        .arg(slot)
        .arg(slot)
        .arg(v["root_hash"].as_str().unwrap())
        .output()
        .unwrap()
}

#[test]
fn unsquashfs_lists_exactly_the_manifest_the_policy_and_the_task_binaries() {
    require_tool("unsquashfs");
    let (out, _) = hello_build();
    let part = scratch().join("hello.squashfs");
    squashfs_part(&out.join("slot.img"), &part);
    let listing = run(
        Command::new("unsquashfs")
            .args(["-lc", "-d", ""])
            .arg(&part),
        true,
    );
    let mut files: Vec<String> = stdout(&listing)
        .lines()
        .map(|l| l.trim_start_matches('/').to_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["hello", "manifest.toml", "policy.json"],
        "unsquashfs -lc listed {files:?}"
    );
    // -l also lists directories: only the root.
    let all = run(
        Command::new("unsquashfs")
            .args(["-l", "-d", "R"])
            .arg(&part),
        true,
    );
    let mut entries: Vec<String> = stdout(&all).lines().map(str::to_owned).collect();
    entries.sort();
    assert_eq!(
        entries,
        ["R", "R/hello", "R/manifest.toml", "R/policy.json"]
    );
}

#[test]
fn veritysetup_accepts_the_inspected_parameters() {
    require_tool("veritysetup");
    let (out, _) = hello_build();
    let slot = out.join("slot.img");
    let params = inspect_json(&slot);
    let result = veritysetup_verify(&slot, &params);
    assert!(
        result.status.success(),
        "veritysetup verify failed: {}",
        stderr(&result)
    );
}

#[test]
fn a_flipped_byte_in_squashfs_or_tree_fails_both_verifiers() {
    require_tool("veritysetup");
    let (out, public) = hello_build();
    let slot = out.join("slot.img");
    let params = inspect_json(&slot);
    let squashfs = params["layout"]["squashfs_size"].as_u64().unwrap();
    let hash_offset = params["verity"]["hash_offset"].as_u64().unwrap();
    let tree = params["layout"]["tree_size"].as_u64().unwrap();
    // What `limpet verify` must say: the block at fault, or, for the magic that locates
    // the header, that the magic is wrong.
    let positions = [
        ("first squashfs byte", 0, "squashfs magic"),
        ("first byte after the magic", 4, "data block 0"),
        ("middle of the squashfs", squashfs / 2, "data block"),
        ("last squashfs byte", squashfs - 1, "data block"),
        ("first tree byte", hash_offset, "hash block"),
        ("last tree byte", hash_offset + tree - 1, "hash block"),
    ];
    for (what, offset, says) in positions {
        let bad = scratch().join(format!("flipped-{offset}.img"));
        flipped_copy(&slot, offset, &bad);
        let vs = veritysetup_verify(&bad, &params);
        assert!(
            !vs.status.success(),
            "veritysetup verify accepted a flipped {what} (offset {offset})"
        );
        let ours = run(
            limpet().arg("verify").arg("--key").arg(public).arg(&bad),
            false,
        );
        let err = stderr(&ours);
        assert!(err.contains(says), "{what}: expected `{says}` in: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_slot_signed_by_another_key_is_refused_by_name() {
    let (_, public) = hello_build();
    let (other, _) = other_key_build();
    let result = run(
        limpet()
            .arg("verify")
            .arg("--key")
            .arg(public)
            .arg(other.join("slot.img")),
        false,
    );
    let err = stderr(&result);
    assert!(err.contains("signed by key"), "{err}");
    assert!(err.contains("expected"), "{err}");
}

#[test]
fn a_disk_whose_slot_a_is_not_the_built_slot_is_refused() {
    let (out, public) = hello_build();
    let (other, _) = other_key_build();
    let mixed = mixed_output("mixed-disk", out, other, &["disk.img"]);
    let result = run(
        limpet().arg("verify").arg("--key").arg(public).arg(&mixed),
        false,
    );
    let err = stderr(&result);
    assert!(err.contains("partition slot-a differs"), "{err}");
}

#[test]
fn an_initramfs_carrying_another_key_is_refused() {
    let (out, public) = hello_build();
    let (other, _) = other_key_build();
    let mixed = mixed_output("mixed-initramfs", out, other, &["initramfs.cpio"]);
    let result = run(
        limpet().arg("verify").arg("--key").arg(public).arg(&mixed),
        false,
    );
    let err = stderr(&result);
    assert!(err.contains("the initramfs carries key id"), "{err}");
}

#[test]
fn limpet_verify_accepts_the_build_and_checks_disk_and_initramfs() {
    let (out, public) = hello_build();
    let result = run(
        limpet().arg("verify").arg("--key").arg(public).arg(out),
        true,
    );
    let text = stdout(&result);
    for check in [
        "signature",
        "verity",
        "squashfs",
        "contents",
        "disk",
        "initramfs",
    ] {
        assert!(
            text.contains(&format!("ok  {check}")),
            "missing check {check}:\n{text}"
        );
    }
    // The disk image alone is also a valid input: its slot-a is checked.
    run(
        limpet()
            .arg("verify")
            .arg("--key")
            .arg(public)
            .arg(out.join("disk.img")),
        true,
    );
}

#[test]
fn two_builds_are_byte_identical() {
    let (first, _) = hello_build();
    let (key, _) = keys_in(&scratch().join("keys"));
    let second = scratch().join("hello-second");
    build_hello(&second, &key);
    for name in ["slot.img", "initramfs.cpio", "kernel", "disk.img"] {
        let result = Command::new("cmp")
            .arg(first.join(name))
            .arg(second.join(name))
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{name} differs between two builds: {}",
            stdout(&result)
        );
    }
}

#[test]
fn binaries_carry_no_host_paths() {
    let (out, _) = hello_build();
    let part = scratch().join("paths.squashfs");
    squashfs_part(&out.join("slot.img"), &part);
    let dest = scratch().join("paths-extract");
    run(
        Command::new("unsquashfs")
            .arg("-no-xattrs")
            .arg("-d")
            .arg(&dest)
            .arg(&part),
        true,
    );
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let root = repo_root().display().to_string();
    for binary in ["hello"] {
        let bytes = std::fs::read(dest.join(binary)).unwrap();
        for needle in [
            format!("{home}/.cargo"),
            format!("{home}/.rustup"),
            root.clone(),
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{binary} contains the host path {needle}"
            );
        }
    }
}

#[test]
fn initramfs_holds_init_key_and_module_closure() {
    require_tool("cpio");
    require_tool("zstd");
    let (out, _) = hello_build();
    let raw = scratch().join("initramfs.raw");
    // zstd decompresses the concatenated frames into the two archives, one after the other.
    run(
        Command::new("zstd")
            .args(["-d", "-q", "-f", "-o"])
            .arg(&raw)
            .arg(out.join("initramfs.cpio")),
        true,
    );
    // GNU cpio stops at an archive's trailer, as the kernel does not: each archive is
    // listed on its own, the second from the first record after the first's trailer and
    // its padding.
    let bytes = std::fs::read(&raw).unwrap();
    let trailer = bytes
        .windows(11)
        .position(|w| w == b"TRAILER!!!\0")
        .expect("the first archive's trailer");
    let first_end = (trailer + 11).next_multiple_of(4);
    let second_at = first_end
        + bytes[first_end..]
            .iter()
            .position(|&b| b != 0)
            .expect("a second archive");
    let (first, second) = (scratch().join("initramfs.1"), scratch().join("initramfs.2"));
    std::fs::write(&first, &bytes[..second_at]).unwrap();
    std::fs::write(&second, &bytes[second_at..]).unwrap();
    let list = |archive: &std::path::Path| {
        stdout(&run(
            Command::new("sh")
                .arg("-c")
                .arg(format!("cpio -it --quiet < {}", archive.display())),
            true,
        ))
    };
    let (first_entries, second_entries) = (list(&first), list(&second));
    let entries = format!("{first_entries}{second_entries}");
    for want in [
        "init",
        "etc/limpet/image.pub",
        "etc/limpet/modules",
        "etc/limpet/data-fs.template",
        "etc/limpet/release",
        "/dm-verity.ko",
        "/dm-mod.ko",
        "/squashfs.ko",
        "/virtio_blk.ko",
    ] {
        assert!(
            entries.lines().any(|l| l == want || l.ends_with(want)),
            "initramfs lacks {want}:\n{entries}"
        );
    }
    // PID 1 ends the first archive; what changes with a release's version is the second.
    assert_eq!(
        first_entries.lines().last(),
        Some("init"),
        "{first_entries}"
    );
    assert_eq!(
        second_entries.lines().collect::<Vec<_>>(),
        [
            "etc",
            "etc/limpet",
            "etc/limpet/data-fs.template",
            "etc/limpet/release"
        ],
        "{second_entries}"
    );
    let release = run(
        Command::new("sh").arg("-c").arg(format!(
            "cpio -i --quiet --to-stdout etc/limpet/release < {}",
            second.display()
        )),
        true,
    );
    assert_eq!(stdout(&release), "hello 0.1.0 (x86_64)\n");
    assert!(
        !entries.contains("image.key"),
        "the private key must never be in an image"
    );
    for line in entries.lines() {
        assert!(
            !line.contains("bin/sh") && !line.contains("busybox"),
            "unexpected {line}"
        );
    }
}

#[test]
fn sgdisk_reads_the_disk_layout() {
    require_tool("sgdisk");
    let (out, _) = hello_build();
    let result = run(
        Command::new("sgdisk").arg("-p").arg(out.join("disk.img")),
        true,
    );
    let text = stdout(&result);
    for name in ["state", "slot-a", "slot-b", "data"] {
        assert!(text.contains(name), "sgdisk -p lacks {name}:\n{text}");
    }
    run(
        Command::new("sgdisk").arg("-v").arg(out.join("disk.img")),
        true,
    );
}

#[test]
fn inspect_reports_tasks_verity_and_a_cyclonedx_sbom() {
    let (out, _) = hello_build();
    let json = inspect_json(out);
    assert_eq!(json["device"], "hello");
    assert_eq!(json["target"], "x86_64");
    assert_eq!(json["tasks"][0]["name"], "hello");
    for field in [
        "data_offset",
        "data_size",
        "hash_offset",
        "root_hash",
        "salt",
        "data_block_size",
        "hash_block_size",
        "hash_algorithm",
    ] {
        assert!(!json["verity"][field].is_null(), "verity.{field} missing");
    }
    let files: Vec<&str> = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["hello", "manifest.toml", "policy.json"]);
    assert_eq!(json["policy"]["tasks"][0]["name"], "hello");

    let sbom_path = scratch().join("sbom.json");
    run(
        limpet()
            .arg("inspect")
            .arg(out)
            .arg("--sbom")
            .arg(&sbom_path),
        true,
    );
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sbom_path).unwrap()).unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    let refs: Vec<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    assert!(
        refs.contains(&"bin:hello") && refs.contains(&"bin:limpet-init"),
        "{refs:?}"
    );
    assert!(
        refs.iter().any(|r| r.starts_with("pkg:cargo/rustix@")),
        "limpet-init's crates are listed: {refs:?}"
    );
    let hashed = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rustix")
        .unwrap();
    assert_eq!(hashed["hashes"][0]["alg"], "SHA-256");
}

#[test]
fn build_without_a_key_refuses_and_says_how_to_make_one() {
    let out = scratch().join("no-key-out");
    let result = run(
        limpet()
            .arg("build")
            .arg("--manifest")
            .arg(hello_manifest())
            .arg("--out")
            .arg(&out)
            .arg("--key")
            .arg(scratch().join("nowhere/image.key")),
        false,
    );
    let err = stderr(&result);
    assert!(err.contains("limpet keys generate"), "{err}");
    assert!(
        !out.join("slot.img").exists(),
        "nothing may be written without a key"
    );
}
