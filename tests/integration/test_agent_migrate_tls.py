"""vMotion between two canopy-agents with --pki-dir (a fake manager, real
canopy-vmm processes and the test guest): each agent starts its VMMs with
the host certificate in DIR (ca.pem, host.pem, host.key, as enrolment
writes them), the source checks that the destination's certificate names
MigrateSend's dst_host_id; a wrong host id fails in the header phase with
the VM still running on the source, the right one moves it over TLS.
Without the three files (DIR/bus.key only) the agents warn that the stream
is not encrypted, and it moves in plain TCP."""
import os
import random
import shutil
import signal

import pytest
import zmq

from canopy_testlib import protos
from canopy_testlib.fakemgr import Agent, FakeManager, agent_pb
from canopy_testlib.manager import Pki
from test_agent_vm import console, list_pids, wait_console

pytestmark = pytest.mark.kvm

GUEST_ARGS = "dirty=16,rate=20000,verify=100"


def verified(text):
    return text.count(" ok\n")


@pytest.fixture
def mgr():
    """A CURVE fake manager: an agent with --pki-dir talks CURVE with the
    keys in DIR/bus.key."""
    public, secret = zmq.curve_keypair()
    m = FakeManager(curve_secret=secret)
    m.public_key = public.decode()
    yield m
    m.close()


def pki_dir(pki, host, path, mgr, cert=True):
    """DIR/ca.pem, host.pem, host.key for host (unless not cert) and
    DIR/bus.key, as enrolment leaves them."""
    os.makedirs(path, mode=0o700)
    public, secret = zmq.curve_keypair()
    fd = os.open(path / "bus.key", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write('public = "%s"\nsecret = "%s"\nserver = "%s"\n' % (
            public.decode(), secret.decode(), mgr.public_key))
    if not cert:
        return path
    crt, key = pki.issue(host, usage="both", sans=[host])
    shutil.copy(pki.ca, path / "ca.pem")
    shutil.copy(crt, path / "host.pem")
    shutil.copy(key, path / "host.key")
    os.chmod(path / "host.key", 0o600)
    return path


@pytest.fixture
def hosts(build_dir, tmp_path, mgr):
    pki = Pki(tmp_path / "cluster")
    started = []

    def start(host, cert=True):
        extra = ["--vmm", os.path.join(str(build_dir), "bin", "canopy-vmm"),
                 "--address", "127.0.0.1", "--stats-interval", "1",
                 "--pki-dir", pki_dir(pki, host, tmp_path / host, mgr, cert)]
        a = Agent(build_dir, tmp_path / ("run-" + host), mgr.endpoint, host,
                  extra)
        a.run = tmp_path / ("run-" + host)
        started.append(a)
        mgr.wait(lambda h, e: h == host and
                 e.WhichOneof("body") == "register", what="register")
        return a

    yield start
    for a in started:
        a.stop()
        vms = a.run / "vms"
        for d in (os.listdir(vms) if vms.exists() else []):
            for p in list_pids(vms / d):
                os.kill(p, signal.SIGKILL)


def spec(build_dir):
    return protos.common().VmSpec(
        name="web1", cpus=1, memory_mib=64, cmdline=GUEST_ARGS,
        kernel=os.path.join(str(build_dir), "guest", "canopy-testguest.elf"))


def reply(mgr, host, **body):
    """Send a request; the whole reply envelope."""
    rid = random.getrandbits(62) + 1
    mgr.send(host, mgr.envelope(host, request_id=rid, **body))
    return mgr.wait(lambda h, e: e.reply_to == rid, 15,
                    "the reply to request %d" % rid)


def migrate(mgr, s, dst_host_id):
    """MigrateIncoming on host2, MigrateSend on host1: the MigrateDone."""
    A = agent_pb()
    rep = reply(mgr, "host2", migrate_incoming=A.MigrateIncoming(
        vm_id="web1", spec=s, task_id="t1"))
    assert rep.WhichOneof("body") == "migrate_ready", rep
    m = mgr.mark()
    st = mgr.request("host1", migrate_send=A.MigrateSend(
        vm_id="web1", task_id="t1", address=rep.migrate_ready.address,
        dst_host_id=dst_host_id))
    assert st.code == 0, st.message
    return mgr.wait_body("migrate_done", timeout=60, start=m).migrate_done


def vmm_log(agent):
    with open(agent.run / "vms" / "web1" / "vmm.log", "rb") as f:
        return f.read().decode("utf-8", "replace")


def test_agents_migrate_over_tls(build_dir, mgr, hosts):
    h1, h2 = hosts("host1"), hosts("host2")
    s = spec(build_dir)
    assert mgr.command("host1", "CREATE", "web1", s).code == 0
    assert mgr.command("host1", "START", "web1").code == 0
    wait_console(h1.run, "web1", lambda t: verified(t) >= 2)
    (pid,) = list_pids(h1.run / "vms" / "web1")
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        argv = f.read().split(b"\0")
    assert b"--tls-cert" in argv and \
        str(h1.run.parent / "host1" / "host.pem").encode() in argv

    # The certificate of host2 does not name host3: refused, VM stays.
    done = migrate(mgr, s, "host3")
    assert done.status.code != 0
    assert "hostname mismatch (expected 'host3')" in done.status.message, \
        done.status.message
    assert "(phase header)" in done.status.message
    n = verified(console(h1.run, "web1"))
    wait_console(h1.run, "web1", lambda t: verified(t) >= n + 2)
    assert list_pids(h1.run / "vms" / "web1") == [pid]

    done = migrate(mgr, s, "host2")
    assert done.status.code == 0, done.status.message
    wait_console(h2.run, "web1", lambda t: verified(t) >= 2, timeout=20)
    assert "CORRUPT" not in console(h2.run, "web1")
    log = vmm_log(h2)
    assert "migration stream encrypted" in log and "TLSv1.3" in log, log
    for a in (h1, h2):
        assert "migration stream not encrypted" not in a.log_text()


def test_agent_without_certificate_warns(build_dir, mgr, hosts):
    h1 = hosts("host1", cert=False)
    h2 = hosts("host2", cert=False)
    s = spec(build_dir)
    assert mgr.command("host1", "CREATE", "web1", s).code == 0
    assert mgr.command("host1", "START", "web1").code == 0
    wait_console(h1.run, "web1", lambda t: verified(t) >= 1)
    done = migrate(mgr, s, "host2")
    assert done.status.code == 0, done.status.message
    for a, side in ((h1, "source"), (h2, "destination")):
        text = a.log_text()
        assert "migration stream not encrypted: no host certificate in " \
               "--pki-dir" in text and "side=" + side in text, text
    assert "migration stream is not encrypted" in vmm_log(h2)
