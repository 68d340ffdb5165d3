"""The cluster PKI and TLS (issue 9 item 1): `canopy cluster init` and
`cluster issue-cert` (files, modes, names, refusal to overwrite, bad input),
canopy-managerd serving its API over TLS only (python and CLI clients with
the CA; plaintext gRPC and a raw HTTP/2 preface get nothing), the CLI's
first-connect trust (--trust-fingerprint, the terminal prompt) and its loud
refusal of a server whose CA changed, and the manager on a TLS etcd that
demands client certificates."""
import json
import os
import pty
import select
import socket
import ssl
import stat
import subprocess
import time

import grpc
import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib
from canopy_testlib.ports import free_ports


@pytest.fixture(autouse=True)
def _need(request):
    for rel in ("bin/canopy", "bin/canopy-managerd"):
        if not os.path.exists(mgrlib.binary(rel)):
            pytest.skip("SKIP: %s not built: run make" % rel)
    if "etcd" in request.fixturenames and not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing" % etcdlib.ETCD)


def cli(*args, env=None, home="/nonexistent", **kw):
    e = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    e.update(env or {})
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([mgrlib.binary("bin/canopy")] +
                          [str(a) for a in args], capture_output=True,
                          text=True, timeout=30, env=e, **kw)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def fingerprint(pem_path):
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint",
                          "-sha256", "-in", str(pem_path)],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


def cert_text(path):
    return subprocess.run(["openssl", "x509", "-noout", "-text", "-in",
                           str(path)], capture_output=True, text=True,
                          check=True).stdout


def test_cluster_init_files_modes_and_refusal(tmp_path):
    st = tmp_path / "a" / "state"
    r = cli("cluster", "init", "--state-dir", st, "--name", "lab",
            "--san", "mgr.example.org", "--san", "10.9.8.7")
    assert r.returncode == 0, r.stderr
    pki = st / "pki"
    fpr = fingerprint(pki / "ca.crt")
    assert fpr in r.stdout
    assert mode(st) == 0o700 and mode(pki) == 0o700
    assert sorted(os.listdir(pki)) == ["bus.key", "ca.crt", "ca.key",
                                       "manager.crt", "manager.key"]
    assert mode(pki / "ca.key") == 0o600 and mode(pki / "manager.key") == 0o600
    # The agent bus's CURVE key pair, for every manager of the cluster.
    assert mode(pki / "bus.key") == 0o600
    bus = (pki / "bus.key").read_text()
    assert bus.count('public = "') == 1 and bus.count('secret = "') == 1
    ca = cert_text(pki / "ca.crt")
    assert "CN = lab" in ca and "CA:TRUE" in ca
    leaf = cert_text(pki / "manager.crt")
    for name in ("DNS:localhost", "IP Address:127.0.0.1",
                 "DNS:mgr.example.org", "IP Address:10.9.8.7",
                 "DNS:" + socket.gethostname()):
        assert name in leaf, name
    assert "TLS Web Server Authentication" in leaf and "CA:FALSE" in leaf
    v = subprocess.run(["openssl", "verify", "-CAfile", str(pki / "ca.crt"),
                        str(pki / "manager.crt")], capture_output=True,
                       text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    # The chain file carries the CA after the leaf (clients pin it).
    assert (pki / "manager.crt").read_text().count("BEGIN CERTIFICATE") == 2
    # Twice: refused, nothing touched.
    before = {f: (pki / f).read_bytes() for f in os.listdir(pki)}
    r = cli("cluster", "init", "--state-dir", st)
    assert r.returncode == 4 and "already exists" in r.stderr
    assert fpr in r.stderr and "--force" in r.stderr
    assert {f: (pki / f).read_bytes() for f in os.listdir(pki)} == before
    # --force replaces it.
    r = cli("cluster", "init", "--state-dir", st, "--force")
    assert r.returncode == 0, r.stderr
    assert fingerprint(pki / "ca.crt") != fpr
    assert mode(pki / "ca.key") == 0o600
    assert (pki / "bus.key").read_text() != bus


def test_issue_cert(tmp_path):
    st = tmp_path / "st"
    r = cli("cluster", "issue-cert", "etcd", "--state-dir", st)
    assert r.returncode == 1 and "canopy cluster init" in r.stderr
    r = cli("-o", "json", "cluster", "init", "--state-dir", st)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "state_dir": str(st), "ca_fingerprint_sha256":
        fingerprint(st / "pki" / "ca.crt"),
        "created": "cluster CA, manager certificate and bus key created"}
    r = cli("cluster", "issue-cert", "etcd-client", "--usage", "client",
            "--state-dir", st, "--san", "node1")
    assert r.returncode == 0, r.stderr
    pki = st / "pki"
    assert mode(pki / "etcd-client.key") == 0o600
    t = cert_text(pki / "etcd-client.crt")
    assert "TLS Web Client Authentication" in t and "DNS:node1" in t
    assert "Server Authentication" not in t
    r = cli("cluster", "issue-cert", "etcd-client", "--usage", "client",
            "--state-dir", st)
    assert r.returncode != 0 and "exists" in r.stderr


