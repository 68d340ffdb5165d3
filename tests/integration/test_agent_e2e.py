"""canopy-agent under the real control plane: etcd, canopy-managerd, the
agent and canopy-vmm with the test guest. A VM powered on through the API
keeps running while the agent is killed and restarted; the restarted agent
adopts it, the manager sees it running, and stops it through the agent."""
import os
import signal
import subprocess
import time

import grpc
import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib

pytestmark = pytest.mark.kvm

A = mgrlib.api
C = mgrlib.common


@pytest.fixture(autouse=True)
def _need_binaries():
    for rel in ("bin/canopy-managerd", "bin/canopy-agent", "bin/canopy-vmm",
                "guest/canopy-testguest.elf"):
        if not os.path.exists(mgrlib.binary(rel)):
            pytest.skip("SKIP: %s not built: run make" % rel)
    if not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing (Debian package "
                    "etcd-server)" % etcdlib.ETCD)


@pytest.fixture
def plane(etcd, tmp_path):
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1", host_timeout=2,
                       command_timeout_ms=8000)
    agents = []
    run_dir = tmp_path / "h1"

    def agent():
        log = open(tmp_path / "agent.log", "ab")
        p = subprocess.Popen([mgrlib.binary("bin/canopy-agent"),
                              "--manager", m.bus, "--host-id", "h1",
                              "--run-dir", str(run_dir),
                              "--stats-interval", "1",
                              "--manager-timeout", "2"] +
                             m.agent_args("h1"),
                             stdout=log, stderr=log)
        agents.append((p, log))
        return p

    try:
        m.start().wait_leader()
        yield m, agent, run_dir
    finally:
        for p, log in agents:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            log.close()
        for pid in vmm_pids(run_dir):
            os.kill(pid, signal.SIGKILL)
        m.close()


def vmm_pids(run_dir):
    out = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and os.readlink("/proc/%s/cwd" % p).startswith(
                    str(run_dir) + "/"):
                out.append(int(p))
        except OSError:
            pass
    return out


def vm(m, name):
    return m.call("VmService", "GetVm", A().GetVmRequest(name=name), A().Vm)


class _Absent:
    state = None


def host(m, hid):
    """The host record, or one whose state is None before it registers."""
    try:
        return m.call("HostService", "GetHost", A().GetHostRequest(id=hid),
                      A().Host)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return _Absent()


def final(m, task):
    got = list(m.stream("TaskService", "WaitTask",
                        A().WaitTaskRequest(id=task.id), A().Task,
                        timeout=30))
    assert got and got[-1].state == A().TASK_STATE_SUCCEEDED, got[-1:]
    return got[-1]


def wait_until(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def test_agent_restart_under_the_manager(plane):
    m, agent, run_dir = plane
    a1 = agent()
    wait_until(lambda: host(m, "h1").state == A().HOST_STATE_CONNECTED, 15,
               "h1 connected")
    spec = C().VmSpec(name="e2e1", cpus=1, memory_mib=64, cmdline="count=50",
                      kernel=mgrlib.binary("guest/canopy-testguest.elf"))
    final(m, m.call("VmService", "CreateVm",
                    A().CreateVmRequest(spec=spec, host="h1"), A().Task))
    assert (run_dir / "vms" / "e2e1" / "spec.pb").exists()
    final(m, m.call("VmService", "StartVm", A().VmPowerRequest(name="e2e1"),
                    A().Task))
    assert vm(m, "e2e1").state == C().VM_RUN_STATE_RUNNING
    pids = vmm_pids(run_dir)
    assert len(pids) == 1
    wait_until(lambda: vm(m, "e2e1").rss_bytes > 0, 5, "rss reported")

    # The agent dies; the VM does not.
    a1.kill()
    a1.wait(10)
    time.sleep(0.5)
    assert vmm_pids(run_dir) == pids
    wait_until(lambda: host(m, "h1").state == A().HOST_STATE_DISCONNECTED,
               10, "h1 disconnected")
    # A new agent adopts it; the manager sees the host and VM again.
    agent()
    wait_until(lambda: host(m, "h1").state == A().HOST_STATE_CONNECTED, 15,
               "h1 connected again")
    v = vm(m, "e2e1")
    assert (v.state, v.host) == (C().VM_RUN_STATE_RUNNING, "h1")
    assert vmm_pids(run_dir) == pids
    # Stopping goes through the restarted agent to the adopted VMM.
    final(m, m.call("VmService", "StopVm",
                    A().VmPowerRequest(name="e2e1", hard=True), A().Task))
    assert vm(m, "e2e1").state == C().VM_RUN_STATE_STOPPED
    wait_until(lambda: not vmm_pids(run_dir), 5, "the VMM gone")


def test_vmm_crash_reported_to_the_manager(plane):
    m, agent, run_dir = plane
    agent()
    wait_until(lambda: host(m, "h1").state == A().HOST_STATE_CONNECTED, 15,
               "h1 connected")
    spec = C().VmSpec(name="e2e2", cpus=1, memory_mib=64, cmdline="count=50",
                      kernel=mgrlib.binary("guest/canopy-testguest.elf"))
    final(m, m.call("VmService", "CreateVm",
                    A().CreateVmRequest(spec=spec, host="h1"), A().Task))
    final(m, m.call("VmService", "StartVm", A().VmPowerRequest(name="e2e2"),
                    A().Task))
    (pid,) = vmm_pids(run_dir)
    os.kill(pid, signal.SIGKILL)
    v = wait_until(lambda: (lambda v: v if v.state ==
                            C().VM_RUN_STATE_STOPPED else None)(
                                vm(m, "e2e2")), 10, "the VM stopped")
    assert "killed by signal 9" in v.stop_reason, v
