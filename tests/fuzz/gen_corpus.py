#!/usr/bin/python3
"""Write the seed corpora of the protobuf harnesses (tests/fuzz/corpus/
{api,bus,ctl,ds}/): a few valid inputs each, in the input layout the
harness describes at its top.

  /usr/bin/python3 tests/fuzz/gen_corpus.py BUILD_DIR
(BUILD_DIR holds py/proto/*_pb2.py: `make B=BUILD_DIR all`, or just the
_pb2 files.) Deterministic: the same files every run."""
import os
import struct
import sys

build = sys.argv[1] if len(sys.argv) > 1 else "build"
sys.path.insert(0, os.path.join(build, "py"))
from proto import canopy_agent_pb2 as ag  # noqa: E402
from proto import canopy_api_pb2 as api  # noqa: E402
from proto import canopy_common_pb2 as cm  # noqa: E402
from proto import canopy_vmm_pb2 as vmm  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, seeds):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for fname, data in seeds.items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)


def spec(name="web1"):
    return cm.VmSpec(name=name, cpus=2, memory_mib=256,
                     kernel="/srv/bzImage", initrd="/srv/initrd",
                     cmdline="console=ttyS0",
                     disks=[cm.DiskSpec(path="ds1:web1/disk0",
                                        serial="d0"),
                            cm.DiskSpec(path="/srv/data.img",
                                        readonly=True)])


def ctl():
    reqs = {
        "status": vmm.VmmRequest(id=1, status=vmm.VmmStatusRequest()),
        "stop": vmm.VmmRequest(id=2, stop=vmm.VmmStopRequest(
            graceful=True, timeout_ms=5000)),
        "save": vmm.VmmRequest(id=3, save=vmm.VmmSaveRequest(
            path="/tmp/snap", stop_after=True)),
        "dirty": vmm.VmmRequest(id=4, dirty_log=vmm.VmmDirtyLogRequest(
            op=vmm.DIRTY_LOG_OP_FETCH)),
        "balloon": vmm.VmmRequest(id=5, balloon=vmm.VmmBalloonRequest(
            target_mib=128)),
        "migrate": vmm.VmmRequest(
            id=6, migrate_send=vmm.VmmMigrateSendRequest(
                address="tcp:127.0.0.1:4444", max_downtime_ms=100)),
        "console": vmm.VmmRequest(
            id=7, console_input=vmm.VmmConsoleInputRequest(
                data=b"echo hi\n")),
    }
    seeds = {}
    for k, r in reqs.items():
        b = r.SerializeToString()
        seeds[k] = b"\x00" + struct.pack(">I", len(b)) + b
    # Two frames fed 3 bytes at a time.
    two = b"".join(struct.pack(">I", len(r.SerializeToString())) +
                   r.SerializeToString()
                   for r in (reqs["status"], reqs["console"]))
    seeds["two_split"] = b"\x03" + two
    write("ctl", seeds)


def bus():
    def env(host, **body):
        e = ag.Envelope(version=1, request_id=7, host_id=host, **body)
        b = e.SerializeToString()
        return bytes([len(host)]) + host.encode() + b
    write("bus", {
        "heartbeat": env("h1", heartbeat=ag.AgentHeartbeat(seq=3)),
        "create": env("host-a.lab", vm_command=ag.VmCommand(
            action=ag.VM_ACTION_CREATE, vm_id="web1", spec=spec())),
        "start": env("h1", vm_command=ag.VmCommand(
            action=ag.VM_ACTION_START, vm_id="web1")),
        "incoming": env("h2", migrate_incoming=ag.MigrateIncoming(
            vm_id="web1", spec=spec(), task_id="t1")),
        "result": env("h1", result=ag.CommandResult(
            status=cm.Status(code=3, message="no"))),
    })


def api_seeds():
    # Index in tests/fuzz/fuzz_api.c's table, message.
    reqs = {
        "list_hosts": (1, api.ListHostsRequest(page_size=10,
                                               page_token="h1")),
        "get_host": (2, api.GetHostRequest(id="h1")),
        "create_vm": (4, api.CreateVmRequest(spec=spec(), host="h1")),
        "list_vms": (5, api.ListVmsRequest(host="h1", page_token="a")),
        "power": (7, api.VmPowerRequest(name="web1", hard=True)),
        "migrate": (11, api.MigrateVmRequest(name="web1", to_host="h2",
                                             max_downtime_ms=200)),
        "write_console": (10, api.WriteConsoleRequest(name="web1",
                                                      data=b"ls\n")),
        "import": (13, api.ImportImageRequest(
            url="https://u:p@example.com/a.img", datastore="ds1",
            name="images/a.img", sha256="ab" * 32)),
        "list_tasks": (15, api.ListTasksRequest(page_token="0f-1",
                                                active_only=True)),
        "task": (16, api.GetTaskRequest(id="0123abcd")),
    }
    write("api", {k: bytes([i, 0x15]) + r.SerializeToString()
                  for k, (i, r) in reqs.items()})


def ds():
    def patch(region, index, flags, body):
        if flags is True or flags is False:
            flags = 1 if flags else 0
        return struct.pack("<BHB", region, index, flags) + body

    def jhdr(target):
        # magic "JRNL", state pending, seq, count 1, payload crc (fixed up
        # by the harness), one target.
        return (struct.pack("<IIQIIQ", 0x4c4e524a, 1, 5, 1, 0, target) +
                b"\0" * 480)
    write("ds", {
        # A heartbeat slot of host 2, sealed, with a live flag.
        "hb": patch(1, 1, True, struct.pack("<IIQQQI", 2, 1, 5, 9, 0,
                                            1000) + b"\0" * 476),
        # A lease of lock 1 owned by host 9 (a host that never joined).
        "lease": patch(2, 65, True, struct.pack("<IIQQQ", 1, 9, 1, 1, 0) +
                       b"\0" * 480),
        # An inode slot with garbage, not sealed (corrupt).
        "inode_bad": patch(4, 2, False, b"\xff" * 64),
        # A journal header saying a transaction is pending, sealed.
        "journal": patch(3, 0, True, struct.pack("<II", 0x4c4e524a, 1) +
                         b"\0" * 504),
        # The superblock's version field changed, checksum kept.
        "sb_version": patch(0, 0, False, b"CNPYDS\r\n\x02\0\0\0"),
        # Recovery (flag 2 on the first patch) replaying host 1's pending
        # journal: one payload sector (journal sector 64, host 1's first)
        # for inode 3, the header with its payload checksum fixed up (flag
        # 4). Offsets of the harness's volume: inode_off 4497408.
        "recover_replay": patch(3, 64, 2, b"\x5a" * 512) +
        patch(3, 0, 4, jhdr(4497408 + 3 * 512)),
        # The same naming the superblock as its target: never applied.
        "recover_hostile": patch(3, 64, 2, b"\x5a" * 512) +
        patch(3, 0, 4, jhdr(0)),
    })


ctl()
bus()
api_seeds()
ds()
