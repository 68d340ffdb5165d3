#!/usr/bin/python3
"""Frames per second between two test guests over a unix datagram pair
(workload `net`, udpsend -> udprecv): two canopy-vmm processes with
`--net unix=...` against two QEMU q35 guests with `-netdev dgram` and
virtio-net-pci, same guest, same stream. The figure is the receiver's
datagrams per second from its first to its last datagram, counted only
when none was lost or bad.
Usage: bench/net.py [RUNS] [COUNT] [LEN]"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import BUILD, compare, machine

GUEST = os.path.join(BUILD, "guest", "canopy-testguest.elf")
VMM = os.path.join(BUILD, "bin", "canopy-vmm")
RECV = re.compile(r"net: udprecv got (\d+) lost (\d+) bad (\d+) secs \S+ "
                  r"pps (\d+) mbps (\S+)")


def host_tsc_khz(d):
    """The TSC rate canopy-vmm's guest reads (QEMU has no TSC leaf)."""
    out = subprocess.run([VMM, "--kernel", GUEST, "--cmdline", "hello",
                          "--serial", "stdio"], capture_output=True,
                         text=True, timeout=30).stdout
    return re.search(r"tsc_khz=(\d+)", out)[1]


def wait_for(path, words, proc, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            with open(path, "rb") as f:
                text = f.read().decode(errors="replace")
            if words in text:
                return text
        if proc.poll() is not None and words != "exit":
            break
        time.sleep(0.02)
    raise RuntimeError("no '%s' in %s" % (words, path))


def guest_args(ip, mode, count, length):
    extra = ",peer=10.5.0.2" if mode == "udpsend" else ""
    return "net,ip=%s,mode=%s,count=%d,len=%d,secs=120%s" % (
        ip, mode, count, length, extra)


def canopy_cmd(d, name, cmdline, remote, local):
    return [VMM, "--name", name, "--kernel", GUEST, "--cmdline", cmdline,
            "--serial", "file:%s/%s.con" % (d, name), "--net",
            "unix=%s,local=%s" % (remote, local)]


def qemu_cmd(d, name, cmdline, remote, local, khz):
    return ["qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-cpu",
            "host,-arch-capabilities", "-m", "256", "-display", "none",
            "-vga", "none", "-nic", "none", "-no-reboot", "-serial",
            "file:%s/%s.con" % (d, name), "-kernel", GUEST, "-append",
            "tsc_khz=%s %s" % (khz, cmdline), "-netdev",
            "dgram,id=n0,local.type=unix,local.path=%s,remote.type=unix,"
            "remote.path=%s" % (local, remote), "-device",
            "virtio-net-pci,netdev=n0,disable-legacy=on"]


def one(d, kind, count, length, khz):
    a, b = os.path.join(d, "a.sock"), os.path.join(d, "b.sock")
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    mk = canopy_cmd if kind == "canopy" else (
        lambda *x: qemu_cmd(*x, khz))
    rx = subprocess.Popen(mk(d, "rx", guest_args("10.5.0.2", "udprecv",
                                                   count, length), a, b),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [rx]
    try:
        wait_for(os.path.join(d, "rx.con"), "link up", rx)
        procs.append(subprocess.Popen(
            mk(d, "tx", guest_args("10.5.0.1", "udpsend", count, length),
               b, a), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        text = wait_for(os.path.join(d, "rx.con"), "udprecv got", rx, 180)
    finally:
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    m = RECV.search(text)
    if not m or m[2] != "0" or m[3] != "0":
        raise RuntimeError("%s: lost or bad datagrams:\n%s" % (kind, text))
    return int(m[4])


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
    length = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    d = tempfile.mkdtemp(prefix="cnet-bench-")
    try:
        khz = host_tsc_khz(d)
        print("guest-to-guest UDP over a unix datagram pair, %d runs, %d "
              "datagrams of %d bytes; %s" % (runs, count, length, machine()))
        c, q = [], []
        for _ in range(runs):
            c.append(one(d, "canopy", count, length, khz))
            q.append(one(d, "qemu", count, length, khz))
        compare("datagrams per second (receiver)", c, q, "pps",
                "qemu dgram", lower_is_better=False)
    finally:
        shutil.rmtree(d)


if __name__ == "__main__":
    main()
