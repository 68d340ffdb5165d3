/* canopy-agent: vMotion on a host: the receiving VMM (destination) and the
 * migrate_send call with progress relayed to the manager (source). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/agent/agent.h"
#include "host/agent/migrate_mig.h"
#include "host/agent/vmmctl.h"
#include "lib/bus.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"

/* How often the destination looks for the VMM's listen line, and for how
 * long; how often it then asks whether the VM runs (commit happened). */
#define MIG_LISTEN_POLL_MS 5
#define MIG_LISTEN_WAIT_MS 5000
#define MIG_RUN_POLL_MS 50
/* How often the source relays the VMM's progress. */
#define MIG_PROGRESS_MS 250
/* The migrate_send control call: the VMM's own limit is 120 s of pre-copy
 * plus stop-and-copy; the agent waits at most this long for its answer. */
#define MIG_SEND_CALL_MS (5u * 60 * 1000)

void agent_mig_free(struct agent *ag, struct agent_vm *vm)
{
	struct agent_mig *mg = vm->mig;

	if (!mg)
		return;
	if (mg->timer)
		(void)loop_timer_del(ag->loop, mg->timer);
	vmmctl_call_cancel(mg->call);
	vmmctl_call_cancel(mg->poll);
	vmmctl_call_cancel(mg->resolve);
	if (mg->resolve_rid) /* the VMM's answer will not come now */
		agent_reply(ag, mg->resolve_rid, CN_ABORTED,
			    "the source canopy-vmm exited before it answered "
			    "migrate_resolve");
	free(mg);
	vm->mig = NULL;
}

void agent_migrate_forget(struct agent *ag, struct agent_vm *vm)
{
	agent_mig_free(ag, vm);
}

int agent_migrate_busy(const struct agent_vm *vm)
{
	return vm->mig != NULL;
}

static void reply_ready(struct agent *ag, uint64_t rid, const char *addr)
{
	Canopy__V1__Envelope req = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__Envelope rep = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__MigrateReady r = CANOPY__V1__MIGRATE_READY__INIT;
	int rc;

	r.address = (char *)addr;
	rep.body_case = CANOPY__V1__ENVELOPE__BODY_MIGRATE_READY;
	rep.migrate_ready = &r;
	req.request_id = rid;
	rc = bus_client_reply(ag->bus, &req, &rep);
	if (rc < 0)
		log_warn("agent", "migrate ready not sent", "err=\"%s\"",
			 cn_strerror(rc));
}

/* Remove a VM the destination made and forget it (no report: the manager
 * never placed it here). */
static void incoming_drop(struct agent *ag, struct agent_vm *vm)
{
	int rc = agent_dir_remove(vm->dir);

	if (rc < 0 && rc != -ENOENT)
		log_warn("agent", "cannot remove an incoming vm's directory",
			 "vm=%s err=\"%s\"", vm->id, cn_strerror(rc));
	agent_vm_free(ag, vm);
}

/* No host certificate: the stream goes in plain TCP; say so once per
 * migration (docs/security.md). */
static void warn_plain(const struct agent *ag, const struct agent_vm *vm,
		       const char *side)
{
	if (agent_tls_ready(ag->opts.pki_dir))
		return;
	log_warn("agent",
		 "migration stream not encrypted: no host certificate in "
		 "--pki-dir",
		 "vm=%s side=%s pki_dir=%s", vm->id, side,
		 ag->opts.pki_dir ? ag->opts.pki_dir : "(none)");
}

/* ---- destination --------------------------------------------------- */

/* INCOMING_MARKER in the VM's directory holds the receiving VMM's pid
 * until it runs the VM: a restarted agent finds the receiver with it. */
#define INCOMING_MARKER "incoming.pid"

static void marker_path(const struct agent_vm *vm, char *out, size_t n)
{
	snprintf(out, n, "%s/%s", vm->dir, INCOMING_MARKER);
}

static void marker_write(const struct agent_vm *vm)
{
	char path[AGENT_PATH_MAX + 32];
	FILE *f;

	marker_path(vm, path, sizeof(path));
	f = fopen(path, "we");
	if (!f || fprintf(f, "%d\n", (int)vm->pid) < 0)
		log_warn("agent", "cannot write the incoming marker", "vm=%s",
			 vm->id);
	if (f)
		fclose(f);
}

