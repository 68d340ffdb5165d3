"""Two canopy-managerd on one etcd: the standby refuses API calls naming the
leader; SIGKILL of the leader hands over within the lease TTL (the time is
printed), the task the old leader left running is failed with the reason,
the agent follows to the new leader on the same bus address; a clean stop
hands over at once."""
import os
import signal
import time

import grpc
import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib
from canopy_testlib.ports import free_port

A = mgrlib.api
C = mgrlib.common
LEASE_TTL = 3  # MGR_LEASE_TTL_S


@pytest.fixture(autouse=True)
def _need_binaries():
    for rel in ("bin/canopy-managerd", "tests/helpers/mgr_fake_agent"):
        if not os.path.exists(mgrlib.binary(rel)):
            pytest.skip("SKIP: %s not built: run make" % rel)
    if not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing" % etcdlib.ETCD)


@pytest.fixture
def pair(etcd, tmp_path):
    bus = free_port()
    ms = [mgrlib.Manager(tmp_path, etcd.endpoints, mid, host_timeout=2,
                         command_timeout_ms=60000, bus_port=bus)
          for mid in ("m1", "m2")]
    try:
        ms[0].start().wait_leader()
        ms[1].start()
        yield ms
    finally:
        for m in ms:
            m.close()


def standby_error(m):
    with pytest.raises(grpc.RpcError) as e:
        m.cluster()
    return e.value.code(), e.value.details()


def test_standby_names_the_leader(pair):
    m1, m2 = pair
    code, msg = standby_error(m2)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "standby" in msg and "leader is m1 at %s" % m1.addr in msg
    code, _ = standby_error(m2)  # every call, not only GetCluster
    with pytest.raises(grpc.RpcError) as e:
        m2.call("VmService", "ListVms", A().ListVmsRequest(),
                A().ListVmsResponse)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert m1.cluster().leader == "m1"


def test_failover_fails_running_task(pair):
    m1, m2 = pair
    a = A()
    agent = mgrlib.FakeAgent(m1, "h1")
    try:
        agent.expect("registered 0")
        t = m1.call("VmService", "CreateVm", a.CreateVmRequest(
            spec=C().VmSpec(name="web1", cpus=1, memory_mib=64,
                            kernel="/k")), a.Task)
        agent.expect("command VM_ACTION_CREATE web1")
        agent.mode("silent")
        t = m1.call("VmService", "StartVm", a.VmPowerRequest(
            name="web1", timeout_ms=60000), a.Task)
        agent.expect("command VM_ACTION_START web1")
        t0 = time.monotonic()
        m1.kill(signal.SIGKILL)
        cl = m2.wait_leader(timeout=LEASE_TTL + 10)
        took = time.monotonic() - t0
        print("manager failover: %.2f s (lease TTL %d s)" % (took, LEASE_TTL))
        assert cl.leader == "m2" and cl.leader_address == m2.addr
        assert took < LEASE_TTL + 2.5
        got = m2.call("TaskService", "GetTask", a.GetTaskRequest(id=t.id),
                      a.Task)
        assert got.state == a.TASK_STATE_FAILED
        assert got.error.code == grpc.StatusCode.ABORTED.value[0]
        assert "manager m1 failed while the task was running" in \
            got.error.message
        assert got.end_unix_ms > 0
        active = m2.call("TaskService", "ListTasks", a.ListTasksRequest(
            active_only=True), a.ListTasksResponse).tasks
        assert list(active) == []
        kinds = [e.kind for e in m2.call(
            "EventService", "ListEvents", a.ListEventsRequest(),
            a.ListEventsResponse).events]
        assert "task.failed" in kinds and "manager.leader" in kinds
        # The VM's desired state falls back to what was observed (off), so
        # it can be started again once the agent is back on the new leader.
        vm = m2.call("VmService", "GetVm", a.GetVmRequest(name="web1"),
                     a.Vm)
        assert vm.desired == a.POWER_STATE_OFF
        # The agent notices, reconnects to the same bus address (now
        # bound by m2) and registers again.
        agent.expect("disconnected", timeout=10)
        agent.expect("registered 0", timeout=15)
        h = m2.call("HostService", "GetHost", a.GetHostRequest(id="h1"),
                    a.Host)
        assert h.state == a.HOST_STATE_CONNECTED
        agent.mode("ok")
        t = m2.call("VmService", "StartVm", a.VmPowerRequest(name="web1"),
                    a.Task)
        last = list(m2.stream("TaskService", "WaitTask",
                              a.WaitTaskRequest(id=t.id), a.Task))[-1]
        assert last.state == a.TASK_STATE_SUCCEEDED, last
    finally:
        agent.close()


def test_clean_stop_hands_over_at_once(pair):
    m1, m2 = pair
    t0 = time.monotonic()
    m1.kill(signal.SIGTERM)  # releases the lease
    m2.wait_leader(timeout=LEASE_TTL + 5)
    took = time.monotonic() - t0
    print("handover after a clean stop: %.2f s" % took)
    assert took < LEASE_TTL - 0.5
    assert "leadership released" in m1.log_text()


def test_etcd_member_killed(etcd3, tmp_path):
    """Three etcd members; the one the manager talks to first is killed:
    the manager keeps leading (or leads again) and keeps serving."""
    a = A()
    m = mgrlib.Manager(tmp_path, etcd3.endpoints, "m1", host_timeout=3)
    agent = None
    try:
        m.start().wait_leader()
        agent = mgrlib.FakeAgent(m, "h1")
        agent.expect("registered 0")
        etcd3.kill(0)
        t0 = time.monotonic()
        deadline = t0 + 15
        while True:
            try:
                t = m.call("VmService", "CreateVm", a.CreateVmRequest(
                    spec=C().VmSpec(name="web1", cpus=1, memory_mib=64,
                                    kernel="/k")), a.Task)
                break
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                assert time.monotonic() < deadline, e.details()
                time.sleep(0.2)
        print("API writes again %.2f s after the etcd member was killed" %
              (time.monotonic() - t0))
        last = list(m.stream("TaskService", "WaitTask",
                             a.WaitTaskRequest(id=t.id), a.Task))[-1]
        assert last.state == a.TASK_STATE_SUCCEEDED, last
        assert m.cluster().vms == 1
        assert m.call("HostService", "GetHost", a.GetHostRequest(id="h1"),
                      a.Host).vms == 1
        # The inventory index's watch moved to another member and resumed
        # there: no re-read of the inventory.
        assert "inventory index ready" in m.log_text()
        assert "inventory index re-reading" not in m.log_text()
    finally:
        if agent:
            agent.close()
        m.close()
