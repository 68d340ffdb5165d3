"""canopy-managerd bad input outside the API calls: command-line options
and config files, and hostile or confused peers on the agent bus (garbage
frames, a registration that breaks the rules, reports from a host that
never registered). The daemon answers each clearly and stays up."""
import os
import subprocess
import time

import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib

A = mgrlib.api


@pytest.fixture(autouse=True)
def _need_binaries(request):
    for rel in ("bin/canopy-managerd", "tests/helpers/mgr_fake_agent"):
        if not os.path.exists(mgrlib.binary(rel)):
            pytest.skip("SKIP: %s not built: run make" % rel)
    if "etcd" in request.fixturenames and not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing" % etcdlib.ETCD)


def run(*args, timeout=10):
    return subprocess.run([mgrlib.binary("bin/canopy-managerd")] +
                          list(args), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args,word", [
    ([], "--etcd is required"),
    (["--etcd", "127.0.0.1:1", "--host-timeout", "0"], "--host-timeout"),
    (["--etcd", "127.0.0.1:1", "--host-timeout", "ten"], "--host-timeout"),
    (["--etcd", "127.0.0.1:1", "--command-timeout", "-5"],
     "--command-timeout"),
    (["--etcd", "127.0.0.1:1", "--id", "bad id"], "--id"),
    (["--etcd", "127.0.0.1:1", "--task-retention", "0"], "--task-retention"),
    (["--etcd", "127.0.0.1:1", "--event-retention", "x"],
     "--event-retention"),
    (["--etcd", "127.0.0.1:1", "--log-level", "loud"], "--log-level"),
    (["--etcd", "https://127.0.0.1:1"], "--etcd"),
    (["--etcd", "127.0.0.1:1", "extra"], "unexpected argument"),
    (["--nope"], "usage"),
])
def test_bad_options(args, word):
    r = run(*args)
    assert r.returncode != 0
    assert word in r.stderr, r.stderr


def test_config_file(tmp_path, etcd):
    bad = tmp_path / "bad.conf"
    bad.write_text("etcd = 127.0.0.1:1\nlistne = 127.0.0.1:1\n")
    r = run("--config", str(bad))
    assert r.returncode != 0 and "unknown key 'listne'" in r.stderr
    r = run("--config", str(tmp_path / "missing.conf"))
    assert r.returncode != 0 and "missing.conf" in r.stderr
    # A good file is used; the command line wins over it.
    m = mgrlib.Manager(tmp_path, ["127.0.0.1:1"], "fromfile")
    good = tmp_path / "good.conf"
    good.write_text("etcd = %s\nid = fromfile\nlisten = %s\n"
                    "host_timeout = 3\nstate_dir = %s\n"
                    "admin_password_file = %s\n" % (
                        etcd.endpoints[0], m.addr, m.pki.state_dir,
                        m.pki.admin_password_file))
    m.cmd = [mgrlib.binary("bin/canopy-managerd"), "--config", str(good),
             "--bus", m.bus]
    try:
        cl = m.start().wait_leader()
        assert cl.leader == "fromfile" and cl.leader_address == m.addr
    finally:
        m.close()


@pytest.fixture
def mgr(etcd, tmp_path):
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1", host_timeout=2)
    try:
        m.start().wait_leader()
        yield m
    finally:
        m.close()


def envelope(host_id, request_id=0, **body):
    ag = protos_agent()
    env = ag.Envelope(version=1, host_id=host_id, request_id=request_id)
    for k, v in body.items():
        getattr(env, k).CopyFrom(v)
    return env


def protos_agent():
    from canopy_testlib import protos
    return protos.load("canopy_agent")


def reply_to(s, rid):
    """The CommandResult answering request rid (skipping heartbeats)."""
    ag = protos_agent()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        env = ag.Envelope.FromString(s.recv())
        if env.reply_to == rid:
            return env.result.status
    raise AssertionError("no reply to %d" % rid)