static void marker_remove(const struct agent_vm *vm)
{
	char path[AGENT_PATH_MAX + 32];

	marker_path(vm, path, sizeof(path));
	(void)unlink(path);
}

/* Did the receiver make its run marker (it may have run a vCPU)? */
static int ran_marker(const struct agent_vm *vm)
{
	char path[AGENT_PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/%s", vm->dir, AGENT_MIG_RAN_FILE);
	return access(path, F_OK) == 0;
}

/* A stale run marker goes before a new receiver starts: only its own
 * may be there when it exits (and the jailed VMM could not replace one
 * owned by another uid in the sticky directory). */
static int ran_marker_clear(const struct agent_vm *vm, char *msg, size_t len)
{
	char path[AGENT_PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/%s", vm->dir, AGENT_MIG_RAN_FILE);
	if (unlink(path) == 0 || errno == ENOENT)
		return 0;
	snprintf(msg, len, "cannot remove the stale run marker %.300s: %s",
		 path, strerror(errno));
	return -errno;
}

/* Find "listen=HOST:PORT" in this run's vmm.log: the port, or 0. */
static int listen_port(struct agent_vm *vm)
{
	char path[AGENT_PATH_MAX + 16], buf[4096], *p;
	FILE *f;
	int port = 0;

	snprintf(path, sizeof(path), "%s/vmm.log", vm->dir);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fseeko(f, (off_t)vm->log_mark, SEEK_SET) == 0)
		while (!port && fgets(buf, sizeof(buf), f)) {
			p = strstr(buf, "listen=");
			p = p ? strrchr(p, ':') : NULL;
			if (p)
				port = atoi(p + 1);
		}
	fclose(f);
	return port > 0 && port < 65536 ? port : 0;
}

static void run_status(void *arg, int status, const Canopy__V1__VmmReply *rep)
{
	struct agent_vm *vm = arg;
	struct agent *ag = vm->ag;

	vm->mig->poll = NULL;
	if (status < 0 || vmmctl_code(rep) != 0 || !rep->vm_status)
		return; /* no control socket yet: not committed */
	if (rep->vm_status->state !=
		    CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING &&
	    rep->vm_status->state !=
		    CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_PAUSED)
		return;
	log_info("agent", "migrated vm runs here", "vm=%s pid=%d", vm->id,
		 (int)vm->pid);
	marker_remove(vm);
	agent_mig_free(ag, vm); /* an ordinary VM of this host from now on */
	agent_vm_status_apply(vm, rep->vm_status);
	agent_vm_report(ag, vm);
}

static int run_poll(struct loop *l, uint64_t id, void *arg)
{
	struct agent_vm *vm = arg;
	Canopy__V1__VmmRequest req = CANOPY__V1__VMM_REQUEST__INIT;
	Canopy__V1__VmmStatusRequest st = CANOPY__V1__VMM_STATUS_REQUEST__INIT;

	(void)l;
	(void)id;
	if (!vm->mig->poll) {
		req.op_case = CANOPY__V1__VMM_REQUEST__OP_STATUS;
		req.status = &st;
		if (vmmctl_call_start(vm->ag->loop, vm->dir, &req,
				      AGENT_STATUS_TIMEOUT_MS, run_status, vm,
				      &vm->mig->poll) < 0)
			vm->mig->poll = NULL; /* not listening yet */
	}
	return MIG_RUN_POLL_MS;
}

static int listen_poll(struct loop *l, uint64_t id, void *arg)
{
	struct agent_vm *vm = arg;
	struct agent_mig *mg = vm->mig;
	char tail[600], msg[800];
	int port = listen_port(vm);

	(void)id;
	if (port) {
		snprintf(mg->addr + strlen(mg->addr),
			 sizeof(mg->addr) - strlen(mg->addr), "%d", port);
		log_info("agent", "incoming migration listens", "vm=%s addr=%s",
			 vm->id, mg->addr);
		reply_ready(vm->ag, mg->reply_id, mg->addr);
		mg->reply_id = 0;
		return MIG_RUN_POLL_MS; /* now: wait for the VM to run */
	}
	if (loop_now_ms(l) < mg->deadline_ms)
		return MIG_LISTEN_POLL_MS;
	agent_log_tail(vm->dir, vm->log_mark, tail, sizeof(tail));
	snprintf(msg, sizeof(msg),
		 "the receiving canopy-vmm did not listen within %u ms; its "
		 "log ends: %s",
		 MIG_LISTEN_WAIT_MS, tail[0] ? tail : "(empty)");
	agent_reply(vm->ag, mg->reply_id, CN_INTERNAL, msg);
	mg->reply_id = 0;
	mg->timer = 0;
	agent_vmm_kill(vm); /* the exit drops the VM */
	return LOOP_TIMER_STOP;
}

static int timer_swap(struct loop *l, uint64_t id, void *arg);

/* Our address for the source: --address without a port, else loopback. */
static void own_addr(struct agent *ag, char *out, size_t n)
{
	const char *a = ag->opts.address;
	size_t len = a ? strcspn(a, ":") : 0;

	if (!len)
		snprintf(out, n, "tcp:127.0.0.1:");
	else
		snprintf(out, n, "tcp:%.*s:", (int)CN_MIN(len, (size_t)60), a);
}

/* Make the VM's directory and spec; 0 or -errno with msg. */
static int incoming_make(struct agent *ag, const Canopy__V1__MigrateIncoming *r,
			 struct agent_vm **out, char *msg, size_t len)
{
	char dir[AGENT_PATH_MAX + AGENT_VM_ID_MAX + 2];
	char path[sizeof(dir) + 16];
	Canopy__V1__VmSpec *spec = NULL;
	int rc;

	snprintf(dir, sizeof(dir), "%s/%.*s", ag->vms_dir, AGENT_VM_ID_MAX,
		 r->vm_id);
	if (agent_vm_find(ag, r->vm_id) || mkdir(dir, 0700) < 0) {
		snprintf(msg, len,
			 "VM %s already exists on this host; delete it there "
			 "first",
			 r->vm_id);
		return -EEXIST;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, AGENT_SPEC_FILE);
	rc = agent_spec_save(path, r->spec);
	if (rc == 0)
		rc = agent_spec_load(path, &spec, msg, len);
	if (rc == 0)
		rc = agent_vm_add(ag, r->vm_id, spec, out);
	if (rc < 0) {
		if (spec && !*out)
			canopy__v1__vm_spec__free_unpacked(spec, NULL);
		snprintf(msg, len, "cannot store the spec of %s: %s", r->vm_id,
			 cn_strerror(rc));
		if (agent_dir_remove(dir) < 0)
			log_warn("agent", "cannot remove a directory",
				 "dir=%.300s", dir);
	}
	return rc;
}

/* Every disk must be on a datastore: the VM's files are shared. */
static int disks_shared(const Canopy__V1__VmSpec *spec, char *msg, size_t len)
{
	char name[AGENT_VM_ID_MAX + 1];
	const char *file;

	for (size_t i = 0; i < spec->n_disks; i++)
		if (agent_ds_path_split(spec->disks[i]->path, name,
					sizeof(name), &file) != 1) {
			snprintf(msg, len,
				 "disk %zu (%.200s) is not on a datastore: "
				 "live migration moves only VMs whose disks "
				 "are on a shared datastore",
				 i, spec->disks[i]->path);
			return -EINVAL;
		}
	return 0;
}

static int incoming_spawn(struct agent *ag, struct agent_vm *vm, char *msg,
			  size_t len)
{
	int rc = ran_marker_clear(vm, msg, len), err = 0;

	rc = rc ?: agent_vm_ds_assign(ag, vm, msg, len);
	if (rc < 0)
		return rc;
	rc = agent_vmm_spawn(ag, vm, msg, len);
	if (rc < 0) {
		agent_vm_ds_release(ag, vm);
		return rc;
	}
	vm->state = CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_MIGRATING;
	vm->reason[0] = '\0';
	marker_write(vm);
	vm->mig->deadline_ms = loop_now_ms(ag->loop) + MIG_LISTEN_WAIT_MS;
	vm->mig->timer = loop_timer_add(ag->loop, MIG_LISTEN_POLL_MS,
					timer_swap, vm, &err);
	if (!vm->mig->timer) {
		snprintf(msg, len, "cannot arm a timer");
		agent_vmm_kill(vm);
		return err ? err : -ENOMEM;
	}
	return 0;
}

/* The listen poll, then the run poll, through one timer. */
static int timer_swap(struct loop *l, uint64_t id, void *arg)
{
	struct agent_vm *vm = arg;

	if (vm->mig->reply_id)
		return listen_poll(l, id, arg);
	return run_poll(l, id, arg);
}

void agent_migrate_incoming(struct agent *ag, const Canopy__V1__Envelope *env)
{
	const Canopy__V1__MigrateIncoming *r = env->migrate_incoming;
	struct agent_vm *vm = NULL;
	char msg[600];
	int rc;

	/* validate */
	rc = agent_vm_id_check(r->vm_id, msg, sizeof(msg));
	if (rc == 0 && !r->spec) {
		snprintf(msg, sizeof(msg), "MigrateIncoming without a spec");
		rc = -EINVAL;
	}
	rc = rc ?: agent_spec_check(r->spec, msg, sizeof(msg));
	rc = rc ?: disks_shared(r->spec, msg, sizeof(msg));
	if (rc < 0) {
		agent_reply(ag, env->request_id, CN_INVALID_ARGUMENT, msg);
		return;
	}
	/* act */
	agent_migrate_exit_note(ag, r->vm_id, 0, 0); /* a new attempt */
	rc = incoming_make(ag, r, &vm, msg, sizeof(msg));
	if (rc < 0) {
		agent_reply(ag, env->request_id,
			    rc == -EEXIST ? CN_ALREADY_EXISTS :
					    cn_code_from_errno(rc),
			    msg);
		return;
	}
	vm->mig = calloc(1, sizeof(*vm->mig));
	if (!vm->mig) {
		incoming_drop(ag, vm);
		agent_reply(ag, env->request_id, CN_RESOURCE_EXHAUSTED,
			    "out of memory");
		return;
	}
	vm->mig->incoming = 1;
	vm->mig->reply_id = env->request_id;
	snprintf(vm->mig->task_id, sizeof(vm->mig->task_id), "%s",
		 r->task_id ? r->task_id : "");
	own_addr(ag, vm->mig->addr, sizeof(vm->mig->addr));
	warn_plain(ag, vm, "destination");
	rc = incoming_spawn(ag, vm, msg, sizeof(msg));
	if (rc < 0) {
		/* Nothing left behind before the answer goes out (a VMM that
		 * did start is killed: its exit drops the VM). */
		vm->mig->reply_id = 0;
		if (!agent_vm_active(vm))
			incoming_drop(ag, vm);
		agent_reply(ag, env->request_id,
			    rc == -EBADFD ? CN_FAILED_PRECONDITION :
					    cn_code_from_errno(rc),
			    msg);
	}
}

void agent_migrate_abort(struct agent *ag, const Canopy__V1__Envelope *env)
{
	const char *id = env->migrate_abort->vm_id;
	struct agent_vm *vm = id ? agent_vm_find(ag, id) : NULL;
	char path[AGENT_PATH_MAX + 16];

	if (!vm) {
		agent_reply(ag, env->request_id, CN_OK, "no such vm here");
		return;
	}
	snprintf(path, sizeof(path), "%s/control.sock", vm->dir);
	/* The control socket appears only once the VM runs (after COMMIT). */
	if (!vm->mig || !vm->mig->incoming || access(path, F_OK) == 0) {
		agent_reply(ag, env->request_id, CN_FAILED_PRECONDITION,
			    "the VM runs on this host: the migration had "
			    "already committed");
		return;
	}
	log_info("agent", "incoming migration aborted", "vm=%s", vm->id);
	if (agent_vm_active(vm))
		agent_vmm_kill(vm); /* the exit drops the VM */
	else
		incoming_drop(ag, vm);
	agent_reply(ag, env->request_id, CN_OK, "");
}

/* ---- source -------------------------------------------------------- */

void agent_mig_send_done(struct agent *ag, struct agent_vm *vm, int code,
			 const char *text,
			 const Canopy__V1__VmmMigrateResult *res)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__MigrateDone d = CANOPY__V1__MIGRATE_DONE__INIT;
	Canopy__V1__Status st = CANOPY__V1__STATUS__INIT;
	int rc;

	st.code = code;
	st.message = (char *)text;
	d.status = &st;
	d.task_id = vm->mig->task_id;
	d.vm_id = vm->id;
	if (vm->mig->in_doubt) {
		d.in_doubt = 1;
		d.dst_host_id = vm->mig->dst_host;
	}
	if (res) {
		d.downtime_ms = res->downtime_ms;
		d.total_ms = res->total_ms;
		d.bytes = res->bytes;
		d.rounds = res->rounds;
		d.throttle_pct = res->throttle_pct;
	}
	env.body_case = CANOPY__V1__ENVELOPE__BODY_MIGRATE_DONE;
	env.migrate_done = &d;
	rc = bus_client_send(ag->bus, &env);
	log_info("agent", "migration done", "vm=%s code=%s msg=\"%s\" sent=%d",
		 vm->id, cn_code_name((enum cn_code)code), text, rc == 0);
}

