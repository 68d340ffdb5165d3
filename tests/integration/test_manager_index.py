"""canopy-managerd's inventory index (manager/index*.c) against a real etcd:
host VM counts, VM, running and host totals right at once after create,
start, delete, a VM moved to another host, on a standby that then takes
over, after a manager restart and after etcd compacted the revision the
watch stood at (the index re-reads); a malformed placement key is ignored
with a log line (which also shows the counts come from the index, since an
etcd count would include the key)."""
import os
import re
import signal
import socket
import threading
import time

import grpc
import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib
from canopy_testlib import protos
from canopy_testlib.ports import free_port

A = mgrlib.api
C = mgrlib.common


@pytest.fixture(autouse=True)
def _need_binaries():
    for rel in ("bin/canopy-managerd", "tests/helpers/mgr_fake_agent"):
        if not os.path.exists(mgrlib.binary(rel)):
            pytest.skip("SKIP: %s not built: run make" % rel)
    if not (os.path.exists(etcdlib.ETCD) and os.path.exists(etcdlib.ETCDCTL)):
        pytest.skip("SKIP (needs etcd): %s missing (Debian package "
                    "etcd-server)" % etcdlib.ETCD)


def E():
    return protos.load("etcd_rpc")


class Etcd:
    """A python gRPC client of the real etcd (not through the manager)."""

    def __init__(self, endpoint):
        self.ch = grpc.insecure_channel(endpoint)

    def _u(self, method, resp):
        return self.ch.unary_unary(
            "/etcdserverpb.KV/" + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=resp.FromString)

    def get(self, key):
        r = self._u("Range", E().RangeResponse)(E().RangeRequest(key=key))
        return r.kvs[0].value if r.kvs else None

    def put(self, key, value=b""):
        return self._u("Put", E().PutResponse)(
            E().PutRequest(key=key, value=value)).header.revision

    def txn(self, puts=(), deletes=()):
        e = E()
        ops = [e.RequestOp(request_put=e.PutRequest(key=k, value=v))
               for k, v in puts]
        ops += [e.RequestOp(request_delete_range=e.DeleteRangeRequest(key=k))
                for k in deletes]
        return self._u("Txn", e.TxnResponse)(
            e.TxnRequest(success=ops)).header.revision

    def close(self):
        self.ch.close()


class Proxy:
    """A TCP proxy between the manager and etcd that can cut every
    connection (and refuse new ones) and then let them through again."""

    def __init__(self, upstream):
        host, port = upstream.rsplit(":", 1)
        self.up = (host, int(port))
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.endpoint = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.conns = []
        self.cut_now = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.cut_now:
                c.close()
                continue
            try:
                u = socket.create_connection(self.up, 2)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b),
                                 daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.cut_now = True
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self):
        self.cut_now = False

    def close(self):
        self.cut()
        self.lsock.close()


def spec(name):
    return C().VmSpec(name=name, cpus=1, memory_mib=64,
                      kernel="/boot/guest.elf")


def create(m, name, host=""):
    return m.call("VmService", "CreateVm",
                  A().CreateVmRequest(spec=spec(name), host=host), A().Task)


def final(m, task_id):
    got = list(m.stream("TaskService", "WaitTask",
                        A().WaitTaskRequest(id=task_id), A().Task))
    return got[-1]


def host_vms(m, hid):
    return m.call("HostService", "GetHost", A().GetHostRequest(id=hid),
                  A().Host).vms


def list_vms(m):
    r = m.call("HostService", "ListHosts", A().ListHostsRequest(),
               A().ListHostsResponse)
    return {h.id: h.vms for h in r.hosts}


def counts(m):
    c = m.cluster()
    return c.hosts, c.vms, c.vms_running


def wait_log(m, pattern, timeout, start=0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, m.log_text()[start:])
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("no %r in the log of %s:\n%s" % (
        pattern, m.id, m.log_text()[-3000:]))


def ready_line(m, start=0):
    return wait_log(m, r"inventory index ready.*", 10, start).group(0)


def field(line, name):
    return int(re.search(r"\b%s=(\d+)" % name, line).group(1))


