/* etcd watches: the stream thread, with failover and revision-aware resume. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/support/time.h>

#include "lib/etcd_internal.h"
#include "lib/grpc_call.h"

/* Wake-up period of the thread to look at the stop flag. */
#define ETCD_WATCH_TICK_MS 100
/* Pause before reconnecting after a failed stream. */
#define ETCD_WATCH_RETRY_MS 100
/* How long a new stream may take to confirm the watch beyond dial_ms. */
#define ETCD_WATCH_CREATE_MS 3000

enum { TAG_START = 1, TAG_READ, TAG_STATUS };

/* One Watch stream on one endpoint. */
struct stream {
	grpc_call *call;
	grpc_byte_buffer *send_bb;
	grpc_byte_buffer *recv_bb;
	grpc_metadata_array md_init, md_trail;
	grpc_metadata require_leader;
	grpc_status_code status;
	grpc_slice details;
	bool pend_start, pend_read, pend_status;
	bool created;
	bool ended;
};

static void *tag_of(int t)
{
	return (void *)(uintptr_t)t;
}

static grpc_byte_buffer *create_request(struct etcd_watch *w)
{
	Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest cr =
		ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;

	cr.key.data = (uint8_t *)w->key;
	cr.key.len = w->key_len;
	cr.range_end.data = (uint8_t *)w->end;
	cr.range_end.len = w->end_len;
	cr.start_revision = w->next_rev;
	cr.prev_kv = w->prev_kv;
	req.request_union_case =
		ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	req.create_request = &cr;
	return cn_grpc_msg_encode(&req.base);
}

static int start_read(struct stream *s)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &s->recv_bb;
	if (grpc_call_start_batch(s->call, &op, 1, tag_of(TAG_READ), NULL))
		return -EIO;
	s->pend_read = true;
	return 0;
}

