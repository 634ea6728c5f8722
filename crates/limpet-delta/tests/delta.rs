//! Making and applying deltas of real squashfs slots, and every way a bad delta or a wrong
//! running slot is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{code, release_pair, signed_slot, slot};
use limpet_delta::layout::{expand, Segment};
use limpet_delta::{apply, make, DeltaError, MAGIC};
use sha2::{Digest, Sha256};

#[test]
fn a_moved_code_release_rebuilds_byte_for_byte_from_a_small_delta() {
    let (v1, v2) = release_pair();
    let made = make(&v1, &v2).unwrap();
    let full = zstd::bulk::compress(&v2, 19).unwrap().len();
    eprintln!(
        "v2 {} B, full zstd-19 {full} B, delta {} B, frames {} -> {}",
        v2.len(),
        made.delta.len(),
        made.old_frames,
        made.new_frames
    );
    // The binary's blocks are compressed in the slot: each one is expanded and rebuilt.
    assert!(made.new_frames >= 4, "{}", made.new_frames);
    assert!(
        made.delta.len() * 10 < full,
        "delta {} vs full {full}",
        made.delta.len()
    );

    let mut out = Vec::new();
    let applied = apply(&made.delta, &v1[..], &mut out).unwrap();
    assert_eq!(out, v2);
    assert_eq!(applied.written, v2.len() as u64);
    assert_eq!(applied.sha256, <[u8; 32]>::from(Sha256::digest(&v2)));
    assert_eq!(applied.frames, made.new_frames as u64);
}

#[test]
fn identical_and_unrelated_images_round_trip() {
    let (v1, v2) = release_pair();
    for (old, new) in [(&v1, &v1), (&v2, &v1), (&v1, &slot(b"tiny", "9"))] {
        let made = make(old, new).unwrap();
        let mut out = Vec::new();
        apply(&made.delta, &old[..], &mut out).unwrap();
        assert_eq!(&out, new);
    }
}

/// Applies `delta` to `old` and returns the error.
fn refused(delta: &[u8], old: &[u8]) -> DeltaError {
    let mut out = Vec::new();
    match apply(delta, old, &mut out) {
        Ok(a) => panic!("applied: {a:?}"),
        Err(e) => e,
    }
}

