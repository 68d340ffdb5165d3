/*
 * An etcd v3 client over the gRPC C core (no C++): KV (range, put, delete,
 * txn), leases and watches, against a list of endpoints with failover.
 * docs/etcd-client.md describes the contract in prose.
 *
 * Errors: every fallible function returns 0 or a negative errno and leaves
 * a human sentence in etcd_client_last_error() (or etcd_watch_last_error()).
 * gRPC statuses map through lib/err.h (cn_code_to_errno): UNAVAILABLE ->
 * -ECONNREFUSED (member down, no leader, connection failure),
 * DEADLINE_EXCEEDED -> -ETIMEDOUT, NOT_FOUND -> -ENOENT (unknown lease),
 * OUT_OF_RANGE -> -ERANGE (revision compacted), INVALID_ARGUMENT -> -EINVAL.
 *
 * Failover: a unary call that fails with UNAVAILABLE or a per-attempt
 * deadline moves on to the next endpoint, round after round, until the
 * call's overall deadline (request_timeout_ms) has passed; the client then
 * remembers the endpoint that answered. A write whose attempt timed out may
 * still have been applied (as with any etcd client); a retried txn sees the
 * state its first attempt left.
 *
 * Threads: a client is used by one thread at a time (all unary calls, lease
 * calls, etcd_watch_start). Each watch runs its own internal thread with
 * its own gRPC channels; its events are read with etcd_watch_next() from
 * any one thread (typically the caller's epoll loop, via etcd_watch_fd()).
 *
 * Ownership: keys and values passed in are copied before the call returns.
 * Results are allocated by the library and freed with the matching
 * etcd_*_free() function (NULL is accepted by each).
 */
#ifndef CANOPY_LIB_ETCD_H
#define CANOPY_LIB_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"

/* Default overall deadline of one call, retries included. */
#define ETCD_DEFAULT_REQUEST_TIMEOUT_MS 5000
/* Default time one attempt may wait for a connection to an endpoint. */
#define ETCD_DEFAULT_DIAL_TIMEOUT_MS 2000
/* Most endpoints a client accepts. */
#define ETCD_MAX_ENDPOINTS 16
/* Longest key accepted (etcd's own limit is larger; ours is a sanity cap). */
#define ETCD_MAX_KEY_LEN 4096

struct etcd_client;

struct etcd_options {
	unsigned dial_timeout_ms; /* 0: ETCD_DEFAULT_DIAL_TIMEOUT_MS */
	unsigned request_timeout_ms; /* 0: ETCD_DEFAULT_REQUEST_TIMEOUT_MS */
	/* TLS (lib/etcd_tls.c): NULL ca_file means plaintext. With ca_file
	 * every endpoint is reached over TLS, its certificate verified
	 * against that CA (PEM) and the endpoint's host name; cert_file and
	 * key_file (PEM, both or neither) are the client certificate etcd's
	 * --client-cert-auth asks for. Files are read by
	 * etcd_client_create. */
	const char *ca_file;
	const char *cert_file;
	const char *key_file;
};

/* A key-value pair as etcd stores it. key and value are NUL-terminated
 * copies (the NUL is not counted in the lengths). */
struct etcd_kv {
	char *key;
	size_t key_len;
	char *value;
	size_t value_len;
	int64_t create_revision;
	int64_t mod_revision;
	int64_t version;
	int64_t lease;
};

/* The result of a range read. */
struct etcd_kvs {
	int64_t revision; /* store revision the read was served at */
	size_t n_kvs;
	struct etcd_kv *kvs;
	bool more; /* more keys match than the limit let through */
	int64_t count; /* number of keys in the range */
};

/* Create a client for a comma-separated endpoint list ("host:port" or
 * "http://host:port", at most ETCD_MAX_ENDPOINTS; an https:// URL is
 * refused with -EPROTONOSUPPORT: TLS is chosen by opt->ca_file). No
 * connection is made yet. opt may be NULL for the defaults. 0, -EINVAL
 * (bad list or TLS options, message in *errmsg if errmsg is not NULL, a
 * static-lifetime string), -ENOENT / -EBADMSG (a TLS file missing or not
 * PEM) or -ENOMEM. */
CN_MUST_CHECK int etcd_client_create(const char *endpoints,
				     const struct etcd_options *opt,
				     struct etcd_client **out,
				     const char **errmsg);
/* Close channels and free the client. Watches started from it are
 * independent and must be stopped by their owner. NULL is a no-op. */
void etcd_client_destroy(struct etcd_client *c);
/* The sentence describing the client's last failure ("" after success). */
const char *etcd_client_last_error(const struct etcd_client *c);
/* The endpoint ("host:port") the client last reached. */
const char *etcd_client_endpoint(const struct etcd_client *c);

