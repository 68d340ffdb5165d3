/*
 * canopy-managerd: the task state machine and task ids. Pure functions;
 * any thread.
 *
 *   QUEUED --> RUNNING --> SUCCEEDED
 *     |           |------> FAILED
 *     |---------------------> CANCELLED (only while queued)
 *     '---------------------> FAILED (its VM or host went away, or the
 *                             manager that queued it died)
 *
 * RUNNING --> RUNNING is allowed (progress and phase updates); nothing
 * leaves a final state.
 */
#ifndef CANOPY_MANAGER_TASK_STATE_H
#define CANOPY_MANAGER_TASK_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"
#include "proto/canopy_api.pb-c.h"

/* Length of a task id: 13 decimal digits of ms, '-', 6 hex digits. */
#define MGR_TASK_ID_LEN 20

/* Whether state is final (SUCCEEDED, FAILED, CANCELLED). */
int mgr_task_final(Canopy__V1__TaskState state);
/* 0 if a task may go from `from` to `to`, -EINVAL otherwise. */
CN_MUST_CHECK int mgr_task_transition(Canopy__V1__TaskState from,
				      Canopy__V1__TaskState to);
/* "queued", "running", ...; "unknown" for other values. */
const char *mgr_task_state_name(Canopy__V1__TaskState state);
/* Write the id of the counter-th task created at unix_ms into buf (size at
 * least MGR_TASK_ID_LEN + 1): ids sort by creation time. 0 or -ERANGE
 * (time beyond 13 digits). */
CN_MUST_CHECK int mgr_task_id_format(char *buf, size_t n, uint64_t unix_ms,
				     uint32_t counter);

#endif
