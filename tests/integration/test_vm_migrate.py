"""vMotion through the whole stack (needs /dev/kvm): etcd, canopy-managerd
and two real canopy-agents on loopback, each with its own run directory,
the test guest running `dirty` (it checks its own memory after each hop).
`canopy vm migrate` back and forth; admission errors with their codes;
failures before commit (destination VMM killed, cancel) leave the VM on
the source; a source agent killed mid-stream is resolved from the agents'
reports; a destination agent killed mid-stream does not stop the stream
(its VMM is independent) and the restarted agent adopts the VM."""
import json
import os
import re
import signal
import struct
import subprocess
import time

import grpc
import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib

A = mgrlib.api
C = mgrlib.common

pytestmark = pytest.mark.kvm

GUEST_ARGS = "dirty=16,rate=20000,verify=100"
# For a stream limited to 16 MiB/s: dirtying ~8 MiB/s still converges (at
# 20000 pages/s, 78 MiB/s, it may not even with auto-converge).
GUEST_LIGHT = "dirty=16,rate=2000,verify=100"


@pytest.fixture(autouse=True)
def _need_binaries():
    for rel in ("bin/canopy-managerd", "bin/canopy-agent", "bin/canopy-vmm",
                "bin/canopy", "guest/canopy-testguest.elf"):
        if not os.path.exists(mgrlib.binary(rel)):
            pytest.skip("SKIP: %s not built: run make" % rel)
    if not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing" % etcdlib.ETCD)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("SKIP (needs /dev/kvm)")


class Agent:
    def __init__(self, m, host, tmp_path, extra=()):
        self.m = m
        self.host = host
        self.run_dir = tmp_path / ("run-" + host)
        self.cmd = [mgrlib.binary("bin/canopy-agent"), "--manager", m.bus,
                    "--host-id", host, "--run-dir", str(self.run_dir),
                    "--vmm", mgrlib.binary("bin/canopy-vmm"),
                    "--address", "127.0.0.1", "--stats-interval", "1",
                    "--manager-timeout", "3"] + list(extra)
        self.log_path = tmp_path / ("agent-%s.log" % host)
        self.proc = None
        self.env = None  # extra environment (its VMMs inherit it)

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.cmd + self.m.agent_args(self.host), stdout=self.log,
            stderr=self.log,
            env=dict(os.environ, **self.env) if self.env else None)
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
            self.log.close()

    def vmm_pids(self, vm):
        out = subprocess.run(
            ["pgrep", "-f", "canopy-vmm --name %s .*%s/vms/%s/" % (
                vm, self.run_dir, vm)],
            capture_output=True, text=True).stdout.split()
        return [int(p) for p in out]

    def console(self, vm):
        p = self.run_dir / "vms" / vm / "console.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def log_text(self):
        return self.log_path.read_text(errors="replace")


