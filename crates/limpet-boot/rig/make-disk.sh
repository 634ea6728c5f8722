#!/usr/bin/env bash
# Makes a test disk for the loader: GPT with an EFI system partition (FAT, holding the
# loader as \EFI\BOOT\BOOTX64.EFI), `state`, `slot-a`, `slot-b`, `data`; both slots hold
# the same kernel and initramfs in the loader's temporary rig format.
#
#   make-disk.sh <loader.efi> <image.key> <kernel> <initramfs> <out.img> [state...]
#
# The state arguments go to `rig state` (default: `factory 1.0.0`); slot A holds 1.0.0,
# slot B 2.0.0 (SLOT_B_VERSION overrides); KERNEL_B puts another kernel in slot B. FLIP_A=<offset> or FLIP_B=<offset> flips one
# byte of that slot at that slot offset.
# TARGET=aarch64 writes aarch64 slots and the loader as \EFI\BOOT\BOOTAA64.EFI.
# Needs sgdisk (gdisk), mkfs.vfat (dosfstools), mcopy (mtools); the lead's pipeline writes
# the real disk in Rust.
set -euo pipefail
efi=$1 key=$2 kernel=$3 initramfs=$4 out=$5
shift 5
state_args=("$@")
[ ${#state_args[@]} -gt 0 ] || state_args=(factory 1.0.0)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmdline="console=ttyS0 panic=-1"
target=${TARGET:-x86_64}
case $target in
    x86_64) boot_name=BOOTX64.EFI ;;
    aarch64) boot_name=BOOTAA64.EFI ;;
    *) echo "make-disk.sh: TARGET must be x86_64 or aarch64" >&2; exit 2 ;;
esac
rig() { RIG_TARGET=$target cargo run --quiet --locked --manifest-path "$root/Cargo.toml" -p limpet-boot --example rig -- "$@"; }
rig slot "$key" 1.0.0 "$kernel" "$initramfs" "$cmdline" "$work/slot-a"
rig slot "$key" "${SLOT_B_VERSION:-2.0.0}" "${KERNEL_B:-$kernel}" "$initramfs" "$cmdline" "$work/slot-b"
rig state "$work/state" "${state_args[@]}"
flip() { # <slot image> <offset>: inverts one byte
    local byte
    byte=$(dd if="$1" bs=1 skip="$2" count=1 status=none | od -An -tu1 | tr -d ' ')
    printf "\\$(printf '%03o' $((byte ^ 0xff)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
[ -z "${FLIP_A:-}" ] || flip "$work/slot-a" "$FLIP_A"
[ -z "${FLIP_B:-}" ] || flip "$work/slot-b" "$FLIP_B"

# Sizes in MiB; every partition 1 MiB-aligned.
esp=16 state=1 slot=32 data=8
total=$((1 + esp + state + 2 * slot + data + 1))
rm -f "$out"
truncate -s "${total}M" "$out"
sgdisk --clear \
    -n 1:1M:+${esp}M -t 1:ef00 -c 1:esp \
    -n 2:0:+${state}M -t 2:8300 -c 2:state \
    -n 3:0:+${slot}M -t 3:8300 -c 3:slot-a \
    -n 4:0:+${slot}M -t 4:8300 -c 4:slot-b \
    -n 5:0:+${data}M -t 5:8300 -c 5:data \
    "$out" >/dev/null

truncate -s "${esp}M" "$work/esp"
mkfs.vfat -n LIMPET-ESP "$work/esp" >/dev/null
mmd -i "$work/esp" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp" "$efi" "::/EFI/BOOT/$boot_name"

put() { dd if="$1" of="$out" bs=1M seek="$2" conv=notrunc status=none; }
put "$work/esp" 1
put "$work/state" $((1 + esp))
put "$work/slot-a" $((1 + esp + state))
put "$work/slot-b" $((1 + esp + state + slot))
echo "$out: esp, state (${state_args[*]}), slot-a 1.0.0, slot-b ${SLOT_B_VERSION:-2.0.0}"
