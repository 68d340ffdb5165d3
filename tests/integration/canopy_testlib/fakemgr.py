"""A fake canopy-managerd for agent tests: a ZeroMQ ROUTER that speaks the
agent bus (proto/canopy_agent.proto, docs/agent-bus.md), heartbeats every
host it has heard from, records what agents send and lets a test send
requests (or raw garbage) and wait for replies."""
import os
import random
import signal
import subprocess
import threading
import time
import traceback

import zmq

from . import ports, protos


def agent_pb():
    return protos.load("canopy_agent")


class FakeManager:
    HEARTBEAT_S = 0.3
    POLL_MS = 2  # how long a queued send may wait for the thread

    def __init__(self, port=None, curve_secret=None):
        """curve_secret: be a CURVE server with this Z85 secret key."""
        self.port = port or ports.free_port()
        self.endpoint = "tcp://127.0.0.1:%d" % self.port
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve_secret:
            self.sock.curve_server = True
            self.sock.curve_secretkey = curve_secret
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.bind(self.endpoint)
        self.lock = threading.Condition()
        self.messages = []      # (host, Envelope) except heartbeats
        self.heartbeats = []    # (host, Envelope)
        self.undecodable = 0
        self.hosts = set()
        self.out = []
        self.seq = 0
        self.stopping = False
        self.error = None       # the traceback that ended the thread
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    # ---- background thread: the only user of the socket ----------------
    def _run(self):
        # Whatever ends this thread, the socket is closed (else close()
        # blocks for ever in ctx.term()) and waiters learn why at once.
        try:
            self._loop()
        except BaseException:
            with self.lock:
                self.error = traceback.format_exc()
                self.lock.notify_all()
        finally:
            self.sock.close(0)

    def _loop(self):
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        next_hb = time.monotonic()
        while not self.stopping:
            for _ in dict(poller.poll(self.POLL_MS)):
                while True:
                    try:
                        frames = self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._take(frames)
            with self.lock:
                out, self.out = self.out, []
                hosts = list(self.hosts)
            for host, body in out:
                self._send(host, body)
            if time.monotonic() >= next_hb:
                next_hb = time.monotonic() + self.HEARTBEAT_S
                for h in hosts:
                    self.seq += 1
                    env = self.envelope(h, heartbeat=agent_pb().AgentHeartbeat(
                        seq=self.seq))
                    self._send(h, env.SerializeToString())

    def _send(self, host, body):
        try:
            self.sock.send_multipart([host.encode(), body], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _take(self, frames):
        if len(frames) != 2:
            return
        host = frames[0].decode("utf-8", "replace")
        env = agent_pb().Envelope()
        try:
            env.ParseFromString(frames[1])
        except Exception:
            with self.lock:
                self.undecodable += 1
            return
        with self.lock:
            self.hosts.add(host)
            if env.WhichOneof("body") == "heartbeat":
                self.heartbeats.append((host, env))
            else:
                self.messages.append((host, env))
            self.lock.notify_all()

    # ---- test API -------------------------------------------------------
    def close(self):
        self.stopping = True
        self.thread.join(5)
        if self.thread.is_alive():  # its socket is open: term() would block
            raise AssertionError("fake manager thread did not stop in 5 s")
        self.ctx.term()
        if self.error:  # never lost, even when nothing waited
            raise AssertionError("fake manager thread died:\n" + self.error)

    def envelope(self, host, request_id=0, **body):
        return agent_pb().Envelope(version=1, host_id=host,
                                   request_id=request_id,
                                   sent_unix_ms=int(time.time() * 1000),
                                   **body)

    def send_raw(self, host, data):
        with self.lock:
            self.out.append((host, data))

    def send(self, host, env):
        self.send_raw(host, env.SerializeToString())

    def wait(self, pred, timeout=10.0, what="a message", start=0):
        """First (host, env) after index start with pred(host, env)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for h, e in self.messages[start:]:
                    if pred(h, e):
                        return e
                if self.error:
                    raise AssertionError("fake manager thread died while "
                                         "waiting for %s:\n%s" % (
                                             what, self.error))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "waited %.1fs for %s; got %s" % (
                            timeout, what,
                            [e.WhichOneof("body") for _, e in
                             self.messages[start:]][-20:]))
                self.lock.wait(left)

    def mark(self):
        with self.lock:
            return len(self.messages)

    def wait_body(self, kind, pred=None, timeout=10.0, start=0):
        return self.wait(lambda h, e: e.WhichOneof("body") == kind and
                         (pred is None or pred(getattr(e, kind))),
                         timeout, "a %s" % kind, start)

    def request(self, host, timeout=15.0, **body):
        rid = random.getrandbits(62) + 1
        self.send(host, self.envelope(host, request_id=rid, **body))
        return self.wait(lambda h, e: e.reply_to == rid, timeout,
                         "the reply to request %d" % rid).result.status

    def command(self, host, action, vm_id, spec=None, timeout_ms=0,
                timeout=15.0):
        A = agent_pb()
        cmd = A.VmCommand(action=getattr(A, "VM_ACTION_" + action),
                          vm_id=vm_id, timeout_ms=timeout_ms)
        if spec is not None:
            cmd.spec.CopyFrom(spec)
        return self.request(host, timeout=timeout, vm_command=cmd)

    def heartbeat_count(self, host):
        with self.lock:
            return sum(1 for h, _ in self.heartbeats if h == host)


class Agent:
    """A canopy-agent process with its log in a file."""

    def __init__(self, build_dir, run_dir, manager, host_id="host1",
                 extra=(), log=None):
        self.binary = os.path.join(str(build_dir), "bin", "canopy-agent")
        self.log = log or os.path.join(str(run_dir) + ".agent.log")
        self.cmd = [self.binary, "--manager", manager, "--host-id", host_id,
                    "--run-dir", str(run_dir), "--log-level", "debug"]
        self.cmd += [str(a) for a in extra]
        self.host_id = host_id
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self.logf,
                                     stderr=subprocess.STDOUT)

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        self.logf.flush()
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.logf.close()
