/* Agent bus, manager side: a ROUTER socket, peers by host id, heartbeats. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bus.h"
#include "lib/bus_internal.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"

/* A host that sent an accepted message within the peer timeout. */
struct bus_peer {
	char id[BUS_HOST_ID_MAX + 1];
	uint64_t last_ms; /* loop time of its last accepted message */
};

struct bus_server {
	struct bus_core core;
	const struct bus_server_ops *ops;
	void *arg;
	struct bus_peer *peers; /* up peers, unordered */
	size_t npeers;
	size_t cap;
	uint64_t tick;
	uint64_t hb_seq;
	struct bus_zap zap; /* CURVE with ops->authorize: who may connect */
	bool zap_on;
};

static const struct bus_server_ops no_ops;

static struct bus_server *core_server(struct bus_core *core)
{
	return CN_CONTAINER_OF(core, struct bus_server, core);
}

static struct bus_peer *peer_find(const struct bus_server *s, const char *id)
{
	size_t i;

	for (i = 0; i < s->npeers; i++)
		if (strcmp(s->peers[i].id, id) == 0)
			return &s->peers[i];
	return NULL;
}

static int peer_add(struct bus_server *s, const char *id)
{
	struct bus_peer *np;
	size_t ncap;

	if (s->npeers >= s->core.opts.max_peers)
		return -ENOSPC;
	if (s->npeers == s->cap) {
		ncap = s->cap ? s->cap * 2 : 16;
		np = realloc(s->peers, ncap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		s->peers = np;
		s->cap = ncap;
	}
	np = &s->peers[s->npeers++];
	strcpy(np->id, id);
	np->last_ms = loop_now_ms(s->core.loop);
	return 0;
}

/* Mark host alive; on its first message heartbeat it and call on_peer_up.
 * 0 or -errno. */
static void heartbeat_send(struct bus_server *s, const char *host);

static int peer_touch(struct bus_server *s, const char *host)
{
	struct bus_peer *p = peer_find(s, host);
	int ret;

	if (p) {
		p->last_ms = loop_now_ms(s->core.loop);
		return 0;
	}
	ret = peer_add(s, host);
	if (ret)
		return ret;
	log_info(BUS_COMP, "peer up", "host=%s", host);
	/* Answer at once so that the agent knows it is connected. */
	heartbeat_send(s, host);
	if (s->ops->on_peer_up)
		s->ops->on_peer_up(s->arg, host);
	return 0;
}

/* Step 3: an envelope that passed validation. */
static void act(struct bus_server *s, const void *id, size_t idlen,
		const char *host, const Canopy__V1__Envelope *env)
{
	struct bus_core *core = &s->core;
	enum bus_reject why = BUS_REJECT_REPLY_TO;
	int ret;

	if (env->reply_to && !bus_req_pending(core, host, env->reply_to))
		goto reject;
	ret = peer_touch(s, host);
	if (ret) {
		why = BUS_REJECT_PEERS_FULL;
		goto reject;
	}
	core->stats.received++;
	if (env->reply_to) {
		ret = bus_req_complete(core, host, env);
		return;
	}
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_HEARTBEAT) {
		if (s->ops->on_heartbeat)
			s->ops->on_heartbeat(s->arg, host, env->heartbeat);
		return;
	}
	if (s->ops->on_message)
		s->ops->on_message(s->arg, host, env);
	return;

reject:
	bus_reject_note(core, why, host, env->request_id);
	bus_reject_reply(core, id, idlen, host, env->request_id, why);
}

/* A CURVE server with an authorize op: may this sender's key say this?
 * BUS_KEY_HOST / BUS_KEY_ENROL, or -EACCES. */
static int sender_key(struct bus_server *s, zmq_msg_t *body, const char *host,
		      const char **key)
{
	*key = NULL;
	if (!s->zap_on)
		return BUS_KEY_HOST;
	*key = zmq_msg_gets(body, "User-Id");
	if (!*key || !*host)
		return -EACCES;
	return s->ops->authorize(s->arg, host, *key);
}

/* A message from a sender with an enrolment key: only its enrol request
 * gets through, and it makes no peer (no heartbeats, no peer up). */
