"""canopy-vmm's virtio-net (host/vmm/virtio_net.c, net_backend.c) with the
test guest's `net` workload (guest/work_net.c): two guests on a unix
datagram pair, a ping through a TAP interface from a network namespace,
QEMU's `-netdev dgram` at the other end of the pair, hostile frames from
the backend, and bad --net options."""
import os
import re
import socket
import struct
import subprocess
import time
import uuid

import pytest

from canopy_testlib.vmm import Vmm

pytestmark = pytest.mark.kvm

RECV = re.compile(r"^net: udprecv got (\d+) lost (\d+) bad (\d+) ", re.M)
SENT = re.compile(r"^net: udpsend sent (\d+) bytes (\d+) ", re.M)
MAC = re.compile(r"^net: mac ([0-9a-f:]{17}) link (up|down) ", re.M)
CLOSED = re.compile(r'msg="nic closed" dev=virtio-net0 (.*)$', re.M)


def guest_elf(build_dir):
    return os.path.join(str(build_dir), "guest", "canopy-testguest.elf")


@pytest.fixture
def vms(build_dir, tmp_path):
    started = []

    def start(name, cmdline, *args, **kw):
        vm = Vmm(build_dir, tmp_path, "--kernel", guest_elf(build_dir),
                 "--cmdline", cmdline, *args, name=name, control=False,
                 **kw)
        started.append(vm)
        return vm

    yield start
    for vm in started:
        vm.kill()


def counters(vm):
    """The NIC's counters from the VMM's last log line about it."""
    m = CLOSED.search(vm.log_text())
    assert m, "no 'nic closed' line:\n" + vm.log_text()[-2000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m[1])}


def short_dir():
    """unix socket paths must fit in 108 bytes: pytest's tmp_path may not."""
    d = "/tmp/cnet-" + uuid.uuid4().hex[:8]
    os.mkdir(d)
    # Shared like /tmp: jailed VMMs (each its own uid) remove their sockets.
    os.chmod(d, 0o1777)
    return d


@pytest.fixture
def sockdir():
    d = short_dir()
    yield d
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)


def test_two_guests_exchange_a_udp_stream_without_loss(vms, sockdir):
    a, b = os.path.join(sockdir, "a"), os.path.join(sockdir, "b")
    count = 20000
    rx = vms("rx", "net,ip=10.0.0.2,mode=udprecv,count=%d,len=1000,secs=60"
             % count, "--net", "unix=%s,local=%s" % (a, b))
    tx = vms("tx", "net,ip=10.0.0.1,mode=udpsend,peer=10.0.0.2,count=%d,"
             "len=1000,secs=60" % count, "--net",
             "unix=%s,local=%s,mac=52:54:00:00:00:01" % (b, a))
    assert tx.wait_exit(90) == 0, tx.console_text() + tx.log_text()
    assert rx.wait_exit(30) == 0, rx.console_text() + rx.log_text()
    m = RECV.search(rx.console_text())
    assert m and m.groups() == (str(count), "0", "0"), rx.console_text()
    assert SENT.search(tx.console_text())[1] == str(count)
    # The MAC given, and the default one derived from the VM's name.
    assert MAC.search(tx.console_text()).groups() == ("52:54:00:00:00:01",
                                                      "up")
    mac = MAC.search(rx.console_text())[1]
    assert mac.startswith("52:54:00:") and mac != "52:54:00:00:00:01"
    # Every datagram went through both devices (plus ARP both ways).
    ct, cr = counters(tx), counters(rx)
    assert ct["tx_packets"] >= count and cr["rx_packets"] >= count
    assert ct["tx_errors"] == cr["rx_too_big"] == cr["rx_runts"] == 0
    # The receiving side's socket queue filled up (net.unix.max_dgram_qlen
    # is small) and the sender waited instead of dropping.
    assert ct["tx_full"] > 0, ct
    # The VMM removed the socket it bound.
    assert not os.path.exists(a) and not os.path.exists(b)


def eth(dst, src, typ, payload):
    return dst + src + struct.pack("!H", typ) + payload


