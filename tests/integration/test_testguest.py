"""canopy-vmm with the test guest (guest/, docs/test-guest.md): banner, SMP,
pause, snapshot with the dirtier running, dirty log, and the guest's own
error paths."""
import os
import re
import subprocess
import time

import pytest

from canopy_testlib.vmm import Vmm

pytestmark = pytest.mark.kvm


def guest_elf(build_dir):
    return os.path.join(str(build_dir), "guest", "canopy-testguest.elf")


@pytest.fixture
def vms(build_dir, tmp_path):
    started = []

    def start(cmdline, *args, **kw):
        vm = Vmm(build_dir, tmp_path, "--kernel", guest_elf(build_dir),
                 "--cmdline", cmdline, *args, **kw)
        started.append(vm)
        return vm

    def restore(snap, **kw):
        vm = Vmm(build_dir, tmp_path, "--restore", snap, **kw)
        started.append(vm)
        return vm

    start.restore = restore
    yield start
    for vm in started:
        vm.kill()


BANNER = re.compile(r"canopy-testguest: hello cpus=(\d+) mem=(\d+) "
                    r"tsc_khz=(\d+)\((\w+)\)")


def banner(text):
    m = BANNER.search(text)
    assert m, "no banner in:\n" + text
    return int(m[1]), int(m[2]), int(m[3]), m[4]


def counts(text):
    return [int(n) for n in re.findall(r"^count (\d+)$", text, re.M)]


def rounds(text):
    return re.findall(r"^dirty: round (\d+) pages (\d+) writes (\d+) (ok|"
                      r"corrupt \d+)$", text, re.M)


@pytest.mark.parametrize("cpus,mem", [(1, 32), (2, 64), (4, 128), (8, 256)])
def test_hello_sees_every_vcpu_and_its_memory(vms, cpus, mem):
    vm = vms("hello", "--cpus", cpus, "--memory", mem, control=False)
    assert vm.wait_exit() == 0, vm.log_text()
    text = vm.console_text()
    ncpu, mib, khz, src = banner(text)
    assert ncpu == cpus
    # RAM in the memory map: all of it but the BIOS hole below 1 MiB.
    assert mem - 1 <= mib <= mem
    assert khz > 100000 and src in ("cpuid", "pit", "cmdline")
    assert "canopy-testguest: exit 0" in text
    assert 'reason="guest powered off (ACPI S5)"' in vm.log_text()


def test_bad_workloads_are_refused_by_the_guest(vms):
    for i, (cmdline, words) in enumerate([
        ("bogus", "unknown workload 'bogus'"),
        ("count=abc", "bad number 'abc' for its value"),
        ("dirty=4,speed=9", "unknown option 'speed'"),
        ("dirty=1000", "does not fit"),
        ("dirty=100000", "need MiB in 1..65536"),
        ("hello count", "more than one workload"),
    ]):
        vm = vms(cmdline, "--memory", "32", control=False, name="bad%d" % i)
        assert vm.wait_exit() == 0, vm.log_text()
        text = vm.console_text()
        assert words in text, text
        assert "canopy-testguest: exit 2" in text


def test_pause_stops_the_counter_and_resume_continues(vms):
    vm = vms("count=20", "--memory", "32")
    ctl = vm.wait_control()
    vm.wait_console(lambda t: len(counts(t)) >= 3, what="three counts")
    ctl.pause()
    time.sleep(0.1)
    before = counts(vm.console_text())
    time.sleep(0.5)
    assert counts(vm.console_text()) == before, "counted while paused"
    ctl.resume()
    vm.wait_console(lambda t: len(counts(t)) >= len(before) + 3,
                    what="counting after resume")
    got = counts(vm.console_text())
    assert got == list(range(1, len(got) + 1)), "a count was lost or doubled"
    ctl.stop()
    assert vm.wait_exit() == 0


def test_cpu_workload_reports_a_rate(vms):
    vm = vms("cpu,limit=2", "--memory", "32", control=False)
    assert vm.wait_exit(timeout=20) == 0, vm.log_text()
    rates = [int(r) for r in re.findall(r"^cpu: (\d+) Mops/s$",
                                        vm.console_text(), re.M)]
    assert len(rates) == 2 and min(rates) > 0


