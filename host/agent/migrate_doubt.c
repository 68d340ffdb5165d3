/* canopy-agent: an in-doubt vMotion (COMMIT sent, STARTED never came):
 * MigrateResolve on the source, MigrateProbe on the destination. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/agent/agent.h"
#include "host/agent/migrate_mig.h"
#include "host/agent/vmmctl.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"

/* migrate_resolve may wait for the datastore locks (the VMM's reclaim:
 * 60 s at most) before it answers. */
#define MIG_RESOLVE_CALL_MS 90000
/* While in doubt, MigrateDone is repeated this often. */
#define MIG_DOUBT_RESEND_MS 5000
/* In the VM's directory while in doubt: "DST_HOST TASK_ID". */
#define MIG_DOUBT_FILE "migrate-doubt"

#define RUN(x) CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_##x

static void resolve_reply(void *arg, int status,
			  const Canopy__V1__VmmReply *rep)
{
	struct agent_vm *vm = arg;
	struct agent_mig *mg = vm->mig;
	struct agent *ag = vm->ag;
	uint64_t rid = mg->resolve_rid;
	char msg[800];

	mg->resolve = NULL;
	mg->resolve_rid = 0;
	if (status < 0 || vmmctl_code(rep) != 0) {
		mg->resolve_migrated = 0;
		mg->resolve_power_off = 0;
		if (status < 0)
			snprintf(msg, sizeof(msg),
				 "the migrate_resolve call to the source "
				 "canopy-vmm failed: %s",
				 cn_strerror(status));
		else
			snprintf(msg, sizeof(msg), "%.700s",
				 vmmctl_message(rep));
		log_warn("agent", "migrate resolve failed", "vm=%s msg=\"%s\"",
			 vm->id, msg);
		agent_reply(ag, rid,
			    status < 0 ? CN_UNAVAILABLE : vmmctl_code(rep),
			    msg);
		return;
	}
	if (mg->resolve_power_off) {
		/* It exits as powered off: agent_migrate_exited reports it. */
		agent_reply(ag, rid, CN_OK,
			    "the source canopy-vmm powers the vm off");
		return;
	}
	if (mg->resolve_migrated) {
		/* It exits as migrated: agent_migrate_exited forgets it. */
		mg->committed = 1;
		agent_reply(ag, rid, CN_OK,
			    "the source canopy-vmm stops as migrated");
		if (mg->exited)
			(void)agent_migrate_exited(ag, vm);
		return;
	}
	log_info("agent", "in-doubt migration resolved: the vm runs here",
		 "vm=%s", vm->id);
	agent_mig_doubt_forget(vm);
	agent_mig_free(ag, vm);
	vm->state = RUN(RUNNING);
	agent_reply(ag, rid, CN_OK, "the vm runs on this host again");
	agent_vm_report(ag, vm);
}

void agent_migrate_resolve(struct agent *ag, const Canopy__V1__Envelope *env)
{
	const Canopy__V1__MigrateResolve *r = env->migrate_resolve;
	Canopy__V1__VmmRequest req = CANOPY__V1__VMM_REQUEST__INIT;
	Canopy__V1__VmmMigrateResolveRequest mr =
		CANOPY__V1__VMM_MIGRATE_RESOLVE_REQUEST__INIT;
	struct agent_vm *vm;
	char msg[600];
	int rc;

	/* validate */
	if (agent_vm_id_check(r->vm_id, msg, sizeof(msg)) < 0 ||
	    (r->resume && r->power_off)) {
		agent_reply(ag, env->request_id, CN_INVALID_ARGUMENT,
			    r->resume && r->power_off ?
				    "MigrateResolve: resume and power_off "
				    "together; choose one" :
				    msg);
		return;
	}
	vm = agent_vm_find(ag, r->vm_id);
	if (!vm || !agent_vm_active(vm) || !vm->mig || vm->mig->incoming ||
	    !vm->mig->in_doubt) {
		snprintf(msg, sizeof(msg),
			 "no migration of vm %.64s is in doubt on this host; "
			 "nothing changed",
			 r->vm_id);
		agent_reply(ag, env->request_id, CN_FAILED_PRECONDITION, msg);
		return;
	}
	if (vm->mig->resolve) {
		agent_reply(ag, env->request_id, CN_FAILED_PRECONDITION,
			    "a MigrateResolve of this vm is being carried "
			    "out; retry when it is done");
		return;
	}
	/* act */
	mr.resume = r->resume;
	mr.power_off = r->power_off;
	req.op_case = CANOPY__V1__VMM_REQUEST__OP_MIGRATE_RESOLVE;
	req.migrate_resolve = &mr;
	rc = vmmctl_call_start(ag->loop, vm->dir, &req, MIG_RESOLVE_CALL_MS,
			       resolve_reply, vm, &vm->mig->resolve);
	if (rc < 0) {
		snprintf(msg, sizeof(msg),
			 "cannot reach the VM's canopy-vmm: %s",
			 cn_strerror(rc));
		agent_reply(ag, env->request_id, cn_code_from_errno(rc), msg);
		return;
	}
	vm->mig->resolve_rid = env->request_id;
	vm->mig->resolve_migrated = !r->resume && !r->power_off;
	vm->mig->resolve_power_off = r->power_off;
	log_info("agent", "resolving an in-doubt migration",
		 "vm=%s resume=%d power_off=%d", vm->id, (int)r->resume,
		 (int)r->power_off);
}

