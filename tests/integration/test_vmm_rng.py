"""canopy-vmm's virtio-rng (--rng on) with the test guest's `rng` workload:
entropy reaches the guest, the device is absent unless asked for, a
device-readable buffer makes it need a reset (and only it), a snapshot
taken while the guest reads restores and finishes, bad options; and the
guest's driver against QEMU's virtio-rng-pci."""
import os
import re
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


def guest_exit(text):
    m = re.findall(r"canopy-testguest: exit (\d+)", text)
    assert m, "the guest did not finish:\n" + text[-2000:]
    return int(m[-1])


def run_guest(vms, build_dir, cmdline, *args, timeout=60, **kw):
    """Run the test guest to power-off; (vm, the guest's exit code)."""
    vm = vms("--kernel", guest_elf(build_dir), "--memory", "64",
             "--cmdline", cmdline, *args, **kw)
    assert vm.wait_exit(timeout) == 0, vm.log_text()[-2000:]
    return vm, guest_exit(vm.console_text())


def got(text):
    m = re.search(r"rng: got (\d+) bytes distinct (\d+)", text)
    assert m, text[-2000:]
    return int(m.group(1)), int(m.group(2))


def test_rng_guest_reads_entropy(vms, build_dir):
    vm, rc = run_guest(vms, build_dir, "rng,bytes=1048576", "--rng", "on")
    text = vm.console_text()
    assert rc == 0, text + vm.log_text()
    assert got(text) == (MIB, 256)
    log = vm.log_text()
    assert 'msg="entropy source attached" dev=virtio-rng0' in log
    # 4 KiB per request: 256 requests served, none refused.
    assert "requests=256" in log
    assert "needs reset" not in log


def test_rng_short_read_and_odd_sizes(vms, build_dir):
    """A few bytes only: at most that many values can show up."""
    vm, rc = run_guest(vms, build_dir, "rng,bytes=5", "--rng", "on")
    assert rc == 0, vm.console_text()
    n, distinct = got(vm.console_text())
    assert n == 5 and 1 <= distinct <= 5


@pytest.mark.parametrize("opt", [[], ["--rng", "off"]])
def test_rng_absent_unless_asked_for(vms, build_dir, opt):
    vm, rc = run_guest(vms, build_dir, "rng", *opt)
    assert rc == 1
    assert "rng: no virtio device of type 4" in vm.console_text()
    assert "entropy source" not in vm.log_text()


def test_rng_readable_buffer_needs_reset_vm_lives_on(vms, build_dir,
                                                     tmp_path):
    """The guest offers a buffer the device may only read: the device
    refuses it with DEVICE_NEEDS_RESET; the VM and its other devices go
    on (the guest then writes a disk and powers off normally)."""
    d = tmp_path / "disk.img"
    with open(d, "wb") as f:
        f.truncate(16 * MIB)
    vm, rc = run_guest(vms, build_dir, "rng,readable=1", "--rng", "on",
                       "--disk", "path=%s" % d)
    text = vm.console_text()
    assert rc == 0, text
    assert "rng: readable buffer refused: device needs reset" in text
    assert re.search(r'device needs reset.*dev=virtio-rng0',
                     vm.log_text())
    # The same VMM binary, a disk beside the rng: still serving.
    vm2, rc = run_guest(vms, build_dir, "blk,mode=verify,mib=1",
                        "--rng", "on", "--disk", "path=%s" % d,
                        name="vm2")
    assert rc == 0, vm2.console_text()


def test_rng_snapshot_while_reading_restores(vms, build_dir, tmp_path):
    """Save (and stop) while the guest reads 256 MiB, restore with --rng
    on, let it finish; a restore without the device is refused."""
    snap = tmp_path / "snap.bin"
    total = 256 * MIB
    vm = vms("--kernel", guest_elf(build_dir), "--memory", "64",
             "--cmdline", "rng,bytes=%d" % total, "--rng", "on")
    c = vm.wait_control()
    vm.wait_console(lambda t: "negotiated 0x" in t, timeout=20)
    time.sleep(0.2)
    c.save(snap, stop_after=True)
    assert vm.wait_exit(20) == 0
    assert "rng: got" not in vm.console_text(), \
        "the guest finished before the snapshot: make it read more"
    r = subprocess.run([vmm_bin(build_dir), "--restore", str(snap)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "virtio-rng0" in r.stderr + r.stdout
    vm2 = vms("--restore", snap, "--rng", "on", name="restored")
    assert vm2.wait_exit(60) == 0, vm2.log_text()[-2000:]
    text = vm2.console_text()
    assert guest_exit(text) == 0, text
    assert got(text) == (total, 256)


@pytest.mark.qemu
def test_rng_guest_driver_against_qemu(build_dir, tmp_path):
    """The same workload against QEMU's virtio-rng-pci (the reference our
    device must match): the guest driver is right, not just matched to
    our device."""
    log = tmp_path / "console.log"
    argv = ["qemu-system-x86_64", "-M", "q35", "-accel", "kvm",
            "-cpu", "host,-arch-capabilities", "-m", "128",
            "-display", "none", "-vga", "none", "-nic", "none",
            "-no-reboot", "-serial", "file:%s" % log,
            "-kernel", guest_elf(build_dir), "-append", "rng,bytes=65536",
            "-device", "virtio-rng-pci,disable-legacy=on"]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=120)
    text = log.read_text(errors="replace").replace("\r", "")
    assert r.returncode == 0, " ".join(argv) + "\n" + r.stderr + text
    assert guest_exit(text) == 0, text
    assert got(text) == (65536, 256)


@pytest.mark.parametrize("value", ["yes", "", "ON", "1"])
def test_rng_bad_option(build_dir, value):
    r = subprocess.run([vmm_bin(build_dir), "--kernel", guest_elf(build_dir),
                        "--rng", value],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "--rng %s: expected on or off" % value in r.stderr


@pytest.mark.parametrize("args,msg", [
    ("rng,bytes=0", "bytes=0 is not in 1.."),
    ("rng,bytes=8589934592", "bytes=8589934592 is not in 1.."),
    ("rng,colour=blue", "colour"),
])
def test_rng_bad_workload_arguments(vms, build_dir, args, msg):
    vm, rc = run_guest(vms, build_dir, args, "--rng", "on")
    assert rc == 2
    assert msg in vm.console_text()
