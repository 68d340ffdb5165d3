"""Drive canopy-vmm from tests: start it, talk to its control socket."""
import os
import socket
import struct
import subprocess
import time

from . import protos


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("control socket closed after %d of %d bytes"
                                  % (len(data), n))
        data += chunk
    return data


class Control:
    """A connection to a VMM control socket (4-byte length + protobuf)."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.next_id = 1

    def close(self):
        self.sock.close()

    def send_raw(self, body):
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def recv_reply(self):
        V = protos.vmm()
        (n,) = struct.unpack(">I", _recv_exact(self.sock, 4))
        rep = V.VmmReply()
        rep.ParseFromString(_recv_exact(self.sock, n))
        return rep

    def call(self, **op):
        V = protos.vmm()
        req = V.VmmRequest(id=self.next_id, **op)
        self.next_id += 1
        self.send_raw(req.SerializeToString())
        rep = self.recv_reply()
        assert rep.id == req.id, "reply id %d for request %d" % (rep.id, req.id)
        return rep

    def ok(self, **op):
        rep = self.call(**op)
        assert rep.status.code == 0, "VMM said %d: %s" % (
            rep.status.code, rep.status.message)
        return rep

    def status(self):
        return self.ok(status=protos.vmm().VmmStatusRequest()).vm_status

    def pause(self):
        return self.ok(pause=protos.vmm().VmmPauseRequest())

    def resume(self):
        return self.ok(resume=protos.vmm().VmmResumeRequest())

    def stop(self, graceful=False, timeout_ms=0):
        return self.ok(stop=protos.vmm().VmmStopRequest(
            graceful=graceful, timeout_ms=timeout_ms))

    def save(self, path, stop_after=False):
        return self.ok(save=protos.vmm().VmmSaveRequest(
            path=str(path), stop_after=stop_after)).saved

    def balloon(self, target_mib):
        return self.call(balloon=protos.vmm().VmmBalloonRequest(
            target_mib=target_mib))

    def dirty(self, op):
        V = protos.vmm()
        return self.ok(dirty_log=V.VmmDirtyLogRequest(
            op=getattr(V, "DIRTY_LOG_OP_" + op.upper())))


class Vmm:
    """A canopy-vmm process with its console in a file."""

    def __init__(self, build_dir, tmp_path, *args, control=True, name="vm"):
        self.binary = os.path.join(str(build_dir), "bin", "canopy-vmm")
        self.console = os.path.join(str(tmp_path), name + ".console")
        self.log = os.path.join(str(tmp_path), name + ".log")
        self.control_path = (os.path.join(str(tmp_path), name + ".sock")
                             if control else None)
        cmd = [self.binary, "--name", name, "--serial", "file:" + self.console]
        if self.control_path:
            cmd += ["--control", self.control_path]
        cmd += [str(a) for a in args]
        self.cmd = cmd
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.logf,
                                     stderr=subprocess.STDOUT)

    def wait_control(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("canopy-vmm exited %d before its control "
                                     "socket appeared:\n%s"
                                     % (self.proc.returncode, self.log_text()))
            if os.path.exists(self.control_path):
                try:
                    return Control(self.control_path)
                except OSError:
                    pass
            time.sleep(0.01)
        raise AssertionError("no control socket after %.1fs:\n%s"
                             % (timeout, self.log_text()))

    def console_text(self):
        try:
            with open(self.console, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_text(self):
        self.logf.flush()
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_console(self, pred, timeout=10.0, what="console output"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.console_text()
            if pred(text):
                return text
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError("waited %.1fs for %s; console:\n%s\nlog:\n%s"
                             % (timeout, what, self.console_text()[-2000:],
                                self.log_text()[-2000:]))

    def wait_exit(self, timeout=10.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("canopy-vmm still running after %.1fs:\n%s"
                                 % (timeout, self.log_text()[-2000:]))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.logf.close()