#[test]
fn bad_magic_and_a_delta_for_another_old_image_are_refused() {
    let (v1, v2) = release_pair();
    let made = make(&v1, &v2).unwrap();
    let mut bad = made.delta.clone();
    bad[0] ^= 1;
    assert!(matches!(refused(&bad, &v1), DeltaError::BadMagic));

    // The running slot is another release altogether.
    let other = slot(b"another release", "0.9.0");
    let err = refused(&made.delta, &other);
    assert!(
        matches!(err, DeltaError::WrongOld { expected, actual }
            if expected == v1.len() as u64 && actual == other.len() as u64),
        "{err}"
    );
    // Same length, other content: the old frames do not decompress as recorded, or the
    // result is not v2 (the caller's hash check).
    let mut other = v1.clone();
    for b in other.iter_mut().skip(200).step_by(1000) {
        *b ^= 0x55;
    }
    let mut out = Vec::new();
    match apply(&made.delta, &other[..], &mut out) {
        Err(DeltaError::OldFrame { .. } | DeltaError::Recompress { .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
        Ok(a) => assert_ne!(a.sha256, <[u8; 32]>::from(Sha256::digest(&v2))),
    }
}

#[test]
fn every_truncation_and_corrupted_body_byte_is_an_error_not_a_panic() {
    let (v1, v2) = release_pair();
    let made = make(&v1, &v2).unwrap();
    let step = (made.delta.len() / 60).max(1);
    for cut in (0..made.delta.len()).step_by(step) {
        let err = refused(&made.delta[..cut], &v1);
        assert!(
            matches!(
                err,
                DeltaError::BadMagic | DeltaError::Zstd(_) | DeltaError::Malformed { .. }
            ),
            "cut at {cut}: {err}"
        );
    }
    // The body's zstd frame carries a checksum: a flipped byte is caught, at the latest at
    // its end, unless zstd decodes the same body from it (an unused bit).
    for at in (MAGIC.len()..made.delta.len()).step_by(step) {
        let mut bad = made.delta.clone();
        bad[at] ^= 0x20;
        let mut out = Vec::new();
        if apply(&bad, &v1[..], &mut out).is_ok() {
            assert!(out == v2, "flipped byte {at} applied to another image");
        }
    }
}

/// Decompresses the body, lets `edit` change it, and compresses it again.
fn with_body(delta: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = zstd::decode_all(&delta[MAGIC.len()..]).unwrap();
    edit(&mut body);
    let mut out = MAGIC.to_vec();
    out.extend(zstd::bulk::compress(&body, 3).unwrap());
    out
}

#[test]
fn a_device_whose_zstd_compresses_differently_does_not_write_the_signed_slot() {
    let (v1, v2) = release_pair();
    let (s1, s2) = (signed_slot(&v1, "1.0.0"), signed_slot(&v2, "1.0.1"));
    let made = make(&s1, &s2).unwrap();
    // Claim another level for every new frame: what a different zstd amounts to.
    let bad = with_body(&made.delta, |body| {
        let new_count = u32::from_le_bytes(body[16..20].try_into().unwrap()) as usize;
        let mut at = 20;
        for _ in 0..new_count {
            if body[at] == 1 {
                body[at + 1..at + 5].copy_from_slice(&5i32.to_le_bytes());
            }
            at += if body[at] == 2 { 17 + 40 } else { 17 };
        }
    });
    // The frames come out at other lengths: the tree is not where the data ends.
    let err = refused(&bad, &s1);
    assert!(
        matches!(
            err,
            DeltaError::Recompress {
                what: "the data before the verity tree",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("this zstd differs from the publisher's"),
        "{err}"
    );
}

#[test]
fn records_that_overrun_the_new_image_or_announce_too_many_changes_are_refused() {
    let (v1, v2) = release_pair();
    let made = make(&v1, &v2).unwrap();
    // (These images are bare squashfs: no tree segment.)
    let header_len = |body: &[u8]| {
        let new_count = u32::from_le_bytes(body[16..20].try_into().unwrap()) as usize;
        20 + 17 * new_count
    };
    // One change more than the groups hold.
    let bad = with_body(&made.delta, |body| {
        let at = header_len(body);
        let n = u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
        body[at..at + 8].copy_from_slice(&(n + 1).to_le_bytes());
    });
    let err = refused(&bad, &v1);
    // The reader wants one more group than there is, and reads a record as one.
    assert!(matches!(err, DeltaError::Malformed { .. }), "{err}");

    // A record as long as the whole new image again.
    let bad = with_body(&made.delta, |body| {
        let mut record = Vec::new();
        record.extend((v2.len() as u64 * 4).to_le_bytes());
        record.extend(0u64.to_le_bytes());
        record.extend(0u64.to_le_bytes());
        body.extend(record);
    });
    let err = refused(&bad, &v1);
    assert!(err.to_string().contains("left to make"), "{err}");

    // Trailing garbage shorter than a record.
    let bad = with_body(&made.delta, |body| body.extend([1, 2, 3]));
    let err = refused(&bad, &v1);
    assert!(err.to_string().contains("a record is cut short"), "{err}");
}

#[test]
fn a_signed_slot_s_verity_tree_is_rebuilt_on_the_device_not_sent() {
    let n = 1 << 20;
    let (fs1, fs2) = (
        slot(&code(9, n, None), "1.0.0"),
        slot(&code(9, n, Some((300_000, 16))), "1.0.1"),
    );
    let (s1, s2) = (signed_slot(&fs1, "1.0.0"), signed_slot(&fs2, "1.0.1"));
    let opened = limpet_image::slot::open(&s2).unwrap();
    let tree_size = opened.layout.tree_size;
    assert!(tree_size >= 8192, "{tree_size}");
    let trees: Vec<Segment> = expand(&s2)
        .segments
        .into_iter()
        .filter(|s| matches!(s, Segment::Verity { .. }))
        .collect();
    assert!(
        matches!(trees[..], [Segment::Verity { stored, data_blocks, .. }]
            if stored == tree_size && data_blocks == opened.layout.data_blocks()),
        "{trees:?}"
    );

    let squashfs_only = make(&fs1, &fs2).unwrap().delta.len();
    let made = make(&s1, &s2).unwrap();
    eprintln!(
        "slot delta {} B, squashfs-only delta {squashfs_only} B, tree {tree_size} B",
        made.delta.len()
    );
    // The new header and SBOM cost a little; the tree's random hashes would cost it all.
    assert!(
        (made.delta.len() as u64) < squashfs_only as u64 + tree_size / 2,
        "slot delta {} vs squashfs {squashfs_only} + tree {tree_size}",
        made.delta.len()
    );
    let mut out = Vec::new();
    let applied = apply(&made.delta, &s1[..], &mut out).unwrap();
    assert_eq!(out, s2);
    assert_eq!(applied.sha256, <[u8; 32]>::from(Sha256::digest(&s2)));
    // The slot it wrote verifies: signature, tree, root hash.
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key();
    limpet_image::slot::verify(&out, &key).unwrap();
}
