#!/usr/bin/python3
"""Memory overhead: resident memory of the VMM process minus the guest
memory the guest touched, for canopy-vmm and QEMU (microvm, KVM) running the
same test guest (workload `count`) with the same RAM. Usage: bench/memory.py [RUNS]
"""
import os
import subprocess
import sys
import time

from benchlib import BUILD, compare, machine

GUEST = os.path.join(BUILD, "guest", "canopy-testguest.elf")
# tsc_khz is only for QEMU (no TSC leaf; the count period does not matter).
CMDLINE = "count=50 tsc_khz=1000000"
MEM_MIB = 256


def smaps(pid):
    """(total Rss, Rss of the guest-RAM mapping) in KiB. The guest RAM is
    the one mapping whose size equals the VM's memory."""
    total = guest = 0
    size = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
                total += rss
                if size == MEM_MIB * 1024:
                    guest += rss
    return total, guest


def measure(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        while not p.stdout.readline().startswith(b"count 2"):
            pass  # the guest is running: it is counting
        time.sleep(0.5)
        total, guest = smaps(p.pid)
    finally:
        p.kill()
        p.wait()
    return (total - guest) / 1024.0, total / 1024.0


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    canopy = [os.path.join(BUILD, "bin", "canopy-vmm"), "--kernel", GUEST,
              "--memory", str(MEM_MIB), "--cmdline", CMDLINE, "--serial", "stdio"]
    qemu = ["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm",
            "-cpu", "host,-arch-capabilities", "-m", str(MEM_MIB),
            "-nodefaults", "-no-user-config", "-nographic", "-serial",
            "stdio", "-kernel", GUEST, "-append", CMDLINE]
    print("memory overhead, %d runs each, %d MiB guest; %s"
          % (runs, MEM_MIB, machine()))
    c, q = [], []
    for _ in range(runs):
        c.append(measure(canopy))
        q.append(measure(qemu))
    compare("VMM RSS minus guest RAM touched", [x[0] for x in c],
            [x[0] for x in q], "MiB", "qemu")
    compare("VMM RSS (total)", [x[1] for x in c], [x[1] for x in q], "MiB",
            "qemu")


if __name__ == "__main__":
    main()
