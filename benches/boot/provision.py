#!/usr/bin/env python3
"""Provisioning boot for benches/boot.sh: boot a Limpet device's disk once, as a device's
first boot in the field, and shut it down cleanly with the power button, so that the
benchmark's later boots of a snapshot of that disk are the boots a device makes every day
(identity already made, `/data` clean) rather than its first.

usage: provision.py --timeout S -- QEMU ARGS...

QEMU ARGS must boot the device with the disk writable (no `snapshot=on`). The script adds
a QMP socket, waits for the app's `APP READY` line, presses the power button
(`system_powerdown`) and waits for PID 1's `all tasks stopped, filesystems unmounted` and
QEMU's exit. Exit status 0 only then; on any other end QEMU is killed by its own PID and
the status is 1 (the disk must then not be used: it may hold a half-done first boot).
"""
import argparse, json, os, select, signal, socket, subprocess, sys, tempfile, time

READY = b"APP READY"
STOPPED = b"all tasks stopped, filesystems unmounted"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    sock_dir = tempfile.mkdtemp(prefix="limpet-provision-")
    qmp_path = os.path.join(sock_dir, "qmp.sock")
    cmd = cmd + ["-qmp", f"unix:{qmp_path},server=on,wait=off"]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    out = b""

    def pump(until):
        nonlocal out
        fd = p.stdout.fileno()
        while time.monotonic() - t0 < a.timeout:
            r, _, _ = select.select([fd], [], [], 0.5)
            if not r:
                if p.poll() is not None:
                    return False
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return False
            out += chunk
            if until in out:
                return True
        return False

    ok = False
    try:
        if not pump(READY):
            print("provision: the first boot never printed APP READY", file=sys.stderr)
        else:
            qmp = socket.socket(socket.AF_UNIX)
            qmp.connect(qmp_path)
            f = qmp.makefile("rwb")
            f.readline()  # the greeting
            for command in ("qmp_capabilities", "system_powerdown"):
                f.write(json.dumps({"execute": command}).encode() + b"\n")
                f.flush()
                reply = json.loads(f.readline())
                while "event" in reply:  # asynchronous events (POWERDOWN) come between
                    reply = json.loads(f.readline())
                if "return" not in reply:
                    raise RuntimeError(f"QMP {command}: {reply}")
            if not pump(STOPPED):
                print("provision: no clean shutdown after the power button", file=sys.stderr)
            else:
                p.wait(timeout=max(1.0, a.timeout - (time.monotonic() - t0)))
                ok = p.returncode == 0
                if not ok:
                    print(f"provision: QEMU exited with {p.returncode}", file=sys.stderr)
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
        print(f"provision: {e}", file=sys.stderr)
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)  # QEMU's own PID only
        p.wait()
        if os.path.exists(qmp_path):
            os.unlink(qmp_path)
        os.rmdir(sock_dir)
    sys.stdout.write(out.decode(errors="replace"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
