"""What a canopy-vmm's jail looks like from outside (/proc/PID), for tests."""
import os

# host/vmm/jail.h: VMM_JAIL_UID_BASE, and the highest pid Linux hands out.
JAIL_UID_BASE = 1879048192
PID_MAX_LIMIT = 4194304


def proc_status(pid):
    """/proc/PID/status as a dict of its fields (values as text)."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def jail_uid(pid):
    """The uid a jailed VMM runs as, after checking every mark of the jail:
    one unprivileged uid and gid (real, effective, saved, fs), no groups,
    no capability in any set, no_new_privs, seccomp filter mode."""
    st = proc_status(pid)
    uids, gids = st["Uid"].split(), st["Gid"].split()
    assert len(set(uids)) == 1 and uids[0] != "0", st["Uid"]
    assert gids == uids, (st["Gid"], st["Uid"])
    assert st["Groups"] == "", st["Groups"]
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[cap], 16) == 0, (cap, st[cap])
    assert st["NoNewPrivs"] == "1", st["NoNewPrivs"]
    assert st["Seccomp"] == "2", st["Seccomp"]
    return int(uids[0])


def root_listing(pid):
    """Every path under the process's root directory, relative to it."""
    root = "/proc/%d/root" % pid
    out = set()
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def expected_listing(*dirs):
    """What a jail holding only dirs (absolute) shows: each directory's
    ancestors and its own contents, nothing else."""
    out = set()
    for d in dirs:
        parts = d.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
        for sub, ds, fs in os.walk(d):
            for n in ds + fs:
                out.add(os.path.relpath(os.path.join(sub, n), "/"))
    return out
