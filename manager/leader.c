/* canopy-managerd: leader election on an etcd lease and /canopy/leader. */
#include <errno.h>
#include <string.h>

#include "lib/etcd.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"
#include "manager/auth_mgr.h"
#include "manager/manager.h"

/* Grant our lease if we have none. 0 or -errno. */
static int lease_ensure(struct manager *m)
{
	int64_t id, ttl;
	int rc;

	if (m->lease)
		return 0;
	rc = etcd_lease_grant(m->etcd, m->opt.lease_ttl_s, &id, &ttl);
	if (rc)
		return rc;
	m->lease = id;
	m->lease_ok_ms = sys_mono_ms();
	return 0;
}

static void forget_leader(struct manager *m)
{
	memset(&m->current, 0, sizeof(m->current));
}

static void become_leader(struct manager *m)
{
	int rc;

	m->leader = true;
	m->current = (struct mgr_leader_info){ 0 };
	rc = mgr_leader_parse(m->leader_value, strlen(m->leader_value),
			      &m->current);
	if (!rc)
		rc = mgr_events_start(m);
	if (!rc)
		rc = mgr_auth_start(m);
	if (!rc)
		rc = mgr_hosts_start(m);
	if (!rc)
		rc = mgr_tasks_recover(m);
	if (rc) {
		log_error("manager", "cannot take up the leadership",
			  "err=\"%s\"", cn_strerror(rc));
		mgr_leader_step_down(m, "start-up as leader failed");
		return;
	}
	log_info("manager", "became leader", "id=%s api=%s bus=%s", m->opt.id,
		 m->opt.listen, m->opt.bus);
	mgr_event(m, CANOPY__V1__EVENT_SEVERITY__EVENT_SEVERITY_INFO,
		  "manager.leader", m->opt.id, "",
		  "manager %s became leader (api %s)", m->opt.id,
		  m->opt.listen);
}

/* The leader key names us under a lease we lost (etcd was away longer
 * than the TTL and has not expired it yet): delete it if unchanged, so
 * that the next attempt can win instead of waiting for etcd's expiry. */
static void drop_stale(struct manager *m, const struct etcd_kv *kv)
{
	struct etcd_cmp cmp = { .key = MGR_KEY_LEADER,
				.target = ETCD_CMP_MOD,
				.result = ETCD_CMP_EQUAL,
				.number = kv->mod_revision };
	struct etcd_op del = { .type = ETCD_OP_DELETE, .key = MGR_KEY_LEADER };
	struct etcd_txn t = { &cmp, 1, &del, 1, NULL, 0 };
	struct etcd_txn_result *r = NULL;

	forget_leader(m);
	if (etcd_kv_txn(m->etcd, &t, &r) == 0 && r->succeeded)
		log_info("manager", "dropped our stale leader key");
	etcd_txn_result_free(r);
}

/* One election attempt: create the leader key with our lease if absent,
 * else learn who leads. */
static void elect_once(struct manager *m)
{
	struct etcd_cmp cmp = { .key = MGR_KEY_LEADER,
				.target = ETCD_CMP_CREATE,
				.result = ETCD_CMP_EQUAL,
				.number = 0 };
	struct etcd_op put = { .type = ETCD_OP_PUT,
			       .key = MGR_KEY_LEADER,
			       .value = m->leader_value,
			       .value_len = strlen(m->leader_value),
			       .lease = m->lease };
	struct etcd_op get = { .type = ETCD_OP_RANGE, .key = MGR_KEY_LEADER };
	struct etcd_txn t = { &cmp, 1, &put, 1, &get, 1 };
	struct etcd_txn_result *r = NULL;
	struct etcd_kv *kv;

	if (etcd_kv_txn(m->etcd, &t, &r))
		return;
	if (r->succeeded) {
		etcd_txn_result_free(r);
		become_leader(m);
		return;
	}
	forget_leader(m);
	if (r->n_results == 1 && r->results[0].n_kvs == 1) {
		kv = &r->results[0].kvs[0];
		if (kv->lease == m->lease) { /* ours: take it up again */
			etcd_txn_result_free(r);
			become_leader(m);
			return;
		}
		if (mgr_leader_parse(kv->value, kv->value_len, &m->current))
			log_warn("manager", "leader key is not readable");
		else if (strcmp(m->current.id, m->opt.id) == 0)
			drop_stale(m, kv);
	}
	etcd_txn_result_free(r);
}

