/* canopy-managerd: the inventory index kept in step with etcd (snapshot + watch). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/etcd.h"
#include "lib/etcd_range_at.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"
#include "manager/index.h"
#include "manager/manager.h"

/* The prefixes the snapshot reads, in order. */
static const char *const snap_prefixes[] = {
	MGR_PREFIX_HOSTS,
	MGR_PREFIX_VMS,
	MGR_PREFIX_RUNNING,
	MGR_PREFIX_PLACEMENT,
};

/* Everything the index counts is under this prefix; the watch covers it
 * all, so that every revision written by Canopy reaches the index. */
#define MGR_INDEX_WATCH_PREFIX "/canopy/"

struct mgr_index_sync {
	struct manager *m;
	struct mgr_index live; /* valid while ready */
	bool ready;
	struct etcd_watch *w;
	uint64_t drain_timer; /* applies queued events while w runs */
	/* the snapshot being read */
	struct mgr_index next;
	size_t pi; /* index into snap_prefixes */
	char from[ETCD_MAX_KEY_LEN + 1]; /* first key of the next page */
	int64_t load_rev; /* revision every page is read at (0: first) */
	uint64_t load_start_ms;
	size_t pages;
	uint64_t timer;
	unsigned loads; /* snapshots completed */
};

static int load_tick(struct loop *l, uint64_t id, void *arg);

static void watch_drop(struct mgr_index_sync *s)
{
	if (s->drain_timer)
		(void)loop_timer_del(s->m->l, s->drain_timer);
	s->drain_timer = 0;
	etcd_watch_stop(s->w);
	s->w = NULL;
}

/* Forget everything and read a new snapshot after delay_ms. */
static void reload(struct mgr_index_sync *s, const char *why, uint64_t delay_ms)
{
	int err = 0;

	if (s->ready || s->loads)
		log_warn("manager", "inventory index re-reading etcd",
			 "why=\"%s\" applied_rev=%lld", why,
			 (long long)s->live.rev);
	watch_drop(s);
	s->ready = false;
	mgr_index_free(&s->live);
	mgr_index_free(&s->next);
	s->pi = 0;
	snprintf(s->from, sizeof(s->from), "%s", snap_prefixes[0]);
	s->load_rev = 0;
	s->pages = 0;
	s->load_start_ms = sys_mono_ms();
	if (s->timer)
		(void)loop_timer_del(s->m->l, s->timer);
	s->timer = loop_timer_add(s->m->l, delay_ms, load_tick, s, &err);
	if (!s->timer)
		log_error("manager", "inventory index cannot schedule a load",
			  "err=\"%s\"", cn_strerror(err));
}

/* Apply queued watch events, waiting up to wait_ms for the first one
 * (0: no wait). The number applied, or -errno when the watch ended or the
 * index missed a change (a reload is then under way). */
static int pump(struct mgr_index_sync *s, int wait_ms)
{
	struct etcd_event *ev;
	char why[256];
	int rc, n = 0;

	while (s->w) {
		if (n == 0 && wait_ms > 0)
			rc = etcd_watch_wait(s->w, wait_ms, &ev);
		else
			rc = etcd_watch_next(s->w, &ev);
		if (rc == -EAGAIN || rc == -ETIMEDOUT)
			return n;
		if (rc) {
			etcd_watch_last_error(s->w, why, sizeof(why));
			reload(s, why, rc == -ERANGE ? 0 : MGR_INDEX_RETRY_MS);
			return rc;
		}
		rc = mgr_index_apply(&s->live, ev);
		etcd_event_free(ev);
		if (rc == -ERANGE || rc == -ENOMEM) {
			reload(s,
			       rc == -ERANGE ? "a change was missed" :
					       "out of memory",
			       rc == -ERANGE ? 0 : MGR_INDEX_RETRY_MS);
			return rc;
		}
		n++;
	}
	return -ENOTCONN;
}

/* Apply what the watch queued. A timer rather than the watch's fd in the
 * loop: requests drain the queue themselves before they read the index,
 * so between requests the index only has to keep the queue short, and a
 * burst of writes costs the loop one wake-up per tick instead of one per
 * revision. */
static int drain_tick(struct loop *l, uint64_t id, void *arg)
{
	struct mgr_index_sync *s = arg;

	if (pump(s, 0) < 0)
		return LOOP_TIMER_STOP; /* the reload stopped this timer */
	return MGR_INDEX_DRAIN_MS;
}

/* The snapshot is complete: make it live and watch from the next revision. */
static int finish(struct mgr_index_sync *s)
{
	struct etcd_watch_opts o = { .prefix = true,
				     .start_revision = s->load_rev + 1 };
	int rc;

	rc = etcd_watch_start(s->m->etcd, MGR_INDEX_WATCH_PREFIX, &o, &s->w);
	if (rc)
		return rc;
	s->drain_timer =
		loop_timer_add(s->m->l, MGR_INDEX_DRAIN_MS, drain_tick, s, &rc);
	if (!s->drain_timer) {
		watch_drop(s);
		return rc;
	}
	s->live = s->next;
	s->live.rev = s->load_rev;
	memset(&s->next, 0, sizeof(s->next));
	s->ready = true;
	s->loads++;
	log_info("manager", "inventory index ready",
		 "hosts=%lld vms=%lld running=%lld placed=%lld rev=%lld "
		 "pages=%zu ms=%llu",
		 (long long)s->live.hosts, (long long)s->live.vms,
		 (long long)s->live.running, (long long)s->live.placed,
		 (long long)s->live.rev, s->pages,
		 (unsigned long long)(sys_mono_ms() - s->load_start_ms));
	return 0;
}

