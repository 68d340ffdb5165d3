"""A fake canopy-managerd for CLI tests: the public API (proto/canopy_api.proto)
served by python3-grpcio with generic handlers over the generated protobuf
modules, on a free loopback port. State lives in plain dicts the test can
fill and inspect; every request is recorded in `calls`; `fail[method]`
makes a method answer with a chosen status, `standby` (a message) makes
every method answer UNAVAILABLE as a standby manager does; tasks follow scripts of
(progress, phase, state, error) steps streamed by WaitTask.

It serves TLS only, as the real manager does, with a certificate of one
cluster CA shared by the test process (shared_pki(); the CLI trusts it
through CANOPY_CA = FakeManager.ca)."""
import atexit
import shutil
import tempfile
import threading
import time
from concurrent import futures

import grpc

from canopy_testlib import protos
from canopy_testlib.manager import Pki

_PKI = []


def shared_pki():
    """One cluster PKI (canopy cluster init) for this test process."""
    if not _PKI:
        d = tempfile.mkdtemp(prefix="canopy-fake-pki-")
        atexit.register(shutil.rmtree, d, True)
        _PKI.append(Pki(d))
    return _PKI[0]

SERVICES = {
    "ClusterService": ["GetCluster"],
    "HostService": ["ListHosts", "GetHost", "RemoveHost"],
    "VmService": ["CreateVm", "ListVms", "GetVm", "StartVm", "StopVm",
                  "PauseVm", "ResumeVm", "DeleteVm", "ReadConsole",
                  "WriteConsole"],
    "DatastoreService": ["ListDatastores"],
    "TaskService": ["ListTasks", "GetTask", "WaitTask", "CancelTask"],
    "EventService": ["ListEvents", "WatchEvents"],
}
STREAMING = {"WaitTask", "WatchEvents"}

OK_SCRIPT = [(10, "writing config", "RUNNING", None),
             (60, "creating disk", "RUNNING", None),
             (100, "done", "SUCCEEDED", None)]


class Abort(Exception):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code, self.msg = code, msg


