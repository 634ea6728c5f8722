#!/usr/bin/env bash
# Boot benchmark (BENCHMARKS.md, "Boot"): kernel start to first task running, PID 1 Rss and
# init binary size of a Limpet device whose single task is the peers' benchmark app, against
# the peers of /work/shared/bench/peers booted by their own harness (bootbench.py) in the
# same run: c = the app as bare /init (the floor), a = busybox init, b = Debian + systemd.
#
# Usage: benches/boot.sh            run from the repository root
#   BOOT_RUNS=5        boots of each image (median of these); rounds interleave
#   BOOT_PEERS="c a b" peers to boot besides Limpet (b2 = Debian + minimal initrd also works;
#                      cd = c on Debian's kernel, the peers' $KERNEL, even with BOOT_KERNEL=limpet:
#                      Debian's floor in the same rounds as Limpet's)
#   BOOT_KERNEL=limpet the device gets Limpet's own kernel (`[kernel] source = "limpet"`,
#                      built with SOURCE_DATE_EPOCH=1700000000 as the tests do, so the
#                      cached build is reused) and the peers boot that same kernel: c is
#                      then the floor of Limpet's kernel (peer b needs Debian's modules: not
#                      with it). Default: Debian's kernel, as the peers' scripts boot it.
#   BOOT_DIAG=1        one more boot of Limpet and of c without `quiet`, each console line
#                      stamped with its host arrival time (where the time goes; not in medians)
#   BOOT_TRACE=1       one more Limpet boot with every system call traced to the console
#                      (benches/boot/syscalls.py: time per kernel module load, slowest calls)
#   LIMPET=path       this `limpet` instead of building a release one (the device's binaries
#                      are built by `limpet build` with their own profile either way)
#   BOOT_PREALLOC=0    no `-mem-prealloc` (default: every boot, Limpet's and the peers', gets it:
#                      QEMU touches the guest's RAM before the guest starts, so the guest's
#                      clock does not carry the host's page faults on its first touch of each
#                      page. Limpet's kernel clears all RAM at boot (`init_on_free`), and
#                      without it that step took 0.13–1.1 s from one boot of the same image to
#                      the next on an idle host, which no other step comes near)
#   BOOT_FIRST=0       no first boots (default: each round also boots the device's fresh disk,
#                      `limpet-first`: its first boot, which makes the identity). The `limpet`
#                      boots are a device's everyday boot: a snapshot of the disk after one
#                      provisioning boot that ended with the power button
#                      (benches/boot/provision.py)
#   BOOT_RNG=0         no virtio-rng device (default: every boot, Limpet's and the peers',
#                      gets `-device virtio-rng-pci`, as `limpet run` gives its guests)
#   BOOT_MACHINE=q35   every boot, Limpet's and the peers', on QEMU's q35 (the machine
#                      `limpet run` gives x86_64 devices) instead of the peers' `pc`. On `pc`
#                      the kernel runs the DSDT's _PRT method (an AML loop over 128 entries)
#                      for each PCI device it enables: about 0.13 s per device under TCG, paid
#                      by Limpet's disk and not by c (BENCHMARKS.md section 12); q35's _PRT is
#                      a table.
#   PEERS_DIR, PEERS_WORK as for the peers' scripts.
#
# Scratch (never in this repository): $WORK/limpet-app (the Limpet project: benches/boot/
# limpet.toml + Cargo.toml + a copy of the peers' app crate, keys, out/), $WORK/limpet-boot
# (one JSON record per boot, serial logs, summary.md). $WORK is the peers' scratch directory
# (common.sh: PEERS_WORK, default /tmp/peers-work). QEMU: TCG only, never KVM.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PEERS_DIR="${PEERS_DIR:-/work/shared/bench/peers}"
# shellcheck source=/dev/null
source "$PEERS_DIR/common.sh"   # WORK, KERNEL, QEMU, QEMU_COMMON, BASE_CMDLINE, BOOT_TIMEOUT
RUNS="${BOOT_RUNS:-5}"
# The machine of `limpet run`: a virtio RNG, so the kernel's RNG is seeded at once.
if [ "${BOOT_RNG:-1}" = 1 ]; then QEMU_COMMON+=(-device virtio-rng-pci); fi
if [ "${BOOT_PREALLOC:-1}" = 1 ]; then QEMU_COMMON+=(-mem-prealloc); fi
if [ -n "${BOOT_MACHINE:-}" ]; then
  for i in "${!QEMU_COMMON[@]}"; do
    case "${QEMU_COMMON[$i]}" in pc,*) QEMU_COMMON[i]="$BOOT_MACHINE,${QEMU_COMMON[$i]#pc,}" ;; esac
  done
  case " ${QEMU_COMMON[*]} " in *" $BOOT_MACHINE,"*) ;; *) echo "BOOT_MACHINE: no pc machine in ${QEMU_COMMON[*]}" >&2; exit 1 ;; esac
