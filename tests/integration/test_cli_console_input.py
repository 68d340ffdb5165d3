"""`canopy vm console` input against the fake manager
(canopy_testlib/fake_manager.py): piped stdin and --input sent in order in
WriteConsole calls of at most 4 KiB, a full queue (RESOURCE_EXHAUSTED)
waited out without losing or repeating bytes, the output printed (escaped)
while typing, Ctrl-] only special on a terminal, --follow keeping a piped
stdin read-only, and the errors."""
import os
import subprocess
import time

import grpc

from test_cli import canopy, fake, home  # noqa: F401 (fixtures)


def run_in(canopy, home, fake, args, data, timeout=30):
    p = subprocess.run([canopy, "--server", fake.address] + list(args),
                       input=data, capture_output=True, timeout=timeout,
                       env={"HOME": str(home), "PATH": "/usr/bin:/bin",
                            "CANOPY_CA": fake.ca})
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_piped_input_in_order_with_full_queue(canopy, home, fake):
    data = bytes(range(256)) * 80  # 20 KiB, every byte value, Ctrl-] too
    fake.console_full = 3
    t0 = time.monotonic()
    rc, out, err = run_in(canopy, home, fake, ["vm", "console", "web1"],
                          data)
    assert rc == 0, err
    assert fake.typed["web1"] == data
    calls = fake.requests("WriteConsole")
    assert all(len(c.data) <= 4096 and c.name == "web1" for c in calls)
    assert len(calls) == 5 + 3  # 5 accepted, 3 refused and sent again
    # After the input: output waited for 1.5 s, not forever.
    assert time.monotonic() - t0 < 10
    # The same with --from-start (the first call a refused write).
    fake.console_full = 2
    rc, out, err = run_in(canopy, home, fake, ["vm", "console", "web1",
                                               "--from-start"], b"more")
    assert rc == 0, err
    assert fake.typed["web1"] == data + b"more"


def test_output_printed_while_typing(canopy, home, fake):
    fake.consoles["web1"] = b"old output\n"
    fake.console_echo = True
    rc, out, err = run_in(canopy, home, fake, ["vm", "console", "web1"],
                          b"ls\x1b[A\n")
    assert rc == 0, err
    assert out == "ls\\x1b[A\n"  # only the new bytes, escaped
    rc, out, err = run_in(canopy, home, fake, ["vm", "console", "web1",
                                               "--from-start"], b"x\n")
    assert rc == 0 and out.startswith("old output\n"), out


def test_input_option(canopy, home, fake, tmp_path):
    f = tmp_path / "in.txt"
    f.write_bytes(b"from a file\n")
    rc, out, err = run_in(canopy, home, fake, ["vm", "console", "web1",
                                               "--input", str(f)], b"")
    assert rc == 0, err
    assert fake.typed["web1"] == b"from a file\n"
    rc, out, err = run_in(canopy, home, fake, ["vm", "console", "web1",
                                               "--input", "-"], b"dash\n")
    assert rc == 0, err
    assert fake.typed["web1"] == b"from a file\ndash\n"
    rc, out, err = run_in(canopy, home, fake, ["vm", "console", "web1",
                                               "--input", "/nonexistent/x"],
                          b"")
    assert rc == 2 and "/nonexistent/x" in err
    rc, out, err = run_in(canopy, home, fake, ["vm", "console", "web1",
                                               "--input"], b"")
    assert rc == 2
    # An empty input sends nothing.
    rc, out, err = run_in(canopy, home, fake, ["vm", "console", "web1",
                                               "--input", os.devnull], b"")
    assert rc == 0 and len(fake.requests("WriteConsole")) == 2


def test_follow_keeps_a_pipe_read_only(canopy, home, fake):
    fake.consoles["web1"] = b"log\n"
    fake.vms["web1"].state = fake.common.VM_RUN_STATE_STOPPED
    rc, out, err = run_in(canopy, home, fake, ["vm", "console", "web1",
                                               "--follow"], b"not sent\n")
    assert rc == 0 and out == "log\n", err
    assert not fake.requests("WriteConsole")


def test_errors(canopy, home, fake):
    rc, _, err = run_in(canopy, home, fake, ["vm", "console", "off1"],
                        b"x\n")
    assert rc == 5 and "start it first" in err
    rc, _, err = run_in(canopy, home, fake, ["vm", "console", "nope"],
                        b"x\n")
    assert rc == 3 and "nope" in err
    fake.fail["WriteConsole"] = (grpc.StatusCode.UNAVAILABLE,
                                 "vm web1 is on host h1, which is "
                                 "disconnected")
    rc, _, err = run_in(canopy, home, fake, ["vm", "console", "web1"],
                        b"x\n")
    assert rc == 7 and "disconnected" in err
    assert "web1" not in fake.typed
