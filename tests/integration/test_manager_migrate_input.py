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