fi
read -r -a PEER_LIST <<< "${BOOT_PEERS:-c a b}"
B="$WORK/limpet-boot"
P="$WORK/limpet-app"
rm -rf "$B"; mkdir -p "$B/logs"

machine() {
  echo "nproc=$(nproc) cpu=\"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)\" mem=$(awk '/MemTotal/ {printf "%.0fGiB", $2/1048576}' /proc/meminfo) qemu=\"$($QEMU --version | head -1)\" kernel=$KERNEL loadavg=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
}
echo "# machine: $(machine); guest: ${QEMU_COMMON[*]}" | tee "$B/machine.txt"
echo "# limpet: commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo " + uncommitted changes (git diff HEAD sha256 $(git diff HEAD -- crates Cargo.toml Cargo.lock | sha256sum | cut -c1-12): $(git diff --stat HEAD -- crates Cargo.toml Cargo.lock | tail -1 | sed 's/^ *//'))")" | tee "$B/commit.txt"

# 1. Peers: build what is missing with their own scripts (idempotent).
"$PEERS_DIR/01-build-app.sh"
case " ${PEER_LIST[*]} " in *" a "*) "$PEERS_DIR/10-peer-a-busybox.sh" ;; esac
case " ${PEER_LIST[*]} " in *" b "*|*" b2 "*) "$PEERS_DIR/11-peer-b-debian.sh" ;; esac
"$PEERS_DIR/12-peer-c-appinit.sh"

# 2. Limpet: release CLI, then the device project in scratch (the app crate is copied at run
#    time; limpet builds it with its own release profile for musl).
if [ -z "${LIMPET:-}" ]; then
  cargo build -q --release -p limpet
  LIMPET="$REPO/target/release/limpet"
fi
rm -rf "$P/app" "$P/out"; mkdir -p "$P"
cp "$REPO/benches/boot/limpet.toml" "$REPO/benches/boot/Cargo.toml" "$P/"
if [ "${BOOT_KERNEL:-host}" = limpet ]; then
  sed -i 's/^source = "host"$/source = "limpet"/' "$P/limpet.toml"
  grep -q '^source = "limpet"$' "$P/limpet.toml"
  export SOURCE_DATE_EPOCH=1700000000
  # The kernel cache is <cargo target dir>/limpet-kernel: share this repository's.
  mkdir -p "$P/target" "$REPO/target/limpet-kernel"
  ln -sfn "$REPO/target/limpet-kernel" "$P/target/limpet-kernel"
fi
mkdir -p "$P/app"
cp -r "$PEERS_DIR/app/Cargo.toml" "$PEERS_DIR/app/src" "$P/app/"
"$LIMPET" keys generate --if-missing --out "$P/keys" >/dev/null
echo "# limpet build (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
"$LIMPET" build --manifest "$P/limpet.toml" --key "$P/keys/image.key" --out "$P/out" --json > "$B/build.json"
DEBIAN_KERNEL="$KERNEL"
if [ "${BOOT_KERNEL:-host}" = limpet ]; then
  # The peers boot the device's own kernel (signed for the chain; -kernel ignores that).
  KERNEL="$P/out/kernel"
  echo "# kernel: Limpet's own, $(stat -c %s "$KERNEL") bytes (signed), release $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kernel_release"])' "$B/build.json")"
else
  # The image's kernel is the peers' one, signed for the chain (so not byte-identical).
  release=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kernel_release"])' "$B/build.json")
  [ "$release" = "$KVER" ] || { echo "the Limpet image's kernel is $release, the peers boot $KVER" >&2; exit 1; }
fi

# 3. Provisioning: the device's first boot on a copy of its disk, ended by the power button,
#    so that the `limpet` boots below are everyday boots of a snapshot of that disk.
cp --sparse=always "$P/out/disk.img" "$B/disk-provisioned.img"
echo "# provisioning boot (load $(cut -d' ' -f1-3 /proc/loadavg))"
python3 "$REPO/benches/boot/provision.py" --timeout "$BOOT_TIMEOUT" -- "$QEMU" "${QEMU_COMMON[@]}" \
  -kernel "$P/out/kernel" -initrd "$P/out/initramfs.cpio" \
  -drive "file=$B/disk-provisioned.img,if=virtio,format=raw" -append "$BASE_CMDLINE" \
  > "$B/provision.log" || { echo "provisioning boot failed: $B/provision.log" >&2; exit 1; }