static int elect_tick(struct loop *l, uint64_t id, void *arg)
{
	struct manager *m = arg;
	int rc;

	if (m->leader || m->stepping)
		return MGR_ELECT_RETRY_MS;
	rc = lease_ensure(m);
	if (rc) {
		log_debug("manager", "no lease yet", "err=\"%s\"",
			  etcd_client_last_error(m->etcd));
		return MGR_ELECT_RETRY_MS;
	}
	elect_once(m);
	return MGR_ELECT_RETRY_MS;
}

static int renew_tick(struct loop *l, uint64_t id, void *arg)
{
	struct manager *m = arg;
	int64_t ttl;
	int rc;

	if (!m->lease)
		return MGR_LEASE_RENEW_MS;
	rc = etcd_lease_keepalive(m->etcd, m->lease, &ttl);
	/* The clock, not the loop's cached time: etcd calls block. */
	if (rc == 0 && ttl > 0) {
		m->lease_ok_ms = sys_mono_ms();
		return MGR_LEASE_RENEW_MS;
	}
	if (rc == -ENOENT || (rc == 0 && ttl <= 0) ||
	    sys_mono_ms() - m->lease_ok_ms >= m->opt.lease_ttl_s * 1000ull) {
		log_warn("manager", "lease lost", "err=\"%s\"",
			 rc ? cn_strerror(rc) : "expired");
		m->lease = 0;
		mgr_leader_step_down(m, "the leader lease expired");
	}
	return MGR_LEASE_RENEW_MS;
}

int mgr_leader_start(struct manager *m)
{
	struct mgr_leader_info me = { 0 };
	int err = 0;

	if (strlen(m->opt.listen) > MGR_ADDR_MAX ||
	    strlen(m->opt.bus) > MGR_ADDR_MAX)
		return -ENAMETOOLONG;
	strcpy(me.id, m->opt.id);
	strcpy(me.api, m->opt.listen);
	strcpy(me.bus, m->opt.bus);
	if (mgr_leader_format(m->leader_value, sizeof(m->leader_value), &me))
		return -ENAMETOOLONG;
	m->elect_timer = loop_timer_add(m->l, 0, elect_tick, m, &err);
	if (!m->elect_timer)
		return err;
	m->renew_timer =
		loop_timer_add(m->l, MGR_LEASE_RENEW_MS, renew_tick, m, &err);
	if (!m->renew_timer)
		return err;
	return mgr_retention_start(m);
}

static void cleanup(void *arg)
{
	struct manager *m = arg;

	/* The bus first: its pending requests end (-ECANCELED) while the
	 * tasks they belong to still exist. */
	mgr_events_stop(m);
	mgr_hosts_stop(m);
	mgr_tasks_stop(m);
	mgr_images_stop(m);
	mgr_auth_stop(m);
	m->stepping = false;
}

void mgr_leader_step_down(struct manager *m, const char *why)
{
	if (!m->leader)
		return;
	m->leader = false;
	forget_leader(m);
	log_warn("manager", "stepping down", "why=\"%s\"", why);
	/* Not from inside a bus callback: the bus is destroyed there. */
	m->stepping = true;
	if (loop_post(m->l, cleanup, m))
		m->stepping = false; /* next leadership reuses the state */
}

void mgr_leader_stop(struct manager *m)
{
	bool was = m->leader;

	/* No new term while the API server drains the loop. */
	if (m->elect_timer)
		(void)loop_timer_del(m->l, m->elect_timer);
	if (m->renew_timer)
		(void)loop_timer_del(m->l, m->renew_timer);
	m->elect_timer = m->renew_timer = 0;
	mgr_retention_stop(m);

	m->leader = false;
	cleanup(m);
	if (m->lease && etcd_lease_revoke(m->etcd, m->lease))
		log_warn("manager", "could not release the leader lease");
	m->lease = 0;
	if (was)
		log_info("manager", "leadership released", "id=%s", m->opt.id);
}

int mgr_api_gate(void *arg, struct api_call *c)
{
	struct manager *m = arg;

	if (m->leader)
		return 0;
	if (m->current.id[0])
		api_fail(c, CN_UNAVAILABLE,
			 "this manager (%s) is standby; leader is %s at %s: "
			 "send API calls there",
			 m->opt.id, m->current.id, m->current.api);
	else
		api_fail(c, CN_UNAVAILABLE,
			 "this manager (%s) is standby and no leader is "
			 "elected yet; check etcd and retry in a few seconds",
			 m->opt.id);
	return 1;
}
