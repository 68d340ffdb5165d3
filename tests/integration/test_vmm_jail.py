"""canopy-vmm's jail (docs/security.md): started as root it runs the guest
as a uid of its own, without capabilities, with no_new_privs and seccomp,
in a mount namespace whose root holds only the VM's directory; snapshots
still work; --no-jail, --jail-uid and the set-up errors."""
import os
import subprocess

import pytest

from canopy_testlib.jail import (JAIL_UID_BASE, PID_MAX_LIMIT,
                                 expected_listing, jail_uid, proc_status,
                                 root_listing)
from canopy_testlib.skips import skip_unless_kvm, skip_unless_root
from canopy_testlib.vmm import Vmm

pytestmark = pytest.mark.kvm


@pytest.fixture(autouse=True)
def needs_root_and_kvm():
    skip_unless_root()
    skip_unless_kvm()


def guest(build_dir):
    return os.path.join(str(build_dir), "guest", "canopy-testguest.elf")


def vmm_bin(build_dir):
    return os.path.join(str(build_dir), "bin", "canopy-vmm")


@pytest.fixture
def vms(build_dir):
    started = []

    def start(dirpath, *args, name="vm"):
        os.makedirs(str(dirpath), exist_ok=True)
        vm = Vmm(build_dir, dirpath, "--kernel", guest(build_dir),
                 "--memory", "64", *args, name=name)
        started.append(vm)
        return vm

    yield start
    for vm in started:
        vm.kill()


def counting(vm):
    """The VM's control connection once its guest counts."""
    ctl = vm.wait_control()
    vm.wait_console(lambda t: "count 2" in t, what="counting")
    return ctl


def test_root_vmm_runs_the_guest_jailed(vms, tmp_path):
    vmdir = tmp_path / "vm1"
    vm = vms(vmdir, "--cmdline", "count=50")
    counting(vm)
    pid = vm.proc.pid
    uid = jail_uid(pid)
    assert uid == JAIL_UID_BASE + pid, uid
    assert 'msg="jailed"' in vm.log_text()
    # The root holds the VM's directory and nothing else of the host.
    assert root_listing(pid) == expected_listing(str(vmdir))
    with open("/proc/%d/mountinfo" % pid) as f:
        mounts = [l.split() for l in f]
    assert len(mounts) == 2, mounts
    assert mounts[0][4] == "/" and "ro" in mounts[0][5].split(","), mounts
    assert mounts[1][4] == str(vmdir), mounts
    # The directory is the VMM's to write in (group, sticky), not to own.
    st = os.stat(vmdir)
    assert st.st_uid == 0 and st.st_gid == uid and st.st_mode & 0o1070 == \
        0o1070, oct(st.st_mode)
    # The guest runs on, the control socket answers.
    n = vm.console_text().count("count ")
    vm.wait_console(lambda t: t.count("count ") > n + 2, what="more counts")
    assert vm.wait_control().status().state == 2


def test_two_vmms_get_different_uids(vms, tmp_path):
    a = vms(tmp_path / "a", "--cmdline", "count=50", name="a")
    b = vms(tmp_path / "b", "--cmdline", "count=50", name="b")
    counting(a)
    counting(b)
    ua, ub = jail_uid(a.proc.pid), jail_uid(b.proc.pid)
    assert ua != ub
    for u in (ua, ub):
        assert JAIL_UID_BASE <= u <= JAIL_UID_BASE + PID_MAX_LIMIT
    # Neither sees the other's directory.
    assert root_listing(a.proc.pid) == expected_listing(str(tmp_path / "a"))
    assert str(tmp_path / "a").lstrip("/") not in root_listing(b.proc.pid)


def test_snapshot_in_the_jail_and_outside_it(vms, tmp_path):
    vmdir = tmp_path / "snap"
    vm = vms(vmdir, "--cmdline", "count=50", name="src")
    ctl = counting(vm)
    uid = jail_uid(vm.proc.pid)
    # Paths outside the jail do not exist for the VMM, and the jail's
    # root is read-only: clear errors, the VM runs on.
    for path, words in ((tmp_path / "elsewhere.bin", "Read-only file system"),
                        ("/var/tmp/canopy-jail-test.bin",
                         "No such file or directory")):
        rep = ctl.call(save={"path": str(path)})
        assert rep.status.code != 0 and words in rep.status.message, \
            rep.status
        assert not os.path.exists(str(path))
    assert ctl.status().state == 2
    # Its own directory works; the file is its uid's, private.
    snap = vmdir / "s.bin"
    saved = ctl.save(snap, stop_after=True)
    assert vm.wait_exit() == 0, vm.log_text()
    st = os.stat(snap)
    assert saved.bytes == st.st_size and st.st_uid == uid
    assert st.st_mode & 0o777 == 0o600
    # Restored (by root, before the jail) into a new, jailed VMM.
    vm2 = Vmm(vm.binary.rsplit("/bin/", 1)[0], vmdir, "--restore", snap,
              name="dst")
    try:
        ctl2 = vm2.wait_control()
        n = vm2.console_text().count("count ")
        vm2.wait_console(lambda t: t.count("count ") > n + 2,
                         what="counting after restore")
        assert jail_uid(vm2.proc.pid) != uid
        ctl2.stop()
        assert vm2.wait_exit() == 0, vm2.log_text()
    finally:
        vm2.kill()