/* Create the call, send the create request and ask for the status. */
static int stream_open(struct etcd_watch *w, struct stream *s, grpc_channel *ch)
{
	grpc_op ops[3], st;

	s->call = grpc_channel_create_call(
		ch, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq,
		grpc_slice_from_static_string("/etcdserverpb.Watch/Watch"),
		NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	s->send_bb = create_request(w);
	if (!s->call || !s->send_bb)
		return -ENOMEM;
	memset(ops, 0, sizeof(ops));
	memset(&st, 0, sizeof(st));
	/* Ask the member to end the stream when it loses its leader. */
	s->require_leader.key = grpc_slice_from_static_string("hasleader");
	s->require_leader.value = grpc_slice_from_static_string("true");
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = 1;
	ops[0].data.send_initial_metadata.metadata = &s->require_leader;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = s->send_bb;
	ops[2].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[2].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
	if (grpc_call_start_batch(s->call, ops, 3, tag_of(TAG_START), NULL))
		return -EIO;
	s->pend_start = true;
	st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	st.data.recv_status_on_client.trailing_metadata = &s->md_trail;
	st.data.recv_status_on_client.status = &s->status;
	st.data.recv_status_on_client.status_details = &s->details;
	if (grpc_call_start_batch(s->call, &st, 1, tag_of(TAG_STATUS), NULL))
		return -EIO;
	s->pend_status = true;
	return start_read(s);
}

/* Is the key of a server event inside the watched range? */
static bool key_in_range(struct etcd_watch *w, const ProtobufCBinaryData *k)
{
	size_t n = CN_MIN(k->len, w->key_len);
	int lo = memcmp(k->data, w->key, n);

	if (lo < 0 || (lo == 0 && k->len < w->key_len))
		return false;
	if (w->end_len == 0)
		return k->len == w->key_len && lo == 0;
	if (w->end_len == 1 && w->end[0] == '\0')
		return true;
	n = CN_MIN(k->len, w->end_len);
	lo = memcmp(k->data, w->end, n);
	return lo < 0 || (lo == 0 && k->len < w->end_len);
}

/* Validate and convert one server event. */
static int event_convert(struct etcd_watch *w, const Etcdserverpb__Event *in,
			 struct etcd_event **out)
{
	struct etcd_event *ev;
	int rc;

	if (!in->kv || in->kv->mod_revision <= 0 ||
	    (in->type != ETCDSERVERPB__EVENT__EVENT_TYPE__PUT &&
	     in->type != ETCDSERVERPB__EVENT__EVENT_TYPE__DELETE) ||
	    !key_in_range(w, &in->kv->key))
		return -EBADMSG;
	ev = calloc(1, sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	ev->type = in->type == ETCDSERVERPB__EVENT__EVENT_TYPE__PUT ?
			   ETCD_EVENT_PUT :
			   ETCD_EVENT_DELETE;
	ev->revision = in->kv->mod_revision;
	rc = etcd_kv_copy(&ev->kv, in->kv);
	if (rc == 0 && in->prev_kv) {
		ev->prev_kv = malloc(sizeof(*ev->prev_kv));
		rc = ev->prev_kv ? etcd_kv_copy(ev->prev_kv, in->prev_kv) :
				   -ENOMEM;
		if (rc) {
			free(ev->prev_kv);
			ev->prev_kv = NULL;
		}
	}
	if (rc) {
		etcd_event_free(ev);
		return rc;
	}
	*out = ev;
	return 0;
}

/* Deliver the events of one response that are not older than next_rev. */
static int deliver(struct etcd_watch *w, Etcdserverpb__WatchResponse *r)
{
	int64_t last = 0;
	struct etcd_event *ev;
	size_t i;
	int rc;

	for (i = 0; i < r->n_events; i++) {
		if (r->events[i]->kv &&
		    r->events[i]->kv->mod_revision < w->next_rev)
			continue; /* seen before a reconnect */
		rc = event_convert(w, r->events[i], &ev);
		if (rc) {
			etcd_watch_note(w, "malformed event from %s",
					w->eps.host_port[w->cur]);
			return rc;
		}
		last = ev->revision;
		rc = etcd_watch_push(w, ev);
		if (rc)
			return rc;
	}
	/* A revision's events all come in one response (no fragments). */
	if (last >= w->next_rev)
		w->next_rev = last + 1;
	return 0;
}

static void mark_created(struct etcd_watch *w, Etcdserverpb__WatchResponse *r)
{
	if (w->next_rev == 0 && r->header)
		w->next_rev = r->header->revision + 1;
	pthread_mutex_lock(&w->lock);
	w->connects++;
	snprintf(w->endpoint, sizeof(w->endpoint), "%s",
		 w->eps.host_port[w->cur]);
	pthread_mutex_unlock(&w->lock);
}

/* Handle one message: 0 to read on, -ERANGE when compacted (final), other
 * errors to reconnect. */
static int handle(struct etcd_watch *w, struct stream *s)
{
	Etcdserverpb__WatchResponse *r;
	char msg[ETCD_ERR_MAX];
	int rc = 0;

	r = (Etcdserverpb__WatchResponse *)cn_grpc_msg_decode(
		&etcdserverpb__watch_response__descriptor, s->recv_bb);
	grpc_byte_buffer_destroy(s->recv_bb);
	s->recv_bb = NULL;
	if (!r) {
		etcd_watch_note(w, "malformed watch response from %s",
				w->eps.host_port[w->cur]);
		return -EBADMSG;
	}
	if (r->created && !s->created) {
		s->created = true;
		mark_created(w, r);
	}
	if (r->canceled && r->compact_revision > 0) {
		snprintf(msg, sizeof(msg),
			 "revision %lld was compacted (history starts at "
			 "%lld): list again, then watch from the list's "
			 "revision + 1",
			 (long long)w->next_rev,
			 (long long)r->compact_revision);
		etcd_watch_finish(w, -ERANGE, r->compact_revision, msg);
		rc = -ERANGE;
	} else if (r->canceled) {
		etcd_watch_note(w, "watch cancelled by %s: %.200s",
				w->eps.host_port[w->cur],
				r->cancel_reason ? r->cancel_reason : "");
		rc = -ECONNRESET;
	} else {
		rc = deliver(w, r);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return rc;
}

/* React to one completion; returns 1 to go on, else the stream's end. */
static int on_event(struct etcd_watch *w, struct stream *s, grpc_event ev)
{
	int rc;

	switch ((uintptr_t)ev.tag) {
	case TAG_START:
		s->pend_start = false;
		grpc_byte_buffer_destroy(s->send_bb);
		s->send_bb = NULL;
		return ev.success ? 1 : -ECONNRESET;
	case TAG_READ:
		s->pend_read = false;
		if (!ev.success || !s->recv_bb) /* wait for the status */
			return s->pend_status ? 1 : -ECONNRESET;
		rc = handle(w, s);
		if (rc)
			return rc;
		return start_read(s) ? -EIO : 1;
	case TAG_STATUS:
		s->pend_status = false;
		s->ended = true;
		return -ECONNRESET;
	}
	return 1;
}

/* Cancel the call and wait for every pending operation to complete. */
static void stream_close(struct etcd_watch *w, struct stream *s)
{
	grpc_event ev;

	if (s->call && (s->pend_start || s->pend_read || s->pend_status))
		grpc_call_cancel(s->call, NULL);
	while (s->pend_start || s->pend_read || s->pend_status) {
		ev = grpc_completion_queue_next(
			w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type != GRPC_OP_COMPLETE)
			break;
		if ((uintptr_t)ev.tag == TAG_START)
			s->pend_start = false;
		else if ((uintptr_t)ev.tag == TAG_READ)
			s->pend_read = false;
		else if ((uintptr_t)ev.tag == TAG_STATUS)
			s->pend_status = false;
	}
	if (s->send_bb)
		grpc_byte_buffer_destroy(s->send_bb);
	if (s->recv_bb)
		grpc_byte_buffer_destroy(s->recv_bb);
	if (s->call)
		grpc_call_unref(s->call);
	grpc_metadata_array_destroy(&s->md_init);
	grpc_metadata_array_destroy(&s->md_trail);
}

/* Why the stream ended, as a sentence for etcd_watch_last_error. */
static void note_end(struct etcd_watch *w, struct stream *s)
{
	char detail[ETCD_DETAIL_MAX + 1];

	cn_grpc_slice_text(detail, sizeof(detail), s->details);
	etcd_watch_note(w, "watch stream on %s ended (gRPC status %d: %s)",
			w->eps.host_port[w->cur], (int)s->status, detail);
}

/* A completion that came in as the watch stops: only note that its batch
 * is done, so that stream_close does not wait for it again. */
static void tag_done(struct stream *s, grpc_event ev)
{
	if (ev.type != GRPC_OP_COMPLETE)
		return;
	if ((uintptr_t)ev.tag == TAG_START)
		s->pend_start = false;
	else if ((uintptr_t)ev.tag == TAG_READ)
		s->pend_read = false;
	else if ((uintptr_t)ev.tag == TAG_STATUS)
		s->pend_status = false;
}

/* Run one stream on endpoint w->cur until it ends or the watch stops. */
static int stream_run(struct etcd_watch *w)
{
	uint64_t create_by = etcd_now_ms() + w->dial_ms + ETCD_WATCH_CREATE_MS;
	struct stream s;
	grpc_event ev;
	int rc;

	memset(&s, 0, sizeof(s));
	grpc_metadata_array_init(&s.md_init);
	grpc_metadata_array_init(&s.md_trail);
	s.details = grpc_empty_slice();
	if (!w->chans[w->cur])
		w->chans[w->cur] =
			etcd_channel_create(w->eps.host_port[w->cur], &w->tls);
	rc = w->chans[w->cur] ? stream_open(w, &s, w->chans[w->cur]) : -ENOMEM;
	while (rc == 0 || rc == 1) {
		ev = grpc_completion_queue_next(
			w->cq,
			etcd_deadline_at(etcd_now_ms() + ETCD_WATCH_TICK_MS),
			NULL);
		if (etcd_watch_stopping(w)) {
			tag_done(&s, ev);
			rc = -ECANCELED;
		} else if (ev.type == GRPC_QUEUE_TIMEOUT) {
			if (!s.created && etcd_now_ms() > create_by) {
				etcd_watch_note(w,
						"no watch confirmation "
						"from %s in time",
						w->eps.host_port[w->cur]);
				rc = -ETIMEDOUT;
			}
		} else if (ev.type == GRPC_OP_COMPLETE) {
			rc = on_event(w, &s, ev);
		} else {
			rc = -EIO;
		}
	}
	stream_close(w, &s);
	if (rc == -ECONNRESET && s.ended)
		note_end(w, &s);
	grpc_slice_unref(s.details);
	return s.status == GRPC_STATUS_INVALID_ARGUMENT && s.ended ? -EINVAL :
								     rc;
}

/* Sleep up to ms, returning early when the watch is being stopped. */
static void pause_unless_stopped(struct etcd_watch *w, unsigned ms)
{
	uint64_t end = etcd_now_ms() + ms;

	while (etcd_now_ms() < end && !etcd_watch_stopping(w))
		gpr_sleep_until(etcd_deadline_at(
			CN_MIN(end, etcd_now_ms() + ETCD_WATCH_TICK_MS)));
}

void *etcd_watch_main(void *arg)
{
	struct etcd_watch *w = arg;
	grpc_event ev;
	size_t i;
	int rc;

	for (;;) {
		rc = stream_run(w);
		if (rc == -ERANGE || rc == -ECANCELED)
			break;
		if (rc == -EINVAL) {
			etcd_watch_finish(w, -EINVAL, 0,
					  "the server rejected the watch "
					  "request as invalid");
			break;
		}
		/* Resume on the next member from w->next_rev. */
		w->cur = (w->cur + 1) % w->eps.n;
		pause_unless_stopped(w, ETCD_WATCH_RETRY_MS);
		if (etcd_watch_stopping(w))
			break;
	}
	for (i = 0; i < w->eps.n; i++)
		if (w->chans[i])
			grpc_channel_destroy(w->chans[i]);
	grpc_completion_queue_shutdown(w->cq);
	do {
		ev = grpc_completion_queue_next(
			w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	} while (ev.type != GRPC_QUEUE_SHUTDOWN);
	return NULL;
}
