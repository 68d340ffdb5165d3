/* canopy-managerd: agent bus callbacks: register, heartbeats, reports. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bus.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"
#include "manager/hosts.h"
#include "manager/manager.h"
#include "manager/migrate.h"
#include "manager/tasks.h"
#include "vmotion/stream.h"

/* Limits on what an agent may register. */
#define MGR_REG_STR_MAX 255
#define MGR_REG_LIST_MAX 64
/* Longest stop reason kept from a VM report. */
#define MGR_REASON_MAX 512

void mgr_bus_reply_status(struct manager *m, const char *host,
			  const Canopy__V1__Envelope *req, enum cn_code code,
			  const char *msg)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__CommandResult res = CANOPY__V1__COMMAND_RESULT__INIT;
	Canopy__V1__Status st = CANOPY__V1__STATUS__INIT;

	if (!req->request_id || !m->bus)
		return;
	st.code = code;
	st.message = (char *)msg;
	res.status = &st;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_RESULT;
	env.result = &res;
	if (bus_server_reply(m->bus, host, req, &env))
		log_debug("manager", "bus reply not sent", "host=%s", host);
}

static int list_ok(char **v, size_t n)
{
	size_t i;

	if (n > MGR_REG_LIST_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!v[i] || strlen(v[i]) > MGR_REG_STR_MAX)
			return 0;
	return 1;
}

/* Validate a registration; NULL if fine, else what is wrong. */
static const char *register_check(const Canopy__V1__AgentRegister *r)
{
	if (!r->hostname || !*r->hostname ||
	    strlen(r->hostname) > MGR_REG_STR_MAX)
		return "hostname must be 1..255 characters";
	if (r->cpus == 0 || r->cpus > 65536)
		return "cpus must be 1..65536";
	if (r->memory_mib == 0)
		return "memory_mib must be > 0";
	if (strlen(r->version) > MGR_REG_STR_MAX ||
	    strlen(r->address) > MGR_REG_STR_MAX)
		return "version and address must be at most 255 characters";
	if (!list_ok(r->datastores, r->n_datastores) ||
	    !list_ok(r->nics, r->n_nics))
		return "at most 64 nics and datastores of 255 characters";
	if (r->n_cpu_features != 0 && r->n_cpu_features != MIG_CPU_FEATS)
		return "cpu_features must have 0 or 8 values";
	return NULL;
}

static int copy_list(char ***dst, size_t *n_dst, char **src, size_t n)
{
	size_t i;

	*dst = n ? calloc(n, sizeof(char *)) : NULL;
	*n_dst = 0;
	if (n && !*dst)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		(*dst)[i] = mgr_strdup(src[i]);
		if (!(*dst)[i])
			return -ENOMEM;
		(*n_dst)++;
	}
	return 0;
}

static int copy_features(Canopy__V1__Host *h,
			 const Canopy__V1__AgentRegister *r)
{
	if (!r->n_cpu_features)
		return 0;
	h->cpu_features = calloc(r->n_cpu_features, sizeof(uint32_t));
	if (!h->cpu_features)
		return -ENOMEM;
	memcpy(h->cpu_features, r->cpu_features,
	       r->n_cpu_features * sizeof(uint32_t));
	h->n_cpu_features = r->n_cpu_features;
	return 0;
}

static Canopy__V1__Host *host_from_register(const char *id,
					    const Canopy__V1__AgentRegister *r)
{
	Canopy__V1__Host *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	canopy__v1__host__init(h);
	h->state = CANOPY__V1__HOST_STATE__HOST_STATE_CONNECTED;
	h->cpus = r->cpus;
	h->memory_mib = r->memory_mib;
	h->last_seen_unix_ms = mgr_unix_ms();
	if (mgr_set_str(&h->id, id) || mgr_set_str(&h->hostname, r->hostname) ||
	    mgr_set_str(&h->address, r->address) ||
	    mgr_set_str(&h->version, r->version) ||
	    copy_list(&h->datastores, &h->n_datastores, r->datastores,
		      r->n_datastores) ||
	    copy_features(h, r)) {
		canopy__v1__host__free_unpacked(h, NULL);
		return NULL;
	}
	return h;
}

