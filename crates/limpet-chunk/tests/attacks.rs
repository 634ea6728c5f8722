#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io;

use common::{noise, text, write_payload};
use limpet_chunk::index::{ENTRY_LEN, HEADER_LEN};
use limpet_chunk::{
    assemble, publish, read_chunk, AssembleError, ChunkId, Index, IndexError, ReadAt, WriteAt,
};

/// Records which byte ranges were written.
#[derive(Default)]
struct Recorder {
    data: Vec<u8>,
    writes: Vec<(u64, usize)>,
}

impl WriteAt for Recorder {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.writes.push((offset, buf.len()));
        self.data.write_all_at(buf, offset)
    }
}

/// A published payload of noise (incompressible chunks) and the chunk to attack.
struct Fixture {
    _dir: tempfile::TempDir,
    store: std::path::PathBuf,
    index: Index,
    victim: usize,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let p = write_payload(dir.path(), "v1", &noise(21, 400_000));
    let index = publish(&p, &store).unwrap();
    let victim = index.chunks().len() / 2;
    Fixture {
        _dir: dir,
        store,
        index,
        victim,
    }
}

/// Assembles with no seed; the victim chunk's file is replaced by `evil(original chunk)`.
fn assemble_with(f: &Fixture, evil: impl Fn(&[u8]) -> Vec<u8>) -> (AssembleError, Recorder) {
    let victim = f.index.chunks()[f.victim].id;
    let mut fetch = |id: &ChunkId, cap: u64| -> io::Result<Vec<u8>> {
        let blob = read_chunk(&f.store, id, cap)?;
        if *id == victim {
            let orig = zstd::bulk::decompress(&blob, 1 << 20).unwrap();
            return Ok(evil(&orig));
        }
        Ok(blob)
    };
    let mut out = Recorder::default();
    let seeds: [&dyn ReadAt; 0] = [];
    let err = assemble(&f.index, &seeds, &mut fetch, &mut out).unwrap_err();
    (err, out)
}

fn assert_victim_not_written(f: &Fixture, out: &Recorder) {
    let v = f.index.chunks()[f.victim];
    assert!(
        out.writes.iter().all(|&(o, _)| o < v.offset),
        "writes at or after the bad chunk: {:?}",
        out.writes
            .iter()
            .filter(|w| w.0 >= v.offset)
            .collect::<Vec<_>>()
    );
    // Everything before it was written, and verified.
    assert_eq!(out.writes.len(), f.victim);
}

#[test]
fn tampered_chunk_fails_with_its_hashes_and_is_not_written() {
    let f = fixture();
    let (err, out) = assemble_with(&f, |orig| {
        let mut t = orig.to_vec();
        t[100] ^= 0x55;
        zstd::bulk::compress(&t, 19).unwrap()
    });
    let v = f.index.chunks()[f.victim];
    match err {
        AssembleError::Hash {
            index,
            offset,
            expected,
            actual,
        } => {
            assert_eq!(index, f.victim);
            assert_eq!(offset, v.offset);
            assert_eq!(expected, v.id);
            assert_ne!(actual, v.id);
        }
        other => panic!("expected Hash, got {other:?}"),
    }
    assert_victim_not_written(&f, &out);
}

#[test]
fn truncated_chunk_file_fails_as_bad_zstd() {
    let f = fixture();
    let (err, out) = assemble_with(&f, |orig| {
        let b = zstd::bulk::compress(orig, 19).unwrap();
        b[..b.len() / 2].to_vec()
    });
    assert!(
        matches!(err, AssembleError::Decompress { index, .. } if index == f.victim),
        "{err:?}"
    );
    assert_victim_not_written(&f, &out);
}

#[test]
fn chunk_file_over_its_cap_is_refused_before_decoding() {
    let f = fixture();
    let cap = u64::from(f.index.chunks()[f.victim].compressed_length);
    let (err, out) = assemble_with(&f, |_| vec![0u8; usize::try_from(cap).unwrap() + 1]);
    assert!(
        matches!(err, AssembleError::TooLarge { index, len, cap: c, .. }
            if index == f.victim && len == cap + 1 && c == cap),
        "{err:?}"
    );
    assert_victim_not_written(&f, &out);
}

#[test]
fn chunk_that_decompresses_to_more_than_its_length_is_refused() {
    let f = fixture();
    let want = f.index.chunks()[f.victim].length;
    // Compressible, so it fits under the cap, and 1000 bytes longer than the chunk.
    let big = text(3, usize::try_from(want).unwrap() + 1000);
    let (err, out) = assemble_with(&f, |_| zstd::bulk::compress(&big, 19).unwrap());
    assert!(
        matches!(err, AssembleError::Length { index, expected, actual, .. }
            if index == f.victim && expected == want && actual == u64::from(want) + 1000),
        "{err:?}"
    );
    assert_victim_not_written(&f, &out);
}

#[test]
fn oversized_frame_without_declared_size_is_stopped_by_the_buffer() {
    let f = fixture();
    let want = usize::try_from(f.index.chunks()[f.victim].length).unwrap();
    let big = text(4, want + 1000);
    let (err, out) = assemble_with(&f, |_| {
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 19).unwrap();
        enc.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut enc, &big).unwrap();
        enc.finish().unwrap()
    });
    assert!(
        matches!(err, AssembleError::Decompress { index, .. } if index == f.victim),
        "{err:?}"
    );
    assert_victim_not_written(&f, &out);
}

