"""VmService.ReadConsole and `canopy vm console` against the real control
plane: etcd, canopy-managerd and a real canopy-agent on loopback. Without
KVM: a VM that never ran, slices of a console log the test writes, the
64 KiB cap, offsets past the end, bad and unknown names, a disconnected
host. With KVM: the test guest's `count` workload in canopy-vmm, its
"count N" lines printed by `canopy vm console`, and --follow ending when
the guest stops."""
import json
import os
import re
import subprocess
import time

import grpc
import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib
from canopy_testlib import skips

A = mgrlib.api
C = mgrlib.common
CAP = 64 * 1024


@pytest.fixture(autouse=True)
def _need_binaries():
    for rel in ("bin/canopy", "bin/canopy-managerd", "bin/canopy-agent",
                "bin/canopy-vmm"):
        if not os.path.exists(mgrlib.binary(rel)):
            pytest.skip("SKIP: %s not built: run make" % rel)
    if not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing" % etcdlib.ETCD)


class Cluster:
    def __init__(self, etcd, tmp):
        self.m = mgrlib.Manager(tmp, etcd.endpoints, "m1", host_timeout=2,
                                command_timeout_ms=20000)
        self.run_dir = tmp / "run"
        self.log = open(tmp / "agent.log", "ab")
        self.agent = None

    def start(self):
        self.m.start().wait_leader()
        self.agent = subprocess.Popen(
            [mgrlib.binary("bin/canopy-agent"), "--manager", self.m.bus,
             "--host-id", "node1", "--run-dir", str(self.run_dir),
             "--vmm", mgrlib.binary("bin/canopy-vmm"),
             "--stats-interval", "1", "--manager-timeout", "3"] +
            self.m.agent_args("node1"),
            stdout=self.log, stderr=self.log)
        wait_until(lambda: self.host().state == A().HOST_STATE_CONNECTED,
                   10, "node1 connected")
        return self

    def host(self):
        return self.m.call("HostService", "GetHost",
                           A().GetHostRequest(id="node1"), A().Host)

    def vm(self, name="web1"):
        return self.m.call("VmService", "GetVm", A().GetVmRequest(name=name),
                           A().Vm)

    def read(self, name="web1", offset=0, max_bytes=0):
        return self.m.call("VmService", "ReadConsole",
                           A().ReadConsoleRequest(name=name, offset=offset,
                                                  max_bytes=max_bytes),
                           A().ReadConsoleResponse)

    def task(self, method, req):
        t = self.m.call("VmService", method, req, A().Task)
        last = list(self.m.stream("TaskService", "WaitTask",
                                  A().WaitTaskRequest(id=t.id), A().Task))[-1]
        assert last.state == A().TASK_STATE_SUCCEEDED, last
        return last

    def canopy(self, *args, timeout=60):
        p = self.m.run_cli(*args, timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def close(self):
        if self.agent and self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait(10)
        self.log.close()
        self.m.close()


@pytest.fixture
def cluster(etcd, tmp_path):
    c = Cluster(etcd, tmp_path)
    try:
        yield c.start()
    finally:
        c.close()


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


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def test_read_console_through_the_manager(cluster):
    c = cluster
    c.task("CreateVm", A().CreateVmRequest(spec=C().VmSpec(
        name="web1", cpus=1, memory_mib=64, kernel="/nonexistent/k.elf")))
    code, msg = code_of(lambda: c.read())
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert msg.startswith("host node1: ") and "start it first" in msg
    rc, out, err = c.canopy("vm", "console", "web1")
    assert rc == 5 and out == "" and "start it first" in err

    log = bytes(range(256)) * 400  # 100 KiB, every byte value
    (c.run_dir / "vms" / "web1" / "console.log").write_bytes(log)
    r = c.read()
    assert r.data == log[:CAP] and r.next_offset == CAP
    assert r.size == len(log)
    r = c.read(offset=CAP, max_bytes=1 << 31)
    assert r.data == log[CAP:] and r.next_offset == len(log)
    r = c.read(offset=5, max_bytes=3)
    assert r.data == log[5:8] and r.next_offset == 8
    for off in (len(log), len(log) + 1, (1 << 64) - 1):
        r = c.read(offset=off)
        assert r.data == b"" and r.next_offset == len(log)

    # The CLI: everything with --from-start, control bytes escaped.
    rc, out, err = c.canopy("vm", "console", "web1", "--from-start")
    assert rc == 0, err
    assert "\x1b" not in out and "\\x1b" in out and "\\x00" in out
    assert out.count("ABCDEFGHIJ") == 400
    rc, out, err = c.canopy("vm", "console", "web1")  # the last 16 KiB
    assert rc == 0 and out.count("ABCDEFGHIJ") == 64, err

    code, msg = code_of(lambda: c.read(name="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in msg
    code, _ = code_of(lambda: c.read(name="Bad/Name"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    c.agent.kill()
    c.agent.wait(10)
    wait_until(lambda: c.host().state == A().HOST_STATE_DISCONNECTED, 8,
               "node1 disconnected")
    code, msg = code_of(lambda: c.read())
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "host node1" in msg and "disconnected" in msg
    rc, _, err = c.canopy("vm", "console", "web1")
    assert rc == 7 and "node1" in err
    assert c.m.proc.poll() is None


@pytest.mark.kvm
def test_console_of_the_count_guest(cluster):
    kernel = mgrlib.binary("guest/canopy-testguest.elf")
    if not os.path.exists(kernel):
        pytest.skip("SKIP: %s not built: run make" % kernel)
    skips.skip_unless_kvm()
    c = cluster
    c.task("CreateVm", A().CreateVmRequest(spec=C().VmSpec(
        name="web1", cpus=1, memory_mib=64, kernel=kernel,
        cmdline="count=40,limit=40")))
    c.task("StartVm", A().VmPowerRequest(name="web1"))
    # --follow prints the lines as they come and ends when the guest
    # stops by itself (after count 40).
    t0 = time.monotonic()
    rc, out, err = c.canopy("vm", "console", "web1", "--follow",
                            "--from-start", timeout=30)
    assert rc == 0, err
    counts = [int(n) for n in re.findall(r"^count (\d+)$", out, re.M)]
    assert counts == list(range(1, 41)), out
    assert time.monotonic() - t0 < 20
    wait_until(lambda: c.vm().state == C().VM_RUN_STATE_STOPPED, 10,
               "web1 stopped")
    # Read again once stopped: the same lines.
    rc, out2, err = c.canopy("vm", "console", "web1")
    assert rc == 0 and "count 40\n" in out2, err
    rc, js, err = c.canopy("-o", "json", "vm", "console", "web1")
    assert rc == 0, err
    j = json.loads(js)
    assert "count 40\n" in j["data"] and j["next_offset"] == len(
        out2.encode())