static void progress_status(void *arg, int status,
			    const Canopy__V1__VmmReply *rep)
{
	struct agent_vm *vm = arg;
	const Canopy__V1__MigrationProgress *p;
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__MigrateProgress mp = CANOPY__V1__MIGRATE_PROGRESS__INIT;

	vm->mig->poll = NULL;
	if (status < 0 || vmmctl_code(rep) != 0 || !rep->vm_status ||
	    !rep->vm_status->migration)
		return;
	p = rep->vm_status->migration;
	mp.task_id = vm->mig->task_id;
	mp.vm_id = vm->id;
	mp.phase = p->phase;
	mp.round = p->round;
	mp.remaining_mib = p->remaining_mib;
	mp.dirty_rate_mib_s = p->dirty_rate_mib_s;
	mp.bandwidth_mib_s = p->bandwidth_mib_s;
	mp.expected_downtime_ms = p->expected_downtime_ms;
	mp.throttle_pct = p->throttle_pct;
	mp.transferred_mib = p->transferred_mib;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_MIGRATE_PROGRESS;
	env.migrate_progress = &mp;
	if (bus_client_send(vm->ag->bus, &env) < 0)
		log_debug("agent", "migrate progress not sent", "vm=%s",
			  vm->id);
}

static int progress_poll(struct loop *l, uint64_t id, void *arg)
{
	struct agent_vm *vm = arg;
	Canopy__V1__VmmRequest req = CANOPY__V1__VMM_REQUEST__INIT;
	Canopy__V1__VmmStatusRequest st = CANOPY__V1__VMM_STATUS_REQUEST__INIT;

	(void)id;
	if (!vm->mig->poll) {
		req.op_case = CANOPY__V1__VMM_REQUEST__OP_STATUS;
		req.status = &st;
		if (vmmctl_call_start(l, vm->dir, &req, AGENT_STATUS_TIMEOUT_MS,
				      progress_status, vm, &vm->mig->poll) < 0)
			vm->mig->poll = NULL; /* the next tick tries again */
	}
	return MIG_PROGRESS_MS;
}

