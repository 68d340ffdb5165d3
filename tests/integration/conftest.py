"""Fixtures and markers shared by the integration tests."""
import os
import time

import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import protos, skips
from canopy_testlib.procs import vmm_pids


def pytest_configure(config):
    for name, what in [
        ("kvm", "needs a usable /dev/kvm"),
        ("root", "needs root"),
        ("qemu", "needs qemu-system-x86_64"),
        ("slow", "takes more than a few seconds"),
    ]:
        config.addinivalue_line("markers", "%s: %s" % (name, what))


def pytest_runtest_setup(item):
    for name, check in [("kvm", skips.skip_unless_kvm),
                        ("root", skips.skip_unless_root),
                        ("qemu", skips.skip_unless_qemu)]:
        if item.get_closest_marker(name):
            check()


@pytest.fixture(scope="session")
def build_dir():
    d = protos.build_dir()
    if not os.path.isdir(os.path.join(d, "bin")):
        pytest.skip("build dir %s missing or not built: run make" % d)
    return d


@pytest.fixture
def etcd(tmp_path):
    """A single-member etcd on free loopback ports."""
    c = etcdlib.EtcdCluster(tmp_path, 1)
    try:
        yield c.start()
    finally:
        c.close()


@pytest.fixture
def etcd3(tmp_path):
    """A three-member etcd cluster; kill(i), stop(i), restart(i)."""
    c = etcdlib.EtcdCluster(tmp_path, 3)
    try:
        yield c.start()
    finally:
        c.close()


@pytest.fixture(scope="module", autouse=True)
def no_leaked_vmms(tmp_path_factory):
    """VMMs outlive their agent by design, so a test that forgets one
    leaves a guest spinning for the rest of the run (it starved the QEMU
    node tests that came later). A VMM of this run started during a test
    file and still alive after all its fixtures ended is killed, and the
    file errors naming it."""
    mark = (str(tmp_path_factory.getbasetemp()) + "/").encode()
    before = vmm_pids(mark)
    yield
    leaked = vmm_pids(mark) - before
    deadline = time.monotonic() + 3  # one still exiting is not a leak
    while leaked and time.monotonic() < deadline:
        time.sleep(0.1)
        leaked &= vmm_pids(mark)
    if not leaked:
        return
    names = []
    for pid in sorted(leaked):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                names.append("%d: %s" % (pid, f.read().replace(
                    b"\0", b" ").decode(errors="replace")[:200]))
            os.kill(pid, 9)
        except OSError:
            pass
    if names:
        pytest.fail("canopy-vmm processes left running (killed now):\n" +
                    "\n".join(names))