# 4. Boots: every round boots Limpet (everyday, then first) and then each peer once, each
#    through bootbench.py.
limpet_args=(-kernel "$P/out/kernel" -initrd "$P/out/initramfs.cpio"
  -drive "file=$B/disk-provisioned.img,if=virtio,format=raw,snapshot=on" -append "$BASE_CMDLINE")
first_args=(-kernel "$P/out/kernel" -initrd "$P/out/initramfs.cpio"
  -drive "file=$P/out/disk.img,if=virtio,format=raw,snapshot=on" -append "$BASE_CMDLINE")
peer_args() { # as in the peers' 20-boot-bench.sh
  case "$1" in
    a)  echo "-kernel $KERNEL -initrd $WORK/peer-a/initramfs.cpio.zst" ;;
    b)  echo "-kernel $KERNEL -initrd $WORK/peer-b/stock-initrd.img -drive file=$WORK/peer-b/rootfs.ext4,if=virtio,format=raw,snapshot=on" ;;
    b2) echo "-kernel $KERNEL -initrd $WORK/peer-b/mininitrd.cpio.zst -drive file=$WORK/peer-b/rootfs.ext4,if=virtio,format=raw,snapshot=on" ;;
    c)  echo "-kernel $KERNEL -initrd $WORK/peer-c/initramfs.cpio.zst" ;;
    cd) echo "-kernel $DEBIAN_KERNEL -initrd $WORK/peer-c/initramfs.cpio.zst" ;;
  esac
}
peer_cmdline() { case "$1" in b|b2) echo "$BASE_CMDLINE root=/dev/vda ro" ;; *) echo "$BASE_CMDLINE" ;; esac; }
bench() { # bench NAME RUN QEMU-ARGS...
  local name="$1" run="$2"; shift 2
  timeout $((BOOT_TIMEOUT + 30)) python3 "$PEERS_DIR/bootbench.py" --name "$name" --runs 1 \
    --first-run "$run" --append --timeout "$BOOT_TIMEOUT" --logdir "$B/logs" \
    --out "$B/boot-$name.jsonl" -- "$@" 2>/dev/null || true
}
echo "$QEMU ${QEMU_COMMON[*]} ${limpet_args[*]:0:6} -append \"$BASE_CMDLINE\"" > "$B/boot-limpet.cmd"
for p in "${PEER_LIST[@]}"; do
  echo "$QEMU ${QEMU_COMMON[*]} $(peer_args "$p") -append \"$(peer_cmdline "$p")\"" > "$B/boot-$p.cmd"
done
for i in $(seq "$RUNS"); do
  echo "# round $i/$RUNS (load $(cut -d' ' -f1-3 /proc/loadavg))"
  bench limpet "$i" "$QEMU" "${QEMU_COMMON[@]}" "${limpet_args[@]}"
  if [ "${BOOT_FIRST:-1}" = 1 ]; then
    bench limpet-first "$i" "$QEMU" "${QEMU_COMMON[@]}" "${first_args[@]}"
  fi
  for p in "${PEER_LIST[@]}"; do
    # shellcheck disable=SC2046
    bench "$p" "$i" "$QEMU" "${QEMU_COMMON[@]}" $(peer_args "$p") -append "$(peer_cmdline "$p")"
  done