static void send_reply(void *arg, int status, const Canopy__V1__VmmReply *rep)
{
	struct agent_vm *vm = arg;
	struct agent *ag = vm->ag;
	char msg[800];

	vm->mig->call = NULL;
	if (status == 0 && rep->migrated && rep->migrated->in_doubt) {
		/* The VMM holds the VM paused until MigrateResolve. */
		agent_mig_doubt_enter(ag, vm, vmmctl_message(rep),
				      rep->migrated);
		return;
	}
	if (status == 0 && vmmctl_code(rep) == 0 && rep->migrated) {
		agent_mig_send_done(ag, vm, CN_OK, "", rep->migrated);
		vm->mig->committed = 1;
		if (vm->mig->exited) /* its exit came first */
			(void)agent_migrate_exited(ag, vm);
		return;
	}
	if (status < 0)
		snprintf(msg, sizeof(msg),
			 "the control call to the source canopy-vmm failed: "
			 "%s",
			 cn_strerror(status));
	else
		snprintf(msg, sizeof(msg), "%.700s", vmmctl_message(rep));
	agent_mig_send_done(ag, vm, status < 0 ? CN_UNAVAILABLE : CN_ABORTED,
			    msg, NULL);
	if (vm->mig->exited) { /* died during the migration: a crash */
		agent_mig_free(ag, vm);
		agent_power_exited(ag, vm);
		agent_vm_report(ag, vm);
		return;
	}
	agent_mig_free(ag, vm);
	vm->state = CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING;
}

