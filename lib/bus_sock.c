/* Agent bus: a ZeroMQ socket fed into lib/loop (ZMQ_FD), drain and send. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bus.h"
#include "lib/bus_internal.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"

static int zerr(void)
{
	int e = zmq_errno();

	return e > 0 ? -e : -EIO;
}

static int key_ok(const char *k)
{
	return !k || strnlen(k, BUS_CURVE_KEY_LEN + 1) == BUS_CURVE_KEY_LEN;
}

int bus_opts_resolve(const struct bus_options *opts, bool client,
		     struct bus_options *out)
{
	static const struct bus_options zero;
	int nkeys;

	*out = opts ? *opts : zero;
	if (!out->heartbeat_ms)
		out->heartbeat_ms = BUS_HEARTBEAT_MS_DEFAULT;
	if (!out->peer_timeout_ms)
		out->peer_timeout_ms = BUS_PEER_TIMEOUT_MS_DEFAULT;
	if (!out->reconnect_ms)
		out->reconnect_ms = BUS_RECONNECT_MS_DEFAULT;
	if (!out->reconnect_max_ms)
		out->reconnect_max_ms = BUS_RECONNECT_MAX_MS_DEFAULT;
	if (!out->hwm)
		out->hwm = BUS_HWM_DEFAULT;
	if (!out->max_peers)
		out->max_peers = BUS_MAX_PEERS_DEFAULT;
	if (out->heartbeat_ms > INT32_MAX || out->peer_timeout_ms > INT32_MAX ||
	    out->reconnect_ms > INT32_MAX ||
	    out->reconnect_max_ms > INT32_MAX || out->hwm > INT32_MAX)
		return -EINVAL;
	if (!key_ok(out->curve_secret_key) || !key_ok(out->curve_public_key) ||
	    !key_ok(out->curve_server_key))
		return -EINVAL;
	nkeys = !!out->curve_secret_key + !!out->curve_public_key +
		!!out->curve_server_key;
	if (client && nkeys != 0 && nkeys != 3)
		return -EINVAL;
	if (!client && nkeys != 0 && !out->curve_secret_key)
		return -EINVAL;
	return 0;
}

int bus_core_setopt(struct bus_core *core, int opt, const void *val, size_t len)
{
	if (zmq_setsockopt(core->sock, opt, val, len) != 0)
		return zerr();
	return 0;
}

static int setopt_int(struct bus_core *core, int opt, int v)
{
	return bus_core_setopt(core, opt, &v, sizeof(v));
}

/* CURVE keys when configured: server role on a ROUTER, client on a DEALER. */
static int apply_curve(struct bus_core *core, int type)
{
	const struct bus_options *o = &core->opts;
	int ret;

	if (!o->curve_secret_key)
		return 0;
	if (!zmq_has("curve"))
		return -EOPNOTSUPP;
	if (type == ZMQ_ROUTER) {
		ret = setopt_int(core, ZMQ_CURVE_SERVER, 1);
		return ret ? ret :
			     bus_core_setopt(core, ZMQ_CURVE_SECRETKEY,
					     o->curve_secret_key,
					     BUS_CURVE_KEY_LEN);
	}
	ret = bus_core_setopt(core, ZMQ_CURVE_SERVERKEY, o->curve_server_key,
			      BUS_CURVE_KEY_LEN);
	if (!ret)
		ret = bus_core_setopt(core, ZMQ_CURVE_PUBLICKEY,
				      o->curve_public_key, BUS_CURVE_KEY_LEN);
	if (!ret)
		ret = bus_core_setopt(core, ZMQ_CURVE_SECRETKEY,
				      o->curve_secret_key, BUS_CURVE_KEY_LEN);
	return ret;
}

static int common_opts(struct bus_core *core, int type)
{
	int64_t maxmsg = BUS_WIRE_MAX;
	size_t len = sizeof(core->fd);
	int ret;

	ret = setopt_int(core, ZMQ_LINGER, 0);
	if (!ret)
		ret = setopt_int(core, ZMQ_SNDHWM, (int)core->opts.hwm);
	if (!ret)
		ret = setopt_int(core, ZMQ_RCVHWM, (int)core->opts.hwm);
	if (!ret)
		ret = bus_core_setopt(core, ZMQ_MAXMSGSIZE, &maxmsg,
				      sizeof(maxmsg));
	if (!ret)
		ret = apply_curve(core, type);
	if (!ret && zmq_getsockopt(core->sock, ZMQ_FD, &core->fd, &len) != 0)
		ret = zerr();
	return ret;
}

int bus_core_open(struct bus_core *core, struct loop *l, int type,
		  bus_core_recv_fn recv)
{
	int ret;

	core->loop = l;
	core->recv = recv;
	core->fd = -1;
	core->next_id = bus_req_first_id();
	core->ctx = zmq_ctx_new();
	if (!core->ctx)
		return zerr();
	core->sock = zmq_socket(core->ctx, type);
	if (!core->sock) {
		ret = zerr();
		goto err_ctx;
	}
	ret = common_opts(core, type);
	if (ret)
		goto err_sock;
	return 0;

err_sock:
	zmq_close(core->sock);
	core->sock = NULL;
err_ctx:
	zmq_ctx_term(core->ctx);
	core->ctx = NULL;
	return ret;
}

