/* canopy-agent: the uid each VM's jailed canopy-vmm runs as (--vmm-uids). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/agent/agent.h"
#include "lib/log.h"
#include "lib/sys.h"

/* The VM's uid, kept in its directory so that it stays the same across
 * restarts of the VM and of the agent (its snapshots stay its own). */
#define VM_UID_FILE "jail.uid"
/* canopy-vmm's --jail-uid limits (host/vmm/jail.h). */
#define VM_UID_MAX 2147483646u
#define VM_UID_NOBODY 65534u

static int uid_ok(unsigned long long v)
{
	return v >= 1 && v <= VM_UID_MAX && v != VM_UID_NOBODY;
}

int agent_vmm_uids_parse(const char *s, uint32_t *first, uint32_t *last)
{
	unsigned long long a, b;
	char *end;

	errno = 0;
	a = strtoull(s, &end, 10);
	if (errno || end == s || *end != '-' || s[0] == '-' || s[0] == '+')
		return -EINVAL;
	s = end + 1;
	b = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || s[0] == '+' ||
	    !uid_ok(a) || !uid_ok(b) || a > b ||
	    (a <= VM_UID_NOBODY && b >= VM_UID_NOBODY))
		return -EINVAL;
	*first = (uint32_t)a;
	*last = (uint32_t)b;
	return 0;
}

void agent_vm_uid_load(struct agent_vm *vm)
{
	char path[AGENT_PATH_MAX + 16], *text = NULL, *end;
	unsigned long long v;
	size_t n;

	vm->jail_uid = 0;
	snprintf(path, sizeof(path), "%s/%s", vm->dir, VM_UID_FILE);
	if (sys_read_file(path, 32, &text, &n) < 0)
		return;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (!errno && end != text && (*end == '\n' || !*end) && uid_ok(v))
		vm->jail_uid = (uint32_t)v;
	free(text);
}

/* Is uid held by another VM of this agent? */
static int uid_taken(const struct agent *ag, const struct agent_vm *self,
		     uint32_t uid)
{
	for (const struct agent_vm *v = ag->vms; v; v = v->next)
		if (v != self && v->jail_uid == uid)
			return 1;
	return 0;
}

int agent_vm_uid_pick(struct agent *ag, struct agent_vm *vm, char *msg,
		      size_t len)
{
	const struct agent_opts *o = &ag->opts;
	char path[AGENT_PATH_MAX + 16], text[16];
	uint32_t uid;
	int rc;

	if (!o->vmm_uid_first)
		return 0; /* canopy-vmm picks (base + pid) */
	if (vm->jail_uid >= o->vmm_uid_first &&
	    vm->jail_uid <= o->vmm_uid_last && !uid_taken(ag, vm, vm->jail_uid))
		return 0;
	for (uid = o->vmm_uid_first; uid <= o->vmm_uid_last; uid++)
		if (uid != VM_UID_NOBODY && !uid_taken(ag, vm, uid))
			break;
	if (uid > o->vmm_uid_last || uid == 0) {
		snprintf(msg, len,
			 "no free VMM uid: all of --vmm-uids %u-%u are given "
			 "to other VMs of this host; widen the range",
			 o->vmm_uid_first, o->vmm_uid_last);
		return -ENOSPC;
	}
	snprintf(path, sizeof(path), "%s/%s", vm->dir, VM_UID_FILE);
	snprintf(text, sizeof(text), "%u\n", uid);
	rc = sys_write_file_atomic(path, text, strlen(text), 0600);
	if (rc < 0) {
		snprintf(msg, len, "cannot write %s: %s", path, strerror(-rc));
		return rc;
	}
	vm->jail_uid = uid;
	log_info("agent", "vmm uid assigned", "vm=%s uid=%u", vm->id, uid);
	return 0;
}
