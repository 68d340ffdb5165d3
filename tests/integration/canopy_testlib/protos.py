"""The generated protobuf modules ($CANOPY_BUILD/py/proto/*_pb2.py)."""
import importlib
import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))


def build_dir():
    return os.environ.get("CANOPY_BUILD", os.path.join(_REPO, "build"))


def load(name):
    py = os.path.join(build_dir(), "py")
    if not os.path.isdir(os.path.join(py, "proto")):
        raise RuntimeError("no generated Python protos in %s: run make" % py)
    if py not in sys.path:
        sys.path.insert(0, py)
    return importlib.import_module("proto.%s_pb2" % name)


def vmm():
    return load("canopy_vmm")


def common():
    return load("canopy_common")