/* --- KV ---------------------------------------------------------------- */

struct etcd_range_opts {
	bool prefix; /* every key that starts with key */
	int64_t limit; /* 0: no limit */
	bool keys_only; /* values are returned empty */
	int64_t revision; /* 0: latest; else read at that revision */
};

/* Read one key. 0 with *out (one kv), -ENOENT when the key does not exist
 * (*out NULL), -EINVAL for an empty or overlong key, or a call error. */
CN_MUST_CHECK int etcd_kv_get(struct etcd_client *c, const char *key,
			      struct etcd_kvs **out);
/* Read a key or a prefix (opts may be NULL). 0 with *out (possibly no kvs),
 * -ERANGE if opts->revision was compacted, or a call error. */
CN_MUST_CHECK int etcd_kv_range(struct etcd_client *c, const char *key,
				const struct etcd_range_opts *opts,
				struct etcd_kvs **out);
void etcd_kvs_free(struct etcd_kvs *r);

/* Write key=value (lease 0: none). *revision (if not NULL) gets the new
 * store revision; *prev (if not NULL) gets the previous pair or NULL when
 * the key was new. -ENOENT if the lease does not exist. */
CN_MUST_CHECK int etcd_kv_put(struct etcd_client *c, const char *key,
			      const void *value, size_t value_len,
			      int64_t lease, int64_t *revision,
			      struct etcd_kv **prev);
/* Free one kv returned alone (e.g. by etcd_kv_put's prev). */
void etcd_kv_free(struct etcd_kv *kv);
/* Delete a key, or every key under a prefix. *deleted (if not NULL) gets
 * the number of keys removed (0 is not an error). */
CN_MUST_CHECK int etcd_kv_delete(struct etcd_client *c, const char *key,
				 bool prefix, int64_t *deleted,
				 int64_t *revision);

/* --- transactions ------------------------------------------------------- */

enum etcd_cmp_target {
	ETCD_CMP_VERSION = 0, /* number: the key's version (0: absent) */
	ETCD_CMP_CREATE = 1, /* number: create revision */
	ETCD_CMP_MOD = 2, /* number: mod revision */
	ETCD_CMP_VALUE = 3, /* value/value_len */
	ETCD_CMP_LEASE = 4, /* number: lease id */
};

enum etcd_cmp_result {
	ETCD_CMP_EQUAL = 0,
	ETCD_CMP_GREATER = 1,
	ETCD_CMP_LESS = 2,
	ETCD_CMP_NOT_EQUAL = 3,
};

struct etcd_cmp {
	const char *key;
	enum etcd_cmp_target target;
	enum etcd_cmp_result result;
	int64_t number;
	const void *value;
	size_t value_len;
};

enum etcd_op_type {
	ETCD_OP_RANGE = 0,
	ETCD_OP_PUT = 1,
	ETCD_OP_DELETE = 2,
};

struct etcd_op {
	enum etcd_op_type type;
	const char *key;
	const void *value; /* PUT */
	size_t value_len; /* PUT */
	int64_t lease; /* PUT */
	bool prefix; /* RANGE, DELETE */
};

struct etcd_txn {
	const struct etcd_cmp *cmps;
	size_t n_cmps;
	const struct etcd_op *then_ops;
	size_t n_then;
	const struct etcd_op *else_ops;
	size_t n_else;
};

/* One result per op of the branch that ran, in order. */
struct etcd_op_result {
	enum etcd_op_type type;
	size_t n_kvs; /* RANGE */
	struct etcd_kv *kvs; /* RANGE */
	int64_t deleted; /* DELETE */
};

struct etcd_txn_result {
	int64_t revision;
	bool succeeded; /* the compares held: then_ops ran */
	size_t n_results;
	struct etcd_op_result *results;
};

/* Run a transaction (at most 64 compares and 64 ops per branch). 0 with
 * *out whether or not the compares held (see succeeded), -EINVAL for an
 * invalid compare or op, or a call error. */
CN_MUST_CHECK int etcd_kv_txn(struct etcd_client *c, const struct etcd_txn *t,
			      struct etcd_txn_result **out);
void etcd_txn_result_free(struct etcd_txn_result *r);

/* Create key=value only if the key does not exist. 0, -EEXIST if it does. */
CN_MUST_CHECK int etcd_kv_create(struct etcd_client *c, const char *key,
				 const void *value, size_t value_len,
				 int64_t lease, int64_t *revision);
/* Compare-and-swap: set key to new_value only if its value is old_value.
 * 0, -ESTALE if the value differs, -ENOENT if the key does not exist. */
