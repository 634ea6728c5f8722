#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Peak heap while applying an update, measured with a counting global allocator.
//! One test in this binary, so no other test allocates at the same time.

mod common;

use common::{noise, store_fetcher, with_insert, write_payload};
use limpet_chunk::{assemble, publish, ReadAt};

#[global_allocator]
static HEAP: limpet_heap_meter::Meter = limpet_heap_meter::Meter::new();

/// The budget from the design: 2 MiB beyond the block being written.
const BUDGET: usize = 2 * 1024 * 1024;

/// libzstd allocates its decompression context with malloc, which the counter does not
/// see: its size (`ZSTD_sizeof_DCtx` after use, about 160 KiB) is added explicitly.
fn dctx_size() -> usize {
    let mut d = zstd::zstd_safe::DCtx::create();
    let blob = zstd::bulk::compress(&noise(1, 65536), 19).unwrap();
    let mut out = vec![0u8; 65536];
    d.decompress(&mut out[..], &blob).unwrap();
    d.sizeof()
}

#[test]
fn applying_a_32_mib_update_stays_within_2_mib_of_heap() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let v1 = noise(31, 32 * 1024 * 1024);
    // Changes spread through the payload, so both paths (seed and fetch) are exercised.
    let mut v2 = v1.clone();
    for k in 0..16 {
        v2 = with_insert(&v2, k * 2_000_000 + 12_345, b"one changed line");
    }
    let p2 = write_payload(dir.path(), "v2", &v2);
    let index = publish(&p2, &store).unwrap();
    let mut out = vec![0u8; v2.len()];
    let mut served = 0u64;
    let seeds: [&dyn ReadAt; 1] = [&v1];
    let dctx = dctx_size();

    let mark = HEAP.mark();
    let stats = assemble(
        &index,
        &seeds,
        &mut store_fetcher(&store, &mut served),
        &mut out,
    )
    .unwrap();
    let peak = HEAP.peak_since(mark);

    assert_eq!(out, v2);
    assert!(stats.chunks_fetched >= 16, "{stats:?}");
    assert!(stats.chunks_reused > 1000, "{stats:?}");
    let index_bytes = index.to_bytes().len();
    eprintln!(
        "apply peak heap: {peak} B (+ zstd DCtx {dctx} B) for a {} B payload of {} chunks \
         (index {index_bytes} B held by the caller); fetched {} chunks",
        v2.len(),
        index.chunks().len(),
        stats.chunks_fetched
    );
    assert!(
        peak + dctx <= BUDGET,
        "peak {peak} + dctx {dctx} > {BUDGET}"
    );
}
