/*
 * canopy-managerd: task records shared by tasks.c (engine), task_run.c
 * (talking to agents) and api_tasks.c (handlers). Loop thread only.
 */
#ifndef CANOPY_MANAGER_TASKS_H
#define CANOPY_MANAGER_TASKS_H

#include <stdbool.h>
#include <stdint.h>

#include "manager/manager.h"

struct mgr_mig;

/* An active (queued or running) task of the leader. */
struct mgr_task {
	struct mgr_task *next;
	struct manager *m;
	Canopy__V1__Task *rec; /* heap message, as unpacked */
	enum mgr_op op;
	int hard;
	uint32_t timeout_ms;
	char vm[MGR_KEY_MAX];
	char host[MGR_KEY_MAX];
	Canopy__V1__PowerState prev_desired;
	bool running; /* sent to the agent */
	bool in_flight; /* a bus request is pending */
	bool ended; /* ended while in flight: the reply callback frees it */
	struct mgr_mig *mig; /* vm.migrate only (manager/migrate.c) */
};

/* Store rec (and its active-index key), with vm (NULL: none) and cmp
 * (NULL: none) in the same fenced txn. 0, -ESTALE (cmp failed), -EPERM,
 * or an etcd error. */
CN_MUST_CHECK int mgr_task_save(struct manager *m, const Canopy__V1__Task *rec,
				const Canopy__V1__Vm *vm,
				const struct etcd_cmp *cmp);
/* A RUNNING task of kind (op: what undo and the engine see; the engine
 * never starts it, its owner ends it with mgr_task_end) for vm on host,
 * stored and added to m->tasks: 0 with *t_out and *out (a heap copy for
 * the reply), or -errno with nothing stored or added. */
CN_MUST_CHECK int mgr_task_own(struct manager *m, enum mgr_op op,
			       const char *kind, const Canopy__V1__Vm *vm,
			       const char *host, uint32_t timeout_ms,
			       struct mgr_task **t_out, Canopy__V1__Task **out);
/* Store t's record and send it to its WaitTask streams; a final record
 * also ends them. */
void mgr_task_update(struct manager *m, const Canopy__V1__Task *rec);
/* End t: record final state (code CN_OK: SUCCEEDED; CN_CANCELLED:
 * CANCELLED; else FAILED with msg), undo what a failed op left, emit the
 * event, drop t and start the next task. */
void mgr_task_end(struct mgr_task *t, enum cn_code code, const char *msg);
/* Start every queued task whose VM has no running task (task_run.c). */
void mgr_tasks_kick(struct manager *m);
/* Fail the running tasks whose host is hid: it disconnected. */
void mgr_tasks_host_down(struct manager *m, const char *hid);
/* Set rec's error to code and msg (left unset when out of memory). */
void mgr_task_set_error(Canopy__V1__Task *rec, enum cn_code code,
			const char *msg);
/* A heap copy of rec (NULL when out of memory). */
Canopy__V1__Task *mgr_task_copy(const Canopy__V1__Task *rec);

#endif
