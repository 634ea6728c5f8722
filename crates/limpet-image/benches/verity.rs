//! Times `verity::build_tree` on 256 MiB of pseudo-random data and, in the same run, the
//! peers it is compared against: `veritysetup format` on the same data and
//! `openssl speed -evp sha256 -bytes 4096` (the hashing ceiling).
//!
//! Run: `cargo bench -p limpet-image --bench verity`

use std::process::Command;
use std::time::Instant;

use limpet_image::verity;

const SIZE: usize = 256 << 20;
const RUNS: usize = 5;

fn pseudo_random(len: usize) -> Vec<u8> {
    limpet_testkit::noise::Rng::new(0x9e37_79b9_7f4a_7c15).bytes(len)
}

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn main() {
    let data = pseudo_random(SIZE);
    let salt = [7u8; 32];
    let mut best = f64::MAX;
    let mut root = [0u8; 32];
    for _ in 0..RUNS {
        let t = Instant::now();
        let (tree, r) = verity::build_tree(&data, salt);
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(&tree);
        root = r;
        best = best.min(secs);
    }
    println!(
        "limpet build_tree: {:.0} MB/s (best of {RUNS}, {} MiB, {:.3} s)",
        mb_per_s(SIZE, best),
        SIZE >> 20,
        best
    );

    // veritysetup format on the same data, same parameters, tree in a separate file.
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no temporary directory: {e}");
            return;
        }
    };
    let data_path = dir.path().join("data.img");
    let hash_path = dir.path().join("hash.img");
    if std::fs::write(&data_path, &data).is_err() {
        eprintln!("cannot write the data file");
        return;
    }
    let mut vs_best = f64::MAX;
    let mut vs_ok = true;
    for _ in 0..3 {
        let _ = std::fs::remove_file(&hash_path);
        let t = Instant::now();
        let out = Command::new("veritysetup")
            .args(["format", "--salt", &hex::encode(salt)])
            .arg(&data_path)
            .arg(&hash_path)
            .output();
        let secs = t.elapsed().as_secs_f64();
        match out {
            Ok(o) if o.status.success() => {
                vs_best = vs_best.min(secs);
                let stdout = String::from_utf8_lossy(&o.stdout);
                if !stdout.contains(&hex::encode(root)) {
                    eprintln!("veritysetup root hash differs from ours:\n{stdout}");
                }
            }
            _ => {
                vs_ok = false;
                break;
            }
        }
    }
    if vs_ok {
        println!(
            "veritysetup format: {:.0} MB/s (best of 3, same file, includes process start and file I/O)",
            mb_per_s(SIZE, vs_best)
        );
    } else {
        println!("veritysetup format: not available");
    }

    match Command::new("openssl")
        .args(["speed", "-evp", "sha256", "-bytes", "4096", "-seconds", "3"])
        .output()
    {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            // The last line is "sha256  <k bytes/s>k"; 1000s of bytes per second.
            if let Some(line) = text.lines().rev().find(|l| l.starts_with("sha256")) {
                if let Some(k) = line
                    .split_whitespace()
                    .last()
                    .and_then(|v| v.trim_end_matches('k').parse::<f64>().ok())
                {
                    println!(
                        "openssl speed -evp sha256 -bytes 4096: {:.0} MB/s (one core)",
                        k / 1000.0
                    );
                }
            }
        }
        _ => println!("openssl: not available"),
    }
}
