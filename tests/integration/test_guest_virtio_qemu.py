"""The test guest's virtio-pci drivers (guest/user_virtio.c, work_blk.c,
work_balloon.c) against QEMU's devices, the reference canopy-vmm's devices
must match: the documented disk pattern byte for byte, read checks that
fail on bad data, read-only disks, injected I/O errors, BARs the guest must
move, and the balloon following the QEMU monitor."""
import json
import os
import re
import socket
import struct
import subprocess
import time

import pytest

from canopy_testlib import protos

pytestmark = [pytest.mark.kvm, pytest.mark.qemu]

MIB = 1 << 20
SECTOR = 512
SEED_SHIFT = 40
RAM_MIB = 256


@pytest.fixture(scope="session")
def elf():
    path = os.path.join(protos.build_dir(), "guest", "canopy-testguest.elf")
    if not os.path.isfile(path):
        pytest.skip("SKIP (needs the test guest): %s missing; run make "
                    "(or make B=<dir> <dir>/guest/canopy-testguest.elf)"
                    % path)
    return path


class Qemu:
    """qemu-system-x86_64 -M q35 booting the test guest as a PVH kernel,
    COM1 into a file, optionally a QMP socket."""

    def __init__(self, tmp_path, elf_path, cmdline, *args, qmp=False,
                 machine="q35"):
        self.log = str(tmp_path / "console.log")
        self.sock = str(tmp_path / "qmp.sock")
        self.argv = ["qemu-system-x86_64", "-M", machine, "-accel", "kvm",
                     "-cpu", "host,-arch-capabilities", "-m", str(RAM_MIB),
                     "-display", "none", "-vga", "none", "-nic", "none",
                     "-no-reboot", "-serial", "file:" + self.log,
                     "-kernel", elf_path, "-append", cmdline] + list(args)
        if qmp:
            self.argv += ["-qmp", "unix:%s,server=on,wait=off" % self.sock]
        self.err = open(str(tmp_path / "qemu.stderr"), "w+")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self.err, stderr=self.err)
        self.qmp_file = None

    def text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("ascii", "replace").replace("\r", "")
        except FileNotFoundError:
            return ""

    def describe(self):
        self.err.seek(0)
        return "%s\nconsole:\n%s\nqemu stderr:\n%s" % (
            " ".join(self.argv), self.text(), self.err.read())

    def wait_exit(self, timeout=90):
        """The guest's exit code (QEMU powers off after the exit line)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("QEMU still running after %ds:\n%s"
                        % (timeout, self.describe()))
        m = re.search(r"canopy-testguest: exit (\d+)", self.text())
        assert m, "no exit line:\n" + self.describe()
        return int(m[1])

    def wait_for(self, regex, start=0, timeout=30):
        """The first match of regex in the console after offset start."""
        end = time.time() + timeout
        while time.time() < end:
            m = re.compile(regex, re.M).search(self.text(), start)
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail("no /%s/ after offset %d:\n%s"
                    % (regex, start, self.describe()))

    def qmp(self, cmd, **args):
        if self.qmp_file is None:
            s = socket.socket(socket.AF_UNIX)
            for _ in range(200):
                try:
                    s.connect(self.sock)
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    time.sleep(0.05)
            self.qmp_file = s.makefile("rw")
            self.qmp_file.readline()  # greeting
            self.qmp("qmp_capabilities")
        self.qmp_file.write(json.dumps({"execute": cmd, "arguments": args})
                            + "\n")
        self.qmp_file.flush()
        while True:
            r = json.loads(self.qmp_file.readline())
            if "error" in r:
                pytest.fail("QMP %s: %s" % (cmd, r["error"]))
            if "return" in r:
                return r["return"]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


@pytest.fixture
def qemu(tmp_path, elf):
    started = []

    def start(cmdline, *args, **kw):
        q = Qemu(tmp_path, elf, cmdline, *args, **kw)
        started.append(q)
        return q

    yield start
    for q in started:
        q.kill()


def disk(path, readonly=False, serial=None, drive_opts="", dev_opts=""):
    """-drive and -device arguments for a modern-only virtio-blk disk."""
    drive = "file=%s,if=none,id=d0,format=raw,cache=none" % path
    if readonly:
        drive += ",readonly=on"
    dev = "virtio-blk-pci,drive=d0,disable-legacy=on"
    if serial is not None:
        dev += ",serial=" + serial
    return ["-drive", drive + drive_opts, "-device", dev + dev_opts]


def pattern(seed, start, length):
    """The documented content: the word at offset o is (seed << 40) ^ o."""
    base = (seed << SEED_SHIFT) & (2**64 - 1)
    return b"".join(struct.pack("<Q", base ^ o)
                    for o in range(start, start + length, 8))


def make_image(tmp_path, mib, fill=b"\xa5"):
    path = str(tmp_path / "disk.img")
    with open(path, "wb") as f:
        f.write(fill * (mib * MIB))
    return path


CAPACITY = re.compile(r'^blk: capacity (\d+) serial "([^"]*)" ro ([01]) '
                      r'features 0x([0-9a-f]+)$', re.M)
REPORT = re.compile(r"^blk: (\w+) ops (\d+) bytes (\d+) secs (\d+)\.(\d) "
                    r"iops (\d+) mbps (\d+)\.(\d) lat_avg_us (\d+)$", re.M)


def capacity(text):
    m = CAPACITY.search(text)
    assert m, "no capacity line in:\n" + text
    return int(m[1]), m[2], int(m[3]), int(m[4], 16)


def test_write_leaves_exactly_the_documented_pattern(qemu, tmp_path):
    img = make_image(tmp_path, 16)
    q = qemu("blk,mode=write,mib=8,seed=7", *disk(img, serial="w1"))
    assert q.wait_exit() == 0, q.describe()
    text = q.text()
    assert capacity(text)[:3] == (16 * MIB // SECTOR, "w1", 0)
    with open(img, "rb") as f:
        data = f.read()
    assert data[:8 * MIB] == pattern(7, 0, 8 * MIB)
    # Nothing past the requested range was touched.
    assert data[8 * MIB:] == b"\xa5" * (8 * MIB)
    m = REPORT.search(text)
    assert m and m[1] == "write" and int(m[3]) == 8 * MIB, text
    assert int(m[2]) == 8 * MIB // 4096
    assert "blk: flush ok" in text


@pytest.mark.parametrize("opts", ["", ",bs=65536,qd=4", ",bs=1536,qd=16"])
def test_verify_writes_then_reads_back(qemu, tmp_path, opts):
    img = make_image(tmp_path, 8)
    q = qemu("blk,mode=verify,mib=8,seed=0x123456" + opts, *disk(img))
    assert q.wait_exit() == 0, q.describe()
    text = q.text()
    assert "blk: read ok sectors %d" % (8 * MIB // SECTOR) in text
    assert [m[1] for m in REPORT.finditer(text)] == ["write", "read"]
    with open(img, "rb") as f:
        assert f.read() == pattern(0x123456, 0, 8 * MIB)


def test_read_names_the_first_bad_sector(qemu, tmp_path):
    img = str(tmp_path / "disk.img")
    good = bytearray(pattern(5, 0, 8 * MIB))
    for sector in (777, 4000):  # one word damaged in each
        struct.pack_into("<Q", good, sector * SECTOR + 24, 0xdeadbeef)
    with open(img, "wb") as f:
        f.write(good)
    q = qemu("blk,mode=read,mib=8,seed=5,qd=8", *disk(img))
    assert q.wait_exit() == 1, q.describe()
    off = 777 * SECTOR + 24
    assert ("blk: read corrupt first sector 777 offset 0x%x expected 0x%x "
            "found 0xdeadbeef bad_sectors 2" % (off, (5 << 40) ^ off)
            in q.text()), q.describe()


def test_read_of_a_wrong_seed_fails_at_sector_0(qemu, tmp_path):
    img = str(tmp_path / "disk.img")
    with open(img, "wb") as f:
        f.write(pattern(1, 0, 4 * MIB))
    q = qemu("blk,mode=read,mib=4,seed=2", *disk(img))
    assert q.wait_exit() == 1, q.describe()
    assert re.search(r"^blk: read corrupt first sector 0 offset 0x0 "
                     r"expected 0x20000000000 found 0x10000000000 "
                     r"bad_sectors 8192$", q.text(), re.M), q.describe()


def test_write_to_a_readonly_disk_is_refused(qemu, tmp_path):
    img = make_image(tmp_path, 8)
    q = qemu("blk,mode=verify,mib=8", *disk(img, readonly=True,
                                              serial="ro-disk"))
    assert q.wait_exit() == 1, q.describe()
    text = q.text()
    cap, serial, ro, feat = capacity(text)
    assert (serial, ro) == ("ro-disk", 1) and feat & (1 << 5)
    assert ("blk: the disk is read-only (VIRTIO_BLK_F_RO); refusing "
            "mode=verify" in text)
    with open(img, "rb") as f:
        assert f.read() == b"\xa5" * (8 * MIB)


def test_device_io_error_is_reported_with_its_sector(qemu, tmp_path):
    img = make_image(tmp_path, 8)
    cfg = tmp_path / "blkdebug.cfg"
    cfg.write_text('[inject-error]\nevent = "write_aio"\nerrno = "5"\n'
                   'sector = "2048"\n')
    q = qemu("blk,mode=write,mib=8", "-drive",
             "file=blkdebug:%s:%s,if=none,id=d0,format=raw,cache=none,"
             "werror=report" % (cfg, img),
             "-device", "virtio-blk-pci,drive=d0,disable-legacy=on")
    assert q.wait_exit() == 1, q.describe()
    assert ("blk: I/O error: status 1 (IOERR) for write of 4096 bytes at "
            "sector 2048" in q.text()), q.describe()


def test_serial_shows_in_the_capacity_line(qemu, tmp_path):
    img = make_image(tmp_path, 1)
    q = qemu("blk,mode=verify,mib=0", *disk(img, serial="canopy-disk-0007"))
    assert q.wait_exit() == 0, q.describe()
    assert capacity(q.text())[:2] == (2048, "canopy-disk-0007")


@pytest.mark.parametrize("mode,bs", [("randread", 4096), ("seqread", 8192),
                                     ("seqwrite", 65536)])
def test_timed_modes_print_the_machine_readable_line(qemu, tmp_path, mode,
                                                     bs):
    img = make_image(tmp_path, 16)
    q = qemu("blk,mode=%s,secs=1,bs=%d,qd=4,mib=0" % (mode, bs), *disk(img))
    assert q.wait_exit() == 0, q.describe()
    reports = list(REPORT.finditer(q.text()))
    assert len(reports) == 1 and reports[0][1] == mode, q.describe()
    m = reports[0]
    ops, nbytes = int(m[2]), int(m[3])
    assert ops > 0 and nbytes == ops * bs
    assert 1.0 <= int(m[4]) + int(m[5]) / 10 <= 2.0
    assert re.search(r"^blk: %s second 1 iops \d+$" % mode, q.text(), re.M)


@pytest.mark.parametrize("cmdline,words,code", [
    ("blk,mode=scribble", "unknown mode 'scribble'", 2),
    ("blk,bs=1000", "bs=1000 is not a multiple of 512", 2),
    ("blk,qd=17", "need qd in 1..16", 2),
    ("blk,mib=9", "do not fit in the disk", 2),
    ("blk,size=4", "unknown option 'size'", 2),
    ("blk,dev=1", "no virtio device of type 2 (index 1)", 1),
])
def test_bad_blk_arguments_are_refused(qemu, tmp_path, cmdline, words, code):
    img = make_image(tmp_path, 8)
    q = qemu(cmdline, *disk(img))
    assert q.wait_exit() == code, q.describe()
    assert words in q.text(), q.describe()
    with open(img, "rb") as f:
        assert f.read() == b"\xa5" * (8 * MIB)


def test_bar_above_the_identity_map_is_moved_into_the_hole(qemu, tmp_path):
    # A 1 GiB BAR does not fit below 4 GiB, so SeaBIOS puts every 64-bit
    # BAR above 4 GiB, outside the guest's map: the driver must move the
    # virtio one into the 3-4 GiB hole.
    img = make_image(tmp_path, 8)
    q = qemu("blk,mode=verify,mib=8", *disk(img), "-object",
             "memory-backend-ram,size=1G,id=m0", "-device",
             "ivshmem-plain,memdev=m0")
    assert q.wait_exit() == 0, q.describe()
    m = re.search(r"^pci: 00:0\w\.0 bar 4 at 0x([0-9a-f]+) \(size "
                  r"0x([0-9a-f]+)\) moved to 0x([0-9a-f]+)$", q.text(), re.M)
    assert m, q.describe()
    old, size, new = (int(x, 16) for x in m.groups())
    assert old >= 1 << 32 and 0xc0000000 <= new < 0xfec00000 - size + 1
    assert new % size == 0
    assert "blk: read ok sectors 16384" in q.text()


def test_blk_without_a_device_fails_cleanly(qemu):
    q = qemu("blk,mode=read")
    assert q.wait_exit() == 1, q.describe()
    assert "virtio: blk: no virtio device of type 2 (index 0) on PCI" \
        in q.text()


def test_blk_without_ecam_fails_cleanly(qemu, tmp_path):
    # i440fx has no MCFG (and its PM1a_CNT is not at 0x604: the guest
    # cannot power off, so the test reads the exit line).
    img = make_image(tmp_path, 1)
    q = qemu("blk,mode=read", *disk(img), machine="pc")
    q.wait_for(r"^canopy-testguest: exit 1$")
    assert "blk: no PCI ECAM (ACPI MCFG) reachable" in q.text()


@pytest.mark.slow
def test_device_that_never_answers_times_out(qemu, tmp_path):
    # Throttled to 64 bytes/s, a 4 KiB write takes a minute: the guest
    # gives up after its 10 s timeout instead of hanging.
    img = make_image(tmp_path, 8)
    q = qemu("blk,mode=write,mib=1", *disk(
        img, drive_opts=",throttling.bps-total=64"))
    assert q.wait_exit(timeout=120) == 1, q.describe()
    assert ("virtio: blk: queue 0: timeout after 10000 ms waiting for the "
            "device" in q.text()), q.describe()


BALLOON = r"^balloon: target (\d+) pages actual (\d+)$"


def balloon_to(q, mib):
    """Sets the QEMU balloon target; the guest's line for it, and the
    console offset after that line."""
    start = len(q.text())
    q.qmp("balloon", value=mib * MIB)
    pages = (RAM_MIB - mib) * MIB // 4096
    m = q.wait_for(r"^balloon: target %d pages actual %d$" % (pages, pages),
                   start)
    return m, m.end()


def test_balloon_follows_the_monitor_target(qemu):
    q = qemu("balloon,hold=20000", "-device",
             "virtio-balloon-pci,disable-legacy=on,id=bal0", qmp=True)
    m = q.wait_for(r"^balloon: ready pool (\d+) pages ram (\d+) pages "
                   r"stats 1$")
    pool = int(m[1])
    q.wait_for(BALLOON)
    assert q.qmp("query-balloon")["actual"] == RAM_MIB * MIB
    balloon_to(q, 200)
    # `info balloon` agrees: the guest wrote `actual`.
    assert q.qmp("query-balloon")["actual"] == 200 * MIB
    # The stats queue: the device polls, the guest answers with its own
    # bookkeeping (free RAM is the pool minus the balloon).
    q.qmp("qom-set", path="/machine/peripheral/bal0",
          property="guest-stats-polling-interval", value=1)
    want = (pool - 56 * MIB // 4096) * 4096
    end = time.time() + 10
    while time.time() < end:
        st = q.qmp("qom-get", path="/machine/peripheral/bal0",
                   property="guest-stats")["stats"]
        if st["stat-free-memory"] == want:
            break
        time.sleep(0.2)
    assert st["stat-free-memory"] == want, st
    assert st["stat-total-memory"] > want
    balloon_to(q, RAM_MIB)
    assert q.qmp("query-balloon")["actual"] == RAM_MIB * MIB
    q.qmp("quit")
    q.proc.wait(30)


def test_balloon_target_above_free_ram_is_capped(qemu):
    q = qemu("balloon,hold=20000", "-device",
             "virtio-balloon-pci,disable-legacy=on", qmp=True)
    pool = int(q.wait_for(r"^balloon: ready pool (\d+) pages")[1])
    start = len(q.text())
    q.qmp("balloon", value=1 * MIB)
    target = (RAM_MIB - 1) * MIB // 4096
    q.wait_for(r"^balloon: target %d pages is above the %d we can give$"
               % (target, pool), start)
    q.wait_for(r"^balloon: target %d pages actual %d$" % (target, pool),
               start)
    assert q.qmp("query-balloon")["actual"] == RAM_MIB * MIB - pool * 4096
    q.qmp("quit")
    q.proc.wait(30)


def test_balloon_without_a_device_fails_cleanly(qemu):
    q = qemu("balloon,hold=100")
    assert q.wait_exit() == 1, q.describe()
    assert "virtio: balloon: no virtio device of type 5 (index 0) on PCI" \
        in q.text()

