"""canopy-vmm disks on the clustered datastore (--disk ds=DEV:FILE,host=ID):
the guest's writes land in the datastore file, the file's lock keeps a
second VMM (another host) out while the first runs, read-only disks share
the lock, a VMM that cannot renew its heartbeat fences itself (I/O fails,
nothing more is written), and the same host re-acquires after a crash."""
import os
import signal
import struct
import subprocess
import time

import pytest

from canopy_testlib.vmm import Vmm

pytestmark = pytest.mark.kvm

MIB = 1 << 20


def guest_elf(build_dir):
    return os.path.join(str(build_dir), "guest", "canopy-testguest.elf")


def ds_tool(build_dir, *args, check=True):
    r = subprocess.run([os.path.join(str(build_dir), "bin", "canopy-ds")] +
                       [str(a) for a in args], capture_output=True,
                       text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def volume(build_dir, tmp_path):
    img = tmp_path / "ds.img"
    ds_tool(build_dir, "format", img, "--name", "lab", "--size", "128M",
            "--hb-interval", "200", "--hb-timeout", "2000")
    ds_tool(build_dir, "create", img, "vm1/disk0", "--size", "16M",
            "--host-id", "9")
    return img


@pytest.fixture
def vms(build_dir, tmp_path):
    started = []

    def start(*args, **kw):
        vm = Vmm(build_dir, tmp_path, *args, **kw)
        started.append(vm)
        return vm

    yield start
    for vm in started:
        vm.kill()


def pattern_bad(data, seed):
    hi = (seed << 40) & (2**64 - 1)
    words = struct.unpack("<%dQ" % (len(data) // 8), data)
    return sum(1 for i, w in enumerate(words) if w != hi ^ (8 * i))


def exported(build_dir, volume, tmp_path, n):
    out = tmp_path / "export.img"
    ds_tool(build_dir, "export", volume, "vm1/disk0", out, "--host-id", "9")
    return out.read_bytes()[:n]


def test_guest_writes_land_in_the_datastore_file(vms, build_dir, volume,
                                                 tmp_path):
    vm = vms("--kernel", guest_elf(build_dir), "--memory", "64",
             "--cmdline", "blk,mode=verify,mib=4,seed=5,qd=4",
             "--disk", "ds=%s:vm1/disk0,host=3,serial=ds0" % volume)
    assert vm.wait_exit(60) == 0, vm.log_text()
    text = vm.console_text()
    assert 'serial "ds0" ro 0' in text and "blk: read ok" in text, text
    assert "exclusive" in vm.log_text()
    assert pattern_bad(exported(build_dir, volume, tmp_path, 4 * MIB),
                       5) == 0
    # The VMM left cleanly: its lock is free and its slot says so.
    locks = ds_tool(build_dir, "locks", volume).stdout
    assert "vm1/disk0" not in locks or "free" in locks, locks


def test_a_second_host_is_locked_out_while_the_first_runs(vms, build_dir,
                                                          volume):
    vm = vms("--kernel", guest_elf(build_dir), "--memory", "64",
             "--cmdline", "blk,mode=seqread,mib=4,secs=60",
             "--disk", "ds=%s:vm1/disk0,host=3" % volume)
    vm.wait_console(lambda t: "features 0x" in t, timeout=20)
    r = subprocess.run([vm.binary, "--kernel", guest_elf(build_dir),
                        "--disk", "ds=%s:vm1/disk0,host=4" % volume],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "host 3" in r.stderr, r.stderr
    vm.kill()


def test_readonly_disks_share_the_lock(vms, build_dir, volume):
    a = vms("--kernel", guest_elf(build_dir), "--memory", "64",
            "--cmdline", "blk,mode=seqread,mib=4,secs=60",
            "--disk", "ds=%s:vm1/disk0,host=3,readonly" % volume, name="a")
    a.wait_console(lambda t: "features 0x" in t, timeout=20)
    b = vms("--kernel", guest_elf(build_dir), "--memory", "64",
            "--cmdline", "blk,mode=read,mib=1,seed=0",
            "--disk", "ds=%s:vm1/disk0,host=4,readonly" % volume, name="b")
    assert b.wait_exit(60) == 0, b.log_text()
    assert "ro 1" in b.console_text()
    assert "shared" in b.log_text()
    # An exclusive opener is refused while readers hold it.
    r = subprocess.run([a.binary, "--kernel", guest_elf(build_dir),
                        "--disk", "ds=%s:vm1/disk0,host=5" % volume],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "shared" in r.stderr.lower() or \
        "host 3" in r.stderr, r.stderr


def test_a_vmm_that_cannot_renew_fences_itself(vms, build_dir, volume,
                                               tmp_path):
    """SIGSTOP the VMM past the heartbeat timeout: when it runs again it
    must not write another byte (another host may own the file by now)."""
    vm = vms("--kernel", guest_elf(build_dir), "--memory", "64",
             "--cmdline", "blk,mode=seqwrite,mib=4,bs=4096,secs=60,seed=2",
             "--disk", "ds=%s:vm1/disk0,host=3" % volume)
    vm.wait_console(lambda t: "seqwrite second 1" in t, timeout=30)
    os.kill(vm.proc.pid, signal.SIGSTOP)
    time.sleep(3.0)  # the timeout is 2 s
    # Meanwhile another host breaks the expired lock (file 1's lock is
    # lock 1) after watching the heartbeat stand still, then lets it go.
    r = subprocess.run([os.path.join(str(build_dir), "tests", "helpers",
                                     "ds_host"), str(volume), "9", "take",
                        "1", "15000"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "acquired 1" in r.stdout, r.stdout + r.stderr
    before = exported(build_dir, volume, tmp_path, 16 * MIB)
    os.kill(vm.proc.pid, signal.SIGCONT)
    vm.wait_console(lambda t: "I/O error" in t, timeout=20,
                    what="the guest's first failed request")
    assert "fenced" in vm.log_text()
    time.sleep(0.5)
    after = exported(build_dir, volume, tmp_path, 16 * MIB)
    assert before == after, "a fenced VMM wrote to the file"


def test_the_same_host_reacquires_after_a_crash(vms, build_dir, volume):
    vm = vms("--kernel", guest_elf(build_dir), "--memory", "64",
             "--cmdline", "blk,mode=seqread,mib=4,secs=60",
             "--disk", "ds=%s:vm1/disk0,host=3" % volume, name="first")
    vm.wait_console(lambda t: "features 0x" in t, timeout=20)
    vm.proc.kill()
    vm.proc.wait(10)
    t0 = time.monotonic()
    vm2 = vms("--kernel", guest_elf(build_dir), "--memory", "64",
              "--cmdline", "blk,mode=verify,mib=1,seed=6",
              "--disk", "ds=%s:vm1/disk0,host=3" % volume, name="second")
    assert vm2.wait_exit(60) == 0, vm2.log_text()
    assert "blk: read ok" in vm2.console_text(), vm2.console_text()
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("opt,msg", [
    ("ds=/x:f", "ds= needs host=ID"),
    ("ds=/x,host=1", "ds= needs DEV:FILE"),
    ("ds=:f,host=1", "ds= needs DEV:FILE"),
    ("path=/x,host=1", "host= applies to ds= disks only"),
    ("path=/x,ds=/y:f,host=1", "not both"),
    ("ds=/x:f,host=0", "host= must be a datastore host id"),
    ("ds=/x:f,host=65", "host= must be a datastore host id"),
    ("ds=/x:f,host=1,direct", "always O_DIRECT"),
])
def test_bad_ds_options(build_dir, opt, msg):
    r = subprocess.run([os.path.join(str(build_dir), "bin", "canopy-vmm"),
                        "--kernel", guest_elf(build_dir), "--disk", opt],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2
    assert msg in r.stderr, r.stderr


def test_missing_datastore_or_file(build_dir, volume, tmp_path):
    vmm = os.path.join(str(build_dir), "bin", "canopy-vmm")
    r = subprocess.run([vmm, "--kernel", guest_elf(build_dir), "--disk",
                        "ds=%s:vm1/nope,host=3" % volume],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "vm1/nope" in r.stderr
    notds = tmp_path / "plain.img"
    notds.write_bytes(bytes(MIB))
    r = subprocess.run([vmm, "--kernel", guest_elf(build_dir), "--disk",
                        "ds=%s:vm1/disk0,host=3" % notds],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "not a canopy datastore" in r.stderr, r.stderr
