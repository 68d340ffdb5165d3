"""Free TCP ports on 127.0.0.1, never the same one twice in a session."""
import socket

_given = set()


def free_port():
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _given:
            _given.add(port)
            return port
    raise RuntimeError("no free port found")


def free_ports(n):
    return [free_port() for _ in range(n)]
