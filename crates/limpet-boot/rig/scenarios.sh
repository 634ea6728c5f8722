#!/usr/bin/env bash
# Boots the loader for real (OVMF, TCG) in five cases and checks each console:
#   factory    committed slot A boots; the kernel gets the command line and the initrd
#   trial      slot B on trial boots, one of its boots spent first
#   flipped    slot B on trial with one flipped kernel byte: rolled back, slot A boots
#   floor      slot B on trial holds a vendor-signed version below the floor: refused
#   halt       committed slot A with one flipped kernel byte: the loader halts
#   secure     Secure Boot enforcing (OVMF's Secure Boot build, Debian's snakeoil PK/KEK/db):
#              the loader and slot A's kernel signed with the snakeoil key, slot B (trial)
#              holding a kernel db does not know: the firmware refuses B's kernel, the
#              trial is rolled back, slot A boots and the kernel reports Secure Boot on
#   unsigned   Secure Boot enforcing, the loader not signed: the firmware refuses it
#
#   scenarios.sh <image.key> <image.pub> <kernel> <initramfs>
#
# e.g. scenarios.sh examples/hello/keys/image.{key,pub} /boot/vmlinuz-$(uname -r) \
#      examples/hello/out/initramfs.cpio
# Each boot takes about 20 s under TCG. Exits non-zero naming the first case that fails.
# Needs sbsigntool (sbsign) and ovmf's snakeoil key for the Secure Boot cases.
set -euo pipefail
key=$(realpath "$1") pub=$(realpath "$2") kernel=$(realpath "$3") initramfs=$(realpath "$4")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root"
LIMPET_BOOT_IMAGE_KEY=$pub cargo build --quiet --locked -p limpet-boot --profile loader \
    --target x86_64-unknown-uefi
efi=$root/target/x86_64-unknown-uefi/loader/limpet-boot.efi

failed=0
# case <name> <timeout> <make-disk state args...> -- <expected console lines...>
case_() {
    local name=$1 timeout=$2 loader=${LOADER:-$efi} kernel=${KERNEL:-$kernel}
    shift 2
    local state=()
    while [ "$1" != -- ]; do state+=("$1"); shift; done
    shift
    "$here/make-disk.sh" "$loader" "$key" "$kernel" "$initramfs" "$work/$name.img" "${state[@]}" >/dev/null
    TIMEOUT=$timeout "$here/boot.sh" "$work/$name.img" >"$work/$name.log" 2>&1
    for line in "$@"; do
        if ! grep -aqF -- "$line" "$work/$name.log"; then
            echo "FAIL $name: no console line containing: $line" >&2
            grep -a "limpet-boot" "$work/$name.log" >&2 || true
            failed=1
            return
        fi
    done
    echo "ok   $name"
}

case_ factory 120 factory 1.0.0 -- \
    "limpet-boot: boot 1 counted" \
    "limpet-boot: starting the kernel of slot A: console=ttyS0 panic=-1 limpet.slot=a limpet.counted=1" \
    "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path" \
    "Command line: console=ttyS0 panic=-1 limpet.slot=a limpet.counted=1" \
    "Run /init as init process"
case_ trial 120 trial 1.0.0 2.0.0 3 -- \
    "booting slot B (trial, 2 boot(s) left after this one)" \
    "Command line: console=ttyS0 panic=-1 limpet.slot=b limpet.counted=1"
# The rig's slots: 4 KiB squashfs stand-in, header at 4096, SBOM at 8192, kernel at 12288.
kernel_at=12288
FLIP_B=$((kernel_at + 1000)) case_ flipped 120 trial 1.0.0 2.0.0 3 -- \
    "trial slot B refused: kernel at offset 12288 (" \
    "trial rolled back (verification failed), recorded" \
    "Command line: console=ttyS0 panic=-1 limpet.slot=a limpet.counted=1"
SLOT_B_VERSION=0.9.0 case_ floor 120 trial 1.0.0 2.0.0 3 -- \
    "version 0.9.0 is below the floor 1.0.0" \
    "Command line: console=ttyS0 panic=-1 limpet.slot=a limpet.counted=1"
FLIP_A=$((kernel_at + 1000)) case_ halt 40 factory 1.0.0 -- \
    "limpet-boot: halted: committed slot A refused: kernel at offset 12288 ("
if grep -aq "Command line:" "$work/halt.log"; then
    echo "FAIL halt: a kernel started" >&2
    failed=1
fi

# Secure Boot: the snakeoil db key signs the loader and slot A's kernel (the Debian kernel
# keeps its own signature too, which this db does not trust).
openssl pkey -in /usr/share/ovmf/PkKek-1-snakeoil.key -passin pass:snakeoil -out "$work/db.key"
sign() { sbsign --key "$work/db.key" --cert /usr/share/ovmf/PkKek-1-snakeoil.pem --output "$2" "$1" 2>/dev/null; }
sign "$efi" "$work/loader-signed.efi"
sign "$kernel" "$work/kernel-signed"
export SECURE_BOOT=1
LOADER=$work/loader-signed.efi KERNEL=$work/kernel-signed KERNEL_B=$kernel \
    case_ secure 120 trial 1.0.0 2.0.0 3 -- \
    "trial slot B did not start: the firmware refused to load the kernel image: ACCESS_DENIED" \
    "trial rolled back (verification failed), recorded" \
    "EFI stub: UEFI Secure Boot is enabled." \
    "secureboot: Secure boot enabled" \
    "Command line: console=ttyS0 panic=-1 limpet.slot=a limpet.counted=1"
KERNEL=$work/kernel-signed case_ unsigned 40 factory 1.0.0 -- \
    "Access Denied"
if grep -aq "limpet-boot:" "$work/unsigned.log"; then
    echo "FAIL unsigned: the unsigned loader ran" >&2
    failed=1
fi
exit $failed