def test_snapshot_with_dirtier_restores_intact(vms, tmp_path):
    snap = tmp_path / "dirty.snap"
    vm = vms("dirty=32,rate=20000,verify=100", "--memory", "64", "--cpus",
             "2", name="src")
    ctl = vm.wait_control()
    vm.wait_console(lambda t: len(rounds(t)) >= 2, what="two verify rounds")
    ctl.save(snap, stop_after=True)
    assert vm.wait_exit() == 0
    before = rounds(vm.console_text())
    assert all(r[3] == "ok" for r in before), vm.console_text()

    vm2 = vms.restore(snap, name="dst")
    vm2.wait_control()
    vm2.wait_console(lambda t: len(rounds(t)) >= 3,
                     what="three verify rounds after restore")
    after = rounds(vm2.console_text())
    assert "CORRUPT" not in vm2.console_text(), vm2.console_text()
    assert all(r[3] == "ok" for r in after)
    # The same run goes on: round numbers and write counts keep rising.
    assert int(after[0][0]) >= int(before[-1][0])
    assert int(after[-1][2]) > int(before[-1][2])


def test_snapshot_restore_keeps_counting(vms, tmp_path):
    snap = tmp_path / "count.snap"
    vm = vms("count=20", "--memory", "32", name="src")
    ctl = vm.wait_control()
    vm.wait_console(lambda t: len(counts(t)) >= 3, what="three counts")
    ctl.save(snap, stop_after=True)
    assert vm.wait_exit() == 0
    last = counts(vm.console_text())[-1]
    vm2 = vms.restore(snap, name="dst")
    vm2.wait_control()
    vm2.wait_console(lambda t: len(counts(t)) >= 3, what="counts after "
                     "restore")
    got = counts(vm2.console_text())
    # The first count after restore follows the last one before the save
    # (the line may have been in flight in the UART when it was saved).
    assert got[0] in (last, last + 1), (last, got)
    assert got == list(range(got[0], got[0] + len(got)))


def test_dirtier_notices_a_corrupted_page(vms, build_dir, tmp_path):
    """The checker can fail: damage one page in a snapshot and restore."""
    snap = tmp_path / "poke.snap"
    vm = vms("dirty=4,rate=1,verify=100", "--memory", "32", name="src")
    ctl = vm.wait_control()
    text = vm.wait_console(lambda t: len(rounds(t)) >= 1, what="a round")
    base = int(re.search(r"dirty: init pages \d+ from 0x([0-9a-f]+)",
                         text)[1], 16)
    ctl.save(snap, stop_after=True)
    assert vm.wait_exit() == 0
    page = base // 4096 + 700  # the 1 page/s writer is far below it
    poke = os.path.join(str(build_dir), "tests", "helpers", "snap_poke")
    r = subprocess.run([poke, str(snap), str(page)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    vm2 = vms.restore(snap, name="dst")
    vm2.wait_control()
    out = vm2.wait_console(lambda t: "corrupt 1" in t, what="the damage")
    assert re.search(r"dirty: CORRUPT page 700 expected gen 1 found gen 1 "
                     r"index 700 checksum bad", out), out


def test_dirty_log_sees_the_pages_the_guest_writes(vms):
    vm = vms("dirty=4,rate=100000,verify=1000", "--memory", "32")
    ctl = vm.wait_control()
    text = vm.wait_console(lambda t: "dirty: init" in t, what="init")
    m = re.search(r"dirty: init pages (\d+) from 0x([0-9a-f]+)", text)
    npages, first = int(m[1]), int(m[2], 16) // 4096
    ctl.dirty("start")
    time.sleep(0.3)  # 100000 pages/s rewrites all 1024 pages many times
    d = ctl.dirty("fetch").dirty
    bits = int.from_bytes(d.bitmap, "little")
    region = (bits >> first) & ((1 << npages) - 1)
    assert region == (1 << npages) - 1, \
        "%d of %d written pages not in the log" % (
            npages - bin(region).count("1"), npages)
    # Outside the working set only the guest's own state changes: its
    # generation table, stack and serial buffer, not hundreds of pages.
    outside = bin(bits & ~(((1 << npages) - 1) << first)).count("1")
    assert outside < 64, outside
    ctl.pause()
    ctl.dirty("fetch")
    assert ctl.dirty("fetch").dirty.dirty_pages == 0
    ctl.resume()
    ctl.dirty("stop")
    ctl.stop()
    assert vm.wait_exit() == 0
