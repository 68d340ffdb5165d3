/*
 * canopy-managerd: retention. A leader timer deletes, a batch at a time,
 * finished tasks older than --task-retention seconds (task ids sort by
 * creation time, so they are a key range) and the events beyond the newest
 * --event-retention (seqs are gap-free, so they are a key range too).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lib/etcd_range.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "manager/auth_mgr.h"
#include "manager/manager.h"

/* Keys deleted per sweep and kind (one transaction). */
#define MGR_SWEEP_BATCH 64
/* Longest pause between sweeps. */
#define MGR_SWEEP_MAX_MS 10000

/* Whether name is among the keys of kvs (after prefix). */
static int listed(const struct etcd_kvs *kvs, const char *prefix,
		  const char *name)
{
	const char *n;
	size_t i;

	for (i = 0; kvs && i < kvs->n_kvs; i++) {
		n = mgr_key_name(kvs->kvs[i].key, prefix);
		if (n && strcmp(n, name) == 0)
			return 1;
	}
	return 0;
}

/* Delete the finished tasks created before the retention cut-off. */
static int sweep_tasks(struct manager *m)
{
	char end[MGR_KEY_MAX], aend[MGR_KEY_MAX];
	const char *keys[MGR_SWEEP_BATCH], *name;
	struct etcd_kvs *old = NULL, *active = NULL;
	uint64_t now = mgr_unix_ms(), keep = m->opt.task_retention_s * 1000ull;
	size_t i, n = 0;
	int rc;

	if (now <= keep)
		return 0;
	snprintf(end, sizeof(end), "%s%013" PRIu64, MGR_PREFIX_TASKS,
		 now - keep);
	snprintf(aend, sizeof(aend), "%s%013" PRIu64, MGR_PREFIX_ACTIVE,
		 now - keep);
	rc = etcd_kv_range_between(m->etcd, MGR_PREFIX_TASKS, end,
				   MGR_SWEEP_BATCH, true, &old);
	if (!rc)
		rc = etcd_kv_range_between(m->etcd, MGR_PREFIX_ACTIVE, aend,
					   MGR_PAGE_MAX, true, &active);
	for (i = 0; !rc && i < old->n_kvs; i++) {
		name = mgr_key_name(old->kvs[i].key, MGR_PREFIX_TASKS);
		if (name && !listed(active, MGR_PREFIX_ACTIVE, name))
			keys[n++] = old->kvs[i].key;
	}
	if (!rc && n)
		rc = mgr_delete_many(m, keys, n);
	if (!rc && n)
		log_debug("manager", "old tasks deleted", "count=%zu", n);
	etcd_kvs_free(old);
	etcd_kvs_free(active);
	return rc;
}

/* Delete the records under prefix (keys "%020" seq) older than the newest
 * keep of seq: events, and audit records (the audit file keeps all). */
static int sweep_seq(struct manager *m, const char *prefix, uint64_t seq,
		     uint64_t keep)
{
	const char *keys[MGR_SWEEP_BATCH];
	struct etcd_kvs *old = NULL;
	char end[MGR_KEY_MAX];
	size_t i;
	int rc, len;

	if (seq <= keep)
		return 0;
	len = snprintf(end, sizeof(end), "%s%020" PRIu64, prefix,
		       seq - keep + 1);
	if (len < 0 || (size_t)len >= sizeof(end))
		return -ENAMETOOLONG;
	rc = etcd_kv_range_between(m->etcd, prefix, end, MGR_SWEEP_BATCH, true,
				   &old);
	if (rc || old->n_kvs == 0)
		goto out;
	for (i = 0; i < old->n_kvs; i++)
		keys[i] = old->kvs[i].key;
	rc = mgr_delete_many(m, keys, old->n_kvs);
out:
	etcd_kvs_free(old);
	return rc;
}

static int sweep(struct loop *l, uint64_t id, void *arg)
{
	struct manager *m = arg;
	uint64_t every = m->opt.task_retention_s * 500ull;
	int rc = 0;

	if (m->leader)
		rc = sweep_tasks(m);
	if (m->leader && !rc)
		rc = sweep_seq(m, MGR_PREFIX_EVENTS, m->event_seq,
			       m->opt.event_retention);
	if (m->leader && !rc && m->auth)
		rc = sweep_seq(m, MGR_PREFIX_AUDIT, m->auth->audit_seq,
			       m->opt.event_retention);
	if (rc && rc != -EPERM)
		log_warn("manager", "retention sweep failed", "err=\"%s\"",
			 cn_strerror(rc));
	if (every > MGR_SWEEP_MAX_MS)
		every = MGR_SWEEP_MAX_MS;
	return (int)(every < 500 ? 500 : every);
}

int mgr_retention_start(struct manager *m)
{
	int err = 0;

	m->retention_timer = loop_timer_add(m->l, 500, sweep, m, &err);
	return m->retention_timer ? 0 : err;
}

void mgr_retention_stop(struct manager *m)
{
	if (m->retention_timer)
		(void)loop_timer_del(m->l, m->retention_timer);
	m->retention_timer = 0;
}
