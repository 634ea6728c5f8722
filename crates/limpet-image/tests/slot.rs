//! Slot format: veritysetup agrees with our tree, every corruption is caught and named,
//! hostile headers and lengths give clean errors.

// Test code: a failed unwrap is a failed test, and offsets fit usize on the test hosts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::io::Cursor;
use std::path::Path;

use common::{attachment, boot_parts, have, key, meta, run, sample_entries, text, CMDLINE};
use limpet_image::header::{self, HeaderError, SlotHeader, HEADER_SIZE};
use limpet_image::slot::{self, BootFiles, BootPart, SlotError, SlotLayout};
use limpet_image::squashfs;
use limpet_image::verity::{self, VerityError};

fn build_slot() -> Vec<u8> {
    let fs = squashfs::build(&sample_entries(), 1_700_000_000).unwrap();
    let (kernel, initramfs) = boot_parts();
    let boot = BootFiles {
        kernel: &kernel,
        initramfs: &initramfs,
        cmdline: CMDLINE,
    };
    slot::assemble(&fs, &meta(), &attachment(), &boot, &key(1)).unwrap()
}

/// Placeholder boot files for tests that only look at other fields.
const SMALL_BOOT: BootFiles<'static> = BootFiles {
    kernel: b"k",
    initramfs: b"i",
    cmdline: "console=ttyS0",
};

fn layout(bytes: &[u8]) -> (SlotLayout, SlotHeader) {
    let opened = slot::open(bytes).unwrap();
    (opened.layout, opened.header.unverified().clone())
}

/// `veritysetup verify` on the slot file as its own data and hash device.
fn veritysetup_verify(path: &Path, h: &SlotHeader) -> std::process::Output {
    let p = path.to_str().unwrap();
    run(
        "veritysetup",
        &[
            "verify",
            "--no-superblock",
            &format!("--data-blocks={}", h.data_blocks),
            &format!("--hash-offset={}", h.hash_offset),
            &format!("--salt={}", hex::encode(h.salt)),
            p,
            p,
            &hex::encode(h.root_hash),
        ],
    )
}

#[test]
fn layout_is_as_documented() {
    let bytes = build_slot();
    let (l, h) = layout(&bytes);
    assert_eq!(l.hash_offset % 4096, 0);
    assert!(l.hash_offset >= l.squashfs_size && l.hash_offset - l.squashfs_size < 4096);
    assert!(
        h.data_blocks > 128,
        "the sample should give a two-level tree"
    );
    assert_eq!(verity::levels(h.data_blocks), 2);
    assert_eq!(l.tree_size, verity::tree_size(h.data_blocks));
    assert_eq!(l.header_offset, l.hash_offset + l.tree_size);
    assert_eq!(l.attachment_offset, l.header_offset + 4096);
    assert_eq!(l.total_size, bytes.len() as u64);
    assert_eq!(l.total_size % 4096, 0);
    assert_eq!(h.salt, slot::salt_for(&bytes[..l.squashfs_size as usize]));
    let verified = slot::verify(&bytes, &key(1).verifying_key()).unwrap();
    assert_eq!(verified.attachment, attachment());
    assert_eq!(verified.header.device, "thermostat");
    assert_eq!(verified.header.target.as_str(), "x86_64");
    assert_eq!(verified.header.version, "1.4.0");
    assert_eq!(
        verified.header.key_id,
        header::key_id(&key(1).verifying_key())
    );
    assert_eq!(squashfs::list(verified.squashfs).unwrap().len(), 3);
}

#[test]
fn assemble_is_deterministic() {
    assert_eq!(build_slot(), build_slot());
}

