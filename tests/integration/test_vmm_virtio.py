"""canopy-vmm virtio devices with the test guest's polling drivers:
virtio-blk (data lands in the host file, read-only, serial, O_DIRECT, bad
options, a snapshot under write load) and virtio-balloon (RSS drops,
status shows the guest's memory, bad targets)."""
import os
import re
import struct
import subprocess
import time

import pytest

from canopy_testlib.vmm import Vmm

pytestmark = pytest.mark.kvm

MIB = 1 << 20


def guest_elf(build_dir):
    return os.path.join(str(build_dir), "guest", "canopy-testguest.elf")


def vmm_bin(build_dir):
    return os.path.join(str(build_dir), "bin", "canopy-vmm")


def pattern_ok(path, nbytes, seed=1):
    """Offset of the first word not matching the blk pattern, or None."""
    hi = (seed << 40) & (2**64 - 1)
    with open(path, "rb") as f:
        data = f.read(nbytes)
    assert len(data) == nbytes
    words = struct.unpack("<%dQ" % (nbytes // 8), data)
    for i, w in enumerate(words):
        if w != hi ^ (8 * i):
            return 8 * i
    return None


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


@pytest.fixture
def disk(tmp_path):
    def make(name="disk.img", size=64 * MIB):
        p = tmp_path / name
        with open(p, "wb") as f:
            f.truncate(size)
        return p
    return make


def guest_exit(text):
    """The test guest's own exit code from its last console line."""
    m = re.findall(r"canopy-testguest: exit (\d+)", text)
    assert m, "the guest did not finish:\n" + text[-2000:]
    return int(m[-1])


def run_guest(vms, build_dir, cmdline, *args, timeout=60, **kw):
    """Run the test guest to power-off; (vm, the guest's exit code)."""
    vm = vms("--kernel", guest_elf(build_dir), "--memory", "128",
             "--cmdline", cmdline, *args, **kw)
    assert vm.wait_exit(timeout) == 0, vm.log_text()[-2000:]
    return vm, guest_exit(vm.console_text())


def test_blk_guest_writes_reach_the_host_file(vms, build_dir, disk):
    d = disk()
    vm, rc = run_guest(vms, build_dir, "blk,mode=verify,mib=8,seed=7",
                       "--disk", "path=%s,serial=disk-0001" % d)
    text = vm.console_text()
    assert rc == 0, text + vm.log_text()
    assert 'serial "disk-0001" ro 0' in text
    assert "blk: flush ok" in text and "blk: read ok sectors 16384" in text
    assert pattern_ok(d, 8 * MIB, seed=7) is None
    # Past the region the guest wrote, the file is untouched (sparse zeros).
    with open(d, "rb") as f:
        f.seek(8 * MIB)
        assert f.read(MIB) == bytes(MIB)


def test_blk_reads_what_the_host_wrote(vms, build_dir, disk):
    d = disk(size=16 * MIB)
    with open(d, "r+b") as f:
        f.write(b"".join(struct.pack("<Q", ((3 << 40)) ^ o)
                         for o in range(0, 4 * MIB, 8)))
    vm, rc = run_guest(vms, build_dir, "blk,mode=read,mib=4,seed=3",
                       "--disk", "path=%s" % d)
    assert rc == 0, vm.console_text()
    assert "blk: read ok sectors 8192" in vm.console_text()
    # A mismatch is seen: the guest checks for seed 4 and finds seed 3.
    vm, rc = run_guest(vms, build_dir, "blk,mode=read,mib=4,seed=4",
                       "--disk", "path=%s" % d, name="vm2")
    assert rc == 1
    assert "blk: read corrupt first sector 0" in vm.console_text()


def test_blk_direct_and_multiple_disks(vms, build_dir, disk):
    d0, d1 = disk("a.img"), disk("b.img")
    vm, rc = run_guest(vms, build_dir, "blk,mode=verify,mib=4,dev=1,qd=8",
                       "--disk", "path=%s" % d0,
                       "--disk", "path=%s,direct,serial=second" % d1)
    assert rc == 0, vm.console_text() + vm.log_text()
    assert 'serial "second"' in vm.console_text()
    assert pattern_ok(d1, 4 * MIB) is None
    with open(d0, "rb") as f:
        assert f.read(MIB) == bytes(MIB)


def test_blk_readonly_refuses_writes(vms, build_dir, disk):
    d = disk(size=8 * MIB)
    before = open(d, "rb").read()
    vm, rc = run_guest(vms, build_dir, "blk,mode=read,mib=1,seed=0",
                       "--disk", "path=%s,readonly" % d)
    text = vm.console_text()
    assert "ro 1" in text
    # Zeros do not match seed 0's pattern past offset 0: a corrupt line,
    # but the point is the device answered reads on a read-only disk.
    assert "blk: read" in text and rc in (0, 1)
    vm, rc = run_guest(vms, build_dir, "blk,mode=write,mib=1",
                       "--disk", "path=%s,readonly" % d, name="vm2")
    assert rc == 1
    assert "read-only" in vm.console_text()
    assert open(d, "rb").read() == before


@pytest.mark.parametrize("opt,msg", [
    ("readonly", "path=FILE (or ds=DEV:FILE) is required"),
    ("path=", "path=FILE (or ds=DEV:FILE) is required"),
    ("path=/x,bogus", "'bogus' not understood"),
    ("path=/x,serial=" + "s" * 21, "serial must be 1 to 20"),
    ("path=/x,serial=a b", "serial must be"),
])
def test_blk_bad_options(build_dir, opt, msg):
    r = subprocess.run([vmm_bin(build_dir), "--kernel",
                        guest_elf(build_dir), "--disk", opt],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr


def test_blk_missing_or_unusable_backend(build_dir, tmp_path):
    r = subprocess.run([vmm_bin(build_dir), "--kernel",
                        guest_elf(build_dir), "--disk",
                        "path=%s" % (tmp_path / "nope.img")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2
    assert "nope.img: No such file or directory" in r.stderr
    r = subprocess.run([vmm_bin(build_dir), "--kernel",
                        guest_elf(build_dir), "--disk",
                        "path=%s" % tmp_path],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2
    assert "not a file or block device" in r.stderr or \
        "Is a directory" in r.stderr
    tiny = tmp_path / "tiny.img"
    tiny.write_bytes(b"x" * 100)
    r = subprocess.run([vmm_bin(build_dir), "--kernel",
                        guest_elf(build_dir), "--disk", "path=%s" % tiny],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2
    assert "smaller than one sector" in r.stderr


def test_blk_snapshot_under_write_load_loses_nothing(vms, build_dir, disk,
                                                     tmp_path):
    """Save (and stop) while the guest writes its pattern with 8 requests
    in flight, restore, let it finish: every word of the region is right
    and the guest's own read pass agrees."""
    d = disk(size=96 * MIB)
    snap = tmp_path / "snap.bin"
    vm = vms("--kernel", guest_elf(build_dir), "--memory", "128",
             "--cmdline", "blk,mode=verify,mib=64,bs=512,qd=8",
             "--disk", "path=%s,direct" % d)
    c = vm.wait_control()
    vm.wait_console(lambda t: "features 0x" in t, timeout=20)
    time.sleep(0.3)
    c.save(snap, stop_after=True)
    assert vm.wait_exit(20) == 0
    text = vm.console_text()
    assert "blk: write ops" not in text, \
        "the write pass ended before the snapshot: make it longer"
    vm2 = vms("--restore", snap, "--disk", "path=%s,direct" % d,
              name="restored")
    assert vm2.wait_exit(120) == 0, vm2.console_text() + vm2.log_text()
    out = vm2.console_text()
    assert "blk: read ok sectors 131072" in out, out
    assert pattern_ok(d, 64 * MIB) is None


def test_blk_snapshot_refuses_a_different_disk(vms, build_dir, disk,
                                               tmp_path):
    d = disk(size=16 * MIB)
    other = disk("other.img", size=32 * MIB)
    snap = tmp_path / "snap.bin"
    vm = vms("--kernel", guest_elf(build_dir), "--memory", "64",
             "--cmdline", "blk,mode=seqread,mib=8,secs=30",
             "--disk", "path=%s" % d)
    c = vm.wait_control()
    vm.wait_console(lambda t: "features 0x" in t, timeout=20)
    c.save(snap, stop_after=True)
    vm.wait_exit(20)
    r = subprocess.run([vmm_bin(build_dir), "--restore", str(snap),
                        "--disk", "path=%s" % other],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "virtio-blk0" in r.stderr + r.stdout


def status_rss(c):
    return c.status().rss_bytes


def test_balloon_inflation_returns_memory_to_the_host(vms, build_dir):
    vm = vms("--kernel", guest_elf(build_dir), "--memory", "256",
             "--balloon", "--cmdline", "balloon,touch=1")
    c = vm.wait_control()
    vm.wait_console(lambda t: "balloon: target 0 pages actual 0" in t,
                    timeout=30)
    st = c.status()
    rss0 = st.rss_bytes
    assert rss0 > 200 * MIB, "the guest touched its pool"
    assert st.balloon_mib == 0
    assert st.guest_memory.total_bytes > 250 * MIB
    rep = c.balloon(64)
    assert rep.status.code == 0, rep.status.message
    vm.wait_console(lambda t: "target 49152 pages actual 49152" in t,
                    timeout=30)
    st = c.status()
    assert st.balloon_mib == 192 and st.balloon_target_mib == 192
    assert st.rss_bytes < rss0 - 150 * MIB, (rss0, st.rss_bytes)
    # Deflate: the guest gets its memory back (and touches it again).
    assert c.balloon(256).status.code == 0
    vm.wait_console(lambda t: t.count("target 0 pages actual 0") >= 2,
                    timeout=30)
    assert c.status().balloon_mib == 0


def test_balloon_bad_targets_and_absent_device(vms, build_dir):
    vm = vms("--kernel", guest_elf(build_dir), "--memory", "128",
             "--balloon", "--cmdline", "balloon")
    c = vm.wait_control()
    for t in (0, 8, 129, 1 << 40):
        rep = c.balloon(t)
        assert rep.status.code == 3, t  # INVALID_ARGUMENT
        assert "outside 16..128 MiB" in rep.status.message
    assert c.status().balloon_target_mib == 0
    vm2 = vms("--kernel", guest_elf(build_dir), "--memory", "64",
              "--cmdline", "count", name="noballoon")
    c2 = vm2.wait_control()
    rep = c2.balloon(32)
    assert rep.status.code != 0
    assert "no balloon device" in rep.status.message
