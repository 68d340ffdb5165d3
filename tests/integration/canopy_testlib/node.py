"""QEMU nodes: a Debian kernel and a busybox initramfs booted under TCG with
nested SVM, so that KVM works inside (`modprobe kvm_amd npt=0`). The same
pieces build the small Linux guests that canopy-vmm boots inside a node.

Scripts live in deploy/node/; this module drives them for tests, benchmarks
and (later) the multi-node lab.
"""
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
NODE_DIR = os.path.join(REPO, "deploy", "node")


def fetch_kernel(build_dir):
    """Debian's kernel and the KVM modules, cached under BUILD/node/kernel."""
    out = os.path.join(str(build_dir), "node", "kernel")
    subprocess.run([os.path.join(NODE_DIR, "fetch-kernel.sh"), out],
                   check=True, capture_output=True, text=True, timeout=600)
    return out


def mkinitramfs(out, init, files=(), bins=()):
    """files and bins: (host path, image path) pairs; bins bring their
    shared libraries along."""
    args = [os.path.join(NODE_DIR, "mkinitramfs.sh"), str(out), str(init)]
    args += ["%s=%s" % (s, d) for s, d in files]
    for s, d in bins:
        args += ["--bin", "%s=%s" % (s, d)]
    subprocess.run(args, check=True, capture_output=True, text=True,
                   timeout=300)
    return str(out)


def guest_initramfs(build_dir, out):
    """The small Linux guest: prints a marker from userspace, powers off."""
    return mkinitramfs(out, os.path.join(NODE_DIR, "guest-init.sh"))


def disk_args(disks):
    """QEMU arguments attaching raw images as virtio-blk disks (/dev/vda,
    /dev/vdb, ... in the node) that several nodes may use at once: no image
    locking, share-rw, and cache=none (O_DIRECT on the host, so every write
    a node completes is in the image file, past the host's page cache)."""
    args = []
    for i, path in enumerate(disks):
        args += ["-drive", "file=%s,format=raw,if=none,id=d%d,cache=none,"
                 "file.locking=off" % (str(path).replace(",", ",,"), i),
                 "-device", "virtio-blk-pci,drive=d%d,share-rw=on" % i]
    return args


class NodeStalled(AssertionError):
    """The node's console, which node-init.sh keeps alive with a heartbeat
    every 15 s, stayed silent: the node as a whole stopped (its kernel's
    timers or QEMU), which a hang of our VMM or its guest inside it does
    not cause (the in-node scripts go on and report those)."""


def boot(make, timeout, stall_s=150, attempts=2):
    """make() -> a started Node; waits for it with wait_exit. A node that
    stalls as a whole is diagnosed, reported as a warning and booted again
    (at most `attempts` times in all); any other failure is not retried.
    Returns (node, console text)."""
    for i in range(attempts):
        n = make()
        try:
            return n, n.wait_exit(timeout, stall_s=stall_s)
        except NodeStalled as e:
            if i == attempts - 1:
                raise
            warnings.warn("QEMU node stalled; booted again. %s"
                          % str(e)[-6000:])