static void on_register(struct manager *m, const char *id,
			const Canopy__V1__Envelope *env)
{
	const char *bad = register_check(env->register_);
	Canopy__V1__Host *rec;
	struct mgr_host *h;

	if (bad) {
		log_warn("manager", "registration refused",
			 "host=%s why=\"%s\"", id, bad);
		mgr_bus_reply_status(m, id, env, CN_INVALID_ARGUMENT, bad);
		return;
	}
	rec = host_from_register(id, env->register_);
	if (!rec) {
		mgr_bus_reply_status(m, id, env, CN_RESOURCE_EXHAUSTED,
				     "out of memory");
		return;
	}
	h = mgr_host_find(m, id);
	if (h) {
		rec->memory_used_mib = h->rec->memory_used_mib;
		canopy__v1__host__free_unpacked(h->rec, NULL);
		h->rec = rec;
	} else if (!(h = mgr_host_add(m, rec))) {
		canopy__v1__host__free_unpacked(rec, NULL);
		mgr_bus_reply_status(m, id, env, CN_RESOURCE_EXHAUSTED,
				     "out of memory");
		return;
	}
	h->up = true;
	if (mgr_host_save(m, h)) {
		mgr_bus_reply_status(
			m, id, env, CN_UNAVAILABLE,
			"the manager cannot store the host; retry");
		return;
	}
	log_info("manager", "host registered",
		 "host=%s cpus=%u memory_mib=%llu", id, rec->cpus,
		 (unsigned long long)rec->memory_mib);
	mgr_event(m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_INFO,
		  "host.connected", id, "",
		  "host %s registered (%u cpus, %llu MiB)", id, rec->cpus,
		  (unsigned long long)rec->memory_mib);
	mgr_bus_reply_status(m, id, env, CN_OK, "");
}

/* host reports vm RUNNING, its record places it on another host and no
 * task decides: a warning event naming both (once a while per VM: the
 * report repeats). What the report does is unchanged (nothing). */
static void warn_elsewhere(struct manager *m, const char *host,
			   const Canopy__V1__Vm *vm)
{
	struct mgr_elsewhere *e = &m->elsewhere[0];
	uint64_t now = loop_now_ms(m->l) ?: 1;
	char object[MGR_KEY_MAX + 8], src[MGR_KEY_MAX], dst[MGR_KEY_MAX];

	/* an in-doubt migration to host being resolved records it there */
	if (mgr_migrate_orphan_find(m, vm->id, src, dst) &&
	    strcmp(src, vm->host) == 0 && strcmp(dst, host) == 0)
		return;
	for (unsigned i = 0; i < MGR_ELSEWHERE_SEEN; i++) {
		if (m->elsewhere[i].warned_ms &&
		    strcmp(m->elsewhere[i].vm, vm->id) == 0) {
			e = &m->elsewhere[i];
			break;
		}
		if (m->elsewhere[i].warned_ms < e->warned_ms)
			e = &m->elsewhere[i];
	}
	if (e->warned_ms && strcmp(e->vm, vm->id) == 0 &&
	    now - e->warned_ms < MGR_ELSEWHERE_WARN_MS)
		return;
	snprintf(e->vm, sizeof(e->vm), "%s", vm->id);
	e->warned_ms = now;
	snprintf(object, sizeof(object), "vm/%s", vm->id);
	mgr_event(m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_WARNING,
		  "vm.running_elsewhere", object, "",
		  "host %s reports vm %s running but its record places it on "
		  "host %s: two copies may run; check both hosts",
		  host, vm->id, vm->host);
	log_warn("manager", "vm reported running on a host not its own",
		 "vm=%s host=%s recorded=%s", vm->id, host, vm->host);
}

/* A VM state report from host: update the VM's runtime state. */
static void on_vm_report(struct manager *m, const char *host,
			 const Canopy__V1__VmStateReport *r)
{
	char key[MGR_KEY_MAX], reason[MGR_REASON_MAX + 1];
	Canopy__V1__Vm *vm = NULL;
	int rc;

	if (r->state < 0 ||
	    r->state > CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_MIGRATING ||
	    mgr_key_join(key, sizeof(key), MGR_PREFIX_VMS, MGR_NAME_VM,
			 r->vm_id)) {
		log_warn("manager", "vm report refused: bad vm id or state",
			 "host=%s state=%d", host, (int)r->state);
		return;
	}
	mgr_migrate_on_report(m, host, r); /* may record a migration first */
	snprintf(reason, sizeof(reason), "%s", r->stop_reason); /* capped */
	rc = mgr_get_msg(m, key, &canopy__v1__vm__descriptor,
			 (ProtobufCMessage **)&vm);
	if (rc) {
		if (rc == -ENOENT)
			log_warn("manager", "report for an unknown vm",
				 "host=%s vm=%s", host, r->vm_id);
		return;
	}
	if (mgr_vm_busy(m, r->vm_id))
		goto out; /* a task decides its state */
	if (strcmp(vm->host, host) != 0) {
		if (r->state == CANOPY__V1__VM_RUN_STATE__VM_RUN_STATE_RUNNING)
			warn_elsewhere(m, host, vm);
		goto out; /* not its host */
	}
	if (vm->state == r->state && vm->rss_bytes == r->rss_bytes &&
	    strcmp(vm->stop_reason, reason) == 0)
		goto out;
	vm->state = r->state;
	vm->rss_bytes = r->rss_bytes;
	if (mgr_set_str(&vm->stop_reason, reason) == 0 &&
	    mgr_vm_save(m, vm, NULL))
		log_warn("manager", "cannot store vm state", "vm=%s", vm->id);
out:
	canopy__v1__vm__free_unpacked(vm, NULL);
}

