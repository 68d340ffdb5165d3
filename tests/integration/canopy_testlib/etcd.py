"""Real etcd servers (Debian's etcd-server) for tests: one member or a
cluster of three on loopback, with members that can be killed, stopped and
restarted."""
import os
import shutil
import signal
import subprocess
import time
import uuid

from .ports import free_ports

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


class EtcdMember:
    def __init__(self, name, workdir, client_port, peer_port):
        self.name = name
        self.data_dir = os.path.join(workdir, name + ".etcd")
        self.log_path = os.path.join(workdir, name + ".log")
        self.client_port = client_port
        self.peer_port = peer_port
        self.proc = None

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    def start(self, initial_cluster, token, state="new"):
        cmd = [ETCD, "--name", self.name, "--data-dir", self.data_dir,
               "--listen-client-urls", "http://" + self.endpoint,
               "--advertise-client-urls", "http://" + self.endpoint,
               "--listen-peer-urls", self.peer_url,
               "--initial-advertise-peer-urls", self.peer_url,
               "--initial-cluster", initial_cluster,
               "--initial-cluster-state", state,
               "--initial-cluster-token", token,
               "--heartbeat-interval", "50", "--election-timeout", "500",
               "--logger", "zap", "--log-outputs", "stderr"]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            self.log.close()

    def log_tail(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


class EtcdCluster:
    """n members on free loopback ports; start() waits until the cluster
    answers a linearizable read."""

    def __init__(self, workdir, n=1):
        ports = free_ports(2 * n)
        self.members = [EtcdMember("n%d" % i, str(workdir), ports[2 * i],
                                   ports[2 * i + 1]) for i in range(n)]
        self.initial = ",".join("%s=%s" % (m.name, m.peer_url)
                                for m in self.members)
        self.token = "canopy-test-" + uuid.uuid4().hex[:8]

    @property
    def endpoints(self):
        return [m.endpoint for m in self.members]

    def live_endpoints(self):
        return [m.endpoint for m in self.members if m.running()]

    def start(self, timeout=30):
        for m in self.members:
            m.start(self.initial, self.token)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout=30, endpoints=None):
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            r = self.run_etcdctl("get", "/canopy-health-probe",
                                 endpoints=endpoints or self.live_endpoints(),
                                 check=False, timeout=5)
            if r.returncode == 0:
                return
            last = r.stderr
            time.sleep(0.1)
        raise AssertionError("etcd not healthy after %ds: %s\n%s" % (
            timeout, last, "\n".join(m.log_tail() for m in self.members)))

    def run_etcdctl(self, *args, endpoints=None, check=True, timeout=10):
        env = dict(os.environ, ETCDCTL_API="3")
        eps = endpoints or self.live_endpoints()
        r = subprocess.run([ETCDCTL, "--endpoints", ",".join(eps),
                            "--command-timeout", "5s"] + list(args),
                           capture_output=True, text=True, env=env,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("etcdctl %s: %s" % (" ".join(args),
                                                     r.stderr.strip()))
        return r

    def etcdctl(self, *args, endpoints=None):
        return self.run_etcdctl(*args, endpoints=endpoints).stdout

    def kill(self, i):
        self.members[i].signal(signal.SIGKILL)

    def stop(self, i):
        self.members[i].signal(signal.SIGTERM)

    def restart(self, i, timeout=30):
        m = self.members[i]
        if m.running():
            m.signal(signal.SIGTERM)
        m.start(self.initial, self.token, state="existing")
        self.wait_healthy(timeout, endpoints=[m.endpoint])

    def close(self):
        """Kill every member and delete its data directory (its log stays
        for a failed test): each holds ~100 MB of preallocated WAL, and
        pytest keeps the last three runs' tmp_path, which once filled this
        machine's disk in the middle of `make check`."""
        for m in self.members:
            m.signal(signal.SIGKILL)
            shutil.rmtree(m.data_dir, ignore_errors=True)