static void enrol_act(struct bus_server *s, const void *id, size_t idlen,
		      const char *host, const char *key,
		      const Canopy__V1__Envelope *env)
{
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_HEARTBEAT)
		return;
	if (env->body_case != CANOPY__V1__ENVELOPE__BODY_ENROL ||
	    !env->request_id || !s->ops->on_enrol) {
		bus_reject_note(&s->core, BUS_REJECT_KEY, host,
				env->request_id);
		bus_reject_reply(&s->core, id, idlen, host, env->request_id,
				 BUS_REJECT_KEY);
		return;
	}
	s->core.stats.received++;
	s->ops->on_enrol(s->arg, host, key, env);
}

/* One received message: [routing id][envelope]; decode, validate, act. */
static void server_recv(struct bus_core *core, struct bus_frames *f)
{
	struct bus_server *s = core_server(core);
	char host[BUS_HOST_ID_MAX + 1] = "";
	Canopy__V1__Envelope *env;
	enum bus_reject why;
	const char *key;
	const void *id;
	size_t idlen;
	int kind;

	if (f->kept >= 1)
		bus_host_from_id(host, zmq_msg_data(&f->part[0]),
				 zmq_msg_size(&f->part[0]));
	if (f->total != 2) {
		bus_reject_note(core, BUS_REJECT_SHAPE, host, 0);
		return;
	}
	id = zmq_msg_data(&f->part[0]);
	idlen = zmq_msg_size(&f->part[0]);
	if (bus_decode(zmq_msg_data(&f->part[1]), zmq_msg_size(&f->part[1]),
		       &env, &why)) {
		bus_reject_note(core, why, host, 0);
		return;
	}
	if (bus_validate(env, id, idlen, &why)) {
		bus_reject_note(core, why, host, env->request_id);
		bus_reject_reply(core, id, idlen, host, env->request_id, why);
		goto out;
	}
	kind = sender_key(s, &f->part[1], host, &key);
	if (kind == BUS_KEY_HOST)
		act(s, id, idlen, host, env);
	else if (kind == BUS_KEY_ENROL)
		enrol_act(s, id, idlen, host, key, env);
	else /* No reply: this sender is no host of ours (any more). */
		bus_reject_note(core, BUS_REJECT_KEY, host, env->request_id);
out:
	canopy__v1__envelope__free_unpacked(env, NULL);
}

static void heartbeat_send(struct bus_server *s, const char *host)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__AgentHeartbeat hb = CANOPY__V1__AGENT_HEARTBEAT__INIT;
	int ret;

	hb.seq = ++s->hb_seq;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_HEARTBEAT;
	env.heartbeat = &hb;
	ret = bus_server_send(s, host, &env);
	if (ret)
		log_debug(BUS_COMP, "heartbeat not sent", "host=%s err=%s",
			  host, cn_strerror(ret));
}

/* Every heartbeat interval: expire silent peers, heartbeat the others. */
static int tick_fn(struct loop *l, uint64_t tid, void *arg)
{
	struct bus_server *s = arg;
	char gone[BUS_HOST_ID_MAX + 1];
	uint64_t now = loop_now_ms(l);
	size_t i = 0;

	while (i < s->npeers) {
		if (now - s->peers[i].last_ms < s->core.opts.peer_timeout_ms) {
			heartbeat_send(s, s->peers[i].id);
			i++;
			continue;
		}
		strcpy(gone, s->peers[i].id);
		s->peers[i] = s->peers[--s->npeers];
		log_warn(BUS_COMP, "peer down", "host=%s", gone);
		if (s->ops->on_peer_down)
			s->ops->on_peer_down(s->arg, gone);
	}
	bus_core_poke(&s->core);
	if (s->zap_on)
		bus_zap_poke(&s->zap);
	return (int)s->core.opts.heartbeat_ms;
}