class FakeManager:
    def __init__(self):
        self.api = protos.load("canopy_api")
        self.common = protos.load("canopy_common")
        self.hosts = {}
        self.vms = {}
        self.tasks = {}
        self.scripts = {}
        self.events = []
        self.datastores = []
        self.consoles = {}  # vm name -> bytes of its console log
        self.console_stuck = False  # ReadConsole never advances
        self.typed = {}  # vm name -> bytes WriteConsole accepted
        self.console_full = 0  # WriteConsole calls refused as queue full
        self.console_echo = False  # accepted bytes appended to the log
        self.calls = []
        self.fail = {}
        self.delay = {}
        self.garbage = set()
        self.page_size = 2
        self.standby = None
        self.next_task = 1
        self.step_s = 0.05
        self.watch_hold = 0
        self.start_script = {}
        self.lock = threading.Lock()
        self.server = None
        self.address = None

    # --- helpers the tests use -------------------------------------------
    def add_host(self, hid, **kw):
        A = self.api
        h = A.Host(id=hid, hostname=kw.pop("hostname", hid + ".lab"),
                   state=kw.pop("state", A.HOST_STATE_CONNECTED),
                   cpus=kw.pop("cpus", 4), memory_mib=kw.pop("memory_mib",
                                                              8192),
                   last_seen_unix_ms=int(time.time() * 1000) - 3000, **kw)
        self.hosts[hid] = h
        return h

    def add_vm(self, name, **kw):
        A, C = self.api, self.common
        spec = C.VmSpec(name=name, cpus=kw.pop("cpus", 1),
                        memory_mib=kw.pop("memory_mib", 256),
                        kernel=kw.pop("kernel", "/k.elf"))
        vm = A.Vm(id="id-" + name, spec=spec,
                  desired=kw.pop("desired", A.POWER_STATE_ON),
                  state=kw.pop("state", C.VM_RUN_STATE_RUNNING),
                  host=kw.pop("host", "h1"),
                  created_unix_ms=int(time.time() * 1000) - 120000, **kw)
        self.vms[name] = vm
        return vm

    def add_task(self, kind, obj, script):
        A = self.api
        with self.lock:
            tid = "t%d" % self.next_task
            self.next_task += 1
        t = A.Task(id=tid, kind=kind, object=obj, state=A.TASK_STATE_QUEUED,
                   start_unix_ms=int(time.time() * 1000), user="admin")
        self.tasks[tid] = t
        self.scripts[tid] = list(script)
        return t

    def add_event(self, kind, obj, msg, severity=None):
        A = self.api
        e = A.Event(seq=len(self.events) + 1,
                    unix_ms=int(time.time() * 1000) - 1000,
                    severity=severity or A.EVENT_SEVERITY_INFO,
                    kind=kind, object=obj, message=msg)
        self.events.append(e)
        return e

    def requests(self, method):
        return [r for m, r in self.calls if m == method]

    # --- the API --------------------------------------------------------
    def _page(self, items, req):
        start = int(req.page_token or 0)
        size = req.page_size or self.page_size
        page = items[start:start + size]
        nxt = str(start + size) if start + size < len(items) else ""
        return page, nxt

    def GetCluster(self, req):
        A = self.api
        return A.Cluster(name="lab", leader="m1",
                         leader_address="127.0.0.1:7443",
                         hosts=len(self.hosts),
                         hosts_connected=sum(
                             1 for h in self.hosts.values()
                             if h.state == A.HOST_STATE_CONNECTED),
                         vms=len(self.vms), vms_running=sum(
                             1 for v in self.vms.values()
                             if v.desired == A.POWER_STATE_ON),
                         version="0.1.0")

    def ListHosts(self, req):
        page, nxt = self._page(sorted(self.hosts.values(),
                                      key=lambda h: h.id), req)
        return self.api.ListHostsResponse(hosts=page, next_page_token=nxt)

    def _host(self, hid):
        if hid not in self.hosts:
            raise Abort(grpc.StatusCode.NOT_FOUND,
                        "host '%s' not found; 'canopy host list' shows the "
                        "hosts" % hid)
        return self.hosts[hid]

    def GetHost(self, req):
        return self._host(req.id)

    def RemoveHost(self, req):
        h = self._host(req.id)
        if h.vms:
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION,
                        "host %s runs %d VMs; move or stop them first"
                        % (h.id, h.vms))
        del self.hosts[req.id]
        return self.api.RemoveHostResponse()

    def _vm(self, name):
        if name not in self.vms:
            raise Abort(grpc.StatusCode.NOT_FOUND,
                        "vm '%s' not found; 'canopy vm list' shows the VMs"
                        % name)
        return self.vms[name]

    def CreateVm(self, req):
        s = req.spec
        if s.cpus > 64:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        "cpus: %d is more than the 64 a VM may have"
                        % s.cpus)
        if s.name in self.vms:
            raise Abort(grpc.StatusCode.ALREADY_EXISTS,
                        "vm '%s' already exists; pick another name" % s.name)
        if req.host and req.host not in self.hosts:
            raise Abort(grpc.StatusCode.NOT_FOUND,
                        "host '%s' not found" % req.host)
        A = self.api
        self.vms[s.name] = A.Vm(id="id-" + s.name, spec=s,
                                desired=A.POWER_STATE_OFF,
                                created_unix_ms=int(time.time() * 1000))
        return self.add_task("vm.create", "vm/" + s.name, OK_SCRIPT)

    def ListVms(self, req):
        vms = [v for v in sorted(self.vms.values(), key=lambda v: v.spec.name)
               if not req.host or v.host == req.host]
        page, nxt = self._page(vms, req)
        return self.api.ListVmsResponse(vms=page, next_page_token=nxt)

    def GetVm(self, req):
        return self._vm(req.name)

    def _power(self, kind, req):
        self._vm(req.name)
        script = self.start_script.get(req.name, OK_SCRIPT)
        return self.add_task(kind, "vm/" + req.name, script)

    def StartVm(self, req):
        return self._power("vm.start", req)

    def StopVm(self, req):
        return self._power("vm.stop", req)

    def PauseVm(self, req):
        return self._power("vm.pause", req)

    def ResumeVm(self, req):
        return self._power("vm.resume", req)

    def DeleteVm(self, req):
        return self._power("vm.delete", req)

    def ReadConsole(self, req):
        vm = self._vm(req.name)
        if not vm.host:
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION,
                        "vm %s is off; start it first" % req.name)
        log = bytes(self.consoles.get(req.name, b""))
        cap = min(req.max_bytes or 65536, 65536)
        data = log[req.offset:req.offset + cap]
        nxt = req.offset + len(data) if req.offset < len(log) else len(log)
        if self.console_stuck:
            data, nxt = log[:cap], req.offset
        return self.api.ReadConsoleResponse(data=data, next_offset=nxt,
                                            size=len(log))

    def WriteConsole(self, req):
        vm = self._vm(req.name)
        if not vm.host:
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION,
                        "vm %s is not running; start it first" % req.name)
        with self.lock:
            if self.console_full > 0:
                self.console_full -= 1
                raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            "host h1: VM %s: queue full" % req.name)
            self.typed[req.name] = self.typed.get(req.name, b"") + req.data
            if self.console_echo:
                self.consoles[req.name] = bytes(
                    self.consoles.get(req.name, b"")) + req.data
        return self.api.WriteConsoleResponse()

    def ListDatastores(self, req):
        return self.api.ListDatastoresResponse(datastores=self.datastores)

    def ListTasks(self, req):
        A = self.api
        ts = [t for t in sorted(self.tasks.values(), key=lambda t: t.id)
              if not req.active_only or t.state in (A.TASK_STATE_QUEUED,
                                                    A.TASK_STATE_RUNNING)]
        page, nxt = self._page(ts, req)
        return A.ListTasksResponse(tasks=page, next_page_token=nxt)

    def _task(self, tid):
        if tid not in self.tasks:
            raise Abort(grpc.StatusCode.NOT_FOUND,
                        "task '%s' not found" % tid)
        return self.tasks[tid]

    def GetTask(self, req):
        return self._task(req.id)

    def CancelTask(self, req):
        t = self._task(req.id)
        t.state = self.api.TASK_STATE_CANCELLED
        t.error.CopyFrom(self.common.Status(code=1, message="cancelled by "
                                            "admin"))
        return t

    def WaitTask(self, req):
        t = self._task(req.id)
        A = self.api
        yield t
        for progress, phase, state, error in self.scripts.get(req.id, []):
            time.sleep(self.step_s)
            t.progress, t.phase = progress, phase
            t.state = A.TaskState.Value("TASK_STATE_" + state)
            if error:
                t.error.CopyFrom(self.common.Status(code=error[0],
                                                    message=error[1]))
            if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
                t.end_unix_ms = int(time.time() * 1000)
            yield t
        self.scripts[req.id] = []

    def ListEvents(self, req):
        evs = sorted(self.events, key=lambda e: -e.seq)
        if req.before_seq:
            evs = [e for e in evs if e.seq < req.before_seq]
        return self.api.ListEventsResponse(events=evs[:req.limit or 100])

    def WatchEvents(self, req):
        for e in self.events:
            if e.seq > req.after_seq:
                yield e
        time.sleep(self.step_s)
        yield self.add_event("vm.powered_on", "vm/new", "powered on")
        time.sleep(self.watch_hold)

    # --- plumbing ---------------------------------------------------------
    def _handler(self, name, req_cls, resp_cls):
        fn = getattr(self, name)

        def unary(req, ctx):
            self.calls.append((name, req))
            if self.standby:
                ctx.abort(grpc.StatusCode.UNAVAILABLE, self.standby)
            if name in self.delay:
                time.sleep(self.delay[name])
            if name in self.fail:
                ctx.abort(*self.fail[name])
            if name in self.garbage:
                return b"\xff\xff\xff\xff"
            try:
                return fn(req).SerializeToString()
            except Abort as a:
                ctx.abort(a.code, a.msg)

        def stream(req, ctx):
            self.calls.append((name, req))
            if self.standby:
                ctx.abort(grpc.StatusCode.UNAVAILABLE, self.standby)
            if name in self.fail:
                ctx.abort(*self.fail[name])
            try:
                for m in fn(req):
                    yield m.SerializeToString()
            except Abort as a:
                ctx.abort(a.code, a.msg)

        if name in STREAMING:
            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=req_cls.FromString,
                response_serializer=lambda b: b)
        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=req_cls.FromString,
            response_serializer=lambda b: b)

    def start(self):
        desc = self.api.DESCRIPTOR
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        for svc, methods in SERVICES.items():
            sd = desc.services_by_name[svc]
            handlers = {}
            for m in methods:
                md = sd.methods_by_name[m]
                req_cls = getattr(self.api, md.input_type.name)
                resp_cls = getattr(self.api, md.output_type.name)
                handlers[m] = self._handler(m, req_cls, resp_cls)
            self.server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler("canopy.v1." + svc,
                                                      handlers),))
        pki = shared_pki()
        self.ca = pki.ca
        with open(pki.path("manager.key"), "rb") as f:
            key = f.read()
        with open(pki.path("manager.crt"), "rb") as f:
            chain = f.read()
        port = self.server.add_secure_port(
            "127.0.0.1:0", grpc.ssl_server_credentials([(key, chain)]))
        self.server.start()
        self.address = "127.0.0.1:%d" % port
        return self

    def stop(self):
        if self.server:
            self.server.stop(0).wait()
