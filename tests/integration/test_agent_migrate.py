"""canopy-agent's vMotion messages against a fake manager (no KVM needed):
every bad MigrateIncoming, MigrateSend, MigrateAbort, MigrateResolve and
MigrateProbe is answered with its code and leaves nothing behind; a receiving VMM that exits before it
listens is reported and its directory removed."""
import time

import pytest

from canopy_testlib import protos
from canopy_testlib.fakemgr import Agent, FakeManager, agent_pb

OK, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS = 0, 3, 5, 6
FAILED_PRECONDITION, INTERNAL = 9, 13


@pytest.fixture
def mgr():
    m = FakeManager()
    yield m
    m.close()


@pytest.fixture
def agent(build_dir, tmp_path, mgr):
    a = Agent(build_dir, tmp_path / "run", mgr.endpoint, "host1",
              ["--vmm", "/bin/false"])
    mgr.wait_body("register")
    yield a
    a.stop()


def spec(**kw):
    c = protos.common()
    s = c.VmSpec(name="web1", cpus=1, memory_mib=64,
                 kernel="/nonexistent/kernel.elf")
    for d in kw.pop("disks", ()):
        s.disks.add(**d)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def incoming(mgr, vm_id="web1", s=None, with_spec=True):
    A = agent_pb()
    m = A.MigrateIncoming(vm_id=vm_id, task_id="t1")
    if with_spec:
        m.spec.CopyFrom(s if s is not None else spec())
    return mgr.request("host1", migrate_incoming=m)


@pytest.mark.parametrize("vm_id,kw,with_spec,code,words", [
    ("../x", {}, True, INVALID_ARGUMENT, ""),
    ("web1", {}, False, INVALID_ARGUMENT, "without a spec"),
    ("web1", {"cpus": 0}, True, INVALID_ARGUMENT, "cpus"),
    ("web1", {"disks": [{"path": "disk0.img"}]}, True, INVALID_ARGUMENT,
     "not on a datastore"),
    ("web1", {"disks": [{"path": "ds9:web1/disk0"}]}, True,
     FAILED_PRECONDITION, "datastore ds9 is not attached"),
])
def test_bad_incoming(mgr, agent, tmp_path, vm_id, kw, with_spec, code,
                      words):
    st = incoming(mgr, vm_id, spec(**kw), with_spec)
    assert st.code == code, st
    assert words in st.message, st
    assert not (tmp_path / "run" / "vms" / "web1").exists()
    assert agent.alive()


def test_incoming_vmm_exits_early(mgr, agent, tmp_path):
    """--vmm /bin/false: the receiver exits at once: reported, cleaned."""
    st = incoming(mgr)
    assert st.code == INTERNAL, st
    assert "receiving canopy-vmm exited" in st.message
    assert not (tmp_path / "run" / "vms" / "web1").exists()
    # The id is free again: a second try gets the same clean answer.
    assert incoming(mgr).code == INTERNAL


def test_incoming_over_an_existing_vm(mgr, agent, tmp_path):
    assert mgr.command("host1", "CREATE", "web1", spec()).code == OK
    st = incoming(mgr)
    assert st.code == ALREADY_EXISTS and "already exists" in st.message
    assert (tmp_path / "run" / "vms" / "web1" / "spec.pb").exists()


def test_bad_send_and_abort(mgr, agent):
    A = agent_pb()

    def send(**kw):
        return mgr.request("host1", migrate_send=A.MigrateSend(**kw))

    st = send(vm_id="web1", address="udp:1.2.3.4:5")
    assert st.code == INVALID_ARGUMENT and "tcp:HOST:PORT" in st.message
    st = send(vm_id="../x", address="tcp:127.0.0.1:5")
    assert st.code == INVALID_ARGUMENT
    st = send(vm_id="web1", address="tcp:" + "1" * 100)
    assert st.code == INVALID_ARGUMENT
    st = send(vm_id="nosuch", address="tcp:127.0.0.1:5")
    assert st.code == NOT_FOUND
    assert mgr.command("host1", "CREATE", "web1", spec()).code == OK
    st = send(vm_id="web1", address="tcp:127.0.0.1:5")
    assert st.code == FAILED_PRECONDITION and "not running" in st.message
    st = mgr.request("host1", migrate_abort=A.MigrateAbort(vm_id="nosuch"))
    assert st.code == OK
    # An ordinary VM of this host is never killed by an abort.
    st = mgr.request("host1", migrate_abort=A.MigrateAbort(vm_id="web1"))
    assert st.code == FAILED_PRECONDITION and "committed" in st.message
    # One-way migration messages cannot be answered: logged, dropped.
    mgr.send("host1", mgr.envelope("host1", migrate_send=A.MigrateSend(
        vm_id="web1", address="tcp:127.0.0.1:5")))
    time.sleep(0.5)
    assert agent.alive()
    assert "not a request" in agent.log_text()
    assert mgr.command("host1", "DELETE", "web1").code == OK


