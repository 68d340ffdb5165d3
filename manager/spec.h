/*
 * canopy-managerd: checks of what an API caller asks for, before anything
 * is stored: VM specs, and whether a power operation fits a VM's state.
 * Pure functions; any thread.
 */
#ifndef CANOPY_MANAGER_SPEC_H
#define CANOPY_MANAGER_SPEC_H

#include <stddef.h>

#include "lib/compiler.h"
#include "lib/err.h"
#include "proto/canopy_agent.pb-c.h"
#include "proto/canopy_api.pb-c.h"

#define MGR_CPUS_MIN 1
#define MGR_CPUS_MAX 64
#define MGR_MEMORY_MIN_MIB 16
#define MGR_MEMORY_MAX_MIB 1048576
#define MGR_PATH_MAX 1024 /* kernel, initrd, disk paths */
#define MGR_CMDLINE_MAX 2048
#define MGR_DISKS_MAX 16
#define MGR_NICS_MAX 8

/* The operations on a VM that run as tasks. */
enum mgr_op {
	MGR_OP_CREATE = 0,
	MGR_OP_START,
	MGR_OP_STOP,
	MGR_OP_PAUSE,
	MGR_OP_RESUME,
	MGR_OP_DELETE,
	MGR_OP_MIGRATE, /* vm.migrate: manager/migrate.c, no VmCommand */
	MGR_OP_COUNT,
};

/* Check spec. 0, or -EINVAL with one sentence saying what to fix in why
 * (size n), e.g. "memory_mib 8 is out of range: give 16..1048576 MiB". */
CN_MUST_CHECK int mgr_spec_check(const Canopy__V1__VmSpec *spec, char *why,
				 size_t n);

/* Whether op may start on a VM whose desired power state is desired and
 * whose reported run state is state. CN_OK, or CN_FAILED_PRECONDITION
 * with a sentence in why naming the VM and what to do. */
enum cn_code mgr_op_check(enum mgr_op op, const char *vm,
			  Canopy__V1__PowerState desired,
			  Canopy__V1__VmRunState state, char *why, size_t n);

/* Task kind ("vm.start"), the agent action, the desired power state after
 * success (UNSPECIFIED: unchanged) and the run state after success. */
const char *mgr_op_kind(enum mgr_op op);
Canopy__V1__VmAction mgr_op_action(enum mgr_op op, int hard);
Canopy__V1__PowerState mgr_op_desired(enum mgr_op op);
Canopy__V1__VmRunState mgr_op_state(enum mgr_op op);
/* Event kind on success ("vm.powered_on"). */
const char *mgr_op_event(enum mgr_op op);

#endif
