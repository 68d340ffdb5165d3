#!/usr/bin/python3
"""Datastore locks: uncontended acquire and release of a Disk Paxos lease
(datastore/, through tests/helpers/ds_host) against flock(2) on a local file,
and the time another host needs to take a lock over from a host that was
SIGKILLed, against the theoretical floor (heartbeat timeout + margin).

flock is a local kernel lock: it does not work across hosts (or QEMU VMs
sharing an image), so it is only the cost floor of taking a lock at all.
The datastore image lives in a temporary directory under /var/tmp (not
tmpfs, so the volume uses O_DIRECT).
Usage: bench/ds_lock.py [N]"""
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import BUILD, compare, machine

DS = os.path.join(BUILD, "bin", "canopy-ds")
HOST = os.path.join(BUILD, "tests", "helpers", "ds_host")
HB_INTERVAL_MS = 100
HB_TIMEOUT_MS = 1000
LOCKS = 16
BENCH_LOCK = 3
TAKE_LOCK = 5
TAKE_WAIT_MS = 20000
TAKEOVER_RUNS = 3


def fmt_image(img):
    subprocess.run([DS, "format", img, "--name", "bench", "--size", "64M",
                    "--locks", str(LOCKS), "--hb-interval",
                    str(HB_INTERVAL_MS), "--hb-timeout", str(HB_TIMEOUT_MS)],
                   check=True, stdout=subprocess.DEVNULL)


def info(img):
    out = subprocess.run([DS, "info", img], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    hb = re.search(r"^heartbeat:\s+(.*)$", out, re.M).group(1)
    io = re.search(r"^I/O:\s+(.*)$", out, re.M).group(1)
    margin = int(re.search(r"\+(\d+) ms margin", hb).group(1))
    return hb, io, margin


def latencies(cmd):
    """Run a ds_host bench mode; return ([acquire us], [release us])."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=600)
    acq, rel = [], []
    for line in p.stdout.splitlines():
        f = line.split()
        if f and f[0] == "lat_us":
            acq.append(float(f[1]))
            rel.append(float(f[2]))
    if p.returncode != 0 or not acq:
        raise SystemExit("%s: exit %d\n%s%s" % (" ".join(cmd), p.returncode,
                                               p.stdout, p.stderr))
    return acq, rel


def read_until(p, pattern, timeout_s):
    """Read p's stdout lines until one matches; return the match."""
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [],
                                max(0, deadline - time.monotonic()))
        if not r:
            break
        line = p.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    p.kill()
    p.wait()
    raise SystemExit("%s: no %r within %d s; output %r, stderr %r"
                     % (" ".join(p.args), pattern, timeout_s, "".join(seen),
                        p.stderr.read()))


def takeover(img):
    """Host 1 holds TAKE_LOCK and is SIGKILLed; host 2 takes the lock over.
    Returns (T reported by the taker in ms, SIGKILL -> 'acquired' in ms)."""
    holder = subprocess.Popen([HOST, img, "1", "hold", str(TAKE_LOCK)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    read_until(holder, r"^holding %d$" % TAKE_LOCK, 30)
    t_kill = time.perf_counter()
    holder.send_signal(signal.SIGKILL)
    taker = subprocess.Popen([HOST, img, "2", "take", str(TAKE_LOCK),
                              str(TAKE_WAIT_MS)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    holder.wait()
    holder.stdout.close()
    holder.stderr.close()
    m = read_until(taker, r"^acquired %d after (\d+) ms$" % TAKE_LOCK,
                   TAKE_WAIT_MS / 1000 + 30)
    t_acq = time.perf_counter()
    rest, err = taker.communicate(timeout=30)
    if taker.returncode != 0:  # it releases and leaves cleanly: exit 0
        raise SystemExit("ds_host take: exit %d\n%s%s"
                         % (taker.returncode, rest, err))
    return int(m.group(1)), (t_acq - t_kill) * 1000


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    tmp = tempfile.mkdtemp(prefix="canopy-ds-bench.", dir="/var/tmp")
    try:
        img = os.path.join(tmp, "ds.img")
        fmt_image(img)
        hb, io, margin = info(img)
        floor = HB_TIMEOUT_MS + margin
        print("datastore locks, %d iterations; %s" % (n, machine()))
        print("image %s (64 MiB, %d locks), I/O %s" % (img, LOCKS, io))
        print("heartbeat: %s" % hb)
        print("  (--hb-interval %d --hb-timeout %d; margin %d ms; "
              "takeover floor timeout+margin = %d ms)"
              % (HB_INTERVAL_MS, HB_TIMEOUT_MS, margin, floor))
        print()

        ours = latencies([HOST, img, "1", "bench", str(BENCH_LOCK), str(n)])
        base = latencies([HOST, img, "2", "flockbench",
                          os.path.join(tmp, "flock.file"), str(n)])
        compare("uncontended acquire (ds_lock_acquire vs flock LOCK_EX)",
                ours[0], base[0], "us", "flock", ours_name="datastore")
        compare("uncontended release (ds_lock_release vs flock LOCK_UN)",
                ours[1], base[1], "us", "flock", ours_name="datastore")
        print()

        taken, wall = [], []
        for i in range(TAKEOVER_RUNS):
            run_img = os.path.join(tmp, "take%d.img" % i)  # fresh each run
            fmt_image(run_img)
            t, w = takeover(run_img)
            taken.append(t)
            wall.append(w)
            os.unlink(run_img)
        print("takeover runs: %s ms as reported by the taker "
              "(its own clock, from its first try)"
              % ", ".join(str(t) for t in taken))
        print("               %s ms from SIGKILL to the taker's "
              "'acquired' line (adds its start-up and join)"
              % ", ".join("%.0f" % w for w in wall))
        print("               median %.0f ms, min %d, max %d; "
              "over the floor by median %.0f ms"
              % (statistics.median(taken), min(taken), max(taken),
                 statistics.median(taken) - floor))
        compare("lock takeover after SIGKILL of the holder",
                [float(t) for t in taken], [float(floor)], "ms",
                "timeout+margin", ours_name="datastore")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
