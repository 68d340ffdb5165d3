"""canopy-vmm processes of a test run, found by what their command line
names (VMMs outlive their agent by design, so tests must find and end
them themselves)."""
import os
import time


def vmm_pids(mark):
    """Running canopy-vmm processes (by executable name) whose command line
    contains mark (bytes). A zombie or a gone process has no executable
    link and is not counted."""
    pids = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            if os.path.basename(os.readlink("/proc/%s/exe" % p)) != \
                    "canopy-vmm":
                continue
            with open("/proc/%s/cmdline" % p, "rb") as f:
                if mark in f.read():
                    pids.add(int(p))
        except OSError:
            pass
    return pids


def kill_vmms(under):
    """Kill the canopy-vmm processes whose command line names directory
    under and wait (up to 5 s) until they are gone."""
    mark = str(under).encode()
    pids = vmm_pids(mark)
    for pid in pids:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids &= vmm_pids(mark)
        time.sleep(0.05)