def no_fallback(m):
    """Once the index is ready, no request counted in etcd instead."""
    log = m.log_text()
    ready = log.find("inventory index ready")
    assert ready >= 0, log[-3000:]
    assert "counting in etcd" not in log[ready:], log[-3000:]


def move(db, name, old, new):
    """Move VM name from host old to new the way a committed vMotion
    (manager/migrate.c) or a restart elsewhere does: the Vm record's host,
    the new placement key and the old one's delete in one transaction."""
    v = A().Vm.FromString(db.get(b"/canopy/vms/" + name.encode()))
    assert v.host == old
    v.host = new
    return db.txn(puts=[(b"/canopy/vms/" + name.encode(),
                         v.SerializeToString()),
                        (("/canopy/placement/%s/%s" % (new, name)).encode(),
                         b"")],
                  deletes=[("/canopy/placement/%s/%s" % (old, name))
                           .encode()])


@pytest.fixture
def mgr(etcd, tmp_path):
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1", host_timeout=30)
    try:
        m.start().wait_leader()
        yield m
    finally:
        m.close()


@pytest.fixture
def agents(mgr):
    ags = []
    try:
        for hid, mem in (("h1", 8192), ("h2", 1024)):
            ags.append(mgrlib.FakeAgent(mgr, hid, memory_mib=mem))
            ags[-1].expect("registered 0")
        yield ags
    finally:
        for a in ags:
            a.close()


def test_counts_right_at_once(mgr, agents, etcd):
    a = A()
    assert ready_line(mgr)
    assert counts(mgr) == (2, 0, 0)
    assert list_vms(mgr) == {"h1": 0, "h2": 0}
    # No wait for the task: the VM and its placement are written when the
    # create is accepted, and the next read must show them.
    t1 = create(mgr, "web1", "h1")
    assert host_vms(mgr, "h1") == 1
    t2 = create(mgr, "web2", "h2")
    assert list_vms(mgr) == {"h1": 1, "h2": 1}
    t3 = create(mgr, "web3", "h2")
    assert host_vms(mgr, "h2") == 2
    assert counts(mgr) == (2, 3, 0)
    for t in (t1, t2, t3):
        assert final(mgr, t.id).state == a.TASK_STATE_SUCCEEDED
    t = mgr.call("VmService", "StartVm", a.VmPowerRequest(name="web2"),
                 a.Task)
    assert final(mgr, t.id).state == a.TASK_STATE_SUCCEEDED
    assert counts(mgr) == (2, 3, 1)
    t = mgr.call("VmService", "StopVm",
                 a.VmPowerRequest(name="web2", hard=True), a.Task)
    assert final(mgr, t.id).state == a.TASK_STATE_SUCCEEDED
    assert counts(mgr)[2] == 0
    t = mgr.call("VmService", "DeleteVm", a.DeleteVmRequest(name="web3"),
                 a.Task)
    assert final(mgr, t.id).state == a.TASK_STATE_SUCCEEDED
    assert list_vms(mgr) == {"h1": 1, "h2": 1}
    assert counts(mgr) == (2, 2, 0)
    no_fallback(mgr)

    # A malformed placement key (not written by Canopy) is ignored with a
    # log line; an etcd count of h1's placement prefix would include it.
    db = Etcd(etcd.endpoints[0])
    try:
        db.put(b"/canopy/placement/h1/NOT_A_VM")
    finally:
        db.close()
    assert host_vms(mgr, "h1") == 1
    assert list_vms(mgr)["h1"] == 1
    wait_log(mgr, r"inventory index ignores a malformed key.*NOT_A_VM", 5)


