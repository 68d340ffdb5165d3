/*
 * Private parts of the etcd client (lib/etcd*.c only): the client struct,
 * endpoint parsing, channels, the unary call with failover and the
 * conversion of etcd's KeyValue into struct etcd_kv.
 */
#ifndef CANOPY_LIB_ETCD_INTERNAL_H
#define CANOPY_LIB_ETCD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "lib/compiler.h"
#include "lib/etcd.h"
#include "proto/etcd_rpc.pb-c.h"

/* Longest "host:port" endpoint. */
#define ETCD_ENDPOINT_MAX 256
/* Size of a stored error sentence. */
#define ETCD_ERR_MAX 512
/* Status details longer than this are cut in error sentences. */
#define ETCD_DETAIL_MAX 200
/* Largest response accepted from a server. */
#define ETCD_MAX_RECV_BYTES (64 * 1024 * 1024)

/* A parsed endpoint list. */
struct etcd_endpoints {
	size_t n;
	char host_port[ETCD_MAX_ENDPOINTS][ETCD_ENDPOINT_MAX];
};

/* TLS material as PEM text (all NULL: plaintext). */
struct etcd_tls {
	char *ca; /* root certificates */
	char *cert; /* client certificate chain, or NULL */
	char *key; /* its key, or NULL */
};

struct etcd_client {
	struct etcd_endpoints eps;
	struct etcd_tls tls;
	size_t cur; /* index of the endpoint that answered last */
	grpc_channel *chans[ETCD_MAX_ENDPOINTS]; /* created on first use */
	grpc_completion_queue *cq; /* pluck queue for unary calls */
	unsigned dial_ms;
	unsigned request_ms;
	char err[ETCD_ERR_MAX];
};

/* Parse "a:1,http://b:2" into eps. 0 or -EINVAL / -EPROTONOSUPPORT with a
 * static sentence in *why. No allocation, no gRPC (unit-testable). */
CN_MUST_CHECK int etcd_endpoints_parse(const char *list,
				       struct etcd_endpoints *eps,
				       const char **why);
/* Validate a key: non-empty, at most ETCD_MAX_KEY_LEN bytes. 0 or -EINVAL
 * with a sentence in *why. */
CN_MUST_CHECK int etcd_key_check(const char *key, const char **why);
/* The end of the range of every key starting with prefix (etcd's
 * "prefix + 1"): written to buf (size at least len + 1); *end_len gets its
 * length. A prefix of only 0xff bytes gives "\0" (to the end of keyspace). */
void etcd_prefix_end(const char *prefix, size_t len, char *buf,
		     size_t *end_len);
/* Map a gRPC status number to a negative errno (via lib/err.h). */
int etcd_status_errno(int grpc_status);

/* A channel to "host:port" with the client's reconnect and keepalive
 * settings, over TLS when tls->ca is set; NULL on failure. */
grpc_channel *etcd_channel_create(const char *host_port,
				  const struct etcd_tls *tls);

/* Read the TLS files opt names into t (etcd_tls.c). 0 (nothing to read
 * is fine), -EINVAL / -ENOENT / -EBADMSG / -ENOMEM with a static sentence
 * in *why. */
CN_MUST_CHECK int etcd_tls_load(struct etcd_tls *t,
				const struct etcd_options *opt,
				const char **why);
/* Copy src into dst (a watch keeps its own). 0 or -ENOMEM. */
CN_MUST_CHECK int etcd_tls_copy(struct etcd_tls *dst,
				const struct etcd_tls *src);
/* Free the texts (the key is wiped first). */
void etcd_tls_clear(struct etcd_tls *t);

/* Record a failure sentence on the client. */
void etcd_set_error(struct etcd_client *c, const char *fmt, ...)
	CN_PRINTF(2, 3);
void etcd_clear_error(struct etcd_client *c);

