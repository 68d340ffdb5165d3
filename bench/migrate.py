#!/usr/bin/python3
"""Live migration on 127.0.0.1: canopy-vmm (--incoming, control request
migrate_send) against QEMU (-incoming tcp:, QMP migrate, query-migrate),
the same test guest and memory size, idle (`count`) and with the `dirty`
workload at a few rates. Figures: downtime and total time, median and
spread of RUNS runs, interleaved. Both get the same downtime target
(100 ms) and no bandwidth cap.

QEMU runs twice per case: with downtime-limit set to our target (100 ms)
and with its default (300 ms in QEMU 7.2).

What each downtime figure covers:
- QEMU's query-migrate "downtime" (migration/migration.c): from
  downtime_start, taken on the source just before vm_stop_force_state()
  stops the vCPUs, until migration_calculate_complete(), after the last
  bytes (RAM, then device state) were written and flushed to the socket.
  Millisecond clock (QEMU_CLOCK_REALTIME). It covers neither the
  destination loading the device state nor its vCPUs starting.
- ours, QEMU's way (pause_to_end_us): from the source's pause request
  (before the vCPU kick) until the last byte (END) was written: the same
  interval, in microseconds.
- ours, to the destination running (downtime_ms): from the same pause
  request until the destination's STARTED record (sent just after its
  vCPU threads start) is back at the source: what the guest sees, plus
  the half round trip of STARTED.
The switchover's steps (source s:, destination d:; µs, median) come from
the VMMs' logs: see docs/performance.md.

--tls: canopy-vmm over mutual TLS (--tls-ca/--tls-cert/--tls-key from a
throw-away cluster PKI, `canopy cluster issue-cert --usage both`, and
tls_name checked) against canopy-vmm over plain TCP, interleaved, idle and
at 10k pages/s; no QEMU.
--with-tls: the comparison with QEMU (all three cases) with canopy-vmm over
mutual TLS, as enrolled hosts migrate (QEMU stays on plain TCP).
Usage: bench/migrate.py [--tls | --with-tls] [RUNS] [MEM_MIB]"""
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import BUILD, compare, machine

from canopy_testlib import protos
from canopy_testlib.vmm import Control

GUEST = os.path.join(BUILD, "guest", "canopy-testguest.elf")
VMM = os.path.join(BUILD, "bin", "canopy-vmm")
TARGET_MS = 100


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise SystemExit("timed out waiting for " + what)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def warm(console, workload):
    """The workload is up: two dirty rounds, or three counts."""
    if workload.startswith("dirty"):
        return len(re.findall(r"^dirty: round \d+ .* ok$", read(console),
                              re.M)) >= 2
    return read(console).count("count ") >= 3


def check_after(console, workload):
    """The guest carries on at the destination, uncorrupted."""
    if workload.startswith("dirty"):
        n = len(re.findall(r"^dirty: round", read(console), re.M))
        wait_for(lambda: len(re.findall(r"^dirty: round", read(console),
                                        re.M)) >= n + 1, 20,
                 "a dirty round after arrival")
        if "CORRUPT" in read(console):
            raise SystemExit("guest memory corrupt after migration:\n"
                             + read(console)[-2000:])
    else:
        n = read(console).count("count ")
        wait_for(lambda: read(console).count("count ") > n, 10,
                 "a count after arrival")


def steps_of(line):
    """{"name": us} from a log line's steps="a=1 b=2"."""
    m = re.search(r'steps="([^"]*)"', line or "")
    return {k: int(v) for k, v in
            (kv.split("=") for kv in (m[1].split() if m else []))}


def switchover(src_log, dst_log):
    """The switchover step by step (µs): the source's steps (s:NAME) from
    its 'migration switchover' line, the destination's (d:NAME) from its
    'migrated VM running' line; and the two downtimes QEMU's way and ours:
    pause -> END written, pause -> STARTED back at the source."""
    sl = [x for x in src_log.splitlines() if "migration switchover" in x]
    dl = [x for x in dst_log.splitlines() if "migrated VM running" in x]
    out = {"s:" + k: v for k, v in steps_of(sl[-1] if sl else "").items()}
    out.update({"d:" + k: v for k, v in
                steps_of(dl[-1] if dl else "").items()})
    return out


def print_steps(title, runs):
    """Median µs of each switchover step over the runs."""
    names = []
    for r in runs:
        for k in r:
            if k not in names:
                names.append(k)
    cells = ["%s %d" % (k, statistics.median([r.get(k, 0) for r in runs]))
             for k in names]
    print("  switchover steps, median us (%s): %s" % (title,
                                                      ", ".join(cells)))


