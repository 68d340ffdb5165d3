"""canopy-agent against a fake manager (no KVM needed): registration,
heartbeats, host stats, CREATE/DELETE and the spec file, every bad-input
path of the bus messages and of the command line."""
import json
import os
import random
import socket
import stat
import subprocess
import time

import pytest

from canopy_testlib import protos
from canopy_testlib.fakemgr import Agent, FakeManager, agent_pb

INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS = 3, 5, 6
FAILED_PRECONDITION, UNIMPLEMENTED = 9, 12


@pytest.fixture
def mgr():
    m = FakeManager()
    yield m
    m.close()


@pytest.fixture
def agents(build_dir, tmp_path):
    started = []

    def start(mgr, host_id="host1", extra=(), run_dir=None):
        a = Agent(build_dir, run_dir or tmp_path / "run", mgr.endpoint,
                  host_id, extra)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


def spec(**kw):
    c = protos.common()
    s = c.VmSpec(name="web1", cpus=1, memory_mib=64,
                 kernel="/nonexistent/kernel.elf")
    for k, v in kw.items():
        if k == "disks":
            for d in v:
                s.disks.add(**d)
        elif k == "nics":
            for n in v:
                s.nics.add(**n)
        else:
            setattr(s, k, v)
    return s


def test_register_heartbeat_stats(mgr, agents, tmp_path):
    dev = tmp_path / "ds.img"
    dev.write_bytes(b"")
    a = agents(mgr, extra=["--address", "10.1.2.3", "--stats-interval", "1",
                           "--datastore", "ds1=%s" % dev])
    reg = mgr.wait_body("register").register
    assert reg.hostname == socket.gethostname()
    assert reg.cpus == os.cpu_count()
    with open("/proc/meminfo") as f:
        total = int(f.readline().split()[1]) >> 10
    assert reg.memory_mib == total
    nics = sorted(n for n in os.listdir("/sys/class/net") if n != "lo")
    assert sorted(reg.nics) == nics
    assert reg.version
    assert reg.address == "10.1.2.3"
    assert list(reg.datastores) == ["ds1"]
    with open("/proc/cpuinfo") as f:
        flags = next(l for l in f if l.startswith("flags")).split(":")[1]
    assert list(reg.cpu_flags) == flags.split()
    hs = mgr.wait_body("host_stats", timeout=5).host_stats
    assert hs.memory_used_mib > 0 and hs.memory_used_mib <= total
    assert len(hs.vms) == 0
    # Another round a second later: the interval is honoured.
    m = mgr.mark()
    mgr.wait_body("host_stats", timeout=3, start=m)
    n = mgr.heartbeat_count("host1")
    time.sleep(1.5)
    assert mgr.heartbeat_count("host1") > n, "heartbeats stopped"
    _, hb = mgr.heartbeats[-1]
    assert hb.heartbeat.running_vms == 0
    assert a.alive()


def test_create_writes_spec_and_disks_delete_removes(mgr, agents, tmp_path):
    agents(mgr)
    mgr.wait_body("register")
    ext = tmp_path / "ext.img"
    s = spec(cmdline="count", disks=[
        {"path": "disk0.img", "size_bytes": 1 << 30, "serial": "d0"},
        {"path": str(ext), "size_bytes": 4096, "readonly": True}])
    st = mgr.command("host1", "CREATE", "web1", s)
    assert st.code == 0, st.message
    vmdir = tmp_path / "run" / "vms" / "web1"
    sp = vmdir / "spec.pb"
    assert stat.S_IMODE(sp.stat().st_mode) == 0o600
    back = protos.common().VmSpec()
    back.ParseFromString(sp.read_bytes())
    assert back == s
    assert not [p for p in os.listdir(vmdir) if ".tmp" in p]
    d0 = vmdir / "disk0.img"
    assert d0.stat().st_size == 1 << 30
    assert d0.stat().st_blocks * 512 < 1 << 20, "disk is not sparse"
    assert ext.stat().st_size == 4096
    rep = mgr.wait_body("vm_state", lambda r: r.vm_id == "web1").vm_state
    assert rep.state == protos.common().VM_RUN_STATE_STOPPED
    # A second CREATE of the same id is refused; nothing changes.
    st = mgr.command("host1", "CREATE", "web1", spec())
    assert st.code == ALREADY_EXISTS and "already exists" in st.message
    back.ParseFromString(sp.read_bytes())
    assert back == s
    # Stopping or pausing a VM that is not running.
    assert mgr.command("host1", "STOP", "web1").code == 0
    assert mgr.command("host1", "STOP_HARD", "web1").code == 0
    st = mgr.command("host1", "PAUSE", "web1")
    assert st.code == FAILED_PRECONDITION and "start it first" in st.message
    st = mgr.command("host1", "DELETE", "web1")
    assert st.code == 0, st.message
    assert not vmdir.exists()
    assert mgr.command("host1", "DELETE", "web1").code == NOT_FOUND


