/*
 * The agent bus: canopy-agent (ZeroMQ DEALER) <-> canopy-managerd (ROUTER),
 * each ZeroMQ message one protobuf Envelope (proto/canopy_agent.proto),
 * driven by a lib/loop event loop. docs/agent-bus.md describes the rules.
 *
 * A bus_server (manager side) binds a ROUTER socket; it knows its peers by
 * host id, which is also each agent's ZeroMQ routing id. A bus_client (agent
 * side) connects a DEALER socket whose routing id is its host id. Both sides
 * send heartbeats every interval and declare the other side gone when
 * nothing arrived for the timeout.
 *
 * Every received message is decoded, validated, then acted on. A message
 * that is malformed (shape, size, protobuf), has the wrong version, no body,
 * a host id that does not match its sender, or a reply_to that matches no
 * pending request is rejected: counted (bus_*_stats), logged (rate-limited)
 * and, when it carried a request id, answered with a CommandResult whose
 * status is INVALID_ARGUMENT.
 *
 * Requests carry a nonzero request id; their reply callback runs exactly
 * once: with the reply, with -ETIMEDOUT, or with -ECANCELED when the bus is
 * destroyed.
 *
 * Threads: everything runs on the loop's thread; no function here may be
 * called from another thread. Envelopes passed to callbacks are owned by the
 * bus and valid only during the callback. A callback must not destroy the
 * server or client that called it.
 */
#ifndef CANOPY_LIB_BUS_H
#define CANOPY_LIB_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"
#include "proto/canopy_agent.pb-c.h"

struct loop;
struct bus_server;
struct bus_client;

/* Bus protocol version carried in every envelope. */
#define BUS_VERSION 1
/* Largest envelope accepted or sent (bytes of protobuf). */
#define BUS_MSG_MAX (1024 * 1024)
/* Transport limit: a peer sending a larger frame is disconnected by
 * ZeroMQ itself (ZMQ_MAXMSGSIZE); between BUS_MSG_MAX and this the message
 * is received and rejected. */
#define BUS_WIRE_MAX (4 * BUS_MSG_MAX)
/* Longest host id (ZeroMQ routing ids are at most 255 bytes). */
#define BUS_HOST_ID_MAX 64
/* Defaults for struct bus_options fields left 0. */
#define BUS_HEARTBEAT_MS_DEFAULT 1000
#define BUS_PEER_TIMEOUT_MS_DEFAULT 10000
#define BUS_RECONNECT_MS_DEFAULT 100
#define BUS_RECONNECT_MAX_MS_DEFAULT 2000
#define BUS_HWM_DEFAULT 1000
#define BUS_MAX_PEERS_DEFAULT 4096
/* Length of a Z85-encoded CURVE key (without the terminating NUL). */
#define BUS_CURVE_KEY_LEN 40

/* Settings shared by server and client; zero fields take the defaults. */
struct bus_options {
	uint32_t heartbeat_ms; /* send a heartbeat this often */
	uint32_t peer_timeout_ms; /* other side gone after this silence */
	uint32_t reconnect_ms; /* client: first reconnect delay */
	uint32_t reconnect_max_ms; /* client: reconnect back-off cap */
	uint32_t hwm; /* send and receive high-water marks (messages) */
	uint32_t max_peers; /* server: most hosts tracked at once */
	/*
	 * CURVE (Z85 text keys, BUS_CURVE_KEY_LEN chars). All NULL: plain
	 * text. Server: curve_secret_key makes it a CURVE server. Client: all
	 * three must be set (its key pair and the server's public key).
	 * Authorising client keys (a ZAP handler) is the caller's job.
	 */
	const char *curve_secret_key;
	const char *curve_public_key;
	const char *curve_server_key;
};

