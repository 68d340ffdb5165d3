/* canopy-managerd: ResolveMigration: an operator ends an in-doubt migration
 * (the source copy resumed or powered off) through a vm.resolve_migration
 * task. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bus.h"
#include "lib/etcd.h"
#include "lib/log.h"
#include "manager/api_internal.h"
#include "manager/keys.h"
#include "manager/migrate.h"
#include "manager/task_state.h"
#include "manager/tasks.h"

#define CHOICE(x) CANOPY__V1__RESOLVE_MIGRATION_REQUEST__CHOICE__##x
#define RUN(x) CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_##x
/* How long the destination may take to say whether it has the VM. */
#define RESOLVE_PROBE_MS 5000
/* Task kind. */
#define RESOLVE_KIND "vm.resolve_migration"

/* One resolution, owned by the bus callback that runs (the task is found
 * again by id: it may have ended meanwhile, e.g. its host went away). */
struct resolve {
	struct manager *m;
	char task[MGR_TASK_ID_LEN + 1];
	char vm[MGR_KEY_MAX], src[MGR_KEY_MAX], dst[MGR_KEY_MAX];
	char user[80];
	char dst_said[300]; /* the destination's ABORTED answer, for the audit */
	bool power_off;
};

static const char *choice_name(const struct resolve *r)
{
	return r->power_off ? "power-off" : "resume-source";
}

static struct mgr_task *task_find(struct manager *m, const char *id)
{
	for (struct mgr_task *t = m->tasks; t; t = t->next)
		if (strcmp(t->rec->id, id) == 0)
			return t;
	return NULL;
}

/* End r's task (if it still runs) and free r; the in-doubt task decides
 * again unless the resolution succeeded. */
static void finish(struct resolve *r, enum cn_code code, const char *msg)
{
	struct mgr_task *t = r->m->leader ? task_find(r->m, r->task) : NULL;

	if (code != CN_OK)
		mgr_migrate_doubt_hold(r->m, r->vm, false);
	if (t)
		mgr_task_end(t, code, msg);
	free(r);
}

static void show(struct resolve *r, uint32_t pct, const char *phase)
{
	struct mgr_task *t = task_find(r->m, r->task);

	if (!t)
		return;
	t->rec->progress = pct;
	if (mgr_set_str(&t->rec->phase, phase) == 0)
		mgr_task_update(r->m, t->rec);
}

/* The source is off: the record says STOPPED on the source, desired OFF,
 * only while it still places the VM on the source (its placement key
 * there, written in the same txn as the record's host, is compared in the
 * txn). 0, -ESTALE (placed elsewhere: nothing written) or -errno. */
static int record_off(struct resolve *r)
{
	char key[MGR_KEY_MAX], place[MGR_KEY_MAX], why[MGR_KEY_MAX + 200];
	struct etcd_cmp cmp = { .key = place,
				.target = ETCD_CMP_VERSION,
				.result = ETCD_CMP_GREATER,
				.number = 0 };
	Canopy__V1__Vm *vm = NULL;
	int rc;

	rc = mgr_key_join(key, sizeof(key), MGR_PREFIX_VMS, MGR_NAME_VM, r->vm);
	rc = rc ?: mgr_key_placement(place, sizeof(place), r->src, r->vm);
	rc = rc	   ?:
		     mgr_get_msg(r->m, key, &canopy__v1__vm__descriptor,
				 (ProtobufCMessage **)&vm);
	if (rc)
		return rc;
	if (!vm->host || strcmp(vm->host, r->src) != 0) {
		canopy__v1__vm__free_unpacked(vm, NULL);
		return -ESTALE;
	}
	snprintf(why, sizeof(why),
		 "powered off by %s: its in-doubt migration to host %s was "
		 "resolved",
		 r->user, r->dst);
	vm->state = RUN(STOPPED);
	vm->desired = CANOPY__V1__POWER_STATE__POWER_STATE_OFF;
	rc = mgr_set_str(&vm->stop_reason, why) ? -ENOMEM : 0;
	rc = rc ?: mgr_vm_save(r->m, vm, &cmp);
	canopy__v1__vm__free_unpacked(vm, NULL);
	return rc;
}

