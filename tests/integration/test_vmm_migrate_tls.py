"""vMotion over TLS (docs/migration-protocol.md, "TLS"), canopy-vmm to
canopy-vmm on 127.0.0.1 with certificates from `canopy cluster
issue-cert --usage both`: the stream moves the test guest's `dirty`
workload intact over mutual TLS 1.3; a destination whose certificate comes
from another CA, a wrong tls_name, a plaintext source to a TLS destination
and a TLS source to a plaintext destination are all refused in the header
phase with the reason, the VM running on the source; a destination
takes no client without a certificate from its CA; bad --tls-* option
sets stop canopy-vmm at start with a clear error."""
import os
import shutil
import socket
import ssl
import subprocess

import pytest

from canopy_testlib import protos
from canopy_testlib.manager import Pki
from test_vmm_migrate import (check_arrived, destination, guest,  # noqa
                              migrate, rounds, start_dirty, vms)

pytestmark = pytest.mark.kvm


@pytest.fixture(scope="module")
def pkis(tmp_path_factory):
    """Two cluster PKIs: ours and another cluster's."""
    base = tmp_path_factory.mktemp("pki")
    ours, other = Pki(base / "ours"), Pki(base / "other")
    return ours, other


def creds(pki, name):
    """--tls-* options for host `name`: CA, certificate chain, key."""
    crt, key = pki.path(name + ".crt"), pki.path(name + ".key")
    if not os.path.exists(crt):
        crt, key = pki.issue(name, usage="both", sans=[name])
    return ["--tls-ca", pki.ca, "--tls-cert", crt, "--tls-key", key]


def tls_source(vms, guest, pki, name="src"):
    return start_dirty(vms, guest, name) if pki is None else \
        _start_dirty_tls(vms, guest, name, creds(pki, "src-host"))


def _start_dirty_tls(vms, guest, name, tls):
    vm = vms("--kernel", guest, "--cmdline", "dirty=16,rate=20000,verify=100",
             "--memory", "64", "--cpus", "1", *tls, name=name)
    ctl = vm.wait_control()
    vm.wait_console(lambda t: len(rounds(t)) >= 2, what="two verify rounds")
    return vm, ctl


def still_running(src, ctl):
    """The refused migration left the VM running on the source."""
    st = ctl.status()
    assert st.state == protos.common().VM_RUN_STATE_RUNNING
    assert st.migration.phase == "failed"
    assert "vm paused" not in src.log_text()
    n = len(rounds(src.console_text()))
    src.wait_console(lambda t: len(rounds(t)) >= n + 2, what="more rounds")
    assert "CORRUPT" not in src.console_text()


def test_migration_over_tls(vms, guest, pkis):
    ours, _ = pkis
    src, ctl = tls_source(vms, guest, ours)
    dst, port = destination(vms, "dst", extra=creds(ours, "dst-host"))
    rep = migrate(ctl, port, tls_name="dst-host")
    assert rep.status.code == 0, rep.status.message
    assert 0 < rep.migrated.downtime_ms < 2000, rep.migrated
    assert src.wait_exit(timeout=10) == 0
    check_arrived(dst, src.console_text())
    for vm in (src, dst):
        log = vm.log_text()
        assert "migration stream encrypted" in log, log[-2000:]
        assert 'tls="TLSv1.3 ' in log, log[-2000:]
        assert "not encrypted" not in log
    assert "name=dst-host" in src.log_text()
    # Run as root, both were jailed (and the source ran the handshake and
    # its records under the seccomp filter, which kills on a stray call).
    if os.geteuid() == 0:
        assert 'msg="jailed"' in src.log_text()
        assert 'msg="jailed"' in dst.log_text()
    assert "seccomp" not in src.log_text() + dst.log_text()


