"""canopy-vmm core, black-box: boot, lifecycle, control socket, snapshots,
and every bad-input path, with the tiny guests of tests/kvm/."""
import os
import subprocess
import time

import pytest

from canopy_testlib import protos
from canopy_testlib.vmm import Control, Vmm

pytestmark = pytest.mark.kvm


def guest(build_dir, name):
    return os.path.join(str(build_dir), "tests", "kvm", name + ".elf")


def vmm_bin(build_dir):
    return os.path.join(str(build_dir), "bin", "canopy-vmm")


def run_vmm(build_dir, *args, env=None, timeout=20):
    return subprocess.run([vmm_bin(build_dir)] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout,
                          env=env)


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


def test_hello_boots_and_powers_off(vms, build_dir):
    vm = vms("--kernel", guest(build_dir, "hello"), "--memory", "64")
    assert vm.wait_exit() == 0, vm.log_text()
    assert "tiny-guest: hello" in vm.console_text()
    assert 'reason="guest powered off (ACPI S5)"' in vm.log_text()


@pytest.mark.parametrize("cpus", [2, 8])
def test_smp_vm_boots(vms, build_dir, cpus):
    vm = vms("--kernel", guest(build_dir, "hello"), "--cpus", cpus)
    assert vm.wait_exit() == 0, vm.log_text()
    assert "cpus=%d" % cpus in vm.log_text()


def test_serial_to_stdio(build_dir):
    r = run_vmm(build_dir, "--kernel", guest(build_dir, "hello"),
                "--memory", "32")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "tiny-guest: hello\n"


@pytest.mark.parametrize("args,code,words", [
    (["--kernel", "/nonexistent/k"], 2, "kernel /nonexistent/k: No such file"),
    (["--memory", "64"], 2, "--kernel FILE is required"),
    (["--kernel", "K", "--memory", "12x"], 2, "'12x' is not a number"),
    (["--kernel", "K", "--memory", "8"], 2, "8 is out of range (16.."),
    (["--kernel", "K", "--memory", "100000000"], 2, "out of range"),
    (["--kernel", "K", "--memory", "1000000"], 2, "more than this host has"),
    (["--kernel", "K", "--cpus", "0"], 2, "cpus: 0 is out of range (1..64)"),
    (["--kernel", "K", "--cpus", "65"], 2, "cpus: 65 is out of range"),
    (["--kernel", "K", "--serial", "tty9"], 2,
     "--serial tty9: expected stdio, none or file:PATH"),
    (["--kernel", "K", "--bogus"], 2, "usage: canopy-vmm"),
    (["--kernel", "K", "extra"], 2, "unexpected argument 'extra'"),
])
def test_bad_command_lines(build_dir, args, code, words):
    args = [guest(build_dir, "hello") if a == "K" else a for a in args]
    r = run_vmm(build_dir, *args)
    assert r.returncode == code, r.stderr
    assert words in r.stderr


def test_corrupt_kernels(build_dir, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(4096))
    r = run_vmm(build_dir, "--kernel", junk)
    assert r.returncode == 2
    assert "neither an ELF (PVH) kernel nor a Linux bzImage" in r.stderr
    # A real ELF cut short: its segments point past the end of the file.
    good = open(guest(build_dir, "hello"), "rb").read()
    cut = tmp_path / "cut.elf"
    cut.write_bytes(good[:200])
    r = run_vmm(build_dir, "--kernel", cut)
    assert r.returncode == 2
    assert "points outside the file" in r.stderr
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    r = run_vmm(build_dir, "--kernel", empty)
    assert r.returncode == 2 and "neither an ELF" in r.stderr


def test_guest_crash_is_reported(vms, build_dir):
    vm = vms("--kernel", guest(build_dir, "crash"), "--memory", "32")
    assert vm.wait_exit() == 4
    log = vm.log_text()
    # A triple fault, or on nested KVM that emulates CPL0 the emulator's
    # failure on the same code: either way a stop with the vCPU named.
    assert 'reason="vCPU 0: ' in log, log
    assert "level=error" in log


def test_reboot_restarts_with_fresh_memory(vms, build_dir):
    vm = vms("--kernel", guest(build_dir, "reboot"), "--memory", "32")
    text = vm.wait_console(lambda t: t.count("B0\n") >= 3, what="3 boots")
    assert "B1" not in text  # RAM is zero again after each reboot
    ctl = vm.wait_control()
    assert ctl.status().state == 2  # RUNNING
    ctl.stop()
    assert vm.wait_exit() == 0
    assert vm.log_text().count('msg="guest reboot"') >= 2


def test_status_pause_resume_stop(vms, build_dir):
    vm = vms("--kernel", guest(build_dir, "spin"), "--memory", "64",
             "--cpus", "2")
    ctl = vm.wait_control()
    vm.wait_console(lambda t: len(t) >= 3, what="the spinner")
    st = ctl.status()
    assert st.state == 2 and st.vcpus == 2 and st.memory_mib == 64
    assert st.name == "vm" and st.pid == vm.proc.pid
    assert st.rss_bytes > 0 and st.uptime_ms > 0
    exits = {e.reason: e.count for e in st.exits}
    assert exits["io"] >= 3
    ctl.pause()
    assert ctl.status().state == 3  # PAUSED
    time.sleep(0.2)  # output flushes within 50 ms
    before = len(vm.console_text())
    time.sleep(0.5)
    assert len(vm.console_text()) == before, "guest ran while paused"
    ctl.pause()  # idempotent
    ctl.resume()
    vm.wait_console(lambda t: len(t) > before + 2, what="output after resume")
    ctl.stop()
    assert vm.wait_exit() == 0
    assert 'reason="stopped on request"' in vm.log_text()


