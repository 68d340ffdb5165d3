"""canopy-vmm's console_input control request with the test guest's `echo`
workload: typed lines come back, a 10 KiB paste (more than the 16550's
FIFO by far) arrives whole and in order, a full input queue answers
RESOURCE_EXHAUSTED without queueing part of a request, an oversized
request is refused, and a powered-off VM has no socket left."""
import os

import pytest

from canopy_testlib import protos
from canopy_testlib.vmm import Vmm

pytestmark = pytest.mark.kvm

INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8


@pytest.fixture
def vms(build_dir, tmp_path):
    started = []

    def start(cmdline, name="vm"):
        vm = Vmm(build_dir, tmp_path, "--kernel",
                 os.path.join(str(build_dir), "guest",
                              "canopy-testguest.elf"),
                 "--memory", "64", "--cmdline", cmdline, name=name)
        started.append(vm)
        return vm

    yield start
    for vm in started:
        vm.kill()


def send(c, data):
    return c.call(console_input=protos.vmm().VmmConsoleInputRequest(
        data=data))


def echo_lines(text):
    return [ln[len("echo: "):] for ln in text.splitlines()
            if ln.startswith("echo: ")]


def test_typed_line_is_echoed(vms):
    vm = vms("echo")
    c = vm.wait_control()
    vm.wait_console(lambda t: "echo: ready" in t, timeout=20)
    assert send(c, b"hello world\r").status.code == 0
    vm.wait_console(lambda t: "echo: hello world\n" in t)
    # CR LF is one line end; an empty line is echoed empty.
    assert send(c, b"one\r\n\ntwo\n").status.code == 0
    text = vm.wait_console(lambda t: "echo: two\n" in t)
    assert echo_lines(text)[1:] == ["hello world", "one", "", "two"]


def test_10k_paste_arrives_whole_and_in_order(vms):
    vm = vms("echo")
    c = vm.wait_control()
    lines = ["%04d %s" % (i, chr(ord("a") + i % 26) * 58) for i in range(160)]
    data = ("\n".join(lines) + "\n").encode()
    assert len(data) == 10240
    # Once the guest set its UART up (resetting the FIFO drops what it
    # holds, as on hardware), all at once in 4 KiB requests: far more
    # than the FIFO, most of it waits in the queue.
    vm.wait_console(lambda t: "echo: ready" in t, timeout=20)
    for off in range(0, len(data), 4096):
        rep = send(c, data[off:off + 4096])
        assert rep.status.code == 0, rep.status.message
    last = "echo: %s\n" % lines[-1]
    text = vm.wait_console(lambda t: last in t, timeout=60,
                           what="the last pasted line")
    assert echo_lines(text) == ["ready"] + lines


def test_full_queue_is_refused_whole(vms):
    """A guest that never reads COM1: the FIFO and the 64 KiB queue fill,
    the next request is refused and nothing of it is queued."""
    vm = vms("count=1000")
    c = vm.wait_control()
    # After the guest set its UART up (that clears the FIFO).
    vm.wait_console(lambda t: "count 1\n" in t, timeout=20)
    chunk = b"x" * 4096
    for i in range(16):
        rep = send(c, chunk)
        assert rep.status.code == 0, (i, rep.status.message)
    rep = send(c, chunk)
    assert rep.status.code == RESOURCE_EXHAUSTED
    assert "64 KiB" in rep.status.message
    # 64 bytes went to the FIFO: exactly 64 more fit, then nothing.
    assert send(c, b"y" * 65).status.code == RESOURCE_EXHAUSTED
    assert send(c, b"y" * 64).status.code == 0
    assert send(c, b"z").status.code == RESOURCE_EXHAUSTED
    assert c.status().stop_reason == "" and vm.proc.poll() is None


def test_oversized_and_empty_requests(vms):
    vm = vms("echo")
    c = vm.wait_control()
    vm.wait_console(lambda t: "echo: ready" in t, timeout=20)
    rep = send(c, b"a" * 4097)
    assert rep.status.code == INVALID_ARGUMENT
    assert "at most 4096" in rep.status.message
    assert send(c, b"").status.code == 0
    assert send(c, b"ok\n").status.code == 0
    vm.wait_console(lambda t: "echo: ok\n" in t, timeout=20)
    assert "echo: a" not in vm.console_text()


def test_input_after_the_guest_powered_off(vms):
    """`echo,limit=1` powers off after one line: the VMM exits and its
    socket goes away (the agent then answers FAILED_PRECONDITION, see
    test_console_input_e2e)."""
    vm = vms("echo,limit=1")
    c = vm.wait_control()
    vm.wait_console(lambda t: "echo: ready" in t, timeout=20)
    assert send(c, b"bye\n").status.code == 0
    assert vm.wait_exit(20) == 0
    assert "echo: bye\ncanopy-testguest: exit 0" in vm.console_text()
    assert not os.path.exists(vm.control_path)