def test_destination_from_another_ca_refused(vms, guest, pkis):
    ours, other = pkis
    src, ctl = tls_source(vms, guest, ours)
    dst, port = destination(vms, "dst", extra=creds(other, "dst-host"))
    rep = migrate(ctl, port, tls_name="dst-host")
    assert rep.status.code != 0
    msg = rep.status.message
    # Its file holds the chain up to the other CA.
    assert "TLS: the destination's certificate was refused: self-signed " \
           "certificate in certificate chain (not issued by this " \
           "cluster's CA)" in msg, msg
    assert msg.endswith("(phase header)"), msg
    assert dst.wait_exit() != 0
    assert "incoming migration refused: TLS: the source refused this " \
           "host's certificate (tlsv1 alert unknown ca): not from its " \
           "cluster's CA, or not the host name it expected (phase header)" \
        in dst.log_text(), dst.log_text()[-2000:]
    still_running(src, ctl)


def test_wrong_tls_name_refused(vms, guest, pkis):
    ours, _ = pkis
    src, ctl = tls_source(vms, guest, ours)
    dst, port = destination(vms, "dst", extra=creds(ours, "dst-host"))
    rep = migrate(ctl, port, tls_name="other-host")
    assert rep.status.code != 0
    msg = rep.status.message
    assert "certificate was refused: hostname mismatch (expected " \
           "'other-host')" in msg, msg
    assert "(phase header)" in msg
    assert dst.wait_exit() != 0
    assert "the source refused this host's certificate (sslv3 alert bad " \
           "certificate)" in dst.log_text(), dst.log_text()[-2000:]
    still_running(src, ctl)
    # A bad name never reaches the network.
    rep = migrate(ctl, port, tls_name="bad name/")
    assert rep.status.code != 0 and "tls_name 'bad name/'" in \
        rep.status.message


def test_plaintext_source_to_tls_destination_refused(vms, guest, pkis):
    ours, _ = pkis
    src, ctl = tls_source(vms, guest, None)
    # Without credentials a source cannot promise a name check.
    rep = migrate(ctl, 1, tls_name="dst-host")
    assert rep.status.code != 0
    assert "tls_name given but this canopy-vmm has no TLS credentials" in \
        rep.status.message
    dst, port = destination(vms, "dst", extra=creds(ours, "dst-host"))
    rep = migrate(ctl, port)
    assert rep.status.code != 0
    msg = rep.status.message
    assert "the destination refused the VM: this destination requires an " \
           "encrypted (TLS) stream and the source sent plain text" in msg, msg
    assert msg.endswith("(phase header)"), msg
    assert "migration stream is not encrypted" in src.log_text()
    assert dst.wait_exit() != 0
    assert "requires an encrypted (TLS) stream" in dst.log_text()
    still_running(src, ctl)


def test_tls_source_to_plaintext_destination_refused(vms, guest, pkis):
    ours, _ = pkis
    src, ctl = tls_source(vms, guest, ours)
    dst, port = destination(vms, "dst")
    rep = migrate(ctl, port, tls_name="dst-host")
    assert rep.status.code != 0
    msg = rep.status.message
    assert "TLS: the destination does not speak TLS (plaintext stream" in \
        msg, msg
    assert msg.endswith("(phase header)"), msg
    assert dst.wait_exit() != 0
    log = dst.log_text()
    assert "the source speaks TLS but this destination canopy-vmm has no " \
           "--tls-ca/--tls-cert/--tls-key (phase header)" in log, log[-2000:]
    assert "migration stream is not encrypted" in log
    still_running(src, ctl)


def _vmm(build_dir, *args):
    return subprocess.run(
        [os.path.join(str(build_dir), "bin", "canopy-vmm"), "--incoming",
         "tcp:127.0.0.1:0", "--no-jail", *args],
        capture_output=True, text=True, timeout=30)