def wait_until(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = fn()
        except grpc.RpcError:
            v = None
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def rounds(text):
    return [int(r) for r in re.findall(r"^dirty: round (\d+) pages \d+ "
                                       r"writes \d+ ok$", text, re.M)]


class Cluster:
    def __init__(self, etcd, tmp_path, extra=None, mgr_extra=()):
        self.m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1",
                                host_timeout=2, command_timeout_ms=20000,
                                extra=mgr_extra)
        extra = extra or {}
        self.agents = {h: Agent(self.m, h, tmp_path, extra.get(h, ()))
                       for h in ("node1", "node2")}

    def start(self):
        self.m.start().wait_leader()
        for ag in self.agents.values():
            ag.start()
        for h in self.agents:
            self.wait_host(h, A().HOST_STATE_CONNECTED)
        return self

    def close(self):
        for ag in self.agents.values():
            for pid in ag.vmm_pids("web1") + ag.vmm_pids("web2"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            ag.kill()
        self.m.close()

    def host(self, h):
        return self.m.call("HostService", "GetHost", A().GetHostRequest(id=h),
                           A().Host)

    def wait_host(self, h, state, timeout=10):
        wait_until(lambda: self.host(h).state == state, timeout,
                   "%s in state %d" % (h, state))

    def vm(self, name="web1"):
        return self.m.call("VmService", "GetVm", A().GetVmRequest(name=name),
                           A().Vm)

    def task(self, tid):
        return self.m.call("TaskService", "GetTask", A().GetTaskRequest(id=tid),
                           A().Task)

    def run_task(self, method, req):
        t = self.m.call("VmService", method, req, A().Task)
        last = list(self.m.stream("TaskService", "WaitTask",
                                  A().WaitTaskRequest(id=t.id), A().Task,
                                  timeout=90))[-1]
        assert last.state == A().TASK_STATE_SUCCEEDED, last
        return last

    def wait_task(self, tid, timeout=90):
        return self.m.wait_task(tid, timeout)

    def start_vm(self, host="node1", name="web1", args=GUEST_ARGS,
                 disks=()):
        kernel = mgrlib.binary("guest/canopy-testguest.elf")
        self.run_task("CreateVm", A().CreateVmRequest(host=host, spec=C().VmSpec(
            name=name, cpus=1, memory_mib=64, kernel=kernel, cmdline=args,
            disks=list(disks))))
        self.run_task("StartVm", A().VmPowerRequest(name=name))
        ag = self.agents[host]
        if args.startswith("dirty="):
            wait_until(lambda: len(rounds(ag.console(name))) >= 2, 20,
                       "the guest's dirty rounds on " + host)

    def migrate(self, to, **kw):
        return self.m.call("VmService", "MigrateVm", A().MigrateVmRequest(
            name="web1", to_host=to, **kw), A().Task)

    def canopy(self, *args, timeout=90):
        p = self.m.run_cli(*args, timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def only_on(self, host, name="web1"):
        """Exactly one VMM runs the VM, on host, and the record agrees."""
        other = "node2" if host == "node1" else "node1"
        assert len(self.agents[host].vmm_pids(name)) == 1
        # A source VMM exits just after its answer (it never resumes).
        wait_until(lambda: self.agents[other].vmm_pids(name) == [], 5,
                   "no VMM of %s left on %s" % (name, other))
        v = self.vm(name)
        assert v.host == host, v
        assert v.state == C().VM_RUN_STATE_RUNNING, v


@pytest.fixture
def cluster(etcd, tmp_path):
    c = Cluster(etcd, tmp_path)
    try:
        yield c.start()
    finally:
        c.close()


def wait_phase(c, tid, phase, timeout=20):
    return wait_until(lambda: c.task(tid).migration.stage == phase and
                      c.task(tid), timeout, "migration stage " + phase)


def guest_keeps_going(ag, name="web1", more=2):
    """New verified rounds after now, and never CORRUPT."""
    seen = len(rounds(ag.console(name)))
    wait_until(lambda: len(rounds(ag.console(name))) >= seen + more, 20,
               "more dirty rounds")
    assert "CORRUPT" not in ag.console(name)


def test_migrate_back_and_forth(cluster):
    c = cluster
    c.start_vm()
    n1, n2 = c.agents["node1"], c.agents["node2"]
    # Both agents registered this CPU's feature registers (admission
    # compares them); leaf 1 EDX has FPU, TSC and SSE2 on any x86-64 host.
    f1, f2 = c.host("node1").cpu_features, c.host("node2").cpu_features
    assert len(f1) == 8 and list(f1) == list(f2), (f1, f2)
    assert f1[1] & 0x04000011 == 0x04000011, hex(f1[1])
    before = rounds(n1.console("web1"))
    rc, out, err = c.canopy("vm", "migrate", "web1", "--to", "node2")
    assert rc == 0, err
    assert re.search(r"migrated from host node1 to node2: downtime \d+ ms, "
                     r"total \d+ ms", out), out
    c.only_on("node2")
    # Over mutual TLS (the hosts enrolled), the destination's certificate
    # checked against its host id (docs/migration-protocol.md, "TLS").
    assert "tls=node2" in n1.log_text()
    assert 'migration stream encrypted" vm=web1 tls="TLSv1.3' in \
        (n2.run_dir / "vms" / "web1" / "vmm.log").read_text()
    # The source forgot the VM: its directory is gone (removed just before
    # the agent logs that it forgot it).
    wait_until(lambda: "vm migrated away; forgetting it" in n1.log_text(),
               10, "the source agent forgetting the VM")
    assert not (n1.run_dir / "vms" / "web1").exists()
    # The guest goes on where it was: its round counter continues.
    wait_until(lambda: rounds(n2.console("web1")), 20, "rounds on node2")
    after = rounds(n2.console("web1"))
    assert after[0] > before[-1] - 1, (before[-5:], after[:5])
    guest_keeps_going(n2)
    placed = c.m.call("VmService", "ListVms", A().ListVmsRequest(
        host="node1"), A().ListVmsResponse)
    assert [v.id for v in placed.vms] == []

    # Back, through the API, with a downtime target; figures in the task.
    t = c.migrate("node1", max_downtime_ms=200)
    assert t.kind == "vm.migrate" and t.migration.to_host == "node1"
    last = c.wait_task(t.id)
    assert last.state == A().TASK_STATE_SUCCEEDED, last
    mg = last.migration
    assert mg.from_host == "node2" and mg.stage == "completed"
    assert 0 < mg.downtime_ms < mg.total_ms, mg
    assert mg.round >= 1
    print("api figures: downtime %d ms, total %d ms, %d rounds" % (
        mg.downtime_ms, mg.total_ms, mg.round))
    c.only_on("node1")
    guest_keeps_going(n1)

    # And again with -o json.
    rc, out, err = c.canopy("-o", "json", "vm", "migrate", "web1", "--to",
                            "node2")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["state"] == "TASK_STATE_SUCCEEDED", doc
    assert int(doc["migration"]["downtime_ms"]) > 0, doc
    c.only_on("node2")
    guest_keeps_going(n2)
    ev = c.m.call("EventService", "ListEvents", A().ListEventsRequest(
        limit=50), A().ListEventsResponse)
    assert sum(e.kind == "vm.migrated" for e in ev.events) == 3


def test_admission_errors(cluster):
    c = cluster
    c.start_vm()

    def code_of(**kw):
        with pytest.raises(grpc.RpcError) as e:
            c.migrate(**kw)
        return e.value.code(), e.value.details()

    code, msg = code_of(to="node9")
    assert code == grpc.StatusCode.NOT_FOUND and "canopy host list" in msg
    code, msg = code_of(to="node1")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "already runs on host node1" in msg
    code, msg = code_of(to="BAD HOST")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a host id" in msg
    code, msg = code_of(to="node2", max_downtime_ms=10 ** 6)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "max downtime" in msg
    with pytest.raises(grpc.RpcError) as e:
        c.m.call("VmService", "MigrateVm", A().MigrateVmRequest(
            name="nope", to_host="node2"), A().Task)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    rc, _, err = c.canopy("vm", "migrate", "web1", "--to", "node1")
    assert rc != 0 and "already runs on host node1" in err
    rc, _, err = c.canopy("vm", "migrate", "web1", "--to", "node2",
                          "--max-downtime", "x")
    assert rc == 2, err

    # A disconnected destination.
    c.agents["node2"].kill()
    c.wait_host("node2", A().HOST_STATE_DISCONNECTED)
    code, msg = code_of(to="node2")
    assert code == grpc.StatusCode.UNAVAILABLE and "disconnected" in msg

    # A stopped VM.
    c.run_task("StopVm", A().VmPowerRequest(name="web1", hard=True))
    code, msg = code_of(to="node2")
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "is not running" in msg


def slow(c, to="node2"):
    """A migration slow enough to act during pre-copy (4 MiB/s)."""
    t = c.migrate(to, bandwidth_limit_mib_s=4)
    wait_phase(c, t.id, "precopy")
    return t


def test_destination_vmm_killed(cluster):
    c = cluster
    c.start_vm()
    t = slow(c)
    pids = c.agents["node2"].vmm_pids("web1")
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    last = c.wait_task(t.id)
    assert last.state == A().TASK_STATE_FAILED, last
    assert "keeps running on host node1" in last.error.message, last
    # The VMM's reason, with the phase it broke in, reaches the task.
    assert "(phase precopy)" in last.error.message, last
    c.only_on("node1")
    wait_until(lambda: not (c.agents["node2"].run_dir / "vms" /
                            "web1").exists(), 5, "node2 cleaned up")
    guest_keeps_going(c.agents["node1"])
    # And it still migrates afterwards.
    last = c.wait_task(c.migrate("node2").id)
    assert last.state == A().TASK_STATE_SUCCEEDED, last
    c.only_on("node2")


def test_cancel_mid_precopy(cluster):
    c = cluster
    c.start_vm()
    t = slow(c)
    got = c.m.call("TaskService", "CancelTask", A().CancelTaskRequest(
        id=t.id), A().Task)
    assert got.id == t.id
    last = c.wait_task(t.id)
    assert last.state == A().TASK_STATE_CANCELLED, last
    assert "keeps running on host node1" in last.error.message
    c.only_on("node1")
    guest_keeps_going(c.agents["node1"])
    with pytest.raises(grpc.RpcError) as e:  # ended: nothing to cancel
        c.m.call("TaskService", "CancelTask", A().CancelTaskRequest(
            id=t.id), A().Task)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_source_agent_killed_midstream(cluster):
    """The source's VMM goes on streaming and commits without its agent:
    the manager cannot hear the verdict and resolves from the reports."""
    c = cluster
    c.start_vm(args=GUEST_LIGHT)
    t = c.migrate("node2", bandwidth_limit_mib_s=16)
    wait_phase(c, t.id, "precopy")
    c.agents["node1"].kill()
    last = c.wait_task(t.id, timeout=90)
    assert last.state == A().TASK_STATE_SUCCEEDED, last
    assert "found running there" in last.result, last
    c.only_on("node2")
    guest_keeps_going(c.agents["node2"])
    c.agents["node1"].start()
    c.wait_host("node1", A().HOST_STATE_CONNECTED)
    time.sleep(1.5)  # its reports arrive: the record must not move back
    c.only_on("node2")


def test_destination_agent_killed_midstream(cluster):
    """The receiving VMM does not depend on its agent: the stream goes on
    and the source decides; the restarted agent adopts the VM."""
    c = cluster
    c.start_vm(args=GUEST_LIGHT)
    t = c.migrate("node2", bandwidth_limit_mib_s=16)
    wait_phase(c, t.id, "precopy")
    c.agents["node2"].kill()
    last = c.wait_task(t.id, timeout=90)
    assert last.state == A().TASK_STATE_SUCCEEDED, last
    assert c.vm().host == "node2"
    wait_until(lambda: c.agents["node1"].vmm_pids("web1") == [], 5,
               "the source VMM gone")
    c.agents["node2"].start()
    c.wait_host("node2", A().HOST_STATE_CONNECTED)
    wait_until(lambda: c.vm().state == C().VM_RUN_STATE_RUNNING, 10,
               "the adopted vm reported running")
    c.only_on("node2")
    guest_keeps_going(c.agents["node2"])


MIB = 1 << 20


def ds_tool(*args):
    r = subprocess.run([mgrlib.binary("bin/canopy-ds")] + [str(a) for a in
                                                          args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def lock_owner(img):
    """The owner of lock 1 (the only file's lock) per canopy-ds locks."""
    m = re.search(r"^1\s+(\d+)\s", ds_tool("locks", img), re.M)
    return int(m[1]) if m else None


def blk_seconds(text):
    return [int(n) for n in re.findall(r"^blk: seqwrite second (\d+)",
                                       text, re.M)]


def test_datastore_disk_lock_hand_over(etcd, tmp_path):
    """A VM writing its datastore disk without pause migrates: the lock
    passes to the destination's slot, the guest writes on there without an
    I/O error, and the file holds exactly the guest's pattern."""
    if not os.path.exists(mgrlib.binary("bin/canopy-ds")):
        pytest.skip("SKIP: bin/canopy-ds not built")
    img = tmp_path / "ds.img"
    ds_tool("format", img, "--name", "lab", "--size", "128M",
            "--hb-interval", "200", "--hb-timeout", "2000")
    extra = {"node1": ["--datastore", "ds1=%s" % img, "--ds-slots", "20-21"],
             "node2": ["--datastore", "ds1=%s" % img, "--ds-slots", "22-23"]}
    c = Cluster(etcd, tmp_path, extra)
    try:
        c.start()
        disk = C().DiskSpec(path="ds1:web1/disk0", size_bytes=16 * MIB)
        c.start_vm(args="blk,mode=seqwrite,mib=4,bs=4096,secs=600,seed=2",
                   disks=[disk])
        n1, n2 = c.agents["node1"], c.agents["node2"]
        wait_until(lambda: len(blk_seconds(n1.console("web1"))) >= 2, 30,
                   "the guest writing on node1")
        assert lock_owner(img) in (20, 21)
        last = c.wait_task(c.migrate("node2").id)
        assert last.state == A().TASK_STATE_SUCCEEDED, last
        c.only_on("node2")
        assert lock_owner(img) in (22, 23)  # node2's slots
        wait_until(lambda: len(blk_seconds(n2.console("web1"))) >= 2, 30,
                   "the guest writing on node2")
        assert "I/O error" not in n2.console("web1"), n2.console("web1")
        assert "datastore lock taken over" in (
            n2.run_dir / "vms" / "web1" / "vmm.log").read_text()
        c.run_task("StopVm", A().VmPowerRequest(name="web1", hard=True))
        out = tmp_path / "export.img"
        ds_tool("export", img, "web1/disk0", out, "--host-id", "9")
        data = out.read_bytes()[:4 * MIB]
        words = struct.unpack("<%dQ" % (len(data) // 8), data)
        hi = 2 << 40
        # Blocks the guest has not reached yet (a slow run) read as zeros
        # (thin file); every block it wrote holds exactly its pattern.
        written = bad = 0
        for b in range(0, len(words), 512):
            blk = words[b:b + 512]
            if not any(blk):
                continue
            written += 1
            bad += sum(1 for i, w in enumerate(blk, b) if w != hi ^ (8 * i))
        assert bad == 0, "%d words differ from the guest's pattern" % bad
        assert written >= 8, "only %d blocks written" % written
    finally:
        c.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_manager_failover_mid_migration(etcd, tmp_path, sig):
    """The leader dies while the VM streams: the standby takes over, finds
    the vm.migrate task unfinished and resolves it from the agents' reports
    (exactly one VMM runs the VM; the record and the task agree with it)."""
    from canopy_testlib.ports import free_port
    bus = free_port()
    c = Cluster(etcd, tmp_path)
    c.m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1", host_timeout=3,
                         command_timeout_ms=20000, bus_port=bus)
    m2 = mgrlib.Manager(tmp_path, etcd.endpoints, "m2", host_timeout=3,
                        command_timeout_ms=20000, bus_port=bus)
    for ag in c.agents.values():
        ag.m = c.m
        ag.cmd[ag.cmd.index("--manager") + 1] = c.m.bus
    try:
        c.start()
        m2.start()
        c.start_vm(args=GUEST_LIGHT)
        t = c.migrate("node2", bandwidth_limit_mib_s=16)
        wait_phase(c, t.id, "precopy")
        c.m.kill(sig)  # SIGTERM: the leader steps down cleanly first
        c.m, m2 = m2, c.m
        c.m.wait_leader(timeout=20)
        last = c.wait_task(t.id, timeout=90)
        assert last.state in (A().TASK_STATE_SUCCEEDED,
                              A().TASK_STATE_FAILED), last
        assert last.manager == "m2", last
        where = "node2" if last.state == A().TASK_STATE_SUCCEEDED else "node1"
        print("after failover: %s, on %s: %s %s" % (
            A().TaskState.Name(last.state), where, last.result,
            last.error.message))
        c.only_on(where)
        guest_keeps_going(c.agents[where])
    finally:
        c.close()
        m2.close()


def test_per_host_limit(etcd, tmp_path):
    """--migrations-per-host 1: a second migration from the same host is
    refused while the first streams, and admitted once it has ended."""
    c = Cluster(etcd, tmp_path, mgr_extra=["--migrations-per-host", "1"])
    try:
        c.start()
        c.start_vm()
        c.start_vm(name="web2", args="count=100000")
        t = slow(c)
        with pytest.raises(grpc.RpcError) as e:
            c.m.call("VmService", "MigrateVm", A().MigrateVmRequest(
                name="web2", to_host="node2"), A().Task)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "already runs 1 migrations (limit 1)" in e.value.details()
        c.m.call("TaskService", "CancelTask", A().CancelTaskRequest(id=t.id),
                 A().Task)
        assert c.wait_task(t.id).state == A().TASK_STATE_CANCELLED
        last = c.wait_task(c.m.call("VmService", "MigrateVm",
                                    A().MigrateVmRequest(name="web2",
                                                         to_host="node2"),
                                    A().Task).id)
        assert last.state == A().TASK_STATE_SUCCEEDED, last
        assert c.vm("web2").host == "node2"
    finally:
        c.close()


def ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), capture_output=True,
                          text=True, check=check)


@pytest.fixture
def netns():
    """A bridge and namespaces for node1 and node2 with eth0 veths on it."""
    if os.geteuid() != 0:
        pytest.skip("SKIP (needs root): network namespaces")
    from canopy_testlib.ports import free_port
    tag = free_port()
    subnet = "10.79.%d" % (tag % 250)
    bridge = "cnymb%d" % tag
    made = {"bridge": bridge, "ns": {}, "veth": {}, "subnet": subnet}
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", subnet + ".1/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for i, h in enumerate(("node1", "node2"), 1):
            ns, veth = "cnym%d-%s" % (tag, h), "cnymv%d%d" % (tag, i)
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


@pytest.mark.slow
@pytest.mark.root
def test_destination_link_down_at_precopy(netns, etcd, tmp_path):
    """Each host in its own namespace; node2's veth goes down while the
    VM streams to it: the source's stream times out and resumes the VM,
    the task fails with the reason, the record stays on node1; with the
    link back, node2 reconnects holding nothing of the VM. About 60 s:
    the source's stream gives up on its record timeout (30 s)."""
    from canopy_testlib.ports import free_port
    c = Cluster(etcd, tmp_path)
    c.m.bus = "tcp://%s.1:%d" % (netns["subnet"], free_port())
    c.m.cmd[c.m.cmd.index("--bus") + 1] = c.m.bus
    for i, (h, ag) in enumerate(sorted(c.agents.items()), 1):
        ag.m = c.m
        ag.cmd[ag.cmd.index("--manager") + 1] = c.m.bus
        ag.cmd[ag.cmd.index("--address") + 1] = "%s.1%d" % (
            netns["subnet"], i)
        ag.cmd = ["ip", "netns", "exec", netns["ns"][h]] + ag.cmd
    try:
        c.start()
        c.start_vm()
        t = slow(c)
        ip("link", "set", netns["veth"]["node2"], "down")
        t0 = time.monotonic()
        last = c.wait_task(t.id, timeout=90)
        print("link down -> task %s after %.1f s: %s" % (
            A().TaskState.Name(last.state), time.monotonic() - t0,
            last.error.message))
        assert last.state == A().TASK_STATE_FAILED, last
        assert "keeps running on host node1" in last.error.message
        assert c.vm().host == "node1"
        assert len(c.agents["node1"].vmm_pids("web1")) == 1
        guest_keeps_going(c.agents["node1"])
        ip("link", "set", netns["veth"]["node2"], "up")
        c.wait_host("node2", A().HOST_STATE_CONNECTED, timeout=20)
        wait_until(lambda: c.agents["node2"].vmm_pids("web1") == [], 40,
                   "the receiving VMM on node2 gone")
        wait_until(lambda: not (c.agents["node2"].run_dir / "vms" /
                                "web1").exists(), 10, "node2 cleaned up")
        c.only_on("node1")
    finally:
        c.close()


def netns_cluster(netns, etcd, tmp_path):
    """A cluster whose manager listens on the bridge and whose agents run
    each in its namespace (node2's veth can go down)."""
    from canopy_testlib.ports import free_port
    c = Cluster(etcd, tmp_path)
    c.m.bus = "tcp://%s.1:%d" % (netns["subnet"], free_port())
    c.m.cmd[c.m.cmd.index("--bus") + 1] = c.m.bus
    for i, (h, ag) in enumerate(sorted(c.agents.items()), 1):
        ag.m = c.m
        ag.cmd[ag.cmd.index("--manager") + 1] = c.m.bus
        ag.cmd[ag.cmd.index("--address") + 1] = "%s.1%d" % (
            netns["subnet"], i)
        ag.cmd = ["ip", "netns", "exec", netns["ns"][h]] + ag.cmd
    return c


def vmm_log(ag, name="web1"):
    p = ag.run_dir / "vms" / name / "vmm.log"
    return p.read_text(errors="replace") if p.exists() else ""


@pytest.mark.root
def test_link_down_after_ack_resolved_by_manager(netns, etcd, tmp_path):
    """node2's veth goes down after its ACK, before the source writes
    COMMIT (the source VMM held at src-ack), and stays down past node2's
    wait for COMMIT (1.5 s here): node2's receiver exits without running
    the VM; the source, COMMIT written and no STARTED, holds the VM paused
    in doubt; the task waits (node2 unreachable: it cannot know) and says
    so; node1's agent, restarted meanwhile, adopts the paused VMM still in
    doubt; with the link back node2 answers that it has no VM, the manager
    resolves resume=true: the task fails naming the broken link, the VM
    runs on node1, one VMM, its memory intact."""
    c = netns_cluster(netns, etcd, tmp_path)
    io = {"CANOPY_MIG_TEST_IO_TIMEOUT_MS": "1500"}
    c.agents["node1"].env = dict(io, CANOPY_MIG_TEST_PAUSE="src-ack:1500")
    c.agents["node2"].env = io
    n1 = c.agents["node1"]
    try:
        c.start()
        c.start_vm(args=GUEST_LIGHT)
        t = c.migrate("node2")
        wait_until(lambda: "point=src-ack" in vmm_log(n1), 30,
                   "the source at src-ack")
        ip("link", "set", netns["veth"]["node2"], "down")
        try:
            task = wait_until(lambda: "in doubt" in c.task(t.id).phase and
                              c.task(t.id), 20, "the task in doubt")
            assert task.state == A().TASK_STATE_RUNNING, task
            assert task.migration.stage == "in_doubt", task.migration
            assert "stays paused on host node1" in task.phase, task.phase
            assert "migration in doubt" in vmm_log(n1)
            # Paused, and not resumed while node2 cannot say.
            seen = len(rounds(n1.console("web1")))
            # The source agent restarted meanwhile adopts the paused VMM,
            # sees it in doubt and keeps it resolvable.
            n1.kill()
            n1.start()
            wait_until(lambda: "adopted a vmm whose migration is in doubt"
                       in n1.log_text(), 20, "node1 adopting its VMM")
            time.sleep(1)
            assert len(rounds(n1.console("web1"))) == seen, "it ran"
            assert c.task(t.id).state == A().TASK_STATE_RUNNING
        finally:
            ip("link", "set", netns["veth"]["node2"], "up")
        last = c.wait_task(t.id, timeout=60)
        assert last.state == A().TASK_STATE_FAILED, last
        msg = last.error.message
        assert "the link broke after COMMIT" in msg, msg
        assert "resumed on host node1" in msg, msg
        assert "no COMMIT from the source" in vmm_log(c.agents["node2"]) \
            or not (c.agents["node2"].run_dir / "vms" / "web1").exists()
        wait_until(lambda: c.vm().state == C().VM_RUN_STATE_RUNNING, 10,
                   "the vm running")
        c.only_on("node1")
        guest_keeps_going(n1)
        assert all(r == "ok" for r in re.findall(
            r"^dirty: round \d+ pages \d+ writes \d+ (\w+)",
            n1.console("web1"), re.M))
    finally:
        c.close()


@pytest.mark.root
def test_in_doubt_resolved_after_manager_failover(netns, etcd, tmp_path):
    """As test_link_down_after_ack_resolved_by_manager, but the leader is
    killed while the task is in doubt: the standby takes the task over
    and resolves it the same way once node2 is back (the VM resumes on
    node1, never blindly while node2 cannot answer)."""
    c = netns_cluster(netns, etcd, tmp_path)
    m2 = mgrlib.Manager(tmp_path, etcd.endpoints, "m2", host_timeout=2,
                        command_timeout_ms=20000)
    m2.bus = c.m.bus
    m2.cmd[m2.cmd.index("--bus") + 1] = c.m.bus
    io = {"CANOPY_MIG_TEST_IO_TIMEOUT_MS": "1500"}
    c.agents["node1"].env = dict(io, CANOPY_MIG_TEST_PAUSE="src-ack:1500")
    c.agents["node2"].env = io
    n1 = c.agents["node1"]
    try:
        c.start()
        m2.start()
        c.start_vm(args=GUEST_LIGHT)
        t = c.migrate("node2")
        wait_until(lambda: "point=src-ack" in vmm_log(n1), 30,
                   "the source at src-ack")
        ip("link", "set", netns["veth"]["node2"], "down")
        try:
            wait_until(lambda: "in doubt" in c.task(t.id).phase, 20,
                       "the task in doubt")
            c.m.kill(signal.SIGKILL)
            c.m, m2 = m2, c.m
            c.m.wait_leader(timeout=20)
            wait_until(lambda: c.task(t.id).manager == "m2", 20,
                       "m2 owning the task")
            seen = len(rounds(n1.console("web1")))
            time.sleep(2)
            assert c.task(t.id).state == A().TASK_STATE_RUNNING
            assert len(rounds(n1.console("web1"))) == seen, "it ran"
        finally:
            ip("link", "set", netns["veth"]["node2"], "up")
        last = c.wait_task(t.id, timeout=60)
        assert last.state == A().TASK_STATE_FAILED, last
        assert last.manager == "m2", last
        assert "the link broke after COMMIT" in last.error.message, last
        wait_until(lambda: c.vm().state == C().VM_RUN_STATE_RUNNING, 10,
                   "the vm running")
        c.only_on("node1")
        guest_keeps_going(n1)
    finally:
        c.close()
        m2.close()


@pytest.mark.root
def test_in_doubt_past_the_bound_still_resolves(netns, etcd, tmp_path,
                                                monkeypatch):
    """The in-doubt bound (10 min; 2 s here through the test-only
    CANOPY_MGR_TEST_DOUBT_MS) passes while node2 is unreachable: the task
    fails naming both hosts, the VM still paused on node1; once node2 is
    back the source agent's repeated in-doubt MigrateDone lets the manager
    resolve it without a task: the VM resumes on node1."""
    monkeypatch.setenv("CANOPY_MGR_TEST_DOUBT_MS", "2000")
    c = netns_cluster(netns, etcd, tmp_path)
    io = {"CANOPY_MIG_TEST_IO_TIMEOUT_MS": "1500"}
    c.agents["node1"].env = dict(io, CANOPY_MIG_TEST_PAUSE="src-ack:1500")
    c.agents["node2"].env = io
    n1 = c.agents["node1"]
    try:
        c.start()
        c.start_vm(args=GUEST_LIGHT)
        t = c.migrate("node2")
        wait_until(lambda: "point=src-ack" in vmm_log(n1), 30,
                   "the source at src-ack")
        ip("link", "set", netns["veth"]["node2"], "down")
        try:
            last = c.wait_task(t.id, timeout=30)
            assert last.state == A().TASK_STATE_FAILED, last
            msg = last.error.message
            assert "the migration is in doubt" in msg, msg
            assert "stays paused on host node1" in msg, msg
            assert "check host node2" in msg, msg
            seen = len(rounds(n1.console("web1")))
            time.sleep(1)
            assert len(rounds(n1.console("web1"))) == seen, "it ran"
            assert len(n1.vmm_pids("web1")) == 1
        finally:
            ip("link", "set", netns["veth"]["node2"], "up")
        wait_until(lambda: c.vm().state == C().VM_RUN_STATE_RUNNING, 30,
                   "the vm running again")
        assert "resolving an in-doubt vm without a task" in \
            c.m.log_text()
        ev = wait_until(lambda: [e for e in c.m.call(
            "EventService", "ListEvents", A().ListEventsRequest(),
            A().ListEventsResponse).events
            if e.kind == "vm.migration_resolved"], 10, "the event")
        assert ev[0].object == "vm/web1", ev
        assert "it resumed on host node1" in ev[0].message, ev
        c.only_on("node1")
        guest_keeps_going(n1)
    finally:
        c.close()


def no_reset(ag, name="web1"):
    """The guest's rounds only go up: it never started again."""
    r = rounds(ag.console(name))
    assert all(b > a for a, b in zip(r, r[1:])), r


def resumed_on_node1(c, n1):
    """The VM runs on node1 again, only there, where it left off."""
    wait_until(lambda: c.vm().state == C().VM_RUN_STATE_RUNNING, 10,
               "the vm running")
    c.only_on("node1")
    guest_keeps_going(n1)
    no_reset(n1)


@pytest.mark.root
def test_in_doubt_receiver_killed_before_marker_resumes(netns, etcd,
                                                        tmp_path):
    """In doubt, and node2's receiver was killed at dst-ack (before COMMIT,
    so before its run marker): node2 says it exited without running the
    VM, the manager resumes it on node1: the task fails with the reason,
    the guest goes on where it stopped (no reset), one VMM."""
    c = netns_cluster(netns, etcd, tmp_path)
    io = {"CANOPY_MIG_TEST_IO_TIMEOUT_MS": "1500"}
    c.agents["node1"].env = io
    c.agents["node2"].env = dict(io, CANOPY_MIG_TEST_PAUSE="dst-ack:1500")
    n1, n2 = c.agents["node1"], c.agents["node2"]
    try:
        c.start()
        c.start_vm(args=GUEST_LIGHT)
        t = c.migrate("node2")
        wait_until(lambda: "point=dst-ack" in vmm_log(n2), 30,
                   "the destination at dst-ack")
        ip("link", "set", netns["veth"]["node2"], "down")
        try:
            for pid in n2.vmm_pids("web1"):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: "in doubt" in c.task(t.id).phase, 20,
                       "the task in doubt")
        finally:
            ip("link", "set", netns["veth"]["node2"], "up")
        last = c.wait_task(t.id, timeout=60)
        assert last.state == A().TASK_STATE_FAILED, last
        msg = last.error.message
        assert "never ran the vm" in msg, msg
        assert "resumed on host node1" in msg, msg
        assert "ran_marker=0" in n2.log_text()
        resumed_on_node1(c, n1)
    finally:
        c.close()


def doubt_cluster(etcd, tmp_path, dst_pause="dst-marked:3000", bus=None):
    """node2's receiver held at dst_pause; waits cut to 1.5 s; the bus on
    port bus when given (a standby manager can take it over)."""
    c = Cluster(etcd, tmp_path)
    if bus:
        c.m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1", host_timeout=3,
                             command_timeout_ms=20000, bus_port=bus)
        for ag in c.agents.values():
            ag.m = c.m
            ag.cmd[ag.cmd.index("--manager") + 1] = c.m.bus
    io = {"CANOPY_MIG_TEST_IO_TIMEOUT_MS": "1500"}
    c.agents["node1"].env = io
    c.agents["node2"].env = dict(io, CANOPY_MIG_TEST_PAUSE=dst_pause)
    return c.start()


def doubt_after_marker(c, bound_passes=False):
    """node2's receiver killed after its run marker (COMMIT read, no vCPU
    started yet): the source holds the VM paused in doubt, node2 says its
    receiver may have run it, the task waits saying so. The task."""
    n1, n2 = c.agents["node1"], c.agents["node2"]
    c.start_vm(args=GUEST_LIGHT)
    t = c.migrate("node2")
    wait_until(lambda: "point=dst-marked" in vmm_log(n2), 30,
               "the destination at dst-marked")
    for pid in n2.vmm_pids("web1"):
        os.kill(pid, signal.SIGKILL)
    task = wait_until(lambda: "may have run the vm" in c.task(t.id).phase
                      and c.task(t.id), 20, "node2's answer in the task")
    assert "exited with status 137 after its run marker" in task.phase, \
        task.phase
    assert "stays paused on host node1" in task.phase, task.phase
    assert task.migration.stage == "in_doubt", task.migration
    assert "ran_marker=1" in n2.log_text()
    seen = len(rounds(n1.console("web1")))
    time.sleep(1.5)
    assert len(rounds(n1.console("web1"))) == seen, "it ran"
    assert bound_passes or c.task(t.id).state == A().TASK_STATE_RUNNING
    assert len(n1.vmm_pids("web1")) == 1 and n2.vmm_pids("web1") == []
    assert c.vm().host == "node1"
    return t


def resolve_req(name="web1", choice=None):
    return A().ResolveMigrationRequest(
        name=name, choice=choice or A().ResolveMigrationRequest.CHOICE_POWER_OFF)


def api_code(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def test_in_doubt_killed_after_marker_resolved_by_power_off(etcd, tmp_path):
    """The receiver killed after its run marker: the VM stays paused on
    node1 (ABORTED from node2 in the task's phase); bad requests change
    nothing; `canopy vm resolve-migration --power-off` stops the source
    copy: no VMM left, the VM STOPPED on node1, the migration task FAILED
    naming the choice, the user and both hosts; a second resolve finds
    nothing in doubt; `vm start` boots it again."""
    c = doubt_cluster(etcd, tmp_path)
    n1 = c.agents["node1"]
    try:
        t = doubt_after_marker(c)
        rc, out, err = c.canopy("vm", "resolve-migration", "web1")
        assert rc == 2 and "exactly one of --resume-source" in err, err
        rc, out, err = c.canopy("vm", "resolve-migration", "web1",
                                "--power-off", "--resume-source")
        assert rc == 2 and "exactly one" in err, err
        code, msg = api_code(lambda: c.m.call(
            "VmService", "ResolveMigration", A().ResolveMigrationRequest(
                name="web1"), A().Task))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, msg
        code, msg = api_code(lambda: c.m.call(
            "VmService", "ResolveMigration", resolve_req("nosuch"),
            A().Task))
        assert code == grpc.StatusCode.NOT_FOUND, msg
        assert c.task(t.id).state == A().TASK_STATE_RUNNING
        assert len(n1.vmm_pids("web1")) == 1
        rc, out, err = c.canopy("vm", "resolve-migration", "web1",
                                "--power-off")
        assert rc == 0, out + err
        assert "was powered off on host node1" in out, out
        wait_until(lambda: n1.vmm_pids("web1") == [], 10,
                   "the source VMM gone")
        last = c.task(t.id)
        assert last.state == A().TASK_STATE_FAILED, last
        msg = last.error.message
        for words in ("resolve-migration --power-off", "by admin",
                      "host node2", "host node1"):
            assert words in msg, msg
        v = wait_until(lambda: c.vm().state == C().VM_RUN_STATE_STOPPED
                       and c.vm(), 10, "the vm stopped")
        assert v.host == "node1", v
        assert v.desired == A().POWER_STATE_OFF, v
        assert "powered off" in v.stop_reason, v
        assert "power_off=1" in n1.log_text()
        ev = [e for e in c.m.call(
            "EventService", "ListEvents", A().ListEventsRequest(),
            A().ListEventsResponse).events
            if e.kind == "vm.migration_resolved"]
        assert ev and ev[-1].object == "vm/web1", ev
        assert "--power-off" in ev[-1].message, ev
        assert "host node2 said: " in ev[-1].message, ev
        code, msg = api_code(lambda: c.m.call(
            "VmService", "ResolveMigration", resolve_req(), A().Task))
        assert code == grpc.StatusCode.FAILED_PRECONDITION, msg
        assert "no migration of vm web1 is in doubt" in msg, msg
        before = len(n1.console("web1"))
        c.run_task("StartVm", A().VmPowerRequest(name="web1"))
        wait_until(lambda: len(rounds(n1.console("web1")[before:])) >= 2,
                   20, "the guest booted again")
        c.only_on("node1")
    finally:
        c.close()


def test_in_doubt_killed_after_marker_resolved_by_resume(etcd, tmp_path):
    """The same doubt, the leader killed meanwhile: the standby rebuilds
    the in-doubt task; resolved through it with RESUME_SOURCE (node2 says
    its receiver may have run the VM: the operator's word stands), the
    guest goes on at node1 where it stopped, the migration task FAILED
    naming the choice."""
    from canopy_testlib.ports import free_port
    bus = free_port()
    c = doubt_cluster(etcd, tmp_path, bus=bus)
    m2 = mgrlib.Manager(tmp_path, etcd.endpoints, "m2", host_timeout=3,
                        command_timeout_ms=20000, bus_port=bus)
    n1 = c.agents["node1"]
    try:
        m2.start()
        t = doubt_after_marker(c)
        c.m.kill(signal.SIGKILL)
        c.m, m2 = m2, c.m
        c.m.wait_leader(timeout=20)
        wait_until(lambda: c.task(t.id).manager == "m2" and
                   "may have run the vm" in c.task(t.id).phase, 30,
                   "m2 owning the task, in doubt again")
        last = c.run_task("ResolveMigration", resolve_req(
            choice=A().ResolveMigrationRequest.CHOICE_RESUME_SOURCE))
        assert "resumed on host node1" in last.result, last
        assert "host node2 said: the receiving canopy-vmm exited with " \
            "status 137 after its run marker" in last.result, last
        assert last.kind == "vm.resolve_migration", last
        mig = c.task(t.id)
        assert mig.state == A().TASK_STATE_FAILED, mig
        assert "resolve-migration --resume-source" in mig.error.message
        resumed_on_node1(c, n1)
    finally:
        c.close()
        m2.close()


def test_in_doubt_past_the_bound_resolved_by_power_off(etcd, tmp_path,
                                                       monkeypatch):
    """The in-doubt bound (2 s here) passes with node2 saying its receiver
    may have run the VM: the migration task fails, the VM stays paused on
    node1; the operator's power-off still resolves it (the source's
    repeated in-doubt report names node2): the VM STOPPED on node1."""
    monkeypatch.setenv("CANOPY_MGR_TEST_DOUBT_MS", "2000")
    c = doubt_cluster(etcd, tmp_path)
    n1 = c.agents["node1"]
    try:
        t = doubt_after_marker(c, bound_passes=True)
        last = c.wait_task(t.id, timeout=30)
        assert last.state == A().TASK_STATE_FAILED, last
        assert "the migration is in doubt" in last.error.message, last
        assert len(n1.vmm_pids("web1")) == 1
        wait_until(lambda: "resolving an in-doubt vm without a task" in
                   c.m.log_text(), 15, "the source's repeated report")
        rc, out, err = c.canopy("vm", "resolve-migration", "web1",
                                "--power-off")
        assert rc == 0, out + err
        assert "migration to host node2 ended by admin" in out, out
        wait_until(lambda: n1.vmm_pids("web1") == [], 10,
                   "the source VMM gone")
        wait_until(lambda: c.vm().state == C().VM_RUN_STATE_STOPPED, 10,
                   "the vm stopped")
        assert c.vm().host == "node1"
    finally:
        c.close()


@pytest.mark.parametrize("choice", ["CHOICE_RESUME_SOURCE",
                                    "CHOICE_POWER_OFF"])
def test_resolve_refused_while_destination_may_run(etcd, tmp_path, choice):
    """In doubt while node2's receiver still holds COMMIT unread (held at
    dst-ack past the source's wait for STARTED): RESUME_SOURCE and
    POWER_OFF are refused (FAILED_PRECONDITION, nothing changed: node2 is
    asked first either way), and rightly: node2 then runs the VM and the
    migration succeeds, one VMM."""
    c = doubt_cluster(etcd, tmp_path, dst_pause="dst-ack:6000")
    n1, n2 = c.agents["node1"], c.agents["node2"]
    try:
        c.start_vm(args=GUEST_LIGHT)
        t = c.migrate("node2")
        wait_until(lambda: "in doubt" in c.task(t.id).phase, 20,
                   "the task in doubt")
        r = c.m.call("VmService", "ResolveMigration", resolve_req(
            choice=getattr(A().ResolveMigrationRequest, choice)), A().Task)
        last = c.wait_task(r.id, timeout=30)
        assert last.state == A().TASK_STATE_FAILED, last
        assert last.error.code == \
            grpc.StatusCode.FAILED_PRECONDITION.value[0], last.error
        assert "still waits for COMMIT" in last.error.message, last
        assert "nothing changed" in last.error.message, last
        assert len(n1.vmm_pids("web1")) == 1
        assert "power_off=1" not in n1.log_text()
        assert c.vm().host == "node1"
        mig = c.wait_task(t.id, timeout=30)
        assert mig.state == A().TASK_STATE_SUCCEEDED, mig
        c.only_on("node2")
        guest_keeps_going(n2)
    finally:
        c.close()


def test_resume_source_refused_without_a_definite_answer(etcd, tmp_path):
    """The doubt of a receiver killed after its run marker, node2's agent
    then stopped (connected, silent): RESUME_SOURCE waits 5 s for node2's
    answer and is refused (FAILED_PRECONDITION, nothing changed): no
    resume is sent, the VM stays paused on node1, the doubt goes on."""
    c = doubt_cluster(etcd, tmp_path)
    n1, n2 = c.agents["node1"], c.agents["node2"]
    try:
        t = doubt_after_marker(c)
        n2.proc.send_signal(signal.SIGSTOP)
        try:
            r = c.m.call("VmService", "ResolveMigration", resolve_req(
                choice=A().ResolveMigrationRequest.CHOICE_RESUME_SOURCE), A().Task)
            last = c.wait_task(r.id, timeout=30)
        finally:
            n2.proc.send_signal(signal.SIGCONT)
        assert last.state == A().TASK_STATE_FAILED, last
        assert last.error.code == \
            grpc.StatusCode.FAILED_PRECONDITION.value[0], last.error
        msg = last.error.message
        assert "could not get a definite answer from host node2" in msg, msg
        assert "nothing changed: retry" in msg, msg
        assert "resume=1" not in n1.log_text()
        assert len(n1.vmm_pids("web1")) == 1
        assert c.task(t.id).state == A().TASK_STATE_RUNNING
        assert c.vm().host == "node1"
    finally:
        c.close()


@pytest.mark.root
def test_link_down_after_commit_arrived_resolved_by_manager(netns, etcd,
                                                           tmp_path):
    """node2's veth goes down while node2's receiver is held after its
    ACK with COMMIT already in its socket: node2 runs the VM but its
    STARTED is lost; the source holds the VM paused in doubt; once node2
    is back and says it has the VM the manager records the move and tells
    the source to stop as migrated: one VMM, on node2, task SUCCEEDED."""
    c = netns_cluster(netns, etcd, tmp_path)
    io = {"CANOPY_MIG_TEST_IO_TIMEOUT_MS": "1500"}
    c.agents["node1"].env = io
    c.agents["node2"].env = dict(io, CANOPY_MIG_TEST_PAUSE="dst-ack:1500")
    n1, n2 = c.agents["node1"], c.agents["node2"]
    try:
        c.start()
        c.start_vm(args=GUEST_LIGHT)
        t = c.migrate("node2")
        wait_until(lambda: "point=dst-ack" in vmm_log(n2), 30,
                   "the destination at dst-ack")
        ip("link", "set", netns["veth"]["node2"], "down")
        try:
            wait_until(lambda: "in doubt" in c.task(t.id).phase, 20,
                       "the task in doubt")
            assert len(n1.vmm_pids("web1")) == 1  # paused, not gone
            assert c.task(t.id).state == A().TASK_STATE_RUNNING
        finally:
            ip("link", "set", netns["veth"]["node2"], "up")
        last = c.wait_task(t.id, timeout=60)
        assert last.state == A().TASK_STATE_SUCCEEDED, last
        assert "migrated from host node1 to node2" in last.result, last
        wait_until(lambda: n1.vmm_pids("web1") == [], 10,
                   "the source VMM gone")
        # It stopped as migrated: the agent forgot it (no crash report),
        # its directory removed before that line.
        wait_until(lambda: "vm migrated away; forgetting it"
                   in n1.log_text(), 10, "the source agent forgetting it")
        assert not (n1.run_dir / "vms" / "web1").exists()
        c.only_on("node2")
        guest_keeps_going(n2)
    finally:
        c.close()


def test_destination_agent_restarted_midstream(cluster):
    """The destination agent dies and comes back while the VM streams to
    it: the new agent process finds the receiving VMM (its marker and
    working directory), watches it, and owns the VM once it runs."""
    c = cluster
    c.start_vm(args="dirty=4,rate=250,verify=100")
    n2 = c.agents["node2"]
    t = c.migrate("node2", bandwidth_limit_mib_s=2)
    wait_phase(c, t.id, "precopy")
    n2.kill()
    n2.start()
    last = c.wait_task(t.id, timeout=90)
    assert last.state == A().TASK_STATE_SUCCEEDED, last
    assert "incoming migration re-attached" in n2.log_text()
    wait_until(lambda: c.vm().state == C().VM_RUN_STATE_RUNNING and
               c.host("node2").state == A().HOST_STATE_CONNECTED, 10,
               "node2 back, the vm running")
    c.only_on("node2")
    # The manager records the move at commit; the agent drops its marker
    # at its next look at the running VMM (50 ms polls), maybe a bit later.
    wait_until(lambda: not (n2.run_dir / "vms" / "web1" /
                            "incoming.pid").exists(), 10,
               "node2's incoming marker removed")
    guest_keeps_going(n2)
    # The adopted VM is the agent's: a power command reaches it.
    c.run_task("StopVm", A().VmPowerRequest(name="web1", hard=True))
    assert n2.vmm_pids("web1") == []
