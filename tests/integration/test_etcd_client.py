"""The C etcd client (lib/etcd*.c) against real etcd servers, driven through
tests/helpers/etcd_tool: KV round trips checked with etcdctl, transactions,
leases, watches (order, replay, resume across a killed member, compaction),
failover of unary calls and bad input. etcd_tool exits with the errno of a
failure, so exit statuses below are errno values."""
import errno
import json
import os
import queue
import subprocess
import threading
import time

import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import protos
from canopy_testlib.ports import free_ports


@pytest.fixture(scope="module")
def tool():
    path = os.path.join(protos.build_dir(), "tests", "helpers", "etcd_tool")
    if not os.path.exists(path):
        pytest.skip("SKIP: %s not built: run make" % path)
    return path


@pytest.fixture(autouse=True)
def _need_etcd(request):
    uses_etcd = {"etcd", "etcd3"} & set(request.fixturenames)
    if uses_etcd and not (os.path.exists(etcdlib.ETCD) and
                          os.path.exists(etcdlib.ETCDCTL)):
        pytest.skip("SKIP (needs etcd): %s or %s missing (Debian packages "
                    "etcd-server, etcd-client)" % (etcdlib.ETCD,
                                                   etcdlib.ETCDCTL))


class Result:
    def __init__(self, p):
        self.rc = p.returncode
        self.err = p.stderr
        self.lines = [json.loads(x) for x in p.stdout.splitlines() if x]

    @property
    def one(self):
        assert len(self.lines) == 1, (self.lines, self.err)
        return self.lines[0]


def run(tool, endpoints, *args, timeout_ms=None, limit=30):
    cmd = [tool, "--endpoints", ",".join(endpoints)]
    if timeout_ms:
        cmd += ["--timeout", str(timeout_ms)]
    p = subprocess.run(cmd + [str(a) for a in args], capture_output=True,
                       text=True, timeout=limit)
    return Result(p)


def ok(tool, endpoints, *args, **kw):
    r = run(tool, endpoints, *args, **kw)
    assert r.rc == 0, r.err
    return r.one


def ctl_get(cluster, key):
    return cluster.etcdctl("get", key, "--print-value-only").rstrip("\n")


def ctl_rev(cluster):
    out = cluster.etcdctl("get", "/", "--prefix", "--limit", "1", "-w",
                          "json")
    return json.loads(out)["header"]["revision"]


