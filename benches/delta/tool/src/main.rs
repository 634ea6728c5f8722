//! Helper of `benches/delta.sh`.
//!
//! ```text
//! delta-tool sqfs OUT BLOCK_SIZE FILE...          flat squashfs as limpet-image builds it
//!                                                 (backhand, zstd at limpet_image::squashfs::
//!                                                 ZSTD_LEVEL, mtime 1), BLOCK_SIZE bytes
//! delta-tool publish PAYLOAD STORE INDEX [MIN AVG MAX]   prints: chunks_written bytes_written
//!                                                 index_bytes chunks total_compressed
//! delta-tool apply INDEX STORE SEED OUT           prints: bytes_fetched chunks_fetched
//!                                                 chunks_reused planned_bytes
//! delta-tool sweep OLD NEW MIN:AVG:MAX...         prints one line per parameter set:
//!                                                 params chunks new_chunk_bytes index_bytes
//! delta-tool make-delta OLD NEW DELTA             limpet-delta: prints delta_bytes
//!                                                 old_frames new_frames new_expanded
//! delta-tool apply-delta OLD DELTA OUT            prints: bytes_written frames_recompressed
//! ```

use std::error::Error;
use std::fs::{self, File, OpenOptions};
use std::io::Cursor;
use std::path::Path;
use std::process::ExitCode;

use backhand::compression::{CompressionOptions, Compressor, Zstd};
use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader};
use limpet_chunk::{
    assemble_planned, plan, publish_with, read_chunk, ChunkParams, Index, PublishOptions, ReadAt,
};

type Res<T> = Result<T, Box<dyn Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("delta-tool: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Res<()> {
    match args.first().map(String::as_str) {
        Some("sqfs") if args.len() >= 4 => sqfs(&args[1], args[2].parse()?, &args[3..]),
        Some("publish") if args.len() == 4 || args.len() == 7 => {
            let params = if args.len() == 7 {
                ChunkParams::new(args[4].parse()?, args[5].parse()?, args[6].parse()?)?
            } else {
                ChunkParams::DEFAULT
            };
            publish(&args[1], &args[2], &args[3], params)
        }
        Some("apply") if args.len() == 5 => apply(&args[1], &args[2], &args[3], &args[4]),
        Some("sweep") if args.len() >= 4 => sweep(&args[1], &args[2], &args[3..]),
        Some("make-delta") if args.len() == 4 => {
            let made = limpet_delta::make(&fs::read(&args[1])?, &fs::read(&args[2])?)?;
            fs::write(&args[3], &made.delta)?;
            println!(
                "{} {} {} {}",
                made.delta.len(),
                made.old_frames,
                made.new_frames,
                made.new_expanded
            );
            Ok(())
        }
        Some("apply-delta") if args.len() == 4 => {
            let old = File::open(&args[1])?;
            let delta = fs::read(&args[2])?;
            let mut out = File::create(&args[3])?;
            let applied = limpet_delta::apply(&delta, &old, &mut out)?;
            println!("{} {}", applied.written, applied.frames);
            Ok(())
        }
        _ => Err("usage: see the module documentation in benches/delta/tool/src/main.rs".into()),
    }
}

/// Same options as crates/limpet-image/src/squashfs.rs (its zstd level, read from the crate
/// so the two cannot drift), except the block size.
fn sqfs(out: &str, block_size: u32, files: &[String]) -> Res<()> {
    let mut sorted: Vec<&String> = files.iter().collect();
    sorted.sort_by_key(|f| Path::new(f).file_name().map(|n| n.to_owned()));
    let mut data = Vec::new();
    for f in &sorted {
        data.push(fs::read(f)?);
    }
    let mut fs = FilesystemWriter::default();
    fs.set_time(1);
    fs.set_block_size(block_size);
    fs.set_only_root_id();
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    fs.set_emit_compression_options(false);
    fs.set_compressor(FilesystemCompressor::new(
        Compressor::Zstd,
        Some(CompressionOptions::Zstd(Zstd {
            compression_level: limpet_image::squashfs::ZSTD_LEVEL,
        })),
    )?);
    for (f, d) in sorted.iter().zip(&data) {
        let name = Path::new(f)
            .file_name()
            .ok_or("no file name")?
            .to_string_lossy();
        let mode = if name.ends_with(".toml") || name.ends_with(".json") {
            0o444
        } else {
            0o555
        };
        let header = NodeHeader {
            permissions: mode,
            uid: 0,
            gid: 0,
            mtime: 1,
        };
        fs.push_file(Cursor::new(d.as_slice()), format!("/{name}"), header)?;
    }
    let mut w = Cursor::new(Vec::new());
    fs.write(&mut w)?;
    fs::write(out, w.into_inner())?;
    Ok(())
}

fn publish(payload: &str, store: &str, index_out: &str, params: ChunkParams) -> Res<()> {
    let p = publish_with(
        Path::new(payload),
        Path::new(store),
        PublishOptions {
            params,
            ..PublishOptions::default()
        },
    )?;
    let bytes = p.index.to_bytes();
    fs::write(index_out, &bytes)?;
    println!(
        "{} {} {} {} {}",
        p.chunks_written,
        p.bytes_written,
        bytes.len(),
        p.index.chunks().len(),
        p.index.compressed_length()
    );
    Ok(())
}

fn apply(index: &str, store: &str, seed: &str, out: &str) -> Res<()> {
    let index = Index::from_bytes(&fs::read(index)?)?;
    let seed = File::open(seed)?;
    let seeds: [&dyn ReadAt; 1] = [&seed];
    let pl = plan(&index, &seeds)?;
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)?;
    let store = Path::new(store);
    let mut fetch = |id: &limpet_chunk::ChunkId, cap: u64| read_chunk(store, id, cap);
    let stats = assemble_planned(&index, &pl, &seeds, &mut fetch, &mut out)?;
    println!(
        "{} {} {} {}",
        stats.bytes_fetched, stats.chunks_fetched, stats.chunks_reused, pl.bytes_to_fetch
    );
    Ok(())
}

/// Download size (new chunk files + index) for each parameter set, measured with the real
/// publisher into throw-away stores.
fn sweep(old: &str, new: &str, sets: &[String]) -> Res<()> {
    for set in sets {
        let v: Vec<u32> = set.split(':').map(str::parse).collect::<Result<_, _>>()?;
        let [min, avg, max] = v[..] else {
            return Err(format!("bad parameter set {set}").into());
        };
        let params = ChunkParams::new(min, avg, max)?;
        let opts = PublishOptions {
            params,
            ..PublishOptions::default()
        };
        let dir = tempfile::tempdir()?;
        publish_with(Path::new(old), dir.path(), opts)?;
        let p = publish_with(Path::new(new), dir.path(), opts)?;
        println!(
            "{set} {} {} {}",
            p.index.chunks().len(),
            p.bytes_written,
            p.index.to_bytes().len()
        );
    }
    Ok(())
}
