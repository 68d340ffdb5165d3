"""`make lab`'s script (deploy/lab.sh) end to end with the real programs:
etcd, canopy-managerd, three canopy-agent hosts (each in its own network
namespace on a lab bridge) and canopy-vmm running the test guest in two VMs
on two hosts, driven through the canopy CLI. Start, check through the CLI
that the three hosts are connected and both VMs run (their consoles count),
start again (the old lab is replaced), then stop (what `make lab-down` runs)
and check that no process, namespace or bridge of the lab is left."""
import json
import os
import shutil
import subprocess
import time

import pytest

from canopy_testlib import protos
from canopy_testlib.ports import free_ports

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
LAB = os.path.join(REPO, "deploy", "lab.sh")
PROGS = ("etcd", "canopy-vmm", "canopy-agent", "canopy-managerd")

pytestmark = [pytest.mark.root, pytest.mark.kvm, pytest.mark.slow]


def lab_processes(lab_dir):
    """Pids of our programs whose command line names lab_dir."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % pid) as f:
                comm = f.read().strip()
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if comm.startswith(PROGS) and lab_dir + "/" in cmd:
            found.append((int(pid), comm))
    return found


@pytest.fixture
def lab(tmp_path):
    build = protos.build_dir()
    for prog in ("canopy", "canopy-managerd", "canopy-agent", "canopy-vmm"):
        if not os.path.exists(os.path.join(build, "bin", prog)):
            pytest.skip("SKIP: %s/bin/%s not built: run make" % (build, prog))
    if not shutil.which("etcd"):
        pytest.skip("SKIP (needs etcd): Debian package etcd-server missing")
    lab_dir = str(tmp_path / "lab")
    api, bus, etcd, peer = free_ports(4)
    subnet = "10.77.%d" % (100 + api % 150)
    home = str(tmp_path / "home")  # the lab pins its CA for this user
    env = dict(os.environ, LAB_DIR=lab_dir, CANOPY_BUILD=build, HOME=home,
               LAB_API_PORT=str(api), LAB_BUS_PORT=str(bus),
               LAB_ETCD_PORT=str(etcd), LAB_ETCD_PEER_PORT=str(peer),
               LAB_SUBNET=subnet)

    def sh(verb, timeout=120):
        return subprocess.run([LAB, verb], env=env, capture_output=True,
                              text=True, timeout=timeout)

    def cli(*args):
        p = subprocess.run([os.path.join(build, "bin", "canopy"), "--server",
                            "127.0.0.1:%d" % api] + list(args),
                           capture_output=True, text=True, timeout=60,
                           env={"HOME": home, "PATH": "/usr/bin:/bin"},
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 0, (args, p.stdout, p.stderr, logs(lab_dir))
        return p.stdout

    try:
        yield lab_dir, sh, cli, api, subnet
    finally:
        sh("stop")
        for pid, _ in lab_processes(lab_dir):
            os.kill(pid, 9)


def lab_network(api):
    """The lab's namespaces, bridge and host-side veths that exist."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True,
                        text=True).stdout.split()
    links = os.listdir("/sys/class/net")
    tag = "cny%d-" % api
    return ({n for n in ns if n.startswith(tag)} |
            {n for n in links if n == "cnyb%d" % api or
             n.startswith("cnyv%d" % api)})


def logs(lab_dir):
    out = []
    for root, _, files in os.walk(lab_dir):
        for f in files:
            if f.endswith(".log"):
                with open(os.path.join(root, f), "rb") as fh:
                    out.append("== %s\n%s" % (f, fh.read()[-1500:].decode(
                        "utf-8", "replace")))
    return "\n".join(out)


def console_counts(path):
    with open(path, errors="replace") as f:
        return f.read().count("count ")


def test_lab_start_use_restart_stop(lab):
    lab_dir, sh, cli, api, subnet = lab
    p = sh("start")
    assert p.returncode == 0, (p.stdout, p.stderr, logs(lab_dir))
    assert "lab-vm1" in p.stdout and "lab-vm2" in p.stdout
    assert "make lab-down" in p.stdout
    # Secure by default: a new cluster CA, its fingerprint printed once,
    # pinned for the user's CLI (cli() gives no CA: it uses the pin).
    ca = os.path.join(lab_dir, "manager", "pki", "ca.crt")
    fpr = subprocess.run(["openssl", "x509", "-noout", "-fingerprint",
                          "-sha256", "-in", ca], capture_output=True,
                         text=True, check=True).stdout.strip().split("=")[1]
    assert p.stdout.count(fpr) == 1, p.stdout
    assert os.stat(os.path.join(lab_dir, "manager", "pki",
                                "ca.key")).st_mode & 0o777 == 0o600
    # It prints `canopy host list`, then `canopy vm list`.
    assert p.stdout.index("lab-h3") < p.stdout.index("lab-vm1")

    names = ["lab-h1", "lab-h2", "lab-h3"]
    hosts = json.loads(cli("-o", "json", "host", "list"))
    assert sorted(h["id"] for h in hosts) == names
    assert all(h["state"] == "HOST_STATE_CONNECTED" for h in hosts)
    # Each host in its own network namespace, with its address on the
    # lab bridge.
    assert sorted(h["address"] for h in hosts) == [
        subnet + ".11", subnet + ".12", subnet + ".13"]
    assert lab_network(api) == {"cny%d-%s" % (api, n) for n in names} | {
        "cnyb%d" % api} | {"cnyv%d%d" % (api, i) for i in (1, 2, 3)}
    # Every host mounts the lab's shared datastore.
    ds = json.loads(cli("-o", "json", "datastore", "list"))
    assert [d["name"] for d in ds] == ["lab-ds"]
    assert sorted(ds[0]["hosts"]) == names
    # Two VMs running, on two different hosts.
    vms = json.loads(cli("-o", "json", "vm", "list"))
    assert sorted(v["spec"]["name"] for v in vms) == ["lab-vm1", "lab-vm2"]
    assert all(v["state"] == "VM_RUN_STATE_RUNNING" for v in vms), vms
    assert len({v["host"] for v in vms}) == 2, vms
    # The consoles the script names are the VMs', on the hosts they run on.
    consoles = [ln.split()[1] for ln in p.stdout.splitlines()
                if ln.strip().startswith("console:")]
    assert sorted(consoles) == sorted(
        os.path.join(lab_dir, v["host"], "vms", v["spec"]["name"],
                     "console.log")
        for v in vms)
    deadline = time.monotonic() + 10
    while (min(console_counts(c) for c in consoles) < 2
           and time.monotonic() < deadline):
        time.sleep(0.2)
    assert min(console_counts(c) for c in consoles) >= 2, logs(lab_dir)
    tasks = json.loads(cli("-o", "json", "task", "list"))
    assert {t["kind"] for t in tasks} >= {"vm.create", "vm.start"}
    assert all(t["state"] == "TASK_STATE_SUCCEEDED" for t in tasks)
    first = {pid for pid, comm in lab_processes(lab_dir)
             if comm == "canopy-vmm"}
    assert len(first) == 2

    # Starting again replaces the old lab: none of its processes survive.
    p = sh("start")
    assert p.returncode == 0, (p.stdout, p.stderr, logs(lab_dir))
    now = lab_processes(lab_dir)
    assert not first & {pid for pid, _ in now}
    assert sorted(c for _, c in now).count("canopy-vmm") == 2

    p = sh("stop")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert lab_processes(lab_dir) == []
    assert lab_network(api) == set()
    assert not os.path.exists(lab_dir)
    # Stopping a stopped lab is fine too.
    assert sh("stop").returncode == 0