def test_graceful_stop_times_out_into_hard_stop(vms, build_dir):
    # The spinner has no ACPI driver: the power button goes unanswered.
    vm = vms("--kernel", guest(build_dir, "spin"), "--memory", "32")
    ctl = vm.wait_control()
    t0 = time.monotonic()
    ctl.stop(graceful=True, timeout_ms=300)
    assert vm.wait_exit() == 0
    assert time.monotonic() - t0 >= 0.3
    assert "did not power off in time" in vm.log_text()


def test_dirty_log(vms, build_dir):
    vm = vms("--kernel", guest(build_dir, "spin"), "--memory", "64")
    ctl = vm.wait_control()
    V = protos.vmm()
    rep = ctl.call(dirty_log=V.VmmDirtyLogRequest(op=V.DIRTY_LOG_OP_FETCH))
    assert rep.status.code == 9  # FAILED_PRECONDITION
    assert "start dirty logging first" in rep.status.message
    ctl.dirty("start")
    # The guest's kernel-mode loop is emulated here and slow under load:
    # fetch until its counter page shows up (5 s at most).
    deadline = time.monotonic() + 5
    while True:
        time.sleep(0.2)
        d = ctl.dirty("fetch").dirty
        bits = int.from_bytes(d.bitmap, "little")
        if bits >> 0x200 & 1 or time.monotonic() > deadline:
            break
    assert d.page_size == 4096 and d.page_count == 64 * 256
    assert len(d.bitmap) == d.page_count // 8
    assert bits >> 0x200 & 1, "the counter page (2 MiB) is not dirty"
    assert d.dirty_pages == bin(bits).count("1")
    assert d.dirty_pages < 16, "far more pages dirty than the guest wrote"
    ctl.pause()
    ctl.dirty("fetch")
    assert ctl.dirty("fetch").dirty.dirty_pages == 0
    ctl.resume()
    ctl.dirty("stop")
    ctl.stop()
    assert vm.wait_exit() == 0


def test_garbage_on_control_socket(vms, build_dir):
    vm = vms("--kernel", guest(build_dir, "spin"), "--memory", "32")
    ctl = vm.wait_control()
    ctl.send_raw(b"\xff\xff\xff\xff\xff")
    rep = ctl.recv_reply()
    assert rep.status.code == 3 and "malformed request" in rep.status.message
    ctl.send_raw(b"")  # an empty request has no operation
    assert "without a known operation" in ctl.recv_reply().status.message
    big = Control(vm.control_path)
    big.sock.sendall((1 << 30).to_bytes(4, "big"))
    rep = big.recv_reply()
    assert "request too large" in rep.status.message
    assert big.sock.recv(16) == b""  # and that connection is closed
    # The VM and the first connection are unaffected.
    assert ctl.status().state == 2
    ctl.stop()
    assert vm.wait_exit() == 0


def test_snapshot_restore_continues(vms, build_dir, tmp_path):
    snap = tmp_path / "snap.bin"
    vm = vms("--kernel", guest(build_dir, "spin"), "--memory", "64",
             "--cpus", "2", name="src")
    ctl = vm.wait_control()
    vm.wait_console(lambda t: len(t) >= 3, what="the spinner")
    saved = ctl.save(snap, stop_after=True)
    assert saved.bytes == os.path.getsize(snap) and saved.duration_us > 0
    assert vm.wait_exit() == 0
    assert not os.path.exists(str(snap) + ".partial")
    assert os.stat(snap).st_mode & 0o777 == 0o600
    vm2 = vms("--restore", snap, name="dst")
    ctl2 = vm2.wait_control()
    st = ctl2.status()
    assert st.vcpus == 2 and st.memory_mib == 64 and st.state == 2
    vm2.wait_console(lambda t: len(t) >= 3, what="output after restore")
    ctl2.stop()
    assert vm2.wait_exit() == 0


@pytest.mark.parametrize("damage,words", [
    ("flip", "checksum mismatch (corrupt)"),
    ("truncate", "truncated file"),
    ("header", "truncated header"),
    ("garbage", "not a canopy-vmm snapshot"),
    ("version", "format version 9"),
])
def test_corrupt_snapshots_are_refused(vms, build_dir, tmp_path, damage,
                                       words):
    snap = tmp_path / "snap.bin"
    vm = vms("--kernel", guest(build_dir, "spin"), "--memory", "32")
    vm.wait_control().save(snap, stop_after=True)
    vm.wait_exit()
    data = bytearray(snap.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x40
    elif damage == "truncate":
        data = data[:len(data) - 5000]
    elif damage == "header":
        data = data[:20]
    elif damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif damage == "version":
        data[8] = 9
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    r = run_vmm(build_dir, "--restore", bad, "--serial", "none")
    assert r.returncode == 2, r.stderr
    assert words in r.stderr


def test_seccomp_stops_a_forbidden_call(build_dir):
    env = dict(os.environ, CANOPY_VMM_SECCOMP_SELFTEST="1")
    r = run_vmm(build_dir, "--kernel", guest(build_dir, "spin"),
                "--serial", "none", env=env)
    assert r.returncode == 4
    assert "seccomp: blocked system call 41" in r.stderr  # socket(2)