def arp_request(src_mac, src_ip, target_ip):
    return eth(b"\xff" * 6, src_mac, 0x0806, struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac,
        socket.inet_aton(src_ip), b"\0" * 6, socket.inet_aton(target_ip)))


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def icmp_echo(dst_mac, src_mac, src_ip, dst_ip, ident, seq, data):
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1,
                     0, socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return eth(dst_mac, src_mac, 0x0800, ip + icmp)


def test_guest_answers_arp_and_ping_and_hostile_frames_are_counted(
        vms, sockdir):
    """The test plays the switch port: raw frames over the datagram
    socket, some too big for the guest's 2048-byte buffers, some runts."""
    ours, theirs = os.path.join(sockdir, "sw"), os.path.join(sockdir, "vm")
    sw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sw.bind(ours)
    os.chmod(ours, 0o666)  # a jailed VMM (its own uid) sends here
    sw.settimeout(10)
    vm = vms("resp", "net,ip=192.168.7.2,secs=3", "--net",
             "unix=%s,local=%s,mac=52:54:00:aa:bb:cc" % (ours, theirs))
    vm.wait_console(lambda t: "link up" in t, 10, "the NIC up")
    time.sleep(0.2)  # rx buffers posted right after the line
    me = bytes.fromhex("020000000001")
    guest = bytes.fromhex("525400aabbcc")
    for junk in (b"\x01" * 3000, b"\x02" * 10, b"\x03" * 60000):
        sw.sendto(junk, theirs)
    sw.sendto(arp_request(me, "192.168.7.1", "192.168.7.2"), theirs)
    reply = sw.recv(4096)
    assert reply[:6] == me and reply[6:12] == guest
    assert reply[12:14] == b"\x08\x06" and reply[20:22] == b"\x00\x02"
    assert reply[22:28] == guest and reply[28:32] == bytes([192, 168, 7, 2])
    payload = bytes(range(200))
    sw.sendto(icmp_echo(guest, me, "192.168.7.1", "192.168.7.2", 77, 5,
                        payload), theirs)
    r = sw.recv(4096)
    assert r[12:14] == b"\x08\x00" and r[23] == 1  # IPv4, ICMP
    assert checksum(r[14:34]) == 0 and checksum(r[34:]) == 0
    assert r[34] == 0 and struct.unpack("!HH", r[38:42]) == (77, 5)
    assert r[42:] == payload
    assert vm.wait_exit(20) == 0, vm.console_text()
    assert "net: responder secs 3 arp 1 icmp 1" in vm.console_text()
    c = counters(vm)
    assert c["rx_too_big"] == 2 and c["rx_runts"] == 1, c
    assert c["tx_packets"] == 2 and c["rx_packets"] == 2, c
    sw.close()


