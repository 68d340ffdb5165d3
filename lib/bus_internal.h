/*
 * Internals shared by lib/bus*.c: the socket core common to server and
 * client (ZeroMQ socket fed into the loop, drain, send), the pending request
 * table and the decode/validate steps. Not for use outside lib/bus*.c.
 * Everything runs on the loop's thread.
 */
#ifndef CANOPY_LIB_BUS_INTERNAL_H
#define CANOPY_LIB_BUS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "lib/bus.h"
#include "lib/compiler.h"

/* Log component of every bus line. */
#define BUS_COMP "bus"
/* Most messages handled per wake-up before yielding to the loop. */
#define BUS_DRAIN_BUDGET 256
/* Frames of one message kept for inspection (more are counted only). */
#define BUS_FRAMES_KEPT 2
/* Reject log lines allowed per BUS_LOG_WINDOW_MS; the rest are counted. */
#define BUS_LOG_BURST 10
#define BUS_LOG_WINDOW_MS 1000

struct bus_core;

/* One pending request: waits for a reply from peer (empty on a client). */
struct bus_pending {
	struct bus_pending *next;
	struct bus_core *core;
	uint64_t id;
	uint64_t timer;
	bus_reply_fn cb;
	void *arg;
	char peer[BUS_HOST_ID_MAX + 1];
};

/* One received message: up to BUS_FRAMES_KEPT frames and the total count. */
struct bus_frames {
	zmq_msg_t part[BUS_FRAMES_KEPT];
	int kept;
	int total;
};

typedef void (*bus_core_recv_fn)(struct bus_core *core, struct bus_frames *f);

/* What server and client share: the socket, its loop wiring, requests. */
struct bus_core {
	struct loop *loop;
	void *ctx;
	void *sock;
	int fd;
	struct bus_options opts; /* resolved: no zero fields left */
	struct bus_stats stats;
	bus_core_recv_fn recv;
	uint64_t drain_timer; /* a 0 ms timer that continues draining */
	bool draining;
	bool closing; /* being destroyed: no new requests */
	uint64_t next_id; /* next request id */
	struct bus_pending *pending;
	uint64_t log_window; /* rate limit of reject lines */
	uint32_t log_count;
	uint64_t log_suppressed;
};

/* A CURVE server's ZAP handler: a REP socket on the server's context. */
struct bus_zap {
	struct loop *loop;
	void *sock;
	int fd;
	int (*authorize)(void *arg, const char *host_id, const char *key);
	void *arg;
	uint64_t refused; /* handshakes refused */
	uint64_t log_window;
	uint32_t log_count;
};

/* ---- bus_zap.c ---------------------------------------------------------- */

/* Bind the ZAP handler of ctx (before any CURVE socket of ctx binds) and
 * register it with loop l: every handshake asks authorize(arg, NULL, key)
 * and the key (Z85) becomes the connection's User-Id. 0 or -errno. */
CN_MUST_CHECK int
bus_zap_open(struct bus_zap *z, struct loop *l, void *ctx,
	     int (*authorize)(void *, const char *, const char *), void *arg);
/* Answer what waits (timers call it in case a wake-up was lost). */
void bus_zap_poke(struct bus_zap *z);
/* Leave the loop and close the socket (before the context ends). */
void bus_zap_close(struct bus_zap *z);

/* ---- bus_sock.c ---------------------------------------------------------- */

/* Check opts (NULL = defaults) and fill every zero field of out with its
 * default. -EINVAL for a malformed key or an incomplete client key set. */
CN_MUST_CHECK int bus_opts_resolve(const struct bus_options *opts, bool client,
				   struct bus_options *out);
/* Create the context and a socket of type (ZMQ_ROUTER/ZMQ_DEALER) with the
 * common options applied; not yet in the loop. 0 or -errno. */
CN_MUST_CHECK int bus_core_open(struct bus_core *core, struct loop *l, int type,
				bus_core_recv_fn recv);
