//! `verify` refuses slots that are correctly signed but do not hold what their manifest
//! declares: the signature proves who built a slot, these checks prove it is well-formed.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ed25519_dalek::SigningKey;
use limpet_build::image_file::{SlotBytes, SlotOrigin};
use limpet_build::verify::{verify_slot, VerifyError};
use limpet_image::{cpio, slot, squashfs};

fn manifest() -> limpet_manifest::Manifest {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/hello/limpet.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    limpet_manifest::parse("limpet.toml", &text).unwrap()
}

fn manifest_text() -> String {
    manifest().to_canonical_toml()
}

fn policy() -> Vec<u8> {
    limpet_compile::compile(&manifest())
        .unwrap()
        .to_json()
        .unwrap()
}

/// A compressed initramfs holding a stand-in `init` and, if given, the release file.
fn initramfs(release: Option<&[u8]>) -> Vec<u8> {
    let mut archive = cpio::CpioBuilder::new();
    archive
        .add_file("init", 0o555, b"\x7fELF".to_vec())
        .unwrap();
    if let Some(release) = release {
        archive
            .add_file(
                limpet_image::release::INITRAMFS_PATH,
                0o444,
                release.to_vec(),
            )
            .unwrap();
    }
    cpio::compress(&archive.finish(0)).unwrap()
}

fn signed_slot(files: &[(&str, &[u8])], device: &str) -> (SlotBytes, SigningKey) {
    signed_slot_with(files, device, &initramfs(Some(b"hello 0.1.0 (x86_64)\n")))
}

fn signed_slot_with(
    files: &[(&str, &[u8])],
    device: &str,
    initramfs: &[u8],
) -> (SlotBytes, SigningKey) {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let entries: Vec<squashfs::Entry> = files
        .iter()
        .map(|(path, data)| squashfs::Entry {
            path: (*path).into(),
            data: data.to_vec(),
            mode: 0o555,
        })
        .collect();
    let image = squashfs::build(&entries, 0).unwrap();
    let meta = slot::SlotMeta {
        device: device.into(),
        target: "x86_64".into(),
        version: "0.1.0".into(),
    };
    let attachment = zstd::bulk::compress(b"{\"components\":[]}", 3).unwrap();
    let boot = slot::BootFiles {
        kernel: b"test kernel",
        initramfs,
        cmdline: "console=ttyS0",
    };
    let bytes = slot::assemble(&image, &meta, &attachment, &boot, &key).unwrap();
    (
        SlotBytes {
            path: "test-slot.img".into(),
            origin: SlotOrigin::SlotFile,
            bytes,
        },
        key,
    )
}

#[test]
fn a_well_formed_slot_passes() {
    let manifest = manifest_text();
    let policy = policy();
    let (slot, key) = signed_slot(
        &[
            ("manifest.toml", manifest.as_bytes()),
            ("policy.json", &policy),
            ("hello", b"\x7fELF"),
        ],
        "hello",
    );
    let passed = verify_slot(&slot, &key.verifying_key()).unwrap();
    assert!(passed.iter().any(|p| p.check == "contents"));
}

#[test]
fn an_undeclared_file_in_the_squashfs_is_refused() {
    let manifest = manifest_text();
    let policy = policy();
    let (slot, key) = signed_slot(
        &[
            ("manifest.toml", manifest.as_bytes()),
            ("policy.json", &policy),
            ("hello", b"\x7fELF"),
            ("sh", b"#!"),
        ],
        "hello",
    );
    let err = verify_slot(&slot, &key.verifying_key()).unwrap_err();
    match err {
        VerifyError::Contents {
            found, expected, ..
        } => {
            assert_eq!(found, ["hello", "manifest.toml", "policy.json", "sh"]);
            assert_eq!(expected, ["hello", "manifest.toml", "policy.json"]);
        }
        other => panic!("expected Contents, got {other}"),
    }
}

#[test]
fn a_missing_task_binary_is_refused() {
    let manifest = manifest_text();
    let policy = policy();
    let (slot, key) = signed_slot(
        &[
            ("manifest.toml", manifest.as_bytes()),
            ("policy.json", &policy),
        ],
        "hello",
    );
    let err = verify_slot(&slot, &key.verifying_key()).unwrap_err();
    assert!(matches!(err, VerifyError::Contents { .. }), "{err}");
}

#[test]
fn a_header_naming_another_device_than_the_manifest_is_refused() {
    let manifest = manifest_text();
    let policy = policy();
    let (slot, key) = signed_slot(
        &[
            ("manifest.toml", manifest.as_bytes()),
            ("policy.json", &policy),
            ("hello", b"\x7fELF"),
        ],
        "thermostat",
    );
    let err = verify_slot(&slot, &key.verifying_key()).unwrap_err();
    match err {
        VerifyError::HeaderMismatch {
            header, manifest, ..
        } => {
            assert_eq!(header, "thermostat 0.1.0 (x86_64)");
            assert_eq!(manifest, "hello 0.1.0 (x86_64)");
        }
        other => panic!("expected HeaderMismatch, got {other}"),
    }
}

#[test]
fn a_slot_without_a_manifest_is_refused() {
    let (slot, key) = signed_slot(&[("hello", b"\x7fELF")], "hello");
    let err = verify_slot(&slot, &key.verifying_key()).unwrap_err();
    assert!(matches!(err, VerifyError::Inspect(_)), "{err}");
    assert!(format!("{err}").contains("has no manifest.toml"), "{err}");
}

#[test]
fn an_initramfs_naming_no_release_or_another_is_refused() {
    let manifest = manifest_text();
    let policy = policy();
    let files: &[(&str, &[u8])] = &[
        ("manifest.toml", manifest.as_bytes()),
        ("policy.json", &policy),
        ("hello", b"\x7fELF"),
    ];
    for (release, want) in [
        (None, "is missing"),
        (
            Some(&b"hello 0.2.0 (x86_64)\n"[..]),
            "says hello 0.2.0 (x86_64)",
        ),
        (
            Some(&b"hello 0.1.0 (aarch64)\n"[..]),
            "says hello 0.1.0 (aarch64)",
        ),
        (
            Some(&b"hello 0.1.0 (x86_64)"[..]),
            "is not a release: not `<device> <version> (<target>)` and a newline",
        ),
    ] {
        let (slot, key) = signed_slot_with(files, "hello", &initramfs(release));
        let err = verify_slot(&slot, &key.verifying_key()).unwrap_err();
        match &err {
            VerifyError::InitramfsRelease {
                file,
                problem,
                header,
                ..
            } => {
                assert_eq!(*file, "etc/limpet/release");
                assert_eq!(problem, want);
                assert_eq!(header, "hello 0.1.0 (x86_64)");
            }
            other => panic!("expected InitramfsRelease, got {other}"),
        }
        assert!(
            err.to_string().ends_with(&format!(
                "the initramfs's etc/limpet/release {want}; the signed header says hello 0.1.0 (x86_64)"
            )),
            "{err}"
        );
    }
    // Not an initramfs at all: the slot's initramfs does not decompress.
    let (slot, key) = signed_slot_with(files, "hello", b"test initramfs");
    let err = verify_slot(&slot, &key.verifying_key()).unwrap_err();
    assert!(matches!(err, VerifyError::Initramfs { .. }), "{err}");
}
