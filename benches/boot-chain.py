#!/usr/bin/env python3
"""Boot-chain benchmark (BENCHMARKS.md, "The boot chain"): where the time from QEMU's start
to the first task line goes, through the device's chain (UEFI firmware with Secure Boot,
Limpet's loader, the slot's kernel, PID 1) and through `--direct` (QEMU's -kernel path),
booted alternately, each console line stamped with the host time it arrived.

usage: benches/boot-chain.py OUT_DIR [RUNS]     (OUT_DIR: a `limpet build` output)

OUT_DIR may be built for either target: `limpet run` boots an x86_64 device in
qemu-system-x86_64 (OVMF, q35) and an aarch64 one in qemu-system-aarch64 -M virt (AAVMF).
The device's target and task names come from `limpet inspect OUT_DIR --json`.

Needs `limpet` on PATH or LIMPET=path/to/limpet. Phases (host milliseconds since
`limpet run` was spawned; its own start-up is a few ms):
  firmware  until the loader's first line (`limpet-boot: version`)
  loader    until it hands over (`limpet-boot: starting the kernel`)
  kernel    until PID 1's first line (`limpet-init ... starting`)
  pid1      until the first task line (`[task] ...`, task one of the device's: a kernel
            message such as arm64's `[    0.113827] Early cacheinfo failed` is not one)
Prints the machine, then one row per boot and the medians, as Markdown.
"""
import json, os, platform, statistics, subprocess, sys, time

MARKS = [
    ("firmware", "limpet-boot: version"),
    ("loader", "limpet-boot: starting the kernel"),
    ("kernel", "limpet-init "),
    ("pid1", "] "),
]


def boot(limpet, out, tasks, direct):
    # The first declared task starts first; its first line ends the boot.
    cmd = [limpet, "run", out, "--exit-on", f"[{tasks[0]}] ", "--timeout", "400"]
    if direct:
        cmd.append("--direct")
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stamps, rss = {}, None
    for raw in p.stdout:
        now = (time.monotonic() - t0) * 1000.0
        line = raw.decode(errors="replace")
        for name, mark in MARKS:
            if name not in stamps and mark in line:
                # "] " must end a task's name at the start of the line.
                if name == "pid1" and not any(line.startswith(f"[{t}] ") for t in tasks):
                    continue
                if name == "kernel" and "starting" not in line:
                    continue
                stamps[name] = now
        if "PID 1 Rss" in line:
            rss = line.strip().rsplit(" ", 2)[-2]
    p.wait()
    return stamps, rss


def phases(stamps, direct):
    if direct:
        k = stamps.get("kernel")
        t = stamps.get("pid1")
        return {"firmware": None, "loader": None, "kernel": k,
                "pid1": t - k if t and k else None, "total": t}
    f, l, k, t = (stamps.get(n) for n, _ in MARKS)
    if None in (f, l, k, t):
        return None
    return {"firmware": f, "loader": l - f, "kernel": k - l, "pid1": t - k, "total": t}


def describe(limpet, out):
    """The device's target and task names, and the machine line printed above the rows."""
    info = json.loads(subprocess.run([limpet, "inspect", out, "--json"], check=True,
                                     capture_output=True).stdout)
    target = info["target"]
    qemu = {"x86_64": "qemu-system-x86_64", "aarch64": "qemu-system-aarch64"}[target]
    version = subprocess.run([qemu, "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.machine())
    load = open("/proc/loadavg").read().split()[:3]
    print(f"<!-- device {info['device']} {info['version']}, target {target}; host nproc={os.cpu_count()} cpu=\"{cpu}\" {version}, TCG;"
          f" load {' '.join(load)} at the start -->")
    return target, [t["name"] for t in info["tasks"]]


def main():
    out = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    limpet = os.environ.get("LIMPET", "limpet")
    _, tasks = describe(limpet, out)
    rows = {"chain": [], "direct": []}
    for i in range(runs):
        for kind in ("chain", "direct"):
            stamps, rss = boot(limpet, out, tasks, kind == "direct")
            ph = phases(stamps, kind == "direct")
            if ph is None:
                print(f"run {i} {kind}: incomplete {stamps}", file=sys.stderr)
                continue
            rows[kind].append(ph)
            cells = " | ".join("" if ph[c] is None else f"{ph[c]:.0f}"
                               for c in ("firmware", "loader", "kernel", "pid1", "total"))
            print(f"| {kind} {i + 1} | {cells} | {rss or ''} |", flush=True)
    print()
    print("| path | firmware, ms | loader, ms | kernel, ms | PID 1 to first task line, ms | total, ms |")
    print("|---|---|---|---|---|---|")
    for kind, phs in rows.items():
        if not phs:
            continue
        med = {}
        for c in ("firmware", "loader", "kernel", "pid1", "total"):
            vals = [p[c] for p in phs if p[c] is not None]
            med[c] = f"{statistics.median(vals):.0f}" if vals else "—"
        print(f"| {kind} (median of {len(phs)}) | {med['firmware']} | {med['loader']} | "
              f"{med['kernel']} | {med['pid1']} | {med['total']} |")


if __name__ == "__main__":
    main()
