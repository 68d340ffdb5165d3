/* canopy-managerd: running tasks: the agent command, its answer, results. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "manager/migrate.h"
#include "manager/task_state.h"
#include "manager/tasks.h"

static void on_reply(void *arg, int status, const Canopy__V1__Envelope *env);

/* Read the task's VM (NULL when it is gone). */
static Canopy__V1__Vm *vm_read(struct mgr_task *t)
{
	char key[MGR_KEY_MAX];
	Canopy__V1__Vm *vm = NULL;

	if (mgr_key_join(key, sizeof(key), MGR_PREFIX_VMS, MGR_NAME_VM, t->vm))
		return NULL;
	if (mgr_get_msg(t->m, key, &canopy__v1__vm__descriptor,
			(ProtobufCMessage **)&vm))
		return NULL;
	return vm;
}

static void progress(struct mgr_task *t, uint32_t pct, const char *phase)
{
	if (mgr_task_transition(t->rec->state,
				CANOPY__V1__TASK_STATE__TASK_STATE_RUNNING))
		return;
	t->rec->state = CANOPY__V1__TASK_STATE__TASK_STATE_RUNNING;
	t->rec->progress = pct;
	if (mgr_set_str(&t->rec->phase, phase) == 0)
		mgr_task_update(t->m, t->rec);
}

static void start(struct mgr_task *t)
{
	Canopy__V1__VmCommand cmd = CANOPY__V1__VM_COMMAND__INIT;
	struct manager *m = t->m;
	Canopy__V1__Vm *vm = vm_read(t);
	char phase[MGR_KEY_MAX + 64], msg[MGR_KEY_MAX + 128];
	int rc;

	if (!vm) {
		mgr_task_end(t, CN_NOT_FOUND, "the vm no longer exists");
		return;
	}
	t->running = true;
	snprintf(phase, sizeof(phase), "waiting for host %s", t->host);
	progress(t, 10, phase);
	cmd.action = mgr_op_action(t->op, t->hard);
	cmd.vm_id = vm->id;
	cmd.spec = vm->spec;
	cmd.timeout_ms = t->timeout_ms;
	rc = mgr_host_command(m, t->host, &cmd, t->timeout_ms, on_reply, t);
	canopy__v1__vm__free_unpacked(vm, NULL);
	if (rc == 0) {
		t->in_flight = true;
		return;
	}
	snprintf(msg, sizeof(msg),
		 "host %s is not connected (%s); start its canopy-agent and "
		 "retry",
		 t->host, cn_strerror(rc));
	mgr_task_end(t, CN_UNAVAILABLE, msg);
}

void mgr_tasks_kick(struct manager *m)
{
	struct mgr_task *t, *u;

	if (!m->leader)
		return;
restart:
	for (t = m->tasks; t; t = t->next) {
		if (t->running)
			continue;
		for (u = m->tasks; u != t; u = u->next)
			if (strcmp(u->vm, t->vm) == 0)
				break;
		if (u != t)
			continue; /* an earlier task of this VM goes first */
		if (t->op == MGR_OP_MIGRATE)
			mgr_migrate_start(t);
		else
			start(t);
		goto restart; /* start may have ended and freed tasks */
	}
}

/* The sentence of a success ("vm web1 is running"). */
static void result_text(struct mgr_task *t, char *buf, size_t n)
{
	static const char *const what[MGR_OP_COUNT] = {
		[MGR_OP_CREATE] = "was created",
		[MGR_OP_START] = "is running",
		[MGR_OP_STOP] = "is stopped",
		[MGR_OP_PAUSE] = "is paused",
		[MGR_OP_RESUME] = "is running",
		[MGR_OP_DELETE] = "was deleted",
	};

	snprintf(buf, n, "vm %s %s on host %s", t->vm, what[t->op], t->host);
}

static void succeed(struct mgr_task *t)
{
	struct manager *m = t->m;
	Canopy__V1__Vm *vm = vm_read(t);
	char text[MGR_KEY_MAX * 2 + 64];
	int rc;

	if (!vm) {
		mgr_task_end(t, CN_NOT_FOUND, "the vm record disappeared");
		return;
	}
	if (t->op == MGR_OP_DELETE) {
		rc = mgr_vm_remove(m, vm);
	} else {
		vm->desired = mgr_op_desired(t->op);
		vm->state = mgr_op_state(t->op);
		if (t->op == MGR_OP_STOP)
			mgr_set_str(&vm->stop_reason, "stopped by request");
		else if (t->op == MGR_OP_START)
			mgr_set_str(&vm->stop_reason, "");
		rc = mgr_vm_save(m, vm, NULL);
	}
	canopy__v1__vm__free_unpacked(vm, NULL);
	if (rc) {
		mgr_task_end(t, CN_UNAVAILABLE,
			     "the agent succeeded but the manager could not "
			     "store the result; check the vm");
		return;
	}
	result_text(t, text, sizeof(text));
	mgr_event(m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_INFO,
		  mgr_op_event(t->op), t->rec->object, t->rec->id, "%s", text);
	mgr_task_end(t, CN_OK, text);
}

static void on_reply(void *arg, int status, const Canopy__V1__Envelope *env)
{
	struct mgr_task *t = arg;
	const Canopy__V1__Status *st;
	char msg[1024];

	t->in_flight = false;
	if (t->ended) { /* it ended without the answer (host went away) */
		free(t);
		return;
	}
	if (status == -ECANCELED || !t->m->leader)
		return; /* stepping down: the next leader fails the task */
	if (status == -ETIMEDOUT) {
		snprintf(msg, sizeof(msg),
			 "host %s did not answer %s of vm %s within %u ms; "
			 "check the host's canopy-agent",
			 t->host, t->rec->kind, t->vm, t->timeout_ms);
		mgr_task_end(t, CN_DEADLINE_EXCEEDED, msg);
		return;
	}
	if (status || env->body_case != CANOPY__V1__ENVELOPE__BODY_RESULT) {
		snprintf(msg, sizeof(msg), "host %s sent no command result",
			 t->host);
		mgr_task_end(t, CN_INTERNAL, msg);
		return;
	}
	st = env->result->status;
	if (st && st->code != CN_OK) {
		snprintf(msg, sizeof(msg), "host %s: %.900s", t->host,
			 st->message ? st->message : "");
		/* The agent's code, except that only a user cancels. */
		mgr_task_end(t,
			     st->code > CN_CANCELLED &&
					     st->code < CN_CODE_COUNT ?
				     (enum cn_code)st->code :
				     CN_ABORTED,
			     msg);
		return;
	}
	progress(t, 90, "recording the result");
	succeed(t);
}