static int send_start(struct agent *ag, struct agent_vm *vm,
		      const Canopy__V1__MigrateSend *r)
{
	Canopy__V1__VmmRequest req = CANOPY__V1__VMM_REQUEST__INIT;
	Canopy__V1__VmmMigrateSendRequest ms =
		CANOPY__V1__VMM_MIGRATE_SEND_REQUEST__INIT;
	int rc, err = 0;

	ms.address = r->address;
	/* With TLS the VMM checks the destination's certificate names its
	 * host (a VMM started without credentials refuses a name). */
	if (agent_tls_ready(ag->opts.pki_dir) && r->dst_host_id &&
	    *r->dst_host_id)
		ms.tls_name = r->dst_host_id;
	ms.max_downtime_ms = r->max_downtime_ms;
	ms.bandwidth_limit_mib_s = r->bandwidth_limit_mib_s;
	req.op_case = CANOPY__V1__VMM_REQUEST__OP_MIGRATE_SEND;
	req.migrate_send = &ms;
	rc = vmmctl_call_start(ag->loop, vm->dir, &req, MIG_SEND_CALL_MS,
			       send_reply, vm, &vm->mig->call);
	if (rc < 0)
		return rc;
	vm->mig->timer = loop_timer_add(ag->loop, MIG_PROGRESS_MS,
					progress_poll, vm, &err);
	if (!vm->mig->timer)
		log_warn("agent", "no migration progress: no timer", "vm=%s",
			 vm->id);
	return 0;
}

