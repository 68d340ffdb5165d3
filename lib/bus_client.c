/* Agent bus, agent side: a DEALER socket named by host id, heartbeats. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bus.h"
#include "lib/bus_internal.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"

struct bus_client {
	struct bus_core core;
	const struct bus_client_ops *ops;
	void *arg;
	char host[BUS_HOST_ID_MAX + 1];
	bool connected;
	uint64_t last_ms; /* loop time of the server's last accepted message */
	uint64_t tick;
	uint64_t hb_seq;
};

static const struct bus_client_ops no_ops;

static struct bus_client *core_client(struct bus_core *core)
{
	return CN_CONTAINER_OF(core, struct bus_client, core);
}

/* Step 3: an envelope from the server that passed validation. */
static void act(struct bus_client *c, const Canopy__V1__Envelope *env)
{
	struct bus_core *core = &c->core;

	if (env->reply_to && !bus_req_pending(core, "", env->reply_to)) {
		bus_reject_note(core, BUS_REJECT_REPLY_TO, "server",
				env->request_id);
		bus_reject_reply(core, NULL, 0, c->host, env->request_id,
				 BUS_REJECT_REPLY_TO);
		return;
	}
	core->stats.received++;
	c->last_ms = loop_now_ms(core->loop);
	if (!c->connected) {
		c->connected = true;
		log_info(BUS_COMP, "connected to server", "host=%s", c->host);
		if (c->ops->on_connected)
			c->ops->on_connected(c->arg);
	}
	if (env->reply_to) {
		if (bus_req_complete(core, "", env) != 0)
			log_warn(BUS_COMP, "reply lost its request");
		return;
	}
	if (env->body_case == CANOPY__V1__ENVELOPE__BODY_HEARTBEAT)
		return;
	if (c->ops->on_message)
		c->ops->on_message(c->arg, env);
}

/* One received message: exactly [envelope]; decode, validate, act. */
static void client_recv(struct bus_core *core, struct bus_frames *f)
{
	struct bus_client *c = core_client(core);
	Canopy__V1__Envelope *env;
	enum bus_reject why;

	if (f->total != 1) {
		bus_reject_note(core, BUS_REJECT_SHAPE, "server", 0);
		return;
	}
	if (bus_decode(zmq_msg_data(&f->part[0]), zmq_msg_size(&f->part[0]),
		       &env, &why)) {
		bus_reject_note(core, why, "server", 0);
		return;
	}
	/* The server names us in host_id. */
	if (bus_validate(env, c->host, strlen(c->host), &why)) {
		bus_reject_note(core, why, "server", env->request_id);
		bus_reject_reply(core, NULL, 0, c->host, env->request_id, why);
	} else {
		act(c, env);
	}
	canopy__v1__envelope__free_unpacked(env, NULL);
}

static void heartbeat_send(struct bus_client *c)
{
	Canopy__V1__Envelope env = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__AgentHeartbeat hb = CANOPY__V1__AGENT_HEARTBEAT__INIT;
	int ret;

	if (c->ops->heartbeat_fill)
		c->ops->heartbeat_fill(c->arg, &hb);
	hb.seq = ++c->hb_seq;
	env.body_case = CANOPY__V1__ENVELOPE__BODY_HEARTBEAT;
	env.heartbeat = &hb;
	ret = bus_client_send(c, &env);
	if (ret)
		log_debug(BUS_COMP, "heartbeat not sent", "host=%s err=%s",
			  c->host, cn_strerror(ret));
}

/* Every heartbeat interval: notice a silent server, send a heartbeat. */
static int tick_fn(struct loop *l, uint64_t tid, void *arg)
{
	struct bus_client *c = arg;

	if (c->connected &&
	    loop_now_ms(l) - c->last_ms >= c->core.opts.peer_timeout_ms) {
		c->connected = false;
		log_warn(BUS_COMP, "server silent: disconnected",
			 "host=%s timeout_ms=%u", c->host,
			 c->core.opts.peer_timeout_ms);
		if (c->ops->on_disconnected)
			c->ops->on_disconnected(c->arg);
	}
	heartbeat_send(c);
	bus_core_poke(&c->core);
	/* Until the server answers, probe at the reconnect pace: a heartbeat
	 * sent before the connection was up failed at once (ZMQ_IMMEDIATE). */
	if (!c->connected)
		return (int)CN_MIN(c->core.opts.heartbeat_ms,
				   c->core.opts.reconnect_ms);
	return (int)c->core.opts.heartbeat_ms;
}