/* The ring entry of vm_id, or NULL. */
static struct agent_mig_exit *exit_find(struct agent *ag, const char *vm_id)
{
	for (unsigned i = 0; i < AGENT_MIG_EXITS; i++)
		if (strcmp(ag->mig_exits[i].vm_id, vm_id) == 0)
			return &ag->mig_exits[i];
	return NULL;
}

void agent_migrate_exit_note(struct agent *ag, const char *vm_id, int status,
			     int ran)
{
	struct agent_mig_exit *e = exit_find(ag, vm_id);

	if (status == 0) { /* forget */
		if (e)
			e->vm_id[0] = '\0';
		return;
	}
	if (!e) {
		e = &ag->mig_exits[ag->mig_exits_next++ % AGENT_MIG_EXITS];
		snprintf(e->vm_id, sizeof(e->vm_id), "%s", vm_id);
	}
	e->status = status;
	e->ran = ran;
}

/* No VM and no receiver here: did the last receiver run nothing? */
static void probe_gone(struct agent *ag, uint64_t rid, const char *vm_id)
{
	const struct agent_mig_exit *e = exit_find(ag, vm_id);
	char msg[200];

	if (!e) {
		agent_reply(ag, rid, CN_NOT_FOUND,
			    "no receiving canopy-vmm and no such vm on this "
			    "host");
	} else if (e->status == 2) { /* migrate_recv failed: no vCPU ran */
		agent_reply(ag, rid, CN_NOT_FOUND,
			    "the receiving canopy-vmm exited without running "
			    "the vm (status 2)");
	} else if (!e->ran) { /* gone before its run marker: no vCPU ran */
		snprintf(msg, sizeof(msg),
			 "the receiving canopy-vmm exited without running the "
			 "vm (status %d, before its run marker)",
			 e->status);
		agent_reply(ag, rid, CN_NOT_FOUND, msg);
	} else {
		snprintf(msg, sizeof(msg),
			 "the receiving canopy-vmm exited with status %d after "
			 "its run marker: it may have run the vm; check this "
			 "host",
			 e->status);
		agent_reply(ag, rid, CN_ABORTED, msg);
	}
}

void agent_migrate_probe(struct agent *ag, const Canopy__V1__Envelope *env)
{
	const Canopy__V1__MigrateProbe *r = env->migrate_probe;
	struct agent_vm *vm;
	char msg[600], path[AGENT_PATH_MAX + 16];

	if (agent_vm_id_check(r->vm_id, msg, sizeof(msg)) < 0) {
		agent_reply(ag, env->request_id, CN_INVALID_ARGUMENT, msg);
		return;
	}
	vm = agent_vm_find(ag, r->vm_id);
	if (!vm) {
		probe_gone(ag, env->request_id, r->vm_id);
		return;
	}
	snprintf(path, sizeof(path), "%s/control.sock", vm->dir);
	/* The control socket appears only once the VM runs (after COMMIT). */
	if (vm->mig && vm->mig->incoming && access(path, F_OK) != 0) {
		agent_reply(ag, env->request_id, CN_UNAVAILABLE,
			    "the receiving canopy-vmm still waits for COMMIT");
		return;
	}
	if (vm->mig && !vm->mig->incoming) {
		agent_reply(ag, env->request_id, CN_FAILED_PRECONDITION,
			    "this host is the source of the vm's migration");
		return;
	}
	snprintf(msg, sizeof(msg), "the vm is on this host (%s)",
		 agent_vm_active(vm) ? "its canopy-vmm runs" :
				       "its canopy-vmm has stopped");
	agent_reply(ag, env->request_id, CN_OK, msg);
}

