/* canopy-managerd: task records, submission, ending, leader recovery. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/etcd.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/pb.h"
#include "manager/migrate.h"
#include "manager/task_state.h"
#include "manager/tasks.h"

#define TS(x) CANOPY__V1__TASK_STATE__TASK_STATE_##x

Canopy__V1__Task *mgr_task_copy(const Canopy__V1__Task *rec)
{
	return (Canopy__V1__Task *)cn_pb_copy(&rec->base);
}

/* The ops that store vm (packed into *buf, freed by the caller). */
static int vm_ops(const Canopy__V1__Vm *vm, struct etcd_op *ops, size_t *n,
		  uint8_t **buf, char keys[3][MGR_KEY_MAX])
{
	size_t len = canopy__v1__vm__get_packed_size(vm), k;
	int rc;

	rc = mgr_key_join(keys[0], MGR_KEY_MAX, MGR_PREFIX_VMS, MGR_NAME_VM,
			  vm->id);
	if (!rc)
		rc = mgr_vm_index_ops(vm, false, ops + 1, &k, keys[1], keys[2]);
	if (rc)
		return rc;
	*buf = malloc(len ? len : 1);
	if (!*buf)
		return -ENOMEM;
	canopy__v1__vm__pack(vm, *buf);
	memset(&ops[0], 0, sizeof(ops[0]));
	ops[0].type = ETCD_OP_PUT;
	ops[0].key = keys[0];
	ops[0].value = *buf;
	ops[0].value_len = len;
	*n = 1 + k;
	return 0;
}

int mgr_task_save(struct manager *m, const Canopy__V1__Task *rec,
		  const Canopy__V1__Vm *vm, const struct etcd_cmp *cmp)
{
	char key[MGR_KEY_MAX], active[MGR_KEY_MAX], keys[3][MGR_KEY_MAX];
	struct etcd_op ops[4];
	uint8_t *buf = NULL;
	size_t n = 0;
	int rc;

	rc = mgr_key_join(key, sizeof(key), MGR_PREFIX_TASKS, MGR_NAME_TASK,
			  rec->id);
	if (!rc)
		rc = mgr_key_join(active, sizeof(active), MGR_PREFIX_ACTIVE,
				  MGR_NAME_TASK, rec->id);
	if (!rc && vm)
		rc = vm_ops(vm, ops + 1, &n, &buf, keys);
	if (rc)
		return rc;
	memset(&ops[0], 0, sizeof(ops[0]));
	ops[0].type = mgr_task_final(rec->state) ? ETCD_OP_DELETE : ETCD_OP_PUT;
	ops[0].key = active;
	ops[0].value = "";
	rc = mgr_put_msg(m, key, &rec->base, cmp, ops, 1 + n);
	free(buf);
	return rc;
}

static Canopy__V1__Task *task_new(struct manager *m, const char *kind,
				  const char *vm, Canopy__V1__TaskState state)
{
	Canopy__V1__Task *rec = calloc(1, sizeof(*rec));
	char id[MGR_TASK_ID_LEN + 1], object[MGR_KEY_MAX];
	uint64_t now = mgr_unix_ms();

	if (!rec)
		return NULL;
	canopy__v1__task__init(rec);
	snprintf(object, sizeof(object), "vm/%s", vm);
	if (mgr_task_id_format(id, sizeof(id), now, ++m->task_counter) ||
	    mgr_set_str(&rec->id, id) || mgr_set_str(&rec->kind, kind) ||
	    mgr_set_str(&rec->object, object) ||
	    mgr_set_str(&rec->phase,
			state == TS(QUEUED) ? "queued" : "starting") ||
	    mgr_set_str(&rec->manager, m->opt.id)) {
		canopy__v1__task__free_unpacked(rec, NULL);
		return NULL;
	}
	rec->state = state;
	rec->start_unix_ms = now;
	return rec;
}

/* t for vm with a fresh record of kind in state; NULL: out of memory. */
static struct mgr_task *task_alloc(struct manager *m, enum mgr_op op,
				   const char *kind, const char *vm,
				   Canopy__V1__TaskState state)
{
	struct mgr_task *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->m = m;
	t->op = op;
	snprintf(t->vm, sizeof(t->vm), "%s", vm);
	t->rec = task_new(m, kind, vm, state);
	if (!t->rec) {
		free(t);
		return NULL;
	}
	return t;
}

/* Append t to m->tasks (oldest first). */
static void task_append(struct manager *m, struct mgr_task *t)
{
	struct mgr_task **tail;

	for (tail = &m->tasks; *tail; tail = &(*tail)->next)
		;
	*tail = t;
}

static void task_free(struct mgr_task *t)
{
	canopy__v1__task__free_unpacked(t->rec, NULL);
	free(t);
}

