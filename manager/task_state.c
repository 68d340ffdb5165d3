/* canopy-managerd: task state transitions and task id format. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "manager/task_state.h"

#define T(x) CANOPY__V1__TASK_STATE__TASK_STATE_##x

int mgr_task_final(Canopy__V1__TaskState s)
{
	return s == T(SUCCEEDED) || s == T(FAILED) || s == T(CANCELLED);
}

int mgr_task_transition(Canopy__V1__TaskState from, Canopy__V1__TaskState to)
{
	switch (from) {
	case T(QUEUED):
		if (to == T(RUNNING) || to == T(CANCELLED) || to == T(FAILED))
			return 0;
		break;
	case T(RUNNING):
		if (to == T(RUNNING) || to == T(SUCCEEDED) || to == T(FAILED))
			return 0;
		break;
	default:
		break;
	}
	return -EINVAL;
}

const char *mgr_task_state_name(Canopy__V1__TaskState s)
{
	switch (s) {
	case T(QUEUED):
		return "queued";
	case T(RUNNING):
		return "running";
	case T(SUCCEEDED):
		return "succeeded";
	case T(FAILED):
		return "failed";
	case T(CANCELLED):
		return "cancelled";
	default:
		return "unknown";
	}
}

int mgr_task_id_format(char *buf, size_t n, uint64_t unix_ms, uint32_t counter)
{
	int len;

	if (unix_ms > 9999999999999ULL || n < MGR_TASK_ID_LEN + 1)
		return -ERANGE;
	len = snprintf(buf, n, "%013" PRIu64 "-%06" PRIx32, unix_ms,
		       counter & 0xffffffu);
	return len == MGR_TASK_ID_LEN ? 0 : -ERANGE;
}