static void doubt_path(const struct agent_vm *vm, char *out, size_t n)
{
	snprintf(out, n, "%s/%s", vm->dir, MIG_DOUBT_FILE);
}

void agent_mig_doubt_forget(const struct agent_vm *vm)
{
	char path[AGENT_PATH_MAX + 32];

	doubt_path(vm, path, sizeof(path));
	(void)unlink(path);
}

static int doubt_resend(struct loop *l, uint64_t id, void *arg)
{
	struct agent_vm *vm = arg;

	(void)l;
	(void)id;
	if (!vm->mig->resolve)
		agent_mig_send_done(vm->ag, vm, CN_UNKNOWN, vm->mig->doubt,
				    NULL);
	return MIG_DOUBT_RESEND_MS;
}

void agent_mig_doubt_enter(struct agent *ag, struct agent_vm *vm,
			   const char *why,
			   const Canopy__V1__VmmMigrateResult *res)
{
	struct agent_mig *mg = vm->mig;
	char path[AGENT_PATH_MAX + 32];
	FILE *f;
	int err = 0;

	mg->in_doubt = 1;
	snprintf(mg->doubt, sizeof(mg->doubt), "%s", why);
	vm->state = RUN(MIGRATING);
	doubt_path(vm, path, sizeof(path));
	f = fopen(path, "we");
	if (!f || fprintf(f, "%s %s\n", mg->dst_host[0] ? mg->dst_host : "-",
			  mg->task_id[0] ? mg->task_id : "-") < 0)
		log_warn("agent", "cannot note the in-doubt migration", "vm=%s",
			 vm->id);
	if (f)
		fclose(f);
	if (mg->timer) /* no progress to relay any more */
		(void)loop_timer_del(ag->loop, mg->timer);
	mg->timer = loop_timer_add(ag->loop, MIG_DOUBT_RESEND_MS, doubt_resend,
				   vm, &err);
	if (!mg->timer)
		log_warn("agent", "in-doubt migration not repeated: no timer",
			 "vm=%s", vm->id);
	agent_mig_send_done(ag, vm, CN_UNKNOWN, why, res);
}

/* The destination and task of an adopted in-doubt VMM, from its note. */
static void doubt_read(struct agent_vm *vm)
{
	char path[AGENT_PATH_MAX + 32], dst[AGENT_VM_ID_MAX + 1] = "";
	char task[64] = "";
	FILE *f;

	doubt_path(vm, path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return;
	if (fscanf(f, "%63s %63s", dst, task) == 2) {
		if (strcmp(dst, "-") != 0)
			snprintf(vm->mig->dst_host, sizeof(vm->mig->dst_host),
				 "%s", dst);
		if (strcmp(task, "-") != 0)
			snprintf(vm->mig->task_id, sizeof(vm->mig->task_id),
				 "%s", task);
	}
	fclose(f);
}

void agent_migrate_adopt_doubt(struct agent *ag, struct agent_vm *vm,
			       const Canopy__V1__VmmStatus *st)
{
	char why[512];

	if (!st->migration || !st->migration->phase ||
	    strcmp(st->migration->phase, "in_doubt") != 0 || vm->mig)
		return;
	vm->mig = calloc(1, sizeof(*vm->mig));
	if (!vm->mig) {
		log_error("agent", "in-doubt migration not tracked: no memory",
			  "vm=%s", vm->id);
		return;
	}
	doubt_read(vm);
	snprintf(why, sizeof(why), "migration in doubt: %.400s",
		 st->migration->error ? st->migration->error : "");
	log_warn("agent", "adopted a vmm whose migration is in doubt",
		 "vm=%s dst=%s why=\"%s\"", vm->id, vm->mig->dst_host, why);
	agent_mig_doubt_enter(ag, vm, why, NULL);
}