/* How the stream to r's destination is protected, for the log. */
static const char *tls_desc(const struct agent *ag,
			    const Canopy__V1__MigrateSend *r)
{
	if (!agent_tls_ready(ag->opts.pki_dir))
		return "none";
	return r->dst_host_id && *r->dst_host_id ? r->dst_host_id :
						   "(any cluster host)";
}

/* Why vm cannot be sent now (NULL: it can). */
static const char *send_refusal(const struct agent_vm *vm)
{
	if (!agent_vm_active(vm) ||
	    vm->state != CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING)
		return "the VM is not running on this host";
	if (vm->op || vm->op_call || vm->mig)
		return "the VM is busy with another command or migration; "
		       "retry when that is done";
	return NULL;
}

void agent_migrate_send(struct agent *ag, const Canopy__V1__Envelope *env)
{
	const Canopy__V1__MigrateSend *r = env->migrate_send;
	struct agent_vm *vm;
	const char *why;
	char msg[600];
	int rc;

	/* validate */
	if (agent_vm_id_check(r->vm_id, msg, sizeof(msg)) < 0 || !r->address ||
	    strncmp(r->address, "tcp:", 4) != 0 || strlen(r->address) > 80) {
		agent_reply(ag, env->request_id, CN_INVALID_ARGUMENT,
			    "MigrateSend needs a vm id and a tcp:HOST:PORT "
			    "address");
		return;
	}
	vm = agent_vm_find(ag, r->vm_id);
	why = vm ? send_refusal(vm) : "the VM does not exist on this host";
	if (why) {
		agent_reply(ag, env->request_id,
			    vm ? CN_FAILED_PRECONDITION : CN_NOT_FOUND, why);
		return;
	}
	/* act */
	vm->mig = calloc(1, sizeof(*vm->mig));
	if (!vm->mig) {
		agent_reply(ag, env->request_id, CN_RESOURCE_EXHAUSTED,
			    "out of memory");
		return;
	}
	snprintf(vm->mig->task_id, sizeof(vm->mig->task_id), "%s",
		 r->task_id ? r->task_id : "");
	snprintf(vm->mig->dst_host, sizeof(vm->mig->dst_host), "%s",
		 r->dst_host_id ? r->dst_host_id : "");
	rc = send_start(ag, vm, r);
	if (rc < 0) {
		agent_mig_free(ag, vm);
		snprintf(msg, sizeof(msg),
			 "cannot reach the VM's canopy-vmm: %s",
			 cn_strerror(rc));
		agent_reply(ag, env->request_id, cn_code_from_errno(rc), msg);
		return;
	}
	log_info("agent", "migration started",
		 "vm=%s to=%s max_downtime=%u tls=%s", vm->id, r->address,
		 r->max_downtime_ms, tls_desc(ag, r));
	warn_plain(ag, vm, "source");
	vm->state = CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_MIGRATING;
	agent_reply(ag, env->request_id, CN_OK, "");
}

