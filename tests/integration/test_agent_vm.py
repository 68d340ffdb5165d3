"""canopy-agent with real canopy-vmm processes and the test guest, driven
by a fake manager: start, stats, pause/resume, graceful and hard stop, the
guest powering off, the agent killed and restarted (VMs adopted), and a
kernel that does not exist."""
import os
import struct
import subprocess
import signal
import time

import pytest

from canopy_testlib import protos
from canopy_testlib.fakemgr import Agent, FakeManager
from canopy_testlib.jail import expected_listing, jail_uid, root_listing

pytestmark = pytest.mark.kvm

FAILED_PRECONDITION = 9


def C():
    return protos.common()


@pytest.fixture
def mgr():
    m = FakeManager()
    yield m
    m.close()


@pytest.fixture
def env(build_dir, tmp_path, mgr):
    """An agent (factory for restarts) and a guest spec; every VMM left is
    killed at the end."""
    run = tmp_path / "run"
    started = []

    def agent(*extra):
        a = Agent(build_dir, run, mgr.endpoint, "host1",
                  ["--stats-interval", "1"] + list(extra))
        started.append(a)
        return a

    def spec(cmdline="count=50", kernel=None):
        return C().VmSpec(
            name="vm", cpus=1, memory_mib=64, cmdline=cmdline,
            kernel=kernel or os.path.join(str(build_dir), "guest",
                                          "canopy-testguest.elf"))

    yield agent, spec, run
    for a in started:
        a.stop()
    vms = run / "vms"
    for d in (os.listdir(vms) if vms.exists() else []):
        for p in list_pids(vms / d):
            os.kill(p, signal.SIGKILL)


def list_pids(vmdir):
    """canopy-vmm processes whose control socket is in vmdir."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                args = f.read().split(b"\0")
            cwd = os.readlink("/proc/%s/cwd" % p)
        except OSError:
            continue
        if args and args[0].endswith(b"canopy-vmm") and cwd == str(vmdir):
            out.append(int(p))
    return out


def console(run, vm):
    try:
        with open(run / "vms" / vm / "console.log", "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def wait_console(run, vm, pred, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = console(run, vm)
        if pred(text):
            return text
        time.sleep(0.05)
    raise AssertionError("console of %s: %s" % (vm, console(run, vm)[-500:]))


def counts(text):
    return len([l for l in text.splitlines() if "count " in l])


def state_of(mgr, vm, state, start=0, timeout=10):
    return mgr.wait_body(
        "vm_state", lambda r: r.vm_id == vm and r.state == state,
        timeout=timeout, start=start).vm_state


def ok(st):
    assert st.code == 0, st.message


def create(mgr, vm, spec):
    """CREATE, then wait for the VM's first report (sent after the reply)."""
    m = mgr.mark()
    ok(mgr.command("host1", "CREATE", vm, spec))
    mgr.wait_body("vm_state", lambda r: r.vm_id == vm, start=m)


