#!/usr/bin/python3
"""Control-plane API benchmark: canopy-managerd on a real etcd with 100
simulated hosts (C fake agents on the agent bus, tests/helpers/
mgr_fake_agent) and 5,000 VMs created through the API (CreateVm). Measures
GetVm, ListVms (one page of 100), ListHosts and GetCluster latency and
throughput, CreateVm latency to the task accepted, against raw etcd
Range/Put over gRPC from the same Python (the floor the API adds to), and
manager failover time (SIGKILL the leader, until the standby answers
GetCluster). Usage: CANOPY_BUILD=build bench/api.py [--hosts N] [--vms N]"""
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
    agents = [FakeAgent(mgr.bus, "sim-h%03d" % i, memory_mib=1 << 20)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--vms", type=int, default=5000)
    ap.add_argument("-n", type=int, default=500, help="calls per latency")
    ap.add_argument("--secs", type=float, default=3.0)
    args = ap.parse_args()
    print("machine: %s" % benchlib.machine())
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
