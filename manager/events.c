/*
 * canopy-managerd: the event log: append (gap-free seq kept in etcd with
 * each event), ListEvents, and WatchEvents streams. Only the leader writes
 * events and only the leader serves streams, so each append is pushed to
 * the open streams from memory after it is stored: no event reaches a
 * stream before etcd has it, and no stream needs its own etcd watch.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/etcd.h"
#include "lib/etcd_range.h"
#include "lib/log.h"
#include "manager/manager.h"

/* Most events a WatchEvents stream replays before going live. */
#define MGR_WATCH_REPLAY_MAX 1000
/* Events read per range call. */
#define MGR_EVENT_BATCH 256

struct mgr_watcher {
	struct mgr_watcher *next;
	struct manager *m;
	struct api_call *c;
	uint64_t last; /* seq of the last event sent */
};

int mgr_events_start(struct manager *m)
{
	return mgr_seq_load(m, MGR_KEY_EVENT_SEQ, &m->event_seq);
}

static void watchers_push(struct manager *m, const Canopy__V1__Event *ev);

/* Store ev as the next event; -ESTALE if the counter moved under us. */
static int append(struct manager *m, Canopy__V1__Event *ev)
{
	int rc;

	ev->seq = m->event_seq + 1;
	rc = mgr_seq_put(m, MGR_KEY_EVENT_SEQ, MGR_PREFIX_EVENTS, m->event_seq,
			 &ev->base);
	if (!rc)
		m->event_seq = ev->seq;
	return rc;
}

void mgr_event(struct manager *m, Canopy__V1__EventSeverity sev,
	       const char *kind, const char *object, const char *task,
	       const char *fmt, ...)
{
	Canopy__V1__Event ev = CANOPY__V1__EVENT__INIT;
	char *msg = NULL;
	va_list ap;
	int rc;

	if (!m->leader)
		return;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	ev.unix_ms = mgr_unix_ms();
	ev.severity = sev;
	ev.kind = (char *)kind;
	ev.object = (char *)object;
	ev.task = (char *)(task ? task : "");
	ev.message = msg ? msg : (char *)"";
	rc = append(m, &ev);
	if (rc == -ESTALE && mgr_events_start(m) == 0)
		rc = append(m, &ev);
	if (rc)
		log_warn("manager", "event not stored", "kind=%s err=\"%s\"",
			 kind, cn_strerror(rc));
	else
		watchers_push(m, &ev);
	free(msg);
}

/* Read events [lo, hi] (at most MGR_EVENT_BATCH); *out is the caller's. */
static int events_read(struct manager *m, uint64_t lo, uint64_t hi,
		       struct etcd_kvs **out)
{
	char from[MGR_KEY_MAX], to[MGR_KEY_MAX];
	int rc;

	rc = mgr_key_event(from, sizeof(from), lo);
	if (!rc)
		rc = mgr_key_event(to, sizeof(to), hi + 1);
	if (rc)
		return rc;
	return etcd_kv_range_between(m->etcd, from, to, MGR_EVENT_BATCH, false,
				     out);
}

static Canopy__V1__Event *event_decode(const struct etcd_kv *kv)
{
	return canopy__v1__event__unpack(NULL, kv->value_len,
					 (const uint8_t *)kv->value);
}

void api_list_events(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__ListEventsRequest *req = (const void *)r;
	Canopy__V1__ListEventsResponse resp =
		CANOPY__V1__LIST_EVENTS_RESPONSE__INIT;
	Canopy__V1__Event *evs[MGR_EVENT_BATCH];
	struct manager *m = arg;
	struct etcd_kvs *kvs = NULL;
	size_t limit = req->limit ? req->limit : 100, n = 0, i;
	uint64_t top = m->event_seq, lo;
	int rc;

	if (limit > MGR_EVENT_BATCH)
		limit = MGR_EVENT_BATCH;
	if (req->before_seq && req->before_seq - 1 < top)
		top = req->before_seq - 1;
	if (top > 0) {
		lo = top >= limit ? top - limit + 1 : 1;
		rc = events_read(m, lo, top, &kvs);
		if (rc) {
			mgr_fail_store(m, c, rc, "listing events");
			return;
		}
		for (i = kvs->n_kvs; i-- > 0;) /* newest first */
			if ((evs[n] = event_decode(&kvs->kvs[i])))
				n++;
		etcd_kvs_free(kvs);
	}
	resp.n_events = n;
	resp.events = evs;
	api_reply(c, &resp.base);
	for (i = 0; i < n; i++)
		canopy__v1__event__free_unpacked(evs[i], NULL);
}