def test_jail_uid_option(vms, tmp_path):
    vm = vms(tmp_path / "u", "--cmdline", "count=50", "--jail-uid",
             "1879000123")
    counting(vm)
    assert jail_uid(vm.proc.pid) == 1879000123


@pytest.mark.parametrize("bad", ["0", "65534", "-5", "abc", "", "2147483647",
                                 "99999999999"])
def test_bad_jail_uid_exit_2(build_dir, bad):
    r = subprocess.run([vmm_bin(build_dir), "--kernel", guest(build_dir),
                        "--jail-uid", bad], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2, r.stderr
    assert "--jail-uid %s: expected a uid in 1..2147483646" % bad in \
        r.stderr, r.stderr


def test_no_jail_runs_as_root_with_a_warning(vms, tmp_path):
    vm = vms(tmp_path / "nj", "--cmdline", "count=50", "--no-jail")
    counting(vm)
    st = proc_status(vm.proc.pid)
    assert st["Uid"].split()[0] == "0" and st["Seccomp"] == "2"
    assert "level=warn" in vm.log_text() and \
        "running without the jail (--no-jail)" in vm.log_text()
    assert os.path.exists("/proc/%d/root/proc/self" % vm.proc.pid)


def test_a_shared_control_directory_stays_out_of_the_jail(vms, tmp_path):
    """--control in a world-writable directory (like /tmp): the socket is
    bound before the jail, the directory is not let in (nor changed), and
    snapshots cannot be written; the log says so."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    vm = vms(shared, "--cmdline", "count=50")
    ctl = counting(vm)
    jail_uid(vm.proc.pid)
    assert root_listing(vm.proc.pid) == set()
    assert "the control socket's directory is shared" in vm.log_text()
    rep = ctl.call(save={"path": str(shared / "s.bin")})
    assert rep.status.code != 0 and "No such file or directory" in \
        rep.status.message, rep.status
    assert os.stat(shared).st_mode & 0o7777 == 0o1777  # left as it was
    assert os.stat(shared).st_gid == 0


@pytest.mark.parametrize("how", ["incoming", "jail-dir"])
def test_a_shared_vm_directory_is_refused(build_dir, tmp_path, how):
    """A directory the VMM must write in (an arriving VM's control socket,
    --jail-dir) may not be a shared one: exit 2, nothing changed."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    args = ["--incoming", "tcp:127.0.0.1:0", "--control",
            str(shared / "c.sock")] if how == "incoming" else \
        ["--kernel", guest(build_dir), "--jail-dir", str(shared)]
    r = subprocess.run([vmm_bin(build_dir), "--serial", "none"] + args,
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, r.stderr
    assert "jail: %s is a shared (world-writable) directory" % shared in \
        r.stderr, r.stderr
    assert "vm started" not in r.stderr and "waiting for" not in r.stderr
    assert os.stat(shared).st_mode & 0o7777 == 0o1777
    assert os.listdir(shared) == []


def test_a_missing_jail_dir_is_an_error(build_dir, tmp_path):
    r = subprocess.run([vmm_bin(build_dir), "--kernel", guest(build_dir),
                        "--cmdline", "hello", "--serial", "none",
                        "--jail-dir", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, r.stderr
    assert "jail: %s: No such file or directory" % (tmp_path / "nope") in \
        r.stderr, r.stderr
    assert "vm started" not in r.stderr


def test_a_non_root_vmm_runs_unjailed(build_dir, tmp_path):
    """Started by an unprivileged user (here nobody, with /dev/kvm's group
    so that it may run): no jail to set up, and the log says why."""
    kvm_gid = os.stat("/dev/kvm").st_gid
    os.chmod(tmp_path, 0o755)
    r = subprocess.run([vmm_bin(build_dir), "--kernel", guest(build_dir),
                        "--cmdline", "hello", "--serial", "none"],
                       capture_output=True, text=True, timeout=20,
                       user=65534, group=kvm_gid, extra_groups=[kvm_gid])
    assert "not started as root: no jail" in r.stderr, r.stderr
    assert 'msg="jailed"' not in r.stderr
    if os.stat("/dev/kvm").st_mode & 0o060 == 0o060:
        assert r.returncode == 0, r.stderr


def test_stats_and_reboot_work_in_the_jail(vms, tmp_path, build_dir):
    """RSS comes from /proc/self/statm kept open (no /proc in the jail);
    a guest reboot loads the kernel from the file kept open."""
    vm = vms(tmp_path / "st", "--cmdline", "count=50")
    ctl = counting(vm)
    assert ctl.status().rss_bytes > 1 << 20
    kvm_reboot = os.path.join(str(build_dir), "tests", "kvm", "reboot.elf")
    rb = Vmm(build_dir, tmp_path / "st", "--kernel", kvm_reboot, "--memory",
             "32", name="rb")
    try:
        rb.wait_console(lambda t: t.count("B0\n") >= 3, what="3 boots")
        jail_uid(rb.proc.pid)
        rb.wait_control().stop()
        assert rb.wait_exit() == 0, rb.log_text()
        assert rb.log_text().count('msg="guest reboot"') >= 2
    finally:
        rb.kill()