static int client_setup(struct bus_client *c, const char *endpoint)
{
	const struct bus_options *o = &c->core.opts;
	int one = 1;
	int ivl = (int)o->reconnect_ms;
	int ivl_max = (int)o->reconnect_max_ms;
	int err = 0;
	int ret;

	ret = bus_core_setopt(&c->core, ZMQ_ROUTING_ID, c->host,
			      strlen(c->host));
	/* Queue only on a live connection: a send while disconnected fails
	 * at once (-EAGAIN) instead of piling up stale messages. */
	if (!ret)
		ret = bus_core_setopt(&c->core, ZMQ_IMMEDIATE, &one,
				      sizeof(one));
	if (!ret)
		ret = bus_core_setopt(&c->core, ZMQ_RECONNECT_IVL, &ivl,
				      sizeof(ivl));
	if (!ret)
		ret = bus_core_setopt(&c->core, ZMQ_RECONNECT_IVL_MAX, &ivl_max,
				      sizeof(ivl_max));
	if (ret)
		return ret;
	if (zmq_connect(c->core.sock, endpoint) != 0)
		return zmq_errno() > 0 ? -zmq_errno() : -EIO;
	/* The first heartbeat goes out as soon as the loop runs. */
	c->tick = loop_timer_add(c->core.loop, 0, tick_fn, c, &err);
	if (!c->tick)
		return err ? err : -ENOMEM;
	ret = bus_core_start(&c->core);
	if (ret) {
		loop_timer_del(c->core.loop, c->tick);
		c->tick = 0;
	}
	return ret;
}

int bus_client_create(struct loop *l, const char *connect_endpoint,
		      const char *host_id, const struct bus_options *opts,
		      const struct bus_client_ops *ops, void *arg,
		      struct bus_client **out)
{
	struct bus_client *c;
	int ret;

	if (!l || !connect_endpoint || !out || !bus_host_id_valid(host_id))
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ops = ops ? ops : &no_ops;
	c->arg = arg;
	strcpy(c->host, host_id);
	ret = bus_opts_resolve(opts, true, &c->core.opts);
	if (ret)
		goto err_free;
	ret = bus_core_open(&c->core, l, ZMQ_DEALER, client_recv);
	if (ret)
		goto err_free;
	ret = client_setup(c, connect_endpoint);
	if (ret)
		goto err_core;
	log_info(BUS_COMP, "client connecting", "host=%s endpoint=%s", c->host,
		 connect_endpoint);
	*out = c;
	return 0;

err_core:
	bus_core_close(&c->core);
err_free:
	free(c);
	return ret;
}

void bus_client_destroy(struct bus_client *c)
{
	if (!c)
		return;
	if (c->tick)
		loop_timer_del(c->core.loop, c->tick);
	bus_core_close(&c->core);
	free(c);
}

static int client_out(struct bus_client *c, const Canopy__V1__Envelope *env,
		      uint64_t request_id, uint64_t reply_to)
{
	Canopy__V1__Envelope e;

	bus_env_prepare(&e, env, c->host, request_id, reply_to);
	return bus_core_send(&c->core, NULL, 0, &e);
}

static int out_ok(const Canopy__V1__Envelope *env)
{
	return env && env->body_case != CANOPY__V1__ENVELOPE__BODY__NOT_SET;
}

int bus_client_send(struct bus_client *c, const Canopy__V1__Envelope *env)
{
	if (!out_ok(env))
		return -EINVAL;
	return client_out(c, env, 0, 0);
}

int bus_client_request(struct bus_client *c, const Canopy__V1__Envelope *env,
		       uint32_t timeout_ms, bus_reply_fn cb, void *arg,
		       uint64_t *id_out)
{
	struct bus_pending *p;
	int ret;

	if (!out_ok(env))
		return -EINVAL;
	ret = bus_req_add(&c->core, "", timeout_ms, cb, arg, &p);
	if (ret)
		return ret;
	ret = client_out(c, env, p->id, 0);
	if (ret) {
		bus_req_drop(&c->core, p);
		return ret;
	}
	if (id_out)
		*id_out = p->id;
	return 0;
}

int bus_client_reply(struct bus_client *c, const Canopy__V1__Envelope *req,
		     const Canopy__V1__Envelope *reply)
{
	if (!req || req->request_id == 0 || !out_ok(reply))
		return -EINVAL;
	return client_out(c, reply, 0, req->request_id);
}

void bus_client_stats(const struct bus_client *c, struct bus_stats *out)
{
	*out = c->core.stats;
}

int bus_client_connected(const struct bus_client *c)
{
	return c->connected ? 1 : 0;
}
