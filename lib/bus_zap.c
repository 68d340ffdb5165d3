/* Agent bus, manager side: the ZAP handler that admits CURVE clients by their public key. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/bus.h"
#include "lib/bus_internal.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"

/* Where libzmq looks for the ZAP handler of a context (RFC 27). */
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
/* Frames of a ZAP request: version, request id, domain, address, identity,
 * mechanism, then the mechanism's credentials (CURVE: one, the key). */
#define ZAP_FRAMES 7
#define ZAP_FRAME_MAX 256
/* Refusal log lines per BUS_LOG_WINDOW_MS; the rest are counted. */
#define ZAP_LOG_BURST 5

struct zap_req {
	char part[ZAP_FRAMES][ZAP_FRAME_MAX];
	size_t len[ZAP_FRAMES];
	int n; /* frames received (all counted, ZAP_FRAMES kept) */
};

static int zerr(void)
{
	int e = zmq_errno();

	return e > 0 ? -e : -EIO;
}

static int rcvmore(void *sock)
{
	int more = 0;
	size_t len = sizeof(more);

	return zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &len) == 0 && more;
}

static int zap_recv(void *sock, struct zap_req *r)
{
	int more, len;
	char junk[ZAP_FRAME_MAX];

	r->n = 0;
	do {
		char *dst = r->n < ZAP_FRAMES ? r->part[r->n] : junk;

		len = zmq_recv(sock, dst, ZAP_FRAME_MAX, ZMQ_DONTWAIT);
		if (len < 0)
			return r->n ? -EIO : -EAGAIN;
		if (r->n < ZAP_FRAMES)
			r->len[r->n] = (size_t)len;
		r->n++;
		more = rcvmore(sock);
	} while (more);
	return 0;
}

/* The Z85 text of a 32-byte CURVE key frame, or -EINVAL. */
static int zap_key(const struct zap_req *r, char out[BUS_CURVE_KEY_LEN + 1])
{
	if (r->n != ZAP_FRAMES || r->len[5] != 5 ||
	    memcmp(r->part[5], "CURVE", 5) != 0 || r->len[6] != 32)
		return -EINVAL;
	if (!zmq_z85_encode(out, (const uint8_t *)r->part[6], 32))
		return -EINVAL;
	return 0;
}

static int zap_reply(void *sock, const struct zap_req *r, bool ok,
		     const char *user)
{
	const char *code = ok ? "200" : "400";
	const char *text = ok ? "OK" : "unknown host key";
	size_t idlen = r->n >= 2 ? CN_MIN(r->len[1], ZAP_FRAME_MAX) : 0;

	if (zmq_send(sock, "1.0", 3, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(sock, r->part[1], idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(sock, code, 3, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(sock, text, strlen(text), ZMQ_SNDMORE | ZMQ_DONTWAIT) <
		    0 ||
	    zmq_send(sock, user, strlen(user), ZMQ_SNDMORE | ZMQ_DONTWAIT) <
		    0 ||
	    zmq_send(sock, "", 0, ZMQ_DONTWAIT) < 0)
		return zerr();
	return 0;
}

static void zap_note(struct bus_zap *z, const struct zap_req *r,
		     const char *key)
{
	uint64_t now = loop_now_ms(z->loop);
	char addr[64] = "?";

	z->refused++;
	if (now - z->log_window >= BUS_LOG_WINDOW_MS) {
		z->log_window = now;
		z->log_count = 0;
	}
	if (z->log_count++ >= ZAP_LOG_BURST)
		return;
	if (r->n >= 4)
		snprintf(addr, sizeof(addr), "%.*s",
			 (int)CN_MIN(r->len[3], sizeof(addr) - 1), r->part[3]);
	/* A public key: safe to log, and what an operator compares. */
	log_warn(BUS_COMP, "CURVE key refused",
		 "address=%s key=%s refused=%llu", addr, key,
		 (unsigned long long)z->refused);
}

/* Answer every waiting ZAP request. */
static void zap_drain(struct bus_zap *z)
{
	char key[BUS_CURVE_KEY_LEN + 1] = "";
	struct zap_req r;
	int ev = 0;
	size_t len = sizeof(ev);
	bool ok;

	while (zmq_getsockopt(z->sock, ZMQ_EVENTS, &ev, &len) == 0 &&
	       (ev & ZMQ_POLLIN)) {
		if (zap_recv(z->sock, &r) != 0)
			return;
		ok = zap_key(&r, key) == 0 &&
		     z->authorize(z->arg, NULL, key) >= 0;
		if (!ok)
			zap_note(z, &r, key[0] ? key : "(not CURVE)");
		if (zap_reply(z->sock, &r, ok, ok ? key : "") != 0)
			log_warn(BUS_COMP, "ZAP reply not sent", "err=%s",
				 cn_strerror(zerr()));
		len = sizeof(ev);
	}
}

static void zap_ready(struct loop *l, int fd, unsigned mask, void *arg)
{
	zap_drain(arg);
}

int bus_zap_open(struct bus_zap *z, struct loop *l, void *ctx,
		 int (*authorize)(void *, const char *, const char *),
		 void *arg)
{
	size_t len = sizeof(z->fd);
	int linger = 0;
	int ret;

	memset(z, 0, sizeof(*z));
	z->fd = -1;
	z->loop = l;
	z->authorize = authorize;
	z->arg = arg;
	z->sock = zmq_socket(ctx, ZMQ_REP);
	if (!z->sock)
		return zerr();
	if (zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof(linger)) ||
	    zmq_bind(z->sock, ZAP_ENDPOINT) ||
	    zmq_getsockopt(z->sock, ZMQ_FD, &z->fd, &len)) {
		ret = zerr();
		goto err;
	}
	ret = loop_fd_add(l, z->fd, LOOP_READ, zap_ready, z);
	if (ret)
		goto err;
	return 0;
err:
	zmq_close(z->sock);
	z->sock = NULL;
	z->fd = -1;
	return ret;
}

void bus_zap_poke(struct bus_zap *z)
{
	if (z->sock)
		zap_drain(z);
}

void bus_zap_close(struct bus_zap *z)
{
	if (z->fd >= 0 && loop_fd_mask(z->loop, z->fd))
		loop_fd_del(z->loop, z->fd, LOOP_READ);
	z->fd = -1;
	if (z->sock)
		zmq_close(z->sock);
	z->sock = NULL;
}
