/* canopy-managerd: the vm.migrate task: destination ready, source streams
 * with progress, the move recorded once at commit, failures, cancel and
 * resolution from the agents' reports when the outcome is unknown. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bus.h"
#include "lib/etcd.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "manager/migrate.h"
#include "manager/tasks.h"
#include "vmotion/orch.h"

struct mgr_mig {
	enum vmo_stage stage;
	char src[MGR_KEY_MAX], dst[MGR_KEY_MAX];
	char phase[32]; /* the source's last reported phase */
	uint32_t max_downtime_ms;
	uint64_t bandwidth_mib_s, memory_mib;
	bool cancel; /* a user asked; ends CANCELLED */
	bool resolving; /* outcome unknown: waiting for reports */
	bool in_doubt; /* the source wrote COMMIT, no STARTED: paused there */
	bool held; /* an operator's ResolveMigration decides (no probing) */
	uint64_t timer; /* prepare / send / resolve deadline */
	uint64_t probe_timer; /* resolving: ask the destination, each second */
};

#define RUN(x) CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_##x

static void on_ready(void *arg, int status, const Canopy__V1__Envelope *env);
static void on_accepted(void *arg, int status, const Canopy__V1__Envelope *env);

static int stage(struct mgr_task *t, enum vmo_event ev)
{
	enum vmo_stage next;

	if (vmo_stage_next(t->mig->stage, ev, &next)) {
		log_warn("manager", "migration event ignored",
			 "task=%s stage=%s event=%d", t->rec->id,
			 vmo_stage_name(t->mig->stage), (int)ev);
		return -EINVAL;
	}
	t->mig->stage = next;
	return 0;
}

/* Record progress pct and phase text (and the migration fields). */
static void show(struct mgr_task *t, uint32_t pct, const char *phase)
{
	t->rec->state = CANOPY__V1__TASK_STATE__TASK_STATE_RUNNING;
	t->rec->progress = pct;
	if (mgr_set_str(&t->rec->phase, phase) == 0)
		mgr_task_update(t->m, t->rec);
}

static void stage_str(struct mgr_task *t, const char *s)
{
	if (t->rec->migration)
		mgr_set_str(&t->rec->migration->stage, s);
}

static int deadline(struct loop *l, uint64_t id, void *arg);

static void arm(struct mgr_task *t, uint64_t ms)
{
	int err = 0;

	if (t->mig->timer)
		(void)loop_timer_del(t->m->l, t->mig->timer);
	t->mig->timer = loop_timer_add(t->m->l, ms, deadline, t, &err);
	if (!t->mig->timer)
		log_warn("manager", "no migration deadline timer", "task=%s",
			 t->rec->id);
}

static void probe_arm(struct mgr_task *t);

/* The in-doubt bound: MGR_MIGRATE_DOUBT_MS, or CANOPY_MGR_TEST_DOUBT_MS
 * (test only, 100 ms or more) when set. */
static uint32_t doubt_ms(void)
{
	const char *e = getenv("CANOPY_MGR_TEST_DOUBT_MS");
	long v = e ? strtol(e, NULL, 10) : 0;

	return v >= 100 && v < (long)MGR_MIGRATE_DOUBT_MS ?
		       (uint32_t)v :
		       MGR_MIGRATE_DOUBT_MS;
}
static int resolve_src(struct mgr_task *t, bool resume, bus_reply_fn cb);

void mgr_migrate_forget(struct mgr_task *t)
{
	if (!t->mig)
		return;
	if (t->mig->timer)
		(void)loop_timer_del(t->m->l, t->mig->timer);
	if (t->mig->probe_timer)
		(void)loop_timer_del(t->m->l, t->mig->probe_timer);
	free(t->mig);
	t->mig = NULL;
}

static void abort_reply(void *arg, int status, const Canopy__V1__Envelope *env)
{
	(void)arg;
	if (status == 0 &&
	    env->body_case == CANOPY__V1__ENVELOPE__BODY_RESULT &&
	    env->result->status && env->result->status->code != CN_OK)
		log_info("manager", "destination kept its vm", "msg=\"%s\"",
			 env->result->status->message);
}

/* Tell the destination to drop its receiving VMM (best effort: it also
 * exits by itself when the stream breaks). */
static void abort_dst(struct mgr_task *t)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__MigrateAbort a = CANOPY__V1__MIGRATE_ABORT__INIT;

	if (!t->m->bus)
		return;
	a.vm_id = t->vm;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_MIGRATE_ABORT;
	env.migrate_abort = &a;
	if (bus_server_request(t->m->bus, t->mig->dst, &env, 5000, abort_reply,
			       NULL, NULL))
		log_info("manager", "abort not sent to the destination",
			 "host=%s vm=%s", t->mig->dst, t->vm);
}

