#!/usr/bin/env bash
# Puts the loader in front of a `limpet build` output: a new disk with an EFI system
# partition (FAT, the loader as \EFI\BOOT\BOOTX64.EFI) followed by the build's own
# `state`, `slot-a`, `slot-b` and `data` partitions, copied from its disk.img. Until the
# build pipeline writes the ESP itself, this boots a built image through the whole chain:
# firmware, loader, the signed slot's kernel, PID 1, the app.
#
#   from-build.sh <loader.efi> <out dir of limpet build> <new disk.img>
#
# The loader must have been built with the image key the slot is signed with
# (LIMPET_BOOT_IMAGE_KEY=<abs path of keys/image.pub>). Needs sgdisk, mkfs.vfat, mtools.
set -euo pipefail
efi=$1 built=$2/disk.img out=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name -> "first_sector sector_count" of each partition of the built disk.
declare -A first count
while read -r num start end _ _ _ name; do
    first[$name]=$start
    count[$name]=$((end - start + 1))
done < <(sgdisk -p "$built" | awk '/^ *[0-9]+ +[0-9]+ +[0-9]+/')
for name in state slot-a slot-b data; do
    [ -n "${first[$name]:-}" ] || { echo "from-build.sh: $built has no partition $name" >&2; exit 1; }
done

esp=16 # MiB
sectors=$((2048 + esp * 2048 + ${count[state]} + ${count[slot-a]} + ${count[slot-b]} + ${count[data]} + 2048))
rm -f "$out"
truncate -s $((sectors * 512)) "$out"
args=(-n 1:1M:+${esp}M -t 1:ef00 -c 1:esp)
i=2
for name in state slot-a slot-b data; do
    args+=(-n "$i:0:+$((${count[$name]} / 2048))M" -c "$i:$name")
    i=$((i + 1))
done
sgdisk --clear "${args[@]}" "$out" >/dev/null

truncate -s "${esp}M" "$work/esp"
mkfs.vfat -n LIMPET-ESP "$work/esp" >/dev/null
mmd -i "$work/esp" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp" "$efi" ::/EFI/BOOT/BOOTX64.EFI
dd if="$work/esp" of="$out" bs=1M seek=1 conv=notrunc status=none
at=$((2048 + esp * 2048))
for name in state slot-a slot-b data; do
    dd if="$built" of="$out" bs=512 skip="${first[$name]}" seek="$at" count="${count[$name]}" \
        conv=notrunc status=none
    at=$((at + ${count[$name]}))
done
echo "$out: esp (loader) + the state, slot-a, slot-b and data of $built"
