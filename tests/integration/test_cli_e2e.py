"""The canopy CLI against the real control plane: etcd, canopy-managerd and a
real canopy-agent on loopback. What needs no KVM: hosts, creating, showing,
listing and deleting a VM, the server's errors passed through with their
exit statuses, tasks and events; and a --server list of two managers that
keeps working when the leader stops and the standby takes over. (Powering a
VM on is covered by the lab test, tests/integration/test_lab.py.)"""
import json
import os
import re
import subprocess
import time

import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import protos
from canopy_testlib.manager import Manager


def _bin(name):
    return os.path.join(protos.build_dir(), "bin", name)


@pytest.fixture(autouse=True)
def _need_etcd():
    if not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing (Debian package "
                    "etcd-server)" % etcdlib.ETCD)


@pytest.fixture
def cluster(etcd, tmp_path):
    for prog in ("canopy", "canopy-managerd", "canopy-agent"):
        if not os.path.exists(_bin(prog)):
            pytest.skip("SKIP: %s not built: run make" % _bin(prog))
    m = Manager(tmp_path, etcd.endpoints, "m1").start()
    m.wait_leader()
    run_dir = tmp_path / "h1"
    run_dir.mkdir()
    log = open(tmp_path / "agent.log", "ab")
    agent = subprocess.Popen([_bin("canopy-agent"), "--manager", m.bus,
                              "--host-id", "e2e-h1", "--run-dir",
                              str(run_dir)] + m.agent_args("e2e-h1"),
                             stdout=log, stderr=log)
    try:
        yield m, tmp_path
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(10)
        log.close()
        m.close()


def canopy(m, *args):
    p = m.run_cli(*args)
    return p.returncode, p.stdout, p.stderr


def wait_connected(m, host, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc, out, _ = canopy(m, "-o", "json", "host", "list")
        if rc == 0 and any(h["id"] == host and
                           h["state"] == "HOST_STATE_CONNECTED"
                           for h in json.loads(out)):
            return
        time.sleep(0.1)
    raise AssertionError("host %s never connected:\n%s" % (
        host, m.log_text()[-2000:]))


def test_cli_against_real_manager(cluster):
    m, tmp = cluster
    wait_connected(m, "e2e-h1")
    rc, out, err = canopy(m, "cluster", "status")
    assert rc == 0 and "Hosts:    1 (1 connected)" in out, err
    rc, out, err = canopy(m, "host", "show", "e2e-h1")
    assert rc == 0 and "State:         connected" in out, err
    # The agent's CPU feature registers, as migration admission sees them.
    assert re.search(r"\nCPU features:  [0-9a-f]{8}( [0-9a-f]{8}){7}\n",
                     out), out
    rc, out, err = canopy(m, "-o", "json", "datastore", "list")
    assert rc == 0 and json.loads(out) == [], err

    rc, out, err = canopy(m, "vm", "create", "e2e-vm", "--memory", "64",
                          "--cpus", "1", "--kernel", "/nonexistent/k.elf",
                          "--cmdline", "count")
    assert rc == 0, (out, err)
    assert out.splitlines()[-1].startswith("task ")
    assert "vm.create vm/e2e-vm: succeeded in" in out
    vm = json.loads(canopy(m, "-o", "json", "vm", "show", "e2e-vm")[1])
    assert vm["spec"]["memory_mib"] == 64 and vm["host"] == "e2e-h1"
    assert vm["desired"] == "POWER_STATE_OFF"
    rc, out, _ = canopy(m, "vm", "list", "--host", "e2e-h1")
    assert rc == 0 and "e2e-vm" in out

    # The server's errors: its message, one line, the mapped exit status.
    rc, out, err = canopy(m, "vm", "show", "nope")
    assert rc == 3 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("canopy: ") and "nope" in err
    rc, _, err = canopy(m, "vm", "create", "e2e-vm", "--memory", "64",
                        "--cpus", "1", "--kernel", "/k")
    assert rc == 4 and "already exists" in err
    rc, _, err = canopy(m, "host", "show", "h-none")
    assert rc == 3 and "h-none" in err

    tasks = json.loads(canopy(m, "-o", "json", "task", "list")[1])
    assert [t["kind"] for t in tasks] == ["vm.create"]
    assert tasks[0]["state"] == "TASK_STATE_SUCCEEDED"
    rc, out, _ = canopy(m, "task", "show", tasks[0]["id"])
    assert rc == 0 and "State:     succeeded" in out
    rc, out, err = canopy(m, "task", "wait", tasks[0]["id"])
    assert rc == 0 and "succeeded in" in out, err

    rc, out, err = canopy(m, "vm", "delete", "e2e-vm")
    assert rc == 0 and "vm.delete vm/e2e-vm: succeeded" in out, err
    rc, _, _ = canopy(m, "vm", "show", "e2e-vm")
    assert rc == 3
    events = json.loads(canopy(m, "-o", "json", "event", "list")[1])
    kinds = [e["kind"] for e in events]
    assert "host.connected" in kinds and "vm.created" in kinds
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)


def test_cli_follows_the_leader_across_failover(etcd, tmp_path):
    if not os.path.exists(_bin("canopy-managerd")):
        pytest.skip("SKIP: canopy-managerd not built: run make")
    m1 = Manager(tmp_path, etcd.endpoints, "m1").start()
    m2 = None
    try:
        m1.wait_leader()
        m2 = Manager(tmp_path, etcd.endpoints, "m2").start()
        both = m2.addr + "," + m1.addr  # the standby first
        rc, out, err = canopy_at(m1, both, "-o", "json", "cluster",
                                 "status")
        assert rc == 0, err
        assert json.loads(out)["leader"] == "m1"
        rc, _, err = canopy_at(m1, m2.addr, "cluster", "status")
        assert rc == 7 and "standby" in err and m1.addr in err
        m1.close()  # a clean stop hands over at once
        deadline = time.monotonic() + 15
        while True:
            rc, out, err = canopy_at(m1, both, "-o", "json", "cluster",
                                 "status")
            if rc == 0 and json.loads(out)["leader"] == "m2":
                break
            assert time.monotonic() < deadline, (rc, out, err)
            time.sleep(0.2)
        kinds = [e["kind"] for e in json.loads(
            canopy_at(m1, both, "-o", "json", "event", "list")[1])]
        assert kinds.count("manager.leader") == 2
    finally:
        m1.close()
        if m2:
            m2.close()


def canopy_at(m, server, *args):
    """The CLI at server (one address or a list) with m's cluster CA."""
    p = m.run_cli(*args, server=server)
    return p.returncode, p.stdout, p.stderr
