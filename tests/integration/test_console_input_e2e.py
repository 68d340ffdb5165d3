"""VmService.WriteConsole and `canopy vm console` input through the real
control plane: etcd, canopy-managerd, a real canopy-agent and canopy-vmm
running the test guest's `echo` workload. Piped stdin and --input reach
the guest and its echo comes back (in the CLI's output and in
ReadConsole); on a pseudo-terminal the console is interactive (raw mode,
Ctrl-] quits, the terminal restored, also after SIGTERM); a paste larger than one request arrives in order; bad input
gets its code: oversized or empty data, an unknown or badly named VM, a VM
that is off or stopped, a host that is disconnected."""
import os
import pty
import select
import signal
import subprocess
import termios
import time

import grpc
import pytest

from canopy_testlib import manager as mgrlib
from canopy_testlib import skips
from canopy_testlib.procs import kill_vmms
from test_console_e2e import Cluster, code_of, wait_until

A = mgrlib.api
C = mgrlib.common


@pytest.fixture
def cluster(etcd, tmp_path):
    c = Cluster(etcd, tmp_path)
    try:
        yield c.start()
    finally:
        c.close()
        kill_vmms(c.run_dir)


def write(c, data, name="web1"):
    return c.m.call("VmService", "WriteConsole",
                    A().WriteConsoleRequest(name=name, data=data),
                    A().WriteConsoleResponse)


def console(c):
    """The whole console log, through ReadConsole."""
    data, off = b"", 0
    while True:
        r = c.read(offset=off)
        data += r.data
        if not r.data or r.next_offset >= r.size:
            return data.decode()
        off = r.next_offset


def canopy_in(c, args, stdin, timeout=60):
    """The CLI with stdin a pipe carrying `stdin`."""
    p = subprocess.run([mgrlib.binary("bin/canopy"), "--server", c.m.addr]
                       + list(args), input=stdin, capture_output=True,
                       timeout=timeout, env=c.m.cli_env())
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def echo_vm(c, cmdline="echo"):
    kernel = mgrlib.binary("guest/canopy-testguest.elf")
    if not os.path.exists(kernel):
        pytest.skip("SKIP: %s not built: run make" % kernel)
    skips.skip_unless_kvm()
    c.task("CreateVm", A().CreateVmRequest(spec=C().VmSpec(
        name="web1", cpus=1, memory_mib=64, kernel=kernel,
        cmdline=cmdline)))
    c.task("StartVm", A().VmPowerRequest(name="web1"))
    wait_until(lambda: "echo: ready" in console(c), 20, "the echo guest")


@pytest.mark.kvm
def test_piped_input_is_echoed(cluster):
    c = cluster
    echo_vm(c)
    # Piped stdin: sent, and the echo printed (output from now on).
    rc, out, err = canopy_in(c, ["vm", "console", "web1"], b"hello guest\n")
    assert rc == 0, err
    assert out == "echo: hello guest\n", out
    assert "echo: hello guest\n" in console(c)
    # --input -: the same; then -o json prints one object per slice.
    rc, out, err = canopy_in(c, ["vm", "console", "web1", "--input", "-"],
                             b"second\r")
    assert rc == 0 and out == "echo: second\n", (out, err)
    # A 10 KiB paste from a file (three WriteConsole calls) arrives whole
    # and in order, typed ahead of the guest.
    lines = ["%04d %s" % (i, chr(ord("a") + i % 26) * 58) for i in range(160)]
    paste = c.run_dir.parent / "paste.txt"
    paste.write_text("\n".join(lines) + "\n")
    rc, out, err = canopy_in(c, ["vm", "console", "web1", "--input",
                                 str(paste)], b"")
    assert rc == 0, err
    last = "echo: %s\n" % lines[-1]
    wait_until(lambda: last in console(c), 30, "the whole paste")
    text = console(c)
    got = [ln[6:] for ln in text.splitlines() if ln.startswith("echo: 0")]
    assert got == lines
    # WriteConsole itself, and the guest's answer read back.
    write(c, b"api\n")
    wait_until(lambda: "echo: api\n" in console(c), 10, "echo: api")
    # The host gone: UNAVAILABLE, the manager unharmed.
    c.agent.kill()
    c.agent.wait(10)
    wait_until(lambda: c.host().state == A().HOST_STATE_DISCONNECTED, 8,
               "node1 disconnected")
    code, msg = code_of(lambda: write(c, b"x"))
    assert code == grpc.StatusCode.UNAVAILABLE and "node1" in msg
    assert c.m.proc.poll() is None


