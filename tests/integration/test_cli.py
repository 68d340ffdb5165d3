"""The canopy CLI (build/bin/canopy) against a fake canopy-managerd
(canopy_testlib/fake_manager.py): every command in table and JSON form, the
requests it sends, progress while it waits for tasks, and each error path
(server down, deadline, NOT_FOUND, INVALID_ARGUMENT passed through, usage
errors, a failed task, hostile or undecodable answers, config file)."""
import json
import os
import pty
import subprocess
import time

import pytest

from canopy_testlib import protos
from canopy_testlib.fake_manager import OK_SCRIPT, FakeManager, shared_pki
from canopy_testlib.ports import free_port


@pytest.fixture(scope="module")
def canopy():
    path = os.path.join(protos.build_dir(), "bin", "canopy")
    if not os.path.exists(path):
        pytest.skip("SKIP: %s not built: run make" % path)
    return path


@pytest.fixture
def fake():
    f = FakeManager().start()
    f.add_host("h1", memory_used_mib=1536, vms=1, address="10.0.0.1")
    f.add_host("h2", memory_mib=3 * 1024 * 1024)
    f.add_host("h3", state=f.api.HOST_STATE_DISCONNECTED)
    f.add_vm("web1", memory_mib=2048, cpus=2)
    f.add_vm("db1", host="h2")
    f.add_vm("off1", desired=f.api.POWER_STATE_OFF,
             state=f.common.VM_RUN_STATE_STOPPED, host="")
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture
def home(tmp_path):
    """An empty HOME so the user's own config never leaks into a test."""
    d = tmp_path / "home"
    d.mkdir()
    return d


class Run:
    def __init__(self, p):
        self.rc, self.out, self.err = p.returncode, p.stdout, p.stderr

    def json(self):
        return json.loads(self.out)

    def error_line(self):
        lines = self.err.splitlines()
        assert lines and lines[0].startswith("canopy: "), self.err
        return lines[0][len("canopy: "):]


def run(canopy, home, *args, server=None, env=None, timeout=20, cwd=None):
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
         "CANOPY_CA": shared_pki().ca}
    e.update(env or {})
    cmd = [canopy] + (["--server", server] if server else []) + list(args)
    # stdin from /dev/null: a piped stdin would be typed into `vm console`
    return Run(subprocess.run(cmd, capture_output=True, text=True, env=e,
                              timeout=timeout, cwd=cwd,
                              stdin=subprocess.DEVNULL))


def ok(canopy, home, fake, *args):
    r = run(canopy, home, *args, server=fake.address)
    assert r.rc == 0, (args, r.out, r.err)
    assert r.err == ""
    return r


