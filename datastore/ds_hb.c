/* Host heartbeats: one sector per host id, renewed every interval; liveness
 * judged by each observer on its own monotonic clock (docs/datastore.md). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "datastore/ds.h"
#include "datastore/ds_rec.h"
#include "lib/sys.h"

#define HB_MAGIC 0x4c534248u /* "HBSL" */
#define HB_F_MAGIC 0
#define HB_F_HOST 4
#define HB_F_FLAGS 8
#define HB_F_INTERVAL 12
#define HB_F_GEN 16
#define HB_F_COUNTER 24
#define HB_F_WALL 32
#define HB_F_NAME 40
#define HB_F_NONCE 104
/* A torn read (a sector read while another host rewrites it) fails its
 * checksum; read again this many times before calling it corrupt. */
#define HB_READ_TRIES 5

static uint64_t slot_off(const struct ds *ds, uint32_t id)
{
	return ds->g.hb_off + (uint64_t)(id - 1) * ds->g.sector;
}

static void slot_encode(uint8_t *r, const struct ds_hb_slot *s)
{
	memset(r, 0, DS_REC_SIZE);
	put32(r + HB_F_MAGIC, HB_MAGIC);
	put32(r + HB_F_HOST, s->host_id);
	put32(r + HB_F_FLAGS, s->flags);
	put32(r + HB_F_INTERVAL, s->interval_ms);
	put64(r + HB_F_GEN, s->generation);
	put64(r + HB_F_COUNTER, s->counter);
	put64(r + HB_F_WALL, s->wall_ms);
	memcpy(r + HB_F_NAME, s->host_name, strnlen(s->host_name, DS_NAME_MAX));
	put64(r + HB_F_NONCE, s->nonce);
	ds_rec_seal(r);
}

/* 0 valid, 1 never written, -EBADMSG corrupt. */
static int slot_decode(const uint8_t *r, uint32_t id, struct ds_hb_slot *s)
{
	int rc = ds_rec_check(r);

	memset(s, 0, sizeof(*s));
	if (rc != 0)
		return rc;
	if (get32(r + HB_F_MAGIC) != HB_MAGIC || get32(r + HB_F_HOST) != id)
		return -EBADMSG;
	s->host_id = id;
	s->flags = get32(r + HB_F_FLAGS);
	s->interval_ms = get32(r + HB_F_INTERVAL);
	s->generation = get64(r + HB_F_GEN);
	s->counter = get64(r + HB_F_COUNTER);
	s->wall_ms = get64(r + HB_F_WALL);
	memcpy(s->host_name, r + HB_F_NAME, DS_NAME_MAX);
	s->nonce = get64(r + HB_F_NONCE);
	return 0;
}

/* Read slots [first, first + n) into out; per-slot result in rcs. */
static int read_slots(const struct ds *ds, uint32_t first, uint32_t n,
		      struct ds_hb_slot *out, int *rcs)
{
	size_t len = (size_t)n * ds->g.sector;
	uint8_t *buf = ds_alloc(ds, len);
	int rc = buf ? 0 : -ENOMEM;

	for (int t = 0; rc == 0 && t < HB_READ_TRIES; t++) {
		int torn = 0;

		rc = ds_read(ds, slot_off(ds, first), buf, len);
		for (uint32_t i = 0; rc == 0 && i < n; i++) {
			rcs[i] = slot_decode(buf + (size_t)i * ds->g.sector,
					     first + i, &out[i]);
			torn |= rcs[i] == -EBADMSG;
		}
		if (!torn)
			break;
	}
	ds_free(buf);
	return rc;
}

int ds_hb_read(const struct ds *ds, uint32_t host_id, struct ds_hb_slot *out)
{
	int rc, one;

	if (host_id == 0 || host_id > ds->g.max_hosts)
		return -ERANGE;
	rc = read_slots(ds, host_id, 1, out, &one);
	return rc < 0 ? rc : one;
}