/* A receiving VMM exited without the VM: note how (its status and run
 * marker, read before the directory goes), drop the VM, answer. */
static void incoming_exited(struct agent *ag, struct agent_vm *vm)
{
	uint64_t rid = vm->mig->reply_id;
	char tail[600], msg[800];
	int ran = ran_marker(vm);

	if (rid) {
		agent_log_tail(vm->dir, vm->log_mark, tail, sizeof(tail));
		snprintf(msg, sizeof(msg),
			 "the receiving canopy-vmm exited: %s",
			 tail[0] ? tail : vm->reason);
	}
	log_info("agent", "incoming migration ended without the vm",
		 "vm=%s reason=\"%s\" status=%d ran_marker=%d", vm->id,
		 vm->reason, vm->exit_status, ran);
	agent_migrate_exit_note(ag, vm->id, vm->exit_status, ran);
	incoming_drop(ag, vm); /* before the answer: nothing left */
	if (rid)
		agent_reply(ag, rid, CN_INTERNAL, msg);
}

int agent_migrate_exited(struct agent *ag, struct agent_vm *vm)
{
	struct agent_mig *mg = vm->mig;
	int rc;

	if (!mg)
		return 0;
	if (mg->incoming) {
		incoming_exited(ag, vm);
		return 1;
	}
	if (mg->in_doubt && !mg->resolve_migrated) {
		/* Powered off by MigrateResolve, or killed or crashed while
		 * in doubt: it is off here. */
		if (mg->resolve_power_off && mg->resolve_rid) {
			agent_reply(ag, mg->resolve_rid, CN_OK,
				    "the source canopy-vmm powered the vm off");
			mg->resolve_rid = 0;
		}
		log_warn("agent", "source vmm exited while in doubt",
			 "vm=%s reason=\"%s\" power_off=%d", vm->id, vm->reason,
			 mg->resolve_power_off);
		agent_mig_doubt_forget(vm);
		agent_mig_free(ag, vm);
		agent_power_exited(ag, vm);
		agent_vm_report(ag, vm);
		return 1;
	}
	if (!mg->committed && !mg->resolve_migrated) {
		mg->exited = 1; /* send_reply decides */
		return 1;
	}
	if (mg->resolve_rid) { /* its exit came before its answer */
		agent_reply(ag, mg->resolve_rid, CN_OK,
			    "the source canopy-vmm stopped as migrated");
		mg->resolve_rid = 0;
	}
	/* Migrated: the VM lives on the destination now; not a crash. The
	 * line is logged once its directory is gone. */
	rc = agent_dir_remove(vm->dir);
	if (rc < 0 && rc != -ENOENT)
		log_warn("agent", "cannot remove a migrated vm's directory",
			 "vm=%s err=\"%s\"", vm->id, cn_strerror(rc));
	log_info("agent", "vm migrated away; forgetting it", "vm=%s", vm->id);
	agent_vm_free(ag, vm);
	return 1;
}

