/* canopy-managerd: VM spec validation and power-operation preconditions. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "manager/keys.h"
#include "manager/spec.h"

static int why_set(char *why, size_t n, const char *fmt, ...) CN_PRINTF(3, 4);
static int why_set(char *why, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int path_check(const char *what, const char *p, int required, char *why,
		      size_t n)
{
	if (required && (!p || !*p))
		return why_set(why, n, "%s is empty: give a path", what);
	if (p && strlen(p) > MGR_PATH_MAX)
		return why_set(why, n, "%s is longer than %d bytes", what,
			       MGR_PATH_MAX);
	return 0;
}

static int devices_check(const Canopy__V1__VmSpec *s, char *why, size_t n)
{
	size_t i;

	if (s->n_disks > MGR_DISKS_MAX)
		return why_set(why, n, "%zu disks: at most %d are allowed",
			       s->n_disks, MGR_DISKS_MAX);
	if (s->n_nics > MGR_NICS_MAX)
		return why_set(why, n, "%zu nics: at most %d are allowed",
			       s->n_nics, MGR_NICS_MAX);
	for (i = 0; i < s->n_disks; i++)
		if (!s->disks[i] ||
		    path_check("disk path", s->disks[i]->path, 1, why, n))
			return why_set(why, n,
				       "disk %zu has no path or one longer "
				       "than %d bytes: give its path",
				       i, MGR_PATH_MAX);
	for (i = 0; i < s->n_nics; i++)
		if (!s->nics[i] || strlen(s->nics[i]->mac) > 17)
			return why_set(why, n,
				       "nic %zu: mac must look like "
				       "52:54:00:12:34:56 or be empty",
				       i);
	return 0;
}

int mgr_spec_check(const Canopy__V1__VmSpec *s, char *why, size_t n)
{
	if (!s)
		return why_set(why, n,
			       "spec is missing: give name, cpus, "
			       "memory_mib and kernel");
	if (!mgr_name_valid(MGR_NAME_VM, s->name))
		return why_set(why, n,
			       "name '%.80s' is not valid: use 1 to 63 "
			       "characters of a-z, 0-9 and '-'",
			       s->name ? s->name : "");
	if (s->cpus < MGR_CPUS_MIN || s->cpus > MGR_CPUS_MAX)
		return why_set(why, n, "cpus %u is out of range: give %d..%d",
			       s->cpus, MGR_CPUS_MIN, MGR_CPUS_MAX);
	if (s->memory_mib < MGR_MEMORY_MIN_MIB ||
	    s->memory_mib > MGR_MEMORY_MAX_MIB)
		return why_set(why, n,
			       "memory_mib %llu is out of range: give %d..%d "
			       "MiB",
			       (unsigned long long)s->memory_mib,
			       MGR_MEMORY_MIN_MIB, MGR_MEMORY_MAX_MIB);
	if (path_check("kernel", s->kernel, 1, why, n) ||
	    path_check("initrd", s->initrd, 0, why, n))
		return -EINVAL;
	if (s->cmdline && strlen(s->cmdline) > MGR_CMDLINE_MAX)
		return why_set(why, n, "cmdline is longer than %d bytes",
			       MGR_CMDLINE_MAX);
	return devices_check(s, why, n);
}

static int is_on(Canopy__V1__PowerState d)
{
	return d == CANOPY__V1__POWER_STATE__POWER_STATE_ON ||
	       d == CANOPY__V1__POWER_STATE__POWER_STATE_PAUSED;
}

static int is_live(Canopy__V1__VmRunState s)
{
	return s == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING ||
	       s == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_PAUSED ||
	       s == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_MIGRATING;
}

enum cn_code mgr_op_check(enum mgr_op op, const char *vm,
			  Canopy__V1__PowerState desired,
			  Canopy__V1__VmRunState state, char *why, size_t n)
{
	const char *msg = NULL;

	switch (op) {
	case MGR_OP_CREATE:
		break;
	case MGR_OP_START:
		/* Desired on but stopped (the guest powered off, the VMM
		 * died): starting it again is what the operator wants. */
		if (is_live(state) ||
		    (is_on(desired) &&
		     state ==
			     CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_UNSPECIFIED))
			msg = "is already powered on";
		break;
	case MGR_OP_STOP:
		if (!is_on(desired) && !is_live(state))
			msg = "is already powered off";
		break;
	case MGR_OP_PAUSE:
		if (desired != CANOPY__V1__POWER_STATE__POWER_STATE_ON)
			msg = "is not powered on; start it first";
		break;
	case MGR_OP_RESUME:
		if (desired != CANOPY__V1__POWER_STATE__POWER_STATE_PAUSED)
			msg = "is not paused";
		break;
	case MGR_OP_DELETE:
		if (is_on(desired) || is_live(state))
			msg = "is running; stop it first";
		break;
	default:
		msg = "cannot do that";
	}
	if (!msg)
		return CN_OK;
	snprintf(why, n, "vm %s %s", vm, msg);
	return CN_FAILED_PRECONDITION;
}