def test_create_existing_disk_refused_and_rolled_back(mgr, agents, tmp_path):
    agents(mgr)
    mgr.wait_body("register")
    a = tmp_path / "a.img"
    b = tmp_path / "b.img"
    b.write_bytes(b"keep me")
    s = spec(disks=[{"path": str(a), "size_bytes": 1 << 20},
                    {"path": str(b), "size_bytes": 1 << 20}])
    st = mgr.command("host1", "CREATE", "vm2", s)
    assert st.code == ALREADY_EXISTS, st.message
    assert str(b) in st.message and "size 0" in st.message
    assert not a.exists(), "first disk not rolled back"
    assert b.read_bytes() == b"keep me"
    assert not (tmp_path / "run" / "vms" / "vm2").exists()
    # size 0 uses the existing file.
    s = spec(disks=[{"path": str(b)}])
    assert mgr.command("host1", "CREATE", "vm2", s).code == 0
    assert b.read_bytes() == b"keep me"


def test_concurrent_creates_and_leftovers(mgr, agents, tmp_path):
    """Two CREATEs of one id in flight at once: one wins. A directory left
    by a CREATE that died before its spec was written is removed at start;
    one with a bad spec is left alone and logged."""
    vms = tmp_path / "run" / "vms"
    (vms / "half").mkdir(parents=True)
    (vms / "half" / "disk0.img").write_bytes(b"x")
    (vms / "junk").mkdir()
    (vms / "junk" / "spec.pb").write_bytes(b"\xff\xff")
    (vms / "Bad_Name").mkdir()
    a = agents(mgr)
    mgr.wait_body("register")
    assert not (vms / "half").exists()
    assert (vms / "junk").exists() and (vms / "Bad_Name").exists()
    assert "not a VmSpec" in a.log_text()
    A = agent_pb()
    ids = []
    for _ in range(2):
        rid = random.getrandbits(62) + 1
        ids.append(rid)
        cmd = A.VmCommand(action=A.VM_ACTION_CREATE, vm_id="half",
                          spec=spec(disks=[{"path": "d.img",
                                            "size_bytes": 1 << 20}]))
        mgr.send("host1", mgr.envelope("host1", request_id=rid,
                                       vm_command=cmd))
    codes = sorted(mgr.wait(lambda h, e, r=r: e.reply_to == r).result
                   .status.code for r in ids)
    assert codes == [0, ALREADY_EXISTS], codes
    assert (vms / "half" / "spec.pb").exists()
    assert (vms / "half" / "d.img").stat().st_size == 1 << 20
    st = mgr.command("host1", "DELETE", "junk")
    assert st.code == NOT_FOUND
    st = mgr.command("host1", "CREATE", "junk", spec())
    assert st.code == ALREADY_EXISTS and "holds no VM" in st.message, st


@pytest.mark.parametrize("vm_id", [
    "", "A", "web_1", "../etc", "a/b", "..", "x" * 64, "web1\n", "wéb"])
