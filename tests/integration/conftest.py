"""Fixtures and markers shared by the integration tests."""
import os

import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import protos, skips


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
