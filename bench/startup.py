#!/usr/bin/python3
"""Start-up: exec to the guest's first console line, and exec to exit, for
canopy-vmm and QEMU (microvm with ACPI, KVM) booting the same test guest
(guest/, workload `hello`) with the same memory and vCPUs.
Usage: bench/startup.py [RUNS]"""
import os
import subprocess
import sys
import time

from benchlib import BUILD, compare, machine

GUEST = os.path.join(BUILD, "guest", "canopy-testguest.elf")
MEM = "256"
CPUS = "2"
# The TSC rate on the command line, so neither VMM pays for the guest's PIT
# calibration (QEMU has no TSC leaf).
CMDLINE = "hello tsc_khz=1000000"


def canopy_cmd():
    return [os.path.join(BUILD, "bin", "canopy-vmm"), "--kernel", GUEST,
            "--memory", MEM, "--cpus", CPUS, "--cmdline", CMDLINE,
            "--serial", "stdio", "--log-level", "error"]


def qemu_cmd():
    return ["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm",
            "-cpu", "host,-arch-capabilities", "-m", MEM, "-smp", CPUS,
            "-nodefaults",
            "-no-user-config", "-nographic", "-serial", "stdio",
            "-kernel", GUEST, "-append", CMDLINE,
            "-device", "isa-debug-exit,iobase=0x604,iosize=2"]


def one(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stdout.readline()
    t1 = time.perf_counter()
    p.stdout.read()
    p.wait()
    t2 = time.perf_counter()
    if b"canopy-testguest: hello cpus=%s" % CPUS.encode() not in line:
        raise SystemExit("%s: unexpected output %r (%s)"
                         % (cmd[0], line, p.stderr.read()))
    return (t1 - t0) * 1000, (t2 - t0) * 1000


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print("start-up, %d runs each, guest %s '%s', %s MiB, %s vCPUs; %s"
          % (runs, os.path.basename(GUEST), CMDLINE, MEM, CPUS, machine()))
    res = {"canopy": [], "qemu": []}
    for _ in range(runs):  # interleaved, so drift hits both alike
        res["canopy"].append(one(canopy_cmd()))
        res["qemu"].append(one(qemu_cmd()))
    compare("exec -> guest banner", [r[0] for r in res["canopy"]],
            [r[0] for r in res["qemu"]], "ms", "qemu")
    compare("exec -> process exit (guest powered off)",
            [r[1] for r in res["canopy"]], [r[1] for r in res["qemu"]], "ms",
            "qemu")


if __name__ == "__main__":
    main()
