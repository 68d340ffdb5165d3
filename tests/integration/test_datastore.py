"""The clustered datastore, black-box: canopy-ds, and processes acting as
hosts (tests/helpers/ds_host) on one image file: lock contention with an
independent checker, dead-host takeover timing, self-fencing, restarts and
every bad-input path of format and open."""
import json
import os
import signal
import struct
import subprocess
import time

import pytest

# Short timings so takeovers happen in about a second.
INTERVAL_MS = 100
TIMEOUT_MS = 1000
MARGIN_MS = TIMEOUT_MS // 4


def tool(build_dir, *args, check=None):
    r = subprocess.run([os.path.join(str(build_dir), "bin", "canopy-ds")] +
                       [str(a) for a in args], capture_output=True,
                       text=True, timeout=60)
    if check is not None:
        assert r.returncode == check, r.stdout + r.stderr
    return r


def host_bin(build_dir):
    return os.path.join(str(build_dir), "tests", "helpers", "ds_host")


def format_image(build_dir, path, name, size, locks):
    """A datastore with the tests' short heartbeat timings."""
    tool(build_dir, "format", path, "--name", name, "--size", size,
         "--locks", locks, "--hb-interval", INTERVAL_MS, "--hb-timeout",
         TIMEOUT_MS, check=0)
    return path


@pytest.fixture
def image(build_dir, tmp_path):
    return format_image(build_dir, tmp_path / "ds.img", "lab", "48M", 16)


