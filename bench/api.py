#!/usr/bin/python3
"""Control-plane API benchmark: canopy-managerd on a real etcd with 100
simulated hosts (C fake agents on the agent bus, tests/helpers/
mgr_fake_agent) and 5,000 VMs created through the API (CreateVm). Measures
GetVm, ListVms (one page of 100), ListHosts and GetCluster latency and
throughput, CreateVm latency to the task accepted, against raw etcd
Range/Put over gRPC from the same Python (the floor the API adds to), and
manager failover time (SIGKILL the leader, until the standby answers
GetCluster). Usage: CANOPY_BUILD=build bench/api.py [--hosts N] [--vms N]
With --index-scale HOSTS,VMS instead: hosts and VMs written straight into
etcd (e.g. 2500,40000), the manager's inventory index load time and
memory, the counts checked, ListHosts and GetCluster latency."""
import argparse
import concurrent.futures
import os
import signal
import sys
import tempfile
import time

import benchlib  # noqa: F401  (puts tests/integration on sys.path)
from benchlib import compare, summary

os.environ.setdefault("CANOPY_BUILD", benchlib.BUILD)

import grpc  # noqa: E402
from canopy_testlib import protos  # noqa: E402
from canopy_testlib.etcd import EtcdCluster  # noqa: E402
from canopy_testlib.manager import FakeAgent, Manager  # noqa: E402

A = protos.load("canopy_api")
C = protos.load("canopy_common")
E = protos.load("etcd_rpc")


def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e6)
    return out


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))]


def throughput(fn, secs):
    n, end = 0, time.perf_counter() + secs
    while time.perf_counter() < end:
        fn()
        n += 1
    return n / secs


def unary(channel, path, resp):
    return channel.unary_unary(path, request_serializer=lambda m:
                               m.SerializeToString(),
                               response_deserializer=resp.FromString)


def populate(mgr, hosts, vms):
    t = time.monotonic()
    agents = [FakeAgent(mgr, "sim-h%03d" % i, memory_mib=1 << 20)
              for i in range(hosts)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = mgr.call("HostService", "ListHosts",
                     A.ListHostsRequest(page_size=1000), A.ListHostsResponse)
        if sum(h.state == A.HOST_STATE_CONNECTED
               for h in r.hosts) >= hosts:
            break
        time.sleep(0.2)
    print("%d fake agents connected in %.1f s" % (hosts,
                                                   time.monotonic() - t))
    create = unary(mgr.channel, "/canopy.v1.VmService/CreateVm", A.Task)
    t = time.monotonic()

    def one(i):
        spec = C.VmSpec(name="vm%05d" % i, cpus=1, memory_mib=64,
                        kernel="/boot/guest.elf")
        return create(A.CreateVmRequest(spec=spec), timeout=60)

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(vms)))
    print("%d VMs created through CreateVm in %.1f s" % (
        vms, time.monotonic() - t))
    return agents


def wait_vms(mgr, vms, timeout=120):
    lst = unary(mgr.channel, "/canopy.v1.VmService/ListVms",
                A.ListVmsResponse)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n, tok = 0, ""
        while True:
            r = lst(A.ListVmsRequest(page_size=1000, page_token=tok),
                    timeout=30)
            n += len(r.vms)
            tok = r.next_page_token
            if not tok:
                break
        if n >= vms:
            return n
        time.sleep(1)
    raise SystemExit("only %d of %d VMs in the inventory" % (n, vms))