static int server_setup(struct bus_server *s, const char *endpoint)
{
	int one = 1;
	int err = 0;
	int ret;

	ret = bus_core_setopt(&s->core, ZMQ_ROUTER_MANDATORY, &one,
			      sizeof(one));
	if (!ret)
		ret = bus_core_setopt(&s->core, ZMQ_ROUTER_HANDOVER, &one,
				      sizeof(one));
	if (ret)
		return ret;
	/* The ZAP handler first: a CURVE server without one admits anyone. */
	if (s->core.opts.curve_secret_key && s->ops->authorize) {
		ret = bus_zap_open(&s->zap, s->core.loop, s->core.ctx,
				   s->ops->authorize, s->arg);
		if (ret)
			return ret;
		s->zap_on = true;
	}
	if (zmq_bind(s->core.sock, endpoint) != 0)
		return zmq_errno() > 0 ? -zmq_errno() : -EIO;
	s->tick = loop_timer_add(s->core.loop, s->core.opts.heartbeat_ms,
				 tick_fn, s, &err);
	if (!s->tick)
		return err ? err : -ENOMEM;
	ret = bus_core_start(&s->core);
	if (ret) {
		loop_timer_del(s->core.loop, s->tick);
		s->tick = 0;
	}
	return ret;
}

int bus_server_create(struct loop *l, const char *bind_endpoint,
		      const struct bus_options *opts,
		      const struct bus_server_ops *ops, void *arg,
		      struct bus_server **out)
{
	struct bus_server *s;
	int ret;

	if (!l || !bind_endpoint || !out)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ops = ops ? ops : &no_ops;
	s->arg = arg;
	ret = bus_opts_resolve(opts, false, &s->core.opts);
	if (ret)
		goto err_free;
	ret = bus_core_open(&s->core, l, ZMQ_ROUTER, server_recv);
	if (ret)
		goto err_free;
	ret = server_setup(s, bind_endpoint);
	if (ret)
		goto err_core;
	log_info(BUS_COMP, "server listening", "endpoint=%s", bind_endpoint);
	*out = s;
	return 0;

err_core:
	if (s->zap_on)
		bus_zap_close(&s->zap);
	bus_core_close(&s->core);
err_free:
	free(s);
	return ret;
}

void bus_server_destroy(struct bus_server *s)
{
	if (!s)
		return;
	if (s->tick)
		loop_timer_del(s->core.loop, s->tick);
	if (s->zap_on)
		bus_zap_close(&s->zap);
	bus_core_close(&s->core);
	free(s->peers);
	free(s);
}

/* Send env's body to host with the given ids. */
static int server_out(struct bus_server *s, const char *host,
		      const Canopy__V1__Envelope *env, uint64_t request_id,
		      uint64_t reply_to)
{
	Canopy__V1__Envelope e;

	bus_env_prepare(&e, env, host, request_id, reply_to);
	return bus_core_send(&s->core, host, strlen(host), &e);
}

static int out_ok(const char *host, const Canopy__V1__Envelope *env)
{
	return bus_host_id_valid(host) && env &&
	       env->body_case != CANOPY__V1__ENVELOPE__BODY__NOT_SET;
}

int bus_server_send(struct bus_server *s, const char *host_id,
		    const Canopy__V1__Envelope *env)
{
	if (!out_ok(host_id, env))
		return -EINVAL;
	return server_out(s, host_id, env, 0, 0);
}

int bus_server_request(struct bus_server *s, const char *host_id,
		       const Canopy__V1__Envelope *env, uint32_t timeout_ms,
		       bus_reply_fn cb, void *arg, uint64_t *id_out)
{
	struct bus_pending *p;
	int ret;

	if (!out_ok(host_id, env))
		return -EINVAL;
	ret = bus_req_add(&s->core, host_id, timeout_ms, cb, arg, &p);
	if (ret)
		return ret;
	ret = server_out(s, host_id, env, p->id, 0);
	if (ret) {
		bus_req_drop(&s->core, p);
		return ret;
	}
	if (id_out)
		*id_out = p->id;
	return 0;
}

int bus_server_reply(struct bus_server *s, const char *host_id,
		     const Canopy__V1__Envelope *req,
		     const Canopy__V1__Envelope *reply)
{
	if (!req || req->request_id == 0 || !out_ok(host_id, reply))
		return -EINVAL;
	return server_out(s, host_id, reply, 0, req->request_id);
}

void bus_server_stats(const struct bus_server *s, struct bus_stats *out)
{
	*out = s->core.stats;
}

int bus_server_peer_up(const struct bus_server *s, const char *host_id)
{
	return host_id && peer_find(s, host_id) != NULL;
}
