#!/usr/bin/python3
"""Power-on through canopy-agent: a VmCommand START from a fake manager
until the agent's OK (the VMM reports RUNNING), and until the guest's
banner in its console file; baseline: exec canopy-vmm directly with the
same options and poll its control socket and console the same way (what
the agent adds: the bus round trip, fork/exec, its status polling).
Test guest `count`, 64 MiB, 1 vCPU. Usage: bench/agent_start.py [RUNS]"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import BUILD, compare, machine
from canopy_testlib import protos
from canopy_testlib.fakemgr import Agent, FakeManager
from canopy_testlib.vmm import Control

GUEST = os.path.join(BUILD, "guest", "canopy-testguest.elf")
BANNER = "canopy-testguest: hello"


def wait_file(path, text, timeout=10):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            with open(path, "rb") as f:
                if text.encode() in f.read():
                    return time.perf_counter()
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    raise RuntimeError("no %r in %s" % (text, path))


def spec():
    return protos.common().VmSpec(name="b", cpus=1, memory_mib=64,
                                  cmdline="count=1000", kernel=GUEST)


def via_agent(mgr, run, i):
    vm = "bench%d" % i
    st = mgr.command("host1", "CREATE", vm, spec())
    assert st.code == 0, st
    t0 = time.perf_counter()
    st = mgr.command("host1", "START", vm)
    t1 = time.perf_counter()
    assert st.code == 0, st
    t2 = wait_file(os.path.join(run, "vms", vm, "console.log"), BANNER)
    assert mgr.command("host1", "STOP_HARD", vm).code == 0
    assert mgr.command("host1", "DELETE", vm).code == 0
    return (t1 - t0) * 1000, (t2 - t0) * 1000


def direct(tmp, i):
    d = os.path.join(tmp, "direct%d" % i)
    os.makedirs(d)
    cmd = [os.path.join(BUILD, "bin", "canopy-vmm"), "--name", "b",
           "--kernel", GUEST, "--cmdline", "count=1000", "--memory", "64",
           "--cpus", "1", "--serial", "file:%s/console.log" % d,
           "--control", "control.sock"]
    log = open(os.path.join(d, "vmm.log"), "wb")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=d, stdout=log, stderr=log,
                         start_new_session=True)
    t1 = None
    poll = 0.002
    while t1 is None:
        try:
            c = Control(os.path.join(d, "control.sock"))
            st = c.status()
            c.close()
            if st.state == protos.common().VM_RUN_STATE_RUNNING:
                t1 = time.perf_counter()
        except (OSError, ConnectionError):
            time.sleep(poll)  # as the agent: 2 ms doubling up to 50
            poll = min(poll * 2, 0.05)
    t2 = wait_file(os.path.join(d, "console.log"), BANNER)
    p.kill()
    p.wait()
    log.close()
    return (t1 - t0) * 1000, (t2 - t0) * 1000


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    print("machine: %s" % machine())
    tmp = tempfile.mkdtemp(prefix="agent-bench-")
    run = os.path.join(tmp, "run")
    mgr = FakeManager()
    agent = Agent(BUILD, run, mgr.endpoint, "host1",
                  log=os.path.join(tmp, "agent.log"))
    try:
        mgr.wait_body("register")
        ours_ok, ours_banner, base_ok, base_banner = [], [], [], []
        for i in range(runs):
            a, b = via_agent(mgr, run, i)
            ours_ok.append(a)
            ours_banner.append(b)
            a, b = direct(tmp, i)
            base_ok.append(a)
            base_banner.append(b)
        compare("START -> answer OK (VMM running)", ours_ok, base_ok, "ms",
                "exec + poll", ours_name="canopy-agent")
        compare("START -> guest banner", ours_banner, base_banner, "ms",
                "exec + poll", ours_name="canopy-agent")
    finally:
        agent.stop()
        mgr.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
