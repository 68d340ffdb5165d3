"""canopy_testlib/node.py's helpers for nodes that work together, without
QEMU: boot_all (booted together; a stall boots the whole set again, any
other failure stops the others and is raised), wait_listening and
socket_nic_args."""
import socket
import threading
import warnings

import pytest

from canopy_testlib import node


class FakeNode:
    """wait_exit returns `text` or raises `error`; `block` makes it wait
    until killed (a node left waiting for its failed partner)."""

    def __init__(self, text=None, error=None, block=False):
        self.text, self.error, self.killed = text, error, threading.Event()
        self.block = block

    def wait_exit(self, timeout, stall_s=None):
        if self.block:
            assert self.killed.wait(10), "never killed"
            return "killed"
        if self.error:
            raise self.error
        return self.text

    def kill(self):
        self.killed.set()


def makers(*plans):
    """One make() per node; each returns that node's next FakeNode from
    its plan (one per attempt) and records it."""
    made = [[] for _ in plans]

    def make(k):
        def f():
            n = plans[k][len(made[k])]
            made[k].append(n)
            return n
        return f
    return [make(k) for k in range(len(plans))], made


def test_boot_all_returns_the_texts_in_order():
    makes, made = makers([FakeNode("a")], [FakeNode("b")])
    assert node.boot_all(makes, timeout=5) == ["a", "b"]


def test_boot_all_boots_the_set_again_after_a_stall():
    makes, made = makers(
        [FakeNode(error=node.NodeStalled("silent")), FakeNode("a2")],
        [FakeNode(block=True), FakeNode("b2")])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert node.boot_all(makes, timeout=5) == ["a2", "b2"]
    assert [len(m) for m in made] == [2, 2]
    assert made[1][0].killed.is_set()  # its partner stalled: stopped
    assert any("booted again" in str(x.message) for x in w)


def test_boot_all_raises_a_second_stall():
    makes, made = makers(
        [FakeNode(error=node.NodeStalled("one")),
         FakeNode(error=node.NodeStalled("two"))],
        [FakeNode("b1"), FakeNode("b2")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(node.NodeStalled, match="two"):
            node.boot_all(makes, timeout=5, attempts=2)


def test_boot_all_does_not_retry_other_failures_and_stops_the_rest():
    makes, made = makers([FakeNode(block=True)],
                         [FakeNode(error=AssertionError("vmm hung"))])
    with pytest.raises(AssertionError, match="vmm hung"):
        node.boot_all(makes, timeout=5)
    assert [len(m) for m in made] == [1, 1]
    assert made[0][0].killed.is_set()


def test_boot_all_stops_started_nodes_when_a_make_fails():
    first = FakeNode("a")

    def broken():
        raise AssertionError("nothing listens")
    with pytest.raises(AssertionError, match="nothing listens"):
        node.boot_all([lambda: first, broken], timeout=5)
    assert first.killed.is_set()


def test_wait_listening():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    with pytest.raises(AssertionError, match="nothing listens"):
        node.wait_listening(port, timeout=0.3)  # bound, not listening
    s.listen(1)
    node.wait_listening(port, timeout=5)
    s.close()


def test_socket_nic_args():
    assert node.socket_nic_args("listen", 4242, "52:54:00:09:00:01") == [
        "-netdev", "socket,id=n0,listen=127.0.0.1:4242",
        "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:09:00:01,romfile="]
