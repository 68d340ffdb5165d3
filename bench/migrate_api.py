#!/usr/bin/python3
"""vMotion through the whole stack: real etcd, canopy-managerd and two
canopy-agents on loopback (node1, node2); the VM is created and started
once, then migrated back and forth with MigrateVm, each run timed from the
call to the task's SUCCEEDED (WaitTask), with the downtime and total time
the task reports (Task.migration, measured by the source VMM). Baseline in
the same run: canopy-vmm to canopy-vmm driven directly over the control
socket (bench/migrate.py's canopy_once), the same guest, memory and
workload. The difference is the orchestration's cost: preparing the
destination (agent, VMM start, listen), the bus round trips, the progress
relay and the etcd commit.
Usage: bench/migrate_api.py [RUNS] [MEM_MIB]   (default 5, 256)"""
import os
import signal
import subprocess
import sys
import tempfile
import time

import grpc

from benchlib import BUILD, compare, machine
from migrate import canopy_once
from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib

NAME = "bench1"
GUEST = os.path.join(BUILD, "guest", "canopy-testguest.elf")


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


class Stack:
    """etcd, canopy-managerd and agents node1 and node2."""

    def __init__(self, tmp):
        self.a, self.c = mgrlib.api(), mgrlib.common()
        self.etcd = etcdlib.EtcdCluster(tmp, 1)
        self.tmp = tmp
        self.m = None
        self.agents = []

    def start(self):
        self.etcd.start()
        self.m = mgrlib.Manager(self.tmp, self.etcd.endpoints, "m1",
                                host_timeout=2, command_timeout_ms=20000)
        self.m.start().wait_leader()
        for h in ("node1", "node2"):
            log = open(os.path.join(self.tmp, h + ".log"), "ab")
            self.agents.append((subprocess.Popen(
                [os.path.join(BUILD, "bin", "canopy-agent"), "--manager",
                 self.m.bus, "--host-id", h, "--run-dir",
                 os.path.join(self.tmp, "run-" + h), "--vmm",
                 os.path.join(BUILD, "bin", "canopy-vmm"), "--address",
                 "127.0.0.1", "--stats-interval", "1"] +
                self.m.agent_args(h),
                stdout=log, stderr=log), log))
            wait_for(lambda: self.m.call(
                "HostService", "GetHost", self.a.GetHostRequest(id=h),
                self.a.Host).state == self.a.HOST_STATE_CONNECTED, 15,
                h + " connected")
        return self

    def task(self, method, req):
        t = self.m.call("VmService", method, req, self.a.Task)
        last = list(self.m.stream("TaskService", "WaitTask",
                                  self.a.WaitTaskRequest(id=t.id),
                                  self.a.Task, timeout=300))[-1]
        if last.state != self.a.TASK_STATE_SUCCEEDED:
            raise RuntimeError("%s failed: %s" % (method, last))
        return last

    def create(self, mem, workload):
        self.task("CreateVm", self.a.CreateVmRequest(
            host="node1", spec=self.c.VmSpec(name=NAME, cpus=1,
                                             memory_mib=mem, kernel=GUEST,
                                             cmdline=workload)))
        self.task("StartVm", self.a.VmPowerRequest(name=NAME))
        time.sleep(1.0)  # the workload is up

    def remove(self):
        self.task("StopVm", self.a.VmPowerRequest(name=NAME, hard=True))
        self.task("DeleteVm", self.a.DeleteVmRequest(name=NAME))

    def migrate(self, to):
        t0 = time.perf_counter()
        last = self.task("MigrateVm", self.a.MigrateVmRequest(
            name=NAME, to_host=to, max_downtime_ms=100))
        wall = (time.perf_counter() - t0) * 1000
        return wall, last.migration.downtime_ms, last.migration.total_ms

    def close(self):
        for p, log in self.agents:
            p.kill()
            p.wait(10)
            log.close()
        out = subprocess.run(["pgrep", "-f", "canopy-vmm --name %s .*%s" % (
            NAME, self.tmp)], capture_output=True, text=True).stdout.split()
        for pid in out:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.m:
            self.m.close()
        self.etcd.close()


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    mem = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    print("vMotion through the API on 127.0.0.1, %d MiB guest, downtime "
          "target 100 ms, %d runs each; %s" % (mem, runs, machine()))
    cases = [("idle (count)", "count=100"),
             ("dirty 16 MiB at 10k pages/s (39 MiB/s)",
              "dirty=16,rate=10000,verify=500")]
    with tempfile.TemporaryDirectory() as d:
        st = Stack(d).start()
        try:
            for title, workload in cases:
                st.create(mem, workload)
                ours, base = [], []
                where = "node1"
                for _ in range(runs):  # interleaved
                    where = "node2" if where == "node1" else "node1"
                    ours.append(st.migrate(where))
                    base.append(canopy_once(d, mem, workload))
                st.remove()
                compare(title + ": MigrateVm to SUCCEEDED (API) vs "
                        "migrate_send total (VMM direct)",
                        [o[0] for o in ours], [b[1] for b in base], "ms",
                        "vmm direct", ours_name="api task")
                compare(title + ": downtime (task) vs VMM direct",
                        [o[1] for o in ours], [b[0] for b in base], "ms",
                        "vmm direct", ours_name="api task")
                compare(title + ": stream total (task) vs VMM direct",
                        [o[2] for o in ours], [b[1] for b in base], "ms",
                        "vmm direct", ours_name="api task")
        finally:
            st.close()


if __name__ == "__main__":
    main()
