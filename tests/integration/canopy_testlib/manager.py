"""canopy-managerd for tests: the daemon, a gRPC client on python3-grpcio
(generic calls on the method name, messages from the generated protos) and
the C fake agent (tests/helpers/mgr_fake_agent) driven over its stdin.

The API is TLS only: every Manager serves the certificate `canopy cluster
init` made in its work directory (Pki, one cluster CA per directory, so
managers of one test share it); Manager.channel verifies against that CA,
and Manager.cli_env() / Manager.run_cli() give the CLI the same CA
(CANOPY_CA). This is the one place tests start canopy-managerd.

Every call but Login needs a token: each Manager starts with
--admin-password-file (Pki.admin_password: the first leader makes the user
"admin", Administrator on the cluster), and the channel and the CLI env
carry the admin's token, got with Login from the manager on first use
(Pki.token). A test of access control makes channels of its own with
Pki.channel(addr, token=...)."""
import collections
import os
import queue
import secrets
import signal
import socket
import subprocess
import threading
import time

import grpc

from . import protos
from .ports import free_ports


def api():
    return protos.load("canopy_api")


def common():
    return protos.load("canopy_common")


def binary(name):
    return os.path.join(protos.build_dir(), name)


class Pki:
    """The cluster PKI of one test directory: `canopy cluster init` run
    once into DIR/mgr-state (the managers' --state-dir)."""

    def __init__(self, workdir):
        self.state_dir = os.path.join(str(workdir), "mgr-state")
        self.ca = self.path("ca.crt")
        if not os.path.exists(self.ca):
            r = subprocess.run([binary("bin/canopy"), "cluster", "init",
                                "--state-dir", self.state_dir],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
        self.admin_password_file = os.path.join(self.state_dir,
                                                "admin-password")
        if not os.path.exists(self.admin_password_file):
            fd = os.open(self.admin_password_file,
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(18) + "\n")
        with open(self.admin_password_file) as f:
            self.admin_password = f.read().strip()
        self._token = None

    def login(self, addr, user="admin", password=None, timeout=5):
        """Login at addr; returns the token (grpc.RpcError on failure)."""
        a = protos.load("canopy_auth")
        with grpc.secure_channel(addr, grpc.ssl_channel_credentials(
                root_certificates=self.ca_pem)) as ch:
            f = ch.unary_unary("/canopy.v1.AuthService/Login",
                               request_serializer=_ser,
                               response_deserializer=a.LoginResponse.FromString)
            return f(a.LoginRequest(user=user, password=self.admin_password
                                    if password is None else password),
                     timeout=timeout).token

    def token(self, addr):
        """The admin's token, from a Login at addr the first time; None
        while addr cannot give one (standby, no leader yet)."""
        if self._token is None:
            try:
                self._token = self.login(addr, timeout=3)
            except grpc.RpcError:
                return None
        return self._token

    @property
    def ca_pem(self):
        """The CA as it is on disk now (a test may re-initialise it)."""
        with open(self.ca, "rb") as f:
            return f.read()

    def path(self, name):
        return os.path.join(self.state_dir, "pki", name)

    def issue(self, name, usage="server", sans=()):
        """Issue NAME.crt/.key from the CA; returns (cert, key) paths."""
        cmd = [binary("bin/canopy"), "cluster", "issue-cert", name,
               "--state-dir", self.state_dir, "--usage", usage]
        for san in sans:
            cmd += ["--san", san]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return self.path(name + ".crt"), self.path(name + ".key")

    def channel(self, addr, token=False):
        """A gRPC channel to addr that verifies it against this CA. Its
        calls carry the admin's token (token=False), a given token, or
        none (token=None)."""
        ch = grpc.secure_channel(addr, grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem))
        if token is None:
            return ch
        return grpc.intercept_channel(ch, _Bearer(self, addr, token or None))

    def cli_env(self, home="/nonexistent", addr=None, **more):
        """The environment for build/bin/canopy: this CA, no user config,
        and the admin's token when addr can give one."""
        env = {"HOME": str(home), "PATH": "/usr/bin:/bin",
               "CANOPY_CA": self.ca}
        tok = self.token(addr) if addr else None
        if tok:
            env["CANOPY_TOKEN"] = tok
        env.update(more)
        return env