def test_bad_vm_ids(mgr, agents, vm_id):
    a = agents(mgr)
    mgr.wait_body("register")
    for action in ("CREATE", "START", "DELETE"):
        st = mgr.command("host1", action, vm_id, spec())
        assert st.code == INVALID_ARGUMENT, (action, st)
        assert "VM id" in st.message
    assert a.alive()


@pytest.mark.parametrize("kw,code,words", [
    ({"cpus": 0}, INVALID_ARGUMENT, "cpus 0 is out of range"),
    ({"cpus": 65}, INVALID_ARGUMENT, "cpus 65 is out of range"),
    ({"memory_mib": 8}, INVALID_ARGUMENT, "memory 8 MiB is out of range"),
    ({"memory_mib": 2 ** 40}, INVALID_ARGUMENT, "out of range"),
    ({"kernel": ""}, INVALID_ARGUMENT, "kernel is empty"),
    ({"kernel": "k.elf"}, INVALID_ARGUMENT, "not an absolute path"),
    ({"kernel": "/a/../b"}, INVALID_ARGUMENT, "'..' component"),
    ({"kernel": "/a,b"}, INVALID_ARGUMENT, "a ','"),
    ({"initrd": "rel"}, INVALID_ARGUMENT, "initrd 'rel' is not an absolute"),
    ({"cmdline": "x" * 4096}, INVALID_ARGUMENT, "cmdline is longer"),
    ({"name": "n" * 64}, INVALID_ARGUMENT, "name is longer"),
    ({"nics": [{"network": "lan"}]}, UNIMPLEMENTED, "without network"),
    ({"disks": [{"path": "ds1:web/disk0"}]}, FAILED_PRECONDITION,
     "datastore ds1 is not attached to this host"),
    ({"disks": [{"path": "ds1:web/../x"}]}, INVALID_ARGUMENT,
     "not DATASTORE:FILE"),
    ({"disks": [{"path": "ds1:w", "direct": True}]}, INVALID_ARGUMENT,
     "drop 'direct'"),
    ({"disks": [{"path": "../x"}]}, INVALID_ARGUMENT, "plain file name"),
    ({"disks": [{"path": "spec.pb"}]}, INVALID_ARGUMENT, "plain file name"),
    ({"disks": [{"path": "/d/../x"}]}, INVALID_ARGUMENT, "'..'"),
    ({"disks": [{"path": "d", "size_bytes": 1000}]}, INVALID_ARGUMENT,
     "multiple of 512"),
    ({"disks": [{"path": "d", "serial": "s" * 21}]}, INVALID_ARGUMENT,
     "serial is longer"),
    ({"disks": [{"path": "d", "serial": "a,b"}]}, INVALID_ARGUMENT,
     "serial may hold only"),
    ({"disks": [{"path": "d%d" % i} for i in range(17)]}, INVALID_ARGUMENT,
     "at most 16"),
])
def test_bad_specs(mgr, agents, tmp_path, kw, code, words):
    a = agents(mgr)
    mgr.wait_body("register")
    st = mgr.command("host1", "CREATE", "vm1", spec(**kw))
    assert st.code == code, st
    assert words in st.message
    assert not (tmp_path / "run" / "vms" / "vm1").exists()
    assert a.alive()