/* End t before commit: the VM stays on the source. */
static void fail(struct mgr_task *t, enum cn_code code, const char *why)
{
	char msg[2048];

	if (t->mig->cancel) {
		code = CN_CANCELLED;
		snprintf(msg, sizeof(msg),
			 "cancelled by request; vm %s keeps running on host "
			 "%s",
			 t->vm, t->mig->src);
	} else {
		snprintf(msg, sizeof(msg),
			 "%.900s; vm %s keeps running on host %s", why, t->vm,
			 t->mig->src);
	}
	(void)stage(t, t->mig->cancel ? VMO_EV_CANCEL : VMO_EV_FAIL);
	stage_str(t, "failed");
	mgr_task_end(t, code, msg);
}

void mgr_migrate_start(struct mgr_task *t)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__MigrateIncoming in = CANOPY__V1__MIGRATE_INCOMING__INIT;
	struct manager *m = t->m;
	char key[MGR_KEY_MAX], msg[MGR_KEY_MAX + 128];
	Canopy__V1__Vm *vm = NULL;
	int rc;

	t->running = true;
	if (!t->mig) {
		mgr_task_end(t, CN_INTERNAL, "the migration lost its state");
		return;
	}
	if (mgr_key_join(key, sizeof(key), MGR_PREFIX_VMS, MGR_NAME_VM,
			 t->vm) ||
	    mgr_get_msg(m, key, &canopy__v1__vm__descriptor,
			(ProtobufCMessage **)&vm)) {
		mgr_task_end(t, CN_NOT_FOUND, "the vm no longer exists");
		return;
	}
	(void)stage(t, VMO_EV_START);
	stage_str(t, "preparing");
	snprintf(msg, sizeof(msg), "preparing destination host %s",
		 t->mig->dst);
	show(t, 5, msg);
	in.vm_id = vm->id;
	in.spec = vm->spec;
	in.task_id = t->rec->id;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_MIGRATE_INCOMING;
	env.migrate_incoming = &in;
	rc = m->bus ? bus_server_request(m->bus, t->mig->dst, &env,
					 MGR_MIGRATE_PREPARE_MS, on_ready, t,
					 NULL) :
		      -ENOTCONN;
	canopy__v1__vm__free_unpacked(vm, NULL);
	if (rc == 0) {
		t->in_flight = true;
		return;
	}
	snprintf(msg, sizeof(msg),
		 "destination host %s is not connected (%s); start its "
		 "canopy-agent and retry",
		 t->mig->dst, cn_strerror(rc));
	fail(t, CN_UNAVAILABLE, msg);
}

/* The bus callback's common start: NULL when t must not be touched. */
static struct mgr_task *callback_task(void *arg, int status)
{
	struct mgr_task *t = arg;

	t->in_flight = false;
	if (t->ended) {
		free(t);
		return NULL;
	}
	if (status == -ECANCELED || !t->m->leader)
		return NULL; /* stepping down: the next leader resolves it */
	return t;
}

/* The text of a failed bus request. */
static void req_error(int status, const Canopy__V1__Envelope *env,
		      const char *host, const char *what, char *msg, size_t n,
		      enum cn_code *code)
{
	const Canopy__V1__Status *st =
		status == 0 && env->body_case ==
					CANOPY__V1__ENVELOPE__BODY_RESULT ?
			env->result->status :
			NULL;

	*code = CN_UNAVAILABLE;
	if (status == -ETIMEDOUT)
		snprintf(msg, n, "host %s did not answer %s in time", host,
			 what);
	else if (status)
		snprintf(msg, n, "host %s could not be asked to %s: %s", host,
			 what, cn_strerror(status));
	else if (st && st->code != CN_OK) {
		snprintf(msg, n, "host %s could not %s: %.700s", host, what,
			 st->message ? st->message : "");
		*code = st->code > CN_CANCELLED && st->code < CN_CODE_COUNT ?
				(enum cn_code)st->code :
				CN_ABORTED;
	} else
		snprintf(msg, n, "host %s sent an unexpected answer to %s",
			 host, what);
}

