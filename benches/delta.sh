#!/usr/bin/env bash
# Update-delta benchmark: bytes the device must download to go from v1 to v2 of a slot
# payload, with Limpet's chunk store (crates/limpet-chunk), Limpet's per-release delta
# (crates/limpet-delta: bsdiff over the image with its zstd frames expanded, frames
# recompressed on the device) and the peers measured the same way as
# shared/bench/peers/30-delta-bench.sh (full zstd -19, bsdiff, xdelta3 -9,
# zstd -19 --patch-from, casync blob mode), all in the same run.
#
# Payload: benches/delta/app (a telemetry agent: tokio, serde_json, regex, clap, toml,
# chrono, sha2, flate2...; static musl, built with limpet-build's device profile), v2 =
# the same source with ONE line changed. Image kinds:
#   bin          the task binary alone
#   sqfs-z128k   squashfs as limpet-image builds it: backhand, zstd at
#                limpet_image::squashfs::ZSTD_LEVEL (9), 128 KiB blocks
#   sqfs-z16k    the same with 16 KiB blocks
#   sqfs-raw     squashfs with nothing compressed (mksquashfs -noI -noD -noF -noX);
#                the chunk store still zstd-compresses each chunk for transport
# Each squashfs holds manifest.toml (version 1.0.0 -> 1.0.1), policy.json, delta-app.
#
# Usage: benches/delta.sh            (DELTA_WORK=/tmp/limpet-delta by default)
# Output: markdown tables on stdout and in $DELTA_WORK/delta.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
W="${DELTA_WORK:-/tmp/limpet-delta}"
mkdir -p "$W"
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

