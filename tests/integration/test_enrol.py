"""The agent bus under CURVE (docs/security.md): hosts join with the
one-time token of AddHost (`canopy host add`), the manager admits only the
keys it knows (its ZAP handler), a removed host's key stops working at
once, and every bad token or key is refused with a clear reason.

The C fake agent (tests/helpers/mgr_fake_agent) and the real canopy-agent
enrol with the same code (lib/bus_enrol.c)."""
import base64
import json
import os
import stat
import subprocess
import time

import grpc
import pytest
import zmq
from zmq.utils import z85

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib
from canopy_testlib import protos


@pytest.fixture(autouse=True)
def _need_binaries():
    for rel in ("bin/canopy-managerd", "bin/canopy-agent", "bin/canopy",
                "tests/helpers/mgr_fake_agent"):
        if not os.path.exists(mgrlib.binary(rel)):
            pytest.skip("SKIP: %s not built: run make" % rel)
    if not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing" % etcdlib.ETCD)


@pytest.fixture
def mgr(etcd, tmp_path):
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1", host_timeout=2)
    try:
        m.start().wait_leader()
        yield m
    finally:
        m.close()


def A():
    return mgrlib.api()


def fake(m, host, *extra):
    """The fake agent with explicit options; (returncode or None, lines)."""
    return subprocess.Popen(
        [mgrlib.binary("tests/helpers/mgr_fake_agent"), "--manager", m.bus,
         "--host-id", host] + list(extra),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def finish(p, timeout=40):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return p.returncode, out + err


def until_line(p, prefix, n=10):
    """Read the fake agent's lines until one starts with prefix."""
    seen = []
    for _ in range(n):
        line = p.stdout.readline()
        seen.append(line)
        if line.startswith(prefix):
            return
    raise AssertionError("no %r in %r" % (prefix, seen))


def host_ids(m):
    return sorted(h.id for h in m.call(
        "HostService", "ListHosts", A().ListHostsRequest(),
        A().ListHostsResponse).hosts)


def wait_log(m, text, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in m.log_text():
            return
        time.sleep(0.05)
    raise AssertionError("%r not in the manager log:\n%s" % (
        text, m.log_text()[-3000:]))


def keyfile(path, public, secret, server):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              "w") as f:
        f.write('public = "%s"\nsecret = "%s"\nserver = "%s"\n' % (
            public, secret, server))


def server_key(m):
    with open(os.path.join(m.pki.state_dir, "pki", "bus.key")) as f:
        for line in f:
            if line.startswith("public"):
                return line.split('"')[1]
    raise AssertionError("no public key in the manager's bus.key")


def test_join_gives_keys_and_certificate(mgr, tmp_path):
    ag = mgrlib.FakeAgent(mgr, "h1")
    try:
        ag.expect("registered 0")
        assert host_ids(mgr) == ["h1"]
    finally:
        ag.close()
    d = mgr.host_pki_dir("h1")
    for name, private in (("bus.key", True), ("host.key", True),
                          ("host.pem", False), ("ca.pem", False)):
        mode = stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode)
        assert (mode & 0o077 == 0) if private else mode == 0o644, (name,
                                                                    mode)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    # The certificate is the host's, from the cluster CA, for both ends
    # of a TLS connection (migration streams).
    r = subprocess.run(["openssl", "verify", "-CAfile",
                        os.path.join(d, "ca.pem"), os.path.join(d,
                                                                "host.pem")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in",
                           os.path.join(d, "host.pem")],
                          capture_output=True, text=True).stdout
    assert "CN = h1" in text and "DNS:h1" in text
    assert "TLS Web Server Authentication" in text
    assert "TLS Web Client Authentication" in text
    with open(os.path.join(d, "ca.pem")) as f:
        assert f.read() == mgr.pki.ca_pem.decode()
    # The secret never reaches the log, and neither does the token.
    log = mgr.log_text()
    with open(os.path.join(d, "bus.key")) as f:
        secret = [ln.split('"')[1] for ln in f if ln.startswith("secret")][0]
    assert secret not in log and "cnj1:" not in log
    assert "host enrolled" in log


