/* canopy CLI: unary and server-streaming gRPC calls to canopy-managerd. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "cli/rpc.h"
#include "lib/grpc_call.h"

struct cli_rpc {
	grpc_channel *chan;
	grpc_completion_queue *cq; /* pluck queue shared by all calls */
};

struct cli_stream {
	struct cli_rpc *r;
	grpc_call *call;
	grpc_metadata_array md_init;
	bool md_asked; /* initial metadata requested */
	bool ended; /* status received */
};

/* The channel credentials: TLS, the cluster CA as the only root; with a
 * token, every call also carries "authorization: Bearer TOKEN" (gRPC
 * sends call credentials over secure channels only). */
static grpc_channel_credentials *rpc_creds(const char *ca_pem,
					   const char *token)
{
	grpc_channel_credentials *tls, *both;
	grpc_call_credentials *bearer;

	tls = grpc_ssl_credentials_create(ca_pem, NULL, NULL, NULL);
	if (!tls || !token || !token[0])
		return tls;
	bearer = grpc_access_token_credentials_create(token, NULL);
	if (!bearer) {
		grpc_channel_credentials_release(tls);
		return NULL;
	}
	both = grpc_composite_channel_credentials_create(tls, bearer, NULL);
	grpc_channel_credentials_release(tls);
	grpc_call_credentials_release(bearer);
	return both;
}

int cli_rpc_open(const char *server, const char *ca_pem, const char *token,
		 struct cli_rpc **out)
{
	grpc_arg args[] = {
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
		  .value.integer = CLI_RPC_MAX_RECV },
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_ENABLE_RETRIES,
		  .value.integer = 0 },
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
		  .value.integer = 200 },
	};
	grpc_channel_args ca = { .num_args = CN_ARRAY_SIZE(args),
				 .args = args };
	grpc_channel_credentials *creds;
	struct cli_rpc *r;

	*out = NULL;
	if (!ca_pem || !ca_pem[0])
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	grpc_init();
	creds = rpc_creds(ca_pem, token);
	if (!creds)
		goto err_init;
	r->chan = grpc_channel_create(server, creds, &ca);
	grpc_channel_credentials_release(creds);
	if (!r->chan)
		goto err_init;
	r->cq = grpc_completion_queue_create_for_pluck(NULL);
	if (!r->cq)
		goto err_chan;
	*out = r;
	return 0;
err_chan:
	grpc_channel_destroy(r->chan);
err_init:
	grpc_shutdown();
	free(r);
	return -ENOMEM;
}

void cli_rpc_close(struct cli_rpc *r)
{
	if (!r)
		return;
	grpc_channel_destroy(r->chan);
	cn_grpc_cq_destroy(r->cq);
	free(r);
	grpc_shutdown();
}

