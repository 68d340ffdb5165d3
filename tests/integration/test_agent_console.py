"""canopy-agent's ConsoleRead (a slice of a VM's console.log) against a fake
manager (no KVM needed): slices and offsets, the 64 KiB cap, offsets past
the end, bad and unknown VM ids, a symlinked log, a read sent one-way."""
import os
import random

import pytest

from canopy_testlib import protos
from canopy_testlib.fakemgr import Agent, FakeManager, agent_pb

INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION = 3, 5, 9
CAP = 64 * 1024


@pytest.fixture
def setup(build_dir, tmp_path):
    mgr = FakeManager()
    a = Agent(build_dir, tmp_path / "run", mgr.endpoint, "host1")
    try:
        mgr.wait_body("register")
        s = protos.common().VmSpec(name="web1", cpus=1, memory_mib=64,
                                   kernel="/nonexistent/kernel.elf")
        st = mgr.command("host1", "CREATE", "web1", s)
        assert st.code == 0, st.message
        yield mgr, a, tmp_path / "run" / "vms" / "web1"
    finally:
        a.stop()
        mgr.close()


def read(mgr, vm_id, offset=0, max=0):
    """The agent's reply envelope to one ConsoleRead."""
    A = agent_pb()
    rid = random.getrandbits(62) + 1
    env = mgr.envelope("host1", request_id=rid, console_read=A.ConsoleRead(
        vm_id=vm_id, offset=offset, max=max))
    mgr.send("host1", env)
    return mgr.wait(lambda h, e: e.reply_to == rid, 10,
                    "the reply to console read %d" % rid)


def data(rep):
    assert rep.WhichOneof("body") == "console_data", rep
    return rep.console_data


def test_slices_offsets_and_cap(setup):
    mgr, a, vmdir = setup
    # No log yet (never started): start it first.
    rep = read(mgr, "web1")
    assert rep.result.status.code == FAILED_PRECONDITION
    assert "start it first" in rep.result.status.message
    (vmdir / "console.log").write_bytes(b"")
    d = data(read(mgr, "web1"))
    assert (d.data, d.next_offset, d.size) == (b"", 0, 0)
    log = bytes(random.Random(1).getrandbits(8) for _ in range(100000))
    (vmdir / "console.log").write_bytes(log)
    d = data(read(mgr, "web1"))
    assert d.data == log[:CAP] and d.next_offset == CAP
    assert d.size == len(log) and not d.truncated_before
    d = data(read(mgr, "web1", offset=CAP, max=1 << 31))
    assert d.data == log[CAP:] and d.next_offset == len(log)
    d = data(read(mgr, "web1", offset=10, max=7))
    assert d.data == log[10:17] and d.next_offset == 17
    d = data(read(mgr, "web1", offset=len(log) - 3, max=100))
    assert d.data == log[-3:] and d.next_offset == len(log)
    # At and past the end: nothing, next_offset = size.
    d = data(read(mgr, "web1", offset=len(log)))
    assert d.data == b"" and d.next_offset == len(log)
    assert not d.truncated_before
    for off in (len(log) + 1, 1 << 62, (1 << 64) - 1):
        d = data(read(mgr, "web1", offset=off))
        assert d.data == b"" and d.next_offset == len(log)
        assert d.truncated_before and d.size == len(log)
    assert a.alive()


def test_bad_and_unknown_ids(setup):
    mgr, a, _ = setup
    for bad in ("", "../web1", "a/b", "x" * 300, "web1\n"):
        rep = read(mgr, bad)
        assert rep.WhichOneof("body") == "result"
        assert rep.result.status.code == INVALID_ARGUMENT, bad
    rep = read(mgr, "nope")
    assert rep.result.status.code == NOT_FOUND
    assert "nope does not exist" in rep.result.status.message
    assert a.alive()


def test_symlinked_log_not_followed(setup, tmp_path):
    mgr, a, vmdir = setup
    secret = tmp_path / "secret"
    secret.write_bytes(b"host secret\n")
    os.symlink(secret, vmdir / "console.log")
    rep = read(mgr, "web1")
    assert rep.WhichOneof("body") == "result", rep
    assert rep.result.status.code != 0
    assert "console log" in rep.result.status.message
    assert b"host secret" not in rep.SerializeToString()
    # A directory in its place is refused too.
    os.unlink(vmdir / "console.log")
    os.mkdir(vmdir / "console.log")
    rep = read(mgr, "web1")
    assert rep.WhichOneof("body") == "result"
    assert rep.result.status.code != 0
    # So is a FIFO (opening it must not block the agent's loop).
    os.rmdir(vmdir / "console.log")
    os.mkfifo(vmdir / "console.log")
    rep = read(mgr, "web1")
    assert rep.WhichOneof("body") == "result"
    assert rep.result.status.code != 0
    assert a.alive()


def test_one_way_read_refused(setup):
    mgr, a, vmdir = setup
    (vmdir / "console.log").write_bytes(b"hello\n")
    A = agent_pb()
    m = mgr.mark()
    mgr.send("host1", mgr.envelope("host1", console_read=A.ConsoleRead(
        vm_id="web1")))
    d = data(read(mgr, "web1"))  # the agent goes on answering
    assert d.data == b"hello\n"
    assert not [e for _, e in mgr.messages[m:]
                if e.WhichOneof("body") == "console_data" and
                not e.reply_to]
    assert "must be a request" in a.log_text()
