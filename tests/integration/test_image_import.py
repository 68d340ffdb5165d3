"""Image import (docs/images.md): 'canopy image import' / ImportImage
against a real etcd, canopy-managerd and canopy-agent on loopback, the
agent downloading from HTTPS servers the test starts (python3's
http.server with a test CA and server certificates made with the openssl
CLI) into a datastore file, read back with canopy-ds. One cluster serves
every test of the module (start-up is the slow part)."""
import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time

import grpc
import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import protos
from canopy_testlib.manager import Manager, api

HOST = "img-h1"
DS = "ds1"
LIMIT = 1 << 20  # --image-max-bytes of the test manager
READER_SLOT = "40"  # canopy-ds's host id when it reads the datastore back


def _bin(name):
    return os.path.join(protos.build_dir(), "bin", name)


# ---- certificates ---------------------------------------------------------

def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   capture_output=True)


def make_ca(d, name):
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=%s" % name, "-keyout", "%s.key" % name,
             "-out", "%s.pem" % name, cwd=d)
    return os.path.join(d, "%s.pem" % name)


def make_server_cert(d, ca, name):
    with open(os.path.join(d, "%s.ext" % name), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "%s.key" % name, "-out", "%s.csr" % name, cwd=d)
    _openssl("x509", "-req", "-in", "%s.csr" % name, "-CA", "%s.pem" % ca,
             "-CAkey", "%s.key" % ca, "-CAcreateserial", "-days", "2",
             "-extfile", "%s.ext" % name, "-out", "%s.pem" % name, cwd=d)
    return (os.path.join(d, "%s.pem" % name), os.path.join(d, "%s.key" % name))


