/* canopy-managerd: ClusterService, HostService, DatastoreService handlers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bus.h"
#include "lib/etcd.h"
#include "lib/log.h"
#include "manager/index.h"
#include "manager/list.h"
#include "manager/hosts.h"
#include "manager/manager.h"

/* The index once it has applied revision rev, or NULL: the caller then
 * counts in etcd (the index is loading, or its watch failed). */
static const struct mgr_index *index_at(struct manager *m, int64_t rev)
{
	const struct mgr_index *ix;
	int rc = mgr_index_at(m, rev, &ix);

	if (rc) {
		log_debug("manager",
			  "inventory index not usable: counting in etcd",
			  "err=\"%s\"", cn_strerror(rc));
		return NULL;
	}
	return ix;
}

/* The current store revision: one O(1) read of the leader key. */
static int store_rev(struct manager *m, int64_t *rev)
{
	struct etcd_range_opts o = { .keys_only = true, .limit = 1 };
	struct etcd_kvs *r = NULL;
	int rc;

	rc = etcd_kv_range(m->etcd, MGR_KEY_LEADER, &o, &r);
	if (!rc)
		*rev = r->revision;
	etcd_kvs_free(r);
	return rc;
}

/* Hosts, VMs and running VMs: from the index at the current revision,
 * else three etcd counts. */
static int cluster_counts(struct manager *m, int64_t *hosts, int64_t *vms,
			  int64_t *running)
{
	const struct mgr_index *ix = NULL;
	int64_t rev = 0;
	int rc;

	rc = store_rev(m, &rev);
	if (rc)
		return rc;
	ix = index_at(m, rev);
	if (ix) {
		*hosts = ix->hosts;
		*vms = ix->vms;
		*running = ix->running;
		return 0;
	}
	rc = mgr_count(m, MGR_PREFIX_HOSTS, hosts);
	if (!rc)
		rc = mgr_count(m, MGR_PREFIX_VMS, vms);
	if (!rc)
		rc = mgr_count(m, MGR_PREFIX_RUNNING, running);
	return rc;
}

void api_get_cluster(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	Canopy__V1__Cluster cl = CANOPY__V1__CLUSTER__INIT;
	struct manager *m = arg;
	int64_t hosts, vms, running;
	struct mgr_host *h;
	int rc;

	rc = cluster_counts(m, &hosts, &vms, &running);
	if (rc) {
		mgr_fail_store(m, c, rc, "counting hosts and vms");
		return;
	}
	cl.name = (char *)"canopy";
	cl.leader = m->opt.id;
	cl.leader_address = (char *)m->opt.listen;
	cl.hosts = (uint32_t)hosts;
	cl.vms = (uint32_t)vms;
	cl.vms_running = (uint32_t)running;
	for (h = m->hosts; h; h = h->next)
		if (h->up &&
		    h->rec->state ==
			    CANOPY__V1__HOST_STATE__HOST_STATE_CONNECTED)
			cl.hosts_connected++;
	cl.version = (char *)MGR_VERSION;
	api_reply(c, &cl.base);
}

/* Fill rec->vms with the number of VMs placed on it: an exact etcd count
 * of its placement keys (O(VMs on the host)). */
static int host_vm_count(struct manager *m, Canopy__V1__Host *rec)
{
	char prefix[MGR_KEY_MAX];
	int64_t n = 0;
	int rc;

	rc = mgr_key_placement(prefix, sizeof(prefix), rec->id, NULL);
	if (!rc)
		rc = mgr_count(m, prefix, &n);
	rec->vms = (uint32_t)n;
	return rc;
}

/* Fill rec->vms from the index when there is one, else count in etcd. */
static int host_vms(struct manager *m, const struct mgr_index *ix,
		    Canopy__V1__Host *rec)
{
	if (!ix)
		return host_vm_count(m, rec);
	rec->vms = mgr_index_host_vms(ix, rec->id);
	return 0;
}

