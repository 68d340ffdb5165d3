"""Loud skips for tests that need hardware or privileges this host lacks."""
import fcntl
import os
import shutil

import pytest

KVM_GET_API_VERSION = 0xAE00


def kvm_problem():
    """None when /dev/kvm is usable, else why not."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return "/dev/kvm: %s" % e.strerror
    try:
        if fcntl.ioctl(fd, KVM_GET_API_VERSION) != 12:
            return "/dev/kvm: unexpected KVM API version"
    except OSError as e:
        return "/dev/kvm: KVM_GET_API_VERSION: %s" % e.strerror
    finally:
        os.close(fd)
    return None


def skip_unless_kvm():
    why = kvm_problem()
    if why:
        pytest.skip("SKIP (needs KVM): " + why)


def skip_unless_root():
    if os.geteuid() != 0:
        pytest.skip("SKIP (needs root): running as uid %d" % os.geteuid())


def skip_unless_qemu():
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("SKIP (needs QEMU): qemu-system-x86_64 not on PATH")