static void on_ready(void *arg, int status, const Canopy__V1__Envelope *env)
{
	Canopy__V1__Envelope out = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__MigrateSend ms = CANOPY__V1__MIGRATE_SEND__INIT;
	struct mgr_task *t = callback_task(arg, status);
	char msg[1000];
	enum cn_code code;
	int rc;

	if (!t)
		return;
	if (status ||
	    env->body_case != CANOPY__V1__ENVELOPE__BODY_MIGRATE_READY ||
	    !env->migrate_ready->address) {
		req_error(status, env, t->mig->dst,
			  "start the receiving canopy-vmm", msg, sizeof(msg),
			  &code);
		if (status == -ETIMEDOUT)
			abort_dst(t);
		fail(t, code, msg);
		return;
	}
	if (t->mig->cancel) {
		abort_dst(t);
		fail(t, CN_CANCELLED, "");
		return;
	}
	(void)stage(t, VMO_EV_READY);
	stage_str(t, "connecting");
	ms.vm_id = t->vm;
	ms.task_id = t->rec->id;
	ms.address = env->migrate_ready->address;
	ms.dst_host_id = t->mig->dst; /* TLS: the name its certificate has */
	ms.max_downtime_ms = t->mig->max_downtime_ms;
	ms.bandwidth_limit_mib_s = t->mig->bandwidth_mib_s;
	out.body_case = CANOPY__V1__ENVELOPE__BODY_MIGRATE_SEND;
	out.migrate_send = &ms;
	snprintf(msg, sizeof(msg), "sending vm %s from host %s to %s (%.80s)",
		 t->vm, t->mig->src, t->mig->dst, ms.address);
	show(t, 10, msg);
	rc = bus_server_request(t->m->bus, t->mig->src, &out,
				MGR_MIGRATE_PREPARE_MS, on_accepted, t, NULL);
	if (rc == 0) {
		t->in_flight = true;
		arm(t, MGR_MIGRATE_SEND_MS);
		return;
	}
	abort_dst(t);
	snprintf(msg, sizeof(msg), "source host %s is not connected (%s)",
		 t->mig->src, cn_strerror(rc));
	fail(t, CN_UNAVAILABLE, msg);
}

static void on_accepted(void *arg, int status, const Canopy__V1__Envelope *env)
{
	struct mgr_task *t = callback_task(arg, status);
	char msg[1000];
	enum cn_code code;

	if (!t || t->mig->stage != VMO_SENDING)
		return; /* gone, or MigrateDone came first */
	if (status == 0 &&
	    env->body_case == CANOPY__V1__ENVELOPE__BODY_RESULT &&
	    env->result->status && env->result->status->code == CN_OK)
		return; /* streaming: MigrateProgress, then MigrateDone */
	if (status == -ETIMEDOUT) {
		/* It may have started: only the reports can tell. */
		t->mig->resolving = true;
		arm(t, MGR_MIGRATE_RESOLVE_MS);
		probe_arm(t);
		return;
	}
	req_error(status, env, t->mig->src, "send the vm", msg, sizeof(msg),
		  &code);
	abort_dst(t);
	fail(t, code, msg);
}

static struct mgr_task *find(struct manager *m, const char *task_id,
			     const char *vm)
{
	for (struct mgr_task *t = m->tasks; t; t = t->next)
		if (t->mig && ((task_id && strcmp(t->rec->id, task_id) == 0) ||
			       (vm && strcmp(t->vm, vm) == 0)))
			return t;
	return NULL;
}

unsigned mgr_migrate_count(struct manager *m, const char *host)
{
	unsigned n = 0;

	for (struct mgr_task *t = m->tasks; t; t = t->next)
		if (t->mig && (strcmp(t->mig->src, host) == 0 ||
			       strcmp(t->mig->dst, host) == 0))
			n++;
	return n;
}

void mgr_migrate_on_progress(struct manager *m, const char *host,
			     const Canopy__V1__MigrateProgress *p)
{
	struct mgr_task *t = find(m, p->task_id, NULL);
	Canopy__V1__TaskMigration *tm;
	struct vmo_progress v;
	char text[256];

	if (!t || strcmp(t->mig->src, host) != 0 ||
	    t->mig->stage != VMO_SENDING || !p->phase || t->mig->resolving)
		return;
	snprintf(t->mig->phase, sizeof(t->mig->phase), "%s", p->phase);
	tm = t->rec->migration;
	if (tm) {
		mgr_set_str(&tm->stage, t->mig->phase);
		tm->round = p->round;
		tm->remaining_mib = p->remaining_mib;
		tm->dirty_rate_mib_s = p->dirty_rate_mib_s;
		tm->bandwidth_mib_s = p->bandwidth_mib_s;
		tm->expected_downtime_ms = p->expected_downtime_ms;
		tm->throttle_pct = p->throttle_pct;
		tm->transferred_mib = p->transferred_mib;
	}
	v = (struct vmo_progress){ .phase = t->mig->phase,
				   .round = p->round,
				   .remaining_mib = p->remaining_mib,
				   .dirty_rate_mib_s = p->dirty_rate_mib_s,
				   .expected_downtime_ms =
					   p->expected_downtime_ms,
				   .transferred_mib = p->transferred_mib,
				   .throttle_pct = p->throttle_pct };
	vmo_progress_text(&v, text, sizeof(text));
	if (t->mig->cancel)
		snprintf(text, sizeof(text), "cancelling");
	show(t, vmo_progress_pct(&v, t->mig->memory_mib), text);
}