static int write_slot(struct ds_host *h, uint32_t flags)
{
	struct ds_hb_slot s = {
		.host_id = h->id,
		.flags = flags,
		.generation = h->generation,
		.counter = h->counter,
		.wall_ms = sys_real_ms(),
		.interval_ms = h->ds->g.hb_interval_ms,
		.nonce = h->nonce,
	};
	uint8_t *r = ds_alloc(h->ds, h->ds->g.sector);
	int rc;

	if (!r)
		return -ENOMEM;
	snprintf(s.host_name, sizeof(s.host_name), "%s", h->name);
	slot_encode(r, &s);
	rc = ds_write(h->ds, slot_off(h->ds, h->id), r, h->ds->g.sector);
	ds_free(r);
	return rc;
}

uint64_t ds_hb_margin_ms(const struct ds_geom *g)
{
	return g->hb_timeout_ms / 4;
}

int ds_hb_join(struct ds_host *h, struct ds *ds, uint32_t host_id,
	       const char *name, char *err, size_t errlen)
{
	const struct ds_geom *g = &ds->g;
	struct ds_hb_slot s, now;
	uint64_t wait_ns, t0;
	int rc;

	memset(h, 0, sizeof(*h));
	if (host_id == 0 || host_id > g->max_hosts) {
		snprintf(err, errlen, "host id %u: must be 1..%u", host_id,
			 g->max_hosts);
		return -ERANGE;
	}
	rc = ds_hb_read(ds, host_id, &s);
	if (rc < 0 && rc != -EBADMSG) {
		snprintf(err, errlen, "heartbeat slot %u: %s", host_id,
			 strerror(-rc));
		return rc;
	}
	/* Unless the slot is new or was left cleanly, whoever wrote it last
	 * may still be alive: watch it for the break wait. A previous
	 * incarnation of this host that stopped renewing has fenced itself
	 * by the end of it, so its leases are ours to take over. */
	wait_ns = (g->hb_timeout_ms + ds_hb_margin_ms(g)) * 1000000ull;
	t0 = sys_mono_ns();
	while (rc != 1 && !(rc == 0 && (s.flags & DS_HB_LEFT)) &&
	       sys_mono_ns() - t0 < wait_ns) {
		sys_sleep_us((uint64_t)(g->hb_interval_ms / 2 ?
						g->hb_interval_ms / 2 :
						1) *
			     1000);
		if (ds_hb_read(ds, host_id, &now) == 0 &&
		    (now.generation != s.generation ||
		     now.counter != s.counter)) {
			snprintf(err, errlen,
				 "host id %u is in use: its heartbeat "
				 "advances (host '%s')",
				 host_id, now.host_name);
			return -EBUSY;
		}
	}
	h->ds = ds;
	h->id = host_id;
	/* Generations never go back: after a corrupt slot, the wall clock
	 * (ms) is above any generation counted up from 1. */
	h->generation = rc == 0 ? s.generation + 1 :
			rc == 1 ? 1 :
				  sys_real_ms();
	h->counter = 0;
	if (getrandom(&h->nonce, sizeof(h->nonce), 0) != sizeof(h->nonce))
		h->nonce = sys_mono_ns() ^ ((uint64_t)getpid() << 32);
	snprintf(h->name, sizeof(h->name), "%s", name ? name : "");
	t0 = sys_mono_ns();
	rc = write_slot(h, DS_HB_LIVE);
	if (rc < 0) {
		snprintf(err, errlen, "heartbeat slot %u: write: %s", host_id,
			 strerror(-rc));
		return rc;
	}
	h->last_ok_issue_ns = t0;
	/* Two processes joining with one id at once both got here: after
	 * two intervals only the last writer still finds its nonce. */
	sys_sleep_us(2 * (uint64_t)g->hb_interval_ms * 1000);
	rc = ds_hb_read(ds, host_id, &now);
	if (rc != 0 || now.nonce != h->nonce) {
		snprintf(err, errlen,
			 "host id %u is in use: another process joined with "
			 "it at the same time",
			 host_id);
		return -EBUSY;
	}
	rc = ds_hb_renew(h);
	if (rc < 0)
		snprintf(err, errlen, "heartbeat slot %u: renew: %s", host_id,
			 strerror(-rc));
	return rc;
}