def canopy_once(d, mem, workload, tls=None):
    """One migration; tls: (src options, dst options, tls_name) or None."""
    src_con, dst_con = os.path.join(d, "c-src"), os.path.join(d, "c-dst")
    ctl_path, log = os.path.join(d, "c.sock"), os.path.join(d, "c-dst.log")
    for p in (src_con, dst_con, ctl_path):
        if os.path.exists(p):
            os.unlink(p)
    slog = os.path.join(d, "c-src.log")
    with open(slog, "wb") as sf:
        src = subprocess.Popen([VMM, "--kernel", GUEST, "--cmdline",
                                workload, "--memory", str(mem), "--serial",
                                "file:" + src_con, "--control", ctl_path] +
                               (tls[0] if tls else []),
                               stdout=sf, stderr=subprocess.STDOUT)
    with open(log, "wb") as lf:
        dst = subprocess.Popen([VMM, "--incoming", "tcp:127.0.0.1:0",
                                "--memory", str(mem), "--serial",
                                "file:" + dst_con] + (tls[1] if tls else []),
                               stdout=lf, stderr=subprocess.STDOUT)
    try:
        port = int(wait_for(lambda: re.search(r"listen=127\.0\.0\.1:(\d+)",
                                              read(log)), 10, "listen")[1])
        wait_for(lambda: os.path.exists(ctl_path), 10, "control socket")
        ctl = Control(ctl_path, timeout=300)
        wait_for(lambda: warm(src_con, workload), 30, "workload start")
        V = protos.vmm()
        rep = ctl.call(migrate_send=V.VmmMigrateSendRequest(
            address="tcp:127.0.0.1:%d" % port, max_downtime_ms=TARGET_MS,
            tls_name=tls[2] if tls else ""))
        if rep.status.code:
            raise SystemExit("canopy migration failed: "
                             + rep.status.message)
        check_after(dst_con, workload)
        r = rep.migrated
        steps = switchover(read(slog), read(log))
        return (r.downtime_ms, r.total_ms, r.bytes, r.pause_to_end_us / 1000,
                steps)
    finally:
        for p in (src, dst):
            p.kill()
            p.wait()


def qmp(path):
    def connect():
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return s
        except OSError:  # not there or not listening yet
            s.close()
            return None

    s = wait_for(connect, 10, "QMP socket")
    f = s.makefile("rw")
    json.loads(f.readline())  # greeting

    def call(cmd, **args):
        f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n")
        f.flush()
        while True:
            m = json.loads(f.readline())
            if "return" in m or "error" in m:
                if "error" in m:
                    raise SystemExit("QMP %s: %s" % (cmd, m["error"]))
                return m["return"]

    call("qmp_capabilities")
    return s, call


def qemu_cmd(mem, workload, console, qmp_path, incoming=None):
    cmd = ["qemu-system-x86_64", "-M", "q35", "-accel", "kvm",
           "-cpu", "host,-arch-capabilities", "-m", str(mem), "-nodefaults",
           "-no-user-config", "-display", "none", "-vga", "none",
           "-nic", "none", "-no-reboot", "-serial", "file:" + console,
           "-kernel", GUEST, "-append", workload,
           "-qmp", "unix:%s,server=on,wait=off" % qmp_path]
    if incoming:
        cmd += ["-incoming", incoming]
    return cmd


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def qemu_once(d, mem, workload, limit_ms=None):
    src_con, dst_con = os.path.join(d, "q-src"), os.path.join(d, "q-dst")
    sq, dq = os.path.join(d, "q-src.qmp"), os.path.join(d, "q-dst.qmp")
    for p in (src_con, dst_con, sq, dq):
        if os.path.exists(p):
            os.unlink(p)
    port = free_port()
    src = subprocess.Popen(qemu_cmd(mem, workload, src_con, sq))
    dst = subprocess.Popen(qemu_cmd(mem, workload, dst_con, dq,
                                    "tcp:127.0.0.1:%d" % port))
    try:
        s, call = qmp(sq)
        wait_for(lambda: warm(src_con, workload), 30, "workload start")
        params = {"max-bandwidth": 100 << 30}
        if limit_ms:
            params["downtime-limit"] = limit_ms
        call("migrate-set-parameters", **params)
        call("migrate", uri="tcp:127.0.0.1:%d" % port)
        info = wait_for(lambda: (lambda i: i if i.get("status") in
                                 ("completed", "failed") else None)(
                                     call("query-migrate")), 300,
                        "QEMU migration")
        if info["status"] != "completed":
            raise SystemExit("QEMU migration failed: %s" % info)
        check_after(dst_con, workload)
        s.close()
        return (info["downtime"], info["total-time"],
                info["ram"]["transferred"], info["downtime"])
    finally:
        for p in (src, dst):
            p.kill()
            p.wait()