CN_MUST_CHECK int etcd_kv_cas(struct etcd_client *c, const char *key,
			      const void *old_value, size_t old_len,
			      const void *new_value, size_t new_len,
			      int64_t *revision);

/* --- leases ---------------------------------------------------------------- */

/* Grant a lease of ttl seconds (1..1e9). *id gets its id; *granted_ttl (if
 * not NULL) the TTL the server chose. */
CN_MUST_CHECK int etcd_lease_grant(struct etcd_client *c, int64_t ttl,
				   int64_t *id, int64_t *granted_ttl);
/* Revoke a lease, deleting every key attached to it. -ENOENT if unknown. */
CN_MUST_CHECK int etcd_lease_revoke(struct etcd_client *c, int64_t id);
/* Renew a lease once: one request and one response on a LeaseKeepAlive
 * stream opened for this call (so it fails over like a unary call). *ttl
 * gets the renewed TTL. -ENOENT if the lease expired or never existed. */
CN_MUST_CHECK int etcd_lease_keepalive(struct etcd_client *c, int64_t id,
				       int64_t *ttl);
/* Remaining TTL of a lease (and its granted TTL if granted is not NULL).
 * -ENOENT if it expired or never existed. */
CN_MUST_CHECK int etcd_lease_ttl(struct etcd_client *c, int64_t id,
				 int64_t *ttl, int64_t *granted);

/* --- watches --------------------------------------------------------------- */

struct etcd_watch;

enum etcd_event_type {
	ETCD_EVENT_PUT = 0,
	ETCD_EVENT_DELETE = 1,
};

struct etcd_event {
	enum etcd_event_type type;
	int64_t revision; /* the revision of the change (kv.mod_revision) */
	struct etcd_kv kv; /* for DELETE: the key, empty value */
	struct etcd_kv *prev_kv; /* NULL unless asked for and known */
};

struct etcd_watch_opts {
	bool prefix; /* every key under key */
	int64_t start_revision; /* 0: from now; else replay from there */
	bool prev_kv; /* deliver the previous pair with each event */
};

/* Start watching key (or prefix) on a new internal thread with its own
 * channels to the client's endpoints, beginning with the one the client
 * last reached. The watch is independent of c afterwards. If the stream
 * fails (member killed, leader lost, connection reset) the thread
 * reconnects, moving to the next endpoint, and resumes from the revision
 * after the last delivered event: no event is missed or delivered twice.
 * 0, -EINVAL, -ENOMEM or a pthread error. */
CN_MUST_CHECK int etcd_watch_start(struct etcd_client *c, const char *key,
				   const struct etcd_watch_opts *opts,
				   struct etcd_watch **out);
/* An eventfd that is readable while events (or a final error) are queued;
 * add it to an epoll loop (lib/loop.h) and call etcd_watch_next() until it
 * returns -EAGAIN. Owned by the watch. */
int etcd_watch_fd(const struct etcd_watch *w);
/* Take the next event in revision order. 0 with *out (free it with
 * etcd_event_free), -EAGAIN when none is queued, -ERANGE when the start or
 * resume revision was compacted (etcd_watch_compact_revision() says from
 * where history is left: re-list, then watch again), or another -errno when
 * the watch ended for good (message in etcd_watch_last_error()). After
 * -ERANGE or another final error the watch delivers nothing more. */
CN_MUST_CHECK int etcd_watch_next(struct etcd_watch *w,
				  struct etcd_event **out);
/* Like etcd_watch_next but wait up to timeout_ms (-1: forever) for an
 * event; -ETIMEDOUT when none came. */
CN_MUST_CHECK int etcd_watch_wait(struct etcd_watch *w, int timeout_ms,
				  struct etcd_event **out);
/* The compaction revision reported with -ERANGE (0 otherwise). */
int64_t etcd_watch_compact_revision(struct etcd_watch *w);
/* How many times the stream was (re)established, 1 after the first. */
unsigned etcd_watch_connects(struct etcd_watch *w);
/* The endpoint the watch stream is (or was last) connected to. Copied into
 * buf (size len). */
void etcd_watch_endpoint(struct etcd_watch *w, char *buf, size_t len);
/* The sentence describing why the watch ended or last reconnected. Copied
 * into buf (size len). */
void etcd_watch_last_error(struct etcd_watch *w, char *buf, size_t len);
/* Stop the thread, drop queued events and free the watch. NULL is a no-op.
 * Call from the thread that reads events. */
void etcd_watch_stop(struct etcd_watch *w);
void etcd_event_free(struct etcd_event *ev);

#endif