int ds_hb_renew(struct ds_host *h)
{
	uint64_t t0 = sys_mono_ns();
	int rc;

	struct ds_hb_slot cur;

	if (h->left)
		return -ESHUTDOWN;
	/* Someone else writing our slot uses our id: stop, never fight. */
	if (ds_hb_read(h->ds, h->id, &cur) == 0 && cur.nonce != h->nonce)
		return -EEXIST;
	h->counter++;
	rc = write_slot(h, DS_HB_LIVE);
	if (rc == 0)
		__atomic_store_n(&h->last_ok_issue_ns, t0, __ATOMIC_RELEASE);
	return rc;
}

int ds_hb_leave(struct ds_host *h)
{
	h->left = 1;
	h->counter++;
	return write_slot(h, DS_HB_LEFT);
}

int ds_hb_must_fence(const struct ds_host *h, uint64_t now_ns)
{
	const struct ds_geom *g = &h->ds->g;
	uint64_t limit = (g->hb_timeout_ms - ds_hb_margin_ms(g)) * 1000000ull;

	return now_ns - __atomic_load_n(&h->last_ok_issue_ns,
					__ATOMIC_ACQUIRE) >=
	       limit;
}

int ds_hb_check(const struct ds_host *h)
{
	return ds_hb_must_fence(h, sys_mono_ns()) ? -ETIMEDOUT : 0;
}

void ds_hb_watch_init(struct ds_hb_watch *w)
{
	memset(w, 0, sizeof(*w));
}

int ds_hb_watch_poll(const struct ds *ds, struct ds_hb_watch *w,
		     uint64_t now_ns)
{
	struct ds_hb_slot s[DS_MAX_HOSTS];
	int rcs[DS_MAX_HOSTS];
	int rc = read_slots(ds, 1, ds->g.max_hosts, s, rcs);

	if (rc < 0)
		return rc;
	/* Changes are stamped after the read: never before the owner could
	 * have issued the write we saw (the timing argument needs that). */
	if (!now_ns)
		now_ns = sys_mono_ns();
	for (uint32_t i = 0; i < ds->g.max_hosts; i++) {
		__typeof__(w->h[0]) *e = &w->h[i + 1];

		if (rcs[i] < 0)
			continue; /* torn every time: no news */
		if (rcs[i] == 1)
			memset(&s[i], 0, sizeof(s[i])); /* never written */
		if (!e->seen || e->generation != s[i].generation ||
		    e->counter != s[i].counter) {
			e->generation = s[i].generation;
			e->counter = s[i].counter;
			e->changed_ns = now_ns;
			e->seen = 1;
		}
		e->flags = s[i].flags;
	}
	return 0;
}

enum ds_liveness ds_hb_liveness(const struct ds *ds,
				const struct ds_hb_watch *w, uint32_t host_id,
				uint64_t now_ns)
{
	const struct ds_geom *g = &ds->g;
	uint64_t age;

	if (host_id == 0 || host_id > g->max_hosts || !w->h[host_id].seen)
		return DS_HOST_UNKNOWN;
	if (w->h[host_id].generation == 0)
		return DS_HOST_UNUSED;
	if (w->h[host_id].flags & DS_HB_LEFT)
		return DS_HOST_LEFT;
	age = (now_ns - w->h[host_id].changed_ns) / 1000000ull;
	if (age < g->hb_timeout_ms)
		return DS_HOST_ALIVE;
	if (age < g->hb_timeout_ms + ds_hb_margin_ms(g))
		return DS_HOST_SUSPECT;
	return DS_HOST_DEAD;
}

const char *ds_liveness_name(enum ds_liveness l)
{
	static const char *const names[] = {
		[DS_HOST_UNKNOWN] = "unknown", [DS_HOST_UNUSED] = "unused",
		[DS_HOST_LEFT] = "left",       [DS_HOST_ALIVE] = "alive",
		[DS_HOST_SUSPECT] = "suspect", [DS_HOST_DEAD] = "dead",
	};

	return l <= DS_HOST_DEAD ? names[l] : "?";
}

uint64_t ds_hb_age_ms(const struct ds_hb_watch *w, uint32_t host_id,
		      uint64_t now_ns)
{
	if (host_id == 0 || host_id > DS_MAX_HOSTS || !w->h[host_id].seen)
		return 0;
	return (now_ns - w->h[host_id].changed_ns) / 1000000ull;
}