@pytest.fixture
def hosts(build_dir):
    procs = []

    def start(image, hid, *args):
        p = subprocess.Popen([host_bin(build_dir), str(image), str(hid)] +
                             [str(a) for a in args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def expect_line(p, prefix, timeout=30):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line.strip()
        seen.append(line)
    raise AssertionError("no '%s' line; stdout: %s; stderr: %s"
                         % (prefix, "".join(seen[-10:]), p.stderr.read()))


# --- CRC-32C, to forge headers that pass the checksum -----------------------
def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def reseal(rec):
    rec = bytearray(rec)
    rec[508:512] = struct.pack("<I", crc32c(bytes(rec[:508])))
    return bytes(rec)


# --- format and open --------------------------------------------------------
def test_format_and_info(build_dir, image):
    info = json.loads(tool(build_dir, "info", image, "-o", "json",
                           check=0).stdout)
    assert info["name"] == "lab" and info["version"] == 1
    assert info["size"] == 48 << 20 and info["sector"] == 512
    assert info["max_hosts"] == 64 and info["max_locks"] == 16
    assert info["hb_interval_ms"] == INTERVAL_MS
    assert info["hb_timeout_ms"] == TIMEOUT_MS
    assert info["fence_margin_ms"] == MARGIN_MS
    assert info["direct_io"] is True
    assert len(info["uuid"]) == 36
    text = tool(build_dir, "info", image, check=0).stdout
    assert "O_DIRECT" in text and "lab" in text


def test_format_refusals(build_dir, tmp_path, image):
    r = tool(build_dir, "format", image, "--name", "again", check=1)
    assert "already holds a datastore; use --force" in r.stderr
    tool(build_dir, "format", image, "--name", "again", "--force",
         "--locks", "4", check=0)
    assert json.loads(tool(build_dir, "info", image, "-o", "json",
                           check=0).stdout)["name"] == "again"
    small = tmp_path / "small.img"
    r = tool(build_dir, "format", small, "--name", "x", "--size", "1M",
             check=1)
    assert "need a multiple of 512 of at least" in r.stderr
    assert not small.exists(), "a failed format left a new file behind"
    for args, words in [
        (["--sector", "1000"], "sector size 1000"),
        (["--name", "n" * 64], "datastore name"),
        (["--hb-interval", "500", "--hb-timeout", "600"],
         "at least four times the interval"),
        (["--size", "12Q"], "bad value '12Q'"),
        (["--hb-interval", "1073741824", "--hb-timeout", "10000"],
         "at most 60000"),
    ]:
        r = tool(build_dir, "format", tmp_path / "x.img", "--name", "x",
                 *args)
        assert r.returncode in (1, 2) and words in r.stderr, r.stderr
    r = tool(build_dir, "format", tmp_path / "y.img")
    assert r.returncode == 2 and "needs --name" in r.stderr


def test_open_refusals(build_dir, tmp_path, image):
    data = image.read_bytes()

    def bad(name, content, words):
        p = tmp_path / name
        p.write_bytes(content)
        r = tool(build_dir, "info", p)
        assert r.returncode == 1 and words in r.stderr, r.stderr

    bad("zero.img", bytes(1 << 20), "not a canopy datastore")
    bad("text.img", b"hello\n", "not a canopy datastore")
    flipped = bytearray(data)
    flipped[40] ^= 1  # in the name
    bad("flip.img", bytes(flipped), "corrupt superblock (checksum mismatch)")
    newer = bytearray(data)
    newer[8:12] = struct.pack("<I", 2)
    newer[:512] = reseal(newer[:512])
    bad("newer.img", bytes(newer), "format version 2; this build reads "
        "version 1")
    geom = bytearray(data)
    geom[136:144] = struct.pack("<Q", 12345)  # lock region offset
    geom[:512] = reseal(geom[:512])
    bad("geom.img", bytes(geom), "corrupt superblock (inconsistent")
    zero_sector = bytearray(data)
    zero_sector[12:16] = struct.pack("<I", 0)
    zero_sector[:512] = reseal(zero_sector[:512])
    bad("sector0.img", bytes(zero_sector), "corrupt superblock (inconsistent")
    bad("short.img", data[:len(data) // 2], "truncated: ")
    r = tool(build_dir, "info", tmp_path / "missing.img")
    assert r.returncode == 1 and "No such file" in r.stderr
    # Inspection never writes: the image is unchanged by all of the above.
    assert image.read_bytes() == data


# --- heartbeats and locks ---------------------------------------------------
def test_contended_locks_are_mutually_exclusive(build_dir, image, hosts,
                                                tmp_path):
    """Six hosts make 4800 attempts on two locks; the guard file and the
    hold intervals (CLOCK_MONOTONIC, one machine) prove one holder at a
    time."""
    guard, log = tmp_path / "guard", tmp_path / "log"
    procs = [hosts(image, h, "contend", 2, 800, guard, log, 100)
             for h in (1, 2, 3, 4, 5, 6)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
        assert "VIOLATION" not in out
    acquired = [int(out.split("acquired=")[1].split()[0])
                for out, _ in outs]
    assert all(a > 0 for a in acquired), acquired
    by_lock = {}
    for line in log.read_text().split("\n"):
        if line:
            k, h, t0, t1 = map(int, line.split())
            by_lock.setdefault(k, []).append((t0, t1, h))
    assert sum(len(v) for v in by_lock.values()) == sum(acquired)
    assert sum(acquired) > 1000, acquired
    for k, iv in by_lock.items():
        iv.sort()
        for (a0, a1, ha), (b0, b1, hb) in zip(iv, iv[1:]):
            assert a1 <= b0, "lock %d held by %d and %d at once" % (k, ha,
                                                                    hb)
    # Everyone left cleanly: no lock is held.
    assert tool(build_dir, "locks", image, "-o", "json",
                check=0).stdout.strip() == "[]"


def test_live_holder_keeps_its_lock(build_dir, image, hosts):
    holder = hosts(image, 1, "hold", 3)
    expect_line(holder, "holding 3")
    other = hosts(image, 2, "take", 3, TIMEOUT_MS * 2)
    out, _ = other.communicate(timeout=30)
    assert other.returncode == 1
    assert "lock 3: locked by host 1" in out
    locks = json.loads(tool(build_dir, "locks", image, "-o", "json",
                            check=0).stdout)
    assert [(l["lock"], l["owner"]) for l in locks] == [(3, 1)]
    hb = json.loads(tool(build_dir, "heartbeats", image, "-o", "json",
                         "--watch", 3 * INTERVAL_MS, check=0).stdout)
    live = {h["host"]: h["liveness"] for h in hb}
    assert live[1] == "alive" and live[2] == "left"


def test_dead_holder_is_broken_after_timeout_and_margin(build_dir, image,
                                                        hosts):
    holder = hosts(image, 1, "hold", 0)
    expect_line(holder, "holding 0")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    t0 = time.monotonic()
    taker = hosts(image, 2, "take", 0, 10000)
    out, err = taker.communicate(timeout=30)
    elapsed = (time.monotonic() - t0) * 1000
    assert taker.returncode == 0, out + err
    ms = int(out.split("after ")[1].split()[0])
    # Not before the observer saw the heartbeat stand still for the
    # timeout plus the margin; and soon after it.
    assert ms >= TIMEOUT_MS + MARGIN_MS, out
    assert ms < TIMEOUT_MS + MARGIN_MS + 1000, out
    assert elapsed < 10000


def test_restarted_host_takes_its_lock_back(build_dir, image, hosts):
    holder = hosts(image, 1, "hold", 5)
    expect_line(holder, "holding 5")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    t0 = time.monotonic()
    again = hosts(image, 1, "take", 5, 1000)
    out, err = again.communicate(timeout=30)
    assert again.returncode == 0, out + err
    # Joining waited out the old incarnation's heartbeat...
    assert (time.monotonic() - t0) * 1000 >= TIMEOUT_MS + MARGIN_MS
    assert "joined 1 generation 2" in out
    # ...after which the lease of generation 1 is ours at once.
    assert int(out.split("after ")[1].split()[0]) < 500, out


def test_host_id_in_use_is_refused(build_dir, image, hosts):
    first = hosts(image, 7, "hold", 1)
    expect_line(first, "holding 1")
    second = hosts(image, 7, "take", 1, 1000)
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 2
    assert "host id 7 is in use: its heartbeat advances" in out
    assert first.poll() is None


def test_stalled_host_fences_itself(build_dir, image, hosts):
    """A host that could not renew for (timeout - margin) stops all I/O
    before anyone may break its lock (timeout + margin)."""
    holder = hosts(image, 1, "hold", 2)
    expect_line(holder, "holding 2")
    holder.send_signal(signal.SIGSTOP)
    time.sleep((TIMEOUT_MS - MARGIN_MS) / 1000 + 0.2)
    holder.send_signal(signal.SIGCONT)
    assert expect_line(holder, "fenced") == "fenced"
    assert holder.wait(timeout=10) == 3


def test_bad_host_ids(build_dir, image, hosts):
    for hid in (0, 65):
        p = hosts(image, hid, "take", 0, 100)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 2 and "must be 1..64" in out


# --- files --------------------------------------------------------------------
HOST = ["--host-id", 60]  # the tool's host id in these tests


@pytest.fixture
def fimage(build_dir, tmp_path):
    return format_image(build_dir, tmp_path / "files.img", "files", "160M",
                        256)


def ls(build_dir, image):
    return {f["name"]: f for f in json.loads(
        tool(build_dir, "ls", image, "-o", "json", check=0).stdout)}


def free_blocks(build_dir, image):
    return json.loads(tool(build_dir, "info", image, "-o", "json",
                           check=0).stdout)["free_blocks"]


def test_files_create_import_export_remove(build_dir, fimage, tmp_path):
    total = free_blocks(build_dir, fimage)
    tool(build_dir, "create", fimage, "vm1/disk0", "--size", "64M", *HOST,
         check=0)
    tool(build_dir, "create", fimage, "vm1/thick", "--size", "8M",
         "--thick", *HOST, check=0)
    # A sparse local file stays thin: only its data blocks are allocated.
    local = tmp_path / "local.img"
    with open(local, "wb") as f:
        f.write(os.urandom(3 << 20))
        f.seek(20 << 20)
        f.write(b"end-of-disk" * 100)
    tool(build_dir, "import", fimage, local, "vm2/disk0", *HOST, check=0)
    files = ls(build_dir, fimage)
    assert files["vm1/disk0"]["size"] == 64 << 20
    assert files["vm1/disk0"]["allocated"] == 0
    assert files["vm1/thick"]["allocated"] == 8 << 20
    assert files["vm2/disk0"]["allocated"] == 4 << 20
    out = tmp_path / "out.img"
    tool(build_dir, "export", fimage, "vm2/disk0", out, *HOST, check=0)
    size = os.path.getsize(local)
    assert out.read_bytes()[:size] == local.read_bytes()
    assert not os.path.exists(str(out) + ".partial")
    # vm2/disk0 (4 data blocks + map), vm1/thick (8 + map) are in use.
    assert free_blocks(build_dir, fimage) == total - 5 - 9
    for name in ("vm1/disk0", "vm1/thick", "vm2/disk0"):
        tool(build_dir, "rm", fimage, name, *HOST, check=0)
    assert ls(build_dir, fimage) == {}
    assert free_blocks(build_dir, fimage) == total
    assert tool(build_dir, "fsck", fimage, check=0).stdout.endswith(
        "clean\n")


def test_file_errors(build_dir, fimage, hosts, tmp_path):
    tool(build_dir, "create", fimage, "a/b", "--size", "1M", *HOST, check=0)
    for args, words in [
        (["create", fimage, "a/b", "--size", "1M"], "a/b: name exists"),
        (["create", fimage, "../x", "--size", "1M"], "'.' or '..'"),
        (["create", fimage, "a//b", "--size", "1M"], "empty"),
        (["create", fimage, "a b", "--size", "1M"], "character 0x20"),
        (["create", fimage, "x", "--size", "1000"], "must be a multiple"),
        (["create", fimage, "big", "--size", "1G", "--thick"],
         "no space: 1025 blocks needed"),
        (["rm", fimage, "nope"], "nope: no such file"),
        (["export", fimage, "nope", tmp_path / "o"], "nope: no such file"),
        (["import", fimage, tmp_path / "missing", "x"], "No such file"),
    ]:
        r = tool(build_dir, *args, *HOST)
        assert r.returncode == 1 and words in r.stderr, (args, r.stderr)
    r = tool(build_dir, "create", fimage, "y", "--size", "1M")
    assert r.returncode == 2 and "--host-id" in r.stderr
    assert set(ls(build_dir, fimage)) == {"a/b"}


def test_file_in_use_cannot_be_removed(build_dir, fimage, hosts):
    tool(build_dir, "create", fimage, "vm/disk", "--size", "1M", *HOST,
         check=0)
    # A file's lock is the lock with its inode's index.
    holder = hosts(fimage, 3, "hold", ls(build_dir, fimage)["vm/disk"][
        "inode"])
    expect_line(holder, "holding")
    assert ls(build_dir, fimage)["vm/disk"]["locked_by"] == 3
    r = tool(build_dir, "rm", fimage, "vm/disk", *HOST)
    assert r.returncode == 1 and "locked by host 3" in r.stderr
    assert "vm/disk" in ls(build_dir, fimage)


def test_killed_host_loses_nothing_committed(build_dir, fimage, hosts):
    """A host churning files is SIGKILLed at random points; recovery by
    another host (fsck --repair) replays its journal and reclaims orphans;
    every file whose creation it acknowledged and did not remove is
    there, and fsck is clean."""
    import random
    rnd = random.Random(7)
    for rounds in range(5):
        p = hosts(fimage, 1 + rounds, "churn", "r%d" % rounds, 400)
        expect_line(p, "created")
        time.sleep(rnd.uniform(0.05, 0.5))
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate(timeout=30)
        created = {l.split()[1] for l in out.split("\n")
                   if l.startswith("created ")}
        removed = {l.split()[1] for l in out.split("\n")
                   if l.startswith("removed ")}
        assert "done" not in out, "killed too late to test anything"
        r = tool(build_dir, "fsck", fimage, "--repair", *HOST)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "fsck (after repair): " in r.stdout and \
            r.stdout.endswith("clean\n"), r.stdout
        have = set(ls(build_dir, fimage))
        missing = (created | {"r%d/h%d-1" % (rounds, 1 + rounds)}) \
            - removed - have
        # At most the file a remove was working on may be gone.
        assert len(missing) <= 1, missing
    assert tool(build_dir, "fsck", fimage, check=0).returncode == 0


def test_fsck_finds_and_repairs(build_dir, fimage, tmp_path):
    tool(build_dir, "create", fimage, "a", "--size", "4M", "--thick", *HOST,
         check=0)
    tool(build_dir, "create", fimage, "b", "--size", "4M", "--thick", *HOST,
         check=0)
    info = json.loads(tool(build_dir, "info", fimage, "-o", "json",
                           check=0).stdout)
    sector = info["sector"]
    data = bytearray(fimage.read_bytes())
    # Where the inode table starts: read it from the superblock.
    inode_off = struct.unpack_from("<Q", data, 168)[0]
    # Wipe inode 1 (file "a"): its 5 blocks become orphans.
    data[inode_off + sector:inode_off + 2 * sector] = bytes(sector)
    orphaned = tmp_path / "orphans.img"
    orphaned.write_bytes(bytes(data))
    r = tool(build_dir, "fsck", orphaned)
    assert r.returncode == 1 and "5 blocks allocated but used by no file" \
        in r.stdout
    r = tool(build_dir, "fsck", orphaned, "--repair", *HOST)
    assert r.returncode == 0 and r.stdout.endswith("clean\n"), r.stdout
    assert set(ls(build_dir, orphaned)) == {"b"}
    # Flipped bits in each region are reported, never a crash.
    for what, off in [("inode", inode_off + 2 * sector + 40),
                      ("bitmap", struct.unpack_from("<Q", data, 176)[0] + 9),
                      ("lease", struct.unpack_from("<Q", data, 136)[0] + 5),
                      ("journal", struct.unpack_from("<Q", data, 160)[0] +
                       59 * sector + 10)]:
        bad = bytearray(fimage.read_bytes())
        bad[off] ^= 0x10
        p = tmp_path / ("bad-%s.img" % what)
        p.write_bytes(bytes(bad))
        r = tool(build_dir, "fsck", p)
        assert r.returncode == 1, (what, r.stdout, r.stderr)
        assert "corrupt" in r.stdout, (what, r.stdout)


def test_rename_and_extend(build_dir, fimage, hosts, tmp_path):
    tool(build_dir, "create", fimage, "vm/old", "--size", "2M", *HOST,
         check=0)
    tool(build_dir, "create", fimage, "vm/other", "--size", "1M", *HOST,
         check=0)
    tool(build_dir, "rename", fimage, "vm/old", "vm/new", *HOST, check=0)
    assert set(ls(build_dir, fimage)) == {"vm/new", "vm/other"}
    r = tool(build_dir, "rename", fimage, "vm/new", "vm/other", *HOST)
    assert r.returncode == 1 and "vm/other: name exists" in r.stderr
    r = tool(build_dir, "rename", fimage, "vm/new", "bad name", *HOST)
    assert r.returncode == 1 and "character 0x20" in r.stderr
    tool(build_dir, "extend", fimage, "vm/new", "--size", "8M", *HOST,
         check=0)
    f = ls(build_dir, fimage)["vm/new"]
    assert f["size"] == 8 << 20 and f["allocated"] == 0
    r = tool(build_dir, "extend", fimage, "vm/new", "--size", "1M", *HOST)
    assert r.returncode == 1 and "shrinking" in r.stderr
    # The grown part is usable: write past the old end and read it back.
    local = tmp_path / "grown.img"
    local.write_bytes(os.urandom(6 << 20))
    tool(build_dir, "rm", fimage, "vm/new", *HOST, check=0)
    tool(build_dir, "import", fimage, local, "vm/new", *HOST, check=0)
    tool(build_dir, "extend", fimage, "vm/new", "--size", "12M", *HOST,
         check=0)
    out = tmp_path / "out.img"
    tool(build_dir, "export", fimage, "vm/new", out, *HOST, check=0)
    data = out.read_bytes()
    assert data[:6 << 20] == local.read_bytes()
    assert data[6 << 20:] == bytes(6 << 20)
    # A file in use may not be renamed.
    holder = hosts(fimage, 3, "hold", ls(build_dir, fimage)["vm/other"][
        "inode"])
    expect_line(holder, "holding")
    r = tool(build_dir, "rename", fimage, "vm/other", "vm/x", *HOST)
    assert r.returncode == 1 and "locked by host 3" in r.stderr
    # A lock held by a live host is not stale: fsck stays clean.
    assert tool(build_dir, "fsck", fimage).returncode == 0


def test_corrupt_heartbeat_slot_is_reported(build_dir, image, hosts):
    p = hosts(image, 5, "take", 1, 1000)
    assert p.wait(timeout=30) == 0
    data = bytearray(image.read_bytes())
    data[4096 + 4 * 512 + 20] ^= 0x01  # host 5's slot
    image.write_bytes(bytes(data))
    hb = tool(build_dir, "heartbeats", image, check=0).stdout
    assert "corrupt" in hb


def test_hostile_journal_is_not_replayed(build_dir, fimage):
    """A checksum-valid journal that names the superblock as a target (a
    corrupt or hostile disk) is dropped, not applied."""
    data = bytearray(fimage.read_bytes())
    sector = 512
    jo = struct.unpack_from("<Q", data, 160)[0]
    jsec = struct.unpack_from("<I", data, 156)[0]
    payload = bytes([0x66]) * sector
    hdr = bytearray(sector)
    struct.pack_into("<IIQIIQ", hdr, 0, 0x4c4e524a, 1, 1, 1,
                     crc32c(payload), 0)  # target: offset 0, the superblock
    host = 7
    data[jo + (host - 1) * sector:jo + host * sector] = reseal(hdr)
    po = jo + 64 * sector + (host - 1) * (jsec - 1) * sector
    data[po:po + sector] = payload
    fimage.write_bytes(bytes(data))
    r = tool(build_dir, "fsck", fimage)
    assert r.returncode == 1 and "journal of host 7" in r.stdout
    # The next metadata change replays journals: this one is dropped.
    tool(build_dir, "create", fimage, "after", "--size", "1M", *HOST,
         check=0)
    assert json.loads(tool(build_dir, "info", fimage, "-o", "json",
                           check=0).stdout)["name"] == "files"
    assert tool(build_dir, "fsck", fimage).returncode == 0


def test_hostile_inode_sizes_are_refused(build_dir, fimage, tmp_path):
    tool(build_dir, "create", fimage, "victim", "--size", "2M", "--thick",
         *HOST, check=0)
    ino = ls(build_dir, fimage)["victim"]["inode"]
    data = bytearray(fimage.read_bytes())
    off = struct.unpack_from("<Q", data, 168)[0] + ino * 512
    rec = bytearray(data[off:off + 512])
    struct.pack_into("<Q", rec, 24, (1 << 64) - 1)  # size
    data[off:off + 512] = reseal(rec)
    fimage.write_bytes(bytes(data))
    r = tool(build_dir, "ls", fimage)
    assert r.returncode == 1 and "corrupt" in r.stderr
    r = tool(build_dir, "fsck", fimage)
    assert r.returncode == 1 and "beyond what a block map holds" in r.stdout
    r = tool(build_dir, "export", fimage, "victim", tmp_path / "v", *HOST)
    assert r.returncode == 1 and "corrupt inode" in r.stderr
    # Removing it frees the name; its blocks are orphans fsck reclaims.
    tool(build_dir, "rm", fimage, "victim", *HOST, check=0)
    tool(build_dir, "fsck", fimage, "--repair", *HOST, check=0)


def test_two_processes_joining_with_one_id(build_dir, image, hosts):
    """Both find the slot left cleanly and join at once: only one may
    stay (the nonce check), or both would think they hold every lock."""
    first = hosts(image, 9, "take", 1, 1000)
    assert first.wait(timeout=30) == 0
    a = hosts(image, 9, "hold", 3)
    b = hosts(image, 9, "hold", 4)
    outs = []
    for p in (a, b):
        try:
            out, _ = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            out = "still running"
        outs.append((p.poll(), out))
    refused = [o for rc, o in outs if rc == 2 and "host id 9 is in use" in o]
    assert len(refused) >= 1, outs