static gpr_timespec deadline_in(unsigned ms)
{
	if (!ms)
		return gpr_inf_future(GPR_CLOCK_MONOTONIC);
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			    gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* Fill st from a finished call's status (detail already cleaned). */
static void status_fill(struct cli_rpc *r, struct cli_status *st,
			grpc_status_code code, const char *detail)
{
	memset(st, 0, sizeof(*st));
	st->code = (int)code;
	snprintf(st->msg, sizeof(st->msg), "%s", detail);
	if (code == GRPC_STATUS_UNAVAILABLE &&
	    grpc_channel_check_connectivity_state(r->chan, 0) !=
		    GRPC_CHANNEL_READY)
		st->unreachable = true;
}

static void status_local(struct cli_status *st, int code, const char *msg)
{
	memset(st, 0, sizeof(*st));
	st->code = code;
	snprintf(st->msg, sizeof(st->msg), "%s", msg);
}

int cli_rpc_unary(struct cli_rpc *r, const char *method,
		  const ProtobufCMessage *req,
		  const ProtobufCMessageDescriptor *resp_desc,
		  unsigned timeout_ms, ProtobufCMessage **resp,
		  struct cli_status *st)
{
	struct cn_grpc_unary u;
	grpc_byte_buffer *reqb;
	int rc;

	*resp = NULL;
	reqb = cn_grpc_msg_encode(req);
	if (!reqb) {
		status_local(st, GRPC_STATUS_INTERNAL, "out of memory");
		return -ENOMEM;
	}
	rc = cn_grpc_unary_run(r->chan, r->cq, method, deadline_in(timeout_ms),
			       reqb, &u);
	grpc_byte_buffer_destroy(reqb);
	if (rc) {
		status_local(st, GRPC_STATUS_INTERNAL,
			     "the gRPC call could not be run");
		return -EIO;
	}
	status_fill(r, st, u.status, u.detail);
	if (u.status != GRPC_STATUS_OK)
		return -EREMOTEIO;
	*resp = cn_grpc_msg_decode(resp_desc, u.resp);
	if (u.resp)
		grpc_byte_buffer_destroy(u.resp);
	if (!*resp) {
		status_local(st, GRPC_STATUS_INTERNAL,
			     "the server sent a response that does not decode");
		return -EBADMSG;
	}
	return 0;
}

int cli_rpc_stream_start(struct cli_rpc *r, const char *method,
			 const ProtobufCMessage *req, unsigned timeout_ms,
			 struct cli_stream **out)
{
	struct cli_stream *s;
	grpc_byte_buffer *reqb;
	grpc_op ops[3];

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	reqb = cn_grpc_msg_encode(req);
	if (!reqb) {
		free(s);
		return -ENOMEM;
	}
	s->r = r;
	grpc_metadata_array_init(&s->md_init);
	s->call = grpc_channel_create_call(
		r->chan, NULL, GRPC_PROPAGATE_DEFAULTS, r->cq,
		grpc_slice_from_static_string(method), NULL,
		deadline_in(timeout_ms), NULL);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = reqb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	/* A failed send shows as the status read by cli_stream_next. */
	(void)!cn_grpc_batch(s->call, r->cq, ops, CN_ARRAY_SIZE(ops));
	grpc_byte_buffer_destroy(reqb);
	*out = s;
	return 0;
}

/* Read the final status of a stream into st. */
static int stream_status(struct cli_stream *s, struct cli_status *st)
{
	grpc_metadata_array md_trail;
	grpc_slice details = grpc_empty_slice();
	grpc_status_code code = GRPC_STATUS_UNKNOWN;
	grpc_op op;
	int rc = 0;

	grpc_metadata_array_init(&md_trail);
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &md_trail;
	op.data.recv_status_on_client.status = &code;
	op.data.recv_status_on_client.status_details = &details;
	if (cn_grpc_batch(s->call, s->r->cq, &op, 1)) {
		status_local(st, GRPC_STATUS_INTERNAL,
			     "the gRPC stream could not be read");
		rc = -EIO;
	} else {
		char detail[CN_GRPC_DETAIL_MAX];

		cn_grpc_slice_text(detail, sizeof(detail), details);
		status_fill(s->r, st, code, detail);
		rc = code == GRPC_STATUS_OK ? 0 : -EREMOTEIO;
	}
	s->ended = true;
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&md_trail);
	return rc;
}

int cli_stream_next(struct cli_stream *s,
		    const ProtobufCMessageDescriptor *desc,
		    ProtobufCMessage **msg, struct cli_status *st)
{
	grpc_byte_buffer *bb = NULL;
	grpc_op ops[2];
	size_t n = 0;

	*msg = NULL;
	memset(st, 0, sizeof(*st));
	if (s->ended)
		return 0;
	memset(ops, 0, sizeof(ops));
	if (!s->md_asked) {
		s->md_asked = true;
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n++].data.recv_initial_metadata.recv_initial_metadata =
			&s->md_init;
	}
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n++].data.recv_message.recv_message = &bb;
	if (cn_grpc_batch(s->call, s->r->cq, ops, n) || !bb)
		return stream_status(s, st);
	*msg = cn_grpc_msg_decode(desc, bb);
	grpc_byte_buffer_destroy(bb);
	if (!*msg) {
		grpc_call_cancel(s->call, NULL);
		(void)stream_status(s, st);
		status_local(st, GRPC_STATUS_INTERNAL,
			     "the server sent a message that does not decode");
		return -EBADMSG;
	}
	return 1;
}

void cli_stream_close(struct cli_stream *s)
{
	struct cli_status st;

	if (!s)
		return;
	if (!s->ended) {
		grpc_call_cancel(s->call, NULL);
		(void)stream_status(s, &st);
	}
	grpc_metadata_array_destroy(&s->md_init);
	grpc_call_unref(s->call);
	free(s);
}