def test_restart_uses_own_key_and_token_is_spent(mgr, tmp_path):
    ag = mgrlib.FakeAgent(mgr, "h1")
    ag.expect("registered 0")
    ag.close()
    # Restarted without --join: its own key in --pki-dir.
    ag = mgrlib.FakeAgent(mgr, "h1")
    try:
        ag.expect("registered 0")
    finally:
        ag.close()
    # A token works once: a second use is refused at the handshake.
    tok = mgr.add_host("h2")
    p = fake(mgr, "h2", "--pki-dir", str(tmp_path / "a"), "--join", tok)
    try:
        until_line(p, "registered 0")
    finally:
        p.kill()
        p.wait()
    rc, out = finish(fake(mgr, "h2", "--pki-dir", str(tmp_path / "b"),
                          "--join", tok))
    assert rc != 0, out
    assert "refused the join token" in out and "used already" in out, out
    assert not os.path.exists(tmp_path / "b" / "bus.key")


def test_adding_again_replaces_the_token(mgr, tmp_path):
    old = mgr.add_host("h1")
    new = mgr.add_host("h1")
    assert old != new
    rc, out = finish(fake(mgr, "h1", "--pki-dir", str(tmp_path / "a"),
                          "--join", old))
    assert rc != 0 and "refused the join token" in out, out
    ag = fake(mgr, "h1", "--pki-dir", str(tmp_path / "b"), "--join", new)
    try:
        until_line(ag, "registered 0")
    finally:
        ag.kill()
        ag.wait()
    # A host that joined cannot be added again without removing it.
    with pytest.raises(grpc.RpcError) as e:
        mgr.add_host("h1")
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "has joined already" in e.value.details()


@pytest.mark.parametrize("token, want", [
    ("", "does not start with 'cnj1:'"),
    ("hello", "does not start with 'cnj1:'"),
    ("cnj1:h1:abcd:ef", "damaged"),
    ("cnj1:h1:" + "g" * 64 + ":" + "0" * 64, "damaged"),
    ("cnj1:h 1:" + "0" * 64 + ":" + "0" * 64, "damaged"),
])
def test_bad_tokens_refused_locally(mgr, tmp_path, token, want):
    rc, out = finish(fake(mgr, "h1", "--pki-dir", str(tmp_path / "p"),
                          "--join", token), 10)
    assert rc != 0 and want in out, out
    assert token not in out or not token


def test_token_for_another_host_refused(mgr, tmp_path):
    tok = mgr.add_host("h1")
    rc, out = finish(fake(mgr, "h2", "--pki-dir", str(tmp_path / "p"),
                          "--join", tok), 10)
    assert rc != 0 and "for host h1, not h2" in out, out
    assert host_ids(mgr) == []


def test_token_with_wrong_server_key_fails(mgr, tmp_path):
    """A token whose manager key is not this manager's: no handshake."""
    tok = mgr.add_host("h1")
    other_pub, _ = zmq.curve_keypair()
    raw = z85.decode(other_pub)
    bad = tok.rsplit(":", 1)[0] + ":" + raw.hex()
    t0 = time.monotonic()
    rc, out = finish(fake(mgr, "h1", "--pki-dir", str(tmp_path / "p"),
                          "--join", bad), 45)
    assert rc != 0, out
    assert ("CURVE handshake" in out or "no answer from the manager" in out)
    assert time.monotonic() - t0 < 40
    assert not os.path.exists(tmp_path / "p" / "bus.key")