/* The move, once: the VM record's host and its placement index change in
 * one fenced txn (new placement and running keys put, the source's
 * placement deleted). */
int mgr_migrate_record_move(struct manager *m, const char *name,
			    const char *dst)
{
	char key[MGR_KEY_MAX], place[MGR_KEY_MAX], run[MGR_KEY_MAX];
	char old[MGR_KEY_MAX] = "";
	struct etcd_op ops[3];
	Canopy__V1__Vm *vm = NULL;
	size_t n = 0;
	int rc;

	rc = mgr_key_join(key, sizeof(key), MGR_PREFIX_VMS, MGR_NAME_VM, name);
	rc = rc	   ?:
		     mgr_get_msg(m, key, &canopy__v1__vm__descriptor,
				 (ProtobufCMessage **)&vm);
	if (rc)
		return rc;
	if (strcmp(vm->host, dst) != 0) {
		rc = mgr_key_placement(old, sizeof(old), vm->host, vm->id);
		if (mgr_set_str(&vm->host, dst))
			rc = rc ?: -ENOMEM;
	}
	vm->state = RUN(RUNNING);
	vm->desired = CANOPY__V1__POWER_STATE__POWER_STATE_ON;
	mgr_set_str(&vm->stop_reason, "");
	rc = rc ?: mgr_vm_index_ops(vm, false, ops, &n, place, run);
	if (!rc && strcmp(old, place) != 0 && old[0]) {
		memset(&ops[n], 0, sizeof(ops[n]));
		ops[n].type = ETCD_OP_DELETE;
		ops[n].key = old;
		n++;
	}
	rc = rc ?: mgr_put_msg(m, key, &vm->base, NULL, ops, n);
	canopy__v1__vm__free_unpacked(vm, NULL);
	return rc;
}

/* The source (or the reports) say the destination runs the VM. */
static void committed(struct mgr_task *t, const Canopy__V1__MigrateDone *d)
{
	Canopy__V1__TaskMigration *tm = t->rec->migration;
	char text[MGR_KEY_MAX * 4 + 200];
	int rc;

	(void)stage(t, VMO_EV_DONE_OK);
	/* A source holding the VM paused in doubt stops as migrated (a
	 * source not in doubt refuses: harmless). */
	if (t->mig->resolving)
		resolve_src(t, false, NULL);
	show(t, 97, "recording the vm on the destination");
	rc = mgr_migrate_record_move(t->m, t->vm, t->mig->dst);
	if (rc) {
		/* The VM runs on dst whatever etcd says: the reports fix
		 * the record once a leader can write (on_report). */
		snprintf(text, sizeof(text),
			 "vm %s runs on host %s but the manager could not "
			 "record it (%s); check 'canopy vm show %s'",
			 t->vm, t->mig->dst, cn_strerror(rc), t->vm);
		mgr_task_end(t, CN_UNAVAILABLE, text);
		return;
	}
	(void)stage(t, VMO_EV_STORED);
	if (tm) {
		mgr_set_str(&tm->stage, "completed");
		if (d) {
			tm->downtime_ms = d->downtime_ms;
			tm->total_ms = d->total_ms;
			tm->round = d->rounds;
			tm->throttle_pct = d->throttle_pct;
			tm->transferred_mib = d->bytes >> 20;
		}
	}
	if (d)
		snprintf(text, sizeof(text),
			 "vm %s migrated from host %s to %s: downtime %llu "
			 "ms, total %llu ms, %llu MiB in %u rounds",
			 t->vm, t->mig->src, t->mig->dst,
			 (unsigned long long)d->downtime_ms,
			 (unsigned long long)d->total_ms,
			 (unsigned long long)(d->bytes >> 20), d->rounds);
	else
		snprintf(text, sizeof(text),
			 "vm %s migrated from host %s to %s (found running "
			 "there after the outcome was lost)",
			 t->vm, t->mig->src, t->mig->dst);
	mgr_event(t->m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_INFO,
		  "vm.migrated", t->rec->object, t->rec->id, "%s", text);
	mgr_task_end(t, CN_OK, text);
}

