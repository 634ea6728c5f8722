#!/usr/bin/env bash
# The update test's release pair and its delta: examples/hello 0.1.0 and 0.2.0 (v2 with
# `[kernel] cmdline = "init_on_free=1"`), built as crates/limpet/tests/update.rs (x86_64)
# and chain_arm64.rs (aarch64, target/arm64-kernel's kernel) build them, with a fresh image
# key and TUF repository, both published with `limpet publish`; prints the size of the
# delta 0.1.0 -> 0.2.0 and publish's chunk and delta lines. Run it once per key set.
#
# Usage: benches/release-delta.sh x86_64|aarch64 RUN
#   LIMPET=path to the limpet CLI (default target/debug/limpet of this tree)
#   LIMPET_SOURCE=the Limpet tree PID 1 is built from (default this tree); the manifests
#     go under its target/limpet-test-manifests, so the build finds its `hello` package
#   RELEASE_DELTA_WORK=scratch (default /tmp/limpet-release-delta); RUN names a subfolder
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
target=${1:?x86_64 or aarch64}; run=${2:?a name for this key set}
case $target in x86_64|aarch64) ;; *) echo "unknown target $target" >&2; exit 2;; esac
L=${LIMPET:-$ROOT/target/debug/limpet}
export LIMPET_SOURCE=${LIMPET_SOURCE:-$ROOT} LIMPET_LOG=warn
ARMK=$ROOT/target/arm64-kernel
W=${RELEASE_DELTA_WORK:-/tmp/limpet-release-delta}/$target-$run
rm -rf "$W"; mkdir -p "$W"
cd "$LIMPET_SOURCE"
"$L" keys generate --if-missing --out "$W/keys" >/dev/null
"$L" repo init "$W/repo" --keys "$W/tuf" >/dev/null
for v in 0.1.0 0.2.0; do
  dir=target/limpet-test-manifests/release-delta-$target-$run-$v; mkdir -p "$dir"
  python3 - "$v" "$W" "$target" "$ARMK" > "$dir/limpet.toml" <<'PY'
import json, sys
v, W, target, armk = sys.argv[1:]
root = W + '/repo/metadata/1.root.json'
key = json.load(open(root))['signed']['roles']['root']['keyids'][0]
m = open('examples/hello/limpet.toml').read().replace('version = "0.1.0"', 'version = "%s"' % v)
if target == 'aarch64':
    rel = open(armk + '/release').read().strip()
    source = 'source = { image = "%s/boot/vmlinuz-%s", modules = "%s/lib/modules/%s" }' % (armk, rel, armk, rel)
    m = m.replace('target = "x86_64"', 'target = "aarch64"').replace('source = "host"', source)
if v == '0.2.0':
    m = m.replace('[kernel]\n', '[kernel]\ncmdline = "init_on_free=1"\n')
m += ('\n[update]\nrepository = "http://10.0.2.100:80/"\nkeys = [{ id = "%s" }]\nroot = "%s"\n'
      'poll = "1m"\nhealth = "5s"\ntry_boots = 2\n' % (key, root))
print(m, end='')
PY
  SOURCE_DATE_EPOCH=1700000000 "$L" build --manifest "$dir/limpet.toml" --out "$W/out-$v" \
    --key "$W/keys/image.key" > "$W/build-$v.txt" 2>&1
  "$L" publish "$W/out-$v" --repo "$W/repo" --keys "$W/tuf" --image-key "$W/keys/image.pub" \
    > "$W/publish-$v.txt"
  rm -f "$W/out-$v/disk.img"
done
delta=$W/repo/targets/hello/0.2.0/from-0.1.0.delta
bytes=$(stat -c %s "$delta" 2>/dev/null || echo none)
echo "$target $run: delta $bytes B; $(grep -E 'chunks:|delta:' "$W/publish-0.2.0.txt" | tr -s ' ' | tr '\n' ';')"