def thread_cpu(pid):
    """{thread id: user plus system CPU seconds so far} of a process."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        out[tid] = (int(fields[11]) + int(fields[12])) / \
            os.sysconf("SC_CLK_TCK")
    return out


def busy_threads(pid, secs=1.0, busy=0.3):
    """Threads that used more than `busy` of a CPU over secs."""
    a = thread_cpu(pid)
    time.sleep(secs)
    b = thread_cpu(pid)
    return [t for t in b if b[t] - a.get(t, 0) > busy * secs]


@pytest.mark.root
def test_tap_carries_a_ping_from_a_network_namespace(build_dir, tmp_path):
    ns = "cnet-" + uuid.uuid4().hex[:8]
    tap = "ct" + uuid.uuid4().hex[:8]
    console = str(tmp_path / "tap.console")
    logf = open(str(tmp_path / "tap.log"), "w+")

    def ip(*args):
        subprocess.run(["ip", "-n", ns] + list(args), check=True)

    def text():
        with open(console, "rb") as f:
            return f.read().decode(errors="replace")

    subprocess.run(["ip", "netns", "add", ns], check=True)
    vm = None
    try:
        ip("link", "set", "lo", "up")
        ip("tuntap", "add", "dev", tap, "mode", "tap")
        ip("addr", "add", "10.77.0.1/24", "dev", tap)
        ip("link", "set", tap, "up")
        # The VMM runs inside the namespace, where the interface is.
        vm = subprocess.Popen(
            ["ip", "netns", "exec", ns,
             os.path.join(str(build_dir), "bin", "canopy-vmm"), "--kernel",
             guest_elf(build_dir), "--cmdline", "net,ip=10.77.0.2,secs=5",
             "--serial", "file:" + console, "--net", "tap=" + tap],
            stdout=logf, stderr=subprocess.STDOUT)
        end = time.monotonic() + 10
        while time.monotonic() < end and (
                not os.path.exists(console) or "link up" not in text()):
            time.sleep(0.05)
        time.sleep(0.2)  # rx buffers are posted right after the line
        p = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "3",
                            "-i", "0.2", "-W", "2", "10.77.0.2"],
                           capture_output=True, text=True, timeout=20)
        assert "3 packets transmitted, 3 received" in p.stdout, \
            p.stdout + p.stderr + text()
        # The interface goes away under the VMM: link down, said once, and
        # the device's worker does not spin on the dead fd (poll reports
        # POLLERR whatever it is asked).
        ip("link", "del", tap)
        time.sleep(0.5)
        # The guest polls its rings: its vCPU is busy, nothing else.
        busy = busy_threads(vm.pid)
        assert len(busy) <= 1, busy
        vm.wait(20)
        logf.seek(0)
        log = logf.read()
        assert log.count("backend failed: link down") == 1, log
        assert vm.returncode == 0, log
        m = re.search(r"^net: responder secs 5 arp (\d+) icmp (\d+)$",
                      text(), re.M)
        assert m and int(m[1]) >= 1 and int(m[2]) == 3, text()
        assert "backend=\"tap %s\"" % tap in log, log
    finally:
        if vm and vm.poll() is None:
            vm.kill()
            vm.wait()
        logf.close()
        subprocess.run(["ip", "netns", "del", ns])


@pytest.mark.qemu
@pytest.mark.parametrize("qemu_sends", [True, False])
def test_stream_to_and_from_qemu_netdev_dgram(vms, sockdir, tmp_path,
                                              build_dir, qemu_sends):
    ours, theirs = os.path.join(sockdir, "c"), os.path.join(sockdir, "q")
    count = 3000
    send = "mode=udpsend,peer=10.1.0.2,count=%d,secs=40" % count
    recv = "mode=udprecv,count=%d,secs=40" % count
    vm = vms("c", "net,ip=%s,%s" % ("10.1.0.2" if qemu_sends else "10.1.0.1",
                                     recv if qemu_sends else send),
             "--net", "unix=%s,local=%s" % (theirs, ours))
    khz = re.search(r"tsc_khz=(\d+)\(", vm.wait_console(
        lambda t: "tsc_khz=" in t, 10, "the banner"))[1]
    con = str(tmp_path / "qemu.console")
    q = subprocess.Popen(
        ["qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-cpu",
         "host,-arch-capabilities", "-m", "256", "-display", "none", "-vga",
         "none", "-nic", "none", "-no-reboot", "-serial", "file:" + con,
         "-kernel", guest_elf(build_dir), "-append",
         "tsc_khz=%s net,ip=%s,%s" % (khz, "10.1.0.1" if qemu_sends else
                                      "10.1.0.2", send if qemu_sends
                                      else recv),
         "-netdev", "dgram,id=n0,local.type=unix,local.path=%s,"
         "remote.type=unix,remote.path=%s" % (theirs, ours),
         "-device", "virtio-net-pci,netdev=n0,disable-legacy=on"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        umask=0)  # its socket: writable by the jailed VMM's own uid
    try:
        out = q.communicate(timeout=90)[0].decode(errors="replace")
    finally:
        if q.poll() is None:
            q.kill()
            q.wait()
    with open(con, "rb") as f:
        qtext = f.read().decode(errors="replace")
    assert "canopy-testguest: exit 0" in qtext, qtext + out
    assert vm.wait_exit(30) == 0, vm.console_text()
    rtext = vm.console_text() if qemu_sends else qtext
    m = RECV.search(rtext)
    assert m and m.groups() == (str(count), "0", "0"), rtext


@pytest.mark.parametrize("opt,words", [
    ("tap=", "tap=NAME needs an interface name of 1 to 15"),
    ("tap=a-very-long-name0", "tap=NAME needs an interface name"),
    ("tap=x/y", "tap=NAME needs an interface name"),
    ("unix=/tmp/x,mac=52:54:00:zz:00:01", "mac=52:54:00:zz:00:01 is not"),
    ("unix=/tmp/x,mac=01:00:5e:00:00:01", "is not a unicast address"),
    ("unix=/tmp/x,mac=00:00:00:00:00:00", "is not a unicast address"),
    ("unix=/tmp/x,mac=52:54:00:00:00:01,mac=52:54:00:00:00:02",
     "'mac=52:54:00:00:00:02' not understood (or given twice)"),
    ("unix=/tmp/x,speed=10", "'speed=10' not understood"),
    ("unix=/tmp/x,promisc", "'promisc' not understood"),
    ("tap=t0,unix=/tmp/x", "'unix=/tmp/x' not understood"),
    ("local=/tmp/x", "a backend is required"),
    ("mac=52:54:00:00:00:01", "a backend is required"),
    ("unix=/tmp/" + "x" * 120, "unix=PATH needs a path of 1 to 107"),
])
def test_bad_net_options_exit_2(build_dir, tmp_path, opt, words):
    r = subprocess.run([os.path.join(str(build_dir), "bin", "canopy-vmm"),
                        "--kernel", guest_elf(build_dir), "--net", opt],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr, r.stderr
    assert r.stderr.startswith("canopy-vmm: --net"), r.stderr


def test_unusable_backends_exit_2(build_dir, sockdir):
    vmm = os.path.join(str(build_dir), "bin", "canopy-vmm")
    live = os.path.join(sockdir, "live")
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    holder.bind(live)
    cases = [
        ("unix=%s/peer,local=/nonexistent-dir/x" % sockdir,
         "--net local=/nonexistent-dir/x: No such file or directory"),
        ("unix=%s/peer,local=%s" % (sockdir, live),
         "another process is bound there"),
    ]
    if os.geteuid() != 0:
        cases.append(("tap=cnet0", "--net tap=cnet0: cannot attach"))
    for opt, words in cases:
        r = subprocess.run([vmm, "--kernel", guest_elf(build_dir), "--net",
                            opt], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 2 and words in r.stderr, (opt, r.stderr)
    holder.close()
    # A socket file left by a dead process is replaced, not refused.
    r = subprocess.run([vmm, "--kernel", guest_elf(build_dir), "--cmdline",
                        "hello", "--serial", "none", "--net",
                        "unix=%s/peer,local=%s" % (sockdir, live)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(live)


@pytest.mark.parametrize("cmdline,words,code", [
    ("net", "needs ip=A.B.C.D", 2),
    ("net,ip=10.0.0.256", "ip=10.0.0.256 is not an IPv4 address", 2),
    ("net,ip=10.0.0", "is not an IPv4 address", 2),
    ("net,ip=10.0.0.1,mode=udpsend", "needs ip=A.B.C.D and peer=A.B.C.D", 2),
    ("net,ip=10.0.0.1,mode=flood", "unknown mode 'flood'", 2),
    ("net,ip=10.0.0.1,len=4", "len in 8..1472", 2),
    ("net,ip=10.0.0.1,rate=5", "unknown option 'rate'", 2),
    ("net,ip=10.0.0.1,dev=1", "no virtio device of type 1 (index 1)", 1),
])
def test_bad_net_workload_arguments(vms, sockdir, cmdline, words, code):
    vm = vms("bad", cmdline, "--net", "unix=%s/peer" % sockdir)
    assert vm.wait_exit(20) == 0, vm.log_text()
    text = vm.console_text()
    assert words in text and "canopy-testguest: exit %d" % code in text, text


def test_udpsend_without_a_peer_gives_up(vms, sockdir):
    vm = vms("lonely", "net,ip=10.0.0.1,mode=udpsend,peer=10.0.0.9,secs=1",
             "--net", "unix=%s/nobody" % sockdir)
    assert vm.wait_exit(20) == 0, vm.log_text()
    text = vm.console_text()
    assert "net: no ARP reply from 10.0.0.9 after 1 s" in text, text
    assert "canopy-testguest: exit 1" in text
    # Each ARP request was lost at the backend (nobody bound there).
    assert counters(vm)["tx_errors"] >= 3


def ping_once(sw, theirs, guest_mac, ident):
    """ARP for the guest, then one echo; the (ARP reply, echo reply)."""
    me = bytes.fromhex("020000000001")
    sw.sendto(arp_request(me, "192.168.8.1", "192.168.8.2"), theirs)
    arp = sw.recv(4096)
    sw.sendto(icmp_echo(guest_mac, me, "192.168.8.1", "192.168.8.2", ident,
                        1, b"snap" * 8), theirs)
    return arp, sw.recv(4096)


def test_snapshot_keeps_the_mac_and_counters(build_dir, tmp_path, sockdir):
    ours, theirs = os.path.join(sockdir, "sw"), os.path.join(sockdir, "vm")
    net = "unix=%s,local=%s" % (ours, theirs)
    snap = tmp_path / "net.snap"
    sw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sw.bind(ours)
    os.chmod(ours, 0o666)  # a jailed VMM (its own uid) sends here
    sw.settimeout(10)
    started = []
    try:
        vm = Vmm(build_dir, tmp_path, "--kernel", guest_elf(build_dir),
                 "--cmdline", "net,ip=192.168.8.2,secs=30", "--net", net,
                 name="src")
        started.append(vm)
        ctl = vm.wait_control()
        mac = bytes.fromhex(MAC.search(vm.wait_console(
            lambda t: "link up" in t, 10, "the NIC up"))[1].replace(":", ""))
        time.sleep(0.2)
        arp, echo = ping_once(sw, theirs, mac, 1)
        assert arp[6:12] == mac and echo[6:12] == mac and echo[34] == 0
        ctl.save(snap, stop_after=True)
        assert vm.wait_exit() == 0
        before = counters(vm)
        # Restored with another mac= on the command line: the device keeps
        # the saved one (the guest knows it) and says so.
        vm2 = Vmm(build_dir, tmp_path, "--restore", snap, "--net",
                  net + ",mac=52:54:00:99:99:99", name="dst")
        started.append(vm2)
        ctl2 = vm2.wait_control()
        assert ("the snapshot's MAC replaces the option's\" dev=virtio-net0 "
                "mac=%s" % ":".join("%02x" % b for b in mac)
                in vm2.log_text()), vm2.log_text()
        arp, echo = ping_once(sw, theirs, mac, 2)
        assert arp[6:12] == mac and echo[6:12] == mac
        assert struct.unpack("!HH", echo[38:42]) == (2, 1)
        ctl2.stop()
        assert vm2.wait_exit() == 0
        after = counters(vm2)
        assert after["rx_packets"] == before["rx_packets"] + 2, (before,
                                                                 after)
        assert after["tx_packets"] == before["tx_packets"] + 2
    finally:
        for v in started:
            v.kill()
        sw.close()


def test_bad_transmit_chain_stops_the_nic_until_the_guest_resets_it(
        vms, sockdir):
    ours, theirs = os.path.join(sockdir, "sw"), os.path.join(sockdir, "vm")
    sw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sw.bind(ours)
    os.chmod(ours, 0o666)  # a jailed VMM (its own uid) sends here
    sw.settimeout(10)
    vm = vms("bad", "net,ip=192.168.9.2,mode=badtx,secs=3", "--net",
             "unix=%s,local=%s,mac=52:54:00:00:00:42" % (ours, theirs))
    # A 4-byte transmit buffer (no room for the header): the device stops
    # and says so; the guest resets it and starts over.
    text = vm.wait_console(lambda t: t.count("link up") == 2, 10,
                           "the NIC up again after the reset")
    m = re.search(r"^net: badtx device status 0x([0-9a-f]+)$", text, re.M)
    assert m and int(m[1], 16) & 0x40, text
    assert ('msg="device needs reset: it stops until the guest resets it" '
            'dev=virtio-net0 why="bad transmit chain"' in vm.log_text())
    time.sleep(0.2)
    sw.sendto(arp_request(bytes.fromhex("020000000001"), "192.168.9.1",
                          "192.168.9.2"), theirs)
    reply = sw.recv(4096)
    assert reply[6:12] == bytes.fromhex("525400000042")
    assert vm.wait_exit(20) == 0, vm.log_text()
    assert "net: responder secs 3 arp 1 icmp 0" in vm.console_text()
    c = counters(vm)
    assert c["tx_packets"] == 1 and c["tx_bad_len"] == 0, c
    sw.close()


def test_sender_snapshot_mid_stream_loses_and_repeats_nothing(
        build_dir, tmp_path, sockdir):
    """Saved and restored while it streams: every datagram arrives once
    (a frame handed to the backend is always completed before the device
    parks; one the backend could not take is still on the ring)."""
    a, b = os.path.join(sockdir, "a"), os.path.join(sockdir, "b")
    count = 150000
    snap = tmp_path / "tx.snap"
    rx = Vmm(build_dir, tmp_path, "--kernel", guest_elf(build_dir),
             "--cmdline", "net,ip=10.0.0.2,mode=udprecv,count=%d,secs=120"
             % count, "--net", "unix=%s,local=%s" % (a, b), name="rx",
             control=False)
    tx = Vmm(build_dir, tmp_path, "--kernel", guest_elf(build_dir),
             "--cmdline", "net,ip=10.0.0.1,mode=udpsend,peer=10.0.0.2,"
             "count=%d,secs=120" % count, "--net",
             "unix=%s,local=%s" % (b, a), name="tx")
    started = [rx, tx]
    try:
        ctl = tx.wait_control()
        tx.wait_console(lambda t: "net: arp 10.0.0.2 is at" in t, 10,
                        "the peer resolved")
        time.sleep(0.5)  # mid-stream
        # Not paused first: `save` with `stop_after` must keep the guest
        # stopped from the snapshot on (it once resumed it for a moment,
        # and the frames sent then came again from the restored VM: 454
        # duplicates out of 150000).
        ctl.save(snap, stop_after=True)
        assert tx.wait_exit() == 0
        assert "net: udpsend sent" not in tx.console_text()
        tx2 = Vmm(build_dir, tmp_path, "--restore", snap, "--net",
                  "unix=%s,local=%s" % (b, a), name="tx2")
        started.append(tx2)
        assert tx2.wait_exit(120) == 0, tx2.log_text()
        assert rx.wait_exit(60) == 0, rx.console_text()
        m = RECV.search(rx.console_text())
        assert m and m.groups() == (str(count), "0", "0"), \
            rx.console_text()
        assert SENT.search(tx2.console_text())[1] == str(count)
    finally:
        for v in started:
            v.kill()


def test_a_restarted_peer_is_heard_and_answered(vms, sockdir):
    """The switch's socket is replaced (a new socket at the same path)
    while the guest only answers: its frames still get in, and the answers
    reach the new socket."""
    ours, theirs = os.path.join(sockdir, "sw"), os.path.join(sockdir, "vm")
    me = bytes.fromhex("020000000001")
    vm = vms("resp", "net,ip=192.168.6.2,secs=4", "--net",
             "unix=%s,local=%s" % (ours, theirs))
    vm.wait_console(lambda t: "link up" in t, 10, "the NIC up")
    time.sleep(0.2)
    for _ in range(2):
        sw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sw.bind(ours)
        os.chmod(ours, 0o666)  # a jailed VMM (its own uid) sends here
        sw.settimeout(10)
        sw.sendto(arp_request(me, "192.168.6.1", "192.168.6.2"), theirs)
        assert sw.recv(4096)[20:22] == b"\x00\x02"  # an ARP reply
        sw.close()
        os.unlink(ours)
    assert vm.wait_exit(20) == 0, vm.console_text()
    assert "net: responder secs 4 arp 2 icmp 0" in vm.console_text()
