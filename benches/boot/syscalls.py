#!/usr/bin/env python3
"""Summarise a console log of a boot with
`trace_event=raw_syscalls:sys_enter,raw_syscalls:sys_exit tp_printk` (benches/boot.sh,
BOOT_TRACE=1): time in each finit_module call, named from `limpet build --json`'s module
list (limpet-init loads them in that order), and the slowest other system calls.
Tracing to the serial console slows the guest down: read the figures as shares, not as
the untraced boot's times.

usage: syscalls.py LOG BUILD.json
"""
import json, re, sys

NAMES = {59: "execve", 313: "finit_module", 317: "seccomp", 435: "clone3", 165: "mount",
         258: "mkdirat", 1: "write", 2: "open", 4: "stat", 0: "read", 16: "ioctl", 155: "pivot_root"}
log, build = sys.argv[1], sys.argv[2]
mods = json.load(open(build)).get("modules", [])
pat = re.compile(r"\[\s*([\d.]+)\].*sys_(enter|exit): NR (\d+)")
rows = [(float(m.group(1)), m.group(2), int(m.group(3)))
        for line in open(log, errors="replace") if (m := pat.search(line))]
calls = []  # (start, duration_ms, nr)
for i, (t, kind, nr) in enumerate(rows):
    if kind == "enter":
        for t2, k2, nr2 in rows[i + 1:i + 8]:
            if k2 == "exit" and nr2 == nr:
                calls.append((t, (t2 - t) * 1000, nr))
                break
fm = [c for c in calls if c[2] == 313]
print(f"finit_module: {len(fm)} calls, {sum(c[1] for c in fm):.0f} ms in the kernel, "
      f"{fm[0][0]:.3f} s to {fm[-1][0] + fm[-1][1] / 1000:.3f} s" if fm else "no finit_module")
print("  " + ", ".join(f"{m} {c[1]:.0f}" for m, c in zip(mods, fm)))
print("slowest other calls (ms at guest s):")
for t, d, nr in sorted((c for c in calls if c[2] != 313), key=lambda c: -c[1])[:8]:
    print(f"  {NAMES.get(nr, 'NR %d' % nr)} {d:.0f} ms at {t:.3f}")