/* Every VMM of a host with a certificate gets the TLS options: it may be
 * the destination now or the source of a migration later (the VMM reads
 * them at start, before its jail). A receiver gets --incoming too. */
int agent_migrate_argv(const struct agent_vm *vm, struct agent_argv *av)
{
	char arg[96];
	int rc = agent_vmm_argv_tls(vm->ag->opts.pki_dir, av);

	if (rc < 0)
		return rc;
	if (!vm->mig || !vm->mig->incoming)
		return 0;
	snprintf(arg, sizeof(arg), "%s0", vm->mig->addr);
	rc = agent_argv_add(av, "--incoming");
	return rc ?: agent_argv_add(av, arg);
}

int agent_migrate_dispatch(struct agent *ag, const Canopy__V1__Envelope *env)
{
	void (*fn)(struct agent *, const Canopy__V1__Envelope *);

	switch (env->body_case) {
	case CANOPY__V1__ENVELOPE__BODY_MIGRATE_INCOMING:
		fn = agent_migrate_incoming;
		break;
	case CANOPY__V1__ENVELOPE__BODY_MIGRATE_SEND:
		fn = agent_migrate_send;
		break;
	case CANOPY__V1__ENVELOPE__BODY_MIGRATE_ABORT:
		fn = agent_migrate_abort;
		break;
	case CANOPY__V1__ENVELOPE__BODY_MIGRATE_RESOLVE:
		fn = agent_migrate_resolve;
		break;
	case CANOPY__V1__ENVELOPE__BODY_MIGRATE_PROBE:
		fn = agent_migrate_probe;
		break;
	default:
		return 0;
	}
	if (!env->request_id) {
		if (agent_bad_log_ok(ag))
			log_warn("agent", "migration message refused",
				 "why=\"not a request (request_id 0)\"");
		return 1;
	}
	fn(ag, env);
	return 1;
}

/* The pid in vm's marker if it is a canopy-vmm working in vm's directory
 * (not a recycled pid), else 0. */
static pid_t marker_pid(const struct agent_vm *vm)
{
	char path[AGENT_PATH_MAX + 32], cwd[AGENT_PATH_MAX + 1];
	FILE *f;
	ssize_t n;
	int pid = 0;

	marker_path(vm, path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%d", &pid) != 1 || pid <= 1)
		pid = 0;
	fclose(f);
	if (!pid)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/cwd", pid);
	n = readlink(path, cwd, sizeof(cwd) - 1);
	if (n <= 0)
		return 0;
	cwd[n] = '\0';
	return strcmp(cwd, vm->dir) == 0 ? (pid_t)pid : 0;
}

int agent_migrate_reattach(struct agent *ag, struct agent_vm *vm)
{
	char path[AGENT_PATH_MAX + 32];
	pid_t pid;
	int err = 0;

	marker_path(vm, path, sizeof(path));
	if (access(path, F_OK) != 0)
		return 0;
	pid = marker_pid(vm);
	vm->mig = pid ? calloc(1, sizeof(*vm->mig)) : NULL;
	if (!vm->mig || agent_vmm_watch(ag, vm, pid, 0) < 0) {
		/* The receiver is gone and the VM is not ours; its run marker
		 * says whether it may have run it (MigrateProbe). */
		int ran = ran_marker(vm);

		log_info("agent", "leftover incoming migration removed",
			 "vm=%s ran_marker=%d", vm->id, ran);
		agent_migrate_exit_note(ag, vm->id, -1, ran);
		free(vm->mig);
		vm->mig = NULL;
		incoming_drop(ag, vm);
		return 1;
	}
	vm->mig->incoming = 1;
	own_addr(ag, vm->mig->addr, sizeof(vm->mig->addr));
	agent_vm_ds_restore(ag, vm);
	vm->state = CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_MIGRATING;
	vm->mig->timer =
		loop_timer_add(ag->loop, MIG_RUN_POLL_MS, timer_swap, vm, &err);
	log_info("agent", "incoming migration re-attached", "vm=%s pid=%d",
		 vm->id, (int)pid);
	return 1;
}