def test_lifecycle(env, mgr):
    agent, spec, run = env
    a = agent()
    mgr.wait_body("register")
    create(mgr, "vm1", spec())
    m = mgr.mark()
    ok(mgr.command("host1", "START", "vm1"))
    rep = state_of(mgr, "vm1", C().VM_RUN_STATE_RUNNING, m)
    pid = rep.pid
    assert pid > 0 and os.path.exists("/proc/%d" % pid)
    assert os.getsid(pid) == pid, "the VMM is not in its own session"
    wait_console(run, "vm1", lambda t: counts(t) >= 2)
    # START again: already running, answered OK, same process.
    ok(mgr.command("host1", "START", "vm1"))
    # Host stats carry the VM with its figures.
    m = mgr.mark()
    hs = mgr.wait_body("host_stats", lambda h: any(
        v.vm_id == "vm1" and v.rss_bytes > 0 for v in h.vms),
        start=m, timeout=5).host_stats
    v = [v for v in hs.vms if v.vm_id == "vm1"][0]
    assert v.state == C().VM_RUN_STATE_RUNNING and v.pid == pid
    assert v.exits and sum(e.count for e in v.exits) > 0
    assert v.uptime_ms > 0
    deadline = time.monotonic() + 3
    while mgr.heartbeats[-1][1].heartbeat.running_vms != 1:
        assert time.monotonic() < deadline, "no heartbeat with 1 VM"
        time.sleep(0.05)
    # DELETE while running is refused.
    st = mgr.command("host1", "DELETE", "vm1")
    assert st.code == FAILED_PRECONDITION and "stop it first" in st.message
    # Pause: the counter stops; resume: it goes on.
    m = mgr.mark()
    ok(mgr.command("host1", "PAUSE", "vm1"))
    state_of(mgr, "vm1", C().VM_RUN_STATE_PAUSED, m)
    time.sleep(0.2)
    n = counts(console(run, "vm1"))
    time.sleep(0.5)
    assert counts(console(run, "vm1")) == n, "guest ran while paused"
    ok(mgr.command("host1", "PAUSE", "vm1"))  # already paused: OK
    ok(mgr.command("host1", "RESUME", "vm1"))
    wait_console(run, "vm1", lambda t: counts(t) >= n + 2)
    # Graceful stop: the test guest ignores the power button, so the VMM
    # stops it hard at its timeout; the answer comes once it has exited,
    # within the command's timeout_ms.
    m = mgr.mark()
    t0 = time.monotonic()
    ok(mgr.command("host1", "STOP", "vm1", timeout_ms=2000))
    took = time.monotonic() - t0
    # The VMM stops it at 3/4 of the budget; the answer is within it.
    assert 1.4 <= took < 2.5, took
    assert not os.path.exists("/proc/%d" % pid) or \
        open("/proc/%d/stat" % pid).read().split()[2] == "Z"
    rep = state_of(mgr, "vm1", C().VM_RUN_STATE_STOPPED, m)
    assert rep.stop_reason, rep
    ok(mgr.command("host1", "STOP", "vm1"))  # already stopped: OK
    # Start again and stop hard.
    m = mgr.mark()
    ok(mgr.command("host1", "START", "vm1"))
    pid2 = state_of(mgr, "vm1", C().VM_RUN_STATE_RUNNING, m).pid
    assert pid2 != pid
    m = mgr.mark()
    ok(mgr.command("host1", "STOP_HARD", "vm1"))
    rep = state_of(mgr, "vm1", C().VM_RUN_STATE_STOPPED, m)
    assert rep.stop_reason
    ok(mgr.command("host1", "DELETE", "vm1"))
    assert not (run / "vms" / "vm1").exists()
    assert a.alive()


def test_guest_power_off_reported(env, mgr):
    agent, spec, run = env
    agent()
    mgr.wait_body("register")
    create(mgr, "vm2", spec("count=50,limit=10"))
    m = mgr.mark()
    ok(mgr.command("host1", "START", "vm2"))
    rep = state_of(mgr, "vm2", C().VM_RUN_STATE_STOPPED, m, timeout=15)
    assert "guest powered off" in rep.stop_reason, rep.stop_reason
    assert rep.pid == 0
    # The VM can be started again after the guest stopped it.
    m = mgr.mark()
    ok(mgr.command("host1", "START", "vm2"))
    state_of(mgr, "vm2", C().VM_RUN_STATE_STOPPED, m, timeout=15)


def test_vmm_killed_reported(env, mgr):
    agent, spec, run = env
    agent()
    mgr.wait_body("register")
    create(mgr, "vm3", spec())
    m = mgr.mark()
    ok(mgr.command("host1", "START", "vm3"))
    pid = state_of(mgr, "vm3", C().VM_RUN_STATE_RUNNING, m).pid
    m = mgr.mark()
    os.kill(pid, signal.SIGKILL)
    rep = state_of(mgr, "vm3", C().VM_RUN_STATE_STOPPED, m)
    assert "killed by signal 9" in rep.stop_reason, rep.stop_reason


