"""canopy-agent's ConsoleInput against a fake manager: a bad or unknown VM
id, oversized data and a VM that is not running are refused with their
codes (no KVM needed); with KVM, input reaches the echo guest through its
VMM, a VMM whose queue is full answers RESOURCE_EXHAUSTED through the
agent, and a stopped VM is refused."""
import os
import random
import time

import pytest

from canopy_testlib import protos, skips
from canopy_testlib.fakemgr import Agent, FakeManager, agent_pb
from canopy_testlib.procs import kill_vmms

INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, FAILED_PRECONDITION = \
    3, 5, 8, 9


def spec(build_dir, cmdline):
    return protos.common().VmSpec(
        name="web1", cpus=1, memory_mib=64, cmdline=cmdline,
        kernel=os.path.join(str(build_dir), "guest", "canopy-testguest.elf"))


@pytest.fixture
def setup(build_dir, tmp_path):
    mgr = FakeManager()
    a = Agent(build_dir, tmp_path / "run", mgr.endpoint, "host1")
    try:
        mgr.wait_body("register")
        yield mgr, a, tmp_path / "run" / "vms" / "web1"
    finally:
        a.stop()
        mgr.close()
        kill_vmms(tmp_path / "run")


def send(mgr, vm_id, data):
    """The status of the agent's answer to one ConsoleInput."""
    A = agent_pb()
    rid = random.getrandbits(62) + 1
    env = mgr.envelope("host1", request_id=rid, console_input=A.ConsoleInput(
        vm_id=vm_id, data=data))
    mgr.send("host1", env)
    rep = mgr.wait(lambda h, e: e.reply_to == rid, 10,
                   "the reply to console input %d" % rid)
    assert rep.WhichOneof("body") == "result", rep
    return rep.result.status


def create(mgr, build_dir, cmdline):
    st = mgr.command("host1", "CREATE", "web1", spec(build_dir, cmdline))
    assert st.code == 0, st.message


def test_refused_without_a_running_vm(setup, build_dir):
    mgr, a, _ = setup
    st = send(mgr, "Bad/Id", b"x")
    assert st.code == INVALID_ARGUMENT
    st = send(mgr, "web1", b"x")
    assert st.code == NOT_FOUND and "create it first" in st.message
    create(mgr, build_dir, "echo")
    st = send(mgr, "web1", b"x" * 4097)
    assert st.code == INVALID_ARGUMENT and "4096" in st.message
    st = send(mgr, "web1", b"x")
    assert st.code == FAILED_PRECONDITION
    assert "not running" in st.message and "start it first" in st.message
    assert a.alive()


def wait_console(vmdir, want, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = (vmdir / "console.log").read_text()
        except FileNotFoundError:
            text = ""
        if want in text:
            return text
        time.sleep(0.05)
    raise AssertionError("no %r in the console" % want)


@pytest.mark.kvm
def test_forwarded_to_the_vmm(setup, build_dir):
    skips.skip_unless_kvm()
    mgr, a, vmdir = setup
    create(mgr, build_dir, "echo,limit=2")
    st = mgr.command("host1", "START", "web1")
    assert st.code == 0, st.message
    wait_console(vmdir, "echo: ready\n")
    assert send(mgr, "web1", b"through the agent\n").code == 0
    wait_console(vmdir, "echo: through the agent\n")
    mark = len(mgr.messages)
    assert send(mgr, "web1", b"bye\n").code == 0
    wait_console(vmdir, "canopy-testguest: exit 0")
    mgr.wait(lambda h, e: e.WhichOneof("body") == "vm_state" and
             e.vm_state.state == protos.common().VM_RUN_STATE_STOPPED, 20,
             "web1 stopped", start=mark)
    st = send(mgr, "web1", b"late\n")
    assert st.code == FAILED_PRECONDITION, st.message
    assert a.alive()


@pytest.mark.kvm
def test_full_queue_through_the_agent(setup, build_dir):
    skips.skip_unless_kvm()
    mgr, a, vmdir = setup
    create(mgr, build_dir, "count=1000")  # never reads COM1
    assert mgr.command("host1", "START", "web1").code == 0
    wait_console(vmdir, "count 1\n")
    for i in range(16):
        st = send(mgr, "web1", b"x" * 4096)
        assert st.code == 0, (i, st.message)
    st = send(mgr, "web1", b"x" * 4096)
    assert st.code == RESOURCE_EXHAUSTED and "64 KiB" in st.message
    assert a.alive()