/* The source did not answer (or its answer is lost): it may have acted. */
static void unknown(struct resolve *r, int status)
{
	char msg[MGR_KEY_MAX * 3 + 200];

	snprintf(msg, sizeof(msg),
		 "host %s did not answer the %s (%s): the outcome is "
		 "unknown: check 'canopy vm show %s'",
		 r->src, choice_name(r),
		 status ? cn_strerror(status) : "no result", r->vm);
	finish(r, CN_UNAVAILABLE, msg);
}

/* The sentence of a resolution that went ahead (into msg). */
static void done_text(const struct resolve *r, char *msg, size_t n)
{
	int len = snprintf(msg, n,
			   "migration to host %s ended by %s "
			   "(resolve-migration --%s): vm %s %s on host %s",
			   r->dst, r->user, choice_name(r), r->vm,
			   r->power_off ? "was powered off" : "resumed",
			   r->src);

	if (r->dst_said[0] && len > 0 && (size_t)len < n)
		snprintf(msg + len, n - (size_t)len, " (host %s said: %s)",
			 r->dst, r->dst_said);
}

/* The source agent's answer to MigrateResolve. */
static void on_resolved(void *arg, int status, const Canopy__V1__Envelope *env)
{
	struct resolve *r = arg;
	const Canopy__V1__Status *st =
		!status && env->body_case == CANOPY__V1__ENVELOPE__BODY_RESULT ?
			env->result->status :
			NULL;
	char msg[MGR_KEY_MAX * 4 + 800], object[MGR_KEY_MAX + 8];
	int rc;

	if (!r->m->leader || status == -ECANCELED) {
		free(r); /* stepping down: the next leader fails the task */
		return;
	}
	if (!st) {
		unknown(r, status);
		return;
	}
	if (st->code != CN_OK) { /* a definite refusal */
		snprintf(msg, sizeof(msg), "host %s: %.600s; nothing changed",
			 r->src, st->message ? st->message : "refused");
		finish(r,
		       st->code > CN_CANCELLED && st->code < CN_CODE_COUNT ?
			       (enum cn_code)st->code :
			       CN_UNAVAILABLE,
		       msg);
		return;
	}
	done_text(r, msg, sizeof(msg));
	/* The in-doubt task first: its end restores the desired state. */
	mgr_migrate_doubt_end(r->m, r->vm, msg);
	mgr_migrate_orphan_forget(r->m, r->vm);
	rc = r->power_off ? record_off(r) : 0;
	if (rc) {
		snprintf(msg, sizeof(msg),
			 "vm %s was powered off on host %s but the manager "
			 "could not record it (%s); check 'canopy vm show %s'",
			 r->vm, r->src,
			 rc == -ESTALE ?
				 "its record places it on another host" :
				 cn_strerror(rc),
			 r->vm);
		finish(r, CN_UNAVAILABLE, msg);
		return;
	}
	snprintf(object, sizeof(object), "vm/%s", r->vm);
	mgr_event(r->m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_WARNING,
		  "vm.migration_resolved", object, r->task, "%s", msg);
	log_info("manager", "in-doubt migration resolved by an operator",
		 "vm=%s user=%s choice=%s", r->vm, r->user, choice_name(r));
	finish(r, CN_OK, msg);
}

static void resolve_send(struct resolve *r)
{
	char msg[MGR_KEY_MAX + 200];

	show(r, 50,
	     r->power_off ? "powering the vm off on the source" :
			    "resuming the vm on the source");
	if (mgr_migrate_resolve_send(r->m, r->src, r->vm, r->task,
				     !r->power_off, r->power_off, on_resolved,
				     r) == 0)
		return;
	snprintf(msg, sizeof(msg),
		 "host %s is not connected; nothing changed: retry once it "
		 "is",
		 r->src);
	finish(r, CN_UNAVAILABLE, msg);
}