def boot_all(makes, timeout, stall_s=150, attempts=2):
    """boot() for nodes that work together (linked by nics=socket_nic_args):
    starts them all (each make() -> a started Node, in the order given) and
    waits for them at once. A node that stalls as a whole is reported as a
    warning and the whole set is booted again (at most `attempts` times);
    any other failure kills the others and is raised. Returns the consoles'
    texts in the order of makes."""
    for i in range(attempts):
        nodes = []
        try:
            for make in makes:
                nodes.append(make())
        except BaseException:
            for n in nodes:
                n.kill()
            raise
        out = [None] * len(nodes)

        def wait(k):
            try:
                out[k] = nodes[k].wait_exit(timeout, stall_s=stall_s)
            except AssertionError as e:
                out[k] = e
                for n in nodes:
                    n.kill()

        threads = [threading.Thread(target=wait, args=(k,))
                   for k in range(len(nodes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        errors = [e for e in out if isinstance(e, AssertionError)]
        stalls = [e for e in errors if isinstance(e, NodeStalled)]
        if not errors:
            return out
        if not stalls or i == attempts - 1:
            raise errors[0]
        warnings.warn("QEMU node stalled; all %d booted again. %s"
                      % (len(nodes), str(stalls[0])[-6000:]))


def free_tcp_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def socket_nic_args(role, port, mac):
    """QEMU arguments for a virtio-net NIC (eth0 in the node) on a virtual
    Ethernet between two nodes over a TCP connection on the host's
    loopback: role "listen" on one node, "connect" on the other (started
    once the first listens: wait_listening). No option ROM: the node boots
    its kernel directly, iPXE would only delay it."""
    return ["-netdev", "socket,id=n0,%s=127.0.0.1:%d" % (role, port),
            "-device", "virtio-net-pci,netdev=n0,mac=%s,romfile=" % mac]


def wait_listening(port, timeout=30):
    """Waits until something listens on 127.0.0.1:port (read from
    /proc/net/tcp: a probe connection would be taken for the peer)."""
    want = "0100007F:%04X" % port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1] == want and fields[3] == "0A":
                    return
        time.sleep(0.05)
    raise AssertionError("nothing listens on 127.0.0.1:%d after %ds"
                         % (port, timeout))


class Node:
    """One QEMU TCG node running NODE_DIR/node-init.sh as /init and then
    the script given as `run` (copied to /node/run). disks: raw images
    attached as shared virtio-blk disks (see disk_args); the image file must
    be on a filesystem with O_DIRECT (not tmpfs). nics: more QEMU arguments
    for network devices (see socket_nic_args)."""

    def __init__(self, build_dir, workdir, run_script, files=(), bins=(),
                 memory_mib=1536, cpus=1, name="node", disks=(), nics=()):
        self.workdir = str(workdir)
        kernel = fetch_kernel(build_dir)
        run = os.path.join(self.workdir, name + ".run")
        with open(run, "w") as f:
            f.write(run_script)
        os.chmod(run, 0o755)
        self.initrd = mkinitramfs(
            os.path.join(self.workdir, name + ".initrd.gz"),
            os.path.join(NODE_DIR, "node-init.sh"),
            [(os.path.join(kernel, "modules"), "/node/modules"),
             (run, "/node/run")] + list(files), bins)
        self.console = os.path.join(self.workdir, name + ".console")
        # QMP, for a look inside a node that stops answering (diagnose).
        self.qmp_path = os.path.join(self.workdir, name + ".qmp")
        if len(self.qmp_path) > 100:  # sun_path holds 108 bytes
            self.qmp_path = os.path.join(tempfile.mkdtemp(prefix="cnode"),
                                         "qmp")
        self.cmd = ["qemu-system-x86_64", "-accel", "tcg",
                    "-cpu", "qemu64,+svm", "-m", str(memory_mib),
                    "-smp", str(cpus), "-nographic", "-no-reboot",
                    "-nodefaults", "-serial", "file:" + self.console,
                    "-kernel", os.path.join(kernel, "vmlinuz"),
                    "-initrd", self.initrd,
                    "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
                    # An NMI from diagnose() panics the node with a
                    # backtrace of where its CPU is.
                    "-append", "console=ttyS0 panic=-1 quiet "
                    "unknown_nmi_panic"]
        self.cmd += disk_args(disks)
        self.cmd += list(nics)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

    def text(self):
        try:
            with open(self.console, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_exit(self, timeout, stall_s=None):
        """Waits for the node to power off. stall_s: a console that does
        not grow for that long (past the start of the node's heartbeat)
        raises NodeStalled."""
        deadline = time.monotonic() + timeout
        size, grew = -1, time.monotonic()
        while True:
            try:
                self.proc.wait(2)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            cur = self._console_size()
            if cur != size:
                size, grew = cur, now
            stalled = (stall_s and now - grew > stall_s and
                       "canopy-node: kvm ready" in self.text())
            if now < deadline and not stalled:
                continue
            diag = self.diagnose()
            self.kill()
            what = ("node console silent for %ds (no heartbeat)" % stall_s
                    if stalled else "node still running after %ds" % timeout)
            raise (NodeStalled if stalled else AssertionError)(
                "%s; console:\n%s\n--- node diagnosis ---\n%s"
                % (what, self.text()[-4000:], diag))
        self.elapsed = time.monotonic() - self.t0
        return self.text()

    def _console_size(self):
        try:
            return os.path.getsize(self.console)
        except OSError:
            return 0

    def _qmp(self, commands, timeout=10):
        """Runs HMP command lines through QMP; one answer (or error) per
        command. A QEMU whose main loop is stuck does not answer."""
        out = []
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.qmp_path)
            f = s.makefile("rw")
            f.readline()  # greeting
            f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
            f.flush()
            f.readline()
            for c in commands:
                f.write(json.dumps({"execute": "human-monitor-command",
                                    "arguments": {"command-line": c}}) + "\n")
                f.flush()
                while True:
                    r = json.loads(f.readline())
                    if "return" in r or "error" in r:
                        break
                out.append("(qemu) %s\n%s" % (c, r.get("return", r)))
        except (OSError, ValueError) as e:
            out.append("qmp: %s" % e)
        finally:
            s.close()
        return "\n".join(out)

    def diagnose(self):
        """What a hung node is doing: QEMU's threads (from /proc), the node
        CPU's registers twice 2 s apart (moving or stopped; in the nested
        guest or in the node kernel), then an NMI, which panics the node
        kernel (unknown_nmi_panic) with a backtrace on the console."""
        parts = []
        pid = self.proc.pid
        try:
            for t in sorted(os.listdir("/proc/%d/task" % pid)):
                d = "/proc/%d/task/%s/" % (pid, t)
                with open(d + "stat") as f:
                    st = f.read().rsplit(")", 1)[1].split()
                with open(d + "wchan") as f:
                    wchan = f.read()
                with open(d + "comm") as f:
                    comm = f.read().strip()
                parts.append("qemu thread %s %s state %s utime %s stime %s "
                             "wchan %s" % (t, comm, st[0], st[11], st[12],
                                           wchan))
        except OSError as e:
            parts.append("proc: %s" % e)
        # Whatever else takes this machine's CPUs (a node starves under load).
        top = subprocess.run(["ps", "-eo", "pid,pcpu,etime,args",
                              "--sort=-pcpu"], capture_output=True,
                             text=True, timeout=10).stdout.splitlines()[:8]
        parts.append("load %s; busiest processes:\n%s" % (
            os.getloadavg(), "\n".join(l[:200] for l in top)))
        parts.append(self._qmp(["info status", "info registers"]))
        time.sleep(2)
        parts.append(self._qmp(["info registers", "nmi"]))
        time.sleep(15)
        parts.append("console after NMI:\n" + self.text()[-6000:])
        return "\n".join(parts)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
