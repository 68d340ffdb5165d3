"""canopy-managerd against a real etcd, a python gRPC client and the C fake
agent (tests/helpers/mgr_fake_agent): hosts over the agent bus, VM tasks
answered, refused or never answered by the agent, WaitTask, CancelTask,
events, paging and bad input of every kind."""
import os
import signal
import threading
import time

import grpc
import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib

HOST_TIMEOUT = 2


@pytest.fixture(autouse=True)
def _need_binaries(request):
    for rel in ("bin/canopy-managerd", "tests/helpers/mgr_fake_agent"):
        if not os.path.exists(mgrlib.binary(rel)):
            pytest.skip("SKIP: %s not built: run make" % rel)
    if not (os.path.exists(etcdlib.ETCD) and os.path.exists(etcdlib.ETCDCTL)):
        pytest.skip("SKIP (needs etcd): %s missing (Debian package "
                    "etcd-server)" % etcdlib.ETCD)


@pytest.fixture
def mgr(etcd, tmp_path):
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1",
                       host_timeout=HOST_TIMEOUT, command_timeout_ms=3000)
    try:
        m.start().wait_leader()
        yield m
    finally:
        m.close()


@pytest.fixture
def agent(mgr):
    a = mgrlib.FakeAgent(mgr, "h1", memory_mib=8192, datastore="ds1")
    try:
        a.expect("registered 0")
        yield a
    finally:
        a.close()


A = mgrlib.api
C = mgrlib.common


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def host(m, hid):
    return m.call("HostService", "GetHost", A().GetHostRequest(id=hid),
                  A().Host)


def vm(m, name):
    return m.call("VmService", "GetVm", A().GetVmRequest(name=name), A().Vm)


def spec(name="web1", cpus=1, memory=64, kernel="/boot/guest.elf"):
    return C().VmSpec(name=name, cpus=cpus, memory_mib=memory, kernel=kernel)


def create(m, name="web1", **kw):
    return m.call("VmService", "CreateVm",
                  A().CreateVmRequest(spec=spec(name, **kw)), A().Task)


def power(m, verb, name="web1", **kw):
    return m.call("VmService", verb, A().VmPowerRequest(name=name, **kw),
                  A().Task)


def wait(m, task_id, timeout=20):
    """WaitTask: every streamed state, the last one final."""
    got = list(m.stream("TaskService", "WaitTask",
                        A().WaitTaskRequest(id=task_id), A().Task,
                        timeout=timeout))
    assert got, "WaitTask streamed nothing"
    return got


def final(m, task_id):
    return wait(m, task_id)[-1]


def events(m, limit=100, before=0):
    return list(m.call("EventService", "ListEvents",
                       A().ListEventsRequest(limit=limit, before_seq=before),
                       A().ListEventsResponse).events)


