/*
 * canopy-managerd: the gRPC server of the public API on the gRPC C core.
 *
 * Threads: one completion-queue thread only waits on the queue and posts
 * each completed tag to the lib/loop event loop (loop_post); every handler,
 * every state change and every grpc_call_start_batch runs on the loop
 * thread. So handlers own the manager state without locks.
 *
 * Dispatch: a call's method name is looked up in the method table
 * ({name, request descriptor, handler}); an unknown name is answered
 * UNIMPLEMENTED, a request that does not decode INVALID_ARGUMENT, then the
 * gate (standby check) may answer, then the handler runs. A handler ends a
 * unary call with api_reply() or api_fail() before it returns; a streaming
 * handler sends with api_stream_send() and ends with api_fail() (CN_OK for
 * a normal end), possibly much later.
 */
#ifndef CANOPY_MANAGER_API_H
#define CANOPY_MANAGER_API_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "lib/compiler.h"
#include "lib/err.h"

struct loop;
struct api_server;
struct api_call;

/* Largest request accepted (gRPC answers RESOURCE_EXHAUSTED above it). */
#define API_MAX_REQUEST_BYTES (1024 * 1024)
/* Most messages queued on one stream before it is ended as too slow. */
#define API_STREAM_QUEUE_MAX 1024

/* A handler: req is the decoded request, owned by the server and freed
 * after the handler returns (copy what a stream needs later). */
typedef void (*api_handler_fn)(void *arg, struct api_call *c,
			       const ProtobufCMessage *req);
/* Called when the client of a stream went away before the handler ended
 * it; the handler must forget c and end it with api_fail(). */
typedef void (*api_cancel_fn)(void *arg, struct api_call *c);
/* Before a handler, with the decoded request: return 0 to go on, or end c
 * with api_fail() and return nonzero (a standby manager, no token, a
 * missing privilege). */
typedef int (*api_gate_fn)(void *arg, struct api_call *c,
			   const ProtobufCMessage *req);

struct api_method {
	const char *name; /* "/canopy.v1.VmService/CreateVm" */
	const ProtobufCMessageDescriptor *req; /* request type */
	api_handler_fn fn;
};

/* The method table (manager/methods.c) and a lookup by name (len bytes,
 * not NUL-terminated). NULL when unknown. */
const struct api_method *api_method_find(const char *name, size_t len);
size_t api_method_count(void);
const struct api_method *api_method_at(size_t i);

/* The API's TLS identity: PEM texts, read by the caller (mgr_tls_load). */
struct api_tls {
	const char *cert_chain_pem; /* the server certificate, then the CA */
	const char *key_pem; /* its private key */
};

/* Start serving gRPC over TLS only (TLS 1.2 or 1.3, no client
 * certificate asked) on listen ("127.0.0.1:7443"), dispatching to the
 * method table with arg. tls is copied by gRPC before this returns.
 * 0, -EINVAL (no TLS identity), -EADDRINUSE (or another bind failure:
 * also a certificate gRPC refuses) or -ENOMEM. Loop thread. */
CN_MUST_CHECK int api_server_create(struct loop *l, const char *listen,
				    const struct api_tls *tls, api_gate_fn gate,
				    void *arg, struct api_server **out);
/* Stop accepting calls, cancel the live ones (stream handlers get their
 * cancel callback), run the loop until they have ended (at most ~3 s),
 * stop the thread and free. NULL is a no-op. Loop thread, with the loop
 * not running. */
void api_server_destroy(struct api_server *s);

/* End a unary call with msg (CN_OK). */
void api_reply(struct api_call *c, const ProtobufCMessage *msg);
/* End a call with code and a message (formatted; "" allowed for CN_OK). */
void api_fail(struct api_call *c, enum cn_code code, const char *fmt, ...)
	CN_PRINTF(3, 4);
/* Queue msg on a stream. 0, -ECANCELED (client gone: wait for the cancel
 * callback), -ENOBUFS (queue full: end the stream) or -ENOMEM. */
CN_MUST_CHECK int api_stream_send(struct api_call *c,
				  const ProtobufCMessage *msg);
/* Register the cancel callback of a stream (before returning from the
 * handler). */
void api_call_on_cancel(struct api_call *c, api_cancel_fn fn, void *arg);
/* The method name of the call (for logs). */
const char *api_call_method(const struct api_call *c);

#endif
