"""canopy-managerd, vMotion bad input (no KVM): MigrateVm requests that
name nothing, a bad --migrations-per-host, and a registered peer on the
agent bus sending MigrateProgress / MigrateDone for tasks that do not exist
or are not its own: ignored, no task or VM appears, the daemon stays up."""
import os
import subprocess
import time

import grpc
import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib
from canopy_testlib import protos

A = mgrlib.api


@pytest.fixture(autouse=True)
def _need_binaries():
    if not os.path.exists(mgrlib.binary("bin/canopy-managerd")):
        pytest.skip("SKIP: bin/canopy-managerd not built: run make")
    if not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing" % etcdlib.ETCD)


@pytest.mark.parametrize("value", ["0", "65", "four"])
def test_bad_limit_option(value):
    r = subprocess.run([mgrlib.binary("bin/canopy-managerd"), "--etcd",
                        "127.0.0.1:1", "--migrations-per-host", value],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "--migrations-per-host" in r.stderr


@pytest.fixture
def mgr(etcd, tmp_path):
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1")
    try:
        m.start().wait_leader()
        yield m
    finally:
        m.close()


def test_migrate_vm_names_nothing(mgr):
    for req, code in [(A().MigrateVmRequest(), "INVALID_ARGUMENT"),
                      (A().MigrateVmRequest(name="nosuch", to_host="h1"),
                       "NOT_FOUND"),
                      (A().MigrateVmRequest(name="BAD NAME"),
                       "INVALID_ARGUMENT")]:
        with pytest.raises(grpc.RpcError) as e:
            mgr.call("VmService", "MigrateVm", req, A().Task)
        assert e.value.code().name == code, e.value.details()


def test_forged_migration_reports(mgr):
    zmq = pytest.importorskip("zmq", reason="SKIP: python3-zmq missing")
    ag = protos.load("canopy_agent")
    s = mgr.bus_dealer("h9")

    def send(rid=0, **body):
        env = ag.Envelope(version=1, host_id="h9", request_id=rid)
        for k, v in body.items():
            getattr(env, k).CopyFrom(v)
        s.send(env.SerializeToString())

    send(1, register=ag.AgentRegister(hostname="h9", cpus=2,
                                      memory_mib=1024))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        env = ag.Envelope.FromString(s.recv())
        if env.reply_to == 1:
            assert env.result.status.code == 0, env
            break
    send(migrate_progress=ag.MigrateProgress(task_id="nosuch", vm_id="x",
                                             phase="precopy", round=3))
    send(migrate_progress=ag.MigrateProgress())
    send(migrate_done=ag.MigrateDone(task_id="nosuch", vm_id="web1",
                                     status=protos.common().Status(code=0)))
    send(migrate_done=ag.MigrateDone())
    send(7, migrate_done=ag.MigrateDone(task_id="x" * 5000))
    send(migrate_ready=ag.MigrateReady(address="tcp:1.2.3.4:5"))
    time.sleep(0.5)
    assert mgr.proc.poll() is None
    tasks = mgr.call("TaskService", "ListTasks", A().ListTasksRequest(),
                     A().ListTasksResponse).tasks
    assert list(tasks) == []
    assert mgr.cluster().hosts_connected == 1
    s.close()


# CPU feature registers as an agent registers them (AgentRegister.
# cpu_features, docs/migration-protocol.md "CPU features"): 1.ecx, 1.edx,
# 7.0.ebx, 7.0.ecx, 7.0.edx, 0xd.1.eax, 0x80000001.ecx, 0x80000001.edx.
FEATS = [0x7ed8320b, 0x178bfbff, 0x219c91a9, 0x00400004, 0x00000010,
         0x0000000f, 0x000005f3, 0x2fd3fbff]


def test_cpu_features_admission(mgr):
    """MigrateVm compares the source host's CPU feature registers with the
    destination's before anything starts: one bit short is refused with
    FAILED_PRECONDITION naming the register and bits; a bit canopy-vmm
    sets itself (1.ecx hypervisor) or a host that reported none is not
    refused (the receiving VMM still checks)."""
    C = mgrlib.common
    short = list(FEATS)
    short[2] &= ~0x20  # 7.0.ebx AVX2
    hv = list(FEATS)
    hv[0] &= ~(1 << 31)  # 1.ecx hypervisor: set by canopy-vmm itself
    agents = [mgrlib.FakeAgent(mgr, "h1", cpu_features=FEATS),
              mgrlib.FakeAgent(mgr, "h2", cpu_features=short),
              mgrlib.FakeAgent(mgr, "h3", cpu_features=hv),
              mgrlib.FakeAgent(mgr, "h4")]
    try:
        for a in agents:
            a.expect("registered 0")
        h1 = mgr.call("HostService", "GetHost", A().GetHostRequest(id="h1"),
                      A().Host)
        assert list(h1.cpu_features) == FEATS
        h4 = mgr.call("HostService", "GetHost", A().GetHostRequest(id="h4"),
                      A().Host)
        assert list(h4.cpu_features) == []
        spec = C().VmSpec(name="web1", cpus=1, memory_mib=64,
                          kernel="/boot/guest.elf")
        t = mgr.call("VmService", "CreateVm",
                     A().CreateVmRequest(spec=spec, host="h1"), A().Task)
        mgr.wait_task(t.id)
        t = mgr.call("VmService", "StartVm", A().VmPowerRequest(name="web1"),
                     A().Task)
        assert mgr.wait_task(t.id).state == A().TASK_STATE_SUCCEEDED

        with pytest.raises(grpc.RpcError) as e:
            mgr.call("VmService", "MigrateVm",
                     A().MigrateVmRequest(name="web1", to_host="h2"),
                     A().Task)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert ("host h2's CPU lacks features vm web1 may use on host h1 "
                "(CPUID 7.0.ebx bits 0x00000020)") in e.value.details()
        tasks = mgr.call("TaskService", "ListTasks", A().ListTasksRequest(),
                         A().ListTasksResponse).tasks
        assert not [x for x in tasks if x.kind == "vm.migrate"]

        for dst in ("h3", "h4"):
            t = mgr.call("VmService", "MigrateVm",
                         A().MigrateVmRequest(name="web1", to_host=dst),
                         A().Task)
            mgr.call("TaskService", "CancelTask",
                     A().CancelTaskRequest(id=t.id), A().Task)
            last = mgr.wait_task(t.id)
            assert last.state == A().TASK_STATE_CANCELLED, last
    finally:
        for a in agents:
            a.close()


@pytest.mark.parametrize("n", [1, 7, 9])
def test_cpu_features_wrong_count_refused(mgr, n):
    a = mgrlib.FakeAgent(mgr, "h1", cpu_features=(FEATS * 2)[:n])
    try:
        a.expect("registered 3")  # INVALID_ARGUMENT
        assert "cpu_features must have 0 or 8 values" in mgr.log_text()
        assert mgr.cluster().hosts_connected == 0
    finally:
        a.close()
