#!/usr/bin/python3
"""Datastore file I/O: throughput of a thick (allocated) 256 MiB file on the
datastore (datastore/, through tests/helpers/ds_io: ds_file_pread and
ds_file_pwrite) against a plain, allocated 256 MiB file in the same
directory opened the same way (O_DIRECT | O_DSYNC), for 4 KiB random reads
and writes and 1 MiB sequential reads and writes; the goal is at least 95%
of raw. Then the cost of thin allocation: the first sequential write of a
new 128 MiB thin file (every 1 MiB write allocates and zeroes a block under
the namespace lock) against writing a fresh, not preallocated local file.

The image lives in a temporary directory under /var/tmp (not tmpfs, so the
volume uses O_DIRECT). Runs alternate ours and the baseline so drift hits
both alike.
Usage: bench/ds_io.py [SECONDS]"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

from benchlib import BUILD, compare, machine

DS = os.path.join(BUILD, "bin", "canopy-ds")
IO = os.path.join(BUILD, "tests", "helpers", "ds_io")
PATTERNS = ["randread4k", "randwrite4k", "seqread1m", "seqwrite1m"]
RUNS = 3
FILE_MIB = 256
FIRST_MIB = 128
GOAL = 0.95


class Hosts:
    """A fresh host id for every ds run, so no run waits on a slot."""

    def __init__(self):
        self.next = 0

    def take(self):
        self.next += 1
        if self.next > 64:
            raise SystemExit("out of host ids")
        return str(self.next)


def run(cmd, pattern):
    """Run ds_io; return the fields of its RESULT line after the name."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=600)
    m = re.search(r"^RESULT %s (.*)$" % pattern, p.stdout, re.M)
    if p.returncode != 0 or not m:
        raise SystemExit("%s: exit %d\n%s%s" % (" ".join(cmd), p.returncode,
                                               p.stdout, p.stderr))
    return [float(x) for x in m.group(1).split()]


def io_mode(img):
    out = subprocess.run([DS, "info", img], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    m = re.search(r"^I/O:\s+(.*)$", out, re.M)
    return m.group(1) if m else "?"


def main():
    secs = sys.argv[1] if len(sys.argv) > 1 else "3"
    float(secs)  # refuse nonsense before formatting anything
    tmp = tempfile.mkdtemp(prefix="canopy-ds-io.", dir="/var/tmp")
    try:
        img = os.path.join(tmp, "ds.img")
        raw = os.path.join(tmp, "raw.file")
        subprocess.run([DS, "format", img, "--name", "io", "--size", "1G",
                        "--locks", "16"], check=True,
                       stdout=subprocess.DEVNULL)
        hosts = Hosts()
        print("datastore file I/O, %s s per run, %d runs each; %s"
              % (secs, RUNS, machine()))
        print("image %s (1 GiB, 16 locks), I/O %s; files %d MiB "
              "(datastore: thick), baseline: local file in the same "
              "directory, O_DIRECT|O_DSYNC, preallocated and written"
              % (img, io_mode(img), FILE_MIB))
        print()

        ratios = {}
        for pat in PATTERNS:
            ours, base, iops_o, iops_b = [], [], [], []
            for _ in range(RUNS):
                r = run([IO, img, hosts.take(), "ds", "thick",
                         str(FILE_MIB), pat, secs], pat)
                ours.append(r[0])
                iops_o.append(r[1])
                r = run([IO, img, "1", "raw", raw, str(FILE_MIB), pat, secs],
                        pat)
                base.append(r[0])
                iops_b.append(r[1])
            _, _, ratio = compare("%s throughput (IOPS: datastore %s, "
                                  "raw %s)"
                                  % (pat, "/".join("%.0f" % x
                                                   for x in iops_o),
                                     "/".join("%.0f" % x for x in iops_b)),
                                  ours, base, "MiB/s", "raw",
                                  lower_is_better=False,
                                  ours_name="datastore")
            ratios[pat] = ratio
        print()
        print("goal: >= %.0f%% of raw for allocated files" % (GOAL * 100))
        for pat in PATTERNS:
            print("  %-12s %5.1f%% of raw  %s"
                  % (pat, ratios[pat] * 100,
                     "meets the goal" if ratios[pat] >= GOAL
                     else "BELOW the goal"))
        print()

        ours, base = [], []
        for i in range(RUNS):
            r = run([IO, img, hosts.take(), "ds", "thin%d" % i,
                     str(FIRST_MIB), "firstwrite"], "firstwrite")
            ours.append(r[0])
            fresh = os.path.join(tmp, "fresh%d.file" % i)
            r = run([IO, img, "1", "raw", fresh, str(FIRST_MIB),
                     "firstwrite"], "firstwrite")
            base.append(r[0])
            os.unlink(fresh)
        compare("thin first write, %d MiB sequential in 1 MiB writes "
                "(allocation on every block vs a fresh local file)"
                % FIRST_MIB, ours, base, "MiB/s", "raw",
                lower_is_better=False, ours_name="datastore")
        fsck = subprocess.run([DS, "fsck", img], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        print("after the runs: %s" % fsck.stdout.strip())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
