//! Cohorts (`limpet build --cohorts N`): functionally identical images of one release whose
//! device binaries lay their code out in an order drawn from the cohort's seed.
//!
//! Two cohorts of examples/hello: their PID 1 and task binaries differ, and a return
//! gadget of one (the bytes before a `ret`, at its offset) is rarely at the same place in
//! the other, which is what a ROP chain written for one cohort needs; the shares are
//! printed for BENCHMARKS.md. Each cohort relinks byte-identically from its seed. Both
//! boot through the chain and run their task.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;

/// Safety net for one TCG boot through the chain.
const BOOT_DEADLINE_SECS: &str = "300";
/// The example's task is up.
const UP: &str = "[hello] hello from limpet: beat 1";

/// `limpet build --cohorts 2` of examples/hello, once: the output directory.
fn cohorts() -> &'static PathBuf {
    static BUILD: OnceLock<PathBuf> = OnceLock::new();
    BUILD.get_or_init(|| {
        let (key, _) = keys_in(&scratch().join("keys"));
        let out = scratch().join("cohorts");
        build_cohorts(&out, &key, None);
        out
    })
}

fn build_cohorts(out: &Path, key: &Path, only: Option<u32>) -> serde_json::Value {
    let mut cmd = limpet();
    cmd.arg("build")
        .arg("--manifest")
        .arg(hello_manifest())
        .arg("--out")
        .arg(out)
        .arg("--key")
        .arg(key)
        .args(["--cohorts", "2", "--json"])
        .env("SOURCE_DATE_EPOCH", "1700000000");
    if let Some(k) = only {
        cmd.args(["--cohort", &k.to_string()]);
    }
    serde_json::from_slice(&run(&mut cmd, true).stdout).unwrap()
}

/// (PID 1, the hello task) of the build output `dir`.
fn binaries(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let initramfs =
        limpet_image::cpio::decompress(&std::fs::read(dir.join("initramfs.cpio")).unwrap())
            .unwrap();
    let init = limpet_image::cpio::find_file(&initramfs, "init")
        .unwrap()
        .to_vec();
    let slot = std::fs::read(dir.join("slot.img")).unwrap();
    let size = limpet_image::slot::open(&slot)
        .unwrap()
        .layout
        .squashfs_size;
    let squashfs = &slot[..usize::try_from(size).unwrap()];
    let hello = limpet_image::squashfs::read_file(squashfs, "hello").unwrap();
    (init, hello)
}

/// The executable bytes of an ELF64 file, with their file offsets: its `PT_LOAD` segments
/// with `PF_X`.
fn text(elf: &[u8]) -> Vec<(usize, &[u8])> {
    let u16_at = |o: usize| usize::from(u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()));
    let u64_at =
        |o: usize| usize::try_from(u64::from_le_bytes(elf[o..o + 8].try_into().unwrap())).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&ph| elf[ph..ph + 4] == [1, 0, 0, 0] && elf[ph + 4] & 1 == 1)
        .map(|ph| {
            let (offset, size) = (u64_at(ph + 8), u64_at(ph + 32));
            (offset, &elf[offset..offset + size])
        })
        .collect()
}

/// Every return gadget of `elf`: the offset of a `ret` (0xc3 on x86_64) and the 8 bytes
/// before it.
fn gadgets(elf: &[u8]) -> HashSet<(usize, [u8; 9])> {
    let mut out = HashSet::new();
    for (base, bytes) in text(elf) {
        for i in 8..bytes.len() {
            if bytes[i] == 0xc3 {
                out.insert((base + i, bytes[i - 8..=i].try_into().unwrap()));
            }
        }
    }
    out
}

/// The share of `a`'s gadgets found, bytes and offset alike, in `b`.
fn shared(a: &[u8], b: &[u8]) -> f64 {
    let (ga, gb) = (gadgets(a), gadgets(b));
    assert!(ga.len() > 100, "only {} gadgets", ga.len());
    ga.intersection(&gb).count() as f64 / ga.len() as f64
}