/* ---- an in-doubt outcome: the destination decides ------------------- */

static void resolved_reply(void *arg, int status,
			   const Canopy__V1__Envelope *env)
{
	(void)arg;
	if (status || env->body_case != CANOPY__V1__ENVELOPE__BODY_RESULT ||
	    !env->result->status || env->result->status->code != CN_OK)
		log_info("manager",
			 "source not resolved (nothing in doubt "
			 "there, or unreachable)",
			 "status=%d", status);
}

/* Ask the source agent to resolve: resume or stop as migrated. cb NULL:
 * fire and forget (t is not the callback's argument). */
int mgr_migrate_resolve_send(struct manager *m, const char *src,
			     const char *name, const char *task_id, bool resume,
			     bool power_off, bus_reply_fn cb, void *arg)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__MigrateResolve r = CANOPY__V1__MIGRATE_RESOLVE__INIT;
	int rc;

	if (!m->bus)
		return -ENOTCONN;
	r.vm_id = (char *)name;
	r.task_id = (char *)task_id;
	r.resume = resume;
	r.power_off = power_off;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_MIGRATE_RESOLVE;
	env.migrate_resolve = &r;
	rc = bus_server_request(m->bus, src, &env, MGR_MIGRATE_RESOLVE_CALL_MS,
				cb ? cb : resolved_reply, cb ? arg : NULL,
				NULL);
	log_info("manager", "resolving an in-doubt migration",
		 "vm=%s host=%s resume=%d power_off=%d sent=%d", name, src,
		 (int)resume, (int)power_off, rc == 0);
	return rc;
}

static int resolve_src(struct mgr_task *t, bool resume, bus_reply_fn cb)
{
	int rc = mgr_migrate_resolve_send(t->m, t->mig->src, t->vm, t->rec->id,
					  resume, false, cb, t);

	if (rc == 0 && cb)
		t->in_flight = true;
	return rc;
}

/* The source resumed the VM after an in-doubt outcome: the destination
 * never ran it. Ends t. */
static void resumed_on_source(struct mgr_task *t)
{
	char msg[MGR_KEY_MAX * 5 + 400];

	snprintf(msg, sizeof(msg),
		 "migration to host %s failed: the link broke after COMMIT; "
		 "host %s never ran the vm (its receiving canopy-vmm exited "
		 "without it) and vm %s resumed on host %s",
		 t->mig->dst, t->mig->dst, t->vm, t->mig->src);
	log_info("manager", "migration resolved: resumed on the source",
		 "vm=%s host=%s", t->vm, t->mig->src);
	(void)stage(t, VMO_EV_FAIL);
	stage_str(t, "failed");
	mgr_task_end(t, CN_ABORTED, msg);
}

static void on_resumed(void *arg, int status, const Canopy__V1__Envelope *env)
{
	struct mgr_task *t = callback_task(arg, status);

	if (!t || !t->mig->resolving || t->mig->held)
		return;
	if (status || env->body_case != CANOPY__V1__ENVELOPE__BODY_RESULT ||
	    !env->result->status || env->result->status->code != CN_OK)
		return; /* not in doubt (yet), or unreachable: probe again */
	resumed_on_source(t);
}

/* The destination's answer to MigrateProbe. */
static void on_probe(void *arg, int status, const Canopy__V1__Envelope *env)
{
	struct mgr_task *t = callback_task(arg, status);
	int code;

	if (!t || !t->mig->resolving || t->mig->held)
		return;
	if (status || env->body_case != CANOPY__V1__ENVELOPE__BODY_RESULT ||
	    !env->result->status)
		return; /* not connected or no answer: next tick */
	code = env->result->status->code;
	if (code == CN_OK) {
		log_info("manager", "migration resolved: destination has it",
			 "vm=%s host=%s", t->vm, t->mig->dst);
		committed(t, NULL);
	} else if (code == CN_NOT_FOUND) {
		/* Its receiver is gone without having run the VM: the source
		 * may take it back (only if it is in doubt: it says). */
		(void)resolve_src(t, true, on_resumed);
	} else if (code == CN_ABORTED && t->mig->in_doubt) {
		/* Its receiver died and may have run the VM: nobody may
		 * resume it; say why the task waits. */
		char text[MGR_KEY_MAX * 3 + 700];

		snprintf(text, sizeof(text),
			 "in doubt: host %s says: %.400s; vm %s stays paused "
			 "on host %s",
			 t->mig->dst,
			 env->result->status->message ?
				 env->result->status->message :
				 "",
			 t->vm, t->mig->src);
		if (!t->rec->phase || strcmp(t->rec->phase, text) != 0)
			show(t, t->rec->progress, text);
	}
}