@pytest.mark.kvm
def test_write_console_errors(cluster):
    c = cluster
    echo_vm(c, "echo,limit=1")
    code, msg = code_of(lambda: write(c, b"x" * 4097))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "4096" in msg
    code, msg = code_of(lambda: write(c, b""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, msg = code_of(lambda: write(c, b"x", name="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in msg
    code, msg = code_of(lambda: write(c, b"x", name="Bad/Name"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    rc, _, err = canopy_in(c, ["vm", "console", "nope", "--input", "-"],
                           b"x\n")
    assert rc == 3 and "nope" in err
    rc, _, err = canopy_in(c, ["vm", "console", "web1", "--input",
                               "/nonexistent/in"], b"")
    assert rc == 2 and "/nonexistent/in" in err
    # One line and the guest powers off: the VM is stopped.
    write(c, b"last\n")
    wait_until(lambda: c.vm().state == C().VM_RUN_STATE_STOPPED, 20,
               "web1 stopped")
    code, msg = code_of(lambda: write(c, b"late\n"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "start it first" in msg
    rc, _, err = canopy_in(c, ["vm", "console", "web1"], b"late\n")
    assert rc == 5 and "start it first" in err
    assert "echo: late" not in console(c)


def test_write_console_to_a_vm_that_never_ran(cluster):
    """No KVM needed: a VM created but never started."""
    c = cluster
    c.task("CreateVm", A().CreateVmRequest(spec=C().VmSpec(
        name="web1", cpus=1, memory_mib=64, kernel="/nonexistent/k.elf")))
    code, msg = code_of(lambda: write(c, b"x"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "start it first" in msg
    rc, _, err = canopy_in(c, ["vm", "console", "web1"], b"x\n")
    assert rc == 5 and "start it first" in err


def read_until(fd, want, timeout=20):
    buf, deadline = b"", time.monotonic() + timeout
    while want not in buf:
        left = deadline - time.monotonic()
        assert left > 0, "no %r on the terminal; got %r" % (want, buf)
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                buf += os.read(fd, 4096)
            except OSError:  # the other end closed
                break
    assert want in buf, buf
    return buf


def on_terminal(c):
    """`canopy vm console web1` on a new pseudo-terminal, in raw mode:
    (process, master fd, slave fd, the slave's settings before)."""
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = subprocess.Popen([mgrlib.binary("bin/canopy"), "--server", c.m.addr,
                          "vm", "console", "web1"], stdin=slave,
                         stdout=slave, stderr=slave, start_new_session=True,
                         env=c.m.cli_env())
    read_until(master, b"Escape character is ^] (Ctrl-])")
    wait_until(lambda: not termios.tcgetattr(slave)[3] & termios.ICANON, 10,
               "raw mode")
    return p, master, slave, before


@pytest.mark.kvm
def test_interactive_terminal(cluster):
    c = cluster
    echo_vm(c)
    p, master, slave, before = on_terminal(c)
    try:
        os.write(master, b"typed on a tty\r")
        # No local echo in raw mode: what comes back is the guest's.
        out = read_until(master, b"echo: typed on a tty\r\n")
        assert b"typed on a tty\r\n" not in out.replace(b"echo: typed", b"")
        os.write(master, b"a\x03b\r")  # Ctrl-C goes to the guest
        read_until(master, b"echo: a\x03b\r\n")
        os.write(master, b"not sent\x1dnor this\r")  # Ctrl-] quits
        assert p.wait(10) == 0
        assert termios.tcgetattr(slave) == before  # the terminal restored
        assert "echo: not sent" not in console(c)
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
        os.close(slave)
    # SIGTERM (and SIGHUP, SIGINT) end it with the terminal restored.
    p, master, slave, before = on_terminal(c)
    try:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 128 + signal.SIGTERM
        assert termios.tcgetattr(slave) == before
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
        os.close(slave)