/* Why a received message was rejected (index into bus_stats.rejected). */
enum bus_reject {
	BUS_REJECT_SHAPE = 0, /* not the expected number of frames */
	BUS_REJECT_SIZE, /* body larger than BUS_MSG_MAX */
	BUS_REJECT_EMPTY, /* empty body */
	BUS_REJECT_PARSE, /* body is not an Envelope */
	BUS_REJECT_VERSION, /* version != BUS_VERSION */
	BUS_REJECT_NO_BODY, /* no body set */
	BUS_REJECT_HOST_ID, /* host_id does not match the sender / us */
	BUS_REJECT_REPLY_TO, /* reply_to matches no pending request */
	BUS_REJECT_PEERS_FULL, /* server: too many peers already */
	BUS_REJECT_KEY, /* server: the sender's CURVE key is not (or no
			 * longer) this host's, or it may only enrol */
	BUS_REJECT_COUNT,
};

/* Counters of one server or client since creation. */
struct bus_stats {
	uint64_t received; /* messages accepted */
	uint64_t sent; /* messages handed to ZeroMQ */
	uint64_t send_failed; /* sends that failed (full queue, no peer) */
	uint64_t rejected_total; /* sum of rejected[] */
	uint64_t rejected[BUS_REJECT_COUNT];
	uint64_t timeouts; /* requests that timed out */
};

/*
 * Reply callback of a request: status 0 and the reply envelope (reply_to
 * equals the request id; owned by the bus, valid during the call), or
 * -ETIMEDOUT / -ECANCELED and reply NULL. Runs exactly once.
 */
typedef void (*bus_reply_fn)(void *arg, int status,
			     const Canopy__V1__Envelope *reply);

/* Server callbacks; any may be NULL. host_id is a NUL-terminated string. */
struct bus_server_ops {
	/* An accepted message that is not a heartbeat and not a reply. */
	void (*on_message)(void *arg, const char *host_id,
			   const Canopy__V1__Envelope *env);
	/* A heartbeat from a peer (liveness is handled by the bus). */
	void (*on_heartbeat)(void *arg, const char *host_id,
			     const Canopy__V1__AgentHeartbeat *hb);
	/* First accepted message from a host that was not up. */
	void (*on_peer_up)(void *arg, const char *host_id);
	/* Nothing accepted from an up host for peer_timeout_ms. */
	void (*on_peer_down)(void *arg, const char *host_id);
	/*
	 * CURVE servers only: who may talk. Called by the ZAP handler at each
	 * handshake with host_id NULL (may any host use this key?) and for
	 * every received message with the sender's host id (is this key that
	 * host's, now?). key is the client's public key, Z85. Returns
	 * BUS_KEY_HOST (a host: everything), BUS_KEY_ENROL (a one-time
	 * enrolment key: only its enrol request reaches on_enrol; it is no
	 * peer) or a negative errno (refused). NULL with CURVE: any key.
	 */
	int (*authorize)(void *arg, const char *host_id, const char *key);
	/* An enrol request from a BUS_KEY_ENROL sender (answer it with
	 * bus_server_reply). */
	void (*on_enrol)(void *arg, const char *host_id, const char *key,
			 const Canopy__V1__Envelope *env);
};

/* What authorize() says of a key. */
#define BUS_KEY_HOST 0
#define BUS_KEY_ENROL 1

/* Client callbacks; any may be NULL. */
struct bus_client_ops {
	/* An accepted message that is not a heartbeat and not a reply. */
	void (*on_message)(void *arg, const Canopy__V1__Envelope *env);
	/* First message from the server after being disconnected. */
	void (*on_connected)(void *arg);
	/* Nothing from the server for peer_timeout_ms while connected. */
	void (*on_disconnected)(void *arg);
	/* Fill an outgoing heartbeat's fields (seq is set by the bus). */
	void (*heartbeat_fill)(void *arg, Canopy__V1__AgentHeartbeat *hb);
};

/* Whether s is a usable host id: 1..BUS_HOST_ID_MAX chars of
 * [A-Za-z0-9._-]. */
int bus_host_id_valid(const char *s);
/* Short name of a reject reason ("shape", "size", ...). */
const char *bus_reject_name(enum bus_reject r);

/* ---- server (manager side) ---------------------------------------------- */

