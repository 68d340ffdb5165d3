/*
 * Client calls on the gRPC C core with protobuf-c messages, shared by the
 * etcd client (lib/etcd*.c) and the canopy CLI (cli/rpc.c): message
 * encoding, cleaning a status detail for display, one batch waited for on
 * a pluck completion queue, and a whole unary call (create the call, send
 * the request and half-close, receive metadata, response and status).
 *
 * Nothing here keeps state: the caller owns the channel and the queue.
 * A queue (and so every call on it) is used by one thread at a time.
 * A program that uses these links $(LIBS_GRPC) (lib/module.mk).
 */
#ifndef CANOPY_LIB_GRPC_CALL_H
#define CANOPY_LIB_GRPC_CALL_H

#include <stddef.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "lib/compiler.h"

/* Size of the status detail a unary call keeps (text plus NUL). */
#define CN_GRPC_DETAIL_MAX 512

/* Encode msg into a new byte buffer (the caller's to
 * grpc_byte_buffer_destroy), NULL on failure. */
grpc_byte_buffer *cn_grpc_msg_encode(const ProtobufCMessage *msg);

/* Decode bb (not consumed) as a desc message; NULL for a NULL buffer or
 * input that does not decode. Free with protobuf_c_message_free_unpacked. */
ProtobufCMessage *cn_grpc_msg_decode(const ProtobufCMessageDescriptor *desc,
				     grpc_byte_buffer *bb);

/* Copy s (untrusted text, e.g. a status detail) into dst as printable
 * ASCII: bytes outside 0x20..0x7e become '?', at most size - 1 bytes are
 * kept, dst is always NUL-terminated. size must be > 0. */
void cn_grpc_slice_text(char *dst, size_t size, grpc_slice s);

/* Start n ops on call, tagged with the call, and wait on the pluck queue
 * cq until they complete (the call's deadline bounds the wait). 0, -EIO
 * when the batch could not be started, -ECONNABORTED when it completed
 * without success. */
CN_MUST_CHECK int cn_grpc_batch(grpc_call *call, grpc_completion_queue *cq,
				const grpc_op *ops, size_t n);

/* Shut down a pluck queue whose calls have all ended, take what is left
 * on it and destroy it. NULL is ignored. */
void cn_grpc_cq_destroy(grpc_completion_queue *cq);

/* What a unary call received. */
struct cn_grpc_unary {
	grpc_status_code status; /* the server's (or gRPC's) status */
	char detail[CN_GRPC_DETAIL_MAX]; /* its detail, cleaned */
	grpc_byte_buffer *resp; /* the response when status is OK, else NULL */
};

/* Call method ("/pkg.Service/Method") on ch with req (not consumed) and
 * wait on the pluck queue cq until it ends or deadline passes. 0 when the
 * call ended with a status (res filled; res->resp, when set, is the
 * caller's to destroy), -EIO when it could not be started, -ECONNABORTED
 * when it did not complete (then res->resp is NULL, res->status
 * GRPC_STATUS_UNKNOWN and res->detail empty). */
CN_MUST_CHECK int cn_grpc_unary_run(grpc_channel *ch, grpc_completion_queue *cq,
				    const char *method, gpr_timespec deadline,
				    grpc_byte_buffer *req,
				    struct cn_grpc_unary *res);

#endif
