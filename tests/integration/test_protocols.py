"""The generated Python modules of proto/: they load, round-trip, and follow
the project's conventions (prefixed enum values, the services the API
promises)."""
import pytest

from canopy_testlib import protos

MODULES = ["canopy_common", "canopy_vmm", "canopy_agent", "canopy_api"]


@pytest.mark.parametrize("name", MODULES)
def test_module_loads(name):
    assert protos.load(name).DESCRIPTOR.package == "canopy.v1"


def test_vmm_request_round_trip():
    V = protos.vmm()
    req = V.VmmRequest(id=42, save=V.VmmSaveRequest(path="/s", stop_after=True))
    back = V.VmmRequest.FromString(req.SerializeToString())
    assert back.id == 42 and back.WhichOneof("op") == "save"
    assert back.save.path == "/s" and back.save.stop_after
    # Unknown bytes do not parse into a request with an operation.
    with pytest.raises(Exception):
        V.VmmRequest.FromString(b"\xff\xff\xff")


def test_agent_envelope_round_trip():
    A = protos.load("canopy_agent")
    env = A.Envelope(version=1, request_id=7, host_id="h1",
                     heartbeat=A.AgentHeartbeat())
    back = A.Envelope.FromString(env.SerializeToString())
    assert back.host_id == "h1" and back.WhichOneof("body") == "heartbeat"


def test_api_services():
    api = protos.load("canopy_api").DESCRIPTOR
    want = {
        "ClusterService": ["GetCluster"],
        "HostService": ["ListHosts", "GetHost", "RemoveHost"],
        "VmService": ["CreateVm", "ListVms", "GetVm", "StartVm", "StopVm",
                      "PauseVm", "ResumeVm", "DeleteVm", "ReadConsole"],
        "DatastoreService": ["ListDatastores"],
        "TaskService": ["ListTasks", "GetTask", "WaitTask", "CancelTask"],
        "EventService": ["ListEvents", "WatchEvents"],
    }
    for svc, methods in want.items():
        got = api.services_by_name[svc].methods_by_name
        for m in methods:
            assert m in got, "%s.%s missing" % (svc, m)
    wait = api.services_by_name["TaskService"].methods_by_name["WaitTask"]
    assert wait.server_streaming


def _upper_snake(name):
    out = ""
    for i, c in enumerate(name):
        if c.isupper() and i:
            out += "_"
        out += c.upper()
    return out


@pytest.mark.parametrize("name", MODULES)
def test_enum_values_carry_their_enum_prefix(name):
    def enums(desc):
        yield from desc.enum_types_by_name.values()
        for msg in getattr(desc, "message_types_by_name", {}).values():
            yield from msg.enum_types
    for enum in enums(protos.load(name).DESCRIPTOR):
        prefix = _upper_snake(enum.name) + "_"
        for v in enum.values:
            assert v.name.startswith(prefix), "%s.%s" % (enum.name, v.name)
        assert enum.values[0].number == 0
        assert enum.values[0].name.endswith("_UNSPECIFIED")