/* Count one page of keys in; move on to the next page or prefix. */
static int page_take(struct mgr_index_sync *s, const struct etcd_kvs *r)
{
	size_t n = CN_MIN(r->n_kvs, (size_t)MGR_INDEX_PAGE), i;
	int rc;

	for (i = 0; i < n; i++) {
		rc = mgr_index_add(&s->next, r->kvs[i].key, r->kvs[i].key_len,
				   1);
		if (rc && rc != -EINVAL) /* malformed keys are skipped */
			return rc;
	}
	s->pages++;
	if (r->n_kvs > MGR_INDEX_PAGE) {
		if (r->kvs[n].key_len >= sizeof(s->from))
			return -ENAMETOOLONG;
		memcpy(s->from, r->kvs[n].key, r->kvs[n].key_len + 1);
		return 0;
	}
	if (++s->pi < CN_ARRAY_SIZE(snap_prefixes))
		snprintf(s->from, sizeof(s->from), "%s", snap_prefixes[s->pi]);
	return 0;
}

static int load_page(struct mgr_index_sync *s)
{
	const char *prefix = snap_prefixes[s->pi];
	char end[MGR_KEY_MAX];
	struct etcd_kvs *r = NULL;
	size_t len = strlen(prefix);
	int rc;

	memcpy(end, prefix, len + 1);
	end[len - 1]++; /* every prefix ends in '/' */
	rc = etcd_kv_range_between_at(s->m->etcd, s->from, end,
				      MGR_INDEX_PAGE + 1, true, s->load_rev,
				      &r);
	if (rc)
		return rc;
	if (s->load_rev == 0)
		s->load_rev = r->revision;
	rc = page_take(s, r);
	etcd_kvs_free(r);
	return rc;
}

static int load_tick(struct loop *l, uint64_t id, void *arg)
{
	struct mgr_index_sync *s = arg;
	int rc;

	if (!s->next.buckets && mgr_index_init(&s->next))
		return MGR_INDEX_RETRY_MS;
	rc = load_page(s);
	if (rc == -ERANGE) { /* compacted under us: start again */
		s->timer = 0;
		reload(s, "the snapshot revision was compacted", 0);
		return LOOP_TIMER_STOP;
	}
	if (rc) {
		log_debug("manager", "inventory index: a page failed",
			  "err=\"%s\" etcd=\"%s\"", cn_strerror(rc),
			  etcd_client_last_error(s->m->etcd));
		return MGR_INDEX_RETRY_MS;
	}
	if (s->pi < CN_ARRAY_SIZE(snap_prefixes))
		return 0; /* next page on the next loop turn */
	rc = finish(s);
	if (rc) {
		log_warn("manager", "inventory index cannot watch etcd",
			 "err=\"%s\"", cn_strerror(rc));
		s->timer = 0;
		reload(s, "the watch did not start", MGR_INDEX_RETRY_MS);
		return LOOP_TIMER_STOP;
	}
	s->timer = 0;
	return LOOP_TIMER_STOP;
}

int mgr_index_start(struct manager *m)
{
	struct mgr_index_sync *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->m = m;
	m->index = s;
	reload(s, "start", 0);
	return s->timer ? 0 : -ENOMEM;
}

void mgr_index_stop(struct manager *m)
{
	struct mgr_index_sync *s = m->index;

	if (!s)
		return;
	if (s->timer)
		(void)loop_timer_del(m->l, s->timer);
	watch_drop(s);
	mgr_index_free(&s->live);
	mgr_index_free(&s->next);
	free(s);
	m->index = NULL;
}

/* Write the barrier key so that the watch delivers a revision past any
 * write outside /canopy/. */
static void barrier(struct mgr_index_sync *s)
{
	const char *id = s->m->opt.id;
	int64_t rev = 0;

	if (etcd_kv_put(s->m->etcd, MGR_KEY_INDEX_BARRIER, id, strlen(id), 0,
			&rev, NULL))
		log_debug("manager", "inventory index barrier write failed",
			  "etcd=\"%s\"", etcd_client_last_error(s->m->etcd));
}

int mgr_index_at(struct manager *m, int64_t rev, const struct mgr_index **out)
{
	struct mgr_index_sync *s = m->index;
	uint64_t now, deadline, barrier_at;
	bool barrier_done = false;
	int wait;

	*out = NULL;
	if (!s || !s->ready || pump(s, 0) < 0)
		return -EAGAIN;
	now = sys_mono_ms();
	deadline = now + MGR_INDEX_WAIT_MS;
	barrier_at = now + MGR_INDEX_BARRIER_MS;
	while (s->live.rev < rev) {
		now = sys_mono_ms();
		if (now >= deadline) { /* a stuck watch: start afresh */
			log_warn("manager", "inventory index is behind",
				 "applied_rev=%lld wanted=%lld",
				 (long long)s->live.rev, (long long)rev);
			reload(s, "the watch fell behind", 0);
			return -ETIMEDOUT;
		}
		if (!barrier_done && now >= barrier_at) {
			barrier_done = true;
			barrier(s);
		}
		wait = (int)((barrier_done ? deadline : barrier_at) - now);
		if (pump(s, wait ? wait : 1) < 0 || !s->ready)
			return -EAGAIN;
	}
	*out = &s->live;
	return 0;
}
