"""vMotion failures at each phase of the stream, VMM to VMM: the link
breaks (a veth between two network namespaces goes down) or the
destination VMM is killed while the source is held at a test pause point
(CANOPY_MIG_TEST_PAUSE=POINT:MS, docs/migration-protocol.md) in the header
exchange, pre-copy, stop-and-copy or after the destination's ACK. Before
COMMIT the VM keeps running on the source, once, its memory intact, and the
error names the phase; after COMMIT (source killed, or the link lost after
COMMIT reached the destination) it runs on the destination only.
Waits for the peer are cut to 1.5 s (CANOPY_MIG_TEST_IO_TIMEOUT_MS) so each
case takes seconds."""
import os
import re
import subprocess
import threading
import time

import pytest

from canopy_testlib import protos
from canopy_testlib.ports import free_port
from canopy_testlib.vmm import Vmm

pytestmark = pytest.mark.kvm

PAUSE_MS = 1500  # how long the source or destination waits at the point
IO_MS = 1500  # how long either end waits for the peer's next record


def rounds(text):
    return re.findall(r"^dirty: round (\d+) pages (\d+) writes (\d+) (ok|"
                      r"corrupt \d+)$", text, re.M)


class PhaseVmm(Vmm):
    """A canopy-vmm with test environment variables, optionally run in a
    network namespace (its control socket is a path: reachable from
    here)."""

    def __init__(self, build_dir, tmp_path, *args, name="vm", ns=None,
                 env=None):
        self.binary = os.path.join(str(build_dir), "bin", "canopy-vmm")
        self.console = os.path.join(str(tmp_path), name + ".console")
        self.log = os.path.join(str(tmp_path), name + ".log")
        self.control_path = os.path.join(str(tmp_path), name + ".sock")
        cmd = [self.binary, "--name", name, "--serial",
               "file:" + self.console, "--control", self.control_path]
        cmd += [str(a) for a in args]
        if ns:
            cmd = ["ip", "netns", "exec", ns] + cmd
        self.cmd = cmd
        self.logf = open(self.log, "wb")
        full = dict(os.environ)
        full.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=full)


def ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), capture_output=True,
                          text=True, check=check)