/* Go on with the destination's answer code (-1: none) and message? Only
 * on a definite "it does not run the VM nor can it": NOT_FOUND, or
 * ABORTED (its receiver died after COMMIT: the operator's word stands);
 * else the task fails with the reason, nothing changed. */
static bool probe_ok(struct resolve *r, int status, int code, const char *said)
{
	char msg[MGR_KEY_MAX * 3 + 400];

	if (code == CN_NOT_FOUND)
		return true;
	if (code == CN_ABORTED) {
		snprintf(r->dst_said, sizeof(r->dst_said), "%s",
			 said && *said ? said : "its receiver may have run it");
		return true;
	}
	if (code == CN_OK || code == CN_UNAVAILABLE)
		snprintf(msg, sizeof(msg),
			 code == CN_OK ?
				 "host %s runs vm %s; nothing changed (the "
				 "migration task records it there)" :
				 "host %s has a receiving canopy-vmm of vm %s "
				 "that still waits for COMMIT and may run it; "
				 "nothing changed: retry once it has exited",
			 r->dst, r->vm);
	else
		snprintf(msg, sizeof(msg),
			 "could not get a definite answer from host %s (%.200s)"
			 "; nothing changed: retry",
			 r->dst,
			 code >= 0 ? (said && *said ? said : "no message") :
			 status	   ? cn_strerror(status) :
				     "no result");
	finish(r, CN_FAILED_PRECONDITION, msg);
	return false;
}

/* The destination's answer: it must neither have the VM nor a receiver
 * that could still take COMMIT. */
static void on_probe(void *arg, int status, const Canopy__V1__Envelope *env)
{
	struct resolve *r = arg;
	const Canopy__V1__Status *st =
		!status && env->body_case == CANOPY__V1__ENVELOPE__BODY_RESULT ?
			env->result->status :
			NULL;
	int code = st ? (int)st->code : -1;

	if (!r->m->leader || status == -ECANCELED) {
		free(r);
		return;
	}
	log_info("manager", "resolve-migration: destination probed",
		 "vm=%s host=%s code=%d status=%d", r->vm, r->dst, code,
		 status);
	if (probe_ok(r, status, code, st ? st->message : NULL))
		resolve_send(r);
}

static void start(struct resolve *r)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__MigrateProbe p = CANOPY__V1__MIGRATE_PROBE__INIT;
	char phase[MGR_KEY_MAX + 80];
	int rc;

	mgr_migrate_doubt_hold(r->m, r->vm, true);
	snprintf(phase, sizeof(phase), "asking host %s whether it runs the vm",
		 r->dst);
	show(r, 20, phase);
	p.vm_id = r->vm;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_MIGRATE_PROBE;
	env.migrate_probe = &p;
	rc = r->m->bus ?
		     bus_server_request(r->m->bus, r->dst, &env,
					RESOLVE_PROBE_MS, on_probe, r, NULL) :
		     -EHOSTUNREACH;
	/* Not connected: the operator's word stands (a dead host runs no
	 * VM; its datastore locks guard the disks). */
	if (rc == -EHOSTUNREACH) {
		log_info("manager",
			 "resolve-migration: destination not "
			 "connected",
			 "vm=%s host=%s", r->vm, r->dst);
		resolve_send(r);
	} else if (rc < 0) {
		(void)probe_ok(r, rc, -1, NULL); /* fails the task */
	}
}

/* A running task for r (never started by the engine); *out: a copy for
 * the reply. 0 or -errno (nothing stored). */
static int task_make(struct resolve *r, const Canopy__V1__Vm *vm,
		     Canopy__V1__Task **out)
{
	struct mgr_task *t;
	int rc;

	/* MGR_OP_MIGRATE: no VmCommand, the engine never starts it */
	rc = mgr_task_own(r->m, MGR_OP_MIGRATE, RESOLVE_KIND, vm, r->src,
			  RESOLVE_PROBE_MS + MGR_MIGRATE_RESOLVE_CALL_MS, &t,
			  out);
	if (!rc)
		snprintf(r->task, sizeof(r->task), "%s", t->rec->id);
	return rc;
}