class _Details(collections.namedtuple(
        "_Details", ("method", "timeout", "metadata", "credentials",
                     "wait_for_ready", "compression")),
        grpc.ClientCallDetails):
    pass


class _Bearer(grpc.UnaryUnaryClientInterceptor,
              grpc.UnaryStreamClientInterceptor):
    """Adds "authorization: Bearer T" to each call: a fixed token, or the
    admin's from Pki.token (none while there is no leader to log in at:
    the call then fails as it would without one). An interceptor, not
    call credentials: python's metadata plugin costs ~1 ms a call."""

    def __init__(self, pki, addr, fixed):
        self.pki, self.addr, self.fixed = pki, addr, fixed

    def _details(self, d):
        tok = self.fixed or self.pki.token(self.addr)
        md = list(d.metadata or [])
        if tok:
            md.append(("authorization", "Bearer " + tok))
        return _Details(d.method, d.timeout, md, d.credentials,
                        d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, cont, details, request):
        return cont(self._details(details), request)

    def intercept_unary_stream(self, cont, details, request):
        return cont(self._details(details), request)


class Manager:
    """One canopy-managerd on free loopback ports, serving TLS."""

    def __init__(self, workdir, etcd_endpoints, mid, host_timeout=2,
                 command_timeout_ms=3000, bus_port=None, extra=()):
        api_port, own_bus = free_ports(2)
        self.workdir = str(workdir)
        self.pki = Pki(workdir)
        self.ca = self.pki.ca
        self.id = mid
        self.addr = "127.0.0.1:%d" % api_port
        self.bus = "tcp://127.0.0.1:%d" % (bus_port or own_bus)
        self.log_path = os.path.join(str(workdir), "%s.log" % mid)
        self.cmd = [binary("bin/canopy-managerd"),
                    "--etcd", ",".join(etcd_endpoints),
                    "--listen", self.addr, "--bus", self.bus, "--id", mid,
                    "--host-timeout", str(host_timeout),
                    "--command-timeout", str(command_timeout_ms),
                    "--log-level", "debug",
                    "--state-dir", self.pki.state_dir,
                    "--admin-password-file",
                    self.pki.admin_password_file] + list(extra)
        self.proc = None
        self.channel = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log,
                                     stderr=self.log)
        self._wait_port()
        # Only now: a channel that failed to connect backs off for seconds.
        self.channel = self.pki.channel(self.addr)
        return self

    def cli_env(self, home="/nonexistent", **more):
        return self.pki.cli_env(home, addr=self.addr, **more)

    def run_cli(self, *args, timeout=60, home="/nonexistent", server=None,
                text=True, stdin=subprocess.DEVNULL):
        """Run build/bin/canopy --server ADDR ARGS with cli_env()."""
        return subprocess.run(
            [binary("bin/canopy"), "--server", server or self.addr] +
            [str(a) for a in args], capture_output=True, text=text,
            timeout=timeout, stdin=stdin, env=self.cli_env(home))

    def _wait_port(self, timeout=10):
        host, port = self.addr.rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()[-3000:]
            try:
                socket.create_connection((host, int(port)), 0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("%s: API port not open: %s" % (
            self.id, self.log_text()[-3000:]))

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def call(self, service, method, req, resp_type, timeout=10):
        f = self.channel.unary_unary(
            "/canopy.v1.%s/%s" % (service, method),
            request_serializer=_ser, response_deserializer=resp_type.FromString)
        return f(req, timeout=timeout)

    def stream(self, service, method, req, resp_type, timeout=30):
        f = self.channel.unary_stream(
            "/canopy.v1.%s/%s" % (service, method),
            request_serializer=_ser, response_deserializer=resp_type.FromString)
        return f(req, timeout=timeout)

    def wait_task(self, task_id, timeout=30):
        """WaitTask until the task ends: its final state."""
        a = api()
        got = list(self.stream("TaskService", "WaitTask",
                               a.WaitTaskRequest(id=task_id), a.Task,
                               timeout=timeout))
        assert got, "WaitTask streamed nothing for task %s" % task_id
        return got[-1]

    def add_host(self, host_id, ttl=0):
        """AddHost: the host's one-time join token."""
        a = api()
        return self.call("HostService", "AddHost",
                         a.AddHostRequest(id=host_id, ttl_seconds=ttl),
                         a.AddHostResponse).join_token

    def bus_dealer(self, host_id, rcvtimeo_ms=3000):
        """A raw ZeroMQ DEALER on the bus as host_id, enrolled the way
        lib/bus_enrol.c does it (for tests that send their own envelopes).
        """
        import zmq
        from zmq.utils import z85
        ag = protos.load("canopy_agent")
        _, _, sec_hex, srv_hex = self.add_host(host_id).split(":")
        esec = z85.encode(bytes.fromhex(sec_hex))
        srv = z85.encode(bytes.fromhex(srv_hex))
        pub, sec = zmq.curve_keypair()

        def sock(p, s):
            d = zmq.Context.instance().socket(zmq.DEALER)
            d.setsockopt(zmq.ROUTING_ID, host_id.encode())
            d.setsockopt(zmq.LINGER, 0)
            d.setsockopt(zmq.RCVTIMEO, rcvtimeo_ms)
            d.setsockopt(zmq.CURVE_SERVERKEY, srv)
            d.setsockopt(zmq.CURVE_PUBLICKEY, p)
            d.setsockopt(zmq.CURVE_SECRETKEY, s)
            d.connect(self.bus)
            return d
        e = sock(zmq.curve_public(esec), esec)
        env = ag.Envelope(version=1, host_id=host_id, request_id=1)
        env.enrol.public_key = pub.decode()
        e.send(env.SerializeToString())
        try:
            while True:
                r = ag.Envelope.FromString(e.recv())
                if r.reply_to == 1:
                    assert r.WhichOneof("body") == "enrol_reply", r
                    break
        finally:
            e.close()
        return sock(pub, sec)

    def host_pki_dir(self, host_id):
        return os.path.join(self.workdir, "host-pki", host_id)

    def agent_args(self, host_id):
        """canopy-agent options that give host_id its bus keys: --pki-dir,
        and --join with a fresh token until the host has enrolled."""
        d = self.host_pki_dir(host_id)
        if os.path.exists(os.path.join(d, "bus.key")):
            return ["--pki-dir", d]
        os.makedirs(os.path.dirname(d), exist_ok=True)
        return ["--pki-dir", d, "--join", self.add_host(host_id)]

    def cluster(self):
        a = api()
        return self.call("ClusterService", "GetCluster",
                         a.GetClusterRequest(), a.Cluster)

    def wait_leader(self, timeout=15):
        """Wait until this manager answers as leader."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()[-3000:]
            try:
                return self.cluster()
            except grpc.RpcError as e:
                last = e
            time.sleep(0.05)
        raise AssertionError("%s not leader after %ss: %s\n%s" % (
            self.id, timeout, last, self.log_text()[-3000:]))

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def close(self):
        if self.channel:
            self.channel.close()
        self.kill(signal.SIGTERM)
        if self.proc:
            self.log.close()


def _ser(m):
    return m if isinstance(m, bytes) else m.SerializeToString()


class FakeAgent:
    """The C fake agent; lines it prints are queued for expect()."""

    def __init__(self, mgr, host_id, memory_mib=8192, datastore=None,
                 bus=None, cpu_features=None):
        """mgr: the Manager that lets the host join (agent_args); bus: its
        endpoint when not mgr.bus (HA tests share one); cpu_features: the
        values it registers (AgentRegister.cpu_features), none if None."""
        cmd = [binary("tests/helpers/mgr_fake_agent"), "--manager",
               bus or mgr.bus, "--host-id", host_id,
               "--memory-mib", str(memory_mib)] + mgr.agent_args(host_id)
        if datastore:
            cmd += ["--datastore", datastore]
        if cpu_features is not None:
            cmd += ["--cpu-features",
                    ",".join("0x%x" % v for v in cpu_features)]
        self.host_id = host_id
        self.lines = queue.Queue()
        self.seen = []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("ready")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, prefix, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("fake agent %s: no line %r (saw %r)" % (
                    self.host_id, prefix, self.seen[-10:]))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def mode(self, how):
        self.send("mode " + how)
        self.expect("ok")

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