def test_bad_tls_options(build_dir, tmp_path, pkis):
    """Each bad set: exit status 2 and the reason, before any VM exists."""
    ours, other = pkis
    ca, crt, key = creds(ours, "dst-host")[1::2]
    _, ocrt, okey = creds(other, "dst-host")[1::2]
    open_key = tmp_path / "open.key"
    shutil.copy(key, open_key)
    os.chmod(open_key, 0o644)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (["--tls-ca", ca], "give all three or none"),
        (["--tls-ca", ca, "--tls-cert", crt], "give all three or none"),
        (["--tls-ca", ca, "--tls-cert", crt, "--tls-key",
          str(tmp_path / "missing.key")],
         "--tls-key %s: No such file or directory" % (tmp_path /
                                                      "missing.key")),
        (["--tls-ca", ca, "--tls-cert", crt, "--tls-key", str(open_key)],
         "the key file is open to other users (mode 644); chmod 600 it"),
        (["--tls-ca", ca, "--tls-cert", crt, "--tls-key", okey],
         "--tls-key %s does not belong to --tls-cert %s" % (okey, crt)),
        (["--tls-ca", ca, "--tls-cert", ocrt, "--tls-key", okey],
         "--tls-cert %s: not valid for a TLS server under --tls-ca" % ocrt),
        (["--tls-ca", str(garbage), "--tls-cert", crt, "--tls-key", key],
         "--tls-ca %s: no PEM certificate" % garbage),
        (["--tls-ca", ca, "--tls-cert", str(garbage), "--tls-key", key],
         "--tls-cert %s: no PEM certificate" % garbage),
    ]
    for args, words in cases:
        r = _vmm(build_dir, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert words in r.stderr, (args, r.stderr)
        assert "listen=" not in r.stderr
    # A certificate for servers only cannot be the source's: refused too.
    scrt, skey = ours.issue("server-only", usage="server",
                            sans=["server-only"])
    r = _vmm(build_dir, "--tls-ca", ca, "--tls-cert", scrt, "--tls-key",
             skey)
    assert r.returncode == 2, r.stderr
    assert "not valid for a TLS client under --tls-ca" in r.stderr
    assert "(issue it with --usage both)" in r.stderr


def _tls_client(port, cert=None):
    """A TLS client that trusts any server and presents cert (or none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(*cert)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw)


@pytest.mark.parametrize("who,words", [
    ("no certificate", "peer did not return a certificate"),
    ("another CA", "TLS: the source's certificate was refused: "
     "self-signed certificate in certificate chain (not issued by this "
     "cluster's CA)"),
    ("ours, then junk", "not a canopy migration stream of version 1"),
])
def test_destination_requires_a_cluster_client(vms, pkis, who, words):
    """Mutual TLS: the destination takes only a source whose certificate
    its CA signed, and parses records only inside the session."""
    ours, other = pkis
    dst, port = destination(vms, "dst", extra=creds(ours, "dst-host"))
    cert = {"no certificate": None,
            "another CA": creds(other, "src-host")[3::2],
            "ours, then junk": creds(ours, "src-host")[3::2]}[who]
    try:
        s = _tls_client(port, cert)
        s.sendall(b"\x01\x00\x00\x00\x08\x00\x00\x00junkjunk")
        s.recv(64)
        s.close()
    except (ssl.SSLError, OSError):
        pass  # refused during or right after the handshake
    assert dst.wait_exit() == 2
    log = dst.log_text()
    assert "incoming migration refused: " in log and words in log, \
        log[-2000:]
    assert "(phase header)" in log or who == "ours, then junk"


def test_silent_destination_times_out_in_the_handshake(vms, guest, pkis,
                                                      monkeypatch):
    """A peer that accepts and never answers the ClientHello: the source
    gives up after its I/O timeout, in the header phase, VM running."""
    ours, _ = pkis
    monkeypatch.setenv("CANOPY_MIG_TEST_IO_TIMEOUT_MS", "500")
    src, ctl = tls_source(vms, guest, ours)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    try:
        rep = migrate(ctl, lsock.getsockname()[1], tls_name="dst-host")
    finally:
        lsock.close()
    assert rep.status.code != 0
    assert "TLS handshake with the destination timed out (phase header)" \
        in rep.status.message, rep.status.message
    still_running(src, ctl)


def test_header_refusal_inside_tls(vms, guest, pkis):
    """The destination's own checks answer inside the session as before."""
    ours, _ = pkis
    src, ctl = tls_source(vms, guest, ours)
    dst, port = destination(vms, "dst", mem="128",
                            extra=creds(ours, "dst-host"))
    rep = migrate(ctl, port, tls_name="dst-host")
    assert rep.status.code != 0
    assert "destination refused the VM: memory size differs" in \
        rep.status.message, rep.status.message
    assert "migration stream encrypted" in src.log_text()
    assert dst.wait_exit() != 0
    still_running(src, ctl)