class Watcher:
    """etcd_tool watch in the background; lines are parsed as they come."""

    def __init__(self, tool, endpoints, *args):
        self.p = subprocess.Popen(
            [tool, "--endpoints", ",".join(endpoints), "watch"] +
            [str(a) for a in args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.q = queue.Queue()
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.q.put(json.loads(line))
        self.q.put(None)

    def next(self, timeout=20):
        x = self.q.get(timeout=timeout)
        if x is not None:
            self.lines.append(x)
        return x

    def wait_connected(self, timeout=20):
        x = self.next(timeout)
        assert x and "connected" in x, (x, self.p.stderr.read())
        return x["connected"]

    def finish(self, timeout=60):
        while True:
            if self.next(timeout) is None:
                break
        self.p.wait(10)
        return self.p.returncode

    def events(self):
        return [x for x in self.lines if "type" in x]

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


def test_put_get_range_delete_match_etcdctl(tool, etcd):
    eps = etcd.endpoints
    r1 = ok(tool, eps, "put", "/t/a", "one")["revision"]
    assert ctl_get(etcd, "/t/a") == "one"
    etcd.etcdctl("put", "/t/b", "two")
    got = ok(tool, eps, "get", "/t/b")
    assert [(k["key"], k["value"]) for k in got["kvs"]] == [("/t/b", "two")]
    assert got["kvs"][0]["version"] == 1
    assert got["kvs"][0]["create_revision"] == got["revision"] == r1 + 1
    ok(tool, eps, "put", "/t/a", "uno")
    put = ok(tool, eps, "put", "/t/c", "three", "--prev")
    assert put["prev"] is None
    put = ok(tool, eps, "put", "/t/c", "tres", "--prev")
    assert put["prev"]["value"] == "three"
    rng = ok(tool, eps, "range", "/t/")
    ctl = etcd.etcdctl("get", "/t/", "--prefix").split("\n")[:-1]
    assert ctl == sum([[k["key"], k["value"]] for k in rng["kvs"]], [])
    assert [k["value"] for k in rng["kvs"]] == ["uno", "two", "tres"]
    assert rng["kvs"][0]["version"] == 2 and rng["count"] == 3
    lim = ok(tool, eps, "range", "/t/", "--limit", 2, "--keys-only")
    assert [k["key"] for k in lim["kvs"]] == ["/t/a", "/t/b"]
    assert lim["more"] and all(k["value"] == "" for k in lim["kvs"])
    old = ok(tool, eps, "range", "/t/a", "--rev", r1)
    assert [k["value"] for k in old["kvs"]] == ["one"]
    assert ok(tool, eps, "del", "/t/a")["deleted"] == 1
    assert etcd.etcdctl("get", "/t/a") == ""
    r = run(tool, eps, "get", "/t/a")
    assert r.rc == errno.ENOENT and "does not exist" in r.err
    assert ok(tool, eps, "del", "/t/", "--prefix")["deleted"] == 2
    assert ok(tool, eps, "del", "/t/", "--prefix")["deleted"] == 0
    assert etcd.etcdctl("get", "/t/", "--prefix") == ""


def test_txn_compare_and_swap(tool, etcd):
    eps = etcd.endpoints
    etcd.etcdctl("put", "/cas", "a")
    ok(tool, eps, "cas", "/cas", "a", "b")
    assert ctl_get(etcd, "/cas") == "b"
    r = run(tool, eps, "cas", "/cas", "a", "c")
    assert r.rc == errno.ESTALE and "expected value" in r.err
    assert ctl_get(etcd, "/cas") == "b"
    r = run(tool, eps, "cas", "/nothing", "a", "c")
    assert r.rc == errno.ENOENT
    assert etcd.etcdctl("get", "/nothing") == ""


def test_txn_compares_and_branches(tool, etcd):
    eps = etcd.endpoints
    rev = ok(tool, eps, "put", "/tx/a", "1")["revision"]
    ok(tool, eps, "put", "/tx/a", "2")
    etcd.etcdctl("put", "/tx/p/x", "x")
    etcd.etcdctl("put", "/tx/p/y", "y")

    def txn(*args):
        return ok(tool, eps, "txn", *args)

    # Every target and result, each once true and once false.
    true_cmps = ["/tx/a:version:=:2", "/tx/a:version:>:1",
                 "/tx/a:create:=:%d" % rev, "/tx/a:mod:>:%d" % rev,
                 "/tx/a:mod:<:%d" % (rev + 100), "/tx/a:value:=:2",
                 "/tx/a:value:!=:1", "/tx/a:lease:=:0",
                 "/tx/none:version:=:0"]
    false_cmps = ["/tx/a:version:<:2", "/tx/a:create:!=:%d" % rev,
                  "/tx/a:mod:=:%d" % rev, "/tx/a:value:>:3",
                  "/tx/a:lease:>:0", "/tx/none:value:=:"]
    for cmp in true_cmps:
        assert txn(cmp)["succeeded"], cmp
    for cmp in false_cmps:
        assert not txn(cmp)["succeeded"], cmp
    # All compares must hold; the else branch runs otherwise.
    r = txn(*(true_cmps + [false_cmps[0]]), "--", "put:/tx/then:t", "--",
            "get:/tx/a", "range:/tx/p/", "delp:/tx/p/", "put:/tx/else:e")
    assert not r["succeeded"]
    assert [x["type"] for x in r["results"]] == ["range", "range", "delete",
                                                 "put"]
    assert [k["value"] for k in r["results"][0]["kvs"]] == ["2"]
    assert [k["key"] for k in r["results"][1]["kvs"]] == ["/tx/p/x",
                                                          "/tx/p/y"]
    assert r["results"][2]["deleted"] == 2
    assert etcd.etcdctl("get", "/tx/then") == ""
    assert ctl_get(etcd, "/tx/else") == "e"
    assert etcd.etcdctl("get", "/tx/p/", "--prefix") == ""
    r = txn(*true_cmps, "--", "put:/tx/then:t", "del:/tx/else", "--",
            "put:/tx/never:n")
    assert r["succeeded"] and r["results"][1]["deleted"] == 1
    assert ctl_get(etcd, "/tx/then") == "t"
    assert etcd.etcdctl("get", "/tx/never") == ""
    assert etcd.etcdctl("get", "/tx/else") == ""
    # No compare: the then branch always runs.
    assert txn("--", "put:/tx/b:b")["succeeded"]


def test_txn_bad_input(tool, etcd):
    eps = etcd.endpoints
    many = ["/k%d:version:=:0" % i for i in range(65)]
    for args, words in [(many, "at most 64"),
                        (["--", "put::v"], "empty key"),
                        (["--", "get:"], "empty key"),
                        ([":version:=:0"], "empty key")]:
        r = run(tool, eps, "txn", *args)
        assert r.rc == errno.EINVAL and words in r.err, (args, r.err)
    r = run(tool, eps, "txn", "/k:bogus:=:0")
    assert r.rc == errno.EINVAL and "bad argument" in r.err


def test_create_if_absent_twice(tool, etcd):
    eps = etcd.endpoints
    ok(tool, eps, "create", "/leader", "m1")
    r = run(tool, eps, "create", "/leader", "m2")
    assert r.rc == errno.EEXIST and "already exists" in r.err
    assert ctl_get(etcd, "/leader") == "m1"


def test_lease_attach_and_revoke(tool, etcd):
    eps = etcd.endpoints
    lease = ok(tool, eps, "lease-grant", 60)
    assert lease["ttl"] == 60
    ok(tool, eps, "put", "/l/k", "v", "--lease", lease["id"])
    got = ok(tool, eps, "get", "/l/k")
    assert got["kvs"][0]["lease"] == lease["id"]
    assert "%x" % lease["id"] in etcd.etcdctl("lease", "list")
    ttl = ok(tool, eps, "lease-ttl", lease["id"])
    assert 55 <= ttl["ttl"] <= 60 and ttl["granted"] == 60
    ok(tool, eps, "lease-revoke", lease["id"])
    assert etcd.etcdctl("get", "/l/k") == ""
    for cmd in ("lease-revoke", "lease-keepalive", "lease-ttl"):
        r = run(tool, eps, cmd, lease["id"])
        assert r.rc == errno.ENOENT, (cmd, r.err)
    r = run(tool, eps, "put", "/l/k2", "v", "--lease", lease["id"])
    assert r.rc == errno.ENOENT, r.err


def test_lease_expires_without_keepalive_and_keepalive_keeps_it(tool, etcd):
    eps = etcd.endpoints
    dying = ok(tool, eps, "lease-grant", 2)["id"]
    kept = ok(tool, eps, "lease-grant", 2)["id"]
    ok(tool, eps, "put", "/exp/dying", "x", "--lease", dying)
    ok(tool, eps, "put", "/exp/kept", "y", "--lease", kept)
    deadline = time.monotonic() + 10
    gone_at = None
    while time.monotonic() < deadline:
        assert ok(tool, eps, "lease-keepalive", kept)["ttl"] == 2
        if gone_at is None and etcd.etcdctl("get", "/exp/dying") == "":
            gone_at = time.monotonic()
        if gone_at and time.monotonic() - gone_at > 2.5:
            break
        time.sleep(0.4)
    assert gone_at is not None, "key on an expired lease still there"
    assert ctl_get(etcd, "/exp/kept") == "y"
    r = run(tool, eps, "lease-keepalive", dying)
    assert r.rc == errno.ENOENT and "expired" in r.err


def test_watch_delivers_put_and_delete_in_order(tool, etcd):
    w = Watcher(tool, etcd.endpoints, "/w/", "--prefix", "--count", 4,
                "--prev")
    try:
        w.wait_connected()
        etcd.etcdctl("put", "/w/a", "1")
        etcd.etcdctl("put", "/w/b", "2")
        etcd.etcdctl("del", "/w/a")
        etcd.etcdctl("put", "/other", "not watched")
        etcd.etcdctl("put", "/w/a", "3")
        assert w.finish() == 0
    finally:
        w.close()
    ev = w.events()
    assert [(e["type"], e["key"], e["value"]) for e in ev] == [
        ("PUT", "/w/a", "1"), ("PUT", "/w/b", "2"), ("DELETE", "/w/a", ""),
        ("PUT", "/w/a", "3")]
    assert ev[2]["prev_value"] == "1"
    revs = [e["revision"] for e in ev]
    assert revs[1:3] == [revs[0] + 1, revs[0] + 2] and revs[3] == revs[0] + 4
    assert revs[3] == ctl_rev(etcd)


def test_watch_from_old_revision_replays_history(tool, etcd):
    eps = etcd.endpoints
    first = ok(tool, eps, "put", "/h/k", "v0")["revision"]
    for i in range(1, 5):
        ok(tool, eps, "put", "/h/k", "v%d" % i)
    w = Watcher(tool, eps, "/h/k", "--from", first + 2, "--count", 3)
    try:
        assert w.finish() == 0
    finally:
        w.close()
    assert [(e["revision"], e["value"]) for e in w.events()] == [
        (first + 2, "v2"), (first + 3, "v3"), (first + 4, "v4")]


def test_watch_compacted_revision_is_reported(tool, etcd):
    eps = etcd.endpoints
    first = ok(tool, eps, "put", "/c/k", "a")["revision"]
    last = ok(tool, eps, "put", "/c/k", "b")["revision"]
    etcd.etcdctl("compact", str(last))
    w = Watcher(tool, eps, "/c/k", "--from", first, "--count", 1)
    try:
        assert w.finish() == errno.ERANGE
    finally:
        w.close()
    assert {"compacted": last} in w.lines
    assert w.events() == []
    r = run(tool, eps, "range", "/c/k", "--rev", first)
    assert r.rc == errno.ERANGE and "compacted" in r.err


def _writer(cluster, endpoints, n, log, stop):
    for i in range(n):
        while not stop.is_set():
            r = cluster.run_etcdctl("put", "/kw/seq", str(i),
                                    endpoints=endpoints, check=False,
                                    timeout=20)
            if r.returncode == 0:
                break
            log.append((i, r.stderr))
            time.sleep(0.1)
        time.sleep(0.02)


@pytest.mark.slow
def test_watch_resumes_across_killed_member(tool, etcd3):
    n = 60
    eps = etcd3.endpoints
    w = Watcher(tool, eps, "/kw/seq", "--count", n, "--wait", 60000)
    stop = threading.Event()
    failures = []
    try:
        victim = eps.index(w.wait_connected())
        others = [e for i, e in enumerate(eps) if i != victim]
        t = threading.Thread(target=_writer,
                             args=(etcd3, others, n, failures, stop))
        t.start()
        while len(w.events()) < n // 3:
            assert w.next() is not None, w.p.stderr.read()
        etcd3.kill(victim)
        t.join(120)
        rc = w.finish()
    finally:
        stop.set()
        w.close()
    assert rc == 0, w.p.stderr.read()
    conns = [x for x in w.lines if "connected" in x]
    assert len(conns) >= 2 and conns[-1]["connected"] != eps[victim], conns
    ev = w.events()
    values = [int(e["value"]) for e in ev]
    revs = [e["revision"] for e in ev]
    # Nothing else writes to the cluster: revisions are consecutive, so no
    # event was missed, and strictly increasing, so none came twice.
    assert revs == list(range(revs[0], revs[0] + len(revs))), revs
    # A put that etcdctl reported as failed may still have been applied
    # and then retried: only then may a value repeat.
    retried = {i for i, _ in failures}
    collapsed = [v for j, v in enumerate(values)
                 if j == 0 or v != values[j - 1] or v not in retried]
    assert collapsed[:n] == list(range(len(collapsed[:n]))), values


def test_unary_calls_fail_over_to_a_live_member(tool, etcd3):
    eps = etcd3.endpoints
    etcd3.kill(0)
    etcd3.wait_healthy(timeout=20)
    start = time.monotonic()
    ok(tool, eps, "put", "/fo", "x")
    assert ok(tool, eps, "get", "/fo")["kvs"][0]["value"] == "x"
    assert time.monotonic() - start < 8
    assert ctl_get(etcd3, "/fo") == "x"


@pytest.mark.slow
def test_soak_survives_a_killed_member(tool, etcd3):
    p = subprocess.Popen([tool, "--endpoints", ",".join(etcd3.endpoints),
                          "soak", "--seconds", "6"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        etcd3.kill(0)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines[-1]["failed"] == 0, lines
    assert lines[-1]["ok"] > 20 and p.returncode == 0


def test_all_endpoints_dead_fails_within_the_timeout(tool):
    dead = ["127.0.0.1:%d" % p for p in free_ports(3)]
    for args in (["get", "/x"], ["put", "/x", "y"], ["lease-grant", 5]):
        start = time.monotonic()
        r = run(tool, dead, *args, timeout_ms=1500, limit=15)
        took = time.monotonic() - start
        assert r.rc == errno.ECONNREFUSED, r.err
        assert "no etcd endpoint answered within 1500 ms" in r.err
        assert 1.0 < took < 4.0, took


@pytest.mark.parametrize("endpoints,code,words", [
    ("", errno.EINVAL, "no etcd endpoint"),
    ("localhost", errno.EINVAL, "host:port"),
    ("127.0.0.1:", errno.EINVAL, "host:port"),
    ("127.0.0.1:0", errno.EINVAL, "1..65535"),
    ("127.0.0.1:70000", errno.EINVAL, "1..65535"),
    ("127.0.0.1:12ab", errno.EINVAL, "1..65535"),
    ("bad host:2379", errno.EINVAL, "invalid character"),
    ("127.0.0.1:2379,,127.0.0.1:2380", errno.EINVAL, "empty endpoint"),
    (",".join(["127.0.0.1:%d" % (2000 + i) for i in range(17)]),
     errno.EINVAL, "more than 16"),
    ("https://127.0.0.1:2379", errno.EPROTONOSUPPORT, "https"),
])
def test_invalid_endpoints_are_refused(tool, endpoints, code, words):
    r = run(tool, [endpoints], "get", "/x")
    assert r.rc == code and words in r.err, r.err
    assert r.lines == []


def test_bad_input_is_refused_before_any_call(tool):
    # No server at all: each of these must fail on its input, at once.
    eps = ["127.0.0.1:%d" % free_ports(1)[0]]
    cases = [(["get", ""], "empty key"), (["put", "", "v"], "empty key"),
             (["del", ""], "empty key"), (["range", ""], "empty key"),
             (["cas", "", "a", "b"], "empty key"),
             (["create", "", "a"], "empty key"),
             (["watch", ""], "empty key"),
             (["get", "k" * 5000], "longer than 4096"),
             (["range", "/x", "--limit", -1], ">= 0"),
             (["lease-grant", 0], "TTL must be"),
             (["lease-grant", -5], "TTL must be"),
             (["lease-revoke", 0], "not a lease"),
             (["lease-keepalive", 0], "not a lease")]
    for args, words in cases:
        start = time.monotonic()
        r = run(tool, eps, *args)
        assert r.rc == errno.EINVAL and words in r.err, (args, r.err)
        assert time.monotonic() - start < 1.0, args
