/* canopy-managerd: the gRPC C core server: queue thread, calls, dispatch. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "lib/log.h"
#include "lib/loop.h"
#include "manager/api_internal.h"

/* How long destroy waits for live calls to end. */
#define API_SHUTDOWN_MS 3000

static void on_tag(void *arg);

/* The queue thread: wait, then hand each completion to the loop. */
static void *cq_thread(void *arg)
{
	struct api_server *s = arg;
	grpc_event ev;
	struct api_tag *t;

	for (;;) {
		ev = grpc_completion_queue_next(
			s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		t = ev.tag;
		t->ok = ev.success;
		while (loop_post(s->l, on_tag, t) != 0)
			usleep(1000); /* out of memory: try again */
	}
	return NULL;
}

static void tag_init(struct api_tag *t, enum api_tag_kind kind,
		     struct api_call *c, struct api_server *s)
{
	t->kind = kind;
	t->call = c;
	t->srv = s;
	t->ok = 0;
}

int api_call_request(struct api_server *s)
{
	struct api_call *c = calloc(1, sizeof(*c));
	grpc_call_error e;

	if (!c)
		return -ENOMEM;
	c->srv = s;
	grpc_call_details_init(&c->details);
	grpc_metadata_array_init(&c->md);
	tag_init(&c->t_new, API_TAG_NEW, c, s);
	tag_init(&c->t_recv, API_TAG_RECV, c, s);
	tag_init(&c->t_send, API_TAG_SEND, c, s);
	tag_init(&c->t_status, API_TAG_STATUS, c, s);
	tag_init(&c->t_close, API_TAG_CLOSE, c, s);
	c->next = s->calls;
	if (s->calls)
		s->calls->prev = c;
	s->calls = c;
	s->n_calls++;
	c->pending = 1;
	e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md,
				     s->cq, s->cq, &c->t_new);
	if (e != GRPC_CALL_OK) {
		c->pending = 0;
		api_call_maybe_free(c);
		return -EIO;
	}
	return 0;
}

int api_call_batch(struct api_call *c, const grpc_op *ops, size_t n,
		   struct api_tag *t)
{
	if (grpc_call_start_batch(c->call, ops, n, t, NULL) != GRPC_CALL_OK)
		return -EIO;
	c->pending++;
	return 0;
}

/* Copy the method name as printable text. */
static void method_copy(struct api_call *c)
{
	size_t len = GRPC_SLICE_LENGTH(c->details.method), i;
	const unsigned char *p = GRPC_SLICE_START_PTR(c->details.method);

	if (len >= sizeof(c->method))
		len = sizeof(c->method) - 1;
	for (i = 0; i < len; i++)
		c->method[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	c->method[len] = '\0';
}

/* A new call: wait for its close and its request message. */
static void call_begin(struct api_call *c)
{
	grpc_op close_op = { 0 }, recv_op = { 0 };

	method_copy(c);
	close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	close_op.data.recv_close_on_server.cancelled = &c->cancelled;
	if (api_call_batch(c, &close_op, 1, &c->t_close)) {
		api_fail(c, CN_INTERNAL, "cannot start the call");
		return;
	}
	recv_op.op = GRPC_OP_RECV_MESSAGE;
	recv_op.data.recv_message.recv_message = &c->recv_bb;
	if (api_call_batch(c, &recv_op, 1, &c->t_recv))
		api_fail(c, CN_INTERNAL, "cannot read the request");
}

static ProtobufCMessage *decode(const ProtobufCMessageDescriptor *d,
				grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader r;
	ProtobufCMessage *msg;
	grpc_slice all;

	if (!grpc_byte_buffer_reader_init(&r, bb))
		return NULL;
	all = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	msg = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(all),
					GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
	return msg;
}

/* The request arrived: decode, gate, then the handler. */
static void dispatch(struct api_call *c)
{
	const struct api_method *m;
	ProtobufCMessage *req;

	m = api_method_find(
		(const char *)GRPC_SLICE_START_PTR(c->details.method),
		GRPC_SLICE_LENGTH(c->details.method));
	if (!m) {
		api_fail(c, CN_UNIMPLEMENTED,
			 "method %s is not served by canopy-managerd; check "
			 "that the client and manager versions match",
			 c->method);
		return;
	}
	if (!c->recv_bb) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "no request message: send one %s", m->req->name);
		return;
	}
	req = decode(m->req, c->recv_bb);
	grpc_byte_buffer_destroy(c->recv_bb);
	c->recv_bb = NULL;
	if (!req) {
		api_fail(c, CN_INVALID_ARGUMENT,
			 "the request is not a valid %s message; send a "
			 "well-formed protobuf",
			 m->req->name);
		return;
	}
	if (!c->srv->gate || c->srv->gate(c->srv->arg, c, req) == 0)
		m->fn(c->srv->arg, c, req);
	protobuf_c_message_free_unpacked(req, NULL);
}

