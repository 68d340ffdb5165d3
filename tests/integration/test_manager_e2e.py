"""canopy-managerd with the real canopy-agent and canopy-vmm running the test
guest (needs /dev/kvm): the whole VM life cycle through a python gRPC
client, state and RSS from the agent's reports, and an agent killed while
its VM runs: the host goes DISCONNECTED, the VM keeps running, and the
restarted agent re-attaches and reconnects."""
import os
import signal
import subprocess
import time

import grpc
import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib

A = mgrlib.api
C = mgrlib.common

pytestmark = pytest.mark.kvm


@pytest.fixture(autouse=True)
def _need_binaries():
    for rel in ("bin/canopy-managerd", "bin/canopy-agent", "bin/canopy-vmm",
                "guest/canopy-testguest.elf"):
        if not os.path.exists(mgrlib.binary(rel)):
            pytest.skip("SKIP: %s not built: run make" % rel)
    if not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing" % etcdlib.ETCD)


class RealAgent:
    def __init__(self, m, run_dir, log_path):
        self.m = m
        self.cmd = [mgrlib.binary("bin/canopy-agent"), "--manager", m.bus,
                    "--host-id", "node1", "--run-dir", str(run_dir),
                    "--vmm", mgrlib.binary("bin/canopy-vmm"),
                    "--stats-interval", "1", "--manager-timeout", "3"]
        self.log_path = log_path
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.cmd + self.m.agent_args("node1"), stdout=self.log,
            stderr=self.log)
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
            self.log.close()


def wait_until(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = fn()
        except grpc.RpcError:
            v = None
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def run_task(m, method, req):
    t = m.call("VmService", method, req, A().Task)
    last = list(m.stream("TaskService", "WaitTask",
                         A().WaitTaskRequest(id=t.id), A().Task))[-1]
    assert last.state == A().TASK_STATE_SUCCEEDED, last
    return last


def test_life_cycle_and_agent_restart(etcd, tmp_path):
    a = A()
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1", host_timeout=2,
                       command_timeout_ms=20000)
    run_dir = tmp_path / "run"
    agent = RealAgent(m, run_dir, tmp_path / "agent.log")
    vm_pids = []
    try:
        m.start().wait_leader()
        agent.start()

        def get_host():
            return m.call("HostService", "GetHost",
                          a.GetHostRequest(id="node1"), a.Host)

        def get_vm():
            return m.call("VmService", "GetVm", a.GetVmRequest(name="web1"),
                          a.Vm)
        wait_until(lambda: get_host().state == a.HOST_STATE_CONNECTED, 10,
                   "node1 connected")
        kernel = mgrlib.binary("guest/canopy-testguest.elf")
        run_task(m, "CreateVm", a.CreateVmRequest(spec=C().VmSpec(
            name="web1", cpus=1, memory_mib=64, kernel=kernel,
            cmdline="count=200")))
        last = run_task(m, "StartVm", a.VmPowerRequest(name="web1"))
        assert "running on host node1" in last.result
        v = wait_until(lambda: get_vm().rss_bytes > 0 and get_vm(), 10,
                       "rss from the agent's reports")
        assert v.state == C().VM_RUN_STATE_RUNNING
        assert m.cluster().vms_running == 1
        run_task(m, "PauseVm", a.VmPowerRequest(name="web1"))
        assert get_vm().state == C().VM_RUN_STATE_PAUSED
        run_task(m, "ResumeVm", a.VmPowerRequest(name="web1"))

        # Our VMM: its control socket lies in this test's run directory.
        out = subprocess.run(["pgrep", "-f", "canopy-vmm.*%s" % run_dir],
                             capture_output=True, text=True).stdout.split()
        vm_pids = [int(p) for p in out]
        assert vm_pids, "no canopy-vmm process for web1"
        agent.kill()
        wait_until(lambda: get_host().state == a.HOST_STATE_DISCONNECTED,
                   8, "node1 disconnected after the agent was killed")
        for pid in vm_pids:
            os.kill(pid, 0)  # the VM keeps running without its agent
        agent.start()
        wait_until(lambda: get_host().state == a.HOST_STATE_CONNECTED, 10,
                   "node1 connected again")
        wait_until(lambda: get_vm().state == C().VM_RUN_STATE_RUNNING, 10,
                   "web1 reported running after the re-attach")

        run_task(m, "StopVm", a.VmPowerRequest(name="web1", hard=True))
        assert get_vm().state == C().VM_RUN_STATE_STOPPED
        run_task(m, "DeleteVm", a.DeleteVmRequest(name="web1"))
        kinds = [e.kind for e in m.call(
            "EventService", "ListEvents", a.ListEventsRequest(),
            a.ListEventsResponse).events]
        for k in ("vm.powered_on", "host.disconnected", "host.connected",
                  "vm.powered_off", "vm.deleted"):
            assert k in kinds, kinds
    finally:
        agent.kill()
        for pid in vm_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        m.close()
