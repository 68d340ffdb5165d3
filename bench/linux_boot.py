#!/usr/bin/python3
"""Linux boot to userspace inside a QEMU node (nested KVM): canopy-vmm vs
QEMU (microvm, KVM) in the same node, the same Debian kernel, initramfs,
command line, memory and vCPUs. Time: exec of the VMM until the guest's
userspace marker, on the node's clock. Usage: bench/linux_boot.py [RUNS]"""
import os
import re
import shutil
import sys
import tempfile

from benchlib import BUILD, compare, machine
from canopy_testlib import node

CMDLINE = "console=ttyS0 panic=-1 quiet"
RUN = r"""#!/bin/sh
# Print "T <name> <seconds>" for each boot: exec until the guest marker.
boot() {
	name=$1; shift
	t0=$(cut -d' ' -f1 /proc/uptime)
	"$@" 2>&1 | while read -r line; do
		case "$line" in
		*"canopy-guest: userspace up"*)
			t1=$(cut -d' ' -f1 /proc/uptime)
			echo "T $name $t0 $t1 $line";;
		esac
	done
}
for i in $(seq RUNS); do
	boot canopy canopy-vmm --kernel /g/vmlinuz --initrd /g/initrd.gz \
		--memory 256 --cpus 1 --serial stdio --log-level error \
		--cmdline "CMDLINE"
	boot qemu qemu-system-x86_64 -M microvm -accel kvm -cpu host \
		-m 256 -smp 1 -nodefaults -no-user-config -nographic \
		-serial stdio -kernel /g/vmlinuz -initrd /g/initrd.gz \
		-append "CMDLINE" -no-reboot
done
"""


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print("Linux boot inside a QEMU TCG node, %d runs each; host: %s"
          % (runs, machine()))
    with tempfile.TemporaryDirectory() as tmp:
        kernel = node.fetch_kernel(BUILD)
        guest = node.guest_initramfs(BUILD, os.path.join(tmp, "g.gz"))
        script = RUN.replace("RUNS", str(runs)).replace("CMDLINE", CMDLINE)
        qemu = shutil.which("qemu-system-x86_64")
        n = node.Node(BUILD, tmp, script, memory_mib=2048,
                      files=[(os.path.join(kernel, "vmlinuz"), "/g/vmlinuz"),
                             (guest, "/g/initrd.gz"),
                             ("/usr/share/qemu", "/usr/share/qemu")],
                      bins=[(os.path.join(BUILD, "bin", "canopy-vmm"),
                             "/usr/bin/canopy-vmm"),
                            (qemu, "/usr/bin/qemu-system-x86_64")])
        text = n.wait_exit(timeout=3600)
    res = {"canopy": [], "qemu": []}
    for m in re.finditer(r"^T (\w+) ([0-9.]+) ([0-9.]+) .*after ([0-9.]+)s",
                         text, re.M):
        res[m.group(1)].append(float(m.group(3)) - float(m.group(2)))
    if len(res["canopy"]) != runs or len(res["qemu"]) != runs:
        raise SystemExit("missing boots (canopy %d, qemu %d of %d):\n%s"
                         % (len(res["canopy"]), len(res["qemu"]), runs,
                            text[-4000:]))
    compare("exec -> guest userspace (node clock, 10 ms resolution)",
            res["canopy"], res["qemu"], "s", "qemu")


if __name__ == "__main__":
    main()
