/* Agent bus, common part: envelope header, decode, validate, requests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "lib/bus.h"
#include "lib/bus_internal.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"

static const char *const reject_names[BUS_REJECT_COUNT] = {
	[BUS_REJECT_SHAPE] = "shape",
	[BUS_REJECT_SIZE] = "size",
	[BUS_REJECT_EMPTY] = "empty",
	[BUS_REJECT_PARSE] = "parse",
	[BUS_REJECT_VERSION] = "version",
	[BUS_REJECT_NO_BODY] = "no_body",
	[BUS_REJECT_HOST_ID] = "host_id",
	[BUS_REJECT_REPLY_TO] = "reply_to",
	[BUS_REJECT_PEERS_FULL] = "peers_full",
	[BUS_REJECT_KEY] = "key",
};

/* The human sentence of each reject reason, sent back in the Status. */
static const char *const reject_msgs[BUS_REJECT_COUNT] = {
	[BUS_REJECT_SHAPE] = "message has the wrong number of frames; send "
			     "exactly one Envelope frame",
	[BUS_REJECT_SIZE] = "message is larger than the bus limit of 1 MiB",
	[BUS_REJECT_EMPTY] = "message body is empty; send one Envelope",
	[BUS_REJECT_PARSE] = "message body is not a protobuf Envelope",
	[BUS_REJECT_VERSION] = "unsupported bus version; this end speaks "
			       "version 1",
	[BUS_REJECT_NO_BODY] = "envelope has no body; set one of its body "
			       "fields",
	[BUS_REJECT_HOST_ID] = "envelope host_id does not match the sender's "
			       "routing id; set both to the host id",
	[BUS_REJECT_REPLY_TO] = "reply_to matches no pending request (it may "
				"have timed out)",
	[BUS_REJECT_PEERS_FULL] = "the manager tracks too many hosts; raise "
				  "its peer limit",
	[BUS_REJECT_KEY] = "this host's CURVE key is not accepted (the host "
			   "was removed, or the key may only enrol)",
};

const char *bus_reject_name(enum bus_reject r)
{
	if ((unsigned)r >= BUS_REJECT_COUNT)
		return "unknown";
	return reject_names[r];
}

static int host_char_ok(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
}

static int host_bytes_valid(const unsigned char *p, size_t len)
{
	size_t i;

	if (len == 0 || len > BUS_HOST_ID_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!host_char_ok(p[i]))
			return 0;
	return 1;
}

int bus_host_id_valid(const char *s)
{
	if (!s)
		return 0;
	return host_bytes_valid((const unsigned char *)s,
				strnlen(s, BUS_HOST_ID_MAX + 1));
}

void bus_host_from_id(char *dst, const void *id, size_t len)
{
	dst[0] = '\0';
	if (!host_bytes_valid(id, len))
		return;
	memcpy(dst, id, len);
	dst[len] = '\0';
}

uint64_t bus_unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void bus_env_prepare(Canopy__V1__Envelope *out, const Canopy__V1__Envelope *in,
		     const char *host_id, uint64_t request_id,
		     uint64_t reply_to)
{
	*out = *in;
	out->version = BUS_VERSION;
	/* protobuf-c packs but never writes through host_id. */
	out->host_id = (char *)host_id;
	out->request_id = request_id;
	out->reply_to = reply_to;
	out->sent_unix_ms = bus_unix_ms();
}

int bus_decode(const void *data, size_t len, Canopy__V1__Envelope **out,
	       enum bus_reject *why)
{
	Canopy__V1__Envelope *env;

	*out = NULL;
	if (len > BUS_MSG_MAX) {
		*why = BUS_REJECT_SIZE;
		return -EINVAL;
	}
	if (len == 0) {
		*why = BUS_REJECT_EMPTY;
		return -EINVAL;
	}
	env = canopy__v1__envelope__unpack(NULL, len, data);
	if (!env) {
		*why = BUS_REJECT_PARSE;
		return -EINVAL;
	}
	*out = env;
	return 0;
}

int bus_validate(const Canopy__V1__Envelope *env, const void *host,
		 size_t hostlen, enum bus_reject *why)
{
	const char *h = env->host_id ? env->host_id : "";

	if (env->version != BUS_VERSION) {
		*why = BUS_REJECT_VERSION;
		return -EINVAL;
	}
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY__NOT_SET) {
		*why = BUS_REJECT_NO_BODY;
		return -EINVAL;
	}
	/* The wire string may hold a NUL: compare lengths, then bytes. */
	if (strlen(h) != hostlen || memcmp(h, host, hostlen) != 0 ||
	    !host_bytes_valid(host, hostlen)) {
		*why = BUS_REJECT_HOST_ID;
		return -EINVAL;
	}
	return 0;
}

