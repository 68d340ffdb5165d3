"""A host partitioned from the manager (needs root and /dev/kvm): two real
canopy-agent hosts, each in its own network namespace on a bridge where
canopy-managerd's agent bus listens, and a VM running the test guest on
host p2. Taking p2's veth link down marks p2 DISCONNECTED within the host
timeout with a host.disconnected event while p1 stays connected and the VM
keeps running; bringing the link up makes p2 CONNECTED again (event) and
the VM is reconciled: still running on p2, its state and RSS reported."""
import os
import signal
import subprocess
import time

import grpc
import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib
from canopy_testlib.ports import free_port

A = mgrlib.api
C = mgrlib.common

pytestmark = [pytest.mark.root, pytest.mark.kvm]


def ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), capture_output=True,
                          text=True, check=check)


@pytest.fixture
def net():
    """A bridge and two namespaces p1, p2 with eth0 veths on it."""
    if os.geteuid() != 0:
        pytest.skip("SKIP (needs root): network namespaces")
    for rel in ("bin/canopy-managerd", "bin/canopy-agent", "bin/canopy-vmm",
                "guest/canopy-testguest.elf"):
        if not os.path.exists(mgrlib.binary(rel)):
            pytest.skip("SKIP: %s not built: run make" % rel)
    if not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing" % etcdlib.ETCD)
    tag = free_port()
    subnet = "10.78.%d" % (tag % 250)
    bridge = "cnypb%d" % tag
    made = {"bridge": bridge, "ns": {}, "veth": {}, "subnet": subnet}
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", subnet + ".1/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for i, h in enumerate(("p1", "p2"), 1):
            ns, veth = "cnyp%d-%s" % (tag, h), "cnypv%d%d" % (tag, i)
            ip("netns", "add", ns)
            made["ns"][h] = ns
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            made["veth"][h] = veth
            ip("link", "set", veth, "master", bridge, "up")
            ip("-n", ns, "addr", "add", "%s.1%d/24" % (subnet, i), "dev",
               "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield made
    finally:
        for ns in made["ns"].values():
            ip("netns", "del", ns, check=False)
        ip("link", "del", bridge, check=False)


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
    raise AssertionError("timed out after %ss waiting for %s" % (timeout,
                                                                 what))


def run_task(m, method, req):
    t = m.call("VmService", method, req, A().Task)
    last = list(m.stream("TaskService", "WaitTask",
                         A().WaitTaskRequest(id=t.id), A().Task))[-1]
    assert last.state == A().TASK_STATE_SUCCEEDED, last
    return last


def events(m):
    return m.call("EventService", "ListEvents", A().ListEventsRequest(),
                  A().ListEventsResponse).events


def test_partition_disconnects_then_reconciles(net, etcd, tmp_path):
    a, c = A(), C()
    bus_port = free_port()
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1", host_timeout=2,
                       command_timeout_ms=20000)
    # The agent bus on the bridge, where the namespaces reach it.
    m.bus = "tcp://%s.1:%d" % (net["subnet"], bus_port)
    m.cmd[m.cmd.index("--bus") + 1] = m.bus
    agents, logs = [], []
    try:
        m.start().wait_leader()
        for i, h in enumerate(("p1", "p2"), 1):
            run_dir = tmp_path / h
            log = open(tmp_path / ("%s.log" % h), "ab")
            logs.append(log)
            agents.append(subprocess.Popen(
                ["ip", "netns", "exec", net["ns"][h],
                 mgrlib.binary("bin/canopy-agent"), "--manager", m.bus,
                 "--host-id", h, "--run-dir", str(run_dir),
                 "--vmm", mgrlib.binary("bin/canopy-vmm"),
                 "--address", "%s.1%d" % (net["subnet"], i),
                 "--stats-interval", "1", "--manager-timeout", "3"] +
                m.agent_args(h),
                stdout=log, stderr=log))

        def host(h):
            return m.call("HostService", "GetHost", a.GetHostRequest(id=h),
                          a.Host)

        def vm():
            return m.call("VmService", "GetVm", a.GetVmRequest(name="pv1"),
                          a.Vm)
        for h in ("p1", "p2"):
            wait_until(lambda: host(h).state == a.HOST_STATE_CONNECTED, 15,
                       h + " connected")
        run_task(m, "CreateVm", a.CreateVmRequest(host="p2", spec=c.VmSpec(
            name="pv1", cpus=1, memory_mib=64,
            kernel=mgrlib.binary("guest/canopy-testguest.elf"),
            cmdline="count=1000")))
        run_task(m, "StartVm", a.VmPowerRequest(name="pv1"))
        v = wait_until(lambda: vm().rss_bytes > 0 and vm(), 10,
                       "pv1 running with RSS reported")
        assert v.host == "p2" and v.state == c.VM_RUN_STATE_RUNNING
        vmm = subprocess.run(
            ["pgrep", "-f", "canopy-vmm.*%s" % (tmp_path / "p2")],
            capture_output=True, text=True).stdout.split()
        assert len(vmm) == 1, vmm
        console = tmp_path / "p2" / "vms" / "pv1" / "console.log"
        seq0 = max(e.seq for e in events(m))

        # Partition p2: its veth on the bridge goes down.
        t = time.monotonic()
        ip("link", "set", net["veth"]["p2"], "down")
        wait_until(lambda: host("p2").state == a.HOST_STATE_DISCONNECTED,
                   8, "p2 disconnected after its link went down")
        took = time.monotonic() - t
        assert took < 2 + 3, took  # the host timeout (2 s) plus slack
        ev = [e for e in events(m) if e.seq > seq0]
        assert any(e.kind == "host.disconnected" and e.object == "p2"
                   for e in ev), ev
        assert host("p1").state == a.HOST_STATE_CONNECTED
        os.kill(int(vmm[0]), 0)  # the VM runs on without its manager
        before = console.read_text(errors="replace").count("count ")
        seq1 = max(e.seq for e in events(m))

        # Heal the partition.
        ip("link", "set", net["veth"]["p2"], "up")
        wait_until(lambda: host("p2").state == a.HOST_STATE_CONNECTED, 20,
                   "p2 connected again after its link came up")
        ev = [e for e in events(m) if e.seq > seq1]
        assert any(e.kind == "host.connected" and e.object == "p2"
                   for e in ev), ev
        v = wait_until(
            lambda: (vm().state == c.VM_RUN_STATE_RUNNING and
                     vm().host == "p2" and vm()), 10,
            "pv1 reported running on p2 after the reconnect")
        assert v.desired == a.POWER_STATE_ON
        assert m.cluster().vms_running == 1
        # Same VMM, still counting.
        os.kill(int(vmm[0]), 0)
        wait_until(lambda: console.read_text(errors="replace").count(
            "count ") > before, 5, "the guest still counting")
        run_task(m, "StopVm", a.VmPowerRequest(name="pv1", hard=True))
        assert vm().state == c.VM_RUN_STATE_STOPPED
    finally:
        for p in agents:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for pid in subprocess.run(
                ["pgrep", "-f", "canopy-vmm.*%s" % tmp_path],
                capture_output=True, text=True).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        for log in logs:
            log.close()
        m.close()
