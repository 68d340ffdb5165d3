/* canopy-managerd: ending gRPC calls, replies, stream queues, freeing. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "manager/api_internal.h"

grpc_byte_buffer *api_encode(const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	grpc_byte_buffer *bb;
	grpc_slice sl;

	sl = grpc_slice_malloc(len);
	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(sl));
	bb = grpc_raw_byte_buffer_create(&sl, 1);
	grpc_slice_unref(sl);
	return bb;
}

/* Fill ops with SEND_INITIAL_METADATA if it has not gone out yet; returns
 * the number of ops written (0 or 1). */
static size_t md_op(struct api_call *c, grpc_op *op)
{
	if (c->md_sent)
		return 0;
	memset(op, 0, sizeof(*op));
	op->op = GRPC_OP_SEND_INITIAL_METADATA;
	c->md_sent = true;
	return 1;
}

static void send_status(struct api_call *c)
{
	grpc_op ops[2];
	size_t n;

	n = md_op(c, &ops[0]);
	memset(&ops[n], 0, sizeof(ops[n]));
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	c->status_msg =
		grpc_slice_from_copied_string(c->end_msg ? c->end_msg : "");
	ops[n].data.send_status_from_server.status =
		(grpc_status_code)c->end_code;
	ops[n].data.send_status_from_server.status_details = &c->status_msg;
	c->status_started = true;
	if (api_call_batch(c, ops, n + 1, &c->t_status)) {
		grpc_slice_unref(c->status_msg);
		c->status_msg = grpc_empty_slice();
	}
}

static void queue_drop(struct api_call *c)
{
	struct api_msg *m;

	while ((m = c->q_head)) {
		c->q_head = m->next;
		grpc_byte_buffer_destroy(m->bb);
		free(m);
	}
	c->q_tail = NULL;
	c->q_len = 0;
}

/* Send the next queued message, or the status once ended and empty. */
static void flush(struct api_call *c)
{
	struct api_msg *m;
	grpc_op ops[2];
	size_t n;

	if (c->sending || c->status_started || !c->call)
		return;
	if (c->gone)
		queue_drop(c);
	if (!c->q_head) {
		if (c->ended)
			send_status(c);
		return;
	}
	m = c->q_head;
	c->q_head = m->next;
	if (!c->q_head)
		c->q_tail = NULL;
	c->q_len--;
	c->send_bb = m->bb;
	free(m);
	n = md_op(c, &ops[0]);
	memset(&ops[n], 0, sizeof(ops[n]));
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n].data.send_message.send_message = c->send_bb;
	c->sending = true;
	if (api_call_batch(c, ops, n + 1, &c->t_send)) {
		grpc_byte_buffer_destroy(c->send_bb);
		c->send_bb = NULL;
		c->sending = false;
		c->gone = true;
		queue_drop(c);
		if (c->ended)
			send_status(c);
	}
}

void api_call_sent(struct api_call *c, struct api_tag *t)
{
	if (c->send_bb) {
		grpc_byte_buffer_destroy(c->send_bb);
		c->send_bb = NULL;
	}
	if (t->kind == API_TAG_STATUS) {
		grpc_slice_unref(c->status_msg);
		c->status_msg = grpc_empty_slice();
		return;
	}
	c->sending = false;
	if (!t->ok)
		c->gone = true; /* the close tag tells the handler */
	flush(c);
}

void api_reply(struct api_call *c, const ProtobufCMessage *msg)
{
	grpc_op ops[3];
	size_t n;

	if (c->ended)
		return;
	c->send_bb = api_encode(msg);
	if (!c->send_bb) {
		api_fail(c, CN_INTERNAL, "out of memory encoding the reply");
		return;
	}
	c->ended = true;
	c->end_code = CN_OK;
	if (c->srv->on_end)
		c->srv->on_end(c->srv->arg, c, CN_OK, NULL);
	n = md_op(c, &ops[0]);
	memset(&ops[n], 0, sizeof(ops[n]));
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n].data.send_message.send_message = c->send_bb;
	n++;
	memset(&ops[n], 0, sizeof(ops[n]));
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	c->status_msg = grpc_empty_slice();
	ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
	ops[n].data.send_status_from_server.status_details = &c->status_msg;
	c->status_started = true;
	if (api_call_batch(c, ops, n + 1, &c->t_status)) {
		grpc_byte_buffer_destroy(c->send_bb);
		c->send_bb = NULL;
	}
}

void api_fail(struct api_call *c, enum cn_code code, const char *fmt, ...)
{
	va_list ap;
	char *msg = NULL;

	if (c->ended)
		return;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	c->ended = true;
	c->end_code = code;
	c->end_msg = msg;
	if (c->srv->on_end)
		c->srv->on_end(c->srv->arg, c, code, msg);
	if (code != CN_OK && code != CN_CANCELLED)
		log_debug("manager", "API call failed", "method=%s code=%s",
			  c->method, cn_code_name(code));
	flush(c);
	api_call_maybe_free(c);
}

int api_stream_send(struct api_call *c, const ProtobufCMessage *msg)
{
	struct api_msg *m;

	if (c->ended || c->gone)
		return -ECANCELED;
	if (c->q_len >= API_STREAM_QUEUE_MAX)
		return -ENOBUFS;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->bb = api_encode(msg);
	if (!m->bb) {
		free(m);
		return -ENOMEM;
	}
	if (c->q_tail)
		c->q_tail->next = m;
	else
		c->q_head = m;
	c->q_tail = m;
	c->q_len++;
	flush(c);
	return 0;
}

void api_call_on_cancel(struct api_call *c, api_cancel_fn fn, void *arg)
{
	c->on_cancel = fn;
	c->cancel_arg = arg;
}

void api_server_set_on_end(struct api_server *s, api_end_fn fn)
{
	s->on_end = fn;
}

const char *api_call_method(const struct api_call *c)
{
	return c->method;
}

void api_call_maybe_free(struct api_call *c)
{
	struct api_server *s = c->srv;

	if (c->pending > 0 || (c->call && !c->status_started))
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_calls--;
	queue_drop(c);
	if (c->recv_bb)
		grpc_byte_buffer_destroy(c->recv_bb);
	if (c->call)
		grpc_call_unref(c->call);
	grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->md);
	free(c->end_msg);
	free(c);
}