/* Whether a reject line may be written now (BUS_LOG_BURST per window). */
static bool log_allowed(struct bus_core *core)
{
	uint64_t now = loop_now_ms(core->loop);

	if (now - core->log_window >= BUS_LOG_WINDOW_MS) {
		if (core->log_suppressed)
			log_warn(BUS_COMP, "rejected messages not logged",
				 "count=%llu",
				 (unsigned long long)core->log_suppressed);
		core->log_window = now;
		core->log_count = 0;
		core->log_suppressed = 0;
	}
	if (core->log_count >= BUS_LOG_BURST) {
		core->log_suppressed++;
		return false;
	}
	core->log_count++;
	return true;
}

void bus_reject_note(struct bus_core *core, enum bus_reject why,
		     const char *peer, uint64_t request_id)
{
	if ((unsigned)why >= BUS_REJECT_COUNT)
		why = BUS_REJECT_PARSE;
	core->stats.rejected[why]++;
	core->stats.rejected_total++;
	if (!log_allowed(core))
		return;
	log_warn(BUS_COMP, "message rejected",
		 "reason=%s peer=%s request_id=%llu", reject_names[why],
		 peer[0] ? peer : "-", (unsigned long long)request_id);
}

void bus_reject_reply(struct bus_core *core, const void *id, size_t idlen,
		      const char *host_id, uint64_t request_id,
		      enum bus_reject why)
{
	Canopy__V1__Envelope body = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__Envelope env;
	Canopy__V1__CommandResult res = CANOPY__V1__COMMAND_RESULT__INIT;
	Canopy__V1__Status st = CANOPY__V1__STATUS__INIT;
	int ret;

	if (request_id == 0)
		return;
	if ((unsigned)why >= BUS_REJECT_COUNT)
		why = BUS_REJECT_PARSE;
	st.code = CN_INVALID_ARGUMENT;
	st.message = (char *)reject_msgs[why];
	res.status = &st;
	body.body_case = CANOPY__V1__ENVELOPE__BODY_RESULT;
	body.result = &res;
	/* An error reply never carries a request id: nobody answers it. */
	bus_env_prepare(&env, &body, host_id, 0, request_id);
	ret = bus_core_send(core, id, idlen, &env);
	if (ret)
		log_debug(BUS_COMP, "error reply not sent", "err=%s",
			  cn_strerror(ret));
}

/* ---- pending requests ---------------------------------------------------- */

uint64_t bus_req_first_id(void)
{
	uint64_t v = 0;

	/* A random start keeps a late reply meant for an earlier incarnation
	 * of this process from matching a new request. */
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
		v = bus_unix_ms() << 16;
	v &= (UINT64_C(1) << 62) - 1;
	return v ? v : 1;
}

static void unlink_pending(struct bus_core *core, struct bus_pending *p)
{
	struct bus_pending **pp;

	for (pp = &core->pending; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			p->next = NULL;
			return;
		}
	}
}

static int timeout_fn(struct loop *l, uint64_t id, void *arg)
{
	struct bus_pending *p = arg;
	struct bus_core *core = p->core;

	unlink_pending(core, p);
	core->stats.timeouts++;
	p->cb(p->arg, -ETIMEDOUT, NULL);
	free(p);
	return LOOP_TIMER_STOP;
}

int bus_req_add(struct bus_core *core, const char *peer, uint32_t timeout_ms,
		bus_reply_fn cb, void *arg, struct bus_pending **out)
{
	struct bus_pending *p;
	int err = 0;

	if (core->closing)
		return -ESHUTDOWN;
	if (!cb || timeout_ms == 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->core = core;
	p->cb = cb;
	p->arg = arg;
	snprintf(p->peer, sizeof(p->peer), "%s", peer);
	p->id = core->next_id++;
	if (core->next_id == 0)
		core->next_id = 1;
	p->timer = loop_timer_add(core->loop, timeout_ms, timeout_fn, p, &err);
	if (!p->timer) {
		free(p);
		return err ? err : -ENOMEM;
	}
	p->next = core->pending;
	core->pending = p;
	*out = p;
	return 0;
}

void bus_req_drop(struct bus_core *core, struct bus_pending *p)
{
	unlink_pending(core, p);
	loop_timer_del(core->loop, p->timer);
	free(p);
}

static struct bus_pending *find(const struct bus_core *core, const char *peer,
				uint64_t id)
{
	struct bus_pending *p;

	for (p = core->pending; p; p = p->next)
		if (p->id == id && strcmp(p->peer, peer) == 0)
			return p;
	return NULL;
}

bool bus_req_pending(const struct bus_core *core, const char *peer, uint64_t id)
{
	return id != 0 && find(core, peer, id) != NULL;
}

int bus_req_complete(struct bus_core *core, const char *peer,
		     const Canopy__V1__Envelope *reply)
{
	struct bus_pending *p = find(core, peer, reply->reply_to);

	if (!p)
		return -ENOENT;
	unlink_pending(core, p);
	loop_timer_del(core->loop, p->timer);
	p->cb(p->arg, 0, reply);
	free(p);
	return 0;
}

void bus_req_cancel_all(struct bus_core *core)
{
	struct bus_pending *p;

	core->closing = true;
	while ((p = core->pending)) {
		core->pending = p->next;
		loop_timer_del(core->loop, p->timer);
		p->cb(p->arg, -ECANCELED, NULL);
		free(p);
	}
}