int mgr_task_own(struct manager *m, enum mgr_op op, const char *kind,
		 const Canopy__V1__Vm *vm, const char *host,
		 uint32_t timeout_ms, struct mgr_task **t_out,
		 Canopy__V1__Task **out)
{
	struct mgr_task *t = task_alloc(m, op, kind, vm->id, TS(RUNNING));
	int rc;

	*out = NULL;
	*t_out = NULL;
	if (!t)
		return -ENOMEM;
	t->running = true;
	t->timeout_ms = timeout_ms;
	t->prev_desired = vm->desired;
	snprintf(t->host, sizeof(t->host), "%s", host);
	/* The copy first: nothing is stored unless the reply can be made. */
	*out = mgr_task_copy(t->rec);
	rc = *out ? mgr_task_save(m, t->rec, NULL, NULL) : -ENOMEM;
	if (rc) {
		if (*out)
			canopy__v1__task__free_unpacked(*out, NULL);
		*out = NULL;
		task_free(t);
		return rc;
	}
	task_append(m, t);
	*t_out = t;
	return 0;
}

static void kick_post(void *arg)
{
	mgr_tasks_kick(arg);
}

int mgr_task_submit(struct manager *m, enum mgr_op op, const Canopy__V1__Vm *vm,
		    int hard, uint32_t timeout_ms,
		    Canopy__V1__PowerState prev_desired, Canopy__V1__Task **out)
{
	char vkey[MGR_KEY_MAX];
	struct etcd_cmp cmp = { .key = vkey, .target = ETCD_CMP_VERSION };
	struct mgr_task *t;
	int rc;

	*out = NULL;
	rc = mgr_key_join(vkey, sizeof(vkey), MGR_PREFIX_VMS, MGR_NAME_VM,
			  vm->id);
	if (rc)
		return rc;
	t = task_alloc(m, op, mgr_op_kind(op), vm->id, TS(QUEUED));
	if (!t)
		return -ENOMEM;
	t->hard = hard;
	t->timeout_ms = timeout_ms ? timeout_ms : m->opt.command_timeout_ms;
	t->prev_desired = prev_desired;
	snprintf(t->host, sizeof(t->host), "%s", vm->host);
	*out = mgr_task_copy(t->rec);
	if (!*out) {
		rc = -ENOMEM;
		goto err;
	}
	rc = mgr_task_save(m, t->rec, vm, op == MGR_OP_CREATE ? &cmp : NULL);
	if (rc)
		goto err;
	task_append(m, t);
	if (loop_post(m->l, kick_post, m))
		mgr_tasks_kick(m);
	return 0;
err:
	if (*out)
		canopy__v1__task__free_unpacked(*out, NULL);
	*out = NULL;
	task_free(t);
	return rc == -ESTALE ? -EEXIST : rc;
}

int mgr_vm_busy(struct manager *m, const char *vm)
{
	struct mgr_task *t;

	for (t = m->tasks; t; t = t->next)
		if (strcmp(t->vm, vm) == 0)
			return 1;
	return 0;
}

/* What a task that did not succeed leaves behind: a created VM record is
 * removed, else the desired state goes back. */
static void undo(struct mgr_task *t)
{
	struct manager *m = t->m;
	char key[MGR_KEY_MAX];
	Canopy__V1__Vm *vm = NULL;
	int rc;

	if (mgr_key_join(key, sizeof(key), MGR_PREFIX_VMS, MGR_NAME_VM, t->vm))
		return;
	rc = mgr_get_msg(m, key, &canopy__v1__vm__descriptor,
			 (ProtobufCMessage **)&vm);
	if (rc)
		return;
	if (t->op == MGR_OP_CREATE)
		rc = mgr_vm_remove(m, vm);
	else if (vm->desired != t->prev_desired) {
		vm->desired = t->prev_desired;
		rc = mgr_vm_save(m, vm, NULL);
	}
	if (rc)
		log_warn("manager", "cannot undo a failed task", "vm=%s",
			 t->vm);
	canopy__v1__vm__free_unpacked(vm, NULL);
}

void mgr_task_set_error(Canopy__V1__Task *rec, enum cn_code code,
			const char *msg)
{
	Canopy__V1__Status *st = calloc(1, sizeof(*st));

	if (!st)
		return;
	canopy__v1__status__init(st);
	st->code = code;
	if (mgr_set_str(&st->message, msg)) {
		free(st);
		return;
	}
	rec->error = st;
}