def bench_api(mgr, etcd_ep, hosts, vms, n, secs):
    ch = mgr.channel
    ech = grpc.insecure_channel(etcd_ep)
    rng = unary(ech, "/etcdserverpb.KV/Range", E.RangeResponse)
    put = unary(ech, "/etcdserverpb.KV/Put", E.PutResponse)
    put(E.PutRequest(key=b"/bench/k", value=b"x" * 200))
    eget = lambda: rng(E.RangeRequest(key=b"/bench/k"))  # noqa: E731
    i = [0]

    def eput():
        i[0] += 1
        put(E.PutRequest(key=b"/bench/p%d" % (i[0] % 1000), value=b"x" * 200))

    getvm = unary(ch, "/canopy.v1.VmService/GetVm", A.Vm)
    listvms = unary(ch, "/canopy.v1.VmService/ListVms", A.ListVmsResponse)
    listh = unary(ch, "/canopy.v1.HostService/ListHosts",
                  A.ListHostsResponse)
    getc = unary(ch, "/canopy.v1.ClusterService/GetCluster", A.Cluster)
    create = unary(ch, "/canopy.v1.VmService/CreateVm", A.Task)
    k = [0]

    def gv():
        k[0] += 1
        getvm(A.GetVmRequest(name="vm%05d" % ((k[0] * 7919) % vms)))

    c = [0]

    def cv():
        c[0] += 1
        create(A.CreateVmRequest(spec=C.VmSpec(
            name="bench-new%05d" % c[0], cpus=1, memory_mib=64,
            kernel="/boot/guest.elf")))

    cases = [
        ("GetVm (of %d)" % vms, gv, eget, "etcd Range 1 key"),
        ("ListVms (one page of 100)",
         lambda: listvms(A.ListVmsRequest(page_size=100)), eget,
         "etcd Range 1 key"),
        ("ListHosts (one page of %d hosts)" % min(hosts, 100),
         lambda: listh(A.ListHostsRequest(page_size=100)), eget,
         "etcd Range 1 key"),
        ("GetCluster", lambda: getc(A.GetClusterRequest()), eget,
         "etcd Range 1 key"),
        ("CreateVm to task accepted", cv, eput, "etcd Put 200 B"),
    ]
    for title, ours, base, bname in cases:
        for _ in range(20):
            ours()
            base()
        a = timed(ours, n)
        b = timed(base, n)
        compare(title + ": latency", a, b, "us", bname,
                ours_name="canopy-managerd")
        print("  p99: canopy-managerd %.0f us, %s %.0f us" % (
            p99(a), bname, p99(b)))
        if "CreateVm" in title:
            continue
        ta = throughput(ours, secs)
        tb = throughput(base, secs)
        print("  throughput (1 client, %.0f s): canopy-managerd %.0f "
              "calls/s, %s %.0f calls/s, ratio %.2f" % (
                  secs, ta, bname, tb, ta / tb))
        sys.stdout.flush()
    ech.close()


def failover(workdir, etcd, rounds):
    times = []
    for r in range(rounds):
        a = Manager(workdir, etcd.endpoints, "fo-a%d" % r).start()
        a.wait_leader()
        b = Manager(workdir, etcd.endpoints, "fo-b%d" % r).start()
        time.sleep(0.5)
        t = time.monotonic()
        a.kill(signal.SIGKILL)
        b.wait_leader(timeout=60)
        times.append((time.monotonic() - t) * 1000)
        print("  failover %d: %.0f ms" % (r + 1, times[-1]))
        a.close()
        b.close()
    s = summary(times)
    print("manager failover (SIGKILL the leader until the standby answers "
          "GetCluster): median %.0f ms (min %.0f, max %.0f, n=%d)" % (
              s["median"], s["min"], s["max"], s["n"]))


def write_inventory(etcd_ep, hosts, vms):
    """Write hosts and VMs (every other one running) straight into etcd,
    with the keys the manager writes (record, placement, running), 64 puts
    per transaction."""
    ech = grpc.insecure_channel(etcd_ep)
    txn = unary(ech, "/etcdserverpb.KV/Txn", E.TxnResponse)
    puts = []

    def put(k, v):
        puts.append(E.RequestOp(request_put=E.PutRequest(key=k, value=v)))
        if len(puts) == 64:
            txn(E.TxnRequest(success=puts), timeout=30)
            del puts[:]

    for i in range(hosts):
        h = A.Host(id="sc-h%04d" % i, hostname="sc-h%04d" % i, cpus=64,
                   memory_mib=1 << 20, state=A.HOST_STATE_DISCONNECTED)
        put(b"/canopy/hosts/" + h.id.encode(), h.SerializeToString())
    for i in range(vms):
        name, host = "sc-vm%05d" % i, "sc-h%04d" % (i % hosts)
        run = C.VM_RUN_STATE_RUNNING if i % 2 else C.VM_RUN_STATE_STOPPED
        v = A.Vm(id=name, host=host, state=run, spec=C.VmSpec(
            name=name, cpus=1, memory_mib=64, kernel="/boot/guest.elf"))
        put(b"/canopy/vms/" + name.encode(), v.SerializeToString())
        put(("/canopy/placement/%s/%s" % (host, name)).encode(), b"")
        if i % 2:
            put(b"/canopy/running/" + name.encode(), b"")
    if puts:
        txn(E.TxnRequest(success=puts), timeout=30)
    ech.close()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def index_scale(n, secs, hosts, vms):
    """The inventory index at scale: load time and memory of a manager
    starting on hosts/vms written straight into etcd, then ListHosts and
    GetCluster latency, with the counts checked."""
    print("index scale: %d hosts, %d VMs (written straight into etcd)" % (
        hosts, vms))
    with tempfile.TemporaryDirectory(prefix="canopy-bench-idx-") as wd:
        etcd = EtcdCluster(wd).start()
        mgr = None
        try:
            t = time.monotonic()
            write_inventory(etcd.endpoints[0], hosts, vms)
            print("  written in %.1f s" % (time.monotonic() - t))
            mgr = Manager(wd, etcd.endpoints, "bench-idx", host_timeout=30,
                          extra=["--log-level", "info"]).start()
            mgr.wait_leader()
            # A manager from before the index never logs the line: the
            # same figures then measure it (after 20 s).
            deadline = time.monotonic() + 20
            while ("inventory index ready" not in mgr.log_text() and
                   time.monotonic() < deadline):
                time.sleep(0.05)
            line = [x for x in mgr.log_text().splitlines()
                    if "inventory index ready" in x] or ["msg=(no index)"]
            print("  manager log: " + line[0].split("msg=", 1)[1])
            print("  manager RSS after the load: %.1f MiB" % (
                rss_kib(mgr.proc.pid) / 1024))
            check_counts(mgr, hosts, vms)
            bench_index_calls(mgr, etcd.endpoints[0], n, secs)
        finally:
            if mgr:
                mgr.close()
            for m in etcd.members:
                m.signal(signal.SIGTERM)