def test_expired_token_refused(etcd, tmp_path):
    """An enrolment key past its expiry is refused at the handshake (the
    record is aged in etcd while the manager is down)."""
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1", host_timeout=2)
    try:
        m.start().wait_leader()
        tok = m.add_host("h1", ttl=60)
        m.close()
        key = "/canopy/hostkeys/h1"
        got = json.loads(etcd.etcdctl("get", key, "-w", "json"))
        rec = protos.load("canopy_auth").HostKey.FromString(
            base64.b64decode(got["kvs"][0]["value"]))
        rec.expires_unix_ms = int(time.time() * 1000) - 1000
        put = subprocess.run(
            [etcdlib.ETCDCTL, "--endpoints", ",".join(etcd.endpoints),
             "put", key], input=rec.SerializeToString(),
            capture_output=True, timeout=10,
            env=dict(os.environ, ETCDCTL_API="3"))
        assert put.returncode == 0, put.stderr
        m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1", host_timeout=2)
        m.start().wait_leader()
        rc, out = finish(fake(m, "h1", "--pki-dir", str(tmp_path / "p"),
                              "--join", tok))
        assert rc != 0 and "refused the join token" in out, out
        assert "CURVE key refused" in m.log_text()
    finally:
        m.close()


def test_ttl_bounds(mgr):
    for ttl in (59, 604801):
        with pytest.raises(grpc.RpcError) as e:
            mgr.add_host("h1", ttl=ttl)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "60..604800" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        mgr.add_host("bad host")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_key_cannot_register(mgr, tmp_path):
    """A well-formed key pair the manager never saw, with the right
    server key: refused at the handshake; the host never appears."""
    pub, sec = zmq.curve_keypair()
    d = tmp_path / "p"
    d.mkdir(mode=0o700)
    keyfile(d / "bus.key", pub.decode(), sec.decode(), server_key(mgr))
    p = fake(mgr, "h9", "--pki-dir", str(d))
    try:
        assert p.stdout.readline().strip() == "ready"
        wait_log(mgr, "CURVE key refused")
        assert pub.decode() in mgr.log_text()
        time.sleep(1)
        assert host_ids(mgr) == []
    finally:
        p.kill()
        p.wait()


def test_plaintext_agent_cannot_register(mgr):
    p = fake(mgr, "h9")
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(1.5)
        assert host_ids(mgr) == []
    finally:
        p.kill()
        p.wait()


def test_key_bound_to_its_host(mgr, tmp_path):
    """h1's own key cannot speak as h2 (another routing id)."""
    ag = mgrlib.FakeAgent(mgr, "h1")
    ag.expect("registered 0")
    ag.close()
    mgr.add_host("h2")
    d = tmp_path / "as-h2"
    d.mkdir(mode=0o700)
    src = os.path.join(mgr.host_pki_dir("h1"), "bus.key")
    with open(src) as f:
        text = f.read()
    with open(os.open(d / "bus.key", os.O_WRONLY | os.O_CREAT, 0o600),
              "w") as f:
        f.write(text)
    p = fake(mgr, "h2", "--pki-dir", str(d))
    try:
        wait_log(mgr, "reason=key peer=h2")
        assert "h2" not in host_ids(mgr)
    finally:
        p.kill()
        p.wait()


def test_removed_host_key_stops_working(mgr):
    ag = mgrlib.FakeAgent(mgr, "h1")
    ag.expect("registered 0")
    ag.close()
    deadline = time.monotonic() + 10
    a = A()
    while mgr.call("HostService", "GetHost", a.GetHostRequest(id="h1"),
                   a.Host).state == a.HOST_STATE_CONNECTED:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    mgr.call("HostService", "RemoveHost", a.RemoveHostRequest(id="h1"),
             a.RemoveHostResponse)
    # Its old keys are still on disk; the manager no longer takes them.
    p = fake(mgr, "h1", "--pki-dir", mgr.host_pki_dir("h1"))
    try:
        wait_log(mgr, "CURVE key refused")
        time.sleep(1)
        assert host_ids(mgr) == []
    finally:
        p.kill()
        p.wait()


