/* canopy-managerd: an in-doubt migration whose vm.migrate task has ended
 * (its 10-minute bound, a lost-outcome deadline): resolved when the source
 * agent repeats its in-doubt MigrateDone, as the task would have. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bus.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "manager/keys.h"
#include "manager/migrate.h"

struct orphan {
	struct manager *m;
	char vm[MGR_KEY_MAX], src[MGR_KEY_MAX], dst[MGR_KEY_MAX];
	char object[MGR_KEY_MAX + 8];
};

/* The source's answer to resume=true: an event once it has resumed. */
static void on_resumed(void *arg, int status, const Canopy__V1__Envelope *env)
{
	struct orphan *o = arg;

	if (!status && env->body_case == CANOPY__V1__ENVELOPE__BODY_RESULT &&
	    env->result->status && env->result->status->code == CN_OK &&
	    o->m->leader) {
		mgr_migrate_orphan_forget(o->m, o->vm);
		mgr_event(o->m,
			  CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_WARNING,
			  "vm.migration_resolved", o->object, "",
			  "in-doubt migration of vm %s resolved after its "
			  "task ended: host %s never ran it; it resumed on "
			  "host %s",
			  o->vm, o->dst, o->src);
	}
	free(o);
}

/* Is the VM recorded on host already (the move was recorded)? */
static bool recorded_on(struct manager *m, const char *name, const char *host)
{
	char key[MGR_KEY_MAX];
	Canopy__V1__Vm *vm = NULL;
	bool on;

	if (mgr_key_join(key, sizeof(key), MGR_PREFIX_VMS, MGR_NAME_VM, name) ||
	    mgr_get_msg(m, key, &canopy__v1__vm__descriptor,
			(ProtobufCMessage **)&vm))
		return false;
	on = vm->host && strcmp(vm->host, host) == 0;
	canopy__v1__vm__free_unpacked(vm, NULL);
	return on;
}

/* The destination has the VM: record the move (once), stop the source. */
static void moved(struct orphan *o)
{
	struct manager *m = o->m;
	int rc;

	if (!recorded_on(m, o->vm, o->dst)) {
		rc = mgr_migrate_record_move(m, o->vm, o->dst);
		if (rc) {
			log_warn("manager",
				 "in-doubt vm runs on its destination but the "
				 "move is not recorded; retried later",
				 "vm=%s host=%s err=%d", o->vm, o->dst, rc);
			return;
		}
		mgr_event(m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_INFO,
			  "vm.migrated", o->object, "",
			  "vm %s migrated from host %s to %s (resolved after "
			  "its in-doubt task ended)",
			  o->vm, o->src, o->dst);
	}
	mgr_migrate_orphan_forget(m, o->vm);
	if (mgr_migrate_resolve_send(m, o->src, o->vm, "", false, false, NULL,
				     NULL))
		log_info("manager",
			 "source not told to stop as migrated; it says it "
			 "again later",
			 "vm=%s", o->vm);
}

/* The destination's answer: the same rules as an in-doubt task. */
static void on_probe(void *arg, int status, const Canopy__V1__Envelope *env)
{
	struct orphan *o = arg;
	int code = -1;

	if (!status && env->body_case == CANOPY__V1__ENVELOPE__BODY_RESULT &&
	    env->result->status)
		code = env->result->status->code;
	if (!o->m->leader || mgr_migrate_resolving(o->m, o->vm)) {
		free(o); /* an operator's resolution started meanwhile */
	} else if (code == CN_OK) {
		moved(o);
		free(o);
	} else if (code == CN_NOT_FOUND) {
		/* Gone without having run it: resume on the source. */
		if (mgr_migrate_resolve_send(o->m, o->src, o->vm, "", true,
					     false, on_resumed, o))
			free(o);
	} else {
		free(o); /* unknown: the source says it again later */
	}
}

/* The entry of vm in m->doubts, or a free (or the oldest) one. */
static struct mgr_doubt_seen *seen_slot(struct manager *m, const char *vm)
{
	struct mgr_doubt_seen *old = &m->doubts[0];

	for (unsigned i = 0; i < MGR_DOUBTS_SEEN; i++) {
		if (m->doubts[i].seen_ms && strcmp(m->doubts[i].vm, vm) == 0)
			return &m->doubts[i];
		if (m->doubts[i].seen_ms < old->seen_ms)
			old = &m->doubts[i];
	}
	return old;
}

/* Note what the source said: an operator may resolve it. */
static void seen_note(struct manager *m, const char *vm, const char *src,
		      const char *dst)
{
	struct mgr_doubt_seen *s = seen_slot(m, vm);

	snprintf(s->vm, sizeof(s->vm), "%s", vm);
	snprintf(s->src, sizeof(s->src), "%s", src);
	snprintf(s->dst, sizeof(s->dst), "%s", dst);
	s->seen_ms = loop_now_ms(m->l);
	if (!s->seen_ms)
		s->seen_ms = 1;
}

int mgr_migrate_orphan_find(struct manager *m, const char *vm, char *src,
			    char *dst)
{
	struct mgr_doubt_seen *s = seen_slot(m, vm);
	uint64_t now = loop_now_ms(m->l);

	if (!s->seen_ms || strcmp(s->vm, vm) != 0 ||
	    now - s->seen_ms > MGR_MIGRATE_SEEN_MS)
		return 0;
	snprintf(src, MGR_KEY_MAX, "%s", s->src);
	snprintf(dst, MGR_KEY_MAX, "%s", s->dst);
	return 1;
}

void mgr_migrate_orphan_forget(struct manager *m, const char *vm)
{
	struct mgr_doubt_seen *s = seen_slot(m, vm);

	if (s->seen_ms && strcmp(s->vm, vm) == 0)
		s->seen_ms = 0;
}

void mgr_migrate_orphan(struct manager *m, const char *src,
			const Canopy__V1__MigrateDone *d)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__MigrateProbe p = CANOPY__V1__MIGRATE_PROBE__INIT;
	struct orphan *o;

	/* validate */
	if (!m->bus || !d->vm_id || !*d->vm_id || !d->dst_host_id ||
	    !*d->dst_host_id || strlen(d->vm_id) >= MGR_KEY_MAX ||
	    strlen(d->dst_host_id) >= MGR_KEY_MAX ||
	    strcmp(d->dst_host_id, src) == 0) {
		log_info("manager",
			 "in-doubt migrate done without a usable "
			 "destination; ignored",
			 "host=%s", src);
		return;
	}
	seen_note(m, d->vm_id, src, d->dst_host_id);
	if (mgr_migrate_resolving(m, d->vm_id)) {
		log_info("manager",
			 "in-doubt vm left to the operator's resolution",
			 "vm=%s", d->vm_id);
		return;
	}
	/* act: ask the destination */
	o = calloc(1, sizeof(*o));
	if (!o)
		return;
	o->m = m;
	snprintf(o->vm, sizeof(o->vm), "%s", d->vm_id);
	snprintf(o->src, sizeof(o->src), "%s", src);
	snprintf(o->dst, sizeof(o->dst), "%s", d->dst_host_id);
	snprintf(o->object, sizeof(o->object), "vm/%s", d->vm_id);
	p.vm_id = o->vm;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_MIGRATE_PROBE;
	env.migrate_probe = &p;
	if (bus_server_request(m->bus, o->dst, &env, MGR_MIGRATE_PROBE_MS,
			       on_probe, o, NULL) < 0)
		free(o);
	else
		log_info("manager", "resolving an in-doubt vm without a task",
			 "vm=%s from=%s to=%s", o->vm, o->src, o->dst);
}