void api_list_hosts(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__ListHostsRequest *req = (const void *)r;
	Canopy__V1__ListHostsResponse resp =
		CANOPY__V1__LIST_HOSTS_RESPONSE__INIT;
	struct manager *m = arg;
	const struct mgr_index *ix = NULL;
	struct etcd_kvs *kvs = NULL;
	Canopy__V1__Host **hosts = NULL;
	char next[MGR_KEY_MAX];
	size_t n = 0, i, k = 0;
	int rc;

	rc = mgr_list_page(m, MGR_PREFIX_HOSTS, MGR_NAME_HOST, req->page_token,
			   mgr_page_size(req->page_size), false, &kvs, &n,
			   next);
	if (!rc && !(hosts = calloc(n ? n : 1, sizeof(*hosts))))
		rc = -ENOMEM;
	if (!rc && n) /* counts no older than the page */
		ix = index_at(m, kvs->revision);
	for (i = 0; !rc && i < n; i++) {
		hosts[k] =
			canopy__v1__host__unpack(NULL, kvs->kvs[i].value_len,
						 (uint8_t *)kvs->kvs[i].value);
		if (hosts[k])
			rc = host_vms(m, ix, hosts[k++]);
	}
	if (rc == -EINVAL)
		mgr_fail_token(c);
	else if (rc)
		mgr_fail_store(m, c, rc, "listing hosts");
	if (!rc) {
		resp.n_hosts = k;
		resp.hosts = hosts;
		resp.next_page_token = next;
		api_reply(c, &resp.base);
	}
	for (i = 0; i < k; i++)
		canopy__v1__host__free_unpacked(hosts[i], NULL);
	free(hosts);
	etcd_kvs_free(kvs);
}

/* Read host id; answers c and returns nonzero on failure. */
static int host_read(struct manager *m, struct api_call *c, const char *id,
		     Canopy__V1__Host **out, int64_t *rev)
{
	char key[MGR_KEY_MAX];
	int rc;

	if (mgr_key_join(key, sizeof(key), MGR_PREFIX_HOSTS, MGR_NAME_HOST,
			 id)) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "'%.64s' is not a host id; list hosts with 'canopy "
			 "host list'",
			 id);
		return 1;
	}
	rc = mgr_get_msg_rev(m, key, &canopy__v1__host__descriptor,
			     (ProtobufCMessage **)out, rev);
	if (rc == -ENOENT)
		api_fail(c, CN_NOT_FOUND,
			 "host %s is not known; list hosts with 'canopy host "
			 "list'",
			 id);
	else if (rc)
		mgr_fail_store(m, c, rc, "reading the host");
	return rc;
}

void api_get_host(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__GetHostRequest *req = (const void *)r;
	struct manager *m = arg;
	Canopy__V1__Host *rec;
	struct mgr_host *h;
	int64_t rev = 0;
	int rc;

	if (host_read(m, c, req->id, &rec, &rev))
		return;
	h = mgr_host_find(m, rec->id);
	if (h) /* the leader's copy has the latest last_seen */
		rec->last_seen_unix_ms = h->rec->last_seen_unix_ms;
	rc = host_vms(m, index_at(m, rev), rec);
	if (rc)
		mgr_fail_store(m, c, rc, "counting the host's vms");
	else
		api_reply(c, &rec->base);
	canopy__v1__host__free_unpacked(rec, NULL);
}

static void host_forget(struct manager *m, const char *id)
{
	struct mgr_host **pp, *h;

	for (pp = &m->hosts; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->rec->id, id) == 0) {
			h = *pp;
			*pp = h->next;
			canopy__v1__host__free_unpacked(h->rec, NULL);
			free(h);
			return;
		}
}

/* A host added (or enrolled) that never registered: only its key goes. */
static void key_remove(struct manager *m, struct api_call *c, const char *id)
{
	Canopy__V1__RemoveHostResponse resp =
		CANOPY__V1__REMOVE_HOST_RESPONSE__INIT;
	char key[MGR_KEY_MAX];
	int rc;

	rc = mgr_key_join(key, sizeof(key), MGR_PREFIX_HOSTKEYS, MGR_NAME_HOST,
			  id);
	if (!rc)
		rc = mgr_delete(m, key, NULL, 0);
	if (rc) {
		mgr_fail_store(m, c, rc, "removing the host's key");
		return;
	}
	mgr_hostkey_forget(m, id);
	mgr_event(m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_INFO,
		  "host.removed", id, "",
		  "host %s was removed before it registered; its key no longer "
		  "works",
		  id);
	api_reply(c, &resp.base);
}

