#!/usr/bin/env bash
# The network figures of BENCHMARKS.md (issue: Contain): what the Limpet nftables policy
# costs allowed traffic (TCP bulk, UDP round trips) and the largest egress of a fully
# compromised device of examples/contain, each against a device without the policy, in the
# same run. Runs crates/limpet-net/benches/policy.rs as root in network namespaces it creates
# and deletes (TEST-NET addresses only); prints each run, then markdown tables.
# Usage: sudo benches/network.sh [throughput] [latency] [flood]
# Environment: REPS (3), BULK_SECS (3), FLOOD_SECS (5, at most 5), PIN_CPU (last CPU);
# CARGO_TARGET_DIR as usual, e.g. CARGO_TARGET_DIR=/work/target-netbench.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "benches/network.sh needs root (network namespaces, nftables, cgroup2)" >&2; exit 1; }
echo "# machine: nproc=$(nproc) cpu=\"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)\" kernel=$(uname -r) mem=$(awk '/MemTotal/ {printf "%.0fGiB", $2/1048576}' /proc/meminfo)"
echo "# $(rustc --version) | $(ip -V) | commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates/limpet-net examples/contain 2>/dev/null || echo ' + uncommitted changes in crates/limpet-net or examples/contain')"
echo "# started $(date -u '+%Y-%m-%d %H:%M:%S UTC') loadavg=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
# Build once and run the bench executable itself (what `cargo bench` runs).
BIN=$(cargo bench -q -p limpet-net --bench policy --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$BIN" ] || { echo "bench executable not found (cargo bench -p limpet-net --bench policy --no-run)" >&2; exit 1; }
echo "# bench executable: $BIN"
echo "# command: cargo bench -p limpet-net --bench policy -- $*"
"$BIN" --bench "$@"
echo
echo "# finished $(date -u '+%Y-%m-%d %H:%M:%S UTC') loadavg=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
