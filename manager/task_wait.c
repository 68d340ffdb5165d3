/* canopy-managerd: task updates, WaitTask streams, cancel, step-down. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "manager/task_state.h"
#include "manager/migrate.h"
#include "manager/tasks.h"

struct mgr_waiter {
	struct mgr_waiter *next;
	struct manager *m;
	struct api_call *c;
	char id[MGR_TASK_ID_LEN + 1];
};

static void waiter_unlink(struct manager *m, struct mgr_waiter *w)
{
	struct mgr_waiter **pp;

	for (pp = &m->waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			m->n_waiters--;
			break;
		}
	free(w);
}

static void notify(struct manager *m, const Canopy__V1__Task *rec)
{
	struct mgr_waiter *w, *next;
	struct api_call *c;
	int rc, final = mgr_task_final(rec->state);

	for (w = m->waiters; w; w = next) {
		next = w->next;
		if (strcmp(w->id, rec->id) != 0)
			continue;
		rc = api_stream_send(w->c, &rec->base);
		if (rc == 0 && !final)
			continue;
		c = w->c;
		waiter_unlink(m, w);
		if (rc == 0)
			api_fail(c, CN_OK, "");
		else
			api_fail(c, CN_RESOURCE_EXHAUSTED,
				 "the client reads too slowly; call WaitTask "
				 "again");
	}
}

void mgr_task_update(struct manager *m, const Canopy__V1__Task *rec)
{
	int rc = mgr_task_save(m, rec, NULL, NULL);

	if (rc)
		log_warn("manager", "cannot store task", "task=%s err=\"%s\"",
			 rec->id, cn_strerror(rc));
	notify(m, rec);
}

static void waiter_cancel(void *arg, struct api_call *c)
{
	struct mgr_waiter *w = arg;

	waiter_unlink(w->m, w);
	api_fail(c, CN_CANCELLED, "the client went away");
}

/* Read task id into *out; answers c and returns nonzero on failure. */
static int task_read(struct manager *m, struct api_call *c, const char *id,
		     Canopy__V1__Task **out)
{
	char key[MGR_KEY_MAX];
	int rc;

	*out = NULL;
	if (mgr_key_join(key, sizeof(key), MGR_PREFIX_TASKS, MGR_NAME_TASK,
			 id)) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "'%.64s' is not a task id; list tasks with "
			 "'canopy task list'",
			 id);
		return 1;
	}
	rc = mgr_get_msg(m, key, &canopy__v1__task__descriptor,
			 (ProtobufCMessage **)out);
	if (rc == -ENOENT)
		api_fail(c, CN_NOT_FOUND,
			 "task %s does not exist; list tasks with 'canopy "
			 "task list'",
			 id);
	else if (rc)
		mgr_fail_store(m, c, rc, "reading the task");
	return rc;
}

void mgr_task_wait(struct manager *m, struct api_call *c, const char *id)
{
	Canopy__V1__Task *rec;
	struct mgr_waiter *w;

	if (task_read(m, c, id, &rec))
		return;
	if (m->n_waiters >= MGR_STREAMS_MAX) {
		api_fail(c, CN_RESOURCE_EXHAUSTED,
			 "too many WaitTask streams; retry later");
		goto out;
	}
	if (api_stream_send(c, &rec->base) || mgr_task_final(rec->state)) {
		api_fail(c, CN_OK, "");
		goto out;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	w->m = m;
	w->c = c;
	snprintf(w->id, sizeof(w->id), "%s", rec->id);
	w->next = m->waiters;
	m->waiters = w;
	m->n_waiters++;
	api_call_on_cancel(c, waiter_cancel, w);
out:
	canopy__v1__task__free_unpacked(rec, NULL);
}

void api_get_task(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__GetTaskRequest *req = (const void *)r;
	Canopy__V1__Task *rec;

	if (task_read(arg, c, req->id, &rec))
		return;
	api_reply(c, &rec->base);
	canopy__v1__task__free_unpacked(rec, NULL);
}

void mgr_task_cancel(struct manager *m, struct api_call *c, const char *id)
{
	Canopy__V1__Task *rec, *copy;
	struct mgr_task *t;

	if (mgr_image_cancel(m, c, id) || mgr_migrate_cancel(m, c, id))
		return;
	if (task_read(m, c, id, &rec))
		return;
	for (t = m->tasks; t; t = t->next)
		if (strcmp(t->rec->id, rec->id) == 0)
			break;
	if (mgr_task_final(rec->state) || !t)
		api_fail(c, CN_FAILED_PRECONDITION,
			 "task %s has already ended (%s)", rec->id,
			 mgr_task_state_name(rec->state));
	else if (t->running)
		api_fail(c, CN_FAILED_PRECONDITION,
			 "task %s is running on host %s and cannot be "
			 "cancelled; it ends when the agent answers or after "
			 "%u ms",
			 rec->id, t->host, t->timeout_ms);
	else {
		mgr_task_end(t, CN_CANCELLED, "cancelled by request");
		copy = NULL;
		canopy__v1__task__free_unpacked(rec, NULL);
		if (task_read(m, c, id, &copy) == 0) {
			api_reply(c, &copy->base);
			canopy__v1__task__free_unpacked(copy, NULL);
		}
		return;
	}
	canopy__v1__task__free_unpacked(rec, NULL);
}

void mgr_tasks_stop(struct manager *m)
{
	struct mgr_waiter *w;
	struct mgr_task *t;
	struct api_call *c;

	while ((w = m->waiters)) {
		c = w->c;
		waiter_unlink(m, w);
		api_fail(c, CN_UNAVAILABLE,
			 "this manager stepped down; call WaitTask on the new "
			 "leader");
	}
	while ((t = m->tasks)) {
		m->tasks = t->next;
		canopy__v1__task__free_unpacked(t->rec, NULL);
		mgr_migrate_forget(t); /* its timer too */
		free(t);
	}
}