@pytest.mark.parametrize("args,want", [
    (["cluster", "init"], "--state-dir"),
    (["cluster", "init", "--state-dir", "S", "--san", "bad name"],
     "not a host name"),
    (["cluster", "init", "--state-dir", "S", "--san", "a,b"],
     "not a host name"),
    (["cluster", "init", "--state-dir", "S", "--name", "x/y"],
     "cluster name"),
    (["cluster", "issue-cert", "ca", "--state-dir", "S"], "not 'ca'"),
    (["cluster", "issue-cert", "../x", "--state-dir", "S"], "must be"),
    (["cluster", "issue-cert", "e", "--state-dir", "S", "--usage", "any"],
     "--usage"),
])
def test_pki_bad_input(tmp_path, args, want):
    args = [str(tmp_path / "st") if a == "S" else a for a in args]
    r = cli(*args)
    assert r.returncode == 2, r.stderr
    assert want in r.stderr
    assert not os.path.exists(tmp_path / "st" / "pki" / "ca.key")


def test_manager_without_certificate_says_run_init(tmp_path, etcd):
    r = subprocess.run([mgrlib.binary("bin/canopy-managerd"), "--etcd",
                        etcd.endpoints[0], "--state-dir",
                        str(tmp_path / "empty"), "--listen", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert "canopy cluster init --state-dir %s" % (tmp_path / "empty") \
        in r.stderr


@pytest.fixture
def mgr(etcd, tmp_path):
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1")
    try:
        m.start().wait_leader()
        yield m
    finally:
        m.close()


def _tls_version(m, maximum=None):
    host, port = m.addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=m.ca)
    ctx.set_alpn_protocols(["h2"])
    if maximum:
        ctx.maximum_version = maximum
    with socket.create_connection((host, int(port)), 5) as s:
        with ctx.wrap_socket(s, server_hostname=host) as t:
            return t.version()


def test_tls_api_python_and_cli(mgr):
    assert mgr.cluster().leader == "m1"  # python, verified against the CA
    r = mgr.run_cli("cluster", "status")
    assert r.returncode == 0 and "m1" in r.stdout, r.stderr
    # localhost is in the certificate too (python: the CLI's gRPC resolves
    # names through c-ares, which a sanitizer build reports as leaking).
    ch = mgr.pki.channel("localhost:" + mgr.addr.rsplit(":", 1)[1])
    a = mgrlib.api()
    f = ch.unary_unary("/canopy.v1.ClusterService/GetCluster",
                       request_serializer=lambda m: m.SerializeToString(),
                       response_deserializer=a.Cluster.FromString)
    assert f(a.GetClusterRequest(), timeout=10).leader == "m1"
    ch.close()
    assert _tls_version(mgr) == "TLSv1.3"
    assert _tls_version(mgr, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


def test_plaintext_refused(mgr):
    ch = grpc.insecure_channel(mgr.addr)
    f = ch.unary_unary("/canopy.v1.ClusterService/GetCluster")
    with pytest.raises(grpc.RpcError) as e:
        f(b"", timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    ch.close()
    # A raw HTTP/2 client preface and SETTINGS frame: no HTTP/2 answer.
    host, port = mgr.addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), 5) as s:
        s.settimeout(3)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
                  bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        data = b""
        try:
            while len(data) < 64:
                chunk = s.recv(64)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    # Nothing, or a TLS alert (record type 21); never a SETTINGS frame.
    assert data == b"" or data[0] == 21, data
    assert mgr.proc.poll() is None
    assert mgr.cluster().leader == "m1"


def token_env(mgr):
    """The admin's token: these tests are about trusting the server, and
    every call but Login needs one (test_auth.py)."""
    return {"CANOPY_TOKEN": mgr.pki.token(mgr.addr)}


def test_untrusted_ca_refused_and_fingerprint_trust(mgr, tmp_path):
    home = tmp_path / "home"
    fpr = fingerprint(mgr.ca)
    tok = token_env(mgr)
    store = home / ".config" / "canopy" / "trusted" / (
        mgr.addr.replace(":", "_") + ".pem")
    base = ["--server", mgr.addr, "cluster", "status"]
    r = cli(*base, home=home, env=tok)
    assert r.returncode == 1 and "not trusted yet" in r.stderr
    assert fpr in r.stderr and "--trust-fingerprint" in r.stderr
    assert not store.exists()
    r = cli(*base, "--trust-fingerprint", "AB:CD", home=home, env=tok)
    assert r.returncode == 1 and "REFUSED" in r.stderr and fpr in r.stderr
    assert not store.exists()
    # Any case, with or without colons, with the SHA256: prefix.
    given = "sha256:" + fpr.replace(":", "").lower()
    r = cli(*base, "--trust-fingerprint", given, home=home, env=tok)
    assert r.returncode == 0 and "m1" in r.stdout, r.stderr
    assert store.exists() and mode(store) == 0o600
    assert mode(store.parent) == 0o700
    r = cli(*base, home=home, env=tok)  # remembered
    assert r.returncode == 0, r.stderr


def test_first_connect_prompt_on_terminal(mgr, tmp_path):
    home = tmp_path / "home"
    master, slave = pty.openpty()
    p = subprocess.Popen([mgrlib.binary("bin/canopy"), "--server", mgr.addr,
                          "cluster", "status"], stdin=slave, stderr=slave,
                         stdout=subprocess.PIPE, text=True,
                         env={"HOME": str(home), "PATH": "/usr/bin:/bin",
                              **token_env(mgr)})
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 15
    while b"(yes/no)? " not in seen:
        assert time.monotonic() < deadline, seen
        if select.select([master], [], [], 0.5)[0]:
            seen += os.read(master, 4096)
    assert fingerprint(mgr.ca).encode() in seen
    os.write(master, b"yes\n")
    out, _ = p.communicate(timeout=15)
    os.close(master)
    assert p.returncode == 0 and "m1" in out
    r = cli("--server", mgr.addr, "cluster", "status", home=home,
            env=token_env(mgr))
    assert r.returncode == 0, r.stderr


def test_changed_ca_is_refused(mgr, tmp_path):
    home = tmp_path / "home"
    old = fingerprint(mgr.ca)
    tok = token_env(mgr)
    r = cli("--server", mgr.addr, "--trust-fingerprint", old, "cluster",
            "status", home=home, env=tok)
    assert r.returncode == 0, r.stderr
    # The cluster is re-initialised: a new CA behind the same address.
    r = cli("cluster", "init", "--state-dir", mgr.pki.state_dir, "--force")
    assert r.returncode == 0, r.stderr
    new = fingerprint(mgr.ca)
    mgr.kill()
    mgr.start().wait_leader()
    r = cli("--server", mgr.addr, "cluster", "status", home=home)
    assert r.returncode == 1 and "REFUSED" in r.stderr, r.stderr
    assert old in r.stderr and new in r.stderr and r.stdout == ""
    # --trust-fingerprint does not override a stored pin.
    r = cli("--server", mgr.addr, "--trust-fingerprint", new, "cluster",
            "status", home=home)
    assert r.returncode == 1 and "REFUSED" in r.stderr
    # A --ca that did not sign the server is refused the same way.
    other = tmp_path / "other"
    assert cli("cluster", "init", "--state-dir", other).returncode == 0
    r = cli("--server", mgr.addr, "--ca", other / "pki" / "ca.crt",
            "cluster", "status")
    assert r.returncode == 1 and "REFUSED" in r.stderr
    r = cli("--server", mgr.addr, "--ca", tmp_path / "nope.pem", "cluster",
            "status")
    assert r.returncode == 2 and "nope.pem" in r.stderr


class TlsEtcd:
    """One etcd member serving clients over TLS with client-cert auth."""

    def __init__(self, tmp, pki):
        self.port, peer = free_ports(2)
        cert, key = pki.issue("etcd", "server")
        self.log_path = os.path.join(str(tmp), "etcd-tls.log")
        self.log = open(self.log_path, "ab")
        url = "https://127.0.0.1:%d" % self.port
        self.proc = subprocess.Popen(
            [etcdlib.ETCD, "--name", "t", "--data-dir",
             os.path.join(str(tmp), "etcd-tls"),
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
             "--initial-cluster", "t=http://127.0.0.1:%d" % peer,
             "--cert-file", cert, "--key-file", key, "--client-cert-auth",
             "--trusted-ca-file", pki.ca, "--heartbeat-interval", "50",
             "--election-timeout", "500"], stdout=self.log, stderr=self.log)
        self.endpoint = "127.0.0.1:%d" % self.port

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


def test_manager_on_tls_etcd_with_client_cert(tmp_path):
    if not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing" % etcdlib.ETCD)
    pki = mgrlib.Pki(tmp_path)
    ccert, ckey = pki.issue("etcd-client", "client")
    e = TlsEtcd(tmp_path, pki)
    m = bad = None
    try:
        # With the client certificate: leader, and writes land in etcd.
        m = mgrlib.Manager(tmp_path, [e.endpoint], "m1", extra=[
            "--etcd-cacert", pki.ca, "--etcd-cert", ccert,
            "--etcd-key", ckey]).start()
        cl = m.wait_leader(timeout=20)
        assert cl.leader == "m1"
        assert "(TLS)" in m.log_text()
        # Without one etcd refuses the handshake: never leader.
        bad = mgrlib.Manager(tmp_path, [e.endpoint], "m2",
                             extra=["--etcd-cacert", pki.ca]).start()
        time.sleep(3)
        with pytest.raises(grpc.RpcError) as err:
            bad.cluster()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # A plaintext client is refused by etcd too.
        ch = grpc.insecure_channel(e.endpoint)
        with pytest.raises(grpc.RpcError):
            ch.unary_unary("/etcdserverpb.KV/Range")(b"", timeout=3)
        ch.close()
        # A client certificate with no CA is a clear option error.
        r = subprocess.run([mgrlib.binary("bin/canopy-managerd"), "--etcd",
                            e.endpoint, "--etcd-cert", ccert, "--etcd-key",
                            ckey, "--state-dir", pki.state_dir],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and "etcd CA" in r.stderr
        assert m.cluster().leader == "m1"
    finally:
        for x in (bad, m):
            if x:
                x.close()
        e.close()


@pytest.mark.parametrize("opts,want", [
    (["--etcd-cacert", "MISSING"], "cannot read the etcd CA file"),
    (["--etcd-cacert", "NOTPEM"], "the etcd CA file is not PEM"),
    (["--etcd-cacert", "CA", "--etcd-cert", "CA"], "both"),
    (["--etcd-cacert", "CA", "--etcd-key", "KEY"], "both"),
    (["--etcd-cacert", "CA", "--etcd-cert", "CA", "--etcd-key", "MISSING"],
     "cannot read the etcd client key file"),
])
def test_bad_etcd_tls_options(tmp_path, opts, want):
    pki = mgrlib.Pki(tmp_path)
    notpem = tmp_path / "notpem"
    notpem.write_text("hello\n")
    files = {"MISSING": str(tmp_path / "missing.pem"), "NOTPEM": str(notpem),
             "CA": pki.ca, "KEY": pki.path("manager.key")}
    r = subprocess.run([mgrlib.binary("bin/canopy-managerd"), "--etcd",
                        "127.0.0.1:1", "--state-dir", pki.state_dir] +
                       [files.get(o, o) for o in opts],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and want in r.stderr, r.stderr


@pytest.mark.parametrize("swap,want", [
    ("manager.key", "does not belong"),
    ("ca.crt", "was not issued by the CA"),
    ("manager.crt", "holds no PEM certificate"),
])
def test_manager_refuses_mismatched_files(tmp_path, swap, want):
    pki = mgrlib.Pki(tmp_path / "a")
    other = mgrlib.Pki(tmp_path / "b")
    if swap == "manager.crt":
        with open(pki.path(swap), "w") as f:
            f.write("not a certificate\n")
    else:
        with open(other.path(swap), "rb") as src, \
                open(pki.path(swap), "wb") as dst:
            dst.write(src.read())
    r = subprocess.run([mgrlib.binary("bin/canopy-managerd"), "--etcd",
                        "127.0.0.1:1", "--state-dir", pki.state_dir,
                        "--listen", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and want in r.stderr, r.stderr
    assert "canopy cluster init" in r.stderr


def test_cli_ca_file_not_pem(tmp_path, mgr):
    bad = tmp_path / "bad.pem"
    bad.write_text("nope\n")
    r = cli("--server", mgr.addr, "cluster", "status",
            env={"CANOPY_CA": str(bad)})
    assert r.returncode == 2 and "CANOPY_CA" in r.stderr, r.stderr


@pytest.mark.parametrize("behaviour", ["garbage", "close", "silent"])
def test_cli_probe_of_a_server_that_is_not_tls(behaviour):
    import threading
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    conns = []

    def serve():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            conns.append(c)
            if behaviour == "garbage":
                c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 10)
                c.close()
            elif behaviour == "close":
                c.close()

    threading.Thread(target=serve, daemon=True).start()
    t0 = time.monotonic()
    r = cli("--server", "127.0.0.1:%d" % port, "--timeout", "1", "cluster",
            "status")
    took = time.monotonic() - t0
    lsock.close()
    for c in conns:
        c.close()
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "no TLS handshake" in r.stderr and r.stdout == ""
    assert took < 10, took