static void watcher_unlink(struct manager *m, struct mgr_watcher *w)
{
	struct mgr_watcher **pp;

	for (pp = &m->watchers; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			m->n_watchers--;
			break;
		}
	free(w);
}

static void watcher_end(struct manager *m, struct mgr_watcher *w,
			enum cn_code code, const char *msg)
{
	struct api_call *c = w->c;

	watcher_unlink(m, w);
	api_fail(c, code, "%s", msg);
}

static void watchers_push(struct manager *m, const Canopy__V1__Event *ev)
{
	struct mgr_watcher *w, *next;

	for (w = m->watchers; w; w = next) {
		next = w->next;
		if (ev->seq <= w->last)
			continue;
		if (api_stream_send(w->c, &ev->base))
			watcher_end(m, w, CN_RESOURCE_EXHAUSTED,
				    "the client reads too slowly; watch again "
				    "from the last seq it got");
		else
			w->last = ev->seq;
	}
}

static void watcher_cancel(void *arg, struct api_call *c)
{
	struct mgr_watcher *w = arg;

	watcher_unlink(w->m, w);
	api_fail(c, CN_CANCELLED, "the client went away");
}

/* Send the stored events after w->last (the newest MGR_WATCH_REPLAY_MAX). */
static int replay(struct manager *m, struct mgr_watcher *w)
{
	uint64_t top = m->event_seq, lo = w->last + 1, seen;
	struct etcd_kvs *kvs = NULL;
	Canopy__V1__Event *ev;
	size_t i;
	int rc;

	if (top >= MGR_WATCH_REPLAY_MAX && lo < top - MGR_WATCH_REPLAY_MAX + 1)
		lo = top - MGR_WATCH_REPLAY_MAX + 1;
	while (lo <= top) {
		rc = events_read(m, lo, top, &kvs);
		if (rc)
			return rc;
		seen = top; /* nothing more unless a key says otherwise */
		for (i = 0; i < kvs->n_kvs; i++) {
			ev = event_decode(&kvs->kvs[i]);
			if (!ev)
				continue;
			if (ev->seq > w->last &&
			    api_stream_send(w->c, &ev->base) == 0)
				w->last = ev->seq;
			if (kvs->more)
				seen = ev->seq;
			canopy__v1__event__free_unpacked(ev, NULL);
		}
		etcd_kvs_free(kvs);
		lo = seen + 1;
	}
	return 0;
}

void api_watch_events(void *arg, struct api_call *c, const ProtobufCMessage *r)
{
	const Canopy__V1__WatchEventsRequest *req = (const void *)r;
	struct manager *m = arg;
	struct mgr_watcher *w;
	int rc;

	if (m->n_watchers >= MGR_STREAMS_MAX) {
		api_fail(c, CN_RESOURCE_EXHAUSTED,
			 "too many WatchEvents streams; retry later");
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		api_fail(c, CN_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	w->m = m;
	w->c = c;
	w->last = req->after_seq;
	rc = replay(m, w);
	if (rc) {
		free(w);
		mgr_fail_store(m, c, rc, "replaying events");
		return;
	}
	w->next = m->watchers;
	m->watchers = w;
	m->n_watchers++;
	api_call_on_cancel(c, watcher_cancel, w);
}

void mgr_events_stop(struct manager *m)
{
	while (m->watchers)
		watcher_end(m, m->watchers, CN_UNAVAILABLE,
			    "this manager stepped down; watch again on the "
			    "new leader");
}
