#!/usr/bin/env bash
# Boots a disk image through OVMF (x86_64, TCG, no KVM), or AAVMF with ARCH=aarch64
# (qemu-system-aarch64 -M virt), and copies the serial console to stdout; QEMU stops when
# the guest powers off or resets (-no-reboot), or after TIMEOUT seconds (default 120).
# MACHINE (default q35, virt for aarch64) is the QEMU board. SECURE_BOOT=1 (x86_64) boots
# OVMF's Secure Boot build (q35 with SMM) with Debian's snakeoil variable store, whose PK,
# KEK and db are /usr/share/ovmf/PkKek-1-snakeoil.pem: only binaries signed with that key
# (passphrase "snakeoil") run; OVMF_VARS with the vendor's keys enrolled replaces it.
#
#   boot.sh <disk.img>
#
# OVMF_CODE (default /usr/share/OVMF/OVMF_CODE_4M.fd) and OVMF_VARS (default a fresh copy
# of /usr/share/OVMF/OVMF_VARS_4M.fd) can be overridden, e.g. with the Secure Boot build
# and enrolled variables. The disk is attached with snapshot=on unless PERSIST=1.
set -euo pipefail
disk=$1
if [ "${ARCH:-x86_64}" = aarch64 ]; then
    qemu=(qemu-system-aarch64 -machine "${MACHINE:-virt},accel=tcg" -cpu cortex-a57)
    code=${OVMF_CODE:-/usr/share/AAVMF/AAVMF_CODE.fd}
    template=/usr/share/AAVMF/AAVMF_VARS.fd
elif [ "${SECURE_BOOT:-0}" = 1 ]; then
    qemu=(qemu-system-x86_64 -machine "${MACHINE:-q35},smm=on,accel=tcg" -cpu qemu64
        -global driver=cfi.pflash01,property=secure,value=on)
    code=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.secboot.fd}
    template=/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd
else
    qemu=(qemu-system-x86_64 -machine "${MACHINE:-q35},accel=tcg" -cpu qemu64)
    code=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
    template=/usr/share/OVMF/OVMF_VARS_4M.fd
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
vars=${OVMF_VARS:-}
if [ -z "$vars" ]; then
    cp "$template" "$work/vars.fd"
    vars=$work/vars.fd
fi
snapshot=",snapshot=on"
[ "${PERSIST:-0}" = 1 ] && snapshot=""
timeout "${TIMEOUT:-120}" "${qemu[@]}" -smp 1 -m 512 \
    -nographic -no-reboot -monitor none -serial stdio -nic none \
    -drive "if=pflash,format=raw,unit=0,readonly=on,file=$code" \
    -drive "if=pflash,format=raw,unit=1,file=$vars" \
    -drive "file=$disk,if=virtio,format=raw$snapshot" || true