done
# PID 1 figures of each Limpet boot, from limpet-init's own console line.
for log in "$B"/logs/limpet-run*.log; do
  run=${log##*-run}; run=${run%.log}
  line=$(tr -d '\r' < "$log" | grep -a -o 'all tasks started at boottime [0-9]* ms; PID 1 Rss [0-9?]* kB' | head -1 || true)
  echo "$run $(echo "$line" | awk '{print $6, $11}')"
done > "$B/limpet-pid1.txt"

# 5. Sizes of the init binaries: limpet-init from `limpet build --json`; busybox-static as the
#    peers unpack it; systemd = /lib/systemd/systemd and the shared libraries it loads.
bb="$WORK/dl/busybox-static/bin/busybox"
{
  echo "busybox_static_bytes=$(stat -c %s "$bb" 2>/dev/null || echo NA)"
  R="$WORK/peer-b/rootfs"
  if [ -x "$R/lib/systemd/systemd" ]; then
    libs=$(chroot "$R" /usr/bin/ldd /lib/systemd/systemd | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | sort -u)
    total=$(stat -c %s "$R/lib/systemd/systemd"); n=0
    for l in $libs; do total=$((total + $(stat -L -c %s "$R$l"))); n=$((n + 1)); done
    echo "systemd_bytes=$(stat -c %s "$R/lib/systemd/systemd") systemd_with_libs_bytes=$total systemd_libs=$n libsystemd_shared_bytes=$(stat -L -c %s "$R"/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-*.so 2>/dev/null | head -1)"
  fi
} > "$B/init-sizes.txt"

# 6. Optional diagnostic boot: the same Limpet image without `quiet`, every line time-stamped
#    by its host arrival and each kernel line by the guest's own clock (`printk.time=1`: Limpet's
#    kernel is built without PRINTK_TIME, Debian's with it), which the summary anchors on;
#    `limpet.console_time=1` stamps limpet-init's lines (and the task lines it forwards) with
#    the guest's CLOCK_BOOTTIME in the same form.
if [ "${BOOT_DIAG:-1}" = 1 ]; then
  echo "# diagnostic boot without quiet (load $(cut -d' ' -f1-3 /proc/loadavg))"
  diag_cmdline="${BASE_CMDLINE/ quiet/} printk.time=1 limpet.console_time=1"
  diag_args=("${limpet_args[@]}"); diag_args[${#diag_args[@]}-1]="$diag_cmdline"
  python3 "$REPO/benches/boot/consolestamp.py" --until "APP READY" --timeout "$BOOT_TIMEOUT" -- \
    "$QEMU" "${QEMU_COMMON[@]}" "${diag_args[@]}" > "$B/diag-limpet.log" || true
  # shellcheck disable=SC2046
  python3 "$REPO/benches/boot/consolestamp.py" --until "APP READY" --timeout "$BOOT_TIMEOUT" -- \
    "$QEMU" "${QEMU_COMMON[@]}" $(peer_args c) -append "$diag_cmdline" > "$B/diag-c.log" || true
fi

# Optional: the same boot with every system call traced to the console (slower; shares only).
if [ "${BOOT_TRACE:-1}" = 1 ]; then
  echo "# syscall-traced diagnostic boot (load $(cut -d' ' -f1-3 /proc/loadavg))"
  trace_args=("${limpet_args[@]}")
  trace_args[${#trace_args[@]}-1]="${BASE_CMDLINE/ quiet/} trace_event=raw_syscalls:sys_enter,raw_syscalls:sys_exit tp_printk"
  python3 "$REPO/benches/boot/consolestamp.py" --until "APP READY" --timeout "$BOOT_TIMEOUT" -- \
    "$QEMU" "${QEMU_COMMON[@]}" "${trace_args[@]}" > "$B/trace-limpet.log" || true
fi

# 7. Summary (also written to $B/summary.md).
python3 - "$B" "$RUNS" "${PEER_LIST[@]}" <<'PY' | tee "$B/summary.md"
import json, os, re, statistics, sys
B, runs, peers = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def recs(name):
    path = os.path.join(B, f"boot-{name}.jsonl")
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []
def mmm(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    if not xs: return "NA"
    return f"{statistics.median(xs):.0f} ({min(xs):.0f}–{max(xs):.0f})"
def mmm2(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})" if xs else "NA"
def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None
pid1 = {}
for line in open(os.path.join(B, "limpet-pid1.txt")):
    f = line.split()
    if len(f) == 3 and f[2].isdigit():
        pid1[int(f[0])] = (int(f[1]), int(f[2]))
build = json.load(open(os.path.join(B, "build.json")))
def find_binaries(o):
    if isinstance(o, dict):
        if "binaries" in o: return o["binaries"]
        for v in o.values():
            r = find_binaries(v)
            if r is not None: return r
    return None
bins = find_binaries(build)
init_size = next((b.get("bytes") for b in bins or [] if b.get("name") == "limpet-init"), None)
sizes = dict(kv.split("=", 1) for kv in open(os.path.join(B, "init-sizes.txt")).read().split() if "=" in kv)
floor = med([r.get("boottime_ms") for r in recs("c") if r.get("ok")])
label = {"limpet": "Limpet (limpet-init → sandboxed task), everyday boot",
         "limpet-first": "Limpet, first boot (makes the identity)", "c": "c: app as /init (floor)",
         "a": "a: busybox init", "b": "b: Debian + systemd (stock initrd)",
         "b2": "b2: Debian + systemd (minimal initrd)",
         "cd": "cd: app as /init on Debian's kernel (Debian's floor)"}
print(f"| image | runs ok | boottime at APP READY, ms | above c, ms | wall to APP READY, ms | PID 1 Rss, kB | host load1 at boot |")
print("|---|---|---|---|---|---|---|")
limpets = ["limpet"] + (["limpet-first"] if recs("limpet-first") else [])
for name in limpets + peers:
    rs = recs(name); ok = [r for r in rs if r.get("ok")]
    bt = med([r.get("boottime_ms") for r in ok])
    above = f"{bt - floor:+.0f}" if (bt is not None and floor is not None and name != "c") else "—"
    if name == "limpet":
        rss = mmm([pid1[r["run"]][1] for r in ok if r["run"] in pid1])
        rss += " (limpet-init line)"
    else:
        rss = mmm([r.get("pid1_rss_kb") for r in ok])
    print(f"| {label.get(name, name)} | {len(ok)}/{len(rs)} | {mmm([r.get('boottime_ms') for r in ok])} | {above} | "
          f"{mmm([r.get('wall_ms') for r in ok])} | {rss} | {mmm2([r.get('host_load1') for r in rs])} |")
lim = [r for r in recs("limpet") if r.get("ok")]
starts = [pid1[r["run"]][0] - r["boottime_ms"] for r in lim if r["run"] in pid1]
print()
print(f"limpet-init 'all tasks started' minus the app's boottime_ms (ms, per run): {[round(s) for s in starts]}")
print(f"init binaries (bytes): limpet-init {init_size} (limpet build --json); "
      f"busybox-static {sizes.get('busybox_static_bytes')}; systemd {sizes.get('systemd_bytes')} "
      f"(+ {sizes.get('systemd_libs')} shared libraries = {sizes.get('systemd_with_libs_bytes')}; "
      f"libsystemd-shared alone {sizes.get('libsystemd_shared_bytes')})")
byrun = {n: {r["run"]: r["boottime_ms"] for r in recs(n) if r.get("ok")} for n in limpets + peers}
for n in limpets:
    pairs = [byrun[n][i] - byrun["c"][i] for i in byrun[n] if i in byrun.get("c", {})]
    if pairs:
        print(f"{label[n]} minus c in the same round (ms): median {statistics.median(pairs):.0f}, "
              f"per round {[round(x) for x in pairs]}")
for d in ["limpet", "c"]:
    path = os.path.join(B, f"diag-{d}.log")
    if not os.path.exists(path): continue
    rows = []
    for line in open(path, errors="replace"):
        h, _, text = line.strip().partition(" ")
        try: rows.append((float(h), text))
        except ValueError: pass
    anchor = next(((h, float(m.group(1)) * 1000) for h, t in rows
                   if "Run /init" in t and (m := re.search(r"\[\s*([\d.]+)\]", t))), None)
    if not anchor: continue
    off = anchor[0] - anchor[1]
    print(f"\ndiagnostic boot of {d} without quiet: guest ms from each line's own stamp (the "
          f"kernel's printk.time, limpet-init's CLOCK_BOOTTIME), else host arrival − {off:.0f} "
          f"(anchored on the kernel's 'Run /init' line; marked ~)")
    prev = None
    for h, t in rows:
        if "Run /init" in t or "limpet-init" in t or "APP READY" in t or "Freeing initrd" in t:
            m = re.match(r"\[\s*([\d.]+)\]", t)
            g, mark = (float(m.group(1)) * 1000, " ") if m else (h - off, "~")
            step = f" (+{g - prev:.0f})" if prev is not None else ""
            print(f"  {g:7.0f}{mark}{step:>8}  {t[:110]}")
            prev = g
loads = [r.get("host_load1") for n in limpets + peers for r in recs(n)]
print(f"host load1 at boot start over all boots: median {statistics.median(loads):.2f}, min {min(loads):.2f}, max {max(loads):.2f}")
PY

if [ -s "$B/trace-limpet.log" ]; then
  echo "## syscall-traced boot of Limpet"
  python3 "$REPO/benches/boot/syscalls.py" "$B/trace-limpet.log" "$B/build.json"
fi
for d in limpet c; do
  [ -s "$B/diag-$d.log" ] || continue
  echo "## diagnostic boot of $d without quiet (host ms since QEMU spawn, then the console line)"
  grep -a -E 'Linux version|unpack rootfs|Freeing initrd|Run /init|limpet-init|APP READY|virtio_blk|vda|device-mapper|verity|squashfs|EXT4|Freeing unused' "$B/diag-$d.log" | cut -c1-170
done
echo "# loadavg_at_end=\"$(cut -d' ' -f1-3 /proc/loadavg)\"; raw records, logs: $B"
