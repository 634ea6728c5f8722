#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{noise, store_fetcher, text, with_insert, write_payload};
use limpet_chunk::{
    assemble, plan, publish, publish_with, ChunkParams, Index, PublishOptions, ReadAt,
};

fn no_seeds() -> Vec<&'static dyn ReadAt> {
    Vec::new()
}

#[test]
fn publish_then_assemble_without_seed_reproduces_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let data = text(1, 700_001);
    let p = write_payload(dir.path(), "v1", &data);
    let index = publish(&p, &store).unwrap();
    assert_eq!(index.total_length(), data.len() as u64);
    assert!(index.chunks().len() > 10);

    // The index survives its encoding.
    let index = Index::from_bytes(&index.to_bytes()).unwrap();

    let mut served = 0;
    let mut out = Vec::new();
    let stats = assemble(
        &index,
        &no_seeds(),
        &mut store_fetcher(&store, &mut served),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, data);
    assert_eq!(stats.chunks_reused, 0);
    assert_eq!(stats.chunks_fetched, index.chunks().len());
    assert_eq!(stats.bytes_fetched, index.compressed_length());
    assert_eq!(stats.bytes_fetched, served);
    // Text over a 16-letter alphabet compresses; the store holds it compressed.
    assert!(stats.bytes_fetched < data.len() as u64 * 3 / 4);
}

#[test]
fn empty_and_tiny_payloads_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    for (name, data) in [
        ("empty", Vec::new()),
        ("one", vec![7u8]),
        ("small", noise(3, 100)),
    ] {
        let p = write_payload(dir.path(), name, &data);
        let index = publish(&p, &store).unwrap();
        let mut served = 0;
        let mut out = Vec::new();
        assemble(
            &index,
            &no_seeds(),
            &mut store_fetcher(&store, &mut served),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, data, "{name}");
    }
}

#[test]
fn publishing_again_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let p = write_payload(dir.path(), "v1", &noise(5, 300_000));
    let first = publish_with(&p, &store, PublishOptions::default()).unwrap();
    assert!(first.chunks_written > 0);
    let again = publish_with(&p, &store, PublishOptions::default()).unwrap();
    assert_eq!(again.chunks_written, 0);
    assert_eq!(again.index, first.index);
    // No temporary file is left behind.
    for e in walk(&store) {
        assert!(e.ends_with(".zst"), "{e}");
    }
}

#[test]
fn a_corrupt_chunk_file_in_the_store_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let p = write_payload(dir.path(), "v1", &noise(6, 100_000));
    let index = publish(&p, &store).unwrap();
    let victim = store.join(index.chunks()[0].id.store_path());
    std::fs::write(&victim, b"garbage").unwrap();
    let again = publish_with(&p, &store, PublishOptions::default()).unwrap();
    assert_eq!(again.chunks_written, 1);
    assert_eq!(again.index, index);
}

#[test]
fn v2_from_a_v1_seed_fetches_only_the_changed_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let v1 = noise(7, 2_000_000);
    // One insertion near the middle and one overwrite near the end.
    let mut v2 = with_insert(&v1, 1_000_000, b"a new line of code");
    v2[1_800_000..1_800_010].copy_from_slice(b"0123456789");
    let p1 = write_payload(dir.path(), "v1", &v1);
    let p2 = write_payload(dir.path(), "v2", &v2);
    let i1 = publish(&p1, &store).unwrap();
    let i2 = publish(&p2, &store).unwrap();

    let seeds: [&dyn ReadAt; 1] = [&v1];
    let pl = plan(&i2, &seeds).unwrap();
    assert!(pl.chunks_to_fetch >= 2, "{pl:?}");
    assert!(pl.chunks_to_fetch <= 6, "{pl:?}");
    assert_eq!(pl.chunks_to_fetch + pl.chunks_from_seeds, i2.chunks().len());
    assert_eq!(pl.fetch_positions().count(), pl.chunks_to_fetch);

    let mut served = 0;
    let mut out = Vec::new();
    let stats = assemble(
        &i2,
        &seeds,
        &mut store_fetcher(&store, &mut served),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, v2);
    assert_eq!(stats.chunks_fetched, pl.chunks_to_fetch);
    assert_eq!(stats.bytes_fetched, pl.bytes_to_fetch);
    assert_eq!(stats.chunks_reused, pl.chunks_from_seeds);
    assert_eq!(stats.seed_mismatches, 0);
    // Far less than the whole payload (random data does not compress).
    assert!(
        stats.bytes_fetched < i2.compressed_length() / 20,
        "{stats:?}"
    );
    // Every chunk fetched is one v1 lacks.
    let old: std::collections::HashSet<_> = i1.chunks().iter().map(|c| c.id).collect();
    for pos in pl.fetch_positions() {
        assert!(!old.contains(&i2.chunks()[pos].id));
    }
}

#[test]
fn a_second_seed_supplies_what_the_first_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = noise(8, 400_000);
    let b = noise(9, 400_000);
    let mut v2 = a.clone();
    v2.extend_from_slice(&b);
    let p = write_payload(dir.path(), "v2", &v2);
    let index = publish(&p, &store).unwrap();
    let seeds: [&dyn ReadAt; 2] = [&a, &b];
    let pl = plan(&index, &seeds).unwrap();
    // Only chunks near the a|b junction are new (b's first cuts need a few chunks to
    // fall back in step with v2's).
    assert!(pl.chunks_to_fetch <= 4, "{pl:?}");
    assert!(pl.chunks_from_seed(1) > 10, "{pl:?}");
    let mut served = 0;
    let mut out = Vec::new();
    assemble(
        &index,
        &seeds,
        &mut store_fetcher(&store, &mut served),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, v2);
}

#[test]
fn a_seed_that_changed_after_planning_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let v1 = noise(10, 500_000);
    let p = write_payload(dir.path(), "v1", &v1);
    let index = publish(&p, &store).unwrap();
    let seeds: [&dyn ReadAt; 1] = [&v1];
    let pl = plan(&index, &seeds).unwrap();
    assert_eq!(pl.chunks_to_fetch, 0);
    // The seed is altered between plan and apply: its chunk is fetched instead.
    let mut altered = v1.clone();
    altered[10] ^= 1;
    let seeds: [&dyn ReadAt; 1] = [&altered];
    let mut served = 0;
    let mut out = Vec::new();
    let stats = limpet_chunk::assemble_planned(
        &index,
        &pl,
        &seeds,
        &mut store_fetcher(&store, &mut served),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, v1);
    assert_eq!(stats.seed_mismatches, 1);
    assert_eq!(stats.chunks_fetched, 1);
}

#[test]
fn the_index_records_its_parameters_and_the_seed_is_cut_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let v1 = noise(11, 600_000);
    let v2 = with_insert(&v1, 300_000, b"x");
    let p2 = write_payload(dir.path(), "v2", &v2);
    let params = ChunkParams::new(1024, 4096, 16384).unwrap();
    let opts = PublishOptions {
        params,
        ..PublishOptions::default()
    };
    let index = publish_with(&p2, &store, opts).unwrap().index;
    assert_eq!(index.params(), params);
    let seeds: [&dyn ReadAt; 1] = [&v1];
    let pl = plan(&index, &seeds).unwrap();
    assert!(pl.chunks_to_fetch <= 3, "{pl:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}