# ---- the HTTPS server -----------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        path = self.path.split("?")[0]
        if path.startswith("/loop"):
            self.send_response(302)
            self.send_header("Location", path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/to-http/"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:%d/%s" % (
                srv.plain_port, path.split("/", 2)[2]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "/" + path.split("/", 2)[2])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        name = path.strip("/").split("/")[-1]
        data = srv.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (
                start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        body = data[start:]
        if path.startswith("/nolen/"):
            # No Content-Length: the body ends when the connection closes.
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if path.startswith("/drop/") and srv.drops.get(name, 0) > 0:
            # Half the body, then the connection is cut.
            srv.drops[name] -= 1
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if path.startswith("/slow/"):
            try:
                for i in range(0, len(body), 16384):
                    if srv.stopping:
                        return
                    self.wfile.write(body[i:i + 16384])
                    self.wfile.flush()
                    time.sleep(0.1)
            except (OSError, ssl.SSLError):
                self.close_connection = True  # the client went away
            return
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cert, key, files):
        super().__init__(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.socket = ctx.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.plain_port = 0
        self.files = files
        self.drops = {}
        self.requests = []
        self.stopping = False
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return "%s://127.0.0.1:%d/%s" % (self.scheme, self.server_address[1],
                                         path)

    def close(self):
        self.stopping = True
        self.shutdown()
        self.server_close()


# ---- the cluster ----------------------------------------------------------

class Env:
    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not os.path.exists(etcdlib.ETCD):
        pytest.skip("SKIP (needs etcd): %s missing (Debian package "
                    "etcd-server)" % etcdlib.ETCD)
    if not shutil.which("openssl"):
        pytest.skip("SKIP (needs the openssl CLI to make test certificates)")
    for prog in ("canopy", "canopy-managerd", "canopy-agent", "canopy-ds"):
        if not os.path.exists(_bin(prog)):
            pytest.skip("SKIP: %s not built: run make" % _bin(prog))
    tmp = tmp_path_factory.mktemp("img")
    e = Env()
    e.tmp = tmp
    make_ca(str(tmp), "ca")
    make_ca(str(tmp), "other")
    good = make_server_cert(str(tmp), "ca", "srv")
    bad = make_server_cert(str(tmp), "other", "evil")
    e.files = {
        "small.img": os.urandom(300001),  # not a sector multiple
        "aligned.img": os.urandom(256 * 1024),
        "drop.img": os.urandom(600 * 1024),
        "slow.img": os.urandom(900 * 1024),
        "big.img": os.urandom(LIMIT + 4096),
        "empty.img": b"",
    }
    e.srv = Server(good[0], good[1], e.files)
    e.evil = Server(bad[0], bad[1], e.files)
    e.plain = Server(None, None, e.files)
    e.srv.plain_port = e.plain.server_address[1]
    e.dev = str(tmp / "ds.img")
    subprocess.run([_bin("canopy-ds"), "format", e.dev, "--name", DS,
                    "--size", "64M", "--hb-interval", "200",
                    "--hb-timeout", "4000"], check=True, capture_output=True)
    e.etcd = etcdlib.EtcdCluster(tmp, 1).start()
    # The command timeout bounds the agent's answer, which waits for the
    # datastore heartbeat timeout (4 s) when its slot was not left cleanly
    # (test_agent_killed_mid_import_fails_task).
    e.m = Manager(tmp, e.etcd.endpoints, "m1", command_timeout_ms=10000,
                  extra=["--image-max-bytes", str(LIMIT)]).start()
    e.m.wait_leader()
    run_dir = tmp / "h1"
    run_dir.mkdir()
    e.agent_log = tmp / "agent.log"
    log = open(e.agent_log, "ab")
    e.agent = subprocess.Popen(
        [_bin("canopy-agent"), "--manager", e.m.bus, "--host-id", HOST,
         "--run-dir", str(run_dir), "--datastore", "%s=%s" % (DS, e.dev),
         "--ds-slots", "10-13", "--image-ca-file", str(tmp / "ca.pem"),
         "--log-level", "debug"] + e.m.agent_args(HOST),
        stdout=log, stderr=log)
    try:
        wait_connected(e)
        yield e
    finally:
        if e.agent.poll() is None:
            e.agent.terminate()
            e.agent.wait(10)
        log.close()
        e.m.close()
        e.etcd.close()
        e.srv.close()
        e.evil.close()
        e.plain.close()


def canopy(e, *args, timeout=60):
    p = e.m.run_cli(*args, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def host_state(e):
    a = api()
    h = e.m.call("HostService", "GetHost", a.GetHostRequest(id=HOST), a.Host)
    return h.state


def wait_connected(e, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if host_state(e) == api().HOST_STATE_CONNECTED:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError("host never connected:\n%s" %
                         e.agent_log.read_text()[-3000:])


def import_image(e, url, name, sha=""):
    a = api()
    return e.m.call("ImageService", "ImportImage", a.ImportImageRequest(
        url=url, datastore=DS, name=name, sha256=sha), a.Task, timeout=30)


def wait_task(e, tid, timeout=60):
    return e.m.wait_task(tid, timeout)


def ds_files(e):
    out = subprocess.run([_bin("canopy-ds"), "ls", e.dev, "-o", "json"],
                         check=True, capture_output=True, text=True).stdout
    return {f["name"]: f for f in json.loads(out)}


def ds_read(e, name):
    local = str(e.tmp / ("out-" + name.replace("/", "_")))
    subprocess.run([_bin("canopy-ds"), "export", e.dev, name, local,
                    "--host-id", READER_SLOT], check=True,
                   capture_output=True)
    with open(local, "rb") as f:
        return f.read()


def padded(data):
    return data + b"\0" * (-len(data) % 512)


def assert_failed(task, code, text):
    a = api()
    assert task.state == a.TASK_STATE_FAILED, task
    assert task.error.code == code.value[0], task
    assert text in task.error.message, task.error.message


def assert_nothing_left(e, name):
    files = ds_files(e)
    assert name not in files and name + ".part" not in files, files


def refused(e, code, text, **kw):
    a = api()
    req = dict(url=e.srv.url("small.img"), datastore=DS, name="refused.img")
    req.update(kw)
    with pytest.raises(grpc.RpcError) as ei:
        e.m.call("ImageService", "ImportImage", a.ImportImageRequest(**req),
                 a.Task, timeout=30)
    assert ei.value.code() == code, ei.value
    assert text in ei.value.details(), ei.value.details()


# ---- tests ----------------------------------------------------------------

def test_import_succeeds_bytes_equal(env):
    e = env
    data = e.files["small.img"]
    sha = hashlib.sha256(data).hexdigest()
    t = import_image(e, e.srv.url("small.img"), "small.img", sha.upper())
    a = api()
    assert t.kind == "image.import" and t.object == "datastore/ds1/small.img"
    end = wait_task(e, t.id)
    assert end.state == a.TASK_STATE_SUCCEEDED, end
    assert end.progress == 100 and sha in end.result, end
    assert "300001 bytes" in end.result, end.result
    assert ds_read(e, "small.img") == padded(data)
    assert "small.img.part" not in ds_files(e)
    # No checksum given; a redirect on the way is followed.
    t = import_image(e, e.srv.url("redirect/aligned.img"), "vm1/aligned.img")
    end = wait_task(e, t.id)
    assert end.state == a.TASK_STATE_SUCCEEDED, end
    assert ds_read(e, "vm1/aligned.img") == e.files["aligned.img"]
    # An empty image is a file of size 0.
    t = import_image(e, e.srv.url("empty.img"), "empty.img",
                     hashlib.sha256(b"").hexdigest())
    assert wait_task(e, t.id).state == a.TASK_STATE_SUCCEEDED
    assert ds_files(e)["empty.img"]["size"] == 0
    # The event log has the success.
    ev = e.m.call("EventService", "ListEvents", a.ListEventsRequest(limit=20),
                  a.ListEventsResponse)
    assert any(x.kind == "image.imported" and x.task == t.id
               for x in ev.events), ev


def test_wrong_sha256_leaves_nothing(env):
    e = env
    data = e.files["aligned.img"]
    want = "ab" * 32
    t = import_image(e, e.srv.url("aligned.img"), "wrongsum.img", want)
    end = wait_task(e, t.id)
    assert_failed(end, grpc.StatusCode.DATA_LOSS,
                  "sha256 mismatch: expected %s, got %s" % (
                      want, hashlib.sha256(data).hexdigest()))
    assert_nothing_left(e, "wrongsum.img")


def test_dropped_connection_resumes_with_range(env):
    e = env
    data = e.files["drop.img"]
    e.srv.drops["drop.img"] = 2
    e.srv.requests.clear()
    t = import_image(e, e.srv.url("drop/drop.img"), "drop.img",
                     hashlib.sha256(data).hexdigest())
    end = wait_task(e, t.id)
    assert end.state == api().TASK_STATE_SUCCEEDED, end
    ranges = [r for p, r in e.srv.requests if p.startswith("/drop/")]
    assert len(ranges) == 3 and ranges[0] is None, ranges
    assert all(r and r.startswith("bytes=") for r in ranges[1:]), ranges
    assert int(ranges[1][6:-1]) > 0, ranges
    assert ds_read(e, "drop.img") == data
    assert "resuming" in e.agent_log.read_text()


def test_untrusted_certificate_fails(env):
    e = env
    t = import_image(e, e.evil.url("small.img"), "evil.img")
    end = wait_task(e, t.id)
    assert_failed(end, grpc.StatusCode.FAILED_PRECONDITION,
                  "TLS verification of the server failed")
    assert_nothing_left(e, "evil.img")


def test_redirect_loop_fails_after_bound(env):
    e = env
    e.srv.requests.clear()
    t = import_image(e, e.srv.url("loop/x"), "loop.img")
    end = wait_task(e, t.id)
    assert_failed(end, grpc.StatusCode.FAILED_PRECONDITION,
                  "more than 5 redirects")
    assert len([p for p, _ in e.srv.requests if p.startswith("/loop")]) == 6
    assert_nothing_left(e, "loop.img")


def test_over_size_limit_fails(env):
    e = env
    t = import_image(e, e.srv.url("big.img"), "big.img")
    end = wait_task(e, t.id)
    assert_failed(end, grpc.StatusCode.RESOURCE_EXHAUSTED,
                  "over the limit of %d bytes" % LIMIT)
    assert_nothing_left(e, "big.img")


def test_not_found_on_server_fails(env):
    e = env
    t = import_image(e, e.srv.url("missing.img"), "missing.img")
    assert_failed(wait_task(e, t.id), grpc.StatusCode.NOT_FOUND,
                  "HTTP 404")
    assert_nothing_left(e, "missing.img")


def test_redirect_to_http_refused(env):
    e = env
    t = import_image(e, e.srv.url("to-http/small.img"), "tohttp.img")
    assert_failed(wait_task(e, t.id), grpc.StatusCode.FAILED_PRECONDITION,
                  "a redirect leads to a scheme that is not allowed")
    assert_nothing_left(e, "tohttp.img")


def test_no_content_length_refused(env):
    e = env
    t = import_image(e, e.srv.url("nolen/small.img"), "nolen.img")
    assert_failed(wait_task(e, t.id), grpc.StatusCode.FAILED_PRECONDITION,
                  "no Content-Length")
    assert_nothing_left(e, "nolen.img")


def test_cancel_stops_and_deletes(env):
    e = env
    a = api()
    t = import_image(e, e.srv.url("slow/slow.img"), "slow.img")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        cur = e.m.call("TaskService", "GetTask", a.GetTaskRequest(id=t.id),
                       a.Task)
        if cur.progress > 0:
            break
        time.sleep(0.2)
    assert cur.progress > 0 and "MiB" in cur.phase, cur
    c = e.m.call("TaskService", "CancelTask", a.CancelTaskRequest(id=t.id),
                 a.Task)
    assert c.phase == "cancelling", c
    end = wait_task(e, t.id)
    assert end.state == a.TASK_STATE_CANCELLED, end
    assert "cancelled" in end.error.message, end
    assert_nothing_left(e, "slow.img")
    with pytest.raises(grpc.RpcError) as ei:
        e.m.call("TaskService", "CancelTask", a.CancelTaskRequest(id=t.id),
                 a.Task)
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_bad_requests(env):
    e = env
    S = grpc.StatusCode
    refused(e, S.NOT_FOUND, "datastore nope is unknown", datastore="nope")
    refused(e, S.INVALID_ARGUMENT, "datastore name", datastore="Bad_DS")
    refused(e, S.INVALID_ARGUMENT, "sha256 must be 64 hex digits",
            sha256="xyz")
    refused(e, S.INVALID_ARGUMENT, "sha256 must be 64 hex digits",
            sha256="g" * 64)
    refused(e, S.INVALID_ARGUMENT, "scheme 'http' is not allowed",
            url="http://127.0.0.1:1/x")
    refused(e, S.INVALID_ARGUMENT, "scheme 'ftp' is not allowed",
            url="ftp://127.0.0.1/x")
    refused(e, S.INVALID_ARGUMENT, "no scheme", url="/etc/passwd")
    refused(e, S.INVALID_ARGUMENT, "file name", name="../x")
    refused(e, S.INVALID_ARGUMENT, "file name", name="")
    refused(e, S.INVALID_ARGUMENT, "file name", name="a" * 123)
    # The file exists on the datastore: the agent refuses, nothing starts.
    t = import_image(e, e.srv.url("aligned.img"), "dup.img")
    assert wait_task(e, t.id).state == api().TASK_STATE_SUCCEEDED
    refused(e, S.ALREADY_EXISTS, "file dup.img already exists", name="dup.img")


def test_credentials_never_logged(env):
    e = env
    t = import_image(e, e.srv.url("small.img").replace(
        "https://", "https://alice:s3cr3t-pw@"), "cred.img")
    assert wait_task(e, t.id).state == api().TASK_STATE_SUCCEEDED
    for text in (e.agent_log.read_text(), e.m.log_text()):
        assert "s3cr3t-pw" not in text
    assert "https://***@127.0.0.1" in e.agent_log.read_text()


def test_http_only_with_manager_option(env, tmp_path):
    """A second cluster whose manager runs with --image-allow-http: an
    http:// URL is taken and downloaded (the module's manager refuses it,
    test_bad_requests)."""
    e = env
    dev = str(tmp_path / "ds2.img")
    subprocess.run([_bin("canopy-ds"), "format", dev, "--name", DS,
                    "--size", "64M", "--hb-interval", "200",
                    "--hb-timeout", "4000"], check=True, capture_output=True)
    etcd = etcdlib.EtcdCluster(tmp_path, 1).start()
    m = Manager(tmp_path, etcd.endpoints, "m2",
                extra=["--image-allow-http"]).start()
    log = open(tmp_path / "agent2.log", "ab")
    agent = None
    try:
        m.wait_leader()
        (tmp_path / "h2").mkdir()
        agent = subprocess.Popen(
            [_bin("canopy-agent"), "--manager", m.bus, "--host-id", HOST,
             "--run-dir", str(tmp_path / "h2"), "--datastore",
             "%s=%s" % (DS, dev), "--ds-slots", "1-2"] +
            m.agent_args(HOST),
            stdout=log, stderr=log)
        e2 = Env()
        e2.m, e2.agent_log = m, tmp_path / "agent2.log"
        wait_connected(e2)
        data = e.files["aligned.img"]
        t = import_image(e2, e.plain.url("aligned.img"), "plain.img",
                         hashlib.sha256(data).hexdigest())
        assert wait_task(e2, t.id).state == api().TASK_STATE_SUCCEEDED
        e2.dev, e2.tmp = dev, tmp_path
        assert ds_read(e2, "plain.img") == data
    finally:
        if agent and agent.poll() is None:
            agent.terminate()
            agent.wait(10)
        log.close()
        m.close()
        etcd.close()


def test_list_images(env):
    e = env
    a = api()
    t = import_image(e, e.srv.url("small.img"), "listed.img")
    assert wait_task(e, t.id).state == a.TASK_STATE_SUCCEEDED
    r = e.m.call("ImageService", "ListImages",
                 a.ListImagesRequest(datastore=DS), a.ListImagesResponse)
    files = {f.name: f for f in r.files}
    assert set(files) == set(ds_files(e)), (files, ds_files(e))
    f = files["listed.img"]
    assert f.size_bytes == len(padded(e.files["small.img"])), f
    assert 0 < f.allocated_bytes and f.modified_unix_ms > 0, f
    assert not any(n.endswith(".part") for n in files), files
    rc, out, err = canopy(e, "-o", "json", "image", "list", "--datastore",
                          DS)
    assert rc == 0, err
    assert any(x["name"] == "listed.img" for x in json.loads(out)), out
    rc, out, err = canopy(e, "image", "list", "--datastore", DS)
    assert rc == 0 and "listed.img" in out and "ALLOCATED" in out, out
    for ds, code in (("nope", grpc.StatusCode.NOT_FOUND),
                     ("Bad_DS", grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.RpcError) as ei:
            e.m.call("ImageService", "ListImages",
                     a.ListImagesRequest(datastore=ds), a.ListImagesResponse)
        assert ei.value.code() == code, ei.value
    rc, out, err = canopy(e, "image", "list")
    assert rc == 2 and "--datastore" in err, (rc, err)


def test_agent_killed_mid_import_fails_task(env):
    """The agent dies during a download and comes back at once: the task
    does not hang (host loss or the manager's silence watchdog fails it),
    and the left NAME.part blocks a new import of NAME with a message
    naming it."""
    e = env
    a = api()
    t = import_image(e, e.srv.url("slow/slow.img"), "killed.img")
    deadline = time.monotonic() + 10
    while e.m.call("TaskService", "GetTask", a.GetTaskRequest(id=t.id),
                   a.Task).progress == 0:
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.2)
    args = list(e.agent.args)
    if "--join" in args:  # the host enrolled at its first start
        i = args.index("--join")
        del args[i:i + 2]
    e.agent.kill()
    e.agent.wait(10)
    log = open(e.agent_log, "ab")
    e.agent = subprocess.Popen(args, stdout=log, stderr=log)
    log.close()
    end = wait_task(e, t.id, timeout=30)
    assert_failed(end, grpc.StatusCode.UNAVAILABLE, "killed.img.part")
    wait_connected(e)
    refused(e, grpc.StatusCode.ALREADY_EXISTS, "killed.img.part",
            name="killed.img")


def test_cli_import_and_no_connected_host(env):
    e = env
    data = e.files["aligned.img"]
    rc, out, err = canopy(e, "image", "import", e.srv.url("aligned.img"),
                          "--datastore", DS, "--name", "cli.img", "--sha256",
                          hashlib.sha256(data).hexdigest())
    assert rc == 0, (out, err)
    assert "image.import datastore/ds1/cli.img: succeeded" in out, out
    assert ds_read(e, "cli.img") == data
    rc, out, err = canopy(e, "image", "import", e.srv.url("aligned.img"),
                          "--datastore", DS, "--name", "cli2.img",
                          "--sha256", "00" * 32)
    assert rc != 0 and "sha256 mismatch" in err, (rc, out, err)
    rc, out, err = canopy(e, "image", "import", e.srv.url("aligned.img"),
                          "--datastore", "nope", "--name", "x.img")
    assert rc != 0 and "unknown" in err, (rc, out, err)
    # Last: the only host with the datastore goes away.
    e.agent.terminate()
    e.agent.wait(10)
    deadline = time.monotonic() + 15
    while host_state(e) == api().HOST_STATE_CONNECTED:
        assert time.monotonic() < deadline, "host still connected"
        time.sleep(0.2)
    refused(e, grpc.StatusCode.FAILED_PRECONDITION,
            "no connected host has datastore ds1")
