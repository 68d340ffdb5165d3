"""lib/frame and lib/loop end to end: the frame_echo helper serves many
clients on one event loop; bad clients are cut off alone."""
import os
import socket
import struct
import subprocess

import pytest


def recv_exact(s, n):
    d = b""
    while len(d) < n:
        c = s.recv(n - len(d))
        if not c:
            return d
        d += c
    return d


def echo(s, body):
    s.sendall(struct.pack(">I", len(body)) + body)
    (n,) = struct.unpack(">I", recv_exact(s, 4))
    return recv_exact(s, n)


@pytest.fixture
def server(build_dir, tmp_path):
    path = str(tmp_path / "echo.sock")
    p = subprocess.Popen([os.path.join(build_dir, "tests", "helpers",
                                       "frame_echo"), path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"

    def connect():
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(path)
        return s
    yield p, connect
    if p.poll() is None:
        p.kill()
    p.wait(10)


def test_echo_sizes(server):
    _, connect = server
    s = connect()
    for n in (0, 1, 4096, 1 << 20):
        body = os.urandom(n)
        assert echo(s, body) == body


def test_byte_at_a_time_and_pipelined(server):
    _, connect = server
    s = connect()
    frame = struct.pack(">I", 5) + b"hello"
    for b in frame:
        s.send(bytes([b]))
    assert recv_exact(s, 9) == frame
    many = b"".join(struct.pack(">I", 3) + b"%03d" % i for i in range(100))
    s.sendall(many)
    assert recv_exact(s, len(many)) == many


def test_oversize_cuts_off_only_that_client(server):
    _, connect = server
    good, bad = connect(), connect()
    bad.sendall(struct.pack(">I", (1 << 20) + 1))
    assert bad.recv(16) == b""  # closed, no reply
    assert echo(good, b"still here") == b"still here"


def test_truncated_frame_then_close(server):
    _, connect = server
    t = connect()
    t.sendall(struct.pack(">I", 100) + b"only part")
    t.close()
    assert echo(connect(), b"ok") == b"ok"


def test_quit_exits_zero(server):
    p, connect = server
    assert echo(connect(), b"quit") == b"bye"
    assert p.wait(10) == 0
