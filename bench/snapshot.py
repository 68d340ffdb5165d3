#!/usr/bin/python3
"""Snapshot save and restore of a guest whose RAM is all touched (the fill
guest), canopy-vmm vs QEMU (migration to and from a file), for 256 MiB and
1 GiB. Restore time: exec until the VM runs again. Every restored VM is
then checked to verify its memory pattern ("v" on its console).
Usage: bench/snapshot.py [RUNS]"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from benchlib import BUILD, compare, machine
from canopy_testlib.vmm import Control

GUEST = os.path.join(BUILD, "tests", "kvm", "fill.elf")
VMM = os.path.join(BUILD, "bin", "canopy-vmm")


def wait_for(f, want, timeout=60):
    """Read the console pipe until `want` has been seen."""
    seen = b""
    deadline = time.monotonic() + timeout
    while want not in seen:
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for %r, got %r" % (want, seen))
        b = f.read(1)
        if not b:
            raise SystemExit("console closed waiting for %r: %r" % (want, seen))
        seen += b


def wait_path(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit("no %s" % path)
        time.sleep(0.0005)


def canopy_round(tmp, mem):
    ctl_path, snap = os.path.join(tmp, "c.sock"), os.path.join(tmp, "c.snap")
    p = subprocess.Popen([VMM, "--kernel", GUEST, "--memory", str(mem),
                          "--control", ctl_path, "--serial", "stdio",
                          "--log-level", "error"], stdout=subprocess.PIPE)
    wait_for(p.stdout, b"filled\n")
    wait_path(ctl_path)
    ctl = Control(ctl_path, timeout=120)
    t0 = time.perf_counter()
    ctl.save(snap, stop_after=True)
    save_ms = (time.perf_counter() - t0) * 1000
    p.wait(30)
    t0 = time.perf_counter()
    r = subprocess.Popen([VMM, "--restore", snap, "--control", ctl_path,
                          "--serial", "stdio", "--log-level", "error"],
                         stdout=subprocess.PIPE)
    wait_path(ctl_path)
    ctl = Control(ctl_path, timeout=120)
    while ctl.status().state != 2:
        pass
    restore_ms = (time.perf_counter() - t0) * 1000
    wait_for(r.stdout, b"v")  # the restored guest verified all its pages
    size = os.path.getsize(snap)
    r.kill()
    r.wait()
    os.unlink(snap)
    return save_ms, restore_ms, size


class Qmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")
        self.f.readline()
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args})
                     .encode() + b"\n")
        self.f.flush()
        while True:
            msg = json.loads(self.f.readline())
            if "return" in msg or "error" in msg:
                return msg


def qemu_cmd(mem, qmp, extra):
    return ["qemu-system-x86_64", "-M", "microvm,acpi=off", "-accel", "kvm",
            "-cpu", "host,-arch-capabilities", "-m", str(mem), "-nodefaults",
            "-no-user-config", "-nographic", "-serial", "stdio", "-kernel",
            GUEST, "-qmp", "unix:%s,server=on,wait=off" % qmp] + extra


def qemu_round(tmp, mem):
    qmp_path, snap = os.path.join(tmp, "q.qmp"), os.path.join(tmp, "q.snap")
    p = subprocess.Popen(qemu_cmd(mem, qmp_path, []), stdout=subprocess.PIPE)
    wait_for(p.stdout, b"filled\n")
    wait_path(qmp_path)
    q = Qmp(qmp_path)
    t0 = time.perf_counter()
    q.cmd("stop")
    # dd with fsync: durable, like canopy-vmm's save.
    q.cmd("migrate", uri="exec:dd of=%s bs=1M conv=fsync status=none" % snap)
    while q.cmd("query-migrate")["return"].get("status") != "completed":
        time.sleep(0.001)
    save_ms = (time.perf_counter() - t0) * 1000
    p.kill()
    p.wait()
    os.unlink(qmp_path)
    t0 = time.perf_counter()
    r = subprocess.Popen(qemu_cmd(mem, qmp_path,
                                  ["-incoming", "exec:cat %s" % snap]),
                         stdout=subprocess.PIPE)
    wait_path(qmp_path)
    q = Qmp(qmp_path)
    # The source was stopped before it was saved, so the incoming VM
    # arrives paused: continue it as soon as the migration is in.
    while q.cmd("query-status")["return"]["status"] == "inmigrate":
        time.sleep(0.001)
    q.cmd("cont")
    while q.cmd("query-status")["return"]["status"] != "running":
        time.sleep(0.001)
    restore_ms = (time.perf_counter() - t0) * 1000
    wait_for(r.stdout, b"v")
    size = os.path.getsize(snap)
    r.kill()
    r.wait()
    os.unlink(snap)
    os.unlink(qmp_path)
    return save_ms, restore_ms, size


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print("snapshot save/restore, %d runs each, RAM fully touched; %s"
          % (runs, machine()))
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        print("snapshot files in %s" % tmp)
        for mem in (256, 1024):
            c = [canopy_round(tmp, mem) for _ in range(runs)]
            q = [qemu_round(tmp, mem) for _ in range(runs)]
            print("-- %d MiB guest: snapshot file %.0f MiB (canopy), "
                  "%.0f MiB (qemu)" % (mem, c[0][2] / 2**20, q[0][2] / 2**20))
            compare("save (paused VM to a durable file)",
                    [x[0] for x in c], [x[0] for x in q], "ms", "qemu")
            compare("restore (exec until the VM runs)",
                    [x[1] for x in c], [x[1] for x in q], "ms", "qemu")


if __name__ == "__main__":
    main()