bool mgr_migrate_resolving(struct manager *m, const char *vm)
{
	for (struct mgr_task *t = m->tasks; t; t = t->next)
		if (strcmp(t->vm, vm) == 0 && t->rec->kind &&
		    strcmp(t->rec->kind, RESOLVE_KIND) == 0)
			return true;
	return false;
}

/* "running" for VM_RUN_STATE_RUNNING. */
static void state_word(Canopy__V1__VmRunState s, char *out, size_t n)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
		&canopy__v1__vm_run_state__descriptor, (int)s);
	const char *name = v ? v->name : "VM_RUN_STATE_UNSPECIFIED";
	size_t i;

	name += strncmp(name, "VM_RUN_STATE_", 13) == 0 ? 13 : 0;
	for (i = 0; name[i] && i + 1 < n; i++)
		out[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ?
					name[i] - 'A' + 'a' :
					name[i]);
	out[i] = '\0';
}

/* Where the in-doubt migration of vm is: 0 with r's hosts, or answers c. */
static int doubt_of(struct manager *m, struct api_call *c,
		    const Canopy__V1__Vm *vm, struct resolve *r)
{
	char task[MGR_KEY_MAX], state[32];

	if (mgr_migrate_resolving(m, vm->id)) {
		api_fail(c, CN_FAILED_PRECONDITION,
			 "a resolve-migration of vm %s is already running; "
			 "wait for its task",
			 vm->id);
		return -EBUSY;
	}
	if (mgr_migrate_doubt_find(m, vm->id, r->src, r->dst, task) ||
	    mgr_migrate_orphan_find(m, vm->id, r->src, r->dst))
		return 0;
	state_word(vm->state, state, sizeof(state));
	api_fail(c, CN_FAILED_PRECONDITION,
		 "no migration of vm %s is in doubt (it is %s on host %s); "
		 "nothing changed (after a manager failover the source says "
		 "so again within 5 s)",
		 vm->id, state, vm->host ? vm->host : "-");
	return -ENOENT;
}

void api_resolve_migration(void *arg, struct api_call *c,
			   const ProtobufCMessage *msg)
{
	const Canopy__V1__ResolveMigrationRequest *req = (const void *)msg;
	struct manager *m = arg;
	Canopy__V1__Task *task = NULL;
	Canopy__V1__Vm *vm = NULL;
	struct resolve *r;
	int rc;

	/* validate */
	if (req->choice != CHOICE(CHOICE_RESUME_SOURCE) &&
	    req->choice != CHOICE(CHOICE_POWER_OFF)) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "choice: CHOICE_RESUME_SOURCE (run the paused source "
			 "copy again) or CHOICE_POWER_OFF (stop it)");
		return;
	}
	if (mgr_vm_read(m, c, req->name, &vm))
		return;
	r = calloc(1, sizeof(*r));
	if (!r) {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	r->m = m;
	r->power_off = req->choice == CHOICE(CHOICE_POWER_OFF);
	snprintf(r->vm, sizeof(r->vm), "%s", vm->id);
	snprintf(r->user, sizeof(r->user), "%s",
		 c->auth.user[0] ? c->auth.user : "an unauthenticated caller");
	if (doubt_of(m, c, vm, r)) {
		free(r);
		goto out;
	}
	/* act */
	rc = task_make(r, vm, &task);
	if (rc) {
		free(r);
		mgr_fail_store(m, c, rc, "storing the task");
		goto out;
	}
	api_reply(c, &task->base);
	canopy__v1__task__free_unpacked(task, NULL);
	log_info("manager", "resolve-migration",
		 "vm=%s user=%s choice=%s from=%s to=%s", r->vm, r->user,
		 choice_name(r), r->src, r->dst);
	start(r);
out:
	canopy__v1__vm__free_unpacked(vm, NULL);
}
