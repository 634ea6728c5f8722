//! Peak memory while applying a delta, measured with a counting global allocator plus
//! libzstd's contexts (allocated with malloc, which the counter does not see).
//! One test in this binary, so no other test allocates at the same time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{code, signed_slot, slot};
use limpet_delta::{apply, make, MAGIC, WINDOW_LOG};
use zstd::zstd_safe::{CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer};

#[global_allocator]
static HEAP: limpet_heap_meter::Meter = limpet_heap_meter::Meter::new();

/// The design's budget: 2 MiB beyond the block being written.
const BUDGET: usize = 2 * 1024 * 1024;
/// The block being written: one squashfs block, as its content is gathered.
const BLOCK: usize = 128 * 1024;

/// The compression context after compressing one full 128 KiB block at the slot's level,
/// as the device does for each new frame.
fn cctx_size(block: &[u8]) -> usize {
    let mut c = CCtx::create();
    let level = i32::try_from(limpet_image::squashfs::ZSTD_LEVEL).unwrap();
    c.set_parameter(CParameter::CompressionLevel(level))
        .unwrap();
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(block.len()));
    c.compress2(&mut out, block).unwrap();
    c.sizeof()
}

/// The one-shot decompression context after decompressing an old frame.
fn bulk_dctx_size(block: &[u8]) -> usize {
    let frame = zstd::bulk::compress(block, 9).unwrap();
    let mut d = DCtx::create();
    let mut out = vec![0u8; block.len()];
    d.decompress(&mut out[..], &frame).unwrap();
    d.sizeof()
}

/// The streaming decompression context after decoding a whole delta body.
fn dctx_size(delta: &[u8]) -> usize {
    let mut d = DCtx::create();
    d.set_parameter(DParameter::WindowLogMax(WINDOW_LOG))
        .unwrap();
    let mut input = InBuffer::around(&delta[MAGIC.len()..]);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut output = OutBuffer::around(&mut buf[..]);
        let hint = d.decompress_stream(&mut output, &mut input).unwrap();
        if hint == 0 {
            break;
        }
    }
    d.sizeof()
}

#[test]
fn applying_a_delta_to_a_slot_with_a_4_mib_binary_stays_within_2_mib() {
    let n = 4 << 20;
    // Signed slots: the device also rebuilds the verity tree.
    let old = signed_slot(&slot(&code(3, n, None), "1.0.0"), "1.0.0");
    let new = signed_slot(&slot(&code(3, n, Some((1_000_000, 40))), "1.0.1"), "1.0.1");
    let made = make(&old, &new).unwrap();
    let cctx = cctx_size(&code(3, BLOCK, None));
    let dctx = dctx_size(&made.delta) + bulk_dctx_size(&code(3, BLOCK, None));
    let mut out = vec![0u8; new.len()];

    let mark = HEAP.mark();
    let applied = apply(&made.delta, &old[..], &mut out).unwrap();
    let heap = HEAP.peak_since(mark);

    assert_eq!(out, new);
    assert!(applied.frames >= 32, "{applied:?}");
    let total = heap + cctx + dctx;
    eprintln!(
        "apply of {} B ({} frames recompressed) from a {} B delta: peak heap {heap} B \
         + zstd CCtx {cctx} B + DCtxs {dctx} B = {total} B; budget {BUDGET} B + the block {BLOCK} B",
        new.len(),
        applied.frames,
        made.delta.len()
    );
    assert!(total <= BUDGET + BLOCK, "{total} > {BUDGET} + {BLOCK}");
}