/* Delete the host's record and its bus key in one fenced txn. */
static int host_delete(struct manager *m, const char *id)
{
	char rec[MGR_KEY_MAX], key[MGR_KEY_MAX];
	const char *keys[2] = { rec, key };
	int rc;

	rc = mgr_key_join(rec, sizeof(rec), MGR_PREFIX_HOSTS, MGR_NAME_HOST,
			  id);
	if (!rc)
		rc = mgr_key_join(key, sizeof(key), MGR_PREFIX_HOSTKEYS,
				  MGR_NAME_HOST, id);
	if (!rc)
		rc = mgr_delete_many(m, keys, 2);
	return rc;
}

void api_remove_host(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__RemoveHostRequest *req = (const void *)r;
	Canopy__V1__RemoveHostResponse resp =
		CANOPY__V1__REMOVE_HOST_RESPONSE__INIT;
	struct manager *m = arg;
	Canopy__V1__Host *rec;
	struct mgr_host *h;
	int rc;

	if (mgr_name_valid(MGR_NAME_HOST, req->id) &&
	    !mgr_host_find(m, req->id) && mgr_hostkey_of(m, req->id)) {
		key_remove(m, c, req->id);
		return;
	}
	if (host_read(m, c, req->id, &rec, NULL))
		return;
	h = mgr_host_find(m, rec->id);
	/* Exact, not the index: removal must never drop a host with VMs. */
	rc = host_vm_count(m, rec);
	if (rc)
		mgr_fail_store(m, c, rc, "counting the host's vms");
	else if (h && h->up && !req->force)
		api_fail(c, CN_FAILED_PRECONDITION,
			 "host %s is connected; stop its canopy-agent first, "
			 "or give --force to cut it off now",
			 rec->id);
	else if (rec->vms)
		api_fail(c, CN_FAILED_PRECONDITION,
			 "host %s still has %u vms; delete them first", rec->id,
			 rec->vms);
	else if ((rc = host_delete(m, rec->id)))
		mgr_fail_store(m, c, rc, "removing the host");
	else {
		host_forget(m, rec->id);
		/* From its next message on, the bus refuses the host. */
		mgr_hostkey_forget(m, rec->id);
		mgr_event(m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_INFO,
			  "host.removed", rec->id, "",
			  "host %s was removed; its bus key no longer works",
			  rec->id);
		api_reply(c, &resp.base);
	}
	canopy__v1__host__free_unpacked(rec, NULL);
}

/* The datastore named name in ds[0..n), or NULL. */
static Canopy__V1__Datastore *ds_find(Canopy__V1__Datastore **ds, size_t n,
				      const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(ds[i]->name, name) == 0)
			return ds[i];
	return NULL;
}

/* Add host to the datastore named name (new if not yet in ds). */
static int ds_add(Canopy__V1__Datastore **ds, size_t *n, size_t max,
		  const char *name, char *host)
{
	Canopy__V1__Datastore *d = ds_find(ds, *n, name);
	char **hosts;

	if (!d) {
		if (*n >= max)
			return -ENOSPC;
		d = calloc(1, sizeof(*d));
		if (!d)
			return -ENOMEM;
		canopy__v1__datastore__init(d);
		d->name = (char *)name;
		ds[(*n)++] = d;
	}
	hosts = realloc(d->hosts, (d->n_hosts + 1) * sizeof(char *));
	if (!hosts)
		return -ENOMEM;
	hosts[d->n_hosts++] = host;
	d->hosts = hosts;
	return 0;
}

void api_list_datastores(void *arg, struct api_call *c,
			 const ProtobufCMessage *r)
{
	Canopy__V1__ListDatastoresResponse resp =
		CANOPY__V1__LIST_DATASTORES_RESPONSE__INIT;
	struct manager *m = arg;
	Canopy__V1__Datastore *ds[MGR_PAGE_MAX];
	struct mgr_host *h;
	size_t n = 0, i;
	int rc = 0;

	for (h = m->hosts; h && !rc; h = h->next)
		for (i = 0; i < h->rec->n_datastores && !rc; i++)
			rc = ds_add(ds, &n, CN_ARRAY_SIZE(ds),
				    h->rec->datastores[i], h->rec->id);
	if (rc) {
		api_fail(c, CN_RESOURCE_EXHAUSTED,
			 "more than %d datastores are mounted", MGR_PAGE_MAX);
	} else {
		resp.n_datastores = n;
		resp.datastores = ds;
		api_reply(c, &resp.base);
	}
	for (i = 0; i < n; i++) {
		free(ds[i]->hosts);
		free(ds[i]);
	}
}