def test_force_remove_cuts_off_a_connected_host(mgr):
    a = A()
    ag = mgrlib.FakeAgent(mgr, "h1")
    try:
        ag.expect("registered 0")
        with pytest.raises(grpc.RpcError) as e:
            mgr.call("HostService", "RemoveHost",
                     a.RemoveHostRequest(id="h1"), a.RemoveHostResponse)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--force" in e.value.details()
        mgr.call("HostService", "RemoveHost",
                 a.RemoveHostRequest(id="h1", force=True),
                 a.RemoveHostResponse)
        # At once: its next heartbeat is refused, it is not re-created,
        # and the agent sees the manager go silent.
        wait_log(mgr, "reason=key peer=h1")
        ag.expect("disconnected", timeout=10)
        assert host_ids(mgr) == []
    finally:
        ag.close()


def test_remove_before_join_revokes_the_token(mgr, tmp_path):
    a = A()
    tok = mgr.add_host("h1")
    mgr.call("HostService", "RemoveHost", a.RemoveHostRequest(id="h1"),
             a.RemoveHostResponse)
    rc, out = finish(fake(mgr, "h1", "--pki-dir", str(tmp_path / "p"),
                          "--join", tok))
    assert rc != 0 and "refused the join token" in out, out
    with pytest.raises(grpc.RpcError) as e:
        mgr.call("HostService", "RemoveHost", a.RemoveHostRequest(id="h1"),
                 a.RemoveHostResponse)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_cli_host_add_and_real_agent_joins(mgr, tmp_path):
    r = mgr.run_cli("host", "add", "node7", "--ttl", "120")
    assert r.returncode == 0, r.stderr
    assert "may join until" in r.stdout and "--join cnj1:node7:" in r.stdout
    assert "works once" in r.stdout
    r = mgr.run_cli("-o", "json", "host", "add", "node8")
    assert r.returncode == 0, r.stderr
    tok = json.loads(r.stdout)["join_token"]
    r = mgr.run_cli("host", "add", "node9", "--ttl", "5")
    assert r.returncode != 0 and "--ttl" in r.stderr
    log = open(tmp_path / "agent.log", "ab")
    p = subprocess.Popen(
        [mgrlib.binary("bin/canopy-agent"), "--manager", mgr.bus,
         "--host-id", "node8", "--run-dir", str(tmp_path / "run"),
         "--pki-dir", str(tmp_path / "pki"), "--join", tok,
         "--address", "127.0.0.1"], stdout=log, stderr=log)
    try:
        a = A()
        deadline = time.monotonic() + 15
        while True:
            try:
                if mgr.call("HostService", "GetHost",
                            a.GetHostRequest(id="node8"),
                            a.Host).state == a.HOST_STATE_CONNECTED:
                    break
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, open(
                tmp_path / "agent.log").read()
            time.sleep(0.1)
        text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in",
                               str(tmp_path / "pki" / "host.pem")],
                              capture_output=True, text=True).stdout
        assert "DNS:node8" in text and "IP Address:127.0.0.1" in text
    finally:
        p.terminate()
        p.wait(10)
        log.close()
    # Enrolled: --join again is refused before anything is sent.
    r = subprocess.run(
        [mgrlib.binary("bin/canopy-agent"), "--manager", mgr.bus,
         "--host-id", "node8", "--run-dir", str(tmp_path / "run"),
         "--pki-dir", str(tmp_path / "pki"), "--join", tok],
        capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "enrolled already" in r.stderr, r.stderr
    # Neither keys nor the pki dir: a clear reason.
    r = subprocess.run(
        [mgrlib.binary("bin/canopy-agent"), "--manager", mgr.bus,
         "--host-id", "node9", "--run-dir", str(tmp_path / "run9"),
         "--pki-dir", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "has not joined" in r.stderr, r.stderr
    r = subprocess.run(
        [mgrlib.binary("bin/canopy-agent"), "--manager", mgr.bus,
         "--host-id", "node9", "--run-dir", str(tmp_path / "run9"),
         "--join", tok], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "--join needs --pki-dir" in r.stderr