static int probe_tick(struct loop *l, uint64_t id, void *arg)
{
	struct mgr_task *t = arg;
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__MigrateProbe p = CANOPY__V1__MIGRATE_PROBE__INIT;

	(void)l;
	(void)id;
	if (t->in_flight || !t->m->bus || !t->m->leader)
		return MGR_MIGRATE_PROBE_MS;
	p.vm_id = t->vm;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_MIGRATE_PROBE;
	env.migrate_probe = &p;
	if (bus_server_request(t->m->bus, t->mig->dst, &env,
			       MGR_MIGRATE_PROBE_MS, on_probe, t, NULL) == 0)
		t->in_flight = true;
	return MGR_MIGRATE_PROBE_MS;
}

/* While the outcome is unknown, ask the destination every second. */
static void probe_arm(struct mgr_task *t)
{
	int err = 0;

	if (t->mig->probe_timer)
		return;
	t->mig->probe_timer = loop_timer_add(t->m->l, MGR_MIGRATE_PROBE_MS,
					     probe_tick, t, &err);
	if (!t->mig->probe_timer)
		log_warn("manager", "no migration probe timer", "task=%s",
			 t->rec->id);
}

/* The source wrote COMMIT and the destination never confirmed: the VM is
 * paused on the source until the destination says what it has. */
static void doubt_enter(struct mgr_task *t, const char *why)
{
	char text[MGR_KEY_MAX * 5 + 400];

	log_warn("manager", "migration in doubt",
		 "task=%s vm=%s from=%s to=%s why=\"%s\"", t->rec->id, t->vm,
		 t->mig->src, t->mig->dst, why);
	t->mig->in_doubt = true;
	t->mig->resolving = true;
	stage_str(t, "in_doubt");
	snprintf(text, sizeof(text),
		 "in doubt: COMMIT was sent but host %s did not confirm it "
		 "runs the vm; vm %s stays paused on host %s until host %s "
		 "says whether it has it",
		 t->mig->dst, t->vm, t->mig->src, t->mig->dst);
	show(t, 96, text);
	arm(t, doubt_ms());
	probe_arm(t);
}

void mgr_migrate_on_done(struct manager *m, const char *host,
			 const Canopy__V1__MigrateDone *d)
{
	struct mgr_task *t = find(m, d->task_id, d->in_doubt ? d->vm_id : NULL);
	char msg[1000];

	if (!t || strcmp(t->mig->src, host) != 0 ||
	    (t->mig->stage != VMO_SENDING && !t->mig->resolving)) {
		if (d->in_doubt && !t) { /* its task has ended: resolve */
			mgr_migrate_orphan(m, host, d);
			return;
		}
		log_info("manager", "migrate done for no running task",
			 "host=%s task=%s", host, d->task_id);
		return;
	}
	if (d->in_doubt && t->mig->in_doubt)
		return; /* the source says it again: already deciding */
	if (d->status && d->status->code == CN_OK) {
		committed(t, d);
		return;
	}
	if (d->in_doubt) {
		doubt_enter(t, d->status && d->status->message ?
				       d->status->message :
				       "");
		return;
	}
	snprintf(msg, sizeof(msg), "migration to host %s failed: %.800s",
		 t->mig->dst,
		 d->status && d->status->message ? d->status->message : "");
	abort_dst(t);
	fail(t, CN_ABORTED, msg);
}

void mgr_migrate_on_report(struct manager *m, const char *host,
			   const Canopy__V1__VmStateReport *r)
{
	struct mgr_task *t = find(m, NULL, r->vm_id);

	if (!t || !t->mig->resolving || t->mig->held)
		return;
	if (strcmp(host, t->mig->dst) == 0 && r->state == RUN(RUNNING)) {
		log_info("manager", "migration resolved: destination runs it",
			 "vm=%s host=%s", t->vm, host);
		committed(t, NULL);
	} else if (strcmp(host, t->mig->src) == 0 &&
		   (r->state == RUN(RUNNING) || r->state == RUN(PAUSED))) {
		/* The source runs it and is not migrating any more: the
		 * migration failed before commit. */
		if (t->mig->in_doubt) { /* our resolve resumed it */
			resumed_on_source(t);
			return;
		}
		log_info("manager", "migration resolved: source runs it",
			 "vm=%s host=%s", t->vm, host);
		abort_dst(t);
		fail(t, CN_ABORTED,
		     "the migration did not complete (its outcome was lost "
		     "and the source reports the vm running)");
	}
}

