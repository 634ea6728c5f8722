#!/usr/bin/env bash
# Figure 1 of BENCHMARKS.md: sizes of examples/hello and, in the same run, of peers a and c
# from /work/shared/bench/peers (their outputs stay in that harness's $WORK, never here).
# Usage: benches/sizes.sh   (FORCE=1 is passed through to the peer scripts)
# Scratch: /tmp/bench-keys, /tmp/bench-hello, /tmp/bench-initramfs (override with BENCH_TMP).
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS="${PEERS_DIR:-/work/shared/bench/peers}"
T="${BENCH_TMP:-/tmp}"
echo "# machine: nproc=$(nproc) cpu=\"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)\" loadavg=\"$(cut -d' ' -f1-3 /proc/loadavg)\""

cargo run -q -p limpet -- keys generate --if-missing --out "$T/bench-keys" >/dev/null
SOURCE_DATE_EPOCH=1700000000 cargo run -q -p limpet -- build --manifest examples/hello/limpet.toml \
  --key "$T/bench-keys/image.key" --out "$T/bench-hello" --json > "$T/bench-hello.json"
echo "## limpet build --json"
cat "$T/bench-hello.json"; echo

# Initramfs breakdown: unpack ours, repack it with GNU cpio + zstd -19 (calibration: should be
# close to limpet's own writer), then repack it without the kernel modules.
B="$T/bench-initramfs"; rm -rf "$B"; mkdir -p "$B/full"
zstd -dc "$T/bench-hello/initramfs.cpio" > "$B/ours.cpio"
(cd "$B/full" && cpio -id --quiet --no-absolute-filenames < "$B/ours.cpio")
repack() { # repack DIR OUT: sorted newc, root-owned, mtime 0, then zstd -19
  (cd "$1" && find . -mindepth 1 -exec touch -h -d @0 {} + && find . -mindepth 1 -print0 | LC_ALL=C sort -z \
     | cpio --null -o -H newc --owner=0:0 --reproducible --quiet) > "$2"
  zstd -19 -q -f "$2" -o "$2.zst"
}
cp -a "$B/full" "$B/nomod"
rm -rf "$B/nomod/lib" "$B/nomod/etc/limpet/modules"
# Boot-only: keep the 11 modules that mount the verity slot (virtio, squashfs, dm-verity) and
# drop the others (ext4 and its dependencies, for the data partition, since a9a6f4b).
cp -a "$B/full" "$B/boot"
boot_re='/(virtio_pci_legacy_dev|virtio_pci_modern_dev|virtio_ring|virtio|virtio_pci|virtio_blk|squashfs|dm-mod|dm-bufio|reed_solomon|dm-verity)\.ko$'
find "$B/boot/lib" -name '*.ko' | grep -v -E "$boot_re" | xargs -r rm -f
repack "$B/full" "$B/repack-full.cpio"
repack "$B/nomod" "$B/repack-nomod.cpio"
repack "$B/boot" "$B/repack-boot.cpio"
mods=$(find "$B/full/lib" -name '*.ko' -printf '%s\n' | awk '{s+=$1} END {print s}')
nmods=$(find "$B/full/lib" -name '*.ko' | wc -l)
zstd -19 -q -c "$B/full/init" | wc -c > "$B/init.zst.bytes"
echo "## initramfs breakdown (bytes)"
echo "limpet_cpio=$(stat -c %s "$B/ours.cpio") limpet_cpio_zst=$(stat -c %s "$T/bench-hello/initramfs.cpio")"
echo "repack_full_cpio=$(stat -c %s "$B/repack-full.cpio") repack_full_zst=$(stat -c %s "$B/repack-full.cpio.zst")"
echo "repack_nomodules_cpio=$(stat -c %s "$B/repack-nomod.cpio") repack_nomodules_zst=$(stat -c %s "$B/repack-nomod.cpio.zst")"
echo "repack_bootmodules_only_cpio=$(stat -c %s "$B/repack-boot.cpio") repack_bootmodules_only_zst=$(stat -c %s "$B/repack-boot.cpio.zst") boot_modules=$(find "$B/boot/lib" -name '*.ko' | wc -l) boot_modules_bytes=$(find "$B/boot/lib" -name '*.ko' -printf '%s\n' | awk '{s+=$1} END {print s}')"
echo "modules=$nmods modules_bytes=$mods init_bytes=$(stat -c %s "$B/full/init") init_alone_zst19=$(cat "$B/init.zst.bytes")"
echo "entries_full=$(find "$B/full" -mindepth 1 | wc -l) entries_nomodules=$(find "$B/nomod" -mindepth 1 | wc -l)"
echo "pub_key_bytes=$(stat -c %s "$B/full/etc/limpet/image.pub") modules_list_bytes=$(stat -c %s "$B/full/etc/limpet/modules")"

echo "## peers (same run)"
"$PEERS/01-build-app.sh"
"$PEERS/10-peer-a-busybox.sh"
"$PEERS/12-peer-c-appinit.sh"
W=$(bash -c "source '$PEERS/common.sh' >/dev/null 2>&1; echo \$WORK")
for p in a c; do echo "peer-$p: $(tr '\n' ' ' < "$W/peer-$p/stats.txt")"; done
echo "peer_app_bytes=$(stat -c %s "$W/app/app") peer_app_zst19=$(zstd -19 -q -c "$W/app/app" | wc -c)"
echo "# loadavg_at_end=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