/* Call method ("/etcdserverpb.KV/Range") with req, failing over between
 * endpoints until the request deadline. A streaming method may be called
 * this way when one request and one response suffice (the client
 * half-closes after sending). 0 with *resp (free with
 * protobuf_c_message_free_unpacked) or -errno with the error recorded. */
CN_MUST_CHECK int etcd_call_unary(struct etcd_client *c, const char *method,
				  const ProtobufCMessage *req,
				  const ProtobufCMessageDescriptor *resp_desc,
				  ProtobufCMessage **resp);

/* Send a RangeRequest the caller built and convert the answer (kvs,
 * header revision, more, count) into a new *out (free with
 * etcd_kvs_free). 0, -EBADMSG for a response without a header, -ENOMEM or
 * a call error, recorded on c. */
CN_MUST_CHECK int etcd_kv_range_run(struct etcd_client *c,
				    const Etcdserverpb__RangeRequest *req,
				    struct etcd_kvs **out);

/* Copy a server KeyValue into dst (validated, NUL-terminated copies).
 * 0, -EBADMSG (NULL kv) or -ENOMEM. */
CN_MUST_CHECK int etcd_kv_copy(struct etcd_kv *dst,
			       const Etcdserverpb__KeyValue *src);
/* Free what etcd_kv_copy allocated (not dst itself). */
void etcd_kv_clear(struct etcd_kv *kv);
/* Copy n server kvs into a new array (*out NULL when n is 0). */
CN_MUST_CHECK int etcd_kvs_copy(struct etcd_kv **out,
				Etcdserverpb__KeyValue *const *src, size_t n);

/* Monotonic milliseconds. */
uint64_t etcd_now_ms(void);
/* Realtime gRPC deadline at monotonic time ms. */
gpr_timespec etcd_deadline_at(uint64_t ms);

/* --- watches (etcd_watch.c: the stream thread; etcd_watch_queue.c: the
 * queue the reader takes events from) --- */

/* Most events queued before the watch thread stops reading the stream. */
#define ETCD_WATCH_QUEUE_MAX 4096

struct etcd_watch {
	/* Set at start, then read-only. */
	struct etcd_endpoints eps;
	struct etcd_tls tls;
	unsigned dial_ms;
	char key[ETCD_MAX_KEY_LEN + 1];
	size_t key_len;
	char end[ETCD_MAX_KEY_LEN + 1];
	size_t end_len;
	bool prev_kv;
	int efd; /* eventfd: readable while events or the end are queued */
	pthread_t thread;
	/* Watch thread only. */
	size_t cur;
	int64_t next_rev; /* first revision not yet delivered (0: now) */
	grpc_channel *chans[ETCD_MAX_ENDPOINTS];
	grpc_completion_queue *cq;
	/* Shared, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t space; /* the queue has room again, or stop */
	struct etcd_event **q;
	size_t q_head, q_len;
	bool stop;
	int final_err; /* the watch ended with this -errno */
	int64_t compact_rev;
	unsigned connects;
	char endpoint[ETCD_ENDPOINT_MAX];
	char err[ETCD_ERR_MAX];
};

/* Queue ev (taking ownership); waits while the queue is full. -ECANCELED
 * (ev freed) when the watch is being stopped. Watch thread only. */
CN_MUST_CHECK int etcd_watch_push(struct etcd_watch *w, struct etcd_event *ev);
/* Record the final error (the reader gets it after the queued events). */
void etcd_watch_finish(struct etcd_watch *w, int err, int64_t compact_rev,
		       const char *msg);
/* Record a non-final error sentence (why the stream was re-established). */
void etcd_watch_note(struct etcd_watch *w, const char *fmt, ...)
	CN_PRINTF(2, 3);
/* Has etcd_watch_stop() been called? */
bool etcd_watch_stopping(struct etcd_watch *w);
/* The watch thread's body (etcd_watch.c). */
void *etcd_watch_main(void *arg);

#endif
