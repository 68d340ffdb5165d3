"""The etcd fixtures the control-plane tests stand on: real servers, one
member or three, members killed and restarted."""
import os
import subprocess
import threading


def pid_alive(pid):
    return os.path.exists("/proc/%d" % pid) and \
        open("/proc/%d/stat" % pid).read().split()[2] != "Z"


def test_single_member_put_get_watch(etcd):
    etcd.etcdctl("put", "/canopy/test/a", "1")
    assert etcd.etcdctl("get", "/canopy/test/a", "--print-value-only") \
        .strip() == "1"
    # A watch sees a put made after it started.
    env = dict(os.environ, ETCDCTL_API="3")
    w = subprocess.Popen(["etcdctl", "--endpoints", etcd.endpoints[0],
                          "watch", "/canopy/test/b"], stdout=subprocess.PIPE,
                         env=env, text=True)
    got = []
    t = threading.Thread(target=lambda: got.extend(
        [w.stdout.readline() for _ in range(3)]))
    t.start()
    for _ in range(50):
        etcd.etcdctl("put", "/canopy/test/b", "x")
        t.join(0.1)
        if not t.is_alive():
            break
    w.kill()
    t.join(5)
    assert got[:3] == ["PUT\n", "/canopy/test/b\n", "x\n"]


def test_three_members_survive_a_killed_member(etcd3):
    etcd3.etcdctl("put", "/k", "before")
    pid = etcd3.members[0].proc.pid
    etcd3.kill(0)
    assert not pid_alive(pid)
    # The two others still form a quorum (after electing a leader if the
    # killed member was it).
    etcd3.wait_healthy(timeout=20)
    etcd3.etcdctl("put", "/k", "during")
    assert etcd3.etcdctl("get", "/k", "--print-value-only").strip() == \
        "during"
    etcd3.restart(0)
    # The restarted member caught up: read from it alone.
    alone = [etcd3.members[0].endpoint]
    assert etcd3.etcdctl("get", "/k", "--print-value-only",
                         endpoints=alone).strip() == "during"
    out = etcd3.etcdctl("member", "list")
    assert out.count("started") == 3


def test_two_members_down_loses_quorum(etcd3):
    etcd3.stop(1)
    etcd3.kill(2)
    r = etcd3.run_etcdctl("put", "/k", "v", check=False, timeout=20)
    assert r.returncode != 0  # no quorum: the write must fail
    etcd3.restart(1)
    etcd3.etcdctl("put", "/k", "v")


def test_teardown_leaves_nothing(tmp_path):
    from canopy_testlib.etcd import EtcdCluster
    c = EtcdCluster(tmp_path, 3).start()
    pids = [m.proc.pid for m in c.members]
    c.close()
    assert not any(pid_alive(p) for p in pids)