static void on_new(struct api_server *s, struct api_call *c, int ok)
{
	c->pending--;
	if (!s->shutting_down && api_call_request(s))
		log_error("manager", "cannot accept more API calls");
	if (!ok || !c->call)
		return; /* shutting down: the record is freed below */
	call_begin(c);
}

static void on_close(struct api_call *c)
{
	c->pending--;
	if (!c->cancelled || c->ended)
		return;
	c->gone = true;
	if (c->on_cancel)
		c->on_cancel(c->cancel_arg, c);
	else
		api_fail(c, CN_CANCELLED, "the client cancelled the call");
}

static void on_tag(void *arg)
{
	struct api_tag *t = arg;
	struct api_call *c = t->call;

	if (t->kind == API_TAG_SHUTDOWN) {
		t->srv->shutdown_done = true;
		return;
	}
	c->pending++; /* hold c while we work on it */
	switch (t->kind) {
	case API_TAG_NEW:
		on_new(t->srv, c, t->ok);
		break;
	case API_TAG_RECV:
		c->pending--;
		if (t->ok && !c->ended)
			dispatch(c);
		else if (!c->ended)
			api_fail(c, CN_CANCELLED, "the request was not read");
		break;
	case API_TAG_SEND:
	case API_TAG_STATUS:
		c->pending--;
		api_call_sent(c, t);
		break;
	case API_TAG_CLOSE:
		on_close(c);
		break;
	default:
		break;
	}
	c->pending--;
	api_call_maybe_free(c);
}

/* TLS-only credentials: TLS 1.2 minimum (gRPC's default range is 1.2 to
 * 1.3 and it negotiates 1.3 when the client can), no client certificate. */
static grpc_server_credentials *tls_creds(const struct api_tls *tls)
{
	grpc_ssl_pem_key_cert_pair pair = {
		.private_key = tls->key_pem,
		.cert_chain = tls->cert_chain_pem,
	};

	return grpc_ssl_server_credentials_create_ex(
		NULL, &pair, 1, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE, NULL);
}

static int server_setup(struct api_server *s, const char *listen,
			const struct api_tls *tls)
{
	grpc_arg args[2];
	grpc_channel_args ca = { 2, args };
	grpc_server_credentials *creds;
	int port;

	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[0].value.integer = API_MAX_REQUEST_BYTES;
	/* A second manager on the same port must fail, not share it. */
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
	args[1].value.integer = 0;
	s->server = grpc_server_create(&ca, NULL);
	s->cq = grpc_completion_queue_create_for_next(NULL);
	if (!s->server || !s->cq)
		return -ENOMEM;
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	creds = tls_creds(tls);
	if (!creds)
		return -EINVAL;
	port = grpc_server_add_http2_port(s->server, listen, creds);
	grpc_server_credentials_release(creds);
	if (port == 0)
		return -EADDRINUSE;
	grpc_server_start(s->server);
	return 0;
}

int api_server_create(struct loop *l, const char *listen,
		      const struct api_tls *tls, api_gate_fn gate, void *arg,
		      struct api_server **out)
{
	struct api_server *s;
	int rc;

	*out = NULL;
	if (!tls || !tls->cert_chain_pem || !tls->key_pem)
		return -EINVAL;
	grpc_init();
	s = calloc(1, sizeof(*s));
	if (!s) {
		grpc_shutdown();
		return -ENOMEM;
	}
	s->l = l;
	s->gate = gate;
	s->arg = arg;
	tag_init(&s->t_shutdown, API_TAG_SHUTDOWN, NULL, s);
	rc = server_setup(s, listen, tls);
	if (rc)
		goto err;
	rc = -pthread_create(&s->thread, NULL, cq_thread, s);
	if (rc)
		goto err;
	s->thread_started = true;
	rc = api_call_request(s);
	if (rc)
		goto err;
	*out = s;
	return 0;
err:
	api_server_destroy(s);
	return rc;
}

/* Let the loop run until every call has ended or the time is up. */
static void drain(struct api_server *s)
{
	uint64_t end = loop_now_ms(s->l) + API_SHUTDOWN_MS;
	int rc;

	while ((!s->shutdown_done || s->calls) && loop_now_ms(s->l) < end) {
		rc = loop_run_once(s->l, 50);
		if (rc < 0)
			break;
	}
	if (s->calls)
		log_warn("manager", "API calls still open at shutdown",
			 "calls=%zu", s->n_calls);
}

void api_server_destroy(struct api_server *s)
{
	if (!s)
		return;
	s->shutting_down = true;
	if (s->server && s->thread_started) {
		grpc_server_shutdown_and_notify(s->server, s->cq,
						&s->t_shutdown);
		grpc_server_cancel_all_calls(s->server);
		drain(s);
	}
	if (s->cq)
		grpc_completion_queue_shutdown(s->cq);
	if (s->thread_started)
		pthread_join(s->thread, NULL);
	if (s->server)
		grpc_server_destroy(s->server);
	if (s->cq)
		grpc_completion_queue_destroy(s->cq);
	free(s);
	grpc_shutdown();
}
