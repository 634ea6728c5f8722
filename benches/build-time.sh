#!/usr/bin/env bash
# Figure 3 of BENCHMARKS.md: wall time of a warm `limpet build` of examples/hello with the
# release binary, under hyperfine, then one timestamped LIMPET_LOG=info run for a per-step
# breakdown. Needs hyperfine (apt-get install -y hyperfine) and /tmp/bench-keys (see sizes.sh).
# Usage: benches/build-time.sh      Scratch: /tmp/bench-hello-rel, /tmp/bench-build-time.json
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# machine: nproc=$(nproc) cpu=\"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)\" $(hyperfine --version)"
cargo build -q --release -p limpet
[ -s /tmp/bench-keys/image.key ] || target/release/limpet keys generate --if-missing --out /tmp/bench-keys >/dev/null
export SOURCE_DATE_EPOCH=1700000000
BUILD="target/release/limpet build --manifest examples/hello/limpet.toml --key /tmp/bench-keys/image.key --out /tmp/bench-hello-rel"
$BUILD >/dev/null 2>&1   # warm: device binaries compiled, kernel modules found
echo "## hyperfine loadavg_before=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
hyperfine --warmup 1 --runs 5 --export-json /tmp/bench-build-time.json "$BUILD"
echo "## loadavg_after_hyperfine=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
# Breakdown: time between successive step lines (each line is printed when its step starts).
for i in 1 2 3; do
  echo "## breakdown run $i loadavg_before=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
  t0=$(date +%s.%N)
  { LIMPET_LOG=info $BUILD --json 2>&1 >/dev/null; echo "[end]"; } | while IFS= read -r line; do
    printf '%s %s\n' "$(date +%s.%N)" "$line"
  done | sed 's/\x1b\[[0-9;]*m//g' | awk -v t0="$t0" '
    / \[[0-9]\/[0-9]\] |\[end\]/ { if (prev != "") printf "%7.3f s  %s\n", $1 - pt, prev
      pt = $1; prev = $0; sub(/^[^ ]+ +(INFO +)?/, "", prev) }
    END { printf "total %.3f s\n", pt - t0 }'
done
echo "# loadavg_at_end=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
