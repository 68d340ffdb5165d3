"""The agent tests' fake manager (canopy_testlib/fakemgr.py) itself: when
its socket thread dies, a wait fails at once naming the thread's error and
close() returns, instead of the wait running out with "got []" and close()
blocking for ever in zmq_ctx_term on the socket the dead thread never
closed (how a console test run hung under sanitizers)."""
import threading
import time

import pytest
import zmq

from canopy_testlib import fakemgr, protos


@pytest.fixture(autouse=True)
def _need_protos(build_dir):
    protos.load("canopy_agent")  # raises (fails the test) when not built


def say_hello(mgr, pb):
    """Send one register envelope (protos module pb) to mgr as host1."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.ROUTING_ID, b"host1")
    s.connect(mgr.endpoint)
    s.send(pb.Envelope(version=1, host_id="host1", register=pb.AgentRegister(
        hostname="host1")).SerializeToString())
    return s


def close_within(mgr, secs):
    """mgr.close() in a thread: whether it returned, and what it raised."""
    raised = []

    def run():
        try:
            mgr.close()
        except Exception as e:
            raised.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(secs)
    return not t.is_alive(), raised


def test_working_thread_receives_and_closes():
    mgr = fakemgr.FakeManager()
    s = say_hello(mgr, fakemgr.agent_pb())
    try:
        mgr.wait_body("register", timeout=10)
    finally:
        s.close(0)
        assert close_within(mgr, 10) == (True, []), "close() blocked"


def test_dead_thread_fails_waits_at_once_and_close_returns(monkeypatch):
    pb = fakemgr.agent_pb()

    def broken():
        raise RuntimeError("protos went away")
    mgr = fakemgr.FakeManager()
    monkeypatch.setattr(fakemgr, "agent_pb", broken)
    s = None
    try:
        s = say_hello(mgr, pb)
        t0 = time.monotonic()
        with pytest.raises(AssertionError) as e:
            mgr.wait_body("register", timeout=8)
        assert time.monotonic() - t0 < 5, "waited out the whole timeout"
        assert "thread died" in str(e.value)
        assert "protos went away" in str(e.value)
    finally:
        if s:
            s.close(0)
        returned, raised = close_within(mgr, 10)
        assert returned, "close() blocked after the thread died"
    # close() reports the death too (a test that never waited learns it).
    assert len(raised) == 1 and "protos went away" in str(raised[0])