def wait_until(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def test_register_lists_host_connected(mgr, agent):
    a = A()
    hosts = mgr.call("HostService", "ListHosts", a.ListHostsRequest(),
                     a.ListHostsResponse).hosts
    assert [h.id for h in hosts] == ["h1"]
    h = hosts[0]
    assert h.state == a.HOST_STATE_CONNECTED
    assert (h.cpus, h.memory_mib, h.version) == (4, 8192, "fake-1")
    assert list(h.datastores) == ["ds1"]
    cl = mgr.cluster()
    assert (cl.leader, cl.hosts, cl.hosts_connected) == ("m1", 1, 1)
    assert cl.leader_address == mgr.addr
    ds = mgr.call("DatastoreService", "ListDatastores",
                  a.ListDatastoresRequest(),
                  a.ListDatastoresResponse).datastores
    assert [(d.name, list(d.hosts)) for d in ds] == [("ds1", ["h1"])]
    assert any(e.kind == "host.connected" and e.object == "h1"
               for e in events(mgr))
    # Host stats reach the record.
    agent.send("stats 1234")
    agent.expect("sent")
    wait_until(lambda: host(mgr, "h1").memory_used_mib == 1234, 5,
               "memory_used_mib 1234")


def test_heartbeats_stop_then_resume(mgr, agent):
    a = A()
    agent.pause()
    t0 = time.monotonic()
    wait_until(lambda: host(mgr, "h1").state == a.HOST_STATE_DISCONNECTED,
               HOST_TIMEOUT + 3, "h1 DISCONNECTED")
    took = time.monotonic() - t0
    print("disconnect noticed after %.2f s (timeout %d s)" % (took,
                                                               HOST_TIMEOUT))
    assert took >= HOST_TIMEOUT - 0.5
    assert mgr.cluster().hosts_connected == 0
    ev = events(mgr)
    assert ev[0].kind == "host.disconnected" and ev[0].object == "h1"
    assert ev[0].severity == a.EVENT_SEVERITY_WARNING
    # A VM cannot be placed there meanwhile.
    c, msg = code_of(lambda: mgr.call(
        "VmService", "CreateVm",
        a.CreateVmRequest(spec=spec(), host="h1"), a.Task))
    assert c == grpc.StatusCode.UNAVAILABLE and "h1" in msg
    agent.resume()
    wait_until(lambda: host(mgr, "h1").state == a.HOST_STATE_CONNECTED,
               5, "h1 CONNECTED again")
    assert any(e.kind == "host.connected" for e in events(mgr, limit=3))


def test_vm_life_cycle(mgr, agent):
    a = A()
    t = create(mgr)
    assert t.state == a.TASK_STATE_QUEUED and t.kind == "vm.create"
    assert t.object == "vm/web1" and t.manager == "m1"
    states = wait(mgr, t.id)
    assert states[-1].state == a.TASK_STATE_SUCCEEDED, states[-1]
    assert states[-1].progress == 100 and states[-1].end_unix_ms > 0
    agent.expect("command VM_ACTION_CREATE web1")
    v = vm(mgr, "web1")
    assert (v.host, v.desired) == ("h1", a.POWER_STATE_OFF)
    assert v.spec.memory_mib == 64

    for verb, action, want in [
            ("StartVm", "START", C().VM_RUN_STATE_RUNNING),
            ("PauseVm", "PAUSE", C().VM_RUN_STATE_PAUSED),
            ("ResumeVm", "RESUME", C().VM_RUN_STATE_RUNNING)]:
        f = final(mgr, power(mgr, verb).id)
        assert f.state == a.TASK_STATE_SUCCEEDED, f
        agent.expect("command VM_ACTION_%s web1" % action)
        assert vm(mgr, "web1").state == want
    assert mgr.cluster().vms_running == 1

    c, msg = code_of(lambda: mgr.call(
        "VmService", "DeleteVm", a.DeleteVmRequest(name="web1"), a.Task))
    assert c == grpc.StatusCode.FAILED_PRECONDITION and "stop it first" in msg
    c, msg = code_of(lambda: power(mgr, "StartVm"))
    assert c == grpc.StatusCode.FAILED_PRECONDITION and "already" in msg

    f = final(mgr, power(mgr, "StopVm", hard=True).id)
    assert f.state == a.TASK_STATE_SUCCEEDED
    agent.expect("command VM_ACTION_STOP_HARD web1")
    v = vm(mgr, "web1")
    assert (v.state, v.desired) == (C().VM_RUN_STATE_STOPPED,
                                    a.POWER_STATE_OFF)
    t = mgr.call("VmService", "DeleteVm", a.DeleteVmRequest(name="web1"),
                 a.Task)
    assert final(mgr, t.id).state == a.TASK_STATE_SUCCEEDED
    agent.expect("command VM_ACTION_DELETE web1")
    assert code_of(lambda: vm(mgr, "web1"))[0] == grpc.StatusCode.NOT_FOUND
    kinds = [e.kind for e in events(mgr)]
    for k in ("vm.created", "vm.powered_on", "vm.paused", "vm.resumed",
              "vm.powered_off", "vm.deleted"):
        assert k in kinds
    assert mgr.cluster().vms == 0


def test_agent_error_fails_task(mgr, agent):
    a = A()
    agent.mode("error disk ds1:web1/disk0 is locked by host h2")
    f = final(mgr, create(mgr).id)
    assert f.state == a.TASK_STATE_FAILED
    assert f.error.code == 9 and "locked by host h2" in f.error.message
    assert "h1" in f.error.message
    # A create that failed leaves no VM behind.
    assert code_of(lambda: vm(mgr, "web1"))[0] == grpc.StatusCode.NOT_FOUND
    agent.mode("ok")
    assert final(mgr, create(mgr).id).state == a.TASK_STATE_SUCCEEDED
    agent.mode("error no memory for web1")
    f = final(mgr, power(mgr, "StartVm").id)
    assert f.state == a.TASK_STATE_FAILED
    assert "no memory for web1" in f.error.message
    assert vm(mgr, "web1").desired == a.POWER_STATE_OFF  # undone
    ev = events(mgr, limit=1)[0]
    assert ev.kind == "task.failed" and ev.task == f.id
    assert ev.severity == a.EVENT_SEVERITY_ERROR


def test_agent_never_answers(mgr, agent):
    a = A()
    assert final(mgr, create(mgr).id).state == a.TASK_STATE_SUCCEEDED
    agent.mode("silent")
    t0 = time.monotonic()
    f = final(mgr, power(mgr, "StartVm", timeout_ms=700).id)
    took = time.monotonic() - t0
    assert f.state == a.TASK_STATE_FAILED
    assert f.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert "did not answer vm.start of vm web1 within 700 ms" in \
        f.error.message
    assert 0.6 < took < 5
    assert vm(mgr, "web1").desired == a.POWER_STATE_OFF


def test_cancel_queued_task(mgr, agent):
    a = A()
    assert final(mgr, create(mgr).id).state == a.TASK_STATE_SUCCEEDED
    agent.mode("silent")
    t1 = power(mgr, "StartVm", timeout_ms=3000)
    agent.expect("command VM_ACTION_START web1")
    t2 = power(mgr, "StopVm")
    got = mgr.call("TaskService", "GetTask", a.GetTaskRequest(id=t2.id),
                   a.Task)
    assert got.state == a.TASK_STATE_QUEUED
    c, msg = code_of(lambda: mgr.call(
        "TaskService", "CancelTask", a.CancelTaskRequest(id=t1.id), a.Task))
    assert c == grpc.StatusCode.FAILED_PRECONDITION and "running" in msg
    got = mgr.call("TaskService", "CancelTask",
                   a.CancelTaskRequest(id=t2.id), a.Task)
    assert got.state == a.TASK_STATE_CANCELLED
    c, msg = code_of(lambda: mgr.call(
        "TaskService", "CancelTask", a.CancelTaskRequest(id=t2.id), a.Task))
    assert c == grpc.StatusCode.FAILED_PRECONDITION and "ended" in msg
    active = mgr.call("TaskService", "ListTasks",
                      a.ListTasksRequest(active_only=True),
                      a.ListTasksResponse).tasks
    assert [t.id for t in active] == [t1.id]
    # WaitTask streams the running task, then its end.
    states = wait(mgr, t1.id)
    assert states[0].state == a.TASK_STATE_RUNNING
    assert states[0].phase == "waiting for host h1"
    assert states[-1].state == a.TASK_STATE_FAILED
    alltasks = mgr.call("TaskService", "ListTasks", a.ListTasksRequest(),
                        a.ListTasksResponse).tasks
    assert [t.kind for t in alltasks] == ["vm.create", "vm.start", "vm.stop"]


def test_vm_report_updates_state(mgr, agent):
    a = A()
    assert final(mgr, create(mgr).id).state == a.TASK_STATE_SUCCEEDED
    # A state outside the enum, and a VM the manager does not know, are
    # refused; a good report is taken.
    agent.send("report web1 99 777")
    agent.expect("sent")
    agent.send("report ghost %d 1" % C().VM_RUN_STATE_RUNNING)
    agent.expect("sent")
    time.sleep(0.3)
    assert vm(mgr, "web1").rss_bytes != 777
    assert code_of(lambda: vm(mgr, "ghost"))[0] == grpc.StatusCode.NOT_FOUND
    agent.send("report web1 %d 4096" % C().VM_RUN_STATE_RUNNING)
    agent.expect("sent")
    wait_until(lambda: vm(mgr, "web1").rss_bytes == 4096, 5, "rss 4096")
    assert vm(mgr, "web1").state == C().VM_RUN_STATE_RUNNING


@pytest.mark.parametrize("kw,what", [
    (dict(name="Web1"), "name"),
    (dict(name="web_1"), "name"),
    (dict(name=""), "name"),
    (dict(name="a" * 64), "name"),
    (dict(cpus=0), "cpus"),
    (dict(cpus=65), "cpus"),
    (dict(memory=15), "memory_mib"),
    (dict(memory=1048577), "memory_mib"),
    (dict(kernel=""), "kernel"),
])
def test_create_bad_spec(mgr, agent, kw, what):
    c, msg = code_of(lambda: create(mgr, **kw))
    assert c == grpc.StatusCode.INVALID_ARGUMENT
    assert what in msg


def test_bad_requests(mgr, agent):
    a = A()
    assert final(mgr, create(mgr).id).state == a.TASK_STATE_SUCCEEDED
    cases = [
        (lambda: create(mgr), grpc.StatusCode.ALREADY_EXISTS, "exists"),
        (lambda: mgr.call("VmService", "CreateVm", a.CreateVmRequest(
            spec=spec("web2"), host="h9"), a.Task),
         grpc.StatusCode.NOT_FOUND, "h9"),
        (lambda: mgr.call("VmService", "CreateVm", a.CreateVmRequest(
            spec=spec("web2"), host="bad host!"), a.Task),
         grpc.StatusCode.INVALID_ARGUMENT, "host"),
        (lambda: mgr.call("VmService", "CreateVm", a.CreateVmRequest(),
                          a.Task), grpc.StatusCode.INVALID_ARGUMENT, "spec"),
        (lambda: vm(mgr, "nope"), grpc.StatusCode.NOT_FOUND, "nope"),
        (lambda: vm(mgr, "../x"), grpc.StatusCode.INVALID_ARGUMENT, "name"),
        (lambda: power(mgr, "StartVm", name="nope"),
         grpc.StatusCode.NOT_FOUND, "nope"),
        (lambda: host(mgr, "h9"), grpc.StatusCode.NOT_FOUND, "h9"),
        (lambda: mgr.call("TaskService", "GetTask", a.GetTaskRequest(
            id="0000000000001-000001"), a.Task),
         grpc.StatusCode.NOT_FOUND, "task"),
        (lambda: mgr.call("TaskService", "WaitTask", a.WaitTaskRequest(
            id="zz"), a.Task), grpc.StatusCode.INVALID_ARGUMENT, "task"),
        (lambda: mgr.call("TaskService", "CancelTask", a.CancelTaskRequest(
            id="0000000000001-000001"), a.Task),
         grpc.StatusCode.NOT_FOUND, "task"),
        (lambda: mgr.call("TaskService", "CancelTask", a.CancelTaskRequest(
            id=""), a.Task), grpc.StatusCode.INVALID_ARGUMENT, "task id"),
        (lambda: host(mgr, "h 1"), grpc.StatusCode.INVALID_ARGUMENT,
         "host id"),
        (lambda: mgr.call("HostService", "RemoveHost", a.RemoveHostRequest(
            id="h9"), a.RemoveHostResponse),
         grpc.StatusCode.NOT_FOUND, "h9"),
        (lambda: mgr.call("TaskService", "ListTasks", a.ListTasksRequest(
            page_token="ZZ"), a.ListTasksResponse),
         grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
        (lambda: mgr.call("HostService", "ListHosts", a.ListHostsRequest(
            page_token="a/b"), a.ListHostsResponse),
         grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
        (lambda: mgr.call("VmService", "CreateVm", b"\x0a\xff\xff\xff\x0f",
                          a.Task),
         grpc.StatusCode.INVALID_ARGUMENT, "CreateVmRequest"),
        (lambda: mgr.call("VmService", "Reboot", a.GetVmRequest(), a.Task),
         grpc.StatusCode.UNIMPLEMENTED, "Reboot"),
        (lambda: mgr.call("VmService", "ListVms", a.ListVmsRequest(
            page_token="!!"), a.ListVmsResponse),
         grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
        (lambda: mgr.call("VmService", "ListVms", a.ListVmsRequest(
            host="no such/host"), a.ListVmsResponse),
         grpc.StatusCode.INVALID_ARGUMENT, "host"),
        (lambda: mgr.call("HostService", "RemoveHost", a.RemoveHostRequest(
            id="h1"), a.RemoveHostResponse),
         grpc.StatusCode.FAILED_PRECONDITION, "connected"),
        (lambda: mgr.call("VmService", "CreateVm", a.CreateVmRequest(
            spec=C().VmSpec(name="big", cpus=1, memory_mib=64,
                            kernel="k" * (2 << 20))), a.Task),
         grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ]
    for fn, want, word in cases:
        c, msg = code_of(fn)
        assert c == want, (want, c, msg)
        assert word in msg, (word, msg)
    # Still serving, and nothing was lost.
    assert vm(mgr, "web1").host == "h1"
    assert mgr.proc.poll() is None


def test_vm_on_disconnected_host(mgr, agent):
    a = A()
    assert final(mgr, create(mgr).id).state == a.TASK_STATE_SUCCEEDED
    agent.pause()
    wait_until(lambda: host(mgr, "h1").state == a.HOST_STATE_DISCONNECTED,
               HOST_TIMEOUT + 3, "h1 DISCONNECTED")
    c, msg = code_of(lambda: power(mgr, "StartVm"))
    assert c == grpc.StatusCode.UNAVAILABLE and "host h1" in msg
    c, msg = code_of(lambda: mgr.call(
        "HostService", "RemoveHost", a.RemoveHostRequest(id="h1"),
        a.RemoveHostResponse))
    assert c == grpc.StatusCode.FAILED_PRECONDITION and "1 vms" in msg


def test_paging_and_host_filter(mgr, agent):
    a = A()
    h2 = mgrlib.FakeAgent(mgr, "h2", memory_mib=1024)
    try:
        h2.expect("registered 0")
        names = ["vm%d" % i for i in range(5)]
        for n in names:
            req = a.CreateVmRequest(spec=spec(n),
                                    host="h2" if n == "vm3" else "")
            t = mgr.call("VmService", "CreateVm", req, a.Task)
            assert final(mgr, t.id).state == a.TASK_STATE_SUCCEEDED
        got, token = [], ""
        while True:
            r = mgr.call("VmService", "ListVms",
                         a.ListVmsRequest(page_size=2, page_token=token),
                         a.ListVmsResponse)
            assert len(r.vms) <= 2
            got += [v.id for v in r.vms]
            token = r.next_page_token
            if not token:
                break
        assert got == names
        on_h2 = mgr.call("VmService", "ListVms", a.ListVmsRequest(host="h2"),
                         a.ListVmsResponse).vms
        assert [v.id for v in on_h2] == ["vm3"]
        # Placement: the host with the most free memory (h1: 8192 MiB).
        assert vm(mgr, "vm0").host == "h1"
        assert host(mgr, "h1").vms == 4 and host(mgr, "h2").vms == 1
        r = mgr.call("HostService", "ListHosts",
                     a.ListHostsRequest(page_size=1), a.ListHostsResponse)
        assert [h.id for h in r.hosts] == ["h1"]
        assert r.next_page_token == "h2"
    finally:
        h2.close()


def test_events_list_page_and_watch(mgr, agent):
    a = A()
    all_ev = events(mgr)
    seqs = [e.seq for e in all_ev]
    assert seqs == sorted(seqs, reverse=True)
    assert seqs == list(range(seqs[0], 0, -1))  # gap-free, newest first
    assert [e.seq for e in events(mgr, limit=1, before=seqs[0])] == \
        [seqs[0] - 1]
    got = []
    stream = mgr.stream("EventService", "WatchEvents",
                        a.WatchEventsRequest(after_seq=seqs[0] - 1),
                        a.Event, timeout=30)

    def reader():
        try:
            for ev in stream:
                got.append(ev)
        except grpc.RpcError:
            pass
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    wait_until(lambda: got, 5, "replayed event")
    assert got[0].seq == seqs[0]  # replay of the last one
    assert final(mgr, create(mgr).id).state == a.TASK_STATE_SUCCEEDED
    wait_until(lambda: any(e.kind == "vm.created" for e in got), 5,
               "vm.created on the watch")
    assert [e.seq for e in got] == list(range(seqs[0], seqs[0] + len(got)))
    stream.cancel()
    th.join(5)
    assert mgr.proc.poll() is None


def test_etcd_away_then_back(mgr, agent, etcd):
    a = A()
    assert final(mgr, create(mgr).id).state == a.TASK_STATE_SUCCEEDED
    agent.mode("silent")
    running = power(mgr, "StartVm", timeout_ms=60000)
    agent.expect("command VM_ACTION_START web1")
    member = etcd.members[0]
    member.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        c, msg = code_of(lambda: vm(mgr, "web1"))
        assert c == grpc.StatusCode.UNAVAILABLE
        assert "etcd is unavailable" in msg and "retry" in msg
        assert time.monotonic() - t0 < 5  # bounded, not hung
        # Past the lease TTL the manager no longer claims to lead.
        wait_until(lambda: "no leader" in code_of(mgr.cluster)[1], 12,
                   "standby answer while etcd is away")
    finally:
        member.proc.send_signal(signal.SIGCONT)
    mgr.wait_leader(timeout=15)
    assert vm(mgr, "web1").host == "h1"  # nothing lost
    got = mgr.call("TaskService", "GetTask", a.GetTaskRequest(id=running.id),
                   a.Task)
    assert got.state == a.TASK_STATE_FAILED
    assert "manager m1 lost the leadership while the task was running" in \
        got.error.message
    assert mgr.proc.poll() is None


def test_remove_disconnected_host(mgr, agent):
    a = A()
    h2 = mgrlib.FakeAgent(mgr, "h2")
    try:
        h2.expect("registered 0")
        h2.pause()
        wait_until(lambda: host(mgr, "h2").state ==
                   a.HOST_STATE_DISCONNECTED, HOST_TIMEOUT + 3,
                   "h2 DISCONNECTED")
        mgr.call("HostService", "RemoveHost", a.RemoveHostRequest(id="h2"),
                 a.RemoveHostResponse)
        assert code_of(lambda: host(mgr, "h2"))[0] == \
            grpc.StatusCode.NOT_FOUND
        ev = events(mgr, limit=1)[0]
        assert (ev.kind, ev.object) == ("host.removed", "h2")
        assert mgr.cluster().hosts == 1
    finally:
        h2.close()


def test_host_lost_while_task_runs(mgr, agent):
    a = A()
    assert final(mgr, create(mgr).id).state == a.TASK_STATE_SUCCEEDED
    agent.mode("silent")
    t = power(mgr, "StartVm", timeout_ms=60000)
    agent.expect("command VM_ACTION_START web1")
    t0 = time.monotonic()
    agent.pause()
    f = final(mgr, t.id)
    took = time.monotonic() - t0
    assert f.state == a.TASK_STATE_FAILED
    assert f.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert "host h1 disconnected while the task was running" in \
        f.error.message
    assert took < HOST_TIMEOUT + 3  # not the 60 s command timeout
    assert vm(mgr, "web1").desired == a.POWER_STATE_OFF
    # The agent's late answer (after it is back) is dropped harmlessly.
    agent.resume()
    wait_until(lambda: host(mgr, "h1").state == a.HOST_STATE_CONNECTED,
               5, "h1 back")
    assert mgr.proc.poll() is None


def test_retention(etcd, tmp_path):
    """--task-retention 1 --event-retention 3: finished tasks older than a
    second and all but the newest three events go; a running task stays."""
    a = A()
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1", host_timeout=5,
                       extra=["--task-retention", "1",
                              "--event-retention", "3"])
    agent = None
    try:
        m.start().wait_leader()
        agent = mgrlib.FakeAgent(m, "h1")
        agent.expect("registered 0")
        assert final(m, create(m).id).state == a.TASK_STATE_SUCCEEDED
        agent.mode("silent")
        running = power(m, "StartVm", timeout_ms=20000)
        agent.expect("command VM_ACTION_START web1")

        def tasks():
            return [t.id for t in m.call(
                "TaskService", "ListTasks", a.ListTasksRequest(),
                a.ListTasksResponse).tasks]
        wait_until(lambda: tasks() == [running.id], 5,
                   "only the running task left")
        seqs = wait_until(lambda: (lambda s: len(s) == 3 and s)(
            [e.seq for e in events(m)]), 5, "three events left")
        assert seqs == list(range(seqs[0], seqs[0] - 3, -1))
        got = m.call("TaskService", "GetTask",
                     a.GetTaskRequest(id=running.id), a.Task)
        assert got.state == a.TASK_STATE_RUNNING
    finally:
        if agent:
            agent.close()
        m.close()


def test_vm_reported_running_on_another_host(mgr, agent):
    """h2 reports web1 (placed on h1) RUNNING, twice: the record is left
    alone and one warning event names both hosts (rate-limited per VM)."""
    assert final(mgr, create(mgr).id).state == A().TASK_STATE_SUCCEEDED
    h2 = mgrlib.FakeAgent(mgr, "h2")
    try:
        h2.expect("registered 0")
        for _ in range(2):
            h2.send("report web1 %d 4096" % C().VM_RUN_STATE_RUNNING)
            h2.expect("sent")
        ev = wait_until(lambda: [e for e in events(mgr)
                                 if e.kind == "vm.running_elsewhere"], 5,
                        "the warning event")
        time.sleep(0.3)
        ev = [e for e in events(mgr) if e.kind == "vm.running_elsewhere"]
        assert len(ev) == 1, ev
        assert ev[0].object == "vm/web1", ev
        assert ev[0].severity == A().EVENT_SEVERITY_WARNING, ev
        assert "host h2 reports vm web1 running" in ev[0].message, ev
        assert "on host h1" in ev[0].message, ev
        v = vm(mgr, "web1")
        assert v.host == "h1" and v.rss_bytes != 4096, v
    finally:
        h2.close()