void mgr_migrate_host_down(struct manager *m, const char *host)
{
	struct mgr_task *t;
	char msg[MGR_KEY_MAX + 160];

again:
	for (t = m->tasks; t; t = t->next) {
		if (!t->mig || !t->running || t->mig->resolving)
			continue;
		if (strcmp(t->mig->src, host) == 0 &&
		    t->mig->stage == VMO_SENDING) {
			/* Its VMM may still commit: wait for the reports. */
			t->mig->resolving = true;
			show(t, t->rec->progress,
			     "source host disconnected; waiting for the hosts "
			     "to report where the vm runs");
			arm(t, MGR_MIGRATE_RESOLVE_MS);
			probe_arm(t);
		} else if ((strcmp(t->mig->dst, host) == 0 &&
			    t->mig->stage == VMO_PREPARING) ||
			   (strcmp(t->mig->src, host) == 0 &&
			    t->mig->stage == VMO_PREPARING)) {
			snprintf(msg, sizeof(msg),
				 "host %s disconnected before the stream "
				 "started",
				 host);
			if (t->in_flight)
				continue; /* its request fails by itself */
			fail(t, CN_UNAVAILABLE, msg);
			goto again;
		}
	}
}

static int deadline(struct loop *l, uint64_t id, void *arg)
{
	struct mgr_task *t = arg;
	char msg[MGR_KEY_MAX * 3 + 300];

	(void)l;
	(void)id;
	t->mig->timer = 0;
	if (t->mig->in_doubt) {
		char big[MGR_KEY_MAX * 5 + 400];

		snprintf(big, sizeof(big),
			 "the migration is in doubt: COMMIT was sent to host "
			 "%s, which has not said within %u s whether it runs "
			 "the vm; vm %s stays paused on host %s (never resumed "
			 "blindly); check host %s",
			 t->mig->dst, doubt_ms() / 1000, t->vm, t->mig->src,
			 t->mig->dst);
		mgr_task_end(t, CN_DEADLINE_EXCEEDED, big);
		return LOOP_TIMER_STOP;
	}
	if (t->mig->resolving) {
		snprintf(msg, sizeof(msg),
			 "the outcome of the migration is unknown: neither "
			 "host %s nor host %s reported the vm running within "
			 "%u s (if the source wrote COMMIT the vm is paused "
			 "there, in doubt); check both hosts ('canopy vm show "
			 "%s')",
			 t->mig->src, t->mig->dst,
			 MGR_MIGRATE_RESOLVE_MS / 1000, t->vm);
		mgr_task_end(t, CN_DEADLINE_EXCEEDED, msg);
		return LOOP_TIMER_STOP;
	}
	/* The source never gave a verdict: ask the reports. */
	t->mig->resolving = true;
	arm(t, MGR_MIGRATE_RESOLVE_MS);
	probe_arm(t);
	return LOOP_TIMER_STOP;
}

int mgr_migrate_cancel(struct manager *m, struct api_call *c, const char *id)
{
	struct mgr_task *t = find(m, id, NULL);
	Canopy__V1__Task *copy;

	if (!t)
		return 0;
	if (!vmo_cancel_ok(t->mig->stage, t->mig->phase) || t->mig->resolving) {
		api_fail(c, CN_FAILED_PRECONDITION,
			 "task %s can no longer be cancelled: the migration "
			 "is at %s; it ends by itself",
			 id, t->mig->phase[0] ? t->mig->phase : "commit");
		return 1;
	}
	t->mig->cancel = true;
	copy = mgr_task_copy(t->rec);
	if (copy)
		mgr_set_str(&copy->phase, "cancelling");
	if (!t->running)
		mgr_task_end(t, CN_CANCELLED, "cancelled by request");
	else if (t->mig->stage == VMO_SENDING)
		abort_dst(t); /* the source fails and resumes: MigrateDone */
	/* PREPARING: on_ready sees the flag. */
	if (copy) {
		api_reply(c, &copy->base);
		canopy__v1__task__free_unpacked(copy, NULL);
	} else {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory");
	}
	return 1;
}

