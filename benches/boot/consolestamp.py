#!/usr/bin/env python3
"""Diagnostic boot for benches/boot.sh: run a QEMU command line once and print every
console line prefixed with the host time (ms since QEMU was spawned) it arrived at.

usage: consolestamp.py --until TEXT --timeout S -- QEMU ARGS...

Stops when a line contains TEXT (plain substring) or after S seconds; QEMU is then
killed by its own PID. Exit status 0 if TEXT was seen, 1 otherwise.
"""
import argparse, os, select, signal, subprocess, sys, time

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--until", required=True)
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    until = a.until.encode()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    buf, seen = b"", False
    try:
        fd = p.stdout.fileno()
        while not seen and time.monotonic() - t0 < a.timeout:
            r, _, _ = select.select([fd], [], [], 1.0)
            if not r:
                if p.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            now = (time.monotonic() - t0) * 1000.0
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.rstrip(b"\r").decode(errors="replace")
                print(f"{now:9.1f} {text}", flush=True)
                if until in line:
                    seen = True
                    break
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)  # QEMU's own PID only
        p.wait()
    return 0 if seen else 1

if __name__ == "__main__":
    sys.exit(main())