def table(out):
    """Rows of an aligned table: columns start where the header's words do."""
    lines = out.rstrip("\n").split("\n")
    hdr = lines[0]
    starts = [i for i, ch in enumerate(hdr)
              if ch != " " and (i == 0 or hdr[i - 1] == " ")
              and (i < 2 or hdr[i - 2:i] == "  " or i == 0)]
    rows = []
    for ln in lines:
        cells = [ln[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        for a in starts[1:]:
            # Trailing empty cells are not padded.
            assert len(ln) < a or ln[a - 1] == " ", \
                "column not aligned: %r" % ln
        rows.append(cells)
    return rows[0], rows[1:]


# --- help and usage ---------------------------------------------------------

@pytest.mark.parametrize("args,want", [
    (["--help"], "objects:"),
    (["vm", "--help"], "vm create NAME"),
    (["vm", "create", "--help"], "--disk SPEC"),
    (["task", "wait", "-h"], "usage: canopy task wait ID"),
    (["event", "list", "--help"], "--follow"),
])
def test_help_every_level(canopy, home, args, want):
    r = run(canopy, home, *args)
    assert r.rc == 0 and want in r.out and r.err == ""


@pytest.mark.parametrize("args,msg", [
    ([], "missing object"),
    (["frob"], "unknown object 'frob'"),
    (["vm"], "missing verb"),
    (["vm", "frob"], "unknown verb 'frob'"),
    (["vm", "show"], "missing argument"),
    (["vm", "show", "a", "b"], "too many arguments"),
    (["vm", "list"] + ["x"] * 1100, "too many arguments"),
    (["vm", "list"] + ["--host", "h"] * 2, "--host given twice"),
    (["vm", "list", "--bogus"], "unknown option '--bogus'"),
    (["vm", "list", "--host"], "option --host needs a value"),
    (["vm", "start", "x", "--no-wait=yes"], "takes no value"),
    (["-o", "yaml", "vm", "list"], "'yaml' is not an output format"),
    (["--timeout", "abc", "vm", "list"], "'abc' is not a number of seconds"),
    (["vm", "create", "x", "--cpus", "1", "--kernel", "/k"],
     "--memory is required"),
    (["vm", "create", "x", "--memory", "12x", "--cpus", "1", "--kernel",
      "/k"], "'12x' is not a size"),
    (["vm", "create", "x", "--memory", "1500K", "--cpus", "1", "--kernel",
      "/k"], "not a whole number of MiB"),
    (["vm", "create", "x", "--memory", "64", "--cpus", "0", "--kernel",
      "/k"], "--cpus: 0 is out of range"),
    (["vm", "create", "x", "--memory", "64", "--cpus", "1", "--kernel", "/k",
      "--disk", "size=0"], "size must be more than 0"),
    (["vm", "create", "x", "--memory", "64", "--cpus", "1", "--kernel", "/k",
      "--disk", "readonly"], "give size=SIZE"),
    (["vm", "create", "x", "--memory", "64", "--cpus", "1", "--kernel", "/k",
      "--disk", "size=1G,colour=red"], "unknown item 'colour=red'"),
    (["vm", "create", "x", "--memory", "64", "--memory", "65", "--cpus", "1",
      "--kernel", "/k"], "--memory given twice"),
    (["event", "list", "--limit", "0"], "--limit: 0 is out of range"),
    (["--server", "nocolon", "host", "list"], "is not HOST:PORT"),
    (["--server", "h:99999", "host", "list"], "out of range"),
    (["--server", "a:1,,b:2", "host", "list"], "empty address"),
    (["--server", ",".join(["h:%d" % i for i in range(1, 10)]), "host",
      "list"], "more than 8 servers"),
])
def test_usage_errors_exit_2(canopy, home, args, msg):
    r = run(canopy, home, *args)
    assert r.rc == 2, (args, r.rc, r.err)
    assert msg in r.error_line(), r.err
    assert r.out == ""
    # One line saying what is wrong, then at most one usage line.
    lines = r.err.splitlines()
    assert len(lines) <= 2
    if len(lines) == 2:
        assert lines[1].startswith("usage: canopy")


@pytest.mark.parametrize("words,want", [
    (["canopy", "v"], "vm"),
    (["canopy", ""], "cluster host datastore vm image task event session "
     "user role permission audit completion "
     "--server --output --timeout --ca --trust-fingerprint --help"),
    (["canopy", "vm", "c"], "create console"),
    (["canopy", "vm", "console", "web1", "--f"], "--follow --from-start"),
    (["canopy", "--server", "x:1", "vm", "create", "web", "--m"],
     "--memory"),
    (["canopy", "-o", ""], "table json"),
    (["canopy", "task", "list", "--a"], "--active"),
    (["canopy", "vm", "stop", "x", "--h"], "--help --hard"),
    (["canopy", "vm", "create", "x", "--memory", ""], ""),
])
def test_bash_completion(canopy, home, words, want):
    if not os.path.exists("/bin/bash"):
        pytest.skip("SKIP: no bash")
    script = run(canopy, home, "completion", "bash")
    assert script.rc == 0 and "complete -F _canopy canopy" in script.out
    prog = (script.out + "\nCOMP_WORDS=(\"$@\"); "
            "COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _canopy; "
            "echo \"${COMPREPLY[*]}\"\n")
    p = subprocess.run(["/bin/bash", "-c", prog, "bash"] + words,
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout == want + "\n"


# --- server resolution and connection errors ------------------------------

def test_server_down(canopy, home):
    addr = "127.0.0.1:%d" % free_port()
    r = run(canopy, home, "host", "list", server=addr)
    assert r.rc == 7 and r.out == ""
    line = r.error_line()
    assert len(r.err.splitlines()) == 1
    assert addr in line and "is canopy-managerd running?" in line
    assert "--server" in line and "~/.config/canopy/config" in line


def test_default_server_named_when_down(canopy, home):
    r = run(canopy, home, "cluster", "status")
    # Nothing listens on 7443 in the test environment, or a real manager
    # does: either way the default address is the one tried.
    if r.rc == 0:
        pytest.skip("SKIP: something answers on 127.0.0.1:7443")
    assert r.rc == 7 and "127.0.0.1:7443 (from the default)" in r.err


def test_config_env_flag_precedence(canopy, home, fake):
    cfg = home / ".config" / "canopy"
    cfg.mkdir(parents=True)
    (cfg / "config").write_text("# lab\nserver = %s\n" % fake.address)
    assert run(canopy, home, "cluster", "status").rc == 0
    dead = "127.0.0.1:%d" % free_port()
    r = run(canopy, home, "cluster", "status", env={"CANOPY_SERVER": dead})
    assert r.rc == 7 and dead in r.err and "from CANOPY_SERVER" in r.err
    r = run(canopy, home, "cluster", "status", server=fake.address,
            env={"CANOPY_SERVER": dead})
    assert r.rc == 0


@pytest.fixture
def standby():
    f = FakeManager().start()
    f.standby = ("this manager (m2) is standby; leader is m1 at 10.0.0.1:7443: "
                 "send API calls there")
    try:
        yield f
    finally:
        f.stop()


def test_server_list_fails_over(canopy, home, fake, standby):
    dead = "127.0.0.1:%d" % free_port()
    lst = ",".join([dead, standby.address, fake.address])
    r = run(canopy, home, "host", "list", server=lst)
    assert r.rc == 0 and "h1" in r.out, r.err
    assert standby.requests("ListHosts")
    # Streams go to the manager that answered (GetCluster finds it).
    fake.add_task("vm.start", "vm/web1", [(100, "done", "SUCCEEDED", None)])
    r = run(canopy, home, "task", "wait", "t1", server=lst)
    assert r.rc == 0 and "succeeded" in r.out, r.err
    assert standby.requests("GetCluster") and not standby.requests(
        "WaitTask")
    # A real answer (NOT_FOUND) is not retried elsewhere.
    r = run(canopy, home, "vm", "show", "nope",
            server=",".join([fake.address, standby.address]))
    assert r.rc == 3 and not standby.requests("GetVm")
    # Only unreachable servers and standbys: the standby's word wins.
    r = run(canopy, home, "cluster", "status",
            server=",".join([dead, standby.address]))
    assert r.rc == 7 and r.error_line() == standby.standby
    dead2 = "127.0.0.1:%d" % free_port()
    r = run(canopy, home, "cluster", "status", server=dead + "," + dead2)
    assert r.rc == 7
    assert ("cannot reach canopy-managerd at %s,%s (from --server)"
            % (dead, dead2)) in r.error_line()


def test_bad_config_file(canopy, home):
    cfg = home / ".config" / "canopy"
    cfg.mkdir(parents=True)
    (cfg / "config").write_text("server = 1.2.3.4:7443\nsever = x:1\n")
    r = run(canopy, home, "cluster", "status")
    assert r.rc == 2 and "config:2: unknown key 'sever'" in r.error_line()
    (cfg / "config").write_text("server = nowhere\n")
    r = run(canopy, home, "cluster", "status")
    assert r.rc == 2 and "is not HOST:PORT" in r.error_line()
    assert len(r.err.splitlines()) == 1


def test_deadline(canopy, home, fake):
    fake.delay["GetCluster"] = 2.0
    t0 = time.monotonic()
    r = run(canopy, home, "--timeout", "0.3", "cluster", "status",
            server=fake.address)
    assert time.monotonic() - t0 < 1.8
    assert r.rc == 7
    assert "within 0.3 s" in r.error_line() and "--timeout" in r.err


# --- cluster and hosts ------------------------------------------------------

def test_cluster_status(canopy, home, fake):
    r = ok(canopy, home, fake, "cluster", "status")
    assert "Leader:   m1 (127.0.0.1:7443)" in r.out
    assert "Hosts:    3 (2 connected)" in r.out
    assert "VMs:      3 (2 running)" in r.out
    j = ok(canopy, home, fake, "cluster", "status", "-o", "json").json()
    assert j["name"] == "lab" and j["hosts_connected"] == 2
    assert j["leader_address"] == "127.0.0.1:7443"


def test_host_list_table_and_paging(canopy, home, fake):
    r = ok(canopy, home, fake, "host", "list")
    hdr, rows = table(r.out)
    assert hdr == ["ID", "HOSTNAME", "STATE", "CPUS", "MEMORY", "VMS",
                   "ADDRESS", "LAST SEEN"]
    # Three hosts over two pages of two.
    assert [x[0] for x in rows] == ["h1", "h2", "h3"]
    assert len(fake.requests("ListHosts")) == 2
    assert rows[0][2] == "connected" and rows[2][2] == "disconnected"
    assert rows[0][4] == "1.5 GiB / 8.0 GiB"
    assert rows[1][4] == "0 MiB / 3.0 TiB"
    assert rows[0][7].endswith("s ago")


def test_host_list_json(canopy, home, fake):
    j = ok(canopy, home, fake, "-o", "json", "host", "list").json()
    assert [h["id"] for h in j] == ["h1", "h2", "h3"]
    assert j[0]["state"] == "HOST_STATE_CONNECTED"
    assert j[0]["memory_used_mib"] == 1536 and j[1]["datastores"] == []
    # Every field is present, defaults included (a stable shape).
    assert set(j[2]) == set(j[0])
    fake.hosts.clear()
    assert ok(canopy, home, fake, "host", "list", "-o", "json").json() == []
    assert ok(canopy, home, fake, "host", "list").out.startswith("ID  ")


def test_host_show_and_remove(canopy, home, fake):
    fake.hosts["h1"].datastores.extend(["ds1", "ds2"])
    r = ok(canopy, home, fake, "host", "show", "h1")
    assert "Datastores:    ds1, ds2" in r.out
    assert "Address:       10.0.0.1" in r.out
    assert "CPU features:  -\n" in r.out
    fake.hosts["h1"].cpu_features.extend(range(0xfffffff8, 0x100000000))
    r = ok(canopy, home, fake, "host", "show", "h1")
    assert ("CPU features:  fffffff8 fffffff9 fffffffa fffffffb fffffffc "
            "fffffffd fffffffe ffffffff\n") in r.out
    j = ok(canopy, home, fake, "host", "show", "h1", "-o", "json").json()
    assert j["id"] == "h1" and j["datastores"] == ["ds1", "ds2"]
    r = run(canopy, home, "host", "remove", "h1", server=fake.address)
    assert r.rc == 5
    assert r.error_line() == "host h1 runs 1 VMs; move or stop them first"
    r = ok(canopy, home, fake, "host", "remove", "h2")
    assert r.out == "host h2 removed\n" and "h2" not in fake.hosts
    j = ok(canopy, home, fake, "-o", "json", "host", "remove", "h3").json()
    assert j == {"id": "h3", "removed": True}


def test_not_found_passes_server_message(canopy, home, fake):
    r = run(canopy, home, "host", "show", "h9", server=fake.address)
    assert r.rc == 3 and r.out == ""
    assert r.err == ("canopy: host 'h9' not found; 'canopy host list' shows "
                     "the hosts\n")
    r = run(canopy, home, "vm", "start", "nope", server=fake.address)
    assert r.rc == 3 and "vm 'nope' not found" in r.err


def test_datastore_list(canopy, home, fake):
    A = fake.api
    fake.datastores = [
        A.Datastore(name="ds1", uuid="u-1", capacity_bytes=100 << 30,
                    free_bytes=(25 << 30) + (512 << 20),
                    hosts=["h1", "h2"]),
        A.Datastore(name="ds2", uuid="u-2", capacity_bytes=1 << 40),
        A.Datastore(name="ds3", hosts=["h3"])]
    hdr, rows = table(ok(canopy, home, fake, "datastore", "list").out)
    assert hdr == ["NAME", "UUID", "CAPACITY", "FREE", "HOSTS"]
    assert rows[0] == ["ds1", "u-1", "100 GiB", "26 GiB", "h1,h2"]
    assert rows[1] == ["ds2", "u-2", "1.0 TiB", "0 B", ""]
    assert rows[2] == ["ds3", "", "-", "-", "h3"]
    j = ok(canopy, home, fake, "datastore", "list", "-o", "json").json()
    assert [d["name"] for d in j] == ["ds1", "ds2", "ds3"]
    assert j[0]["hosts"] == ["h1", "h2"] and j[1]["free_bytes"] == 0


# --- VMs ---------------------------------------------------------------------

def test_vm_list(canopy, home, fake):
    hdr, rows = table(ok(canopy, home, fake, "vm", "list").out)
    assert hdr == ["NAME", "POWER", "STATE", "HOST", "CPUS", "MEMORY",
                   "CREATED"]
    assert [x[0] for x in rows] == ["db1", "off1", "web1"]
    web = rows[2]
    assert web[1:6] == ["on", "running", "h1", "2", "2.0 GiB"]
    assert web[6] == "2m ago"
    assert rows[1][1:4] == ["off", "stopped", "-"]
    j = ok(canopy, home, fake, "vm", "list", "--host", "h2", "-o",
           "json").json()
    assert [v["spec"]["name"] for v in j] == ["db1"]
    assert fake.requests("ListVms")[-1].host == "h2"
    assert j[0]["state"] == "VM_RUN_STATE_RUNNING"


def test_vm_show(canopy, home, fake):
    vm = fake.vms["web1"]
    vm.spec.disks.add(path="ds1:web1/disk0", size_bytes=10 << 30)
    vm.spec.disks.add(path="/srv/iso", readonly=True)
    vm.rss_bytes = 300 << 20
    r = ok(canopy, home, fake, "vm", "show", "web1")
    assert "Memory used:  300 MiB" in r.out
    assert "Disks:        ds1:web1/disk0 10 GiB\n" in r.out
    assert "              /srv/iso readonly\n" in r.out
    j = ok(canopy, home, fake, "vm", "show", "web1", "-o", "json").json()
    assert j["spec"]["disks"][0]["size_bytes"] == 10 << 30
    assert j["spec"]["nics"] == [] and j["rss_bytes"] == 300 << 20


def test_vm_create_waits_with_progress_lines(canopy, home, fake):
    r = ok(canopy, home, fake, "vm", "create", "new1", "--memory", "512",
           "--cpus", "2", "--kernel", "/boot/guest.elf", "--cmdline",
           "workload=spin", "--disk", "size=10G", "--disk",
           "path=/srv/base.img,readonly,serial=S1", "--host", "h1")
    req = fake.requests("CreateVm")[0]
    assert req.host == "h1"
    s = req.spec
    assert (s.name, s.memory_mib, s.cpus, s.kernel, s.cmdline) == (
        "new1", 512, 2, "/boot/guest.elf", "workload=spin")
    assert s.disks[0].size_bytes == 10 << 30 and not s.disks[0].path
    assert s.disks[1].path == "/srv/base.img" and s.disks[1].readonly
    assert s.disks[1].serial == "S1"
    lines = r.out.splitlines()
    assert lines[:3] == ["task t1: - 0%", "task t1: writing config 10%",
                         "task t1: creating disk 60%"]
    assert lines[3].startswith("task t1: vm.create vm/new1: succeeded in ")
    assert len(lines) == 4


def test_vm_create_memory_units(canopy, home, fake):
    ok(canopy, home, fake, "vm", "create", "m", "--memory", "2G", "--cpus",
       "1", "--kernel", "/k", "--no-wait")
    assert fake.requests("CreateVm")[0].spec.memory_mib == 2048


def test_vm_create_relative_paths_made_absolute(canopy, home, fake):
    r = run(canopy, home, "vm", "create", "rel", "--memory", "64", "--cpus",
            "1", "--kernel", "guest.elf", "--initrd", "sub/initrd.img",
            "--no-wait", server=fake.address, cwd=str(home))
    assert r.rc == 0, r.err
    s = fake.requests("CreateVm")[0].spec
    assert s.kernel == str(home) + "/guest.elf"
    assert s.initrd == str(home) + "/sub/initrd.img"
    # Absolute and datastore paths are sent as given.
    r = run(canopy, home, "vm", "create", "ds", "--memory", "64", "--cpus",
            "1", "--kernel", "ds1:images/k.elf", "--no-wait",
            server=fake.address, cwd=str(home))
    assert fake.requests("CreateVm")[1].spec.kernel == "ds1:images/k.elf"
    r = run(canopy, home, "vm", "create", "e", "--memory", "64", "--cpus",
            "1", "--kernel", "", server=fake.address)
    assert r.rc == 2 and "--kernel: empty path" in r.err


def test_vm_create_json_and_no_wait(canopy, home, fake):
    j = ok(canopy, home, fake, "-o", "json", "vm", "create", "j1",
           "--memory", "64", "--cpus", "1", "--kernel", "/k").json()
    assert j["state"] == "TASK_STATE_SUCCEEDED" and j["progress"] == 100
    r = ok(canopy, home, fake, "vm", "create", "j2", "--memory", "64",
           "--cpus", "1", "--kernel", "/k", "--no-wait")
    assert r.out == "t2\n"
    assert fake.requests("WaitTask") and len(fake.requests("WaitTask")) == 1
    j = ok(canopy, home, fake, "vm", "start", "j2", "--no-wait", "-o",
           "json").json()
    assert j["id"] == "t3" and j["state"] == "TASK_STATE_QUEUED"


def test_vm_create_server_errors(canopy, home, fake):
    r = run(canopy, home, "vm", "create", "x", "--memory", "64", "--cpus",
            "100", "--kernel", "/k", server=fake.address)
    # INVALID_ARGUMENT from the server: its message, exit 2, no usage line.
    assert r.rc == 2 and r.err == (
        "canopy: cpus: 100 is more than the 64 a VM may have\n")
    r = run(canopy, home, "vm", "create", "web1", "--memory", "64", "--cpus",
            "1", "--kernel", "/k", server=fake.address)
    assert r.rc == 4 and "vm 'web1' already exists" in r.err


def test_task_failure_exit_1(canopy, home, fake):
    fake.start_script["web1"] = [
        (20, "placing", "RUNNING", None),
        (40, "starting vmm on h1", "RUNNING", None),
        (40, "starting vmm on h1", "FAILED",
         (9, "h1: canopy-vmm exited: /dev/kvm: permission denied"))]
    r = run(canopy, home, "vm", "start", "web1", server=fake.address)
    assert r.rc == 1
    assert r.out.splitlines() == ["task t1: - 0%", "task t1: placing 20%",
                                  "task t1: starting vmm on h1 40%"]
    assert r.err == ("canopy: task t1 (vm.start vm/web1) failed: h1: "
                     "canopy-vmm exited: /dev/kvm: permission denied\n")


def test_power_verbs_send_their_requests(canopy, home, fake):
    ok(canopy, home, fake, "vm", "stop", "web1", "--hard")
    assert fake.requests("StopVm")[0].hard
    ok(canopy, home, fake, "vm", "stop", "db1")
    assert not fake.requests("StopVm")[1].hard
    for verb, method in [("pause", "PauseVm"), ("resume", "ResumeVm"),
                         ("delete", "DeleteVm")]:
        r = ok(canopy, home, fake, "vm", verb, "off1")
        assert fake.requests(method)[0].name == "off1"
        assert "succeeded" in r.out


def test_progress_bar_on_a_terminal(canopy, home, fake):
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["HOME"] = str(home)
        os.environ["CANOPY_CA"] = fake.ca
        os.execv(canopy, [canopy, "--server", fake.address, "vm", "start",
                          "web1"])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode()
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "\r\x1b[K[###" in text and "creating disk" in text
    assert "task t1: creating disk" not in text
    assert "succeeded in" in text


# --- tasks -------------------------------------------------------------------

def test_task_commands(canopy, home, fake):
    t = fake.add_task("vm.start", "vm/web1", [])
    t.state, t.progress, t.phase = (fake.api.TASK_STATE_RUNNING, 40,
                                    "booting")
    done = fake.add_task("vm.stop", "vm/db1", [])
    done.state, done.progress = fake.api.TASK_STATE_SUCCEEDED, 100
    done.end_unix_ms = done.start_unix_ms + 1500
    hdr, rows = table(ok(canopy, home, fake, "task", "list").out)
    assert hdr == ["ID", "KIND", "OBJECT", "STATE", "PROGRESS", "PHASE",
                   "STARTED", "DURATION"]
    assert rows[0][:6] == ["t1", "vm.start", "vm/web1", "running", "40%",
                           "booting"]
    assert rows[1][3] == "succeeded" and rows[1][7] == "1.5s"
    j = ok(canopy, home, fake, "task", "list", "--active", "-o",
           "json").json()
    assert [x["id"] for x in j] == ["t1"]
    assert fake.requests("ListTasks")[-1].active_only
    r = ok(canopy, home, fake, "task", "show", "t2")
    assert "State:     succeeded" in r.out and "User:      admin" in r.out
    r = ok(canopy, home, fake, "task", "cancel", "t1")
    assert r.out == "task t1: cancelled\n"
    r = run(canopy, home, "task", "show", "t1", "-o", "json",
            server=fake.address)
    assert r.json()["error"]["message"] == "cancelled by admin"
    r = run(canopy, home, "task", "show", "t9", server=fake.address)
    assert r.rc == 3 and r.error_line() == "task 't9' not found"


def test_task_wait_stream_ends_early(canopy, home, fake):
    fake.add_task("vm.start", "vm/web1", [(30, "copying", "RUNNING", None)])
    r = run(canopy, home, "task", "wait", "t1", server=fake.address)
    assert r.rc == 1
    assert r.out.splitlines()[-1] == "task t1: copying 30%"
    assert "ended the wait before task t1 finished" in r.err


def test_task_wait_cancelled_and_stream_error(canopy, home, fake):
    fake.add_task("vm.start", "vm/web1", [
        (30, "copying", "CANCELLED", (1, "cancelled by admin"))])
    r = run(canopy, home, "task", "wait", "t1", "-o", "json",
            server=fake.address)
    assert r.rc == 1 and r.json()["state"] == "TASK_STATE_CANCELLED"
    assert r.err == ("canopy: task t1 (vm.start vm/web1) was cancelled: "
                     "cancelled by admin\n")
    fake.fail["WaitTask"] = (
        __import__("grpc").StatusCode.UNAVAILABLE,
        "etcd is unavailable; retry when it is back")
    r = run(canopy, home, "task", "wait", "t1", server=fake.address)
    assert r.rc == 7
    assert r.err == "canopy: etcd is unavailable; retry when it is back\n"


# --- events ------------------------------------------------------------------

def test_event_list_and_follow(canopy, home, fake):
    fake.add_event("host.connected", "host/h1", "h1 connected")
    fake.add_event("vm.powered_on", "vm/web1", "web1 powered on")
    fake.add_event("task.failed", "task/t1", "boot failed",
                   severity=fake.api.EVENT_SEVERITY_ERROR)
    hdr, rows = table(ok(canopy, home, fake, "event", "list").out)
    assert hdr == ["SEQ", "AGE", "SEVERITY", "KIND", "OBJECT", "MESSAGE"]
    assert [x[0] for x in rows] == ["1", "2", "3"]
    assert rows[2][2] == "error" and rows[0][1] == "1s ago"
    j = ok(canopy, home, fake, "event", "list", "--limit", "2", "-o",
           "json").json()
    assert [e["seq"] for e in j] == [2, 3]
    assert fake.requests("ListEvents")[-1].limit == 2
    r = ok(canopy, home, fake, "event", "list", "--limit", "1", "--follow")
    lines = r.out.splitlines()
    # Followed: history and new events in one line format, no header.
    assert len(lines) == 2 and lines[0].startswith("3  ")
    assert " error " in lines[0] and "task.failed  task/t1  boot failed" in \
        lines[0]
    assert fake.requests("WatchEvents")[0].after_seq == 3
    assert lines[-1].startswith("4  ") and "vm.powered_on" in lines[-1]
    assert "vm/new" in lines[-1] and "powered on" in lines[-1]
    r = ok(canopy, home, fake, "event", "list", "-f", "-o", "json")
    seqs = [json.loads(x)["seq"] for x in r.out.splitlines()]
    assert seqs == [1, 2, 3, 4, 5]


def test_timeout_bounds_streams(canopy, home, fake):
    # A follow ends normally when --timeout is reached.
    fake.watch_hold = 5
    t0 = time.monotonic()
    r = ok(canopy, home, fake, "event", "list", "-f", "--timeout", "0.6")
    assert time.monotonic() - t0 < 4
    assert "vm.powered_on" in r.out
    # A task wait that reaches --timeout says the task goes on.
    fake.step_s = 2
    fake.add_task("vm.start", "vm/web1", OK_SCRIPT)
    t0 = time.monotonic()
    r = run(canopy, home, "task", "wait", "t1", "--timeout", "0.5",
            server=fake.address)
    assert time.monotonic() - t0 < 1.9
    assert r.rc == 7
    assert r.error_line() == (
        "task t1 did not finish within 0.5 s (--timeout); it goes on: "
        "'canopy task wait t1' follows it again")


# --- hostile and broken servers ---------------------------------------------

def test_hostile_text_is_cleaned(canopy, home, fake):
    fake.add_host("h4", hostname="evil\x1b[31m\nname\u00e9",
                  address="x" * 200)
    r = ok(canopy, home, fake, "host", "list")
    line = [x for x in r.out.splitlines() if x.startswith("h4")][0]
    assert "\x1b" not in r.out and "evil?[31m?name\u00e9" in line
    assert "x" * 61 + "..." in line and "x" * 62 not in line
    j = ok(canopy, home, fake, "host", "show", "h4", "-o", "json").json()
    assert j["hostname"] == "evil\x1b[31m\nname\u00e9"
    fake.fail["GetVm"] = (__import__("grpc").StatusCode.INTERNAL,
                          "bad\nline\x1b")
    r = run(canopy, home, "vm", "show", "web1", server=fake.address)
    assert r.rc == 1 and r.err == "canopy: bad?line?\n"


def test_hostile_task_error_is_one_clean_line(canopy, home, fake):
    fake.start_script["web1"] = [
        (10, "x\x1b[2Jy", "FAILED", (13, "boom\n\x1b[31mred"))]
    r = run(canopy, home, "vm", "start", "web1", server=fake.address)
    assert r.rc == 1 and "\x1b" not in r.out + r.err
    assert r.err == ("canopy: task t1 (vm.start vm/web1) failed: "
                     "boom??[31mred\n")


def test_undecodable_answer(canopy, home, fake):
    fake.garbage.add("GetVm")
    r = run(canopy, home, "vm", "show", "web1", server=fake.address)
    assert r.rc == 1
    assert r.err == ("canopy: the server sent a response that does not "
                     "decode\n")