/* Register ZMQ_FD with the loop and drain what is already there. */
CN_MUST_CHECK int bus_core_start(struct bus_core *core);
/* Cancel pending requests (-ECANCELED), leave the loop, close everything. */
void bus_core_close(struct bus_core *core);
/* Drain from the loop soon if a message is waiting (timers call it in case
 * a wake-up was lost). */
void bus_core_poke(struct bus_core *core);
/* Set a ZeroMQ socket option; 0 or -errno. */
CN_MUST_CHECK int bus_core_setopt(struct bus_core *core, int opt,
				  const void *val, size_t len);
/* Pack env and send it, preceded by the routing id frame when id is not
 * NULL. Never blocks. 0 or -errno (-EMSGSIZE, -EAGAIN, -EHOSTUNREACH). */
CN_MUST_CHECK int bus_core_send(struct bus_core *core, const void *id,
				size_t idlen, const Canopy__V1__Envelope *env);

/* ---- bus.c --------------------------------------------------------------- */

/* Wall-clock time in ms (for sent_unix_ms). */
uint64_t bus_unix_ms(void);
/* A shallow copy of in with the header set (version, ids, time). */
void bus_env_prepare(Canopy__V1__Envelope *out, const Canopy__V1__Envelope *in,
		     const char *host_id, uint64_t request_id,
		     uint64_t reply_to);
/* Step 1: turn a body frame into an envelope (*out, free with
 * canopy__v1__envelope__free_unpacked). -EINVAL with *why set on failure. */
CN_MUST_CHECK int bus_decode(const void *data, size_t len,
			     Canopy__V1__Envelope **out, enum bus_reject *why);
/* Step 2: check the header against the sender's host id (bytes, may hold
 * anything a peer sent). -EINVAL with *why set on failure. */
CN_MUST_CHECK int bus_validate(const Canopy__V1__Envelope *env,
			       const void *host, size_t hostlen,
			       enum bus_reject *why);
/* Count a rejected message and log it (rate-limited). peer: printable
 * host id or "" when unknown. */
void bus_reject_note(struct bus_core *core, enum bus_reject why,
		     const char *peer, uint64_t request_id);
/* Send an INVALID_ARGUMENT CommandResult answering request_id (nothing when
 * it is 0) to the routing id (id, idlen; NULL on a client). */
void bus_reject_reply(struct bus_core *core, const void *id, size_t idlen,
		      const char *host_id, uint64_t request_id,
		      enum bus_reject why);
/* Copy a routing id into a printable host id (dst of BUS_HOST_ID_MAX + 1);
 * "" when it is not a valid host id. */
void bus_host_from_id(char *dst, const void *id, size_t len);

/* ---- bus.c: pending requests ----------------------------------------------------------- */

/* A random nonzero first request id (62 bits, so it never wraps). */
uint64_t bus_req_first_id(void);
/* Allocate a request id and a pending entry with its timeout timer. 0 or
 * -errno; the entry is linked into core->pending. */
CN_MUST_CHECK int bus_req_add(struct bus_core *core, const char *peer,
			      uint32_t timeout_ms, bus_reply_fn cb, void *arg,
			      struct bus_pending **out);
/* Whether a request with this id waits for a reply from peer. */
bool bus_req_pending(const struct bus_core *core, const char *peer,
		     uint64_t id);
/* Unlink and free p without calling its callback (its send failed). */
void bus_req_drop(struct bus_core *core, struct bus_pending *p);
/* Complete the request that reply answers, if one is pending for id from
 * peer: calls its callback with the reply and returns 0; -ENOENT else. */
CN_MUST_CHECK int bus_req_complete(struct bus_core *core, const char *peer,
				   const Canopy__V1__Envelope *reply);
/* Call every pending callback with -ECANCELED and free the entries. */
void bus_req_cancel_all(struct bus_core *core);

#endif