#[test]
fn two_cohorts_differ_in_layout_and_each_relinks_identically_from_its_seed() {
    let out = cohorts();
    let (one, two) = (out.join("cohort-1"), out.join("cohort-2"));
    let (init1, hello1) = binaries(&one);
    let (init2, hello2) = binaries(&two);
    assert_ne!(init1, init2, "PID 1 is the same in both cohorts");
    assert_ne!(hello1, hello2, "the task is the same in both cohorts");
    // Each slot says which cohort it is, in its signed command line (what `limpet publish`
    // names its targets after: docs/cohorts.md).
    for (k, dir) in [(1, &one), (2, &two)] {
        let slot = std::fs::read(dir.join("slot.img")).unwrap();
        let cmdline = limpet_image::slot::open(&slot)
            .unwrap()
            .header
            .unverified()
            .cmdline
            .clone();
        assert_eq!(
            limpet_image::cmdline::CohortParam::from_cmdline(&cmdline),
            limpet_image::cmdline::CohortParam::Of { index: k, count: 2 },
            "{cmdline}"
        );
    }

    // The plain build, and how much of a cohort's gadgets sit where the plain build's do.
    let (plain, _) = hello_build();
    let (init0, hello0) = binaries(plain);
    let rows = [
        ("limpet-init", &init0, &init1, &init2),
        ("hello", &hello0, &hello1, &hello2),
    ];
    for (name, plain, c1, c2) in rows {
        let (between, from_plain) = (shared(c1, c2), shared(c1, plain));
        eprintln!(
            "{name}: {} return gadgets; shared by cohorts 1 and 2: {:.2}%; by cohort 1 and the plain build: {:.2}%; by the plain build and itself: {:.0}%",
            gadgets(c1).len(),
            between * 100.0,
            from_plain * 100.0,
            shared(plain, plain) * 100.0
        );
        // The property cohorts exist for; the figures go to BENCHMARKS.md.
        assert!(
            between < 0.05,
            "{name}: {:.2}% of the gadgets shared",
            between * 100.0
        );
    }

    // Cohort 2 again, its binaries relinked: cargo's outputs of the device build removed,
    // so that the link (and LTO's code generation) runs again from the seed.
    // Under the device build's lock, so that no `limpet build` of another test binary
    // running beside this one is between its `cargo build` and copying its binaries aside.
    let device_target = repo_root().join("target/limpet-device");
    let lock = std::fs::File::create(device_target.join("limpet-build.lock")).unwrap();
    lock.lock().unwrap();
    let release = device_target.join("x86_64-unknown-linux-musl/release");
    for entry in std::fs::read_dir(release.join("deps")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let binary = path.extension().is_none();
        if binary && (name.starts_with("hello-") || name.starts_with("limpet_init-")) {
            std::fs::remove_file(&path).unwrap();
        }
    }
    // Released before the build, which takes it itself.
    drop(lock);
    let (key, _) = keys_in(&scratch().join("keys"));
    let again = scratch().join("cohorts-again");
    let report = build_cohorts(&again, &key, Some(2));
    assert_eq!(
        report[0]["cohort"],
        serde_json::json!({"index": 2, "count": 2})
    );
    for name in ["slot.img", "initramfs.cpio", "disk.img"] {
        assert!(
            std::fs::read(two.join(name)).unwrap()
                == std::fs::read(again.join("cohort-2").join(name)).unwrap(),
            "{name} of cohort 2 differs when rebuilt from its seed"
        );
    }
}

#[test]
fn both_cohorts_boot_and_run_their_task() {
    require_tool("qemu-system-x86_64");
    for k in [1, 2] {
        let dir = mixed_output(
            &format!("cohort-{k}-boot"),
            &cohorts().join(format!("cohort-{k}")),
            &cohorts().join(format!("cohort-{k}")),
            &[],
        );
        let console = boot_until_line(&dir, UP, BOOT_DEADLINE_SECS);
        assert!(
            console.contains("slot-a (hello 0.1.0) mounted read-only"),
            "cohort {k}:\n{console}"
        );
    }
}

#[test]
fn a_cohort_outside_its_count_is_refused_before_building() {
    let (key, _) = keys_in(&scratch().join("keys"));
    for (args, want) in [
        (
            vec!["--cohorts", "2", "--cohort", "3"],
            "cohort 3 of 2: cohorts are numbered 1 to 2",
        ),
        (vec!["--cohorts", "0"], "0 cohorts: a release has 1 to 64"),
        (vec!["--cohorts", "65"], "65 cohorts: a release has 1 to 64"),
    ] {
        let out = run(
            limpet()
                .arg("build")
                .arg("--manifest")
                .arg(hello_manifest())
                .arg("--out")
                .arg(scratch().join("cohorts-refused"))
                .arg("--key")
                .arg(&key)
                .args(&args),
            false,
        );
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        assert!(!scratch().join("cohorts-refused").exists());
    }
}