def test_agent_restart_adopts_running_vm(env, mgr):
    agent, spec, run = env
    a = agent()
    mgr.wait_body("register")
    for vm in ("vm4", "vm5"):
        create(mgr, vm, spec())
    # A stop line of an older run must not be taken for this run's reason.
    with open(run / "vms" / "vm4" / "vmm.log", "w") as f:
        f.write('... msg="vm stopped" vm=vm4 reason="stale old run"\n')
    m = mgr.mark()
    ok(mgr.command("host1", "START", "vm4"))
    pid = state_of(mgr, "vm4", C().VM_RUN_STATE_RUNNING, m).pid
    # The agent (root) started it: it jailed itself in the VM's directory.
    uid = jail_uid(pid) if os.geteuid() == 0 else None
    if uid is not None:
        assert root_listing(pid) == expected_listing(str(run / "vms" / "vm4"))
    a.kill9()
    assert os.path.exists("/proc/%d" % pid), "the VMM died with the agent"
    n = counts(console(run, "vm4"))
    wait_console(run, "vm4", lambda t: counts(t) >= n + 2)
    m = mgr.mark()
    a2 = agent()
    rep = state_of(mgr, "vm4", C().VM_RUN_STATE_RUNNING, m)
    assert rep.pid == pid
    if uid is not None:
        assert jail_uid(pid) == uid  # adopted as it was
    rep = mgr.wait_body("vm_state", lambda r: r.vm_id == "vm5",
                        start=m).vm_state
    assert rep.state == C().VM_RUN_STATE_STOPPED
    hs = mgr.wait_body("host_stats", lambda h: any(
        v.vm_id == "vm4" and v.pid == pid and v.rss_bytes for v in h.vms),
        start=m, timeout=5)
    assert hs
    # Reconcile: START of the running VM is OK and keeps the process.
    ok(mgr.command("host1", "START", "vm4"))
    assert os.path.exists("/proc/%d" % pid)
    # The adopted VMM is still supervised: its exit is noticed (killed: no
    # exit status and no line of its own, so no borrowed reason either).
    m = mgr.mark()
    os.kill(pid, signal.SIGKILL)
    rep = state_of(mgr, "vm4", C().VM_RUN_STATE_STOPPED, m)
    assert rep.stop_reason == "canopy-vmm (pid %d) exited" % pid, rep
    assert a2.alive()


def test_vmm_uids_one_per_vm_and_kept(env, mgr):
    """--vmm-uids: each VM's VMM is jailed as its own uid from the range,
    the same one when it starts again, also after an agent restart; with
    the range used up a START is refused, saying why."""
    if os.geteuid() != 0:
        pytest.skip("SKIP (needs root): VMMs jail themselves only as root")
    agent, spec, run = env
    first = 1879000200
    a = agent("--vmm-uids", "%d-%d" % (first, first + 1))
    mgr.wait_body("register")
    pids = {}
    for vm in ("u1", "u2", "u3"):
        create(mgr, vm, spec())
    for vm in ("u1", "u2"):
        m = mgr.mark()
        ok(mgr.command("host1", "START", vm))
        pids[vm] = state_of(mgr, vm, C().VM_RUN_STATE_RUNNING, m).pid
    uids = {vm: jail_uid(pid) for vm, pid in pids.items()}
    assert sorted(uids.values()) == [first, first + 1], uids
    st = mgr.command("host1", "START", "u3")
    assert st.code != 0 and "no free VMM uid" in st.message, st
    # u1 stopped: u3 may have its uid only while u1 does not run; u1
    # keeps its own when it runs again after an agent restart.
    m = mgr.mark()
    ok(mgr.command("host1", "STOP_HARD", "u1"))
    state_of(mgr, "u1", C().VM_RUN_STATE_STOPPED, m)
    a.kill9()
    agent("--vmm-uids", "%d-%d" % (first, first + 1))
    mgr.wait_body("register", start=m)
    m = mgr.mark()
    ok(mgr.command("host1", "START", "u1"))
    pid = state_of(mgr, "u1", C().VM_RUN_STATE_RUNNING, m).pid
    assert jail_uid(pid) == uids["u1"]
    assert jail_uid(pids["u2"]) == uids["u2"]  # adopted as it was
    st = mgr.command("host1", "START", "u3")
    assert st.code != 0 and "no free VMM uid" in st.message, st


def test_agent_sigterm_leaves_vms_running(env, mgr):
    agent, spec, run = env
    a = agent()
    mgr.wait_body("register")
    create(mgr, "vm6", spec())
    m = mgr.mark()
    ok(mgr.command("host1", "START", "vm6"))
    pid = state_of(mgr, "vm6", C().VM_RUN_STATE_RUNNING, m).pid
    a.stop()
    assert a.proc.returncode == 0
    time.sleep(0.2)
    assert os.path.exists("/proc/%d" % pid)
    m = mgr.mark()
    agent()
    assert state_of(mgr, "vm6", C().VM_RUN_STATE_RUNNING, m).pid == pid


