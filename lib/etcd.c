/* etcd client: creation, channels, messages and unary calls with failover. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "lib/etcd_internal.h"
#include "lib/grpc_call.h"

/* Pause between two rounds over all endpoints. */
#define ETCD_ROUND_PAUSE_MS 100

uint64_t etcd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

gpr_timespec etcd_deadline_at(uint64_t ms)
{
	uint64_t now = etcd_now_ms();
	int64_t left = ms > now ? (int64_t)(ms - now) : 0;

	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			    gpr_time_from_millis(left, GPR_TIMESPAN));
}

void etcd_set_error(struct etcd_client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

void etcd_clear_error(struct etcd_client *c)
{
	c->err[0] = '\0';
}

const char *etcd_client_last_error(const struct etcd_client *c)
{
	return c->err;
}

const char *etcd_client_endpoint(const struct etcd_client *c)
{
	return c->eps.host_port[c->cur];
}

grpc_channel *etcd_channel_create(const char *host_port,
				  const struct etcd_tls *tls)
{
	grpc_ssl_pem_key_cert_pair pair = { .private_key = tls->key,
					    .cert_chain = tls->cert };
	grpc_arg args[] = {
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
		  .value.integer = 100 },
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
		  .value.integer = 100 },
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
		  .value.integer = 1000 },
		/* etcd refuses pings more often than every 5 s. */
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_KEEPALIVE_TIME_MS,
		  .value.integer = 10000 },
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
		  .value.integer = 5000 },
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
		  .value.integer = ETCD_MAX_RECV_BYTES },
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_ENABLE_RETRIES,
		  .value.integer = 0 },
	};
	grpc_channel_args ca = { .num_args = CN_ARRAY_SIZE(args),
				 .args = args };
	grpc_channel_credentials *creds;
	grpc_channel *ch;

	if (!tls->ca)
		creds = grpc_insecure_credentials_create();
	else
		creds = grpc_ssl_credentials_create(
			tls->ca, tls->cert ? &pair : NULL, NULL, NULL);
	if (!creds)
		return NULL;
	ch = grpc_channel_create(host_port, creds, &ca);
	grpc_channel_credentials_release(creds);
	return ch;
}

int etcd_client_create(const char *endpoints, const struct etcd_options *opt,
		       struct etcd_client **out, const char **errmsg)
{
	struct etcd_client *c;
	const char *why = "";
	int rc;

	*out = NULL;
	if (errmsg)
		*errmsg = "";
	c = calloc(1, sizeof(*c));
	if (!c) {
		if (errmsg)
			*errmsg = "out of memory";
		return -ENOMEM;
	}
	rc = etcd_endpoints_parse(endpoints, &c->eps, &why);
	if (rc) {
		if (errmsg)
			*errmsg = why;
		free(c);
		return rc;
	}
	rc = etcd_tls_load(&c->tls, opt, &why);
	if (rc) {
		if (errmsg)
			*errmsg = why;
		free(c);
		return rc;
	}
	c->dial_ms = opt && opt->dial_timeout_ms ? opt->dial_timeout_ms :
						   ETCD_DEFAULT_DIAL_TIMEOUT_MS;
	c->request_ms = opt && opt->request_timeout_ms ?
				opt->request_timeout_ms :
				ETCD_DEFAULT_REQUEST_TIMEOUT_MS;
	grpc_init();
	c->cq = grpc_completion_queue_create_for_pluck(NULL);
	if (!c->cq) {
		grpc_shutdown();
		etcd_tls_clear(&c->tls);
		free(c);
		if (errmsg)
			*errmsg = "cannot create a gRPC completion queue";
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

void etcd_client_destroy(struct etcd_client *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->eps.n; i++)
		if (c->chans[i])
			grpc_channel_destroy(c->chans[i]);
	cn_grpc_cq_destroy(c->cq);
	etcd_tls_clear(&c->tls);
	free(c);
	grpc_shutdown();
}

/* The result of one attempt on one endpoint. */
struct attempt {
	grpc_status_code status;
	char detail[ETCD_DETAIL_MAX + 1];
	grpc_byte_buffer *resp;
};

/* The channel to endpoint ep, created on first use. */
static grpc_channel *chan_get(struct etcd_client *c, size_t ep,
			      struct attempt *a)
{
	if (!c->chans[ep])
		c->chans[ep] =
			etcd_channel_create(c->eps.host_port[ep], &c->tls);
	if (!c->chans[ep]) {
		a->status = GRPC_STATUS_UNAVAILABLE;
		snprintf(a->detail, sizeof(a->detail), "cannot create channel");
	}
	return c->chans[ep];
}

/* One call on endpoint ep until deadline (monotonic ms). */
static void attempt_run(struct etcd_client *c, size_t ep, const char *method,
			grpc_byte_buffer *req, uint64_t deadline,
			struct attempt *a)
{
	struct cn_grpc_unary u;
	int rc;