int mgr_migrate_attach(struct mgr_task *t, const char *dst,
		       uint32_t max_downtime_ms, uint64_t bandwidth_mib_s,
		       uint64_t memory_mib)
{
	Canopy__V1__TaskMigration *tm = calloc(1, sizeof(*tm));

	t->mig = calloc(1, sizeof(*t->mig));
	if (!t->mig || !tm) {
		free(tm);
		mgr_migrate_forget(t);
		return -ENOMEM;
	}
	canopy__v1__task_migration__init(tm);
	snprintf(t->mig->src, sizeof(t->mig->src), "%s", t->host);
	snprintf(t->mig->dst, sizeof(t->mig->dst), "%s", dst);
	t->mig->max_downtime_ms = max_downtime_ms;
	t->mig->bandwidth_mib_s = bandwidth_mib_s;
	t->mig->memory_mib = memory_mib;
	tm->max_downtime_ms = max_downtime_ms;
	tm->bandwidth_limit_mib_s = bandwidth_mib_s;
	if (mgr_set_str(&tm->from_host, t->host) ||
	    mgr_set_str(&tm->to_host, dst) ||
	    mgr_set_str(&tm->stage, "queued")) {
		canopy__v1__task_migration__free_unpacked(tm, NULL);
		mgr_migrate_forget(t);
		return -ENOMEM;
	}
	t->rec->migration = tm;
	mgr_task_update(t->m, t->rec);
	return 0;
}

int mgr_migrate_recover(struct manager *m, const Canopy__V1__Task *rec)
{
	const Canopy__V1__TaskMigration *tm = rec->migration;
	const char *name = mgr_key_name(rec->object, "vm/");
	struct mgr_task *t, **tail;

	if (strcmp(rec->kind, "vm.migrate") != 0 || !tm || !name ||
	    !tm->from_host || !tm->to_host)
		return 0;
	t = calloc(1, sizeof(*t));
	if (!t)
		return 0;
	t->m = m;
	t->op = MGR_OP_MIGRATE;
	t->rec = mgr_task_copy(rec);
	t->mig = calloc(1, sizeof(*t->mig));
	if (!t->rec || !t->mig) {
		if (t->rec)
			canopy__v1__task__free_unpacked(t->rec, NULL);
		free(t->mig);
		free(t);
		return 0;
	}
	t->prev_desired = CANOPY__V1__POWER_STATE__POWER_STATE_ON;
	t->running = true;
	snprintf(t->vm, sizeof(t->vm), "%s", name);
	snprintf(t->host, sizeof(t->host), "%s", tm->from_host);
	snprintf(t->mig->src, sizeof(t->mig->src), "%s", tm->from_host);
	snprintf(t->mig->dst, sizeof(t->mig->dst), "%s", tm->to_host);
	t->mig->stage = VMO_SENDING;
	t->mig->resolving = true;
	for (tail = &m->tasks; *tail; tail = &(*tail)->next)
		;
	*tail = t;
	mgr_set_str(&t->rec->manager, m->opt.id);
	show(t, t->rec->progress,
	     "manager failover: waiting for the hosts to report where the vm "
	     "runs");
	arm(t, MGR_MIGRATE_RESOLVE_MS);
	probe_arm(t);
	log_info("manager", "resolving a migration after failover",
		 "task=%s vm=%s from=%s to=%s", rec->id, name, tm->from_host,
		 tm->to_host);
	return 1;
}

/* ---- an operator's ResolveMigration (migrate_resolve.c) ------------- */

int mgr_migrate_doubt_find(struct manager *m, const char *vm, char *src,
			   char *dst, char *task_id)
{
	struct mgr_task *t = find(m, NULL, vm);

	if (!t || !t->mig->in_doubt || t->mig->held)
		return 0;
	snprintf(src, MGR_KEY_MAX, "%s", t->mig->src);
	snprintf(dst, MGR_KEY_MAX, "%s", t->mig->dst);
	snprintf(task_id, MGR_KEY_MAX, "%s", t->rec->id);
	return 1;
}

void mgr_migrate_doubt_hold(struct manager *m, const char *vm, bool hold)
{
	struct mgr_task *t = find(m, NULL, vm);

	if (t)
		t->mig->held = hold;
}

void mgr_migrate_doubt_end(struct manager *m, const char *vm, const char *msg)
{
	struct mgr_task *t = find(m, NULL, vm);

	if (!t || !t->mig->in_doubt)
		return;
	log_info("manager", "in-doubt migration ended by an operator",
		 "task=%s vm=%s", t->rec->id, vm);
	(void)stage(t, VMO_EV_FAIL);
	stage_str(t, "failed");
	mgr_task_end(t, CN_ABORTED, msg);
}