/*
 * Create a ROUTER socket bound to bind_endpoint ("tcp://0.0.0.0:5560",
 * "ipc:///run/canopy/bus") and register it with loop l. opts may be NULL
 * (defaults); ops and arg are kept (ops must outlive the server). 0 or
 * -errno (-EINVAL for bad options or keys, -EADDRINUSE, ...).
 */
CN_MUST_CHECK int bus_server_create(struct loop *l, const char *bind_endpoint,
				    const struct bus_options *opts,
				    const struct bus_server_ops *ops, void *arg,
				    struct bus_server **out);
/* Cancel every pending request (callbacks get -ECANCELED), close the
 * socket (linger 0) and free the server. NULL is a no-op. */
void bus_server_destroy(struct bus_server *s);

/*
 * One-way message (request_id 0) to host_id. env supplies the body; the
 * bus sets version, host_id, request_id, reply_to and sent_unix_ms on a
 * copy (env is not modified). 0, -EHOSTUNREACH (host not connected),
 * -EAGAIN (its queue is full), -EMSGSIZE (over BUS_MSG_MAX), -EINVAL (no
 * body or bad host id).
 */
CN_MUST_CHECK int bus_server_send(struct bus_server *s, const char *host_id,
				  const Canopy__V1__Envelope *env);
/*
 * Request to host_id: like bus_server_send with a fresh nonzero request id
 * (stored in *id_out when not NULL). On 0, cb runs exactly once later (never
 * from inside this call); on error it never runs. timeout_ms must be > 0.
 */
CN_MUST_CHECK int bus_server_request(struct bus_server *s, const char *host_id,
				     const Canopy__V1__Envelope *env,
				     uint32_t timeout_ms, bus_reply_fn cb,
				     void *arg, uint64_t *id_out);
/* Answer request req (request_id != 0, else -EINVAL) from host_id with the
 * body of reply. Errors as bus_server_send. */
CN_MUST_CHECK int bus_server_reply(struct bus_server *s, const char *host_id,
				   const Canopy__V1__Envelope *req,
				   const Canopy__V1__Envelope *reply);
/* Counters (copied into *out). */
void bus_server_stats(const struct bus_server *s, struct bus_stats *out);
/* Whether host_id is currently up (1) or not (0). */
int bus_server_peer_up(const struct bus_server *s, const char *host_id);

/* ---- client (agent side) ------------------------------------------------ */

/*
 * Create a DEALER socket with routing id host_id (bus_host_id_valid) and
 * connect it to connect_endpoint; ZeroMQ reconnects by itself. Sends its
 * first heartbeat at once. 0 or -errno (-EINVAL for a bad host id, options
 * or keys).
 */
CN_MUST_CHECK int bus_client_create(struct loop *l,
				    const char *connect_endpoint,
				    const char *host_id,
				    const struct bus_options *opts,
				    const struct bus_client_ops *ops, void *arg,
				    struct bus_client **out);
/* As bus_server_destroy. NULL is a no-op. */
void bus_client_destroy(struct bus_client *c);

/* One-way message to the server. 0, -EAGAIN (not connected or queue
 * full), -EMSGSIZE, -EINVAL (no body). env is not modified. */
CN_MUST_CHECK int bus_client_send(struct bus_client *c,
				  const Canopy__V1__Envelope *env);
/* Request to the server; contract as bus_server_request. */
CN_MUST_CHECK int bus_client_request(struct bus_client *c,
				     const Canopy__V1__Envelope *env,
				     uint32_t timeout_ms, bus_reply_fn cb,
				     void *arg, uint64_t *id_out);
/* Answer request req from the server with the body of reply. */
CN_MUST_CHECK int bus_client_reply(struct bus_client *c,
				   const Canopy__V1__Envelope *req,
				   const Canopy__V1__Envelope *reply);
/* Counters (copied into *out). */
void bus_client_stats(const struct bus_client *c, struct bus_stats *out);
/* Whether the server is currently considered reachable (1) or not (0). */
int bus_client_connected(const struct bus_client *c);

#endif
