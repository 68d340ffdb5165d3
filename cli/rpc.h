/*
 * The CLI's gRPC client on the gRPC C core: one channel to the manager,
 * unary calls with a deadline and server-streaming calls (WaitTask,
 * WatchEvents), protobuf-c messages in and out. Channel credentials are
 * made in one place (rpc_creds in rpc.c): TLS only, verified against the
 * cluster CA the caller trusts (cli/trust.h).
 * Single-threaded: one struct cli_rpc per process, used by main's thread.
 */
#ifndef CANOPY_CLI_RPC_H
#define CANOPY_CLI_RPC_H

#include <stdbool.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "lib/compiler.h"

/* Largest response accepted from the server. */
#define CLI_RPC_MAX_RECV (64 * 1024 * 1024)
/* Longest status message kept (the server's text, cleaned). */
#define CLI_RPC_MSG_MAX 512

/* The outcome of a call. */
struct cli_status {
	int code; /* gRPC status number (lib/err.h enum cn_code) */
	char msg[CLI_RPC_MSG_MAX]; /* server's message, printable ASCII */
	bool unreachable; /* UNAVAILABLE because no connection was made */
};

struct cli_rpc;
struct cli_stream;

/* Open a TLS channel to "host:port" (no connection is made yet) that
 * verifies the server's chain against ca_pem (PEM roots, copied) and its
 * certificate against the host in server; token (NULL: none) goes with
 * every call as "authorization: Bearer TOKEN". 0, -EINVAL (no CA) or
 * -ENOMEM. *out is the caller's to cli_rpc_close(). */
CN_MUST_CHECK int cli_rpc_open(const char *server, const char *ca_pem,
			       const char *token, struct cli_rpc **out);
void cli_rpc_close(struct cli_rpc *r);

/* Call method ("/canopy.v1.HostService/GetHost") with req and wait up to
 * timeout_ms. 0 with *resp (protobuf_c_message_free_unpacked(*resp, NULL)),
 * -EREMOTEIO with st filled for a non-OK status (unreachable set when the
 * channel never connected), -EBADMSG for a response that does not decode
 * (st says so too). */
CN_MUST_CHECK int cli_rpc_unary(struct cli_rpc *r, const char *method,
				const ProtobufCMessage *req,
				const ProtobufCMessageDescriptor *resp_desc,
				unsigned timeout_ms, ProtobufCMessage **resp,
				struct cli_status *st);

/* Start a server-streaming call: send req and half-close. timeout_ms 0
 * means no deadline (the stream runs until the server ends it). */
CN_MUST_CHECK int cli_rpc_stream_start(struct cli_rpc *r, const char *method,
				       const ProtobufCMessage *req,
				       unsigned timeout_ms,
				       struct cli_stream **out);
/* Next message: 1 with *msg, 0 when the stream ended with OK, -EREMOTEIO
 * with st for a non-OK end, -EBADMSG for a message that does not decode
 * (the call is cancelled). */
CN_MUST_CHECK int cli_stream_next(struct cli_stream *s,
				  const ProtobufCMessageDescriptor *desc,
				  ProtobufCMessage **msg,
				  struct cli_status *st);
/* Cancel if still running and free. */
void cli_stream_close(struct cli_stream *s);

#endif