static bool readable(struct bus_core *core)
{
	int ev = 0;
	size_t len = sizeof(ev);

	/* Also processes ZeroMQ's pending commands, which re-arms ZMQ_FD. */
	if (zmq_getsockopt(core->sock, ZMQ_EVENTS, &ev, &len) != 0)
		return false;
	return (ev & ZMQ_POLLIN) != 0;
}

static void frames_close(struct bus_frames *f)
{
	int i;

	for (i = 0; i < f->kept; i++)
		zmq_msg_close(&f->part[i]);
	f->kept = 0;
}

/* Receive every frame of one message, keeping the first BUS_FRAMES_KEPT. */
static int recv_one(struct bus_core *core, struct bus_frames *f)
{
	zmq_msg_t extra;
	zmq_msg_t *m;
	int more;

	f->kept = 0;
	f->total = 0;
	do {
		m = f->kept < BUS_FRAMES_KEPT ? &f->part[f->kept] : &extra;
		zmq_msg_init(m);
		if (zmq_msg_recv(m, core->sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(m);
			/* Parts of one message arrive together: only the
			 * first receive can find nothing. */
			return f->total ? -EIO : -EAGAIN;
		}
		more = zmq_msg_more(m);
		f->total++;
		if (m == &extra)
			zmq_msg_close(m);
		else
			f->kept++;
	} while (more);
	return 0;
}

static void schedule_drain(struct bus_core *core);

/* Handle every readable message (at most BUS_DRAIN_BUDGET per call). */
static void drain(struct bus_core *core)
{
	struct bus_frames f;
	int n;

	core->draining = true;
	for (n = 0; n < BUS_DRAIN_BUDGET && readable(core); n++) {
		if (recv_one(core, &f) != 0) {
			frames_close(&f);
			break;
		}
		core->recv(core, &f);
		frames_close(&f);
	}
	core->draining = false;
	if (n == BUS_DRAIN_BUDGET && readable(core))
		schedule_drain(core);
}

static int drain_timer_fn(struct loop *l, uint64_t id, void *arg)
{
	struct bus_core *core = arg;

	core->drain_timer = 0;
	drain(core);
	return LOOP_TIMER_STOP;
}

/* Continue draining from the loop soon (never re-entering a callback). */
static void schedule_drain(struct bus_core *core)
{
	int err = 0;

	if (core->drain_timer)
		return;
	core->drain_timer =
		loop_timer_add(core->loop, 0, drain_timer_fn, core, &err);
	if (!core->drain_timer)
		log_warn(BUS_COMP, "cannot schedule drain; next tick will",
			 "err=%s", cn_strerror(err));
}

void bus_core_poke(struct bus_core *core)
{
	if (!core->draining && readable(core))
		schedule_drain(core);
}

static void fd_ready(struct loop *l, int fd, unsigned mask, void *arg)
{
	drain(arg);
}

int bus_core_start(struct bus_core *core)
{
	int ret = loop_fd_add(core->loop, core->fd, LOOP_READ, fd_ready, core);

	if (ret)
		return ret;
	schedule_drain(core);
	return 0;
}

void bus_core_close(struct bus_core *core)
{
	bus_req_cancel_all(core);
	if (core->drain_timer)
		loop_timer_del(core->loop, core->drain_timer);
	core->drain_timer = 0;
	if (core->fd >= 0 && loop_fd_mask(core->loop, core->fd))
		loop_fd_del(core->loop, core->fd, LOOP_READ);
	core->fd = -1;
	if (core->sock)
		zmq_close(core->sock);
	core->sock = NULL;
	if (core->ctx)
		zmq_ctx_term(core->ctx);
	core->ctx = NULL;
}

static int send_frames(struct bus_core *core, const void *id, size_t idlen,
		       const void *buf, size_t len)
{
	if (id &&
	    zmq_send(core->sock, id, idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
		return zerr();
	if (zmq_send(core->sock, buf, len, ZMQ_DONTWAIT) < 0)
		return zerr();
	return 0;
}

int bus_core_send(struct bus_core *core, const void *id, size_t idlen,
		  const Canopy__V1__Envelope *env)
{
	size_t len = canopy__v1__envelope__get_packed_size(env);
	uint8_t *buf;
	int ret;

	if (len > BUS_MSG_MAX) {
		ret = -EMSGSIZE;
		goto out;
	}
	buf = malloc(len ? len : 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	canopy__v1__envelope__pack(env, buf);
	ret = send_frames(core, id, idlen, buf, len);
	free(buf);
out:
	if (ret)
		core->stats.send_failed++;
	else
		core->stats.sent++;
	/* A send may have consumed the ZMQ_FD wake-up of a message that
	 * arrived meanwhile: look, and drain from the loop if one is there. */
	bus_core_poke(core);
	return ret;
}