def test_malformed_and_unknown_envelopes(mgr, agents):
    A = agent_pb()
    a = agents(mgr)
    mgr.wait_body("register")
    n = mgr.heartbeat_count("host1")
    # Garbage bytes, an empty frame, a wrong version: dropped by the bus.
    mgr.send_raw("host1", b"\xff\x00garbage" * 10)
    mgr.send_raw("host1", b"")
    bad = mgr.envelope("host1", request_id=77, register=A.AgentRegister())
    bad.version = 9
    mgr.send("host1", bad)
    st = mgr.wait(lambda h, e: e.reply_to == 77).result.status
    assert st.code == INVALID_ARGUMENT
    # A body the agent does not take, as a request: answered.
    st = mgr.request("host1", register=A.AgentRegister(hostname="x"))
    assert st.code == INVALID_ARGUMENT and "does not accept" in st.message
    st = mgr.request("host1", host_stats=A.HostStats())
    assert st.code == INVALID_ARGUMENT
    # A VmCommand with an unknown action or no spec.
    st = mgr.request("host1", vm_command=A.VmCommand(action=99,
                                                      vm_id="vm1"))
    assert st.code == INVALID_ARGUMENT and "unknown VM action" in st.message
    st = mgr.request("host1", vm_command=A.VmCommand(
        action=A.VM_ACTION_UNSPECIFIED, vm_id="vm1"))
    assert st.code == INVALID_ARGUMENT
    st = mgr.command("host1", "CREATE", "vm1")
    assert st.code == INVALID_ARGUMENT and "no VM spec" in st.message
    st = mgr.command("host1", "START", "nosuchvm")
    assert st.code == NOT_FOUND and "create it first" in st.message
    # A one-way VmCommand (no request id) cannot be answered: logged only.
    mgr.send("host1", mgr.envelope("host1", vm_command=A.VmCommand(
        action=A.VM_ACTION_DELETE, vm_id="vm1")))
    # Still alive and still heartbeating.
    time.sleep(1.0)
    assert a.alive()
    assert mgr.heartbeat_count("host1") > n
    assert mgr.command("host1", "DELETE", "vm1").code == NOT_FOUND
    assert "must be a request" in a.log_text()


def test_reconnect_registers_again(build_dir, tmp_path, agents):
    """The manager goes away for longer than --manager-timeout and comes
    back on the same port: the agent registers again and reports its VMs."""
    m = FakeManager()
    port = m.port
    try:
        a = agents(m, extra=["--manager-timeout", "1"])
        m.wait_body("register")
        assert m.command("host1", "CREATE", "vm1", spec()).code == 0
    finally:
        m.close()
    time.sleep(2.0)
    m2 = FakeManager(port=port)
    try:
        m2.wait_body("register", timeout=10)
        rep = m2.wait_body("vm_state", lambda r: r.vm_id == "vm1").vm_state
        assert rep.state == protos.common().VM_RUN_STATE_STOPPED
        assert a.alive()
        assert "manager unreachable" in a.log_text()
    finally:
        m2.close()


def run_agent(build_dir, *args):
    return subprocess.run([os.path.join(str(build_dir), "bin",
                                        "canopy-agent")] + list(args),
                          capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize("args,words", [
    ([], "are required"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h 1", "--run-dir",
      "/tmp/x"], "--host-id h 1"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "rel"], "absolute path"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--stats-interval", "0"], "give 1 to 3600"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--stats-interval", "5s"], "give 1 to 3600"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--datastore", "ds1"], "expected NAME=DEV"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--datastore", "ds1=/nonexistent/dev"], "No such file"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--log-level", "loud"], "--log-level loud"),
    (["--bogus"], "usage: canopy-agent"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--manager-timeout", "-1"], "give 1 to 3600"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--ds-slots", "5-4"], "--ds-slots 5-4"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--ds-slots", "1-65"], "LAST <= 64"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--ds-slots", "3"], "give FIRST-LAST"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--vmm-uids", "5-4"], "--vmm-uids 5-4: give FIRST-LAST"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--vmm-uids", "0-10"], "--vmm-uids 0-10: give FIRST-LAST"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--vmm-uids", "60000-70000"], "--vmm-uids 60000-70000: give FIRST-LAST"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--vmm-uids", "7"], "--vmm-uids 7: give FIRST-LAST"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--vmm-uids", "1-2147483647"], "--vmm-uids 1-2147483647: give FIRST-LAST"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--vmm-uids", "-1-5"], "--vmm-uids -1-5: give FIRST-LAST"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--vmm-uids", "1-2x"], "--vmm-uids 1-2x: give FIRST-LAST"),
    (["--manager", "tcp://127.0.0.1:1", "--host-id", "h1", "--run-dir",
      "/tmp/x", "--log-file", "/nonexistent/d/a.log"],
     "--log-file /nonexistent/d/a.log: No such file"),
    (["--manager", "m", "extra"], "unexpected argument 'extra'"),
    (["--config", "/nonexistent/agent.conf"], "agent.conf"),
])
def test_bad_command_lines(build_dir, args, words):
    r = run_agent(build_dir, *args)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr


def test_config_file(build_dir, tmp_path, mgr):
    conf = tmp_path / "agent.conf"
    log = tmp_path / "agent.log"
    conf.write_text("manager = %s\nhost-id = h7\nrun-dir = %s\n"
                    "stats-interval = 1\naddress = 192.0.2.7\n"
                    "log-file = %s\n" % (mgr.endpoint, tmp_path / "run", log))
    p = subprocess.Popen([os.path.join(str(build_dir), "bin",
                                       "canopy-agent"), "--config",
                          str(conf), "--address", "192.0.2.8"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        reg = mgr.wait_body("register").register
        assert reg.address == "192.0.2.8"  # the command line wins
        mgr.wait_body("host_stats", timeout=4)
        assert 'msg="registered" host=h7' in log.read_text()
    finally:
        p.terminate()
        p.wait(10)
    conf.write_text("manager = x\nmemroy = 1\n")
    r = run_agent(build_dir, "--config", str(conf))
    assert r.returncode == 2 and "unknown key 'memroy'" in r.stderr
    conf.write_text("manager = x\nhost-id = h\nrun-dir = /tmp/x\n"
                    "stats-interval = 0\ndatastore = a=/dev/null,b\n")
    r = run_agent(build_dir, "--config", str(conf))
    assert r.returncode == 2 and "--stats-interval 0" in r.stderr
    conf.write_text("manager = x\nhost-id = h\nrun-dir = /tmp/x\n"
                    "datastore = a=/dev/null,b\n")
    r = run_agent(build_dir, "--config", str(conf))
    assert r.returncode == 2 and "--datastore b: expected" in r.stderr


def test_start_timeout_and_exec_failure(mgr, agents, tmp_path):
    """A VMM that never answers on its control socket is killed at the
    command's timeout and the answer carries its log; a VMM that cannot be
    executed is reported with the agent's line."""
    fake = tmp_path / "fake-vmm"
    pidfile = tmp_path / "fake.pid"
    fake.write_text("#!/bin/sh\necho \"fake vmm $*\"\necho $$ > %s\n"
                    "exec sleep 60\n" % pidfile)
    fake.chmod(0o755)
    a = agents(mgr, extra=["--vmm", str(fake)])
    mgr.wait_body("register")
    assert mgr.command("host1", "CREATE", "vm1", spec()).code == 0
    t0 = time.monotonic()
    st = mgr.command("host1", "START", "vm1", timeout_ms=1500)
    took = time.monotonic() - t0
    assert st.code == 4, st  # DEADLINE_EXCEEDED
    assert "did not report the VM running within 1500 ms" in st.message
    assert "fake vmm --name vm1 --kernel /nonexistent/kernel.elf" in \
        st.message
    assert 1.0 < took < 2.0, took  # answered about the timeout
    pid = int(pidfile.read_text())
    time.sleep(0.2)
    assert not os.path.exists("/proc/%d" % pid), "the VMM was not killed"
    rep = mgr.wait_body("vm_state", lambda r: r.vm_id == "vm1" and
                        r.state == protos.common().VM_RUN_STATE_STOPPED
                        and "signal 9" in r.stop_reason).vm_state
    assert rep.pid == 0
    a.stop()
    # A VMM binary that does not exist.
    a = agents(mgr, extra=["--vmm", str(tmp_path / "nope")])
    m = mgr.mark()
    mgr.wait_body("register", start=m)
    st = mgr.command("host1", "START", "vm1")
    assert st.code == FAILED_PRECONDITION, st
    assert "exited with status 127" in st.message
    assert "cannot exec canopy-vmm" in st.message
    assert a.alive()


def test_datastore_disks_need_slots(build_dir, mgr, agents, tmp_path):
    """Datastore disks: CREATE makes the file on the volume as a host of
    its own (a slot of --ds-slots, left cleanly); without --ds-slots
    nothing that needs a slot is done."""
    img = tmp_path / "ds.img"
    ds = os.path.join(str(build_dir), "bin", "canopy-ds")
    # Short heartbeats: every change waits a few intervals for its locks.
    subprocess.run([ds, "format", str(img), "--name", "ds1", "--size",
                    "64M", "--hb-interval", "200", "--hb-timeout", "4000"],
                   check=True, capture_output=True)
    a = agents(mgr, extra=["--datastore", "ds1=%s" % img])
    mgr.wait_body("register")
    s = spec(disks=[{"path": "ds1:vm1/disk0", "size_bytes": 4 << 20}])
    st = mgr.command("host1", "CREATE", "vm1", s)
    assert st.code == FAILED_PRECONDITION and "--ds-slots" in st.message
    # size 0: an existing file, nothing to create: accepted; START needs
    # a slot for the VMM.
    s = spec(disks=[{"path": "ds1:vm1/disk0"}])
    assert mgr.command("host1", "CREATE", "vm1", s).code == 0
    st = mgr.command("host1", "START", "vm1")
    assert st.code == FAILED_PRECONDITION and "--ds-slots" in st.message
    a.stop()
    a = agents(mgr, extra=["--datastore", "ds1=%s" % img,
                           "--ds-slots", "10-11"])
    m = mgr.mark()
    mgr.wait_body("register", start=m)
    s = spec(disks=[{"path": "ds1:vm2/disk0", "size_bytes": 4 << 20},
                    {"path": "ds1:vm2/disk1", "size_bytes": 1 << 20}])
    assert mgr.command("host1", "CREATE", "vm2", s).code == 0
    ls = json.loads(subprocess.run([ds, "ls", str(img), "-o", "json"],
                                   check=True, capture_output=True,
                                   text=True).stdout)
    got = {f["name"]: f["size"] for f in ls}
    assert got == {"vm2/disk0": 4 << 20, "vm2/disk1": 1 << 20}, got
    hb = subprocess.run([ds, "heartbeats", str(img)], check=True,
                        capture_output=True, text=True).stdout
    assert "canopy-agent" in hb and "left" in hb, hb
    # The file exists now: a second CREATE of it is refused and the first
    # disk it made is rolled back; vm2's files stay.
    s = spec(disks=[{"path": "ds1:vm3/disk0", "size_bytes": 1 << 20},
                    {"path": "ds1:vm2/disk0", "size_bytes": 1 << 20}])
    st = mgr.command("host1", "CREATE", "vm3", s)
    assert st.code == ALREADY_EXISTS, st
    assert "vm2/disk0" in st.message and "size 0" in st.message
    ls = json.loads(subprocess.run([ds, "ls", str(img), "-o", "json"],
                                   check=True, capture_output=True,
                                   text=True).stdout)
    assert sorted(f["name"] for f in ls) == ["vm2/disk0", "vm2/disk1"]
    assert not (tmp_path / "run" / "vms" / "vm3").exists()
    assert a.alive()


def test_random_commands_all_answered(mgr, agents, tmp_path):
    """Hundreds of well-formed envelopes with random, mostly wrong, commands
    (ids, actions, specs, disks, timeouts): each one is answered and the
    agent stays up. The VMM is /bin/false so STARTs fail fast; random text
    never contains "/", so no disk lands outside tmp_path."""
    A = agent_pb()
    rnd = random.Random(8)
    a = agents(mgr, extra=["--vmm", "/bin/false"])
    mgr.wait_body("register")
    words = ["", "a", "vm1", "vm2", "x" * 63, "x" * 64, "../x", "A", "é",
             "ds1:x", "/abs/k", "rel", "/a/../b", "a,b", "\n", "\x00"]

    def rstr():
        return rnd.choice(words) if rnd.random() < 0.8 else \
            "".join(chr(rnd.randrange(0x30, 0x250)) for _ in
                    range(rnd.randrange(0, 80)))

    pending = []
    for n in range(300):
        cmd = A.VmCommand(action=rnd.randrange(-1, 10),
                          vm_id=rnd.choice(["vm1", "vm2", rstr()]),
                          timeout_ms=rnd.choice([0, 1, 100, 2 ** 32 - 1]))
        if rnd.random() < 0.7:
            s = cmd.spec
            s.name = rstr()
            s.cpus = rnd.choice([0, 1, 2, 64, 65, 2 ** 32 - 1])
            s.memory_mib = rnd.choice([0, 16, 64, 2 ** 20, 2 ** 64 - 1])
            s.kernel = rnd.choice(["/nonexistent/k", rstr()])
            s.cmdline = rstr()
            for _ in range(rnd.randrange(0, 3)):
                s.disks.add(path=rstr(), size_bytes=rnd.choice(
                    [0, 512, 1000, 1 << 20, 2 ** 64 - 1]),
                    serial=rstr(), readonly=rnd.random() < 0.5)
        rid = n + 1000
        mgr.send("host1", mgr.envelope("host1", request_id=rid,
                                       vm_command=cmd))
        pending.append(rid)
    for rid in pending:
        mgr.wait(lambda h, e, r=rid: e.reply_to == r, timeout=30,
                 what="the answer to %d" % rid)
    assert a.alive()
    assert mgr.command("host1", "DELETE", "nosuch").code == NOT_FOUND


def test_curve(build_dir, tmp_path, agents):
    """CURVE on the bus: with the manager's public key and its own key pair
    the agent registers; with another server key it never does; the key
    file must be private, well-formed, and never appears in a message."""
    import zmq
    if not zmq.has("curve"):
        pytest.skip("SKIP (needs CURVE): libzmq built without it")
    spub, ssec = zmq.curve_keypair()
    cpub, csec = zmq.curve_keypair()
    keys = tmp_path / "agent.keys"
    keys.write_text('public = "%s"\nsecret = "%s"\n' % (
        cpub.decode(), csec.decode().replace("\\", "\\\\")
        .replace('"', '\\"')))
    keys.chmod(0o600)
    m = FakeManager(curve_secret=ssec)
    try:
        a = agents(m, extra=["--curve-server-key", spub.decode(),
                             "--curve-keys", str(keys)])
        reg = m.wait_body("register").register
        assert reg.hostname
        assert csec.decode() not in a.log_text()
        a.stop()
        other, _ = zmq.curve_keypair()
        a = agents(m, host_id="host2",
                   extra=["--curve-server-key", other.decode(),
                          "--curve-keys", str(keys)])
        time.sleep(1.5)
        assert not any(h == "host2" for h, _ in m.messages + m.heartbeats)
        assert a.alive()
    finally:
        m.close()
    keys.chmod(0o644)
    r = run_agent(build_dir, "--manager", "tcp://127.0.0.1:1", "--host-id",
                  "h1", "--run-dir", str(tmp_path / "r"),
                  "--curve-server-key", spub.decode(), "--curve-keys",
                  str(keys))
    assert r.returncode == 1 and "chmod 600" in r.stderr, r.stderr
    assert csec.decode() not in r.stderr
    keys.write_text("public = short\nsecret = %s\n" % ("x" * 40))
    keys.chmod(0o600)
    r = run_agent(build_dir, "--manager", "tcp://127.0.0.1:1", "--host-id",
                  "h1", "--run-dir", str(tmp_path / "r"),
                  "--curve-server-key", spub.decode(), "--curve-keys",
                  str(keys))
    assert r.returncode == 1 and "40 characters of Z85" in r.stderr
    assert "x" * 40 not in r.stderr
    for args, words in [
            (["--curve-server-key", spub.decode()], "go together"),
            (["--curve-keys", str(keys)], "go together"),
            (["--curve-server-key", "abc", "--curve-keys", str(keys)],
             "40 characters of Z85")]:
        r = run_agent(build_dir, "--manager", "tcp://127.0.0.1:1",
                      "--host-id", "h1", "--run-dir", str(tmp_path / "r"),
                      *args)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