struct op_info {
	const char *kind;
	Canopy__V1__VmAction action;
	Canopy__V1__PowerState desired;
	Canopy__V1__VmRunState state;
	const char *event;
};

/* One row per enum mgr_op, in order. */
static const struct op_info ops[MGR_OP_COUNT] = {
	[MGR_OP_CREATE] = { "vm.create",
			    CANOPY__V1__VM_ACTION__VM_ACTION_CREATE,
			    CANOPY__V1__POWER_STATE__POWER_STATE_OFF,
			    CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_STOPPED,
			    "vm.created" },
	[MGR_OP_START] = { "vm.start", CANOPY__V1__VM_ACTION__VM_ACTION_START,
			   CANOPY__V1__POWER_STATE__POWER_STATE_ON,
			   CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING,
			   "vm.powered_on" },
	[MGR_OP_STOP] = { "vm.stop", CANOPY__V1__VM_ACTION__VM_ACTION_STOP,
			  CANOPY__V1__POWER_STATE__POWER_STATE_OFF,
			  CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_STOPPED,
			  "vm.powered_off" },
	[MGR_OP_PAUSE] = { "vm.pause", CANOPY__V1__VM_ACTION__VM_ACTION_PAUSE,
			   CANOPY__V1__POWER_STATE__POWER_STATE_PAUSED,
			   CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_PAUSED,
			   "vm.paused" },
	[MGR_OP_RESUME] = { "vm.resume",
			    CANOPY__V1__VM_ACTION__VM_ACTION_RESUME,
			    CANOPY__V1__POWER_STATE__POWER_STATE_ON,
			    CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING,
			    "vm.resumed" },
	[MGR_OP_DELETE] = { "vm.delete",
			    CANOPY__V1__VM_ACTION__VM_ACTION_DELETE,
			    CANOPY__V1__POWER_STATE__POWER_STATE_OFF,
			    CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_STOPPED,
			    "vm.deleted" },
	[MGR_OP_MIGRATE] = { "vm.migrate",
			     CANOPY__V1__VM_ACTION__VM_ACTION_UNSPECIFIED,
			     CANOPY__V1__POWER_STATE__POWER_STATE_ON,
			     CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING,
			     "vm.migrated" },
};

const char *mgr_op_kind(enum mgr_op op)
{
	return op < MGR_OP_COUNT ? ops[op].kind : "vm.unknown";
}

Canopy__V1__VmAction mgr_op_action(enum mgr_op op, int hard)
{
	if (op == MGR_OP_STOP && hard)
		return CANOPY__V1__VM_ACTION__VM_ACTION_STOP_HARD;
	return op < MGR_OP_COUNT ? ops[op].action :
				   CANOPY__V1__VM_ACTION__VM_ACTION_UNSPECIFIED;
}

Canopy__V1__PowerState mgr_op_desired(enum mgr_op op)
{
	return op < MGR_OP_COUNT ?
		       ops[op].desired :
		       CANOPY__V1__POWER_STATE__POWER_STATE_UNSPECIFIED;
}

Canopy__V1__VmRunState mgr_op_state(enum mgr_op op)
{
	return op < MGR_OP_COUNT ?
		       ops[op].state :
		       CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_UNSPECIFIED;
}

const char *mgr_op_event(enum mgr_op op)
{
	return op < MGR_OP_COUNT ? ops[op].event : "vm.unknown";
}