def check_counts(mgr, hosts, vms):
    listh = unary(mgr.channel, "/canopy.v1.HostService/ListHosts",
                  A.ListHostsResponse)
    total, seen, tok = 0, 0, ""
    while True:
        r = listh(A.ListHostsRequest(page_size=1000, page_token=tok))
        total += sum(h.vms for h in r.hosts)
        seen += len(r.hosts)
        tok = r.next_page_token
        if not tok:
            break
    c = mgr.cluster()
    ok = (seen, total, c.hosts, c.vms, c.vms_running) == (
        hosts, vms, hosts, vms, vms // 2)
    print("  counts: %d hosts listed holding %d VMs; GetCluster hosts %d "
          "vms %d running %d: %s" % (seen, total, c.hosts, c.vms,
                                     c.vms_running, "right" if ok else
                                     "WRONG"))
    if not ok:
        raise SystemExit("inventory counts are wrong")


def bench_index_calls(mgr, etcd_ep, n, secs):
    ech = grpc.insecure_channel(etcd_ep)
    rng = unary(ech, "/etcdserverpb.KV/Range", E.RangeResponse)
    eget = lambda: rng(E.RangeRequest(key=b"/canopy/leader"))  # noqa: E731
    listh = unary(mgr.channel, "/canopy.v1.HostService/ListHosts",
                  A.ListHostsResponse)
    getc = unary(mgr.channel, "/canopy.v1.ClusterService/GetCluster",
                 A.Cluster)
    for title, ours in [
            ("ListHosts (one page of 100 hosts)",
             lambda: listh(A.ListHostsRequest(page_size=100))),
            ("GetCluster", lambda: getc(A.GetClusterRequest()))]:
        for _ in range(20):
            ours()
            eget()
        a = timed(ours, n)
        b = timed(eget, n)
        compare("  " + title + ": latency", a, b, "us", "etcd Range 1 key",
                ours_name="canopy-managerd")
        print("  p99: canopy-managerd %.0f us, etcd Range 1 key %.0f us" % (
            p99(a), p99(b)))
        sys.stdout.flush()
    ech.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--vms", type=int, default=5000)
    ap.add_argument("-n", type=int, default=500, help="calls per latency")
    ap.add_argument("--secs", type=float, default=3.0)
    ap.add_argument("--index-scale", metavar="HOSTS,VMS",
                    help="instead: the inventory index with HOSTS hosts and "
                    "VMS VMs written straight into etcd (e.g. 2500,40000)")
    args = ap.parse_args()
    print("machine: %s" % benchlib.machine())
    if args.index_scale:
        h, v = (int(x) for x in args.index_scale.split(","))
        index_scale(args.n, args.secs, h, v)
        return
    with tempfile.TemporaryDirectory(prefix="canopy-bench-api-") as wd:
        etcd = EtcdCluster(wd).start()
        mgr, agents = None, []
        try:
            mgr = Manager(wd, etcd.endpoints, "bench-m1", host_timeout=30,
                          extra=["--log-level", "info"]).start()
            mgr.wait_leader()
            agents = populate(mgr, args.hosts, args.vms)
            print("inventory: %d VMs listed" % wait_vms(mgr, args.vms))
            bench_api(mgr, etcd.endpoints[0], args.hosts, args.vms, args.n,
                      args.secs)
        finally:
            for ag in agents:
                ag.close()
            if mgr:
                mgr.close()
        failover(wd, etcd, 3)
        for m in etcd.members:
            m.signal(signal.SIGTERM)


if __name__ == "__main__":
    main()