def test_bus_bad_peers(mgr):
    pytest.importorskip("zmq", reason="SKIP: python3-zmq missing")
    ag = protos_agent()
    g = mgr.bus_dealer("garbage")
    for junk in [b"", b"\xff" * 64, b"\x08\x01" + b"\x00" * 10]:
        g.send(junk)
    g.send_multipart([b"a", b"b", b"c"])
    # A registration that breaks the rules is refused and not stored.
    s = mgr.bus_dealer("h9")
    s.send(envelope("h9", 7, register=ag.AgentRegister(
        hostname="", cpus=0, memory_mib=0)).SerializeToString())
    st = reply_to(s, 7)
    assert st.code == 3 and "hostname" in st.message
    # Reports from a host that never registered are refused too.
    s.send(envelope("h9", 8, host_stats=ag.HostStats(
        memory_used_mib=5)).SerializeToString())
    st = reply_to(s, 8)
    assert st.code == 9 and "AgentRegister" in st.message
    hosts = mgr.call("HostService", "ListHosts", A().ListHostsRequest(),
                     A().ListHostsResponse).hosts
    assert list(hosts) == []
    # The manager is alive and a real agent still registers.
    agent = mgrlib.FakeAgent(mgr, "h1")
    try:
        agent.expect("registered 0")
        assert mgr.cluster().hosts_connected == 1
    finally:
        agent.close()
    g.close()
    s.close()
    assert mgr.proc.poll() is None


def test_concurrent_calls_and_dropped_streams(mgr):
    """Many clients at once, streams opened and dropped mid-way, a client
    that closes its connection with calls open: every call is answered and
    the manager stays up."""
    import threading
    a = A()
    errors = []

    def worker(n):
        try:
            for i in range(30):
                mgr.cluster()
                mgr.call("VmService", "ListVms", a.ListVmsRequest(),
                         a.ListVmsResponse)
                try:
                    mgr.call("VmService", "GetVm",
                             a.GetVmRequest(name="vm%d" % i), a.Vm)
                except Exception as e:  # NOT_FOUND expected
                    if e.code().name != "NOT_FOUND":
                        raise
        except Exception as e:  # collected for the assert below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    streams = []
    for i in range(20):
        s = mgr.stream("EventService", "WatchEvents",
                       a.WatchEventsRequest(after_seq=0), a.Event)
        next(s)  # replay reached us
        streams.append(s)
    for s in streams:
        s.cancel()
    # A separate connection dropped with a stream open.
    ch = mgr.pki.channel(mgr.addr)
    f = ch.unary_stream("/canopy.v1.EventService/WatchEvents",
                        request_serializer=lambda m: m.SerializeToString(),
                        response_deserializer=a.Event.FromString)
    it = f(a.WatchEventsRequest(after_seq=0))
    next(it)
    ch.close()
    for t in threads:
        t.join(60)
    assert errors == []
    assert mgr.cluster().leader == "m1"
    assert mgr.proc.poll() is None


METHODS = [
    ("ClusterService", "GetCluster"), ("HostService", "ListHosts"),
    ("HostService", "GetHost"), ("HostService", "RemoveHost"),
    ("VmService", "CreateVm"), ("VmService", "ListVms"),
    ("VmService", "GetVm"), ("VmService", "StartVm"),
    ("VmService", "StopVm"), ("VmService", "PauseVm"),
    ("VmService", "ResumeVm"), ("VmService", "DeleteVm"),
    ("VmService", "ReadConsole"),
    ("DatastoreService", "ListDatastores"), ("TaskService", "ListTasks"),
    ("TaskService", "GetTask"), ("TaskService", "CancelTask"),
    ("EventService", "ListEvents"),
]


class Raw:
    @staticmethod
    def FromString(b):
        return b


def test_random_requests_every_method(mgr):
    """Random bytes and random field soup to every unary method: each call
    gets a status (never a hang or a crash) and the manager stays up."""
    import random
    import grpc
    rnd = random.Random(8)
    seen = set()
    for svc, meth in METHODS:
        f = mgr.channel.unary_unary("/canopy.v1.%s/%s" % (svc, meth),
                                    request_serializer=lambda b: b,
                                    response_deserializer=Raw.FromString)
        for i in range(40):
            n = rnd.randrange(0, 64)
            if i % 2:
                body = bytes(rnd.randrange(256) for _ in range(n))
            else:  # plausible tags with random payloads
                body = b"".join(bytes([(rnd.randrange(1, 12) << 3) | 2,
                                       k]) + bytes(rnd.randrange(97, 123)
                                                   for _ in range(k))
                                for k in [rnd.randrange(0, 20)
                                          for _ in range(3)])
            try:
                f(body, timeout=10)
                seen.add("OK")
            except grpc.RpcError as e:
                assert e.code() != grpc.StatusCode.UNKNOWN, e.details()
                assert e.code() != grpc.StatusCode.DEADLINE_EXCEEDED
                seen.add(e.code().name)
    assert "INVALID_ARGUMENT" in seen
    assert mgr.proc.poll() is None
    assert mgr.cluster().leader == "m1"
