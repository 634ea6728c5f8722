#!/usr/bin/env bash
# PID 1 memory benchmark (BENCHMARKS.md, "PID 1 memory"): limpet-init's resident set once
# every task has started, with 1 task (examples/hello) and with 31 (benches/pid1-memory,
# 31 copies of the hello task), and limpet-init's size.
#
# Usage: benches/pid1-memory.sh      run from anywhere; builds and boots from this tree
#   PID1_RUNS=5          boots of each device (the median is of these)
#   PID1_WORK=/tmp/...   scratch: keys, the built images, one serial log per boot
#                        (default /tmp/limpet-pid1-memory; never in this repository)
#   PID1_BOOT=chain      how each image boots: `chain` (the default) is the device's own
#                        path, UEFI firmware with Secure Boot enforcing, the signed loader,
#                        the slot; `direct` is `limpet run --direct` (QEMU -kernel/-initrd,
#                        unverified, about half the boot time). PID 1 is the same binary
#                        either way; the first line of the output says which was used.
#
# Each boot is `limpet run <out> [--direct] --exit-on "PID 1 Rss" --timeout 300` (QEMU,
# TCG), one VM at a time. The figure is the one limpet-init prints itself: `all tasks
# started at boottime N ms; PID 1 Rss K kB`, from /proc/self/smaps_rollup. A goal, not a
# test: nothing here fails on the figure.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${PID1_RUNS:-5}"
W="${PID1_WORK:-/tmp/limpet-pid1-memory}"
BOOT="${PID1_BOOT:-chain}"
case "$BOOT" in
  chain) RUN_FLAGS=(); BOOT_TEXT="chain (UEFI firmware, Secure Boot enforcing, the signed loader, the slot)" ;;
  direct) RUN_FLAGS=(--direct); BOOT_TEXT="direct (limpet run --direct: QEMU -kernel/-initrd, unverified)" ;;
  *) echo "pid1-memory.sh: PID1_BOOT is \"$BOOT\"; it must be chain or direct" >&2; exit 2 ;;
esac
mkdir -p "$W/logs"

echo "# machine: nproc=$(nproc) cpu=\"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)\" mem=$(awk '/MemTotal/ {printf "%.0fGiB", $2/1048576}' /proc/meminfo) qemu=\"$(qemu-system-x86_64 --version | head -1)\" load=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
echo "# boot: $BOOT_TEXT"
echo "# limpet: commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo " + uncommitted changes")"

cargo build -q --locked -p limpet
LIMPET="$PWD/target/debug/limpet"
"$LIMPET" keys generate --if-missing --out "$W/keys" >/dev/null

# name -> manifest
declare -A MANIFESTS=([1]=examples/hello/limpet.toml [31]=benches/pid1-memory/limpet.toml)
for tasks in 1 31; do
  out="$W/out-$tasks"
  "$LIMPET" build --manifest "${MANIFESTS[$tasks]}" --key "$W/keys/image.key" --out "$out" \
    --json > "$W/build-$tasks.json" 2> "$W/build-$tasks.log"
  bytes=$(python3 -c 'import json,sys; print(next(b["bytes"] for b in json.load(open(sys.argv[1]))["binaries"] if b["name"] == "limpet-init"))' "$W/build-$tasks.json")
  figures=()
  for run in $(seq 1 "$RUNS"); do
    log="$W/logs/tasks$tasks-run$run.log"
    "$LIMPET" run "$out" "${RUN_FLAGS[@]}" --exit-on "PID 1 Rss" --timeout 300 > "$log" 2>&1 || true
    kb=$(tr -d '\r' < "$log" | sed -n 's/.*PID 1 Rss \([0-9]*\) kB.*/\1/p' | head -1)
    figures+=("${kb:-missing}")
  done
  python3 - "$tasks" "$bytes" "${figures[@]}" <<'EOF'
import statistics, sys
tasks, size, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ok = sorted(int(r) for r in runs if r.isdigit())
median = f"{statistics.median(ok):g} kB ({ok[0]}-{ok[-1]})" if ok else "no figure"
print(f"{tasks:>2} task(s): PID 1 Rss median {median} over {len(ok)}/{len(runs)} boots "
      f"[{', '.join(runs)}]; limpet-init {size:,} bytes")
EOF
done