need=()
for c in bsdiff:bsdiff xdelta3:xdelta3 zstd:zstd casync:casync mksquashfs:squashfs-tools /usr/bin/time:time; do
  command -v "${c%%:*}" >/dev/null 2>&1 || need+=("${c#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
fi

# ---- the task binary, v1 and v2 ----------------------------------------------------
# The device profile of crates/limpet-build/src/build/cargo.rs (profile_env).
DEVICE_PROFILE=(CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_LTO=true
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort
  CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_PROFILE_RELEASE_DEBUG=false)
TRIPLE=x86_64-unknown-linux-musl
ONE_LINE_OLD='    let interval = cfg.interval_s;'
ONE_LINE_NEW='    let interval = cfg.interval_s.clamp(5, 3600);'
build_app() { # build_app VERSION
  local src="$W/app-src"
  rm -rf "$src"; mkdir -p "$src"; cp -r "$ROOT/benches/delta/app/." "$src/"
  if [ "$1" = 2 ]; then
    sed -i "s/^${ONE_LINE_OLD}\$/${ONE_LINE_NEW}/" "$src/src/main.rs"
    [ "$(diff "$ROOT/benches/delta/app/src/main.rs" "$src/src/main.rs" | grep -c '^[<>]')" = 2 ] \
      || { log "v2 edit did not change exactly one line"; exit 1; }
  fi
  # Same directory and target dir for both versions: only the app crate recompiles.
  (cd "$src" && env "${DEVICE_PROFILE[@]}" CARGO_TARGET_DIR="$W/target-app" \
     cargo build -q --release --locked --target "$TRIPLE")
  cp "$W/target-app/$TRIPLE/release/delta-app" "$W/bin-v$1"
}
log "building the task binary v1 and v2 (one line differs)"
build_app 1
build_app 2
log "building the bench tool"
(cd "$ROOT/benches/delta/tool" && CARGO_TARGET_DIR="$W/target-tool" cargo build -q --release)
T="$W/target-tool/release/delta-tool"

# ---- slot payloads ----------------------------------------------------------------
for v in 1 2; do
  d="$W/tree-v$v"; rm -rf "$d"; mkdir -p "$d"
  cp "$W/bin-v$v" "$d/delta-app"
  printf '[device]\nname = "thermostat"\nversion = "1.0.%d"\ntarget = "x86_64"\n\n[[task]]\nname = "agent"\npackage = "delta-app"\nmemory = "16MiB"\n' "$((v - 1))" > "$d/manifest.toml"
  python3 -c 'import json; print(json.dumps({"tasks": [{"name": "agent", "uid": 1000, "seccomp": list(range(0, 400, 3)), "landlock": ["/data/agent"], "memory": 16777216}]}, sort_keys=True))' > "$d/policy.json"
  "$T" sqfs "$W/sqfs-z128k-v$v" 131072 "$d/delta-app" "$d/manifest.toml" "$d/policy.json"
  "$T" sqfs "$W/sqfs-z16k-v$v" 16384 "$d/delta-app" "$d/manifest.toml" "$d/policy.json"
  rm -f "$W/sqfs-raw-v$v"
  mksquashfs "$d" "$W/sqfs-raw-v$v" -comp zstd -noI -noD -noF -noX -no-xattrs -b 131072 \
    -noappend -all-root -mkfs-time 1 -all-time 1 -quiet >/dev/null
done
unsquashfs -l "$W/sqfs-z128k-v2" >/dev/null  # the backhand image reads back with squashfs-tools

# ---- measuring -------------------------------------------------------------------
X="$W/x"; rm -rf "$X"; mkdir -p "$X"
TSV="$W/delta.tsv"; : > "$TSV"
timed() { # timed CMD...: sets S (wall seconds) and KB (peak RSS)
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$X/time.txt" "$@" > "$X/stdout" 2>>"$W/tools.log"
  t1=$(date +%s.%N)
  S=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
  KB=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$X/time.txt")
}
row() { # row KIND METHOD BYTES CREATE_S APPLY_S APPLY_KB NEWFILE NOTE
  local ok=NO; cmp -s "$7" "$X/out" && ok=yes
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$ok" "$8" >> "$TSV"
  rm -f "$X/out"
}
casync_new_bytes() { # INDEX OLDSTORE NEWSTORE
  comm -13 <(cd "$2" && find . -name '*.cacnk' | sort) <(cd "$3" && find . -name '*.cacnk' | sort) \
    | (cd "$3" && xargs -r stat -c %s) | awk -v i="$(stat -c %s "$1")" '{s+=$1} END {print s+i}'
}
size() { stat -c %s "$1"; }

for k in bin sqfs-z128k sqfs-z16k sqfs-raw; do
  old="$W/$k-v1"; new="$W/$k-v2"
  log "measuring $k ($(size "$old") -> $(size "$new") bytes)"
  timed zstd -19 -q -f "$new" -o "$X/full.zst"; cs=$S
  timed zstd -d -q -f "$X/full.zst" -o "$X/out"
  row "$k" "full zstd -19" "$(size "$X/full.zst")" "$cs" "$S" "$KB" "$new" ""
  timed bsdiff "$old" "$new" "$X/p.bsdiff"; cs=$S
  timed bspatch "$old" "$X/out" "$X/p.bsdiff"
  row "$k" "bsdiff" "$(size "$X/p.bsdiff")" "$cs" "$S" "$KB" "$new" "per version pair"
  timed xdelta3 -e -9 -f -s "$old" "$new" "$X/p.xd3"; cs=$S
  timed xdelta3 -d -f -s "$old" "$X/p.xd3" "$X/out"
  row "$k" "xdelta3 -9" "$(size "$X/p.xd3")" "$cs" "$S" "$KB" "$new" "per version pair"
  timed zstd -19 -q -f --patch-from="$old" "$new" -o "$X/p.zst"; cs=$S
  timed zstd -d -q -f --patch-from="$old" "$X/p.zst" -o "$X/out"
  row "$k" "zstd -19 --patch-from" "$(size "$X/p.zst")" "$cs" "$S" "$KB" "$new" "per version pair"
  rm -rf "$X/cs1" "$X/cs2"
  casync make --compression=zstd --store="$X/cs1" "$X/v1.caibx" "$old" >/dev/null 2>&1
  cp -a "$X/cs1" "$X/cs2"
  timed casync make --compression=zstd --store="$X/cs2" "$X/v2.caibx" "$new"; cs=$S
  timed casync extract --store="$X/cs2" --seed="$old" "$X/v2.caibx" "$X/out"
  row "$k" "casync (blob, 64K avg)" "$(casync_new_bytes "$X/v2.caibx" "$X/cs1" "$X/cs2")" "$cs" "$S" "$KB" "$new" "new chunks + index"
  # Limpet: v1 is already in the store; publishing v2 adds the chunks it lacks. The device
  # downloads the index and the chunks its running slot (v1) does not hold.
  rm -rf "$X/ls"
  "$T" publish "$old" "$X/ls" "$X/v1.idx" >/dev/null
  timed "$T" publish "$new" "$X/ls" "$X/v2.idx"; cs=$S
  read -r written wbytes ibytes nchunks _ < "$X/stdout"
  timed "$T" apply "$X/v2.idx" "$X/ls" "$old" "$X/out"
  read -r fetched nfetched _ planned < "$X/stdout"
  [ "$fetched" = "$planned" ] || log "$k: fetched $fetched != planned $planned"
  row "$k" "limpet-chunk (16K avg)" "$((fetched + ibytes))" "$cs" "$S" "$KB" "$new" \
    "index $ibytes B + $nfetched of $nchunks chunks; no per-pair work"
  # limpet-delta: the publisher makes one static file per release (N-1 -> N); the device
  # downloads it and rebuilds v2 from its running slot, recompressing the frames it expands.
  timed "$T" make-delta "$old" "$new" "$X/p.ldelta"; cs=$S
  read -r dbytes _ < "$X/stdout"
  [ "$dbytes" = "$(size "$X/p.ldelta")" ] || log "$k: make-delta said $dbytes B, file has $(size "$X/p.ldelta")"
  timed "$T" apply-delta "$old" "$X/p.ldelta" "$X/out"
  read -r _ nframes _ < "$X/stdout"
  row "$k" "limpet-delta" "$(size "$X/p.ldelta")" "$cs" "$S" "$KB" "$new" \
    "per release (N-1 -> N, static file); $nframes frames recompressed"
done

# Chunk sizes: download (new chunk files + index) for each min:avg:max.
SETS="1024:4096:16384 2048:8192:32768 4096:16384:65536 8192:32768:131072 16384:65536:262144"
SWEEP="$W/sweep.tsv"; : > "$SWEEP"
for k in bin sqfs-z128k sqfs-raw; do
  log "chunk-size sweep on $k"
  "$T" sweep "$W/$k-v1" "$W/$k-v2" $SETS | sed "s/^/$k /" >> "$SWEEP"
done

# ---- report ----------------------------------------------------------------------
{
  echo "## Update delta v1 -> v2 (one line of code changed)"
  echo
  echo "Machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%d). Command: \`benches/delta.sh\`."
  echo
  for k in bin sqfs-z128k sqfs-z16k sqfs-raw; do
    echo "- $k: v1 $(size "$W/$k-v1") B, v2 $(size "$W/$k-v2") B, $(cmp -l "$W/$k-v1" "$W/$k-v2" 2>/dev/null | wc -l) bytes differ (cmp)"
  done
  echo
  echo "| image | method | bytes to device | vs full zstd -19 | create s | apply s | apply peak RSS kB | verified | note |"
  echo "|---|---|---:|---:|---:|---:|---:|---|---|"
  awk -F'\t' '$2 == "full zstd -19" {full[$1] = $3} {rows[NR] = $0}
    END {for (i = 1; i <= NR; i++) {split(rows[i], f, "\t");
      printf "| %s | %s | %\047d | %.1f %% | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], 100 * f[3] / full[f[1]], f[4], f[5], f[6], f[7], f[8]}}' "$TSV"
  echo
  echo "Chunk sizes (min:avg:max), limpet-chunk download = new chunk files + index:"
  echo
  echo "| image | min:avg:max | chunks in v2 | new chunk bytes | index bytes | total |"
  echo "|---|---|---:|---:|---:|---:|"
  awk '{printf "| %s | %s | %d | %\047d | %\047d | %\047d |\n", $1, $2, $3, $4, $5, $4 + $5}' "$SWEEP"
  echo
  dblocks=$(( ($(size "$W/sqfs-z128k-v2") + 4095) / 4096 ))
  echo "Not counted above: a slot also holds the dm-verity tree (about $(( (dblocks * 32 + 4095) / 4096 * 4096 )) B for the"
  echo "sqfs-z128k image, entirely new each release because its salt hashes the squashfs), the 4 KiB"
  echo "header and the SBOM."
} | tee "$W/delta.md"