#[test]
fn veritysetup_accepts_the_slot() {
    if !have("veritysetup") {
        return;
    }
    let bytes = build_slot();
    let (_, h) = layout(&bytes);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slot.img");
    std::fs::write(&path, &bytes).unwrap();
    let out = veritysetup_verify(&path, &h);
    assert!(
        out.status.success(),
        "veritysetup verify failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The error our verifier must give for a flipped byte at `pos` (data or tree).
fn expected_error(l: &SlotLayout, pos: u64) -> VerityError {
    if pos < l.hash_offset {
        let block = pos / 4096;
        return VerityError::DataBlock {
            block,
            offset: block * 4096,
        };
    }
    // Two levels: level 1 (one block) first, then level 0.
    let t = pos - l.hash_offset;
    let block = t / 4096;
    if block == 0 {
        VerityError::HashBlock {
            level: 1,
            index: 0,
            tree_offset: 0,
        }
    } else {
        VerityError::HashBlock {
            level: 0,
            index: block - 1,
            tree_offset: block * 4096,
        }
    }
}

#[test]
fn flipped_byte_in_data_or_tree_is_caught_and_named() {
    let bytes = build_slot();
    let (l, h) = layout(&bytes);
    let vk = key(1).verifying_key();
    let tree_end = l.header_offset;
    let positions = [
        0,                          // squashfs magic
        4,                          // first byte after the magic
        100,                        // squashfs, past the superblock
        4096,                       // first byte of block 1
        l.squashfs_size / 2,        // middle of the squashfs
        l.squashfs_size - 1,        // last byte of the squashfs
        l.hash_offset - 1,          // last byte of the zero padding
        l.hash_offset,              // first byte of the tree (top level)
        l.hash_offset + 4095,       // last byte of the top block (its zero padding)
        l.hash_offset + 4096,       // first byte of level 0
        l.hash_offset + 4096 + 100, // inside level 0
        tree_end - 1,               // last byte of the tree (level 0 padding)
    ];
    let use_tool = have("veritysetup");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slot.img");
    for pos in positions {
        let mut bad = bytes.clone();
        bad[pos as usize] ^= 0x01;
        let want = expected_error(&l, pos);

        let data = &bad[..l.hash_offset as usize];
        let tree = &bad[l.hash_offset as usize..l.header_offset as usize];
        assert_eq!(
            verity::verify(data, tree, &h.verity_params()),
            Err(want),
            "verity::verify at {pos}"
        );

        match slot::verify(&bad, &vk) {
            // The reader needs the magic to find the header at all.
            Err(SlotError::SquashfsMagic { .. }) if pos < 4 => {}
            Err(SlotError::Verity {
                source,
                hash_offset,
            }) => {
                assert_eq!(source, want, "slot::verify at {pos}");
                assert_eq!(hash_offset, l.hash_offset);
            }
            other => panic!("slot::verify at {pos}: {other:?}"),
        }
        // The same answer from the device reader, which holds only the tree in memory.
        match slot::verify_at(&mut Cursor::new(&bad), &vk) {
            Err(SlotError::SquashfsMagic { .. }) if pos < 4 => {}
            Err(SlotError::Verity { source, .. }) => {
                assert_eq!(source, want, "slot::verify_at at {pos}")
            }
            other => panic!("slot::verify_at at {pos}: {other:?}"),
        }

        if use_tool {
            std::fs::write(&path, &bad).unwrap();
            let out = veritysetup_verify(&path, &h);
            assert!(
                !out.status.success(),
                "veritysetup accepted a flip at {pos}"
            );
        }
    }
}

#[test]
fn verify_at_accepts_the_slot_in_a_larger_device() {
    let bytes = build_slot();
    let (l, h) = layout(&bytes);
    let mut partition = bytes.clone();
    partition.resize(bytes.len() + 3 * 4096 + 17, 0xa5);
    let (layout, header) =
        slot::verify_at(&mut Cursor::new(&partition), &key(1).verifying_key()).unwrap();
    assert_eq!(layout, l);
    assert_eq!(header.root_hash, h.root_hash);
    // Another key is refused before any data is read.
    assert!(matches!(
        slot::verify_at(&mut Cursor::new(&partition), &key(2).verifying_key()),
        Err(SlotError::Header { .. })
    ));
}

#[test]
fn flipped_bytes_used_is_a_layout_error() {
    let mut bad = build_slot();
    bad[40] ^= 0x01;
    assert!(slot::open(&bad).is_err());
    let mut bad = build_slot();
    bad[41] ^= 0x10;
    assert!(slot::verify(&bad, &key(1).verifying_key()).is_err());
}

#[test]
fn other_key_is_wrong_key() {
    let bytes = build_slot();
    let other = key(2).verifying_key();
    match slot::verify(&bytes, &other) {
        Err(SlotError::Header {
            source: HeaderError::WrongKey { expected, found },
            ..
        }) => {
            assert_eq!(expected, hex::encode(header::key_id(&other)));
            assert_eq!(found, hex::encode(header::key_id(&key(1).verifying_key())));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_flipped_header_byte_is_refused() {
    let bytes = build_slot();
    let (l, _) = layout(&bytes);
    let vk = key(1).verifying_key();
    let at = l.header_offset as usize;
    let field_of = |i: usize| {
        header::FIELDS
            .iter()
            .find(|(_, o, n)| (*o..o + n).contains(&i))
            .map(|f| f.0)
            .unwrap_or("padding")
    };
    for i in 0..HEADER_SIZE {
        let mut bad = bytes.clone();
        bad[at + i] ^= 0x01;
        let err = slot::verify(&bad, &vk).expect_err(&format!("flip at header byte {i} accepted"));
        let field = field_of(i);
        match field {
            // Covered by the signature but otherwise free: only the signature can catch them.
            "salt" | "root_hash" | "attachment_sha256" | "signature" => assert!(
                matches!(
                    err,
                    SlotError::Header {
                        source: HeaderError::BadSignature,
                        ..
                    }
                ),
                "byte {i} ({field}): {err:?}"
            ),
            "key_id" => assert!(
                matches!(
                    err,
                    SlotError::Header {
                        source: HeaderError::WrongKey { .. },
                        ..
                    }
                ),
                "byte {i} ({field}): {err:?}"
            ),
            "padding" => assert!(
                matches!(err, SlotError::Header { source: HeaderError::Padding { offset }, .. } if offset == i),
                "byte {i}: {err:?}"
            ),
            _ => {}
        }
    }
}

#[test]
fn truncated_slots_are_clean_errors() {
    let bytes = build_slot();
    let (l, _) = layout(&bytes);
    let vk = key(1).verifying_key();
    let cuts = [
        0,
        10,
        95,
        96,
        4096,
        l.squashfs_size as usize - 1,
        l.hash_offset as usize,
        l.header_offset as usize,
        l.header_offset as usize + 100,
        l.attachment_offset as usize,
        bytes.len() - 1,
    ];
    for cut in cuts {
        let err = slot::verify(&bytes[..cut], &vk).expect_err("truncated slot accepted");
        assert!(
            matches!(err, SlotError::Truncated { .. }),
            "cut at {cut}: {err:?}"
        );
        let err = slot::read_header_at(&mut Cursor::new(&bytes[..cut]));
        if cut < l.attachment_offset as usize {
            assert!(
                matches!(err, Err(SlotError::Truncated { .. })),
                "read_header_at cut at {cut}: {err:?}"
            );
        }
    }
}

#[test]
fn bytes_used_past_eof_or_tiny() {
    let bytes = build_slot();
    for value in [bytes.len() as u64 + 1, u64::MAX, 1 << 40] {
        let mut bad = bytes.clone();
        bad[40..48].copy_from_slice(&value.to_le_bytes());
        assert!(
            matches!(
                slot::open(&bad),
                Err(SlotError::Truncated {
                    part: "squashfs",
                    ..
                })
            ),
            "bytes_used {value}"
        );
        assert!(matches!(
            slot::read_header_at(&mut Cursor::new(&bad)),
            Err(SlotError::Truncated {
                part: "squashfs",
                ..
            })
        ));
    }
    let mut bad = bytes.clone();
    bad[40..48].copy_from_slice(&10u64.to_le_bytes());
    assert!(matches!(
        slot::open(&bad),
        Err(SlotError::SquashfsSize { bytes_used: 10 })
    ));
    let mut bad = bytes;
    bad[0] = b'x';
    assert!(matches!(
        slot::open(&bad),
        Err(SlotError::SquashfsMagic { .. })
    ));
}

/// Re-signs the slot's header after `edit`, as an attacker holding the key could not but a
/// buggy builder might: lengths must be checked even under a good signature.
fn resign(bytes: &[u8], edit: impl FnOnce(&mut SlotHeader)) -> Vec<u8> {
    let (l, mut h) = layout(bytes);
    edit(&mut h);
    let enc = h.encode_signed(&key(1)).unwrap();
    let mut out = bytes.to_vec();
    out[l.header_offset as usize..l.header_offset as usize + HEADER_SIZE].copy_from_slice(&enc);
    out
}

#[test]
fn huge_header_lengths_are_clean_errors() {
    let bytes = build_slot();
    let vk = key(1).verifying_key();
    let huge = [5u64 << 30, u64::MAX, u64::MAX - 4095];
    for v in huge {
        let bad = resign(&bytes, |h| h.attachment_size = v);
        let err = slot::verify(&bad, &vk).unwrap_err();
        assert!(
            matches!(
                err,
                SlotError::Truncated {
                    part: "attachment",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = slot::read_header_at(&mut Cursor::new(&bad)).unwrap_err();
        assert!(
            matches!(
                err,
                SlotError::Truncated {
                    part: "attachment",
                    ..
                }
            ),
            "{err:?}"
        );

        for (field, edit) in [
            (
                "data_blocks",
                Box::new(move |h: &mut SlotHeader| h.data_blocks = v)
                    as Box<dyn FnOnce(&mut SlotHeader)>,
            ),
            (
                "hash_offset",
                Box::new(move |h: &mut SlotHeader| h.hash_offset = v),
            ),
            (
                "tree_size",
                Box::new(move |h: &mut SlotHeader| h.tree_size = v),
            ),
            (
                "squashfs_size",
                Box::new(move |h: &mut SlotHeader| h.squashfs_size = v),
            ),
        ] {
            let bad = resign(&bytes, edit);
            let err = slot::verify(&bad, &vk).unwrap_err();
            assert!(
                matches!(err, SlotError::LayoutMismatch { field: f, found, .. } if f == field && found == v),
                "{field}: {err:?}"
            );
        }
    }
}

#[test]
fn the_parts_after_the_header_lie_as_documented() {
    let bytes = build_slot();
    let (l, h) = layout(&bytes);
    let (kernel, initramfs) = boot_parts();
    assert_eq!(l.attachment_offset, l.header_offset + 4096);
    assert_eq!(
        l.kernel_offset,
        (l.attachment_offset + l.attachment_size).next_multiple_of(4096)
    );
    assert_eq!(
        l.initramfs_offset,
        (l.kernel_offset + 20_001).next_multiple_of(4096)
    );
    assert_eq!(
        l.total_size,
        (l.initramfs_offset + 9_000).next_multiple_of(4096)
    );
    assert_eq!(bytes.len() as u64, l.total_size);
    assert_eq!((h.kernel.offset, h.kernel.size), (l.kernel_offset, 20_001));
    assert_eq!(
        (h.initramfs.offset, h.initramfs.size),
        (l.initramfs_offset, 9_000)
    );
    assert_eq!(h.cmdline, CMDLINE);
    let verified = slot::verify(&bytes, &key(1).verifying_key()).unwrap();
    assert_eq!(verified.kernel, &kernel[..]);
    assert_eq!(verified.initramfs, &initramfs[..]);
    // What the boot loader reads: the same bytes, hash-checked.
    let trusted = h.clone();
    let mut dev = limpet_image::io::Io(&mut Cursor::new(&bytes));
    assert_eq!(
        slot::read_part_from(&mut dev, &trusted, BootPart::Kernel).unwrap(),
        kernel
    );
    assert_eq!(
        slot::read_part_from(&mut dev, &trusted, BootPart::Initramfs).unwrap(),
        initramfs
    );
}

#[test]
fn tampering_after_the_header_is_caught_by_every_reader() {
    let bytes = build_slot();
    let (l, h) = layout(&bytes);
    let vk = key(1).verifying_key();
    for (part, offset) in [
        ("attachment", l.attachment_offset),
        ("kernel", l.kernel_offset + 5_000),
        ("initramfs", l.initramfs_offset + 8_999),
    ] {
        let mut bad = bytes.clone();
        bad[offset as usize] ^= 1;
        let err = slot::verify(&bad, &vk).unwrap_err();
        assert!(
            matches!(err, SlotError::PartHash { part: p, .. } if p == part),
            "{part}: {err:?}"
        );
        let err = slot::verify_at(&mut Cursor::new(&bad), &vk).unwrap_err();
        assert!(
            matches!(err, SlotError::PartHash { part: p, .. } if p == part),
            "{part} (verify_at): {err:?}"
        );
        let which = match part {
            "kernel" => BootPart::Kernel,
            "initramfs" => BootPart::Initramfs,
            _ => continue,
        };
        let err =
            slot::read_part_from(&mut limpet_image::io::Io(&mut Cursor::new(&bad)), &h, which)
                .unwrap_err();
        assert!(
            matches!(err, SlotError::PartHash { part: p, .. } if p == part),
            "{part} (read_part_from): {err:?}"
        );
    }
    // A non-zero byte in each gap, and in the padding at the end.
    for gap in [
        l.attachment_offset + l.attachment_size,
        l.kernel_offset + l.kernel_size,
        l.total_size - 1,
    ] {
        let mut bad = bytes.clone();
        bad[gap as usize] = 1;
        assert!(
            matches!(slot::open(&bad), Err(SlotError::Padding { offset }) if offset == gap),
            "gap at {gap}"
        );
    }
}

#[test]
fn moved_or_empty_boot_parts_are_refused() {
    let bytes = build_slot();
    let vk = key(1).verifying_key();
    let (l, _) = layout(&bytes);
    type Edit = Box<dyn FnOnce(&mut SlotHeader)>;
    let cases: [(&str, Edit, u64); 4] = [
        (
            "kernel_offset",
            Box::new(|h| h.kernel.offset += 4096),
            l.kernel_offset + 4096,
        ),
        (
            "initramfs_offset",
            Box::new(|h| h.initramfs.offset -= 4096),
            l.initramfs_offset - 4096,
        ),
        ("kernel_size", Box::new(|h| h.kernel.size = 0), 0),
        ("initramfs_size", Box::new(|h| h.initramfs.size = 0), 0),
    ];
    for (field, edit, found) in cases {
        let bad = resign(&bytes, edit);
        let err = slot::verify(&bad, &vk).unwrap_err();
        assert!(
            matches!(err, SlotError::LayoutMismatch { field: f, found: v, .. } if f == field && v == found),
            "{field}: {err:?}"
        );
    }
    let fs = squashfs::build(&sample_entries(), 0).unwrap();
    let empty = BootFiles {
        kernel: &[],
        ..SMALL_BOOT
    };
    assert!(matches!(
        slot::assemble(&fs, &meta(), &[], &empty, &key(1)),
        Err(SlotError::Meta {
            field: "kernel",
            ..
        })
    ));
}

#[test]
fn a_command_line_that_is_not_printable_ascii_is_refused() {
    let fs = squashfs::build(&sample_entries(), 0).unwrap();
    for cmdline in ["", "console=ttyS0\ninit=/bin/sh", "console=ttyS0 caf\u{e9}"] {
        let boot = BootFiles {
            cmdline,
            ..SMALL_BOOT
        };
        let err = slot::assemble(&fs, &meta(), &[], &boot, &key(1)).unwrap_err();
        assert!(
            matches!(
                err,
                SlotError::Header {
                    source: HeaderError::Field {
                        field: "cmdline",
                        ..
                    },
                    ..
                }
            ),
            "{cmdline:?}: {err:?}"
        );
    }
}

#[test]
fn slot_in_a_larger_partition() {
    let bytes = build_slot();
    let mut partition = bytes.clone();
    partition.resize(bytes.len() + (1 << 20), 0);
    let (l, _) = layout(&bytes);
    let verified = slot::verify(&partition, &key(1).verifying_key()).unwrap();
    assert_eq!(verified.layout, l);
    let (rl, h) = slot::read_header_at(&mut Cursor::new(&partition)).unwrap();
    assert_eq!(rl, l);
    let trusted = h.verify(&key(1).verifying_key()).unwrap();
    assert_eq!(trusted.verity_params().data_blocks, l.hash_offset / 4096);
}

#[test]
fn bad_meta_is_refused() {
    let fs = squashfs::build(&sample_entries(), 0).unwrap();
    let mut m = meta();
    m.target = "riscv64".into();
    assert!(matches!(
        slot::assemble(&fs, &m, &[], &SMALL_BOOT, &key(1)),
        Err(SlotError::Meta {
            field: "target",
            ..
        })
    ));
    let mut m = meta();
    m.version = String::new();
    assert!(matches!(
        slot::assemble(&fs, &m, &[], &SMALL_BOOT, &key(1)),
        Err(SlotError::Header {
            source: HeaderError::Field {
                field: "version",
                ..
            },
            ..
        })
    ));
}
