"""`canopy vm console` against the fake manager
(canopy_testlib/fake_manager.py): the last 16 KiB or everything, control
bytes escaped, -o json, --follow printing new bytes and ending when the VM
stops, a server that never advances, and the errors."""
import json
import subprocess
import threading
import time

import grpc

from test_cli import canopy, fake, home, ok, run  # noqa: F401 (fixtures)

HOSTILE = b"ok\x1b[2J\x1b]0;pwned\x07\x9b31m\xff\x00\x7f tab\there\r\n"
ESCAPED = ("ok\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\xff\\x00\\x7f tab\there"
           "\r\n")


def test_tail_and_from_start(canopy, home, fake):
    log = b"".join(b"line %05d\n" % i for i in range(3000))  # 33 000 B
    fake.consoles["web1"] = log
    r = ok(canopy, home, fake, "vm", "console", "web1")
    assert r.out.encode() == log[-16384:]
    first = fake.requests("ReadConsole")[0]
    assert first.name == "web1" and first.offset == (1 << 64) - 1
    r = ok(canopy, home, fake, "vm", "console", "web1", "--from-start")
    assert r.out.encode() == log
    # More than one 64 KiB slice: read until the end.
    fake.consoles["web1"] = log * 5
    r = ok(canopy, home, fake, "vm", "console", "web1", "--from-start")
    assert r.out.encode() == log * 5
    # Nothing yet: nothing printed.
    fake.consoles["web1"] = b""
    assert ok(canopy, home, fake, "vm", "console", "web1").out == ""


def test_control_bytes_escaped(canopy, home, fake):
    fake.consoles["web1"] = HOSTILE
    p = subprocess.run([canopy, "--server", fake.address, "vm", "console",
                        "web1"], capture_output=True, timeout=20,
                       stdin=subprocess.DEVNULL,
                       env={"HOME": str(home), "PATH": "/usr/bin:/bin",
                            "CANOPY_CA": fake.ca})
    assert p.returncode == 0 and p.stderr == b""
    assert p.stdout == ESCAPED.encode()  # bytes: \r kept as it is
    assert not any(b < 0x20 and b not in b"\t\r\n" or b >= 0x7f
                   for b in p.stdout)
    r = ok(canopy, home, fake, "-o", "json", "vm", "console", "web1")
    assert json.loads(r.out) == {"data": ESCAPED,
                                 "next_offset": len(HOSTILE)}


def test_follow_until_the_vm_stops(canopy, home, fake):
    fake.consoles["web1"] = b"boot\n"

    def guest():
        for i in range(1, 6):
            time.sleep(0.15)
            fake.consoles["web1"] += b"count %d\n" % i
        time.sleep(0.3)
        fake.consoles["web1"] += b"bye\n"
        fake.vms["web1"].state = fake.common.VM_RUN_STATE_STOPPED

    t = threading.Thread(target=guest)
    t.start()
    t0 = time.monotonic()
    r = run(canopy, home, "vm", "console", "web1", "--follow",
            server=fake.address, timeout=20)
    t.join()
    assert r.rc == 0, r.err
    assert r.out == "boot\n" + "".join("count %d\n" % i
                                        for i in range(1, 6)) + "bye\n"
    assert time.monotonic() - t0 < 5
    # It polled (several reads), and asked for the VM's state.
    assert len(fake.requests("ReadConsole")) >= 5
    assert fake.requests("GetVm")
    # A stopped VM: --follow prints what there is and ends.
    r = ok(canopy, home, fake, "-o", "json", "vm", "console", "web1",
           "--follow")
    lines = [json.loads(x) for x in r.out.splitlines()]
    assert "".join(x["data"] for x in lines).endswith("bye\n")
    assert lines[-1]["next_offset"] == len(fake.consoles["web1"])


def test_server_that_never_advances(canopy, home, fake):
    fake.consoles["web1"] = b"again\n"
    fake.console_stuck = True
    r = ok(canopy, home, fake, "vm", "console", "web1", "--from-start")
    assert r.out == "again\n"


def test_errors(canopy, home, fake):
    r = run(canopy, home, "vm", "console", "nope", server=fake.address)
    assert r.rc == 3 and r.out == ""
    assert r.error_line() == ("vm 'nope' not found; 'canopy vm list' shows "
                              "the VMs")
    r = run(canopy, home, "vm", "console", "off1", server=fake.address)
    assert r.rc == 5 and r.error_line() == "vm off1 is off; start it first"
    fake.fail["ReadConsole"] = (
        grpc.StatusCode.UNAVAILABLE,
        "vm web1 is on host h1, which is disconnected; wait for the host "
        "to reconnect")
    r = run(canopy, home, "vm", "console", "web1", server=fake.address)
    assert r.rc == 7 and "host h1, which is disconnected" in r.err
    r = run(canopy, home, "vm", "console", server=fake.address)
    assert r.rc == 2
    r = run(canopy, home, "vm", "console", "web1", "--tail",
            server=fake.address)
    assert r.rc == 2 and "--tail" in r.err
    r = run(canopy, home, "vm", "console", "web1", "db1",
            server=fake.address)
    assert r.rc == 2
    fake.garbage.add("ReadConsole")
    del fake.fail["ReadConsole"]
    r = run(canopy, home, "vm", "console", "web1", server=fake.address)
    assert r.rc == 1 and r.out == "" and len(r.err.splitlines()) == 1