def test_start_errors_carry_vmm_message(env, mgr):
    agent, spec, run = env
    a = agent()
    mgr.wait_body("register")
    ok(mgr.command("host1", "CREATE", "bad1",
                   spec(kernel="/nonexistent/kernel.elf")))
    st = mgr.command("host1", "START", "bad1")
    assert st.code == FAILED_PRECONDITION, st
    assert "kernel /nonexistent/kernel.elf: No such file" in st.message
    assert "exited with status 2" in st.message
    # A guest that refuses its command line exits at once: reported too.
    create(mgr, "bad2", spec(cmdline="nosuchwork"))
    m = mgr.mark()
    st = mgr.command("host1", "START", "bad2")
    # The VM did start (canopy-vmm exits 0): OK, whether the agent saw it
    # running or only its exit ("the VM started and has already stopped").
    assert st.code == 0, st
    why = state_of(mgr, "bad2", C().VM_RUN_STATE_STOPPED, m).stop_reason
    assert "guest powered off" in why, why
    assert "unknown workload" in console(run, "bad2") or \
        "exit 2" in console(run, "bad2"), console(run, "bad2")
    assert a.alive()


def test_disks_created_by_the_agent_reach_the_guest(env, mgr, tmp_path):
    """CREATE makes a sparse disk in the VM's directory and the VMM gets it
    (--disk, serial and read-only passed through): the guest writes its
    pattern there; a read-only second disk is offered as such."""
    agent, spec, run = env
    agent()
    mgr.wait_body("register")
    ro = tmp_path / "ro.img"
    with open(ro, "wb") as f:
        f.truncate(1 << 20)
    s = spec("blk,mode=verify,mib=1,seed=5")
    s.memory_mib = 128
    s.disks.add(path="disk0.img", size_bytes=8 << 20, serial="agentd0")
    s.disks.add(path=str(ro), readonly=True)
    create(mgr, "vmd", s)
    disk = run / "vms" / "vmd" / "disk0.img"
    assert disk.stat().st_size == 8 << 20
    m = mgr.mark()
    st = mgr.command("host1", "START", "vmd")
    if st.code == 0:
        why = state_of(mgr, "vmd", C().VM_RUN_STATE_STOPPED, m,
                       timeout=30).stop_reason
    else:
        why = st.message  # the guest finished before the agent saw it run
    text = console(run, "vmd")
    assert "guest powered off" in why, (why, text[-1000:])
    assert 'serial "agentd0"' in text, text[-1000:]
    assert "blk: read ok sectors 2048" in text, text[-1000:]
    hi = (5 << 40)
    with open(disk, "rb") as f:
        data = f.read(1 << 20)
    words = struct.unpack("<%dQ" % (len(data) // 8), data)
    assert all(w == hi ^ (8 * i) for i, w in enumerate(words))
    # The read-only disk: the guest sees VIRTIO_BLK_F_RO and refuses.
    s = spec("blk,mode=write,mib=1,dev=0")
    s.disks.add(path=str(ro), readonly=True)
    create(mgr, "vmro", s)
    m = mgr.mark()
    st = mgr.command("host1", "START", "vmro")
    if st.code == 0:
        state_of(mgr, "vmro", C().VM_RUN_STATE_STOPPED, m, timeout=30)
    assert "the disk is read-only" in console(run, "vmro")
    assert open(ro, "rb").read() == bytes(1 << 20)


def test_stop_without_control_socket_kills(env, mgr):
    """A VMM whose control socket is gone is still stopped: SIGKILL through
    its pidfd. PAUSE then fails with the reason."""
    agent, spec, run = env
    agent()
    mgr.wait_body("register")
    create(mgr, "vm7", spec())
    m = mgr.mark()
    ok(mgr.command("host1", "START", "vm7"))
    pid = state_of(mgr, "vm7", C().VM_RUN_STATE_RUNNING, m).pid
    os.unlink(run / "vms" / "vm7" / "control.sock")
    st = mgr.command("host1", "PAUSE", "vm7")
    assert st.code != 0 and "cannot reach canopy-vmm" in st.message, st
    m = mgr.mark()
    ok(mgr.command("host1", "STOP", "vm7", timeout_ms=5000))
    rep = state_of(mgr, "vm7", C().VM_RUN_STATE_STOPPED, m)
    assert "killed by signal 9" in rep.stop_reason, rep.stop_reason
    assert not os.path.exists("/proc/%d" % pid)


def test_datastore_disk_end_to_end(build_dir, tmp_path, mgr):
    """A disk on the clustered datastore: the agent creates the file, gives
    the VMM a heartbeat slot, the guest writes its pattern into the file;
    a second VM on the same file is refused by the file's lock while the
    first runs; the slot a running VMM holds survives an agent restart."""
    ds = os.path.join(str(build_dir), "bin", "canopy-ds")
    img = tmp_path / "ds.img"
    subprocess.run([ds, "format", str(img), "--name", "ds1", "--size",
                    "64M", "--hb-interval", "200", "--hb-timeout", "4000"],
                   check=True, capture_output=True)
    run = tmp_path / "run"
    extra = ["--datastore", "ds1=%s" % img, "--ds-slots", "20-21",
             "--stats-interval", "1"]
    agents = [Agent(build_dir, run, mgr.endpoint, "host1", extra)]
    kernel = os.path.join(str(build_dir), "guest", "canopy-testguest.elf")

    def spec(cmdline, size):
        s = C().VmSpec(name="v", cpus=1, memory_mib=128, cmdline=cmdline,
                       kernel=kernel)
        s.disks.add(path="ds1:vm/disk0", size_bytes=size, serial="dsd0")
        return s

    try:
        mgr.wait_body("register")
        create(mgr, "dsa", spec("blk,mode=verify,mib=1,seed=9", 4 << 20))
        m = mgr.mark()
        st = mgr.command("host1", "START", "dsa")
        if st.code == 0:
            why = state_of(mgr, "dsa", C().VM_RUN_STATE_STOPPED, m,
                           timeout=30).stop_reason
        else:
            why = st.message
        text = console(run, "dsa")
        assert "guest powered off" in why, (why, text[-1000:])
        assert "blk: read ok sectors 2048" in text, text[-1000:]
        assert not (run / "vms" / "dsa" / "ds-slots").exists()
        out = tmp_path / "export.img"
        subprocess.run([ds, "export", str(img), "vm/disk0", str(out),
                        "--host-id", "40"], check=True, capture_output=True)
        data = out.read_bytes()[:1 << 20]
        words = struct.unpack("<%dQ" % (len(data) // 8), data)
        assert all(w == (9 << 40) ^ (8 * i) for i, w in enumerate(words))

        # A VM that keeps the file open, then a second one on the file.
        create(mgr, "dsb", spec("count=50", 0))
        create(mgr, "dsc", spec("count=50", 0))
        m = mgr.mark()
        ok(mgr.command("host1", "START", "dsb"))
        pid = state_of(mgr, "dsb", C().VM_RUN_STATE_RUNNING, m).pid
        slots = (run / "vms" / "dsb" / "ds-slots").read_text().split()
        assert slots[0] == "0" and slots[1] in ("20", "21"), slots
        st = mgr.command("host1", "START", "dsc")
        assert st.code == FAILED_PRECONDITION, st
        assert "locked by host %s" % slots[1] in st.message, st.message
        # Restart the agent: the running VMM keeps its slot, so the only
        # other slot is all there is for a START, and it is refused (the
        # lock), not given the running VMM's slot.
        agents[0].kill9()
        m = mgr.mark()
        agents.append(Agent(build_dir, run, mgr.endpoint, "host1", extra))
        assert state_of(mgr, "dsb", C().VM_RUN_STATE_RUNNING, m).pid == pid
        st = mgr.command("host1", "START", "dsc")
        assert st.code == FAILED_PRECONDITION, st
        assert "locked by host %s" % slots[1] in st.message, st.message
        m = mgr.mark()
        ok(mgr.command("host1", "STOP_HARD", "dsb"))
        state_of(mgr, "dsb", C().VM_RUN_STATE_STOPPED, m)
        assert not (run / "vms" / "dsb" / "ds-slots").exists()
    finally:
        for a in agents:
            a.stop()
        for d in ("dsa", "dsb", "dsc"):
            for p in list_pids(run / "vms" / d):
                os.kill(p, signal.SIGKILL)
