//! A small telemetry agent: the payload of the update-delta benchmark (`benches/delta.sh`).
//!
//! It reads a TOML configuration, samples `/proc`, filters log lines with regular
//! expressions, and sends compressed, hashed JSON reports over TCP. The benchmark builds
//! it twice, the second time with one line changed (see `benches/delta.sh`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use clap::Parser;
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

#[derive(Parser, Debug)]
#[command(version, about = "telemetry agent")]
struct Args {
    /// Configuration file.
    #[arg(long, default_value = "/slot/agent.toml")]
    config: PathBuf,
    /// Send one report and exit.
    #[arg(long)]
    once: bool,
}

#[derive(Deserialize, Debug, Clone)]
struct Config {
    #[serde(default = "default_interval")]
    interval_s: u64,
    #[serde(default = "default_server")]
    server: String,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn default_interval() -> u64 {
    30
}

fn default_server() -> String {
    "127.0.0.1:9000".into()
}

#[derive(Serialize, Debug)]
struct Report {
    time: chrono::DateTime<chrono::Utc>,
    uptime_s: f64,
    load1: f64,
    mem_total_kb: u64,
    mem_avail_kb: u64,
    matches: BTreeMap<String, usize>,
    labels: BTreeMap<String, String>,
}

fn meminfo(text: &str) -> (u64, u64) {
    let re = Regex::new(r"(?m)^(MemTotal|MemAvailable):\s+(\d+) kB$").ok();
    let mut total = 0;
    let mut avail = 0;
    if let Some(re) = re {
        for c in re.captures_iter(text) {
            let v = c[2].parse().unwrap_or(0);
            match &c[1] {
                "MemTotal" => total = v,
                _ => avail = v,
            }
        }
    }
    (total, avail)
}

fn sample(cfg: &Config, patterns: &[(String, Regex)]) -> Report {
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let log = std::fs::read_to_string("/data/agent.log").unwrap_or_default();
    let (mem_total_kb, mem_avail_kb) = meminfo(&mem);
    let mut matches = BTreeMap::new();
    for (name, re) in patterns {
        matches.insert(name.clone(), log.lines().filter(|l| re.is_match(l)).count());
    }
    Report {
        time: chrono::Utc::now(),
        uptime_s: uptime
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0),
        load1: load
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0),
        mem_total_kb,
        mem_avail_kb,
        matches,
        labels: cfg.labels.clone(),
    }
}

fn encode(report: &Report) -> Result<String, Box<dyn std::error::Error>> {
    let json = serde_json::to_vec(report)?;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&json)?;
    let body = z.finish()?;
    let digest = hex::encode(Sha256::digest(&body));
    let envelope = serde_json::json!({
        "sha256": digest,
        "body": base64::engine::general_purpose::STANDARD.encode(&body),
    });
    Ok(envelope.to_string())
}

async fn send(server: &str, line: &str) -> std::io::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(server).await?;
    stream.write_all(line.as_bytes()).await?;
    stream.write_all(b"\n").await?;
    stream.shutdown().await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.config).unwrap_or_default();
    let cfg: Config = match toml::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bad configuration {}: {e}", args.config.display());
            return std::process::ExitCode::from(2);
        }
    };
    let patterns: Vec<(String, Regex)> = cfg
        .patterns
        .iter()
        .filter_map(|p| Regex::new(p).ok().map(|re| (p.clone(), re)))
        .collect();
    let interval = cfg.interval_s;
    let mut tick = tokio::time::interval(Duration::from_secs(interval));
    loop {
        tick.tick().await;
        let report = sample(&cfg, &patterns);
        match encode(&report) {
            Ok(line) => {
                if let Err(e) = send(&cfg.server, &line).await {
                    eprintln!("send to {}: {e}", cfg.server);
                }
            }
            Err(e) => eprintln!("encode: {e}"),
        }
        if args.once {
            return std::process::ExitCode::SUCCESS;
        }
    }
}
