#!/usr/bin/env bash
# Figure 2 of BENCHMARKS.md: dm-verity tree construction on 256 MiB, RUNS times (default 3),
# each run printing the load average before it. PIN=0 pins the whole bench (our two hashing
# threads, veritysetup and openssl) to CPU 0 with taskset, for a single-core comparison.
# Usage: benches/verity.sh [RUNS]   e.g. RUNS=3, or PIN=0 benches/verity.sh 3
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
echo "# machine: nproc=$(nproc) cpu=\"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)\" flags=\"$(grep -m1 -o -w -E 'sha_ni|avx2|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')\""
echo "# $(veritysetup --version) | $(openssl version) | $(rustc --version)"
# Build once and run the bench executable itself (what `cargo bench` runs), so that a workspace
# being edited by others between runs cannot break or rebuild it mid-series.
BIN=$(cargo bench -q -p limpet-image --bench verity --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
if [ ! -x "$BIN" ]; then # workspace momentarily unbuildable: use the newest bench executable
  BIN=$(ls -t target/release/deps/verity-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
  [ -x "$BIN" ] || { echo "bench executable not found" >&2; exit 1; }
  echo "# cargo failed; reusing the existing $BIN"
  BIN="$PWD/$BIN"
fi
echo "# bench executable: ${BIN#$PWD/}"
pin=(); [ -n "${PIN:-}" ] && pin=(taskset -c "$PIN")
for i in $(seq "$RUNS"); do
  echo "## run $i loadavg_before=\"$(cut -d' ' -f1-3 /proc/loadavg)\" ${PIN:+pinned_to_cpu=$PIN}"
  "${pin[@]}" "$BIN" --bench 2>&1
done
echo "# loadavg_at_end=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