#[test]
fn fetch_failure_names_the_chunk() {
    let f = fixture();
    let mut fetch = |_: &ChunkId, _: u64| -> io::Result<Vec<u8>> {
        Err(io::Error::new(io::ErrorKind::NotFound, "404"))
    };
    let seeds: [&dyn ReadAt; 0] = [];
    let mut out = Recorder::default();
    let err = assemble(&f.index, &seeds, &mut fetch, &mut out).unwrap_err();
    assert!(
        matches!(&err, AssembleError::Fetch { index: 0, offset: 0, id, .. } if *id == f.index.chunks()[0].id),
        "{err:?}"
    );
    assert!(out.writes.is_empty());
}

// ---- index with bad lengths ----------------------------------------------------------

fn good_index_bytes() -> (Vec<u8>, Index) {
    let f = fixture();
    (f.index.to_bytes(), f.index)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn entry(i: usize) -> usize {
    HEADER_LEN + i * ENTRY_LEN
}

#[test]
fn good_index_round_trips_byte_for_byte() {
    let (b, i) = good_index_bytes();
    assert_eq!(Index::from_bytes(&b).unwrap(), i);
    assert_eq!(Index::from_bytes(&b).unwrap().to_bytes(), b);
}

#[test]
fn payload_over_4_gib_is_refused() {
    let (mut b, _) = good_index_bytes();
    put_u64(&mut b, 32, 4 * 1024 * 1024 * 1024 + 1);
    assert_eq!(
        Index::from_bytes(&b),
        Err(IndexError::TotalTooLarge {
            total: 4 * 1024 * 1024 * 1024 + 1
        })
    );
}

#[test]
fn zero_and_over_max_chunk_lengths_are_refused() {
    let (mut b, i) = good_index_bytes();
    put_u32(&mut b, entry(1) + 8, 0);
    assert!(matches!(
        Index::from_bytes(&b),
        Err(IndexError::Length {
            index: 1,
            length: 0,
            ..
        })
    ));
    let (mut b, _) = good_index_bytes();
    let over = i.params().max() + 2;
    put_u32(&mut b, entry(0) + 8, over);
    assert!(matches!(
        Index::from_bytes(&b),
        Err(IndexError::Length { index: 0, length, .. }) if length == over
    ));
}

#[test]
fn gaps_and_overlaps_are_refused() {
    let (mut b, i) = good_index_bytes();
    let real = i.chunks()[2].offset;
    put_u64(&mut b, entry(2), real + 1);
    assert_eq!(
        Index::from_bytes(&b),
        Err(IndexError::Offset {
            index: 2,
            expected: real,
            found: real + 1
        })
    );
}

#[test]
fn lengths_must_cover_the_total_exactly() {
    let (mut b, i) = good_index_bytes();
    put_u64(&mut b, 32, i.total_length() - 1);
    assert_eq!(
        Index::from_bytes(&b),
        Err(IndexError::Coverage {
            covered: i.total_length(),
            total: i.total_length() - 1
        })
    );
}

#[test]
fn compressed_length_over_zstd_bound_is_refused() {
    let (mut b, _) = good_index_bytes();
    put_u32(&mut b, entry(0) + 12, u32::MAX);
    assert!(matches!(
        Index::from_bytes(&b),
        Err(IndexError::CompressedLength {
            index: 0,
            compressed: u32::MAX,
            ..
        })
    ));
    let (mut b, _) = good_index_bytes();
    put_u32(&mut b, entry(0) + 12, 0);
    assert!(matches!(
        Index::from_bytes(&b),
        Err(IndexError::CompressedLength {
            index: 0,
            compressed: 0,
            ..
        })
    ));
}

#[test]
fn count_must_match_the_byte_length() {
    let (mut b, _) = good_index_bytes();
    b.push(0);
    assert!(matches!(
        Index::from_bytes(&b),
        Err(IndexError::Size { .. })
    ));
    // A huge count with few bytes is refused before any allocation.
    let (mut b, _) = good_index_bytes();
    put_u32(&mut b, 72, u32::MAX);
    assert!(matches!(
        Index::from_bytes(&b),
        Err(IndexError::Size {
            count: u32::MAX,
            ..
        })
    ));
    let (b, _) = good_index_bytes();
    assert_eq!(
        Index::from_bytes(&b[..HEADER_LEN - 1]),
        Err(IndexError::TooShort {
            len: HEADER_LEN - 1
        })
    );
}

#[test]
fn header_fields_are_checked() {
    let (mut b, _) = good_index_bytes();
    b[0] = b'X';
    assert_eq!(Index::from_bytes(&b), Err(IndexError::Magic));
    let (mut b, _) = good_index_bytes();
    put_u32(&mut b, 8, 2);
    assert_eq!(Index::from_bytes(&b), Err(IndexError::Version { found: 2 }));
    let (mut b, _) = good_index_bytes();
    put_u32(&mut b, 28, 7);
    assert_eq!(
        Index::from_bytes(&b),
        Err(IndexError::Unsupported {
            field: "compression",
            found: 7
        })
    );
    let (mut b, _) = good_index_bytes();
    put_u32(&mut b, 76, 1);
    assert!(matches!(
        Index::from_bytes(&b),
        Err(IndexError::Unsupported {
            field: "reserved",
            ..
        })
    ));
    // A max chunk size over 1 MiB would lift the device's memory bound.
    let (mut b, _) = good_index_bytes();
    put_u32(&mut b, 24, 2 * 1024 * 1024);
    assert!(matches!(Index::from_bytes(&b), Err(IndexError::Params(_))));
}