	memset(a, 0, sizeof(*a));
	if (!chan_get(c, ep, a))
		return;
	rc = cn_grpc_unary_run(c->chans[ep], c->cq, method,
			       etcd_deadline_at(deadline), req, &u);
	if (rc == -EIO) {
		a->status = GRPC_STATUS_INTERNAL;
		snprintf(a->detail, sizeof(a->detail), "cannot start the call");
	} else if (rc) {
		a->status = GRPC_STATUS_UNAVAILABLE;
		snprintf(a->detail, sizeof(a->detail), "call did not complete");
	} else {
		a->status = u.status;
		snprintf(a->detail, sizeof(a->detail), "%.*s", ETCD_DETAIL_MAX,
			 u.detail);
		a->resp = u.resp;
	}
}

/* How long one attempt on ep may take: a connected channel gets half the
 * request timeout when other endpoints could still answer, a channel that
 * is not connected gets the dial timeout. */
static uint64_t attempt_deadline(struct etcd_client *c, size_t ep,
				 uint64_t deadline)
{
	uint64_t now = etcd_now_ms(), d = now + c->dial_ms;

	if (c->chans[ep] && grpc_channel_check_connectivity_state(
				    c->chans[ep], 0) == GRPC_CHANNEL_READY)
		d = now + (c->eps.n > 1 ? c->request_ms / 2 : c->request_ms);
	return CN_MIN(d, deadline);
}

static bool status_retryable(grpc_status_code st)
{
	return st == GRPC_STATUS_UNAVAILABLE ||
	       st == GRPC_STATUS_DEADLINE_EXCEEDED;
}

/* Try endpoints in turn until one answers or the deadline passes. */
static int call_failover(struct etcd_client *c, const char *method,
			 grpc_byte_buffer *req, grpc_byte_buffer **resp)
{
	uint64_t deadline = etcd_now_ms() + c->request_ms;
	struct attempt a = { .status = GRPC_STATUS_DEADLINE_EXCEEDED };
	size_t tries, ep = c->cur, next;
	grpc_byte_buffer *copy;

	for (tries = 0; etcd_now_ms() < deadline; tries++) {
		next = (c->cur + tries) % c->eps.n;
		if (tries > 0 && tries % c->eps.n == 0) {
			uint64_t left = deadline - etcd_now_ms();

			gpr_sleep_until(etcd_deadline_at(
				etcd_now_ms() +
				CN_MIN(left, (uint64_t)ETCD_ROUND_PAUSE_MS)));
			if (etcd_now_ms() >= deadline)
				break;
		}
		/* A sent byte buffer is consumed: each attempt sends a copy. */
		ep = next;
		copy = grpc_byte_buffer_copy(req);
		attempt_run(c, ep, method, copy,
			    attempt_deadline(c, ep, deadline), &a);
		grpc_byte_buffer_destroy(copy);
		if (a.status == GRPC_STATUS_OK) {
			c->cur = ep;
			*resp = a.resp;
			return 0;
		}
		if (!status_retryable(a.status))
			break;
	}
	if (status_retryable(a.status)) {
		etcd_set_error(c,
			       "%s: no etcd endpoint answered within %u ms "
			       "(%zu endpoints, last %s: %s); check that etcd "
			       "is running and reachable",
			       method, c->request_ms, c->eps.n,
			       c->eps.host_port[ep],
			       a.detail[0] ? a.detail : "no detail");
		return a.status == GRPC_STATUS_UNAVAILABLE ? -ECONNREFUSED :
							     -ETIMEDOUT;
	}
	etcd_set_error(c, "%s on %s: %s (gRPC status %d)", method,
		       c->eps.host_port[ep], a.detail, (int)a.status);
	return etcd_status_errno((int)a.status);
}

int etcd_call_unary(struct etcd_client *c, const char *method,
		    const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *resp_desc,
		    ProtobufCMessage **resp)
{
	grpc_byte_buffer *reqb, *respb = NULL;
	int rc;

	*resp = NULL;
	etcd_clear_error(c);
	reqb = cn_grpc_msg_encode(req);
	if (!reqb) {
		etcd_set_error(c, "%s: cannot encode the request", method);
		return -ENOMEM;
	}
	rc = call_failover(c, method, reqb, &respb);
	grpc_byte_buffer_destroy(reqb);
	if (rc)
		return rc;
	*resp = cn_grpc_msg_decode(resp_desc, respb);
	grpc_byte_buffer_destroy(respb);
	if (!*resp) {
		etcd_set_error(c, "%s: malformed response from %s", method,
			       c->eps.host_port[c->cur]);
		return -EBADMSG;
	}
	return 0;
}