def test_vm_moved_to_another_host(mgr, agents, etcd):
    a = A()
    for n in ("web1", "web2"):
        assert final(mgr, create(mgr, n, "h1").id).state == \
            a.TASK_STATE_SUCCEEDED
    assert list_vms(mgr) == {"h1": 2, "h2": 0}
    db = Etcd(etcd.endpoints[0])
    try:
        move(db, "web1", "h1", "h2")
    finally:
        db.close()
    assert host_vms(mgr, "h1") == 1 and host_vms(mgr, "h2") == 1
    assert list_vms(mgr) == {"h1": 1, "h2": 1}
    assert counts(mgr) == (2, 2, 0)
    on_h2 = mgr.call("VmService", "ListVms", a.ListVmsRequest(host="h2"),
                     a.ListVmsResponse).vms
    assert [v.id for v in on_h2] == ["web1"]
    # The last write is outside /canopy/ (the watch never delivers it):
    # the request writes the barrier key instead of waiting it out.
    db = Etcd(etcd.endpoints[0])
    try:
        db.put(b"/not-canopy/x", b"1")
        t0 = time.monotonic()
        assert host_vms(mgr, "h2") == 1
        took = time.monotonic() - t0
        assert db.get(b"/canopy/meta/index-barrier") == b"m1"
    finally:
        db.close()
    assert took < 1.0, took  # MGR_INDEX_BARRIER_MS, not the 2 s bound
    assert "inventory index is behind" not in mgr.log_text()
    no_fallback(mgr)


def test_restart_reads_the_index_again(mgr, agents, etcd, tmp_path):
    a = A()
    for n, h in (("web1", "h1"), ("web2", "h1"), ("web3", "h2")):
        assert final(mgr, create(mgr, n, h).id).state == \
            a.TASK_STATE_SUCCEEDED
    t = mgr.call("VmService", "StartVm", a.VmPowerRequest(name="web3"),
                 a.Task)
    assert final(mgr, t.id).state == a.TASK_STATE_SUCCEEDED
    mgr.close()
    m2 = mgrlib.Manager(tmp_path, etcd.endpoints, "m1b", host_timeout=30)
    try:
        m2.start().wait_leader()
        line = ready_line(m2)
        assert (field(line, "hosts"), field(line, "vms"),
                field(line, "running"), field(line, "placed")) == \
            (2, 3, 1, 3), line
        assert list_vms(m2) == {"h1": 2, "h2": 1}
        assert counts(m2) == (2, 3, 1)
        no_fallback(m2)
    finally:
        m2.close()


def test_standby_keeps_counts_and_takes_over(etcd, tmp_path):
    a = A()
    bus = free_port()
    ms = [mgrlib.Manager(tmp_path, etcd.endpoints, mid, host_timeout=30,
                         bus_port=bus) for mid in ("m1", "m2")]
    ag = None
    try:
        ms[0].start().wait_leader()
        ms[1].start()
        # The standby's index is loaded before any VM exists...
        line = ready_line(ms[1])
        assert field(line, "vms") == 0, line
        ag = mgrlib.FakeAgent(ms[0], "h1")
        ag.expect("registered 0")
        for n in ("web1", "web2", "web3"):
            assert final(ms[0], create(ms[0], n).id).state == \
                a.TASK_STATE_SUCCEEDED
        t = ms[0].call("VmService", "StartVm",
                       a.VmPowerRequest(name="web1"), a.Task)
        assert final(ms[0], t.id).state == a.TASK_STATE_SUCCEEDED
        # ... and follows the watch while standby (it serves no API).
        with pytest.raises(grpc.RpcError) as e:
            ms[1].cluster()
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        ms[0].kill(signal.SIGKILL)
        ms[1].wait_leader(timeout=15)
        assert counts(ms[1]) == (1, 3, 1)
        assert host_vms(ms[1], "h1") == 3
        assert list_vms(ms[1]) == {"h1": 3}
        log = ms[1].log_text()
        assert log.count("inventory index ready") == 1, log[-3000:]
        assert "re-reading" not in log
        no_fallback(ms[1])
    finally:
        if ag:
            ag.close()
        for m in ms:
            m.close()