static void on_stats(struct manager *m, struct mgr_host *h,
		     const Canopy__V1__HostStats *st)
{
	size_t i;

	h->rec->memory_used_mib = st->memory_used_mib;
	h->rec->last_seen_unix_ms = mgr_unix_ms();
	if (mgr_host_save(m, h))
		return;
	for (i = 0; i < st->n_vms && m->leader; i++)
		if (st->vms[i])
			on_vm_report(m, h->rec->id, st->vms[i]);
}

static void on_message(void *arg, const char *id,
		       const Canopy__V1__Envelope *env)
{
	struct manager *m = arg;
	struct mgr_host *h;

	if (!m->leader)
		return;
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_REGISTER) {
		on_register(m, id, env);
		return;
	}
	h = mgr_host_find(m, id);
	if (!h) {
		mgr_bus_reply_status(m, id, env, CN_FAILED_PRECONDITION,
				     "unknown host: send AgentRegister first");
		return;
	}
	switch (env->body_case) {
	case CANOPY__V1__ENVELOPE__BODY_HOST_STATS:
		on_stats(m, h, env->host_stats);
		break;
	case CANOPY__V1__ENVELOPE__BODY_VM_STATE:
		on_vm_report(m, id, env->vm_state);
		break;
	case CANOPY__V1__ENVELOPE__BODY_IMAGE_PROGRESS:
		mgr_image_progress(m, id, env->image_progress);
		break;
	case CANOPY__V1__ENVELOPE__BODY_IMAGE_DONE:
		mgr_image_done(m, id, env->image_done);
		break;
	case CANOPY__V1__ENVELOPE__BODY_MIGRATE_PROGRESS:
		mgr_migrate_on_progress(m, id, env->migrate_progress);
		break;
	case CANOPY__V1__ENVELOPE__BODY_MIGRATE_DONE:
		mgr_migrate_on_done(m, id, env->migrate_done);
		break;
	default:
		mgr_bus_reply_status(m, id, env, CN_INVALID_ARGUMENT,
				     "the manager does not take this message");
	}
}

static void on_heartbeat(void *arg, const char *id,
			 const Canopy__V1__AgentHeartbeat *hb)
{
	struct manager *m = arg;
	struct mgr_host *h = m->leader ? mgr_host_find(m, id) : NULL;

	if (!h)
		return;
	h->rec->last_seen_unix_ms = mgr_unix_ms();
	if (sys_mono_ms() - h->last_write_ms >= MGR_LAST_SEEN_WRITE_MS &&
	    mgr_host_save(m, h))
		return; /* logged; the next heartbeat tries again */
}

static void on_peer_up(void *arg, const char *id)
{
	struct manager *m = arg;
	struct mgr_host *h = m->leader ? mgr_host_find(m, id) : NULL;

	if (!h)
		return; /* it registers next */
	h->up = true;
	if (h->rec->state == CANOPY__V1__HOST_STATE__HOST_STATE_DISCONNECTED)
		mgr_host_set_state(m, h,
				   CANOPY__V1__HOST_STATE__HOST_STATE_CONNECTED,
				   "is sending heartbeats again");
}

static void on_peer_down(void *arg, const char *id)
{
	struct manager *m = arg;
	struct mgr_host *h = m->leader ? mgr_host_find(m, id) : NULL;

	if (!h)
		return;
	h->up = false;
	mgr_host_set_state(m, h,
			   CANOPY__V1__HOST_STATE__HOST_STATE_DISCONNECTED,
			   "stopped sending heartbeats");
	mgr_tasks_host_down(m, id);
	mgr_images_host_down(m, id);
}

const struct bus_server_ops mgr_bus_ops = {
	.on_message = on_message,
	.on_heartbeat = on_heartbeat,
	.on_peer_up = on_peer_up,
	.on_peer_down = on_peer_down,
	.authorize = mgr_bus_authorize,
	.on_enrol = mgr_bus_enrol,
};
