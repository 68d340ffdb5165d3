#!/usr/bin/python3
"""Power-on through the whole stack: real etcd, canopy-managerd and one
canopy-agent on loopback; the VM is created once with CreateVm, then each
run sends StartVm over gRPC and measures the time until its task has
SUCCEEDED and until the guest's banner can be read with ReadConsole (the
path `canopy vm console` uses; polled every 5 ms from a second thread), then
StopVm --hard and waits for STOPPED. The CLI: wall time of `canopy vm start
NAME` (it waits for the task), and of `canopy vm show NAME` (one call: the
CLI's own fixed cost). Baseline in the same run: canopy-vmm exec'd
directly with the same options, its control socket polled until RUNNING and
its serial file until the banner (as bench/agent_start.py).
Test guest `count`, 64 MiB, 1 vCPU. Needs /dev/kvm and etcd.
Usage: bench/vm_start.py [RUNS]   (default 15)"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc

from agent_start import BANNER, GUEST, direct
from benchlib import BUILD, compare, fmt, machine, summary
from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib

NAME = "bench1"
POLL_S = 0.005  # ReadConsole polling interval while waiting for the banner
U64_MAX = (1 << 64) - 1


def wait_for(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fn():
                return
        except grpc.RpcError:
            pass
        time.sleep(0.01)
    raise RuntimeError("timed out waiting for " + what)


def vmm_pids(run_dir):
    """canopy-vmm processes whose command line names run_dir."""
    pids = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            continue
        if argv[0].endswith(b"canopy-vmm") and \
                any(run_dir.encode() in a for a in argv):
            pids.append(int(d))
    return pids


class Stack:
    """etcd, canopy-managerd and one canopy-agent (host node1)."""

    def __init__(self, tmp):
        self.a, self.c = mgrlib.api(), mgrlib.common()
        self.etcd = etcdlib.EtcdCluster(tmp, 1)
        self.m = None
        self.agent = None
        self.tmp = tmp

    def start(self):
        self.etcd.start()
        self.m = mgrlib.Manager(self.tmp, self.etcd.endpoints, "m1",
                                host_timeout=2, command_timeout_ms=20000)
        self.m.start().wait_leader()
        self.alog = open(os.path.join(self.tmp, "agent.log"), "ab")
        self.agent = subprocess.Popen(
            [os.path.join(BUILD, "bin", "canopy-agent"), "--manager",
             self.m.bus, "--host-id", "node1", "--run-dir",
             os.path.join(self.tmp, "run"), "--vmm",
             os.path.join(BUILD, "bin", "canopy-vmm"),
             "--stats-interval", "1", "--manager-timeout", "3"] +
            self.m.agent_args("node1"),
            stdout=self.alog, stderr=self.alog)
        wait_for(lambda: self.host().state == self.a.HOST_STATE_CONNECTED,
                 15, "node1 connected")
        return self

    def host(self):
        return self.m.call("HostService", "GetHost",
                           self.a.GetHostRequest(id="node1"), self.a.Host)

    def vm(self):
        return self.m.call("VmService", "GetVm",
                           self.a.GetVmRequest(name=NAME), self.a.Vm)

    def task(self, method, req, times=None):
        """Run a task; return the time it has SUCCEEDED (perf_counter).
        times: a list to append the time the call returned the task to."""
        t = self.m.call("VmService", method, req, self.a.Task)
        if times is not None:
            times.append(time.perf_counter())
        last = list(self.m.stream("TaskService", "WaitTask",
                                  self.a.WaitTaskRequest(id=t.id),
                                  self.a.Task))[-1]
        done = time.perf_counter()
        if last.state != self.a.TASK_STATE_SUCCEEDED:
            raise RuntimeError("%s failed: %s" % (method, last))
        return done

    def console_size(self):
        try:
            return self.read(U64_MAX).next_offset
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return 0  # never ran: no console yet
            raise

    def read(self, offset):
        return self.m.call("VmService", "ReadConsole",
                           self.a.ReadConsoleRequest(name=NAME, offset=offset),
                           self.a.ReadConsoleResponse)

    def stop_vm(self):
        self.task("StopVm", self.a.VmPowerRequest(name=NAME, hard=True))
        wait_for(lambda: self.vm().state == self.c.VM_RUN_STATE_STOPPED, 10,
                 "%s stopped" % NAME)

    def close(self):
        # An agent that dies leaves its VMMs running: end ours by pid.
        for pid in vmm_pids(os.path.join(self.tmp, "run")):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.agent and self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait(10)
            self.alog.close()
        if self.m:
            self.m.close()
        self.etcd.close()


def banner_watch(st, offset, out, stop):
    """Poll ReadConsole from offset; out[0] = when the banner was seen."""
    seen = b""
    while not stop.is_set():
        try:
            r = st.read(offset)
            seen += r.data
            offset = r.next_offset
            if BANNER.encode() in seen:
                out[0] = time.perf_counter()
                return
        except grpc.RpcError:
            pass  # not started yet: try again
        time.sleep(POLL_S)


def via_api(st):
    base = st.console_size()
    out, stop = [None], threading.Event()
    th = threading.Thread(target=banner_watch, args=(st, base, out, stop))
    t0 = time.perf_counter()
    th.start()
    accepted = []
    t1 = st.task("StartVm", st.a.VmPowerRequest(name=NAME), accepted)
    th.join(20)
    stop.set()
    if out[0] is None:
        raise RuntimeError("no banner through ReadConsole")
    st.stop_vm()
    return [(t - t0) * 1000 for t in (accepted[0], t1, out[0])]


def cli(st, *args):
    """Run `canopy --server ADDR args`; its wall time in ms."""
    cmd = [os.path.join(BUILD, "bin", "canopy"), "--server", st.m.addr]
    env = st.m.cli_env()
    t0 = time.perf_counter()
    p = subprocess.run(cmd + list(args), capture_output=True, text=True,
                       timeout=60, env=env)
    t1 = time.perf_counter()
    if p.returncode != 0:
        raise RuntimeError("canopy %s: %d %s" % (" ".join(args),
                                                 p.returncode, p.stderr))
    return (t1 - t0) * 1000


def via_cli(st):
    """`canopy vm start` wall time; `canopy vm show` (one unary call) as
    the CLI's fixed cost: process start, channel connect."""
    start = cli(st, "vm", "start", NAME)
    if st.vm().state != st.c.VM_RUN_STATE_RUNNING:
        raise RuntimeError("canopy vm start returned, VM not running")
    show = cli(st, "vm", "show", NAME)
    st.stop_vm()
    return start, show


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    print("machine: %s, load %s" % (machine(), os.getloadavg()))
    tmp = tempfile.mkdtemp(prefix="vm-start-bench-")
    st = Stack(tmp)
    try:
        st.start()
        st.task("CreateVm", st.a.CreateVmRequest(spec=st.c.VmSpec(
            name=NAME, cpus=1, memory_mib=64, kernel=GUEST,
            cmdline="count=1000")))
        api_ok, api_banner, base_ok, base_banner = [], [], [], []
        accepted, cli_start, cli_show = [], [], []
        for i in range(runs):
            t, a, b = via_api(st)
            accepted.append(t)
            api_ok.append(a)
            api_banner.append(b)
            a, b = via_cli(st)
            cli_start.append(a)
            cli_show.append(b)
            a, b = direct(tmp, i)
            base_ok.append(a)
            base_banner.append(b)
        print("StartVm -> call returned (task created, etcd written)")
        print("  %-10s  %s" % ("canopy API", fmt(summary(accepted), "ms")))
        compare("StartVm -> task SUCCEEDED (VMM running)", api_ok, base_ok,
                "ms", "exec + poll", ours_name="canopy API")
        compare("StartVm -> banner through ReadConsole", api_banner,
                base_banner, "ms", "exec + serial file",
                ours_name="canopy API")
        compare("`canopy vm start` wall time (VMM running)", cli_start,
                base_ok, "ms", "exec + poll", ours_name="canopy CLI")
        print("`canopy vm show` wall time (the CLI's fixed cost)")
        print("  %-10s  %s" % ("canopy CLI", fmt(summary(cli_show), "ms")))
        print("load after: %s" % (os.getloadavg(),))
    finally:
        st.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