def test_bad_resolve_and_probe(mgr, agent, tmp_path):
    """MigrateResolve with nothing in doubt here changes nothing (a bad id,
    no such VM, an ordinary VM that is not running); MigrateProbe says
    NOT_FOUND for a VM this host does not have and OK for one it has."""
    A = agent_pb()

    def resolve(vm_id, resume):
        return mgr.request("host1", migrate_resolve=A.MigrateResolve(
            vm_id=vm_id, task_id="t1", resume=resume))

    def probe(vm_id):
        return mgr.request("host1", migrate_probe=A.MigrateProbe(
            vm_id=vm_id))

    assert resolve("../x", True).code == INVALID_ARGUMENT
    st = mgr.request("host1", migrate_resolve=A.MigrateResolve(
        vm_id="web1", resume=True, power_off=True))
    assert st.code == INVALID_ARGUMENT and "choose one" in st.message, st
    assert probe("../x").code == INVALID_ARGUMENT
    for resume in (True, False):
        st = resolve("nosuch", resume)
        assert st.code == FAILED_PRECONDITION, st
        assert st.message == ("no migration of vm nosuch is in doubt on "
                              "this host; nothing changed"), st
    st = probe("nosuch")
    assert st.code == NOT_FOUND and "no receiving canopy-vmm" in \
        st.message, st
    assert mgr.command("host1", "CREATE", "web1", spec()).code == OK
    st = resolve("web1", True)
    assert st.code == FAILED_PRECONDITION and "nothing changed" in \
        st.message, st
    st = probe("web1")
    assert st.code == OK and "has stopped" in st.message, st
    assert (tmp_path / "run" / "vms" / "web1" / "spec.pb").exists()
    # One-way: not a request, dropped.
    mgr.send("host1", mgr.envelope("host1", migrate_resolve=A.MigrateResolve(
        vm_id="web1", resume=True)))
    time.sleep(0.3)
    assert agent.alive()
    assert mgr.command("host1", "DELETE", "web1").code == OK


@pytest.mark.parametrize("status,marker,code,words", [
    (2, False, NOT_FOUND, "exited without running the vm (status 2)"),
    (2, True, NOT_FOUND, "exited without running the vm (status 2)"),
    (1, False, NOT_FOUND, "(status 1, before its run marker)"),
    (1, True, 10, "exited with status 1 after its run marker: it may have "
     "run the vm"),
])
def test_probe_after_receiver_exit(mgr, build_dir, tmp_path, status, marker,
                                   code, words):
    """A receiver that exits with status 2 (no COMMIT: nothing ran), or
    any other way before it made its run marker (migrate-ran, in the VM's
    directory: its working directory), is gone for sure: NOT_FOUND; one
    that exits another way after its marker may have run the VM:
    ABORTED. A new MigrateIncoming forgets the old exit."""
    vmm = tmp_path / "fake-vmm"
    vmm.write_text("#!/bin/sh\n%sexit %d\n" % (
        ": > migrate-ran\n" if marker else "", status))
    vmm.chmod(0o755)
    a = Agent(build_dir, tmp_path / "run", mgr.endpoint, "host1",
              ["--vmm", str(vmm)])
    try:
        mgr.wait_body("register")
        A = agent_pb()
        assert incoming(mgr).code == INTERNAL
        st = mgr.request("host1", migrate_probe=A.MigrateProbe(vm_id="web1"))
        assert st.code == code and words in st.message, st
        assert not (tmp_path / "run" / "vms" / "web1").exists()
        assert a.alive()
    finally:
        a.stop()