def test_compaction_past_the_watch_rereads(etcd, tmp_path):
    a = A()
    proxy = Proxy(etcd.endpoints[0])
    m = mgrlib.Manager(tmp_path, [proxy.endpoint], "m1", host_timeout=30)
    ags, db = [], Etcd(etcd.endpoints[0])
    try:
        m.start().wait_leader()
        for hid in ("h1", "h2"):
            ags.append(mgrlib.FakeAgent(m, hid))
            ags[-1].expect("registered 0")
        for n in ("web1", "web2"):
            assert final(m, create(m, n, "h1").id).state == \
                a.TASK_STATE_SUCCEEDED
        assert list_vms(m) == {"h1": 2, "h2": 0}
        ready_line(m)
        mark = len(m.log_text())
        # While the manager cannot reach etcd: web1 moves to h2, a VM the
        # manager never saw appears on h2 running, then etcd compacts
        # past everything the manager's watch has seen.
        proxy.cut()
        move(db, "web1", "h1", "h2")
        v = A().Vm.FromString(db.get(b"/canopy/vms/web2"))
        v.id, v.host = "ghost", "h2"
        rev = db.txn(puts=[(b"/canopy/vms/ghost", v.SerializeToString()),
                           (b"/canopy/placement/h2/ghost", b""),
                           (b"/canopy/running/ghost", b"")])
        etcd.etcdctl("compact", str(rev))
        time.sleep(0.5)
        proxy.restore()
        wait_log(m, r"inventory index re-reading etcd.*compacted", 15, mark)
        line = ready_line(m, mark)
        assert (field(line, "vms"), field(line, "running"),
                field(line, "placed")) == (3, 1, 3), line
        m.wait_leader()
        assert list_vms(m) == {"h1": 1, "h2": 2}
        assert counts(m) == (2, 3, 1)
        # The watch runs again from the new snapshot.
        assert final(m, create(m, "web4", "h1").id).state == \
            a.TASK_STATE_SUCCEEDED
        assert host_vms(m, "h1") == 2
    finally:
        db.close()
        for ag in ags:
            ag.close()
        m.close()
        proxy.close()


def test_stop_while_changes_stream_in(etcd, tmp_path):
    """SIGTERM while the watch is receiving events ends the manager at
    once (a completion that came in as the watch stopped was lost and the
    watch thread waited for it forever: lib/etcd_watch.c)."""
    stop = threading.Event()

    def writer():
        db = Etcd(etcd.endpoints[0])
        i = 0
        try:
            while not stop.is_set():
                i += 1
                db.put(b"/canopy/tasks/0000000000000-%06x" % (i % 64), b"x")
        finally:
            db.close()

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    try:
        for i in range(8):
            m = mgrlib.Manager(tmp_path, etcd.endpoints, "s%d" % i)
            m.start()
            ready_line(m)
            time.sleep(0.1)
            t0 = time.monotonic()
            try:
                m.close()  # SIGTERM, waits 10 s, raises if still alive
            finally:
                m.kill(signal.SIGKILL)
            assert time.monotonic() - t0 < 3, m.log_text()[-2000:]
            assert "canopy-managerd stopped" in m.log_text()
    finally:
        stop.set()
        th.join(5)


def test_counts_right_while_loading(etcd, tmp_path):
    """A manager starting on 6,000 VMs (4 hosts) answers right from its
    first call on: while the index loads (one page of 1,000 keys per loop
    turn) the counts come from etcd, then from the index."""
    db = Etcd(etcd.endpoints[0])
    n_hosts, n_vms = 4, 6000
    try:
        ops = []
        for i in range(n_hosts):
            h = A().Host(id="lh%d" % i, hostname="lh%d" % i, cpus=4,
                         memory_mib=1024, state=A().HOST_STATE_DISCONNECTED)
            ops.append((b"/canopy/hosts/lh%d" % i, h.SerializeToString()))
        for i in range(n_vms):
            ops.append((b"/canopy/vms/lv%05d" % i, b""))
            ops.append((b"/canopy/placement/lh%d/lv%05d" % (i % n_hosts, i),
                        b""))
        for k in range(0, len(ops), 100):
            db.txn(puts=ops[k:k + 100])
    finally:
        db.close()
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1", host_timeout=30)
    try:
        m.start()
        want = {"lh%d" % i: n_vms // n_hosts for i in range(n_hosts)}
        deadline = time.monotonic() + 15
        answers = 0
        while "inventory index ready" not in m.log_text() or answers < 5:
            assert time.monotonic() < deadline, m.log_text()[-3000:]
            try:
                got = list_vms(m)
            except grpc.RpcError as err:  # not leader yet
                assert err.code() == grpc.StatusCode.UNAVAILABLE
                continue
            assert got == want
            assert counts(m) == (n_hosts, n_vms, 0)
            answers += 1
        line = ready_line(m)
        assert field(line, "pages") >= 13, line  # 6,000 x 2 + 4 keys
        assert list_vms(m) == want
        no_fallback(m)
    finally:
        m.close()