static void task_unlink(struct manager *m, struct mgr_task *t)
{
	struct mgr_task **pp;

	for (pp = &m->tasks; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	canopy__v1__task__free_unpacked(t->rec, NULL);
	t->rec = NULL;
	mgr_migrate_forget(t);
	if (t->in_flight)
		t->ended = true; /* the bus still holds t as its callback arg */
	else
		free(t);
}

void mgr_tasks_host_down(struct manager *m, const char *hid)
{
	struct mgr_task *t;
	char msg[MGR_KEY_MAX + 128];

	mgr_migrate_host_down(m, hid);
again:
	for (t = m->tasks; t; t = t->next) {
		if (!t->running || t->mig || strcmp(t->host, hid) != 0)
			continue;
		snprintf(msg, sizeof(msg),
			 "host %s disconnected while the task was running; "
			 "check the vm when the host is back",
			 hid);
		mgr_task_end(t, CN_UNAVAILABLE, msg);
		goto again; /* the list changed */
	}
}

void mgr_task_end(struct mgr_task *t, enum cn_code code, const char *msg)
{
	struct manager *m = t->m;
	Canopy__V1__Task *rec = t->rec;

	rec->state = code == CN_OK	  ? TS(SUCCEEDED) :
		     code == CN_CANCELLED ? TS(CANCELLED) :
					    TS(FAILED);
	rec->end_unix_ms = mgr_unix_ms();
	if (code == CN_OK) {
		rec->progress = 100;
		mgr_set_str(&rec->result, msg);
	} else {
		undo(t);
		mgr_task_set_error(rec, code, msg);
	}
	mgr_set_str(&rec->phase, mgr_task_state_name(rec->state));
	mgr_task_update(m, rec);
	if (code != CN_OK)
		mgr_event(m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_ERROR,
			  code == CN_CANCELLED ? "task.cancelled" :
						 "task.failed",
			  rec->object, rec->id, "%s of %s %s: %s", rec->kind,
			  rec->object,
			  code == CN_CANCELLED ? "cancelled" : "failed", msg);
	task_unlink(m, t);
	if (loop_post(m->l, kick_post, m))
		mgr_tasks_kick(m);
}

/* The VM of a task the last leader left unfinished: a VM it was creating
 * that never came up is removed; otherwise its desired state falls back
 * to what was last observed. */
static void recover_vm(struct manager *m, const Canopy__V1__Task *rec)
{
	const char *name = mgr_key_name(rec->object, "vm/");
	char key[MGR_KEY_MAX];
	Canopy__V1__Vm *vm = NULL;
	Canopy__V1__PowerState want;
	int rc = 0;

	if (!name ||
	    mgr_key_join(key, sizeof(key), MGR_PREFIX_VMS, MGR_NAME_VM, name) ||
	    mgr_get_msg(m, key, &canopy__v1__vm__descriptor,
			(ProtobufCMessage **)&vm))
		return;
	want = vm->state == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING ?
		       CANOPY__V1__POWER_STATE__POWER_STATE_ON :
	       vm->state == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_PAUSED ?
		       CANOPY__V1__POWER_STATE__POWER_STATE_PAUSED :
		       CANOPY__V1__POWER_STATE__POWER_STATE_OFF;
	if (strcmp(rec->kind, mgr_op_kind(MGR_OP_CREATE)) == 0 &&
	    vm->state == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_UNSPECIFIED)
		rc = mgr_vm_remove(m, vm);
	else if (vm->desired != want) {
		vm->desired = want;
		rc = mgr_vm_save(m, vm, NULL);
	}
	if (rc)
		log_warn("manager", "cannot reset the vm of a failed task",
			 "vm=%s", name);
	canopy__v1__vm__free_unpacked(vm, NULL);
}

/* Fail one task a previous leader left unfinished. */
static void recover_one(struct manager *m, const char *id)
{
	char key[MGR_KEY_MAX], msg[256];
	Canopy__V1__Task *rec = NULL;

	if (mgr_key_join(key, sizeof(key), MGR_PREFIX_TASKS, MGR_NAME_TASK, id))
		return;
	if (mgr_get_msg(m, key, &canopy__v1__task__descriptor,
			(ProtobufCMessage **)&rec))
		return;
	if (!mgr_task_final(rec->state) && mgr_migrate_recover(m, rec))
		log_info("manager", "a migration is being resolved", "task=%s",
			 rec->id);
	else if (!mgr_task_final(rec->state)) {
		snprintf(msg, sizeof(msg),
			 "manager %s %s while the task was %s; check the vm "
			 "and run the operation again",
			 rec->manager,
			 strcmp(rec->manager, m->opt.id) == 0 ?
				 "lost the leadership" :
				 "failed",
			 mgr_task_state_name(rec->state));
		rec->state = TS(FAILED);
		rec->end_unix_ms = mgr_unix_ms();
		mgr_task_set_error(rec, CN_ABORTED, msg);
		mgr_set_str(&rec->phase, "failed");
		mgr_task_update(m, rec);
		recover_vm(m, rec);
		mgr_event(m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_ERROR,
			  "task.failed", rec->object, rec->id, "%s of %s: %s",
			  rec->kind, rec->object, msg);
	}
	canopy__v1__task__free_unpacked(rec, NULL);
}

int mgr_tasks_recover(struct manager *m)
{
	struct etcd_range_opts o = { .prefix = true, .keys_only = true };
	struct etcd_kvs *r = NULL;
	const char *id;
	size_t i;
	int rc;

	rc = etcd_kv_range(m->etcd, MGR_PREFIX_ACTIVE, &o, &r);
	if (rc)
		return rc;
	for (i = 0; i < r->n_kvs && m->leader; i++) {
		id = mgr_key_name(r->kvs[i].key, MGR_PREFIX_ACTIVE);
		if (id)
			recover_one(m, id);
	}
	if (r->n_kvs)
		log_info("manager",
			 "unfinished tasks of the last leader failed",
			 "count=%zu", r->n_kvs);
	etcd_kvs_free(r);
	return 0;
}