def tls_creds(d):
    """Options for a source and a destination from a new cluster PKI."""
    from canopy_testlib.manager import Pki

    pki = Pki(os.path.join(d, "pki"))

    def opts(name):
        crt, key = pki.issue(name, usage="both", sans=[name])
        return ["--tls-ca", pki.ca, "--tls-cert", crt, "--tls-key", key]

    return opts("src-host"), opts("dst-host"), "dst-host"


def main_tls(runs, mem):
    """TLS against plain TCP, both canopy-vmm, interleaved."""
    print("live migration on 127.0.0.1 over mutual TLS against plain TCP, "
          "%d MiB guest, downtime target %d ms, %d runs each; %s; load "
          "before: %s" % (mem, TARGET_MS, runs, machine(),
                          open("/proc/loadavg").read().split()[:3]))
    cases = [("idle (count)", "count=100"),
             ("dirty 64 MiB at 10k pages/s (39 MiB/s)",
              "dirty=64,rate=10000,verify=500")]
    with tempfile.TemporaryDirectory() as d:
        tls = tls_creds(d)
        for title, workload in cases:
            enc, plain = [], []
            for _ in range(runs):
                enc.append(canopy_once(d, mem, workload, tls))
                plain.append(canopy_once(d, mem, workload))
            for what, i in (("downtime QEMU's way (pause -> END sent)", 3),
                            ("downtime, pause -> destination running", 0),
                            ("total time", 1)):
                compare("%s: %s" % (title, what), [o[i] for o in enc],
                        [o[i] for o in plain], "ms", "plain TCP",
                        ours_name="TLS")
            compare(title + ": bytes sent", [o[2] / 2**20 for o in enc],
                    [o[2] / 2**20 for o in plain], "MiB", "plain TCP",
                    ours_name="TLS")
            print_steps(title + ", TLS", [o[4] for o in enc])
            print_steps(title + ", plain", [o[4] for o in plain])
    print("load after: %s" % open("/proc/loadavg").read().split()[:3])


def main():
    args = [a for a in sys.argv[1:] if a not in ("--tls", "--with-tls")]
    with_tls = "--with-tls" in sys.argv[1:]
    runs = int(args[0]) if args else 5
    mem = int(args[1]) if len(args) > 1 else 1024
    if "--tls" in sys.argv[1:]:
        main_tls(runs, mem)
        return
    print("live migration on 127.0.0.1, %d MiB guest, downtime target "
          "%d ms, %d runs each; canopy over %s; %s; load before: %s" % (
              mem, TARGET_MS, runs, "mutual TLS" if with_tls else
              "plain TCP", machine(),
              open("/proc/loadavg").read().split()[:3]))
    cases = [("idle (count)", "count=100"),
             ("dirty 64 MiB at 10k pages/s (39 MiB/s)",
              "dirty=64,rate=10000,verify=500"),
             ("dirty 64 MiB at 50k pages/s (195 MiB/s)",
              "dirty=64,rate=50000,verify=500")]
    with tempfile.TemporaryDirectory() as d:
        tls = tls_creds(d) if with_tls else None
        for title, workload in cases:
            ours, base, dflt = [], [], []
            for _ in range(runs):  # interleaved: drift hits all alike
                ours.append(canopy_once(d, mem, workload, tls))
                base.append(qemu_once(d, mem, workload, TARGET_MS))
                dflt.append(qemu_once(d, mem, workload))
            for name, q in (("qemu, limit %d ms" % TARGET_MS, base),
                            ("qemu, default limit", dflt)):
                compare(title + ": downtime QEMU's way (stop -> last byte "
                        "sent)", [o[3] for o in ours], [b[0] for b in q],
                        "ms", name)
                compare(title + ": total time", [o[1] for o in ours],
                        [b[1] for b in q], "ms", name)
                compare(title + ": bytes sent", [o[2] / 2**20 for o in ours],
                        [b[2] / 2**20 for b in q], "MiB", name)
            compare(title + ": ours, pause -> destination running "
                    "(STARTED back) vs QEMU's own downtime",
                    [o[0] for o in ours], [b[0] for b in base], "ms",
                    "qemu, limit %d ms" % TARGET_MS)
            print_steps(title, [o[4] for o in ours])
    print("load after: %s" % open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    main()