def link_up(ns):
    """The destination's end up again, and carrying traffic: neighbour
    entries that failed while it was down are dropped (a FAILED one made
    the next test's connect fail with "No route to host" once in CI), and
    a ping must come back."""
    ip("-n", ns["dst"], "link", "set", "eth0", "up", check=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = ip("-n", ns["src"], "route", "get", ns["net"] + ".2",
                 check=False)
        if out.returncode == 0 and "LOWER_UP" in ip(
                "-n", ns["src"], "link", "show", "eth0").stdout:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the veth did not come back up")
    for side in ("src", "dst"):
        ip("-n", ns[side], "neigh", "flush", "dev", "eth0", check=False)
    while time.monotonic() < deadline:
        if subprocess.run(["ip", "netns", "exec", ns["src"], "ping", "-c",
                           "1", "-W", "1", ns["net"] + ".2"],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0:
            return
    raise AssertionError("the veth is up but carries no traffic")


@pytest.fixture(scope="module")
def nspair():
    """Two namespaces joined by one veth pair, 10.78.X.1 and .2: shared by
    every link case of this file."""
    if os.geteuid() != 0:
        pytest.skip("SKIP (needs root): network namespaces")
    tag = free_port()
    net = "10.78.%d" % (tag % 250)
    made = {"src": "cnyph%d-a" % tag, "dst": "cnyph%d-b" % tag,
            "net": net}
    try:
        for side in ("src", "dst"):
            ip("netns", "add", made[side])
            ip("-n", made[side], "link", "set", "lo", "up")
        ip("-n", made["src"], "link", "add", "eth0", "type", "veth", "peer",
           "name", "eth0", "netns", made["dst"])
        for i, side in enumerate(("src", "dst"), 1):
            ip("-n", made[side], "addr", "add", "%s.%d/30" % (net, i), "dev",
               "eth0")
            ip("-n", made[side], "link", "set", "eth0", "up")
        yield made
    finally:
        for side in ("src", "dst"):
            if side in made:
                ip("netns", "del", made[side], check=False)


@pytest.fixture
def vms(build_dir, tmp_path):
    started = []

    def start(*args, **kw):
        vm = PhaseVmm(build_dir, tmp_path, *args, **kw)
        started.append(vm)
        return vm

    yield start
    for vm in started:
        vm.kill()


def wait_log(vm, pattern, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, vm.log_text())
        if m:
            return m
        if vm.proc.poll() is not None:
            break
        time.sleep(0.01)
    raise AssertionError("no %r in the log:\n%s" % (pattern,
                                                    vm.log_text()[-3000:]))


def start_pair(vms, guest, point, host="127.0.0.1", ns=None, dst_io=IO_MS):
    """A source running the dirtier held at `point` (a src-* point on the
    source, a dst-* point on the destination) and a destination listening
    on host; both with short peer waits."""
    env = {"CANOPY_MIG_TEST_IO_TIMEOUT_MS": str(IO_MS)}
    pause = {"CANOPY_MIG_TEST_PAUSE": "%s:%d" % (point, PAUSE_MS)}
    src = vms("--kernel", guest, "--cmdline", "dirty=16,rate=2000,verify=100",
              "--memory", "64", name="src", ns=ns and ns["src"],
              env=dict(env, **(pause if point.startswith("src") else {})))
    ctl = src.wait_control()
    denv = {"CANOPY_MIG_TEST_IO_TIMEOUT_MS": str(dst_io)}
    dst = vms("--incoming", "tcp:%s:0" % host, "--memory", "64",
              name="dst", ns=ns and ns["dst"],
              env=dict(denv, **(pause if point.startswith("dst") else {})))
    port = int(wait_log(dst, r"listen=[0-9.]+:(\d+)")[1])
    src.wait_console(lambda t: len(rounds(t)) >= 2, what="two verify rounds")
    return src, ctl, dst, "tcp:%s:%d" % (host, port)


def migrate_async(vm, address, **kw):
    """migrate_send on a second control connection; the reply in out."""
    out = {}

    def run():
        c = vm.wait_control()
        c.sock.settimeout(60)
        try:
            out["rep"] = c.call(
                migrate_send=protos.vmm().VmmMigrateSendRequest(
                    address=address, **kw))
        except (ConnectionError, OSError) as e:  # the source was killed
            out["err"] = e

    t = threading.Thread(target=run)
    t.start()
    return t, out


def wait_point(vm, point):
    wait_log(vm, r"migration test pause point\" point=%s " % point)


def still_runs_on_source(src, ctl, rep, phase, words):
    assert rep.status.code != 0, "the migration succeeded"
    msg = rep.status.message
    assert "(phase %s)" % phase in msg, msg
    assert re.search(words, msg), msg
    st = ctl.status()
    assert st.state == protos.common().VM_RUN_STATE_RUNNING
    assert st.migration.phase == "failed"
    n = len(rounds(src.console_text()))
    src.wait_console(lambda t: len(rounds(t)) >= n + 2,
                     what="the guest going on at the source")
    assert "CORRUPT" not in src.console_text()
    assert all(r[3] == "ok" for r in rounds(src.console_text()))


def destination_never_ran(dst):
    rc = dst.wait_exit(3 * IO_MS / 1000 + 10)
    assert rc == 2, "destination exit %d:\n%s" % (rc, dst.log_text())
    assert "migrated VM running" not in dst.log_text()
    assert dst.console_text() == ""


# (pause point, phase named in the error, what the error says)
LINK_CASES = [
    ("src-header", "header", r"header exchange with .*: Connection timed "
     r"out"),
    ("src-precopy", "precopy", r"sending round \d+: Connection timed out"),
    ("src-paused", "stop-and-copy", r"no acknowledgement from the "
     r"destination: Connection timed out"),
]


@pytest.mark.root
@pytest.mark.parametrize("point,phase,words", LINK_CASES,
                         ids=[c[0] for c in LINK_CASES])
def test_link_down_before_commit(nspair, vms, guest, point, phase, words):
    """The destination's link goes down while the source is held at the
    point and stays down past the source's peer wait: the source fails
    the migration naming the phase and its VM runs on."""
    src, ctl, dst, addr = start_pair(vms, guest, point,
                                     host=nspair["net"] + ".2", ns=nspair)
    t, out = migrate_async(src, addr)
    try:
        wait_point(src, point)
        ip("-n", nspair["dst"], "link", "set", "eth0", "down")
        t.join(30)
        assert not t.is_alive(), "no reply from the source"
    finally:
        link_up(nspair)
    still_runs_on_source(src, ctl, out["rep"], phase, words)
    destination_never_ran(dst)


CODE_UNKNOWN = 2  # lib/err.h CN_UNKNOWN: an in-doubt migrate_send
CODE_FAILED_PRECONDITION = 9


def resolve(ctl, resume):
    return ctl.call(migrate_resolve=protos.vmm().VmmMigrateResolveRequest(
        resume=resume))


def in_doubt(src, ctl, rep):
    """The source answered migrate_send "in doubt" and holds the VM
    paused: status says so, the guest does not move, other lifecycle
    requests are refused with the in-doubt sentence."""
    assert rep.status.code == CODE_UNKNOWN, rep.status
    assert rep.migrated.in_doubt, rep
    assert "did not confirm it runs the VM" in rep.migrated.in_doubt_reason
    assert "migration in doubt" in rep.status.message, rep.status.message
    st = ctl.status()
    assert st.state == protos.common().VM_RUN_STATE_PAUSED
    assert st.migration.phase == "in_doubt", st.migration
    assert "did not confirm" in st.migration.error
    for op in ("resume", "stop"):
        r = ctl.call(**{op: getattr(protos.vmm(), "Vmm%sRequest"
                                    % op.capitalize())()})
        assert r.status.code == CODE_FAILED_PRECONDITION, r.status
        assert "migration in doubt; waiting for migrate_resolve" in \
            r.status.message, r.status.message
    n = len(rounds(src.console_text()))
    time.sleep(0.6)  # the guest verifies every 100 ms when it runs
    assert len(rounds(src.console_text())) == n, "the guest ran"
    return n


@pytest.mark.root
def test_link_down_after_commit_reached_destination(nspair, vms, guest):
    """The destination is held after its ACK; the source's COMMIT is
    already in its socket when the link goes down: the destination runs
    the VM; the source, its STARTED lost, cannot know it and holds the
    VM paused "in doubt" until migrate_resolve resume=false, then stops
    as migrated."""
    src, ctl, dst, addr = start_pair(vms, guest, "dst-ack",
                                     host=nspair["net"] + ".2", ns=nspair)
    before = src.console_text()
    t, out = migrate_async(src, addr)
    try:
        try:
            wait_point(dst, "dst-ack")
        except AssertionError as e:
            raise AssertionError("%s\nsource:\n%s" % (e, src.log_text()))
        ip("-n", nspair["dst"], "link", "set", "eth0", "down")
        t.join(30)
        assert not t.is_alive(), "no reply from the source"
    finally:
        link_up(nspair)
    in_doubt(src, ctl, out["rep"])
    assert "the destination did not confirm it runs the VM" in \
        src.log_text()
    arrived(dst, before)
    rep = resolve(ctl, False)
    assert rep.status.code == 0, rep.status.message
    assert src.wait_exit(10) == 0
    assert re.search(r"vm stopped\".*reason=\"migrated\"", src.log_text())


@pytest.mark.root
def test_link_down_before_commit_arrived_resolve_resume(nspair, vms, guest):
    """The link goes down after the destination's ACK, before COMMIT is
    written, and stays down past the destination's wait for COMMIT: the
    destination exits without running the VM; the source (COMMIT written,
    no STARTED) holds it paused in doubt; migrate_resolve resume=true runs
    it on at the source, its rounds continuing where they stopped."""
    src, ctl, dst, addr = start_pair(vms, guest, "src-ack",
                                     host=nspair["net"] + ".2", ns=nspair)
    t, out = migrate_async(src, addr)
    try:
        wait_point(src, "src-ack")
        ip("-n", nspair["dst"], "link", "set", "eth0", "down")
        destination_never_ran(dst)
        t.join(30)
        assert not t.is_alive(), "no reply from the source"
    finally:
        link_up(nspair)
    assert "no COMMIT from the source" in dst.log_text(), dst.log_text()
    n = in_doubt(src, ctl, out["rep"])
    last = int(rounds(src.console_text())[-1][0])
    rep = resolve(ctl, True)
    assert rep.status.code == 0, rep.status.message
    st = ctl.status()
    assert st.state == protos.common().VM_RUN_STATE_RUNNING
    assert st.migration.phase == "failed"
    assert "resumed on this host" in st.migration.error
    src.wait_console(lambda t: len(rounds(t)) >= n + 2,
                     what="the guest going on at the source")
    after = rounds(src.console_text())
    assert int(after[n][0]) == last + 1, (last, after[n:])  # no reset
    assert "CORRUPT" not in src.console_text()
    assert all(r[3] == "ok" for r in after), after
    # Resolved: a second resolve has nothing to act on.
    rep = resolve(ctl, False)
    assert rep.status.code == CODE_FAILED_PRECONDITION, rep.status
    assert src.proc.poll() is None


def ds_tool(build_dir, *args):
    r = subprocess.run([os.path.join(str(build_dir), "bin", "canopy-ds")] +
                       [str(a) for a in args], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def blk_seconds(text):
    return [int(n) for n in re.findall(r"^blk: seqwrite second (\d+)",
                                       text, re.M)]


def ds_in_doubt(nspair, vms, guest, build_dir, tmp_path):
    """A guest (host 3) writing its datastore disk; the link goes down
    after the destination's ACK (host 4 took the file's lock), COMMIT is
    lost: the destination exits without running, the source is in doubt
    with its lock released and the guest writing nothing. Returns (img,
    src, ctl)."""
    if not os.path.exists(os.path.join(str(build_dir), "bin", "canopy-ds")):
        pytest.skip("SKIP: bin/canopy-ds not built")
    img = tmp_path / "ds.img"
    ds_tool(build_dir, "format", img, "--name", "lab", "--size", "128M",
            "--hb-interval", "200", "--hb-timeout", "2000")
    ds_tool(build_dir, "create", img, "vm1/disk0", "--size", "16M",
            "--host-id", "9")
    env = {"CANOPY_MIG_TEST_IO_TIMEOUT_MS": str(IO_MS)}
    src = vms("--kernel", guest, "--memory", "64", "--cmdline",
              "blk,mode=seqwrite,mib=4,bs=4096,secs=600,seed=2",
              "--disk", "ds=%s:vm1/disk0,host=3" % img, name="src",
              ns=nspair["src"], env=dict(
                  env, CANOPY_MIG_TEST_PAUSE="src-ack:%d" % PAUSE_MS))
    ctl = src.wait_control()
    dst = vms("--incoming", "tcp:%s.2:0" % nspair["net"], "--memory", "64",
              "--disk", "ds=%s:vm1/disk0,host=4" % img, name="dst",
              ns=nspair["dst"], env=env)
    port = int(wait_log(dst, r"listen=[0-9.]+:(\d+)")[1])
    src.wait_console(lambda t: len(blk_seconds(t)) >= 2,
                     what="the guest writing")
    t, out = migrate_async(src, "tcp:%s.2:%d" % (nspair["net"], port))
    try:
        wait_point(src, "src-ack")
        ip("-n", nspair["dst"], "link", "set", "eth0", "down")
        destination_never_ran(dst)
        t.join(30)
        assert not t.is_alive(), "no reply from the source"
    finally:
        link_up(nspair)
    assert "datastore lock taken over" in dst.log_text()
    rep = out["rep"]
    assert rep.status.code == CODE_UNKNOWN and rep.migrated.in_doubt, rep
    assert "datastore lock released for the hand-over" in src.log_text()
    n = len(blk_seconds(src.console_text()))
    time.sleep(1.5)  # the guest reports each second it writes
    assert len(blk_seconds(src.console_text())) == n, "it ran in doubt"
    return img, src, ctl


@pytest.mark.root
def test_in_doubt_resume_takes_the_datastore_lock_back(nspair, vms, guest,
                                                       build_dir, tmp_path):
    """In doubt with a datastore disk (ds_in_doubt): migrate_resolve
    resume=true takes the lock back for host 3 before the guest runs, and
    the guest writes on without an I/O error."""
    img, src, ctl = ds_in_doubt(nspair, vms, guest, build_dir, tmp_path)
    rep = resolve(ctl, True)
    assert rep.status.code == 0, rep.status.message
    assert "datastore lock taken back" in src.log_text()
    m = re.search(r"^1\s+(\d+)\s", ds_tool(build_dir, "locks", img), re.M)
    assert m and int(m[1]) == 3, m
    n = len(blk_seconds(src.console_text()))
    src.wait_console(lambda t: len(blk_seconds(t)) >= n + 2,
                     what="the guest writing on at the source")
    assert "I/O error" not in src.console_text(), src.console_text()


@pytest.mark.root
def test_in_doubt_power_off_then_cold_start_takes_the_lock(
        nspair, vms, guest, build_dir, tmp_path):
    """In doubt with a datastore disk (ds_in_doubt): migrate_resolve
    power_off stops the source as powered off without taking the lock
    back; a cold start of the VM on host 5 then gets the file's lock (the
    dead destination's lease is broken once its heartbeat timed out) and
    the guest writes without an I/O error."""
    img, src, ctl = ds_in_doubt(nspair, vms, guest, build_dir, tmp_path)
    rep = ctl.call(migrate_resolve=protos.vmm().VmmMigrateResolveRequest(
        power_off=True))
    assert rep.status.code == 0, rep.status.message
    assert src.wait_exit(10) == 0
    assert re.search(r"vm stopped\".*reason=\"powered off", src.log_text())
    assert "datastore lock taken back" not in src.log_text()
    again = vms("--kernel", guest, "--memory", "64", "--cmdline",
                "blk,mode=seqwrite,mib=4,bs=4096,secs=600,seed=3",
                "--disk", "ds=%s:vm1/disk0,host=5" % img, name="again",
                ns=nspair["src"])
    again.wait_console(lambda t: len(blk_seconds(t)) >= 2, timeout=30,
                       what="the cold-started guest writing")
    assert "I/O error" not in again.console_text(), again.console_text()
    m = re.search(r"^1\s+(\d+)\s", ds_tool(build_dir, "locks", img), re.M)
    assert m and int(m[1]) == 5, m


def test_migrate_resolve_nothing_in_doubt(vms, guest):
    """migrate_resolve with no migration at all, and after one that
    failed before COMMIT: a clear refusal, and the VM runs on unchanged."""
    src = vms("--kernel", guest, "--cmdline", "dirty=16,rate=2000,verify=100",
              "--memory", "64", name="src")
    ctl = src.wait_control()
    src.wait_console(lambda t: len(rounds(t)) >= 1, what="a verify round")
    for resume in (True, False):
        rep = resolve(ctl, resume)
        assert rep.status.code == CODE_FAILED_PRECONDITION, rep.status
        assert rep.status.message == (
            "migrate_resolve: no migration is in doubt here (no migration "
            "ran); nothing changed"), rep.status.message
    port = free_port()  # nobody listens: fails while connecting
    rep = ctl.call(migrate_send=protos.vmm().VmmMigrateSendRequest(
        address="tcp:127.0.0.1:%d" % port))
    assert rep.status.code != 0 and not rep.migrated.in_doubt
    rep = resolve(ctl, False)
    assert rep.status.code == CODE_FAILED_PRECONDITION, rep.status
    assert "no migration is in doubt here (failed)" in rep.status.message
    assert ctl.status().state == protos.common().VM_RUN_STATE_RUNNING
    n = len(rounds(src.console_text()))
    src.wait_console(lambda t: len(rounds(t)) >= n + 2,
                     what="the guest going on")
    assert src.proc.poll() is None


def arrived(dst, before_text):
    """The VM runs at the destination and its run goes on uncorrupted."""
    ctl = dst.wait_control()
    assert ctl.status().state == protos.common().VM_RUN_STATE_RUNNING
    n0 = len(rounds(dst.console_text()))
    dst.wait_console(lambda t: len(rounds(t)) >= n0 + 2,
                     what="two verify rounds after arrival")
    after = rounds(dst.console_text())
    assert "CORRUPT" not in dst.console_text()
    assert all(r[3] == "ok" for r in after), after
    assert int(after[-1][0]) > int(rounds(before_text)[-1][0])


KILL_CASES = [
    ("src-header", "header", r"header exchange with .*: (Connection reset "
     r"by peer|Broken pipe)"),
    ("src-paused", "stop-and-copy", r"(sending the final state: (Connection"
     r" reset by peer|Broken pipe)|no acknowledgement from the destination:"
     r" Connection reset by peer)"),
    ("src-ack", "commit", r"the destination went away after its ACK"),
]


@pytest.mark.parametrize("point,phase,words", KILL_CASES,
                         ids=[c[0] for c in KILL_CASES])
def test_destination_killed_before_commit(vms, guest, point, phase, words):
    """The destination VMM is killed while the source is held at the
    point (src-ack: it has the destination's ACK, COMMIT not sent): the
    source sees the dead peer, does not commit, and its VM runs on."""
    src, ctl, dst, addr = start_pair(vms, guest, point)
    t, out = migrate_async(src, addr)
    wait_point(src, point)
    dst.kill()
    t.join(30)
    assert not t.is_alive(), "no reply from the source"
    still_runs_on_source(src, ctl, out["rep"], phase, words)
    with open(dst.log, "rb") as f:
        assert b"migrated VM running" not in f.read()


def test_source_killed_after_commit(vms, guest):
    """The source VMM is killed just after it sent COMMIT: the VM runs on
    the destination, its memory intact."""
    src, ctl, dst, addr = start_pair(vms, guest, "src-committed")
    before = src.console_text()
    t, out = migrate_async(src, addr)
    wait_point(src, "src-committed")
    src.kill()
    t.join(10)
    assert "rep" not in out, out["rep"]  # killed before it could answer
    arrived(dst, before)


def test_pause_point_unset_has_no_effect(vms, guest, tmp_path):
    """Without the variables the stream runs straight through and the log
    names no pause point; the destination made its run marker in its
    control socket's directory."""
    src = vms("--kernel", guest, "--cmdline", "dirty=16,rate=2000,verify=100",
              "--memory", "64", name="src")
    src.wait_control()
    dst = vms("--incoming", "tcp:127.0.0.1:0", "--memory", "64", name="dst")
    port = int(wait_log(dst, r"listen=127\.0\.0\.1:(\d+)")[1])
    src.wait_console(lambda t: len(rounds(t)) >= 2, what="two verify rounds")
    t, out = migrate_async(src, "tcp:127.0.0.1:%d" % port)
    t.join(30)
    assert out["rep"].status.code == 0, out["rep"].status.message
    assert "test pause point" not in src.log_text() + dst.log_text()
    assert (tmp_path / "migrate-ran").is_file()
    m = wait_log(src, r"migration switchover\".*steps=\"([^\"]*)\"")
    steps = dict(kv.split("=") for kv in m[1].split())
    for name in ("pause", "dirty-log", "cpu.0", "kvm", "send", "ack",
                 "commit", "started"):
        assert name in steps, steps
    m = wait_log(dst, r"migrated VM running\".*steps=\"([^\"]*)\"")
    assert "run=" in m[1] and "cpu.0=" in m[1], m[1]


def test_run_marker_not_made_destination_never_runs(vms, guest, tmp_path):
    """The destination cannot make its run marker (a directory is in the
    way): after COMMIT it exits with status 2 without running a vCPU,
    saying why; the source, STARTED missing, holds the VM in doubt and
    migrate_resolve resume=true runs it on, its rounds continuing."""
    (tmp_path / "migrate-ran").mkdir()
    src, ctl, dst, addr = start_pair(vms, guest, "src-none")
    t, out = migrate_async(src, addr)
    t.join(30)
    assert not t.is_alive(), "no reply from the source"
    destination_never_ran(dst)
    assert "migration run marker not made" in dst.log_text()
    assert "cannot create the run marker" in dst.log_text()
    n = in_doubt(src, ctl, out["rep"])
    last = int(rounds(src.console_text())[-1][0])
    rep = resolve(ctl, True)
    assert rep.status.code == 0, rep.status.message
    src.wait_console(lambda t: len(rounds(t)) >= n + 2,
                     what="the guest going on at the source")
    assert int(rounds(src.console_text())[n][0]) == last + 1  # no reset


def test_resolve_power_off(vms, guest):
    """In doubt, migrate_resolve power_off=true stops the source VMM as
    "powered off" (status 0), not as migrated; resume and power_off
    together are refused and change nothing."""
    src, ctl, dst, addr = start_pair(vms, guest, "dst-marked")
    t, out = migrate_async(src, addr)
    wait_point(dst, "dst-marked")
    dst.kill()
    t.join(30)
    assert not t.is_alive(), "no reply from the source"
    in_doubt(src, ctl, out["rep"])
    rep = ctl.call(migrate_resolve=protos.vmm().VmmMigrateResolveRequest(
        resume=True, power_off=True))
    assert rep.status.code != 0 and "choose one" in rep.status.message
    assert ctl.status().migration.phase == "in_doubt"
    rep = ctl.call(migrate_resolve=protos.vmm().VmmMigrateResolveRequest(
        power_off=True))
    assert rep.status.code == 0, rep.status.message
    assert src.wait_exit(10) == 0
    assert re.search(r"vm stopped\".*reason=\"powered off", src.log_text())
    assert "reason=\"migrated\"" not in src.log_text()


@pytest.fixture
def guest(build_dir):
    return os.path.join(str(build_dir), "guest", "canopy-testguest.elf")
