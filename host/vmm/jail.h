/*
 * canopy-vmm's jail (docs/security.md). A VMM started as root confines
 * itself before the first guest instruction:
 *
 *   1. vmm_jail_init, at start-up while the process has one thread: a
 *      private mount namespace (every thread created later shares it).
 *   2. vmm_setup opens everything privileged: /dev/kvm and the VM, disks
 *      and datastores, TAP devices, hugepages, the serial file, the kernel
 *      and initrd (kept open for a guest reboot), /proc/self/statm.
 *   3. vmm_jail_enter: the root becomes an empty read-only tmpfs holding
 *      only bind mounts of the VM's directory (read-write, for snapshots;
 *      --jail-dir, else the control socket's directory) and of the
 *      directories of --net unix peers (read-only), each at its own path;
 *      the old root is unmounted. Then the process drops to a uid/gid of
 *      its own (--jail-uid, else VMM_JAIL_UID_BASE + pid) with no
 *      supplementary groups, no capabilities (bounding set emptied),
 *      PR_SET_NO_NEW_PRIVS and PR_SET_DUMPABLE 0. The seccomp filter
 *      follows in vmm_run.
 *
 * --no-jail skips it (warned). A VMM not started as root runs as it is
 * (logged): it is unprivileged already. Any failure is an error: the VMM
 * never runs unjailed as root unless told --no-jail.
 */
#ifndef CANOPY_VMM_JAIL_H
#define CANOPY_VMM_JAIL_H

#include <stddef.h>
#include <sys/types.h>

#include "lib/compiler.h"

struct vm;

/* A VMM started as root without --jail-uid runs as this + its pid: pids are
 * at most 4194304 (PID_MAX_LIMIT), so 1879048192..1883242496, a range no
 * distribution allocates (systemd's "unused" block below 2^31). */
#define VMM_JAIL_UID_BASE 1879048192u
/* --jail-uid accepts 1..VMM_JAIL_UID_MAX, except VMM_JAIL_UID_NOBODY. */
#define VMM_JAIL_UID_MAX 2147483646u
#define VMM_JAIL_UID_NOBODY 65534u

/* Parse a --jail-uid value into *uid; -EINVAL with a message in err. */
CN_MUST_CHECK int vmm_jail_uid_parse(const char *s, uid_t *uid, char *err,
				     size_t errlen);

/* Start-up, one thread only: decide whether to jail (root, no --no-jail)
 * and if so unshare the mount namespace; opens /proc/self/statm for the
 * stats either way. 0 or -errno with a message in err. */
CN_MUST_CHECK int vmm_jail_init(struct vm *vm, char *err, size_t errlen);

/* After the privileged set-up, before any guest code runs (main thread):
 * build the jail's root, pivot into it and drop privileges. Nothing when
 * vmm_jail_init decided not to jail. 0 or -errno with a message in err. */
CN_MUST_CHECK int vmm_jail_enter(struct vm *vm, char *err, size_t errlen);

/* Read a kernel or initrd kept open for the run (fd) from its start into
 * a malloc'd buffer, at most max bytes. 0, -EFBIG, or -errno. */
CN_MUST_CHECK int vmm_jail_read_fd(int fd, size_t max, char **out, size_t *len);

#endif
