/* canopy-managerd: host records of the leader and commands to agents. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bus.h"
#include "lib/etcd.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"
#include "manager/hosts.h"
#include "manager/manager.h"

struct mgr_host *mgr_host_find(struct manager *m, const char *id)
{
	struct mgr_host *h;

	for (h = m->hosts; h; h = h->next)
		if (strcmp(h->rec->id, id) == 0)
			return h;
	return NULL;
}

struct mgr_host *mgr_host_add(struct manager *m, Canopy__V1__Host *rec)
{
	struct mgr_host *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->rec = rec;
	h->next = m->hosts;
	m->hosts = h;
	return h;
}

struct mgr_host *mgr_host_pick(struct manager *m)
{
	struct mgr_host *h, *best = NULL;
	uint64_t free_mib, best_free = 0;

	for (h = m->hosts; h; h = h->next) {
		if (!h->up ||
		    h->rec->state !=
			    CANOPY__V1__HOST_STATE__HOST_STATE_CONNECTED)
			continue;
		free_mib =
			h->rec->memory_mib > h->rec->memory_used_mib ?
				h->rec->memory_mib - h->rec->memory_used_mib :
				0;
		if (!best || free_mib > best_free) {
			best = h;
			best_free = free_mib;
		}
	}
	return best;
}

int mgr_host_save(struct manager *m, struct mgr_host *h)
{
	char key[MGR_KEY_MAX];
	int rc;

	rc = mgr_key_join(key, sizeof(key), MGR_PREFIX_HOSTS, MGR_NAME_HOST,
			  h->rec->id);
	if (rc)
		return rc;
	/* Stamped on failure too: a host's heartbeats try again only after
	 * MGR_LAST_SEEN_WRITE_MS, not once per heartbeat while etcd is away. */
	h->last_write_ms = sys_mono_ms();
	rc = mgr_put_msg(m, key, &h->rec->base, NULL, NULL, 0);
	if (rc)
		log_warn("manager", "cannot store host", "host=%s err=\"%s\"",
			 h->rec->id, cn_strerror(rc));
	return rc;
}

void mgr_host_set_state(struct manager *m, struct mgr_host *h,
			Canopy__V1__HostState st, const char *why)
{
	int connected = st == CANOPY__V1__HOST_STATE__HOST_STATE_CONNECTED;

	if (h->rec->state == st)
		return;
	h->rec->state = st;
	if (connected)
		h->rec->last_seen_unix_ms = mgr_unix_ms();
	if (mgr_host_save(m, h))
		return;
	log_info("manager", connected ? "host connected" : "host disconnected",
		 "host=%s", h->rec->id);
	mgr_event(m,
		  connected ?
			  CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_INFO :
			  CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_WARNING,
		  connected ? "host.connected" : "host.disconnected",
		  h->rec->id, "", "host %s %s", h->rec->id, why);
}

/* Load every host record (once, when becoming leader). */
static int hosts_load(struct manager *m)
{
	struct etcd_range_opts o = { .prefix = true };
	struct etcd_kvs *r = NULL;
	Canopy__V1__Host *rec;
	size_t i;
	int rc;

	rc = etcd_kv_range(m->etcd, MGR_PREFIX_HOSTS, &o, &r);
	if (rc)
		return rc;
	for (i = 0; i < r->n_kvs; i++) {
		rec = canopy__v1__host__unpack(NULL, r->kvs[i].value_len,
					       (uint8_t *)r->kvs[i].value);
		if (!rec || !mgr_name_valid(MGR_NAME_HOST, rec->id)) {
			log_error("manager", "stored host does not decode",
				  "key=%s", r->kvs[i].key);
			if (rec)
				canopy__v1__host__free_unpacked(rec, NULL);
			continue;
		}
		if (!mgr_host_add(m, rec)) {
			canopy__v1__host__free_unpacked(rec, NULL);
			rc = -ENOMEM;
			break;
		}
	}
	etcd_kvs_free(r);
	return rc;
}

/* After a takeover: hosts still marked connected that never reached us
 * within the host timeout are disconnected. */
static int sweep(struct loop *l, uint64_t id, void *arg)
{
	struct manager *m = arg;
	struct mgr_host *h;

	m->sweep_timer = 0;
	if (!m->leader)
		return LOOP_TIMER_STOP;
	for (h = m->hosts; h; h = h->next)
		if (!h->up)
			mgr_host_set_state(
				m, h,
				CANOPY__V1__HOST_STATE__HOST_STATE_DISCONNECTED,
				"did not reach the new leader");
	return LOOP_TIMER_STOP;
}

int mgr_hosts_start(struct manager *m)
{
	struct bus_options o = { 0 };
	int rc, err = 0;

	rc = hosts_load(m);
	if (!rc)
		rc = mgr_hostkeys_load(m);
	if (rc)
		return rc;
	/* Only hosts with a key we know may connect (mgr_bus_authorize). */
	o.curve_secret_key = m->bus_secret;
	o.peer_timeout_ms = m->opt.host_timeout_s * 1000;
	o.heartbeat_ms = o.peer_timeout_ms >= 4000 ? 1000 :
						     o.peer_timeout_ms / 4;
	rc = bus_server_create(m->l, m->opt.bus, &o, &mgr_bus_ops, m, &m->bus);
	if (rc) {
		log_error("manager", "cannot bind the agent bus",
			  "bus=%s err=\"%s\"", m->opt.bus, cn_strerror(rc));
		return rc;
	}
	m->sweep_timer =
		loop_timer_add(m->l, o.peer_timeout_ms, sweep, m, &err);
	return m->sweep_timer ? 0 : err;
}

void mgr_hosts_stop(struct manager *m)
{
	struct mgr_host *h;

	bus_server_destroy(m->bus);
	m->bus = NULL;
	mgr_hostkeys_clear(m);
	if (m->sweep_timer)
		(void)loop_timer_del(m->l, m->sweep_timer);
	m->sweep_timer = 0;
	while ((h = m->hosts)) {
		m->hosts = h->next;
		canopy__v1__host__free_unpacked(h->rec, NULL);
		free(h);
	}
}

int mgr_host_command(struct manager *m, const char *host,
		     const Canopy__V1__VmCommand *cmd, uint32_t timeout_ms,
		     void (*cb)(void *, int, const Canopy__V1__Envelope *),
		     void *arg)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;

	if (!m->bus)
		return -ENOTCONN;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_VM_COMMAND;
	env.vm_command = (Canopy__V1__VmCommand *)cmd;
	return bus_server_request(m->bus, host, &env, timeout_ms, cb, arg,
				  NULL);
}
